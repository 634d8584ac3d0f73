"""Distillation from a weaker teacher (DWT) and its optional parameter remapping."""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import losses
from ..config import ConfigError, DWTSpec
from .base import Batch, Objective, RunContext, TeacherData


class DWT(Objective):
    """Distillation from a weaker teacher: the student is larger than its teacher and learns
    a_h * CE(y) + a_s * KD, with a_s constant or decaying linearly from 4 to 1 (a large soft
    weight speeds early training, a normal one ends higher); optionally the student starts
    from the teacher's parameters (remapping), which the paper found to hurt. Lee, Park, Kim &
    Ko, 'A Study on Knowledge Distillation from Weak Teacher for Scaling Up Pre-trained
    Language Models', Findings of ACL 2023.

    Loss ``hard_weight * CE(y) + a_s(progress) * kd(out, t, train.tau)``; our ``kd`` includes
    the usual ``tau^2`` factor (equal to the paper's plain KL at tau = 1). ``remap``:
    ``attach`` copies the teacher's layers (``set_teacher_layers``) into the student
    (``remap_mlp``); in a pipeline run they are rebuilt for the digits-mlp teacher.
    """

    name = "dwt"
    uses_transfer = True
    section = "dwt"
    params: DWTSpec

    def setup(self, teacher: TeacherData) -> DWT:
        super().setup(teacher)
        p = self.params
        self._teacher = teacher
        self.info_ = {
            "dwt_soft_start": p.soft_start,
            "dwt_soft_end": p.soft_end if p.schedule == "linear" else p.soft_start,
            "dwt_remap": p.remap,
        }
        return self

    def soft_weight(self, progress: float) -> float:
        p = self.params
        if p.schedule == "constant":
            return p.soft_start
        return losses.linear_schedule(progress, p.soft_start, p.soft_end)

    def set_teacher_layers(self, layers: list[tuple[Tensor, Tensor]]) -> None:
        """The teacher's linear layers ``(weight (out, in), bias (out,))`` in order, the last
        being its head, with input standardisation already folded in (``remap`` needs them)."""
        self.teacher_layers_ = layers

    def attach(self, student: nn.Module, context: RunContext | None = None) -> None:
        if not self.params.remap:
            return
        if context is not None:
            if context.teacher_kind != "digits-mlp" or context.student_kind != "mlp":
                raise ConfigError(
                    "train.dwt.remap=true is implemented for teacher.kind=digits-mlp with "
                    f"student.kind=mlp (got {context.teacher_kind} / {context.student_kind}); "
                    "for a transformer student use student.init=teacher, or set "
                    "train.dwt.remap=false"
                )
            t = self._teacher
            self.set_teacher_layers(
                digits_teacher_layers(
                    context.train_features, t.y, t.n_classes, context.teacher.hidden,
                    context.teacher.seed, np.asarray(t.H, dtype=np.float32),
                )
            )  # fmt: skip
        layers = getattr(self, "teacher_layers_", None)
        if layers is None:
            raise ConfigError(
                "dwt: train.dwt.remap=true needs the teacher's layers (set_teacher_layers); "
                "only teacher.kind=digits-mlp with student.kind=mlp supports remapping"
            )
        remap_mlp(student, layers)

    def loss(self, out: Tensor, batch: Batch) -> Tensor:
        soft = losses.kd(out, self.t_logits[batch.idx], self.tau)
        return (
            self.params.hard_weight * losses.hard(out, batch.y)
            + self.soft_weight(batch.progress) * soft
        )


