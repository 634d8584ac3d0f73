"""Method parameters as widget descriptions: one ``ParamField`` per field of a ``TrainSpec``
sub-section, so a field added there appears on the Distill page with no page edit."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from .config import TrainSpec

PARAM_HELP: dict[str, str] = {
    "weight": "Weight of this method's own loss term (0 switches it off).",
    "kd_weight": "Weight of the usual KD loss (teacher class probabilities at train tau) "
    "added to this method's term; 0 needs train alpha > 0 for class signal.",
    "normalize": "L2-normalise both embeddings before the MSE (matches directions, not scale).",
    "sample_size": "Training rows the PCA reducing the teacher embedding is fitted on.",
    "sampling": "How those rows are picked: at random, or spread out (k-means++ seeding).",
    "queues": "two: each network keeps its own anchor queue; one: the teacher's queue for "
    "both (the student embedding mapped to the teacher's width).",
    "queue_size": "Anchors kept in each queue; empty = min(128000, training rows).",
    "temperature": "Softmax temperature of the similarity distributions (lower = sharper).",
    "k": "Knowledge-base neighbours retrieved for each prediction.",
    "lam": "Weight of the retrieved neighbours' soft labels in the final prediction "
    "(0 = the student alone, 1 = retrieval alone).",
    "retrieval_temperature": "Temperature of the softmax over neighbour similarities that "
    "weights their soft labels.",
    "proj_epochs": "Epochs of supervised-contrastive training of the teacher-side projection.",
    "proj_lr": "Adam learning rate of that projection.",
    "supcon_temperature": "Temperature of the supervised contrastive loss.",
    "n_subclasses": "Subclass outputs per class of the retrained teacher head (S).",
    "tau": "Distillation temperature T of this method (the paper uses 4).",
    "alpha": "Weight of the soft (subclass) loss; 1 - alpha goes to the hard labels.",
    "aux_weight": "Weight of the auxiliary loss that spreads examples over subclasses.",
    "aux_temperature": "Temperature of the auxiliary loss.",
    "head_epochs": "Epochs of retraining the teacher head on the cached embeddings.",
    "head_lr": "Adam learning rate of the retrained teacher head.",
    "hard_weight": "Weight of the hard-label cross-entropy.",
    "schedule": "constant: soft weight stays at its start value; linear: decays from start "
    "to end over training.",
    "soft_start": "Soft (KD) loss weight at the start of training (the paper: 4).",
    "soft_end": "Soft loss weight at the end of training with the linear schedule (paper: 1).",
    "remap": "Start the student from the teacher's layers (the paper found it hurts).",
    "top_k": "Teacher classes the gate may boost besides the true class; empty = automatic.",
    "boost": "Largest amount added to the boosted logits (times the gate value g(x)).",
    "budget": "Mean gate value allowed at the start; it decays to 0 on a cosine schedule.",
    "gate_hidden": "Hidden units of the gating network.",
    "gate_lr": "Learning rate of the gating network (its own optimiser).",
    "dual_lr": "Step size of the dual variable that enforces the budget.",
    "variant": "kl: KL between each teacher head's attention rows and the mix of student "
    "heads (the paper's best); l2: distance between L2-normalised flattened maps.",
    "teacher_layer": "Teacher layer whose attention maps are matched (-1 = the last).",
    "student_layer": "Student layer that matches them (-1 = the last).",
    "max_cache_mb": "Memory allowed for the teacher's attention maps of the training rows "
    "(float16); lower student max_length or the training rows if they do not fit.",
}


@dataclass(frozen=True)
class ParamField:
    """How one pydantic field becomes one widget: ``kind`` is ``int``, ``float``, ``choice``
    or ``bool``; ``low``/``high`` are inclusive bounds (strict pydantic bounds made inclusive);
    ``optional`` means None is allowed (an empty number input = the field's automatic value).
    """

    name: str
    kind: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    options: tuple[Any, ...] = ()
    optional: bool = False


def _bounds(kind: str, metadata: list[Any]) -> tuple[float | None, float | None]:
    low = high = None
    for m in metadata:
        if getattr(m, "ge", None) is not None:
            low = m.ge
        if getattr(m, "gt", None) is not None:
            # Streamlit bounds are inclusive: just above gt (1e-6 relative for floats, far
            # below any learning rate or temperature worth trying).
            low = m.gt + 1 if kind == "int" else float(m.gt) + 1e-6 * max(1.0, abs(m.gt))
        if getattr(m, "le", None) is not None:
            high = m.le
        if getattr(m, "lt", None) is not None:
            high = m.lt - 1 if kind == "int" else float(m.lt) - 1e-6 * max(1.0, abs(m.lt))
    return low, high


def param_fields(model: type[BaseModel], helps: dict[str, str] | None = None) -> list[ParamField]:
    """One ``ParamField`` per field of a (flat) pydantic settings model, in declaration order.

    Why generic: each method's sub-section of ``TrainSpec`` is the single source of its
    parameters, so a field added there appears on the Distill page with no page edit. The help
    text is the field's description, else ``helps[name]``, else a generic line.
    """
    helps = PARAM_HELP if helps is None else helps
    out = []
    for name, f in model.model_fields.items():
        ann, optional = f.annotation, False
        args = [a for a in get_args(ann) if a is not type(None)]
        if get_origin(ann) in (Union, UnionType) and len(args) == 1:
            ann, optional = args[0], True
        if get_origin(ann) is Literal:
            kind, options = "choice", tuple(get_args(ann))
        elif ann is bool:
            kind, options = "bool", ()
        elif ann in (int, float):
            kind, options = ann.__name__, ()
        else:
            raise TypeError(
                f"param_fields: {model.__name__}.{name} has type {ann!r}; only int, float, "
                "bool, Literal and their Optional forms become widgets"
            )
        low, high = _bounds(kind, f.metadata) if kind in ("int", "float") else (None, None)
        text = f.description or helps.get(name) or f"{model.__name__}.{name}"
        out.append(
            ParamField(name, kind, f.default, text, low, high, options, optional),
        )
    return out


def float_step(default: Any) -> float:
    """A step one decade below the default (lr 1e-3 steps by 1e-4, a weight 1.0 by 0.1)."""
    if not default:
        return 0.1
    return 10.0 ** (math.floor(math.log10(abs(float(default)))) - 1)


def range_help(p: ParamField) -> str:
    """The field's help with its allowed range: Streamlit does not apply a number typed
    outside the widget's bounds, so the user must be able to see them."""
    if p.kind not in ("int", "float") or (p.low is None and p.high is None):
        return p.help
    if p.low is not None and p.high is not None:
        return f"{p.help} Allowed: from {p.low:g} to {p.high:g}."
    if p.low is not None:
        return f"{p.help} Allowed: at least {p.low:g}."
    return f"{p.help} Allowed: at most {p.high:g}."


def train_section(objective: str) -> str | None:
    """The ``TrainSpec`` sub-section holding an objective's parameters (``subclass-distill``
    -> ``subclass_distill``); None for objectives without one (hard, kd, lelp)."""
    return objective.replace("-", "_") if section_model(objective) is not None else None


def section_model(objective: str) -> type[BaseModel] | None:
    """The pydantic model of an objective's ``TrainSpec`` sub-section, or None."""

    f = TrainSpec.model_fields.get(objective.replace("-", "_"))
    ann = None if f is None else f.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
