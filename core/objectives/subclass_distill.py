"""Subclass Distillation: a teacher head retrained with S outputs per class teaches them."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import losses
from ..config import SubclassDistillSpec
from .base import Batch, Objective, TeacherData


class SubclassDistill(Objective):
    """Subclass Distillation: the teacher's head is retrained with S outputs per class (class
    logit = logsumexp of its subclass logits) and an auxiliary loss that spreads examples
    over subclasses; the student then learns the teacher's subclass distribution,
    alpha * T^2 * CE(soft) + (1 - alpha) * CE(y), alpha = 0.5, T = 4. Here the head is
    retrained on the cached frozen embeddings (retraining the encoder needs a GPU). Müller,
    Kornblith & Hinton, 'Subclass Distillation', arXiv 2002.03936, 2020.

    ``setup`` trains a fresh ``nn.Linear(d, C*S)`` (seeded) with Adam at ``head_lr`` for
    ``head_epochs`` epochs of batches of 256, loss ``CE(y, logsumexp-class logits) +
    aux_weight * subclass_aux(u, aux_T)``. The retrained teacher's accuracy (train and eval
    split) is in ``info``. The student has C*S outputs; its class prediction is the
    logsumexp over each class's block. ``train.tau``/``train.alpha`` are unused: the section
    has its own.
    """

    name = "subclass-distill"
    uses_transfer = True
    section = "subclass_distill"
    params: SubclassDistillSpec
    t_sub: Tensor

    def setup(self, teacher: TeacherData) -> SubclassDistill:
        super().setup(teacher)
        p = self.params
        C, S = teacher.n_classes, p.n_subclasses
        # float32 copy of all of H, by design: the retrained head standardises H over all rows
        # and labels every row (``t_sub``); the other objectives read H per batch
        H = torch.as_tensor(np.asarray(self._require_embeddings(teacher), dtype=np.float32))
        # the head learns a class for every row: a transfer row's is the teacher's argmax
        y = torch.as_tensor(teacher.classes, dtype=torch.long)
        labeled = torch.as_tensor(np.asarray(teacher.y) >= 0)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            head = nn.Linear(H.shape[1], C * S)
        # Standardising H keeps one learning rate good for teachers of any embedding scale.
        mean, std = H.mean(0), H.std(0).clamp_min(1e-6)
        opt = torch.optim.Adam(head.parameters(), lr=p.head_lr)
        gen = torch.Generator().manual_seed(self.seed)
        n, bs = H.shape[0], 256
        Hs = (H - mean) / std
        for _ in range(p.head_epochs):
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, bs):
                b = perm[i : i + bs]
                u = head(Hs[b])
                loss = F.nll_loss(losses.subclass_log_probs(u, S), y[b])
                if p.aux_weight > 0 and len(b) > 1:
                    loss = loss + p.aux_weight * losses.subclass_aux(u, p.aux_temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        with torch.no_grad():
            t_sub = head(Hs)
            self.info_ = {
                "subclass_teacher_train_accuracy": _acc(t_sub[labeled], y[labeled], S),
                "subclass_teacher_assignment_entropy": _assignment_entropy(t_sub, C, S),
            }
            if teacher.H_eval is not None and teacher.y_eval is not None:
                He = torch.from_numpy(np.array(teacher.H_eval, dtype=np.float32))
                ye = torch.as_tensor(np.asarray(teacher.y_eval), dtype=torch.long)
                self.info_["subclass_teacher_accuracy"] = _acc(head((He - mean) / std), ye, S)
        self.register_buffer("t_sub", t_sub, persistent=False)
        return self

    def n_outputs(self, n_classes: int) -> int:
        return int(n_classes * self.params.n_subclasses)

    def loss(self, out: Tensor, batch: Batch) -> Tensor:
        p = self.params
        return losses.subclass_distill(
            out, self.t_sub[batch.idx], batch.y, p.n_subclasses, p.tau, p.alpha
        )

    def class_logits(self, out: Tensor) -> Tensor:
        return losses.subclass_log_probs(out, self.params.n_subclasses)


def _acc(u: Tensor, y: Tensor, S: int) -> float:
    return float(100.0 * (losses.subclass_log_probs(u, S).argmax(-1) == y).float().mean())


def _assignment_entropy(u: Tensor, C: int, S: int) -> float:
    """Mean over classes of the entropy (nats) of how examples spread over that class's S
    subclasses (argmax); log S when spread evenly, 0 when all share one subclass."""
    a = u.view(-1, C, S).argmax(-1)  # (n, C) subclass argmax within each class block
    hs = []
    for c in range(C):
        freq = torch.bincount(a[:, c], minlength=S).float()
        q = freq / freq.sum()
        hs.append(float(-(q[q > 0] * q[q > 0].log()).sum()))
    return float(np.mean(hs))