@torch.no_grad()
def remap_mlp(student: nn.Module, layers: list[tuple[Tensor, Tensor]]) -> None:
    """DWT's parameter remapping for MLP students (``MLPStudent``: ``trunk`` of Linear+ReLU,
    then ``head``).

    Teacher hidden layer i is copied into student trunk layer i; when the student is deeper,
    the teacher's LAST hidden layer is reused for every extra layer (Lee et al. 2023); the
    teacher head goes into the student head. Our choice for a wider student: the teacher's
    weights fill the top-left block of each student matrix and the rest keeps its random
    initialisation (bert2BERT-style function preservation would need more than DWT asks).
    """
    trunk = [m for m in cast(nn.Sequential, student.trunk) if isinstance(m, nn.Linear)]
    hidden, head = layers[:-1], layers[-1]
    if not hidden:
        raise ValueError("remap_mlp: the teacher needs at least one hidden layer")
    if len(hidden) > 1 and hidden[-1][0].shape[0] != hidden[-1][0].shape[1]:
        raise ValueError("remap_mlp: the teacher's last hidden layer must be square to reuse it")
    for i, lin in enumerate(trunk):
        w, b = hidden[min(i, len(hidden) - 1)]
        if i >= len(hidden) and w.shape[0] != w.shape[1]:
            raise ValueError("remap_mlp: cannot reuse a non-square teacher layer")
        _copy_block(lin, w, b)
    _copy_block(cast(nn.Linear, student.head), *head)


def digits_teacher_layers(
    features: np.ndarray, y: np.ndarray, n_classes: int, hidden: int, seed: int, H_check: np.ndarray
) -> list[tuple[Tensor, Tensor]]:
    """The ``digits-mlp`` teacher's linear layers, for DWT's remapping (``remap_mlp``).

    Why a replay: core/teachers.py keeps only the teacher's outputs (H, Z, W, b), not its body.
    This repeats its documented recipe (seeded init, standardised pixels, Adam 1e-3 with weight
    decay 1e-4, 400 steps of 128 seeded draws) and CHECKS that the rebuilt body reproduces the
    cached training embeddings ``H_check``; if the recipe ever changes the check fails loudly
    rather than remapping a different network. The standardisation is folded into the first
    layer (``W / std``, ``b - W (mean / std)``) since the student reads raw features.
    """
    X = np.asarray(features, dtype=np.float32)
    mean, std = X.mean(0), X.std(0)
    std[std < 1e-6] = 1.0
    xt = torch.as_tensor((X - mean) / std)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        d_in, k = X.shape[1], hidden
        body = nn.Sequential(nn.Linear(d_in, k), nn.ReLU(), nn.Linear(k, k), nn.ReLU())
        head = nn.Linear(k, n_classes)
        model = nn.Sequential(body, head)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
        gen = torch.Generator().manual_seed(seed)
        n = len(yt)
        model.train()
        for _ in range(400):
            idx = torch.randint(0, n, (min(128, n),), generator=gen)
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        H = body(xt).numpy()
        if H.shape != H_check.shape or not np.allclose(H, H_check, atol=1e-3, rtol=1e-3):
            raise ValueError(
                "dwt remap: rebuilding the digits-mlp teacher did not reproduce its cached "
                "embeddings (core/teachers.py's recipe changed?); set train.dwt.remap=false"
            )
        m, s = torch.as_tensor(mean), torch.as_tensor(std)
        first, second = cast(nn.Linear, body[0]), cast(nn.Linear, body[2])
        w1, b1 = first.weight / s, first.bias - (first.weight * (m / s)).sum(1)
        return [
            (w1.clone(), b1.clone()),
            (second.weight.clone(), second.bias.clone()),
            (head.weight.clone(), head.bias.clone()),
        ]


def _copy_block(lin: nn.Linear, w: Tensor, b: Tensor) -> None:
    o, i = w.shape
    if o > lin.out_features or i > lin.in_features:
        raise ConfigError(
            f"remap_mlp: teacher layer {tuple(w.shape)} does not fit student layer "
            f"{(lin.out_features, lin.in_features)}; the student must be at least as wide"
        )
    lin.weight[:o, :i] = w.to(lin.weight)
    lin.bias[:o] = b.to(lin.bias)
