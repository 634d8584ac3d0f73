"""Scaffolding (DiSK): a gate boosts the student's logits during training, within a budget."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .. import losses
from ..config import DiSKSpec
from .base import Batch, Objective, TeacherData


class DiSK(Objective):
    """Scaffolding (DiSK): during training a small gating network g(x) in [0, 1], reading the
    teacher's and student's logits, boosts the student's logits on the teacher's top-K
    classes and the true class, so the student is not forced to fit examples beyond its
    capacity; a dual variable keeps the mean boost within a budget that decays (cosine) to
    zero, and gate and student are updated alternately. At test time the student runs alone.
    Kag, Fedorov, Gangrade, Whatmough & Saligrama, 'Scaffolding a Student to Instill
    Knowledge', ICLR 2023.

    Student step (``loss``, gate frozen): ``kd(s~, t, tau) + alpha * CE(y, s~)`` with
    ``s~ = scaffold_logits(s, g(x), top_k_mask(t, y, K), boost)``. Gate step (``after_step``,
    student frozen): the same loss on ``s~`` plus ``lambda * (mean g - b(progress))`` with
    the cosine budget ``b``; then dual ascent ``lambda <- max(0, lambda + dual_lr * (mean g -
    b))``. The gate ``sigmoid(MLP([t, s]))`` has its own Adam optimiser, so it is not in
    ``extra_modules``. Our choices: K = 1 for two classes and 2 otherwise (``top_k``
    overrides); boost additive in logit space; alternation every step.
    """

    name = "disk"
    uses_transfer = True
    section = "disk"
    params: DiSKSpec
    dual: Tensor

    def setup(self, teacher: TeacherData) -> DiSK:
        super().setup(teacher)
        p = self.params
        C = teacher.n_classes
        self.k_ = p.top_k or (1 if C == 2 else 2)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.gate = nn.Sequential(
                nn.Linear(2 * C, p.gate_hidden), nn.ReLU(), nn.Linear(p.gate_hidden, 1)
            )
        self.register_buffer("dual", torch.zeros(()), persistent=False)
        self._gate_opt: torch.optim.Optimizer | None = None
        self._last_gate = torch.zeros(())
        return self

    def _g(self, t: Tensor, s: Tensor) -> Tensor:
        return torch.sigmoid(self.gate(torch.cat([t, s.float()], dim=-1))).squeeze(-1)

    def _scaffolded_loss(self, out: Tensor, t: Tensor, y: Tensor, g: Tensor) -> Tensor:
        s_tilde = losses.scaffold_logits(
            out, g, losses.top_k_mask(t, y, self.k_), self.params.boost
        )
        return losses.with_hard(losses.kd(s_tilde, t, self.tau), s_tilde, y, self.alpha)

    def loss(self, out: Tensor, batch: Batch) -> Tensor:
        t = self.t_logits[batch.idx]
        with torch.no_grad():
            g = self._g(t, out.detach())
        return self._scaffolded_loss(out, t, batch.y, g)

    def after_step(self, out: Tensor, batch: Batch) -> None:
        p = self.params
        gate_opt = self._gate_optimizer()
        t = self.t_logits[batch.idx]
        budget = losses.cosine_budget(batch.progress, p.budget)
        with torch.enable_grad():
            g = self._g(t, out.detach())
            slack = g.mean() - budget
            loss = self._scaffolded_loss(out.detach(), t, batch.y, g) + self.dual * slack
            gate_opt.zero_grad(set_to_none=True)
            loss.backward()
            gate_opt.step()
        with torch.no_grad():  # tensors only: no GPU sync per step
            self.dual.copy_((self.dual + p.dual_lr * slack.detach()).clamp_min(0.0))
            self._last_gate = g.detach().mean()

    def _gate_optimizer(self) -> torch.optim.Optimizer:
        if self._gate_opt is None:  # made lazily: after .to(device) moved the gate
            self._gate_opt = torch.optim.Adam(self.gate.parameters(), lr=self.params.gate_lr)
        return self._gate_opt

    # nn.Module's overloads (generic `destination`) cannot be restated; arguments pass through
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """The gate, the dual variable and the gate optimiser's tensors."""
        state = dict(super().state_dict(*args, **kwargs)) | {"dual": self.dual.detach()}
        for pid, st in self._gate_optimizer().state_dict()["state"].items():
            state |= {f"gate_opt.{pid}.{k}": torch.as_tensor(v) for k, v in st.items()}
        return state

    # callers pass the state positionally; `assign` passes through **kw
    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True, **kw: Any) -> Any:  # type: ignore[override]
        opt_state: dict[int, dict[str, Tensor]] = {}
        for key, v in state.items():
            if key.startswith("gate_opt."):
                _, pid, name = key.split(".", 2)
                opt_state.setdefault(int(pid), {})[name] = v
        own = {k: v for k, v in state.items() if not k.startswith("gate_opt.") and k != "dual"}
        res = super().load_state_dict(own, strict=strict, **kw)
        self.dual.copy_(state["dual"])
        opt = self._gate_optimizer()
        opt.load_state_dict({"state": opt_state, "param_groups": opt.state_dict()["param_groups"]})
        return res

    def info(self) -> dict[str, Any]:
        return {
            "disk_top_k": int(self.k_),
            "disk_dual": float(self.dual),
            "disk_last_mean_gate": float(self._last_gate),
        }
