"""Vanilla knowledge distillation on the teacher's class logits."""

from __future__ import annotations

from torch import Tensor

from .. import losses
from .base import Batch, Objective, TeacherData


class KD(Objective):
    """Knowledge distillation: the student matches the teacher's class probabilities softened
    by temperature tau (loss scaled by tau^2), plus alpha times the hard-label loss. Hinton,
    Vinyals & Dean, 'Distilling the Knowledge in a Neural Network', NIPS 2014 Deep Learning
    Workshop (arXiv 1503.02531)."""

    name = "kd"
    uses_transfer = True
    records_predict_time = False

    def setup(self, teacher: TeacherData) -> KD:
        if teacher.Z is None or teacher.Z.shape[0] != len(teacher):
            raise ValueError("objective kd needs teacher_logits with one row per example")
        super().setup(teacher)
        return self

    def loss(self, out: Tensor, batch: Batch) -> Tensor:
        kd = losses.kd(out, self.t_logits[batch.idx], self.tau)
        return losses.with_hard(kd, out, batch.y, self.alpha)
