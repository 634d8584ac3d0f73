"""What an export holds: the student plus the head that turns its outputs into the project's
class prediction (C class log-probabilities at T = 1), loaded from a finished run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import objectives
from ..config import RunConfig
from ..store import Workspace, WorkspaceError
from ..students import (
    META_FILE,
    WEIGHTS_FILE,
    BagOfEmbeddingsStudent,
    _masked_mean,
    load_student,
)

FORMATS = ("hf", "onnx")
#: Written into every export; ``--force`` only ever replaces a folder that holds one.
MARKER = "export.json"
ONNX_FILE = "model.onnx"
HF_CODE_FILE = "modeling_lelp_student.py"
HF_MODEL_TYPE = "lelp_student"
#: onnxruntime must match PyTorch this closely on the export's check batch (float32 logits).
ONNX_TOLERANCE = 1e-4


def student_args(student: nn.Module) -> dict[str, Any]:
    """The constructor arguments every student keeps in ``args`` (what ``load_student``
    rebuilds it from); nn.Module's attribute typing knows only tensors and modules."""
    return cast("dict[str, Any]", student.args)


class ExportError(WorkspaceError):
    """An export that cannot be made as asked; the message names the fix.

    A ``WorkspaceError`` so the CLI and the app already show it as one line
    (``core.errors.user_errors``): most causes are the workspace's (unknown run, missing or
    damaged weights)."""


# -- how the head's outputs become the project's class prediction -------------------------


@dataclass(frozen=True)
class ClassHead:
    """How a student's head outputs become C class log-probabilities at T = 1.

    ``mode``: ``softmax`` (C outputs: log_softmax), ``lelp`` (``sum(sizes)`` subclass outputs:
    ``objectives.LELP.class_logits``, i.e. class sums of softmax(u / tau), then T = 1) or
    ``subclass`` (Subclass Distillation: logsumexp of each class's S outputs, then
    log_softmax; ``losses.subclass_log_probs``). ``sizes``: outputs per class.
    """

    mode: str
    n_classes: int
    sizes: tuple[int, ...] | None = None
    tau: float = 1.0

    @property
    def n_inputs(self) -> int:
        """Head outputs this aggregation expects."""
        return int(sum(self.sizes)) if self.sizes else self.n_classes


def aggregate(u: Tensor, head: ClassHead) -> Tensor:
    """Class log-probabilities (B, C) at T = 1 from head outputs ``u`` (B, n_out).

    The same operations, in the same order, as the objectives' ``class_logits`` (lelp, hard, kd)
    and ``core.losses.subclass_log_probs``, so PyTorch gives bitwise the project's numbers;
    written with static slices so ``torch.onnx.export`` puts it in the graph."""
    if head.mode == "softmax":
        return F.log_softmax(u.float(), dim=-1)
    assert head.sizes is not None
    if head.mode == "subclass":
        s = head.sizes[0]
        return F.log_softmax(u.float().view(-1, head.n_classes, s).logsumexp(dim=-1), dim=-1)
    log_q = F.log_softmax(u.float() / head.tau, dim=-1)
    blocks = torch.split(log_q, list(head.sizes), dim=-1)
    log_p = torch.stack([b.logsumexp(dim=-1) for b in blocks], dim=-1)
    if head.tau == 1.0:
        return log_p
    return F.log_softmax(float(head.tau) * log_p.float(), dim=-1)


