"""LELP: the student learns pseudo-subclass targets built from the teacher's embeddings."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .. import losses
from .base import Batch, Objective, TeacherData, as_compact


def to_unit_temperature(log_p_tau: Tensor, tau: float) -> Tensor:
    """Class log-probabilities at T = 1 from ones at temperature ``tau``: if
    ``P_tau = softmax(z / tau)`` then ``softmax(tau * log P_tau) = softmax(z)``."""
    if tau == 1.0:
        return log_p_tau
    return F.log_softmax(float(tau) * log_p_tau.float(), dim=-1)


class LELP(Objective):
    """LELP: each class's teacher embeddings are projected on a few principal directions of
    that class (after removing the head's null space, optionally rotated); softmax(z/beta)
    over those coordinates splits the class probability into pseudo-subclasses, and the
    student learns these C x S targets at temperature tau. Loo, Iliopoulos, Hu & Vee, 'Linear
    Projections of Teacher Embeddings for Few-Class Distillation', arXiv 2409.20449, 2024."""

    name = "lelp"
    uses_transfer = True
    records_predict_time = False
    needs_subclass_targets = True
    targets: Tensor

    def setup(self, teacher: TeacherData) -> LELP:
        n = len(teacher)
        if teacher.targets is None or teacher.sizes is None:
            raise ValueError("objective lelp needs targets (n, sum S_c) and sizes")
        sizes = [int(s) for s in teacher.sizes]
        if tuple(teacher.targets.shape) != (n, sum(sizes)):
            raise ValueError(
                f"lelp targets have shape {tuple(teacher.targets.shape)}, expected "
                f"({n}, {sum(sizes)}) for sizes {sizes}"
            )
        super().setup(teacher)
        self.sizes = sizes
        self.n_classes_ = len(sizes)
        # float16 targets (a run with transfer rows) stay float16: the loss casts a batch
        self.register_buffer("targets", as_compact(teacher.targets), persistent=False)
        return self

    def restore(self, n_classes: int, sizes: list[int] | None = None) -> LELP:
        if not sizes:
            raise ValueError("objective lelp needs sizes (the subclass count of each class)")
        self.sizes = [int(s) for s in sizes]
        self.n_classes_ = len(self.sizes)
        return self

    def n_outputs(self, n_classes: int) -> int:
        """sum S_c: one output per pseudo-subclass (known after ``setup``)."""
        sizes = getattr(self, "sizes", None)
        if not sizes:
            raise ValueError("objective lelp needs sizes (the subclass count of each class)")
        return int(sum(sizes))

    def loss(self, out: Tensor, batch: Batch) -> Tensor:
        return losses.with_hard(
            losses.lelp(out, self.targets[batch.idx], self.tau),
            losses.class_log_probs(out, self.sizes, self.tau),
            batch.y,
            self.alpha,
        )

    def class_logits(self, out: Tensor) -> Tensor:
        """The class sums of softmax(u / tau) (``losses.class_log_probs``, LELP.md step 7)
        mapped back to T = 1.

        Why the mapping: a LELP student learns P_tau, the teacher's class distribution at tau
        (softmax(Z / tau)). Scored as it is, its KL and ECE measure the temperature, not the
        student. ``log p = tau * log P_tau`` (renormalised) undoes it exactly, and the argmax,
        hence accuracy and agreement, is unchanged.
        """
        return to_unit_temperature(losses.class_log_probs(out, self.sizes, self.tau), self.tau)
