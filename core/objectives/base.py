"""The one interface every training objective implements, hard labels and KD included.

Why one interface: ``core/train.py`` stays one loop that calls the same few hooks for every
objective (no per-objective branches), and prediction asks the objective for class logits in
one place (``core/predict.py``). An objective carries whatever state it needs beyond one
batch (teacher tensors, subclass targets, learned maps, queues, a gate and its optimiser).

Life cycle, as ``core.pipeline.train_student`` drives it:

1. ``make(name, train_spec)`` (``core.objectives.registry``): the constructor receives only
   the objective's own config section (``train.<name>``) plus the shared ``tau``, ``alpha``
   and ``seed``.
2. ``setup(teacher)``: precompute from the CACHED teacher arrays (targets, teacher tensors, a
   retrained teacher head). A loss never runs the teacher (../shared/STYLE.md).
3. ``n_outputs(n_classes)``: the student's head width; the student is built with it.
4. ``attach(student, context)``: the parts sized by the student's embedding (learned maps,
   ReAugKD's projection), DWT's remapping, AMAD's attention hooks.
5. per step: ``loss(out, batch)``, then ``after_step(out, batch)`` (queues, DiSK's gate).
6. ``class_logits(out)``: per-class log-probabilities at T = 1 for prediction;
   ``augment(log_probs, emb)`` where ``uses_embeddings_to_predict`` (ReAugKD's retrieval).
7. ``state_dict()`` / ``load_state_dict()``: what training changes, saved in the student's
   checkpoint so a resumed run continues the objective; ``state_tensors()`` is the learned
   state a finished run keeps to replay its prediction (ReAugKD's maps).

An ``Objective`` is an ``nn.Module`` so ``.to(device)`` moves its tensors with one call; only
``extra_modules()`` are trained by the main optimiser. Formulas and "our choice" points:
../shared/METHODS.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import Tensor, nn

from .. import losses
from ..config import ConfigError
from ..students import unwrap


@dataclass
class TeacherData:
    """Cached teacher arrays an objective sets up from, for the TRAINING split: ``Z`` (n, C)
    logits, ``y`` (n,) labels, ``H`` (n, d) embeddings (None where a run has none, e.g.
    ``train`` called without the pipeline); ``targets`` (n, sum S_c) and ``sizes`` (S_c per
    class): pseudo-subclass targets from the ``subclasses`` section (LELP); optionally the
    eval split's arrays (to report the accuracy of a retrained teacher).

    With transfer rows (an objective that ``uses_transfer``), the labeled training rows come
    first and the transfer rows follow, with ``y = -1``: a hard-label term must skip them
    (``losses.hard`` does), and what needs a class for every row reads ``classes``."""

    Z: Any
    y: Any
    H: Any = None
    targets: Any = None
    sizes: list[int] | None = None
    H_eval: Any = None
    Z_eval: Any = None
    y_eval: Any = None

    @property
    def n_classes(self) -> int:
        if self.Z is not None:
            return int(self.Z.shape[1])
        return int(np.asarray(self.y).max()) + 1

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_labeled(self) -> int:
        """Rows with a label (the transfer rows, y = -1, follow them)."""
        return int((np.asarray(self.y) >= 0).sum())

    @property
    def classes(self) -> np.ndarray:
        """A class per row: the label, or the teacher's argmax for a transfer row (y = -1),
        as LELP takes the class of unlabeled rows (../shared/LELP.md, Inputs)."""
        y = np.asarray(self.y).astype(np.int64)
        if (y >= 0).all() or self.Z is None:
            return y
        return np.where(y >= 0, y, np.asarray(self.Z).argmax(1))


@dataclass
class Batch:
    """One training step as an objective sees it: ``idx`` the batch's row numbers in the
    training split (to index precomputed teacher tensors), ``y`` their labels, ``emb`` the
    student's penultimate embedding (B, h) when ``needs_embedding`` (else None), ``progress``
    = step / total steps in [0, 1] (for schedules)."""

    idx: Tensor
    y: Tensor
    emb: Tensor | None = None
    progress: float = 0.0


@dataclass
class RunContext:
    """What a pipeline run offers ``attach`` beyond the student: the kinds of student and
    teacher, the training inputs, the training split's raw features, the teacher section
    (DWT rebuilds the digits teacher from it) and a loader of the teacher's encoder (AMAD)."""

    student_kind: str = ""
    teacher_kind: str = ""
    train_inputs: Mapping[str, Tensor] | None = None
    train_features: Any = None
    teacher: Any = None
    load_teacher_encoder: Callable[[], nn.Module] | None = None
    device: torch.device | None = None