def class_head(cfg: RunConfig, meta: dict[str, Any], n_out: int) -> ClassHead:
    """The run's prediction rule for a head of ``n_out`` outputs, or ExportError for an
    objective whose prediction an export cannot carry (ReAugKD retrieves from the teacher's
    knowledge base at inference) or a head that does not fit the objective."""
    objective = cfg.train.objective
    if objective == "lelp":
        sizes = tuple(int(s) for s in meta.get("sizes") or ())
        if not sizes:
            raise ExportError(
                "this LELP run's student.json has no subclass sizes, so its subclass outputs "
                "cannot be aggregated per class; re-run the distillation"
            )
        head = ClassHead("lelp", len(sizes), sizes, float(cfg.train.tau))
    elif objective == "subclass-distill":
        s = int(cfg.train.subclass_distill.n_subclasses)
        head = ClassHead("subclass", max(n_out // s, 1), (s,) * max(n_out // s, 1))
    elif objective in objectives.REGISTRY:
        cls = objectives.get(objective)
        if cls.uses_embeddings_to_predict:
            raise ExportError(
                f"objective {objective!r} predicts with a retrieval over the teacher's "
                "training embeddings, which an exported model cannot carry; export a run of "
                "another objective (hard, kd, lelp, ...)"
            )
        if cls.class_logits is not objectives.Objective.class_logits:  # pragma: no cover
            raise ExportError(f"export does not know how objective {objective!r} predicts")
        head = ClassHead("softmax", n_out)
    else:  # pragma: no cover - the config schema lists the objectives
        raise ExportError(f"export does not know objective {objective!r}")
    if head.n_inputs != n_out:
        raise ExportError(
            f"the student has {n_out} outputs but its {objective} head needs {head.n_inputs}; "
            "the run folder mixes files of different runs: re-run it"
        )
    return head


class FeatureClassifier(nn.Module):
    """An MLP student + its class aggregation, with one positional input ``x`` (B, d) float32:
    the graph ``torch.onnx.export`` traces."""

    def __init__(self, student: nn.Module, head: ClassHead) -> None:
        super().__init__()
        self.student, self.head = student, head

    def forward(self, x: Tensor) -> Tensor:
        return aggregate(self.student({"x": x}), self.head)


class TokenClassifier(nn.Module):
    """A text student (bag or transformer) + its class aggregation, with positional inputs
    ``input_ids`` and ``attention_mask`` (B, L) int64.

    The bag student's CPU path selects the real tokens by a boolean mask (a data-dependent
    shape an ONNX graph cannot hold); here it takes the masked mean over the padded batch,
    the same mean (``core.students._masked_mean``) within float rounding."""

    def __init__(self, student: nn.Module, head: ClassHead) -> None:
        super().__init__()
        self.student, self.head = student, head

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        s = self.student
        if isinstance(s, BagOfEmbeddingsStudent):
            pooled = _masked_mean(F.embedding(input_ids, s.embedding.weight), attention_mask)
            out = s.head(s.trunk(pooled))
        else:
            out = s({"input_ids": input_ids, "attention_mask": attention_mask})
        return aggregate(out, self.head)


def classifier(student: nn.Module, head: ClassHead) -> nn.Module:
    """The exportable module for ``student``: features in, or token ids and mask in; C class
    log-probabilities out. Eval mode, CPU."""
    cls = FeatureClassifier if getattr(student, "kind", None) == "mlp" else TokenClassifier
    return cls(student, head).eval().cpu()


# -- loading a run ------------------------------------------------------------------------


def find_run(ws: Workspace, run_id: str) -> dict[str, Any]:
    """The run record of ``run_id``, or ExportError naming how to list the runs."""
    try:
        return ws.load_run(run_id)
    except WorkspaceError as err:
        if "no run with id" in str(err):
            raise ExportError(f"{err}; `lelp runs -w {ws.root}` lists the finished runs") from None
        raise


def load_run_student(ws: Workspace, run: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The run's student (CPU, eval mode) and the meta saved with it; ExportError when its
    folder, weights or JSON are missing or damaged (never a traceback from safetensors)."""
    rid = run.get("run_id", "?")
    where = ws.artifact_path(run, "student_dir")
    if where is None:
        raise ExportError(f"run {rid} records no student folder; re-run the distillation")
    missing = [n for n in (WEIGHTS_FILE, META_FILE) if not (where / n).is_file()]
    if missing:
        raise ExportError(
            f"run {rid}: the student weights are missing ({', '.join(missing)} not in {where}); "
            "re-run the distillation (`lelp doctor` lists what else is gone)"
        )
    try:
        return load_student(where)
    except Exception as err:  # safetensors, JSON and shape errors have no common base
        why = " ".join(str(err).split())[:160]
        raise ExportError(
            f"run {rid}: the student weights in {where} are damaged ({type(err).__name__}: "
            f"{why}); re-run the distillation"
        ) from None
