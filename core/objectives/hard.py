"""Hard labels: the no-distillation baseline."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from .. import losses
from .base import Batch, Objective, TeacherData


class Hard(Objective):
    """Hard labels: cross-entropy on the ground-truth classes only; the baseline every
    distillation method must beat."""

    name = "hard"
    records_predict_time = False

    def setup(self, teacher: TeacherData) -> Hard:
        super().setup(teacher)
        self.n_label_ = int(np.asarray(teacher.y).max()) + 1 if len(teacher) else 0
        return self

    def check_outputs(self, n_out: int) -> None:
        """At least one output per class seen in the training labels."""
        need = getattr(self, "n_label_", 0)
        if n_out < need:
            raise ValueError(
                f"the student has {n_out} outputs but objective {self.name!r} needs {need}; "
                "build it with n_out=objective.n_outputs(n_classes)"
            )

    def loss(self, out: Tensor, batch: Batch) -> Tensor:
        return losses.hard(out, batch.y)