class Objective(nn.Module):
    """Base class; a subclass's docstring is its help text (``objectives.doc(name)``).

    Subclasses set ``name`` and ``section`` (the ``train.<section>`` they read, None for
    none) and override what they need. The shared KD part, used by the objectives that add a
    term to KD: ``kd_weight * kd(out, t, tau) + alpha * CE(y, out)``.
    """

    name: ClassVar[str] = "base"
    section: ClassVar[str | None] = None
    #: The loop passes the student's penultimate embedding in ``Batch.emb``.
    needs_embedding: ClassVar[bool] = False
    #: The pipeline computes pseudo-subclass targets (``subclasses`` section) for ``setup``.
    needs_subclass_targets: ClassVar[bool] = False
    #: Trains on the transfer rows too (labeled rows first, then transfer rows with y = -1;
    #: see ``TeacherData``). Off by default, so an objective that learns only from labels
    #: never sees an unlabeled row; every distillation objective turns it on.
    uses_transfer: ClassVar[bool] = False
    #: Prediction needs the student's embeddings too (``augment``: ReAugKD's retrieval).
    uses_embeddings_to_predict: ClassVar[bool] = False
    #: The run record's method info carries the prediction time (``predict_s``); off for
    #: hard, kd and lelp, whose records never had method info.
    records_predict_time: ClassVar[bool] = True
    #: A registered buffer (nn.Module's ``__getattr__`` would type it ``Tensor | Module``).
    t_logits: Tensor

    def __init__(
        self, params: BaseModel | None = None, *, tau: float = 1.0, alpha: float = 0.0,
        seed: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.params = params
        self.tau, self.alpha, self.seed = float(tau), float(alpha), int(seed)
        self.info_: dict[str, Any] = {}
        self.n_classes_: int | None = None
        self.register_buffer("t_logits", torch.zeros(0), persistent=False)

    # ---- run checks ----
    @classmethod
    def check_compatible(cls, student_kind: str, teacher_kind: str) -> None:
        """Refuse, before any work, a student or teacher this objective cannot serve."""

    # ---- set-up ----
    def setup(self, teacher: TeacherData) -> Objective:
        """Precompute from the cached teacher arrays; returns self. The default keeps the
        teacher's logits (KD terms) when given."""
        n = len(teacher)
        for what, arr in (("H", teacher.H), ("Z", teacher.Z)):
            if arr is not None and arr.shape[0] != n:
                raise ValueError(
                    f"{self.name}: teacher {what} {tuple(arr.shape)} must have one row per "
                    f"training example ({n})"
                )
        self.n_classes_ = teacher.n_classes
        if teacher.Z is not None:
            self.t_logits = as_float(teacher.Z)
        return self

    def n_outputs(self, n_classes: int) -> int:
        """The student's head width for ``n_classes`` classes."""
        return int(n_classes)

    def check_outputs(self, n_out: int) -> None:
        """A clear error when the student's head does not have ``n_outputs`` outputs."""
        need = self.n_outputs(self.n_classes_ or n_out)
        if n_out != need:
            raise ValueError(
                f"the student has {n_out} outputs but objective {self.name!r} needs {need}; "
                "build it with n_out=objective.n_outputs(n_classes)"
            )

    def restore(self, n_classes: int, sizes: list[int] | None = None) -> Objective:
        """Ready a finished run's objective to predict from what its ``student.json`` keeps
        (the class count; the subclass sizes of a LELP run); returns self."""
        self.n_classes_ = int(n_classes)
        return self

    def attach(self, student: nn.Module, context: RunContext | None = None) -> None:
        """Prepare for ``student`` (maps sized by its embedding, remapping, hooks)."""

    def extra_modules(self) -> list[nn.Module]:
        """Modules trained with the student by the main optimiser."""
        return []

    # ---- per step ----
    def loss(self, out: Tensor, batch: Batch) -> Tensor:
        """The scalar to minimise for the student's outputs ``out`` (B, n_out)."""
        raise NotImplementedError

    def after_step(self, out: Tensor, batch: Batch) -> None:
        """State updates after the optimiser step (``out``/``batch.emb`` detached)."""

    # ---- prediction ----
    def class_logits(self, out: Tensor) -> Tensor:
        """Per-class log-probabilities (B, C) at temperature 1 from the student's outputs."""
        return F.log_softmax(out.float(), dim=-1)

    def augment(self, log_probs: Tensor, emb: Tensor | None) -> Tensor:
        """Inference-time change of the prediction (ReAugKD retrieval); default identity."""
        return log_probs

    def info(self) -> dict[str, Any]:
        """JSON-able facts for the run record (retrained teacher accuracy, retrieval time)."""
        return dict(self.info_)

    # ---- persistence ----
    # state_dict() / load_state_dict(): nn.Module's (the trained submodules; teacher arrays
    # are non-persistent buffers rebuilt by ``setup``); objectives with queues, a private
    # optimiser or a dual variable extend them.

    def state_tensors(self) -> dict[str, Tensor]:
        """Learned state needed to replay the prediction after training (ReAugKD's maps),
        saved by core/pipeline.py as ``method.safetensors`` next to the student; default
        none. State rebuilt from the cached teacher arrays (knowledge bases) is not in it."""
        return {}

    def load_state_tensors(self, state: Mapping[str, Tensor]) -> Objective:
        """Restore what ``state_tensors`` returned; returns self. The default accepts only an
        empty state, so a file meant for another objective fails loudly."""
        if state:
            raise ValueError(
                f"{self.name}: keeps no saved state but got keys {sorted(state)}; the file "
                "belongs to another method (check the run's train.objective)"
            )
        return self

    # ---- helpers ----
    def _kd_terms(self, out: Tensor, batch: Batch, kd_weight: float) -> Tensor:
        total = out.sum() * 0.0
        if kd_weight > 0:
            total = total + kd_weight * losses.kd(out, self.t_logits[batch.idx], self.tau)
        return losses.with_hard(total, out, batch.y, self.alpha)

    def _require_class_signal(self, kd_weight: float) -> None:
        if kd_weight == 0 and self.alpha == 0:
            raise ConfigError(
                f"{self.name}: with train.{self.section}.kd_weight=0 and train.alpha=0 nothing "
                f"trains the student's head; set train.alpha > 0 (hard labels) or "
                f"train.{self.section}.kd_weight > 0"
            )

    def _require_embeddings(self, teacher: TeacherData) -> Any:
        """``teacher.H`` as given (the cached float16 memmap in a pipeline run): read it
        through ``TeacherRows`` or ``float32_blocks``, never cast whole."""
        if teacher.H is None:
            raise ValueError(f"{self.name}: needs the teacher's embeddings H (TeacherData.H)")
        return teacher.H


#: Rows per block when an objective maps all of H (SEA's PCA, ReAugKD's knowledge base).
ROW_BLOCK = 65_536


class TeacherRows:
    """Rows of the teacher's embeddings ``H`` (n, d) as float32 tensors, read when asked:
    ``rows[batch.idx]`` casts only that batch, so a float16 memmap of 1.6M x 384 is never
    copied whole (2.4 GB as float32). A row cast alone equals the same row of H cast whole,
    so training is unchanged. ``normalize``: L2-normalised rows (CompRess's anchors)."""

    def __init__(self, H: Any, normalize: bool = False) -> None:
        self.H, self.normalize = H, normalize
        self.shape = tuple(H.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> Tensor:
        device = key.device if isinstance(key, Tensor) else torch.device("cpu")
        if isinstance(self.H, Tensor):
            rows = self.H[key.to(self.H.device) if isinstance(key, Tensor) else key].float()
        else:
            k = key.cpu().numpy() if isinstance(key, Tensor) else key
            rows = torch.from_numpy(np.array(self.H[k], dtype=np.float32))  # own, writable
        rows = rows.to(device)
        return F.normalize(rows, dim=-1) if self.normalize else rows


def float32_blocks(H: Any, block: int = ROW_BLOCK) -> Iterator[np.ndarray]:
    """``H`` (n, d) as consecutive float32 row blocks (one cast block in memory at a time;
    copies, so a read-only float32 memmap gives writable blocks for ``torch.from_numpy``)."""
    for start in range(0, H.shape[0], block):
        yield np.array(H[start : start + block], dtype=np.float32)


def as_float(x: Any) -> Tensor:
    """A float32 tensor of ``x`` (a tensor stays where it is; arrays are not copied twice)."""
    if isinstance(x, Tensor):
        return x.float()
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def as_compact(x: Any) -> Tensor:
    """``as_float``, except that float16 stays float16 (targets stored compactly; the loss
    casts each batch to float32), without a copy of a float16 array."""
    if isinstance(x, Tensor):
        return x if x.dtype == torch.float16 else x.float()
    a = np.asarray(x)
    if a.dtype == np.float16:
        return torch.from_numpy(np.ascontiguousarray(a))
    return as_float(a)


def embedding_width(student: nn.Module) -> int:
    """The width of the student's penultimate embedding (its head's input)."""
    return int(cast(nn.Linear, unwrap(student).head).in_features)
