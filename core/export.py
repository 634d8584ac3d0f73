"""Ship a student: Hugging Face and ONNX exports of a finished run, each with a model card.

Why: people distil to ship a smaller, faster model, and a ``student.safetensors`` plus a JSON
only this project reads is not shippable. An export holds what a user needs and nothing of
lelp-studio: the weights in a standard format, the tokenizer for text students, the class
names, and a ``README.md`` model card (teacher, data, objective, test scores, fidelity to the
teacher, size, how to load it).

Both formats give the project's class prediction: C class log-probabilities at T = 1, the
same numbers as the objective's ``class_logits`` (``core.objectives``)
computes from the student's head. A LELP student's ``sum(S_c)`` subclass outputs are
aggregated per class at the run's tau and mapped back to T = 1 inside the exported model, so
no user ever has to know about pseudo-subclasses.

- ``onnx`` (every student kind): ``model.onnx`` from ``torch.onnx.export`` (the
  ``torch.export``-based exporter: the TorchScript one is deprecated and freezes Python
  branches while tracing), batch (and sequence) axes dynamic, checked in onnxruntime against
  PyTorch before the folder is published.
- ``hf`` (transformer students): a folder the transformers Auto classes load. The student is a
  BERT encoder with masked MEAN pooling and a linear head; ``BertForSequenceClassification``
  pools the [CLS] token through a tanh layer instead and cannot hold it, so the folder ships
  the few lines that differ (``modeling_lelp_student.py``, loaded with
  ``trust_remote_code=True``) under its own ``model_type``, so that loading it without them
  fails loudly instead of silently building a [CLS] classifier with random layers. The
  encoder alone loads with plain ``BertModel.from_pretrained`` (no remote code); the card
  shows the head in five lines.

``export_run(ws, run, fmt, out_dir, force=False)`` is what ``lelp export`` and the app call;
expected failures raise :class:`ExportError`, one line that names the fix.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import objectives
from .config import RunConfig
from .store import Workspace, WorkspaceError

FORMATS = ("hf", "onnx")
#: Written into every export; ``--force`` only ever replaces a folder that holds one.
MARKER = "export.json"
ONNX_FILE = "model.onnx"
HF_CODE_FILE = "modeling_lelp_student.py"
HF_MODEL_TYPE = "lelp_student"
#: onnxruntime must match PyTorch this closely on the export's check batch (float32 logits).
ONNX_TOLERANCE = 1e-4


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
        from .students import _masked_mean

        s = self.student
        if getattr(s, "kind", None) == "bag":
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
    from .students import META_FILE, WEIGHTS_FILE, load_student

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


# -- ONNX ------------------------------------------------------------------------------------


def example_inputs(student: nn.Module, batch: int = 2, length: int = 8) -> tuple[Tensor, ...]:
    """A small valid input for tracing and checking: features (batch, d), or token ids below
    the vocabulary size with a padded row, so the mask is exercised."""
    g = torch.Generator().manual_seed(0)
    if getattr(student, "kind", None) == "mlp":
        return (torch.randn(batch, int(student.args["in_dim"]), generator=g),)
    vocab = int(student.args["vocab_size"])
    bert = getattr(student, "bert", None)  # positions cap a transformer's sequence length
    if bert is not None:
        length = min(length, int(bert.config.max_position_embeddings))
    ids = torch.randint(1, vocab, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, length // 2 :] = 0
    ids[-1, length // 2 :] = 0
    return ids, mask


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress lines and library warnings (missing torchvision ops,
    axis renames): they are not the user's to act on, and would bury the CLI's one line."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
                yield
    finally:
        log.setLevel(level)


def export_onnx(
    module: nn.Module, inputs: Sequence[Tensor], path: str | os.PathLike[str], names: Sequence[str]
) -> Path:
    """``torch.onnx.export`` of ``module`` (positional ``inputs`` named ``names``) to one
    self-contained file with output ``logits``; axis 0 of every input is ``batch`` and axis 1
    of token inputs ``sequence``, both dynamic. Used for students here and for the teacher by
    bench/latency.py."""
    batch = torch.export.Dim("batch")
    seq = torch.export.Dim("sequence")
    shapes = {
        n: {0: batch} if x.is_floating_point() else {0: batch, 1: seq}
        for n, x in zip(names, inputs, strict=True)
    }
    path = Path(path)
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            module.eval(),
            tuple(inputs),
            str(path),
            input_names=list(names),
            output_names=["logits"],
            dynamic_shapes=shapes,
            external_data=False,
            verbose=False,
        )
    return path


def onnx_session(path: str | os.PathLike[str], threads: int | None = None) -> Any:
    """An onnxruntime CPU session for ``path`` (``threads`` intra-op threads; ORT's default
    when None)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(session: Any, inputs: dict[str, Any]) -> np.ndarray:
    """The ``logits`` (B, C) of an exported model for named inputs (tensors or arrays)."""
    feed = {i.name: np.ascontiguousarray(np.asarray(inputs[i.name])) for i in session.get_inputs()}
    return session.run(["logits"], feed)[0]


def _check_onnx(module: nn.Module, path: Path, student: nn.Module, names: Sequence[str]) -> float:
    """Max |logit difference| between onnxruntime and PyTorch on two shapes other than the
    traced one (so a frozen batch or sequence size shows); ExportError past the tolerance."""
    session = onnx_session(path)
    worst = 0.0
    for b, n in ((1, 5), (5, 13)):
        xs = example_inputs(student, b, n)
        with torch.no_grad():
            want = module(*xs).numpy()
        got = run_onnx(session, dict(zip(names, (x.numpy() for x in xs), strict=True)))
        worst = max(worst, float(np.abs(got - want).max()))
    if not np.isfinite(worst) or worst > ONNX_TOLERANCE:
        raise ExportError(
            f"the ONNX graph disagrees with PyTorch by {worst:.2e} (tolerance {ONNX_TOLERANCE}); "
            "please report this with the run's config"
        )
    return worst


# -- Hugging Face -----------------------------------------------------------------------------

# The model code shipped in an hf export. Self-contained (torch + transformers only), so a
# user needs nothing of lelp-studio; ``aggregate`` above is the same computation.
HF_MODELING = '''"""A lelp-studio transformer student for transformers' Auto classes.

Written by lelp-studio's export. The student is a BERT encoder without pooler, masked MEAN
pooling over the tokens, and a linear head. BertForSequenceClassification pools the [CLS]
token through a tanh layer instead, so it cannot hold this model: these are the lines that
differ. Load with trust_remote_code=True:

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

``logits`` are class LOG-PROBABILITIES at temperature 1 (softmax gives the probabilities,
argmax the class). A LELP student's head has sum(lelp_sizes) pseudo-subclass outputs; they
are summed per class at temperature lelp_tau and mapped back to temperature 1 here, exactly as
lelp-studio predicts (``head_logits`` returns the raw head outputs).
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput


class LelpStudentConfig(BertConfig):
    """BertConfig plus how the head's outputs become class log-probabilities."""

    model_type = "lelp_student"

    def __init__(self, head_outputs=None, lelp_head="softmax", lelp_sizes=None, lelp_tau=1.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.head_outputs = head_outputs
        self.lelp_head = lelp_head
        self.lelp_sizes = lelp_sizes
        self.lelp_tau = lelp_tau


def masked_mean(x, mask):
    """Mean over the positions where mask is 1 (padding ignored)."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def class_log_probs(u, config):
    """Class log-probabilities (B, C) at T = 1 from head outputs u (B, head_outputs)."""
    if config.lelp_head == "softmax":
        return F.log_softmax(u.float(), dim=-1)
    sizes = [int(s) for s in config.lelp_sizes]
    if config.lelp_head == "subclass":
        return F.log_softmax(u.float().view(-1, len(sizes), sizes[0]).logsumexp(dim=-1), dim=-1)
    tau = float(config.lelp_tau)
    log_q = F.log_softmax(u.float() / tau, dim=-1)
    log_p = torch.stack([b.logsumexp(dim=-1) for b in torch.split(log_q, sizes, dim=-1)], -1)
    return log_p if tau == 1.0 else F.log_softmax(tau * log_p.float(), dim=-1)


class LelpStudentModel(BertPreTrainedModel):
    """The encoder alone; ``last_hidden_state`` (B, L, h) and the mean-pooled ``pooler_output``."""

    config_class = LelpStudentConfig

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        out = BaseModelOutput(last_hidden_state=h)
        out["pooler_output"] = masked_mean(h, attention_mask)
        return out


class LelpStudentForSequenceClassification(BertPreTrainedModel):
    """Encoder + masked mean pooling + linear head; ``logits`` are class log-probabilities."""

    config_class = LelpStudentConfig

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.head_outputs or config.num_labels)
        self.post_init()

    def head_logits(self, input_ids, attention_mask=None):
        """The head's raw outputs (B, head_outputs): subclass logits for a LELP student.
        token_type_ids are not used: the student was trained without them."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.classifier(masked_mean(h, attention_mask))

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        logits = class_log_probs(self.head_logits(input_ids, attention_mask), self.config)
        loss = None if labels is None else F.nll_loss(logits, labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)
'''


def _hf_config(student: nn.Module, head: ClassHead, labels: list[str]) -> dict[str, Any]:
    """config.json: the student's BertConfig fields + label maps + the aggregation + the
    ``auto_map`` that points the Auto classes at ``modeling_lelp_student.py``."""
    from transformers import BertConfig

    bert = BertConfig.from_dict(dict(student.args["bert_config"])).to_dict()
    for k in ("architectures", "auto_map", "id2label", "label2id", "model_type", "num_labels"):
        bert.pop(k, None)
    mod = Path(HF_CODE_FILE).stem
    return {
        **bert,
        "model_type": HF_MODEL_TYPE,
        "architectures": ["LelpStudentForSequenceClassification"],
        "auto_map": {
            "AutoConfig": f"{mod}.LelpStudentConfig",
            "AutoModel": f"{mod}.LelpStudentModel",
            "AutoModelForSequenceClassification": f"{mod}.LelpStudentForSequenceClassification",
        },
        "id2label": {str(i): n for i, n in enumerate(labels)},
        "label2id": {n: i for i, n in enumerate(labels)},
        "head_outputs": int(student.args["n_out"]),
        "lelp_head": head.mode,
        "lelp_sizes": list(head.sizes) if head.sizes else None,
        "lelp_tau": float(head.tau),
        "dtype": "float32",
    }


def _write_hf(student: nn.Module, head: ClassHead, labels: list[str], out: Path) -> list[str]:
    """config.json, model.safetensors (``bert.*`` + ``classifier.*``) and the model code."""
    from safetensors.torch import save_file

    (out / "config.json").write_text(json.dumps(_hf_config(student, head, labels), indent=2))
    state = {}
    for k, v in student.state_dict().items():
        name = "classifier." + k[len("head.") :] if k.startswith("head.") else k
        state[name] = v.detach().cpu().contiguous()
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / HF_CODE_FILE).write_text(HF_MODELING)
    return ["config.json", "model.safetensors", HF_CODE_FILE]


# -- the model card -----------------------------------------------------------------------


def _fmt(x: Any, spec: str = ".2f") -> str:
    try:
        return format(float(x), spec)
    except (TypeError, ValueError):
        return "n/a"


def _teacher_line(ws: Workspace, cfg: RunConfig, key: str | None) -> str:
    """What the teacher is, from the workspace's teacher cache when it is still there."""
    t = cfg.teacher
    desc = {
        "minilm": f"all-MiniLM-L6-v2 (sentence-transformers), mean pooling + linear head, {t.mode}",
        "hf": f"transformers checkpoint `{t.path}`",
        "arrays": f"precomputed teacher arrays `{t.path}`",
        "digits-mlp": f"digits MLP (2 hidden ReLU layers of {t.hidden})",
    }.get(t.kind, t.kind)
    for row in ws.list_teacher_outputs() if key else []:
        if row["key"] == key and row["meta"].get("teacher"):
            desc = f"{row['meta']['teacher']} (teacher.kind `{t.kind}`)"
    return desc


def _objective_lines(cfg: RunConfig, head: ClassHead) -> list[str]:
    tr, sc = cfg.train, cfg.subclasses
    lines = [
        f"- objective: `{tr.objective}` (tau {tr.tau}, alpha {tr.alpha}); {tr.epochs} epochs, "
        f"lr {tr.lr}, batch {tr.batch_size}, weight decay {tr.weight_decay}, seed {tr.seed}"
    ]
    if tr.objective == "lelp":
        lines.append(
            f"- pseudo-subclasses: `{sc.method}`, S = {sc.n_subclasses} per class (sizes "
            f"{list(head.sizes or ())}), beta {sc.beta}, null space {sc.null_space}, rotate "
            f"{sc.rotate}, standardize {sc.standardize}; the head's {head.n_inputs} outputs "
            f"are summed per class at tau {head.tau} and mapped back to T = 1 in the model"
        )
    elif head.mode == "subclass":
        lines.append(
            f"- the head's {head.n_inputs} outputs are {head.sizes[0] if head.sizes else '?'} "
            "subclass logits per class; class logit = logsumexp of its block, in the model"
        )
    return lines


def _measured_cost(ws: Workspace, run: dict[str, Any]) -> dict[str, Any] | None:
    """Latency ``core.cost`` cached for this run (Compare's Cost section), or None. Read
    only: timing is the Compare page's and bench/latency.py's job, not an export's."""
    try:
        from .cost import cached_cost

        have = cached_cost(ws, run)
    except Exception:  # a missing or unreadable cache just means "not measured"
        return None
    keep = ("params", "size_bytes", "latency_ms", "machine")
    out = {k: {f: v.get(f) for f in keep} for k, v in have.items() if isinstance(v, dict)}
    return out if (out.get("student") or {}).get("latency_ms") else None


def _ratio(teacher_ms: Any, student_ms: Any) -> str:
    try:
        return f"{float(teacher_ms) / float(student_ms):.1f}x"
    except (TypeError, ValueError, ZeroDivisionError):
        return "n/a"


def _latency_text(cost: dict[str, Any] | None) -> str:
    """The card's latency table (student vs teacher, ms per batch), or how to measure it."""
    if not cost:
        return (
            "Latency: not measured for this run. The Compare page's Cost section measures it "
            "(cached per run), and `python bench/latency.py` times teacher and students in "
            "PyTorch and onnxruntime at batch 1 and 64 (this project's figures: "
            "bench/results/latency.md)."
        )
    teacher = (cost.get("teacher") or {}).get("latency_ms") or {}
    rows = [
        "| model | device | ms, batch 1 | ms, batch 64 | faster than the teacher (1 / 64) |",
        "|---|---|---|---|---|",
    ]
    for role in ("teacher", "student"):
        for dev, ms in ((cost.get(role) or {}).get("latency_ms") or {}).items():
            t = teacher.get(dev) or {}
            ratio = [_ratio(t.get(b), ms.get(b)) for b in ("1", "64")]
            rows.append(
                f"| {role} | {dev} | {_fmt(ms.get('1'), '.3f')} | {_fmt(ms.get('64'), '.3f')} "
                f"| {' / '.join(ratio) if role == 'student' else ''} |"
            )
    machine = (cost.get("student") or {}).get("machine") or "this machine"
    return "\n".join(
        [f"Latency of the PyTorch forward pass, measured by lelp-studio on {machine}:", "", *rows]
    )


def _load_snippet(info: dict[str, Any], max_length: int) -> str:
    """Runnable Python that loads the export from ``folder`` and classifies one input (the
    tests execute it)."""
    fmt, kind, labels = info["format"], info["student_kind"], info["labels"]
    folder = f'folder = "{info["folder"]}"  # this folder'
    if fmt == "hf":
        return f"""```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

{folder}
# trust_remote_code: modeling_lelp_student.py in this folder (mean pooling, class aggregation)
tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
batch = tok(["some text"], padding=True, truncation=True, max_length={max_length},
            return_tensors="pt")
with torch.no_grad():
    log_p = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
print([model.config.id2label[i] for i in log_p.argmax(-1).tolist()], log_p.exp())
```

Without remote code: the encoder is a plain BERT, the rest is a masked mean and a linear
layer (for a LELP head, then `class_log_probs` of `modeling_lelp_student.py`).

```python
import torch
from safetensors.torch import load_file
from transformers import BertModel

bert = BertModel.from_pretrained(folder, add_pooling_layer=False)  # warns about model_type
w = load_file(f"{{folder}}/model.safetensors")
with torch.no_grad():
    h = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    m = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (h.last_hidden_state * m).sum(1) / m.sum(1).clamp_min(1.0)
    u = pooled @ w["classifier.weight"].T + w["classifier.bias"]
print(torch.log_softmax(u, -1) if u.shape[-1] == {len(labels)} else u)
```"""
    if kind == "mlp":
        n = info["inputs"]["x"]
        pre = f"features = np.zeros((1, {n}), dtype=np.float32)  # your rows, unscaled\n"
        feed, imp = '{"x": features}', ""
    else:
        pre = (
            "tok = AutoTokenizer.from_pretrained(folder)\n"
            f'batch = tok(["some text"], padding=True, truncation=True, max_length={max_length},'
            ' return_tensors="np")\n'
        )
        feed = '{k: batch[k] for k in ("input_ids", "attention_mask")}'
        imp = "from transformers import AutoTokenizer\n"
    return f"""```python
import numpy as np
import onnxruntime as ort
{imp}
{folder}
labels = {labels!r}
{pre}session = ort.InferenceSession(f"{{folder}}/{ONNX_FILE}", providers=["CPUExecutionProvider"])
(log_p,) = session.run(["logits"], {feed})
print([labels[i] for i in log_p.argmax(-1)], np.exp(log_p))
```"""


def model_card(info: dict[str, Any], run: dict[str, Any], cfg: RunConfig, head: ClassHead) -> str:
    """The export's README.md: what it is, how good, how big, how to load it."""
    m = run.get("metrics") or {}
    s, t, sel = m.get("student") or {}, m.get("teacher") or {}, m.get("selection") or {}
    s_sel, s_train = m.get("student_select") or {}, m.get("student_train") or {}
    split = (run.get("artifacts") or {}).get("eval_split", "test")
    labels, fmt, kind = info["labels"], info["format"], info["student_kind"]
    size = info["size"]
    diff = (
        [
            "- onnxruntime vs PyTorch at export: max |logit difference| "
            f"{info['onnx_max_abs_diff']:.1e}"
        ]
        if "onnx_max_abs_diff" in info
        else []
    )
    lat = _latency_text(info.get("cost"))
    sel_line = (
        f"`{sel.get('split', '?')}` ({sel.get('n', '?')} rows, {sel.get('source', '?')}); it "
        f"chose {sel.get('chooses', 'the monitored epochs')}. The {split} split was scored "
        "once, after training."
    )
    kind_line = {
        "mlp": f"MLP over {info['inputs'].get('x')} numeric features",
        "bag": "mean of token embeddings over the teacher's tokenizer, then an MLP",
        "transformer": "small BERT encoder, masked mean pooling, linear head",
    }[kind]
    lines = [
        f"# {info['name']}",
        "",
        f"A distilled **{kind}** student ({kind_line}) for {len(labels)}-class classification "
        f"({', '.join(f'`{x}`' for x in labels)}), exported by lelp-studio as **{fmt}** "
        f"from run `{info['run_id']}`.",
        "",
        f"Outputs: `logits` (batch, {len(labels)}): class log-probabilities at temperature 1 "
        "(softmax gives probabilities, argmax the class), the numbers lelp-studio scores."
        + (
            f" The head's {head.n_inputs} pseudo-subclass outputs are aggregated per class "
            "inside the model."
            if head.mode != "softmax"
            else ""
        ),
        "",
        "## Teacher and data",
        "",
        f"- teacher: {info['teacher']}; accuracy {_fmt(t.get('accuracy'))}% on {split}, "
        f"{_fmt(t.get('select_accuracy'))}% on the selection split",
        f"- data: `{cfg.dataset.source}`"
        + (f" (max_train {cfg.dataset.max_train})" if cfg.dataset.max_train else "")
        + f", classes {labels}",
        f"- selection split: {sel_line}",
        "",
        "## Objective",
        "",
        *_objective_lines(cfg, head),
        f"- student: `{kind}`, {json.dumps(cfg.student.model_dump(mode='json'))}",
        "",
        f"## Scores ({split} split, scored once)",
        "",
        "| | accuracy % | agreement with teacher % | KL(teacher ‖ student) | ECE |",
        "|---|---|---|---|---|",
        f"| {split} | {_fmt(s.get('accuracy'))} | {_fmt(s.get('agreement'))} | "
        f"{_fmt(s.get('kl'), '.4f')} | {_fmt(s.get('ece'), '.4f')} |",
        f"| selection ({sel.get('split', 'dev')}) | {_fmt(s_sel.get('accuracy'))} | "
        f"{_fmt(s_sel.get('agreement'))} | {_fmt(s_sel.get('kl'), '.4f')} | "
        f"{_fmt(s_sel.get('ece'), '.4f')} |",
        f"| train | {_fmt(s_train.get('accuracy'))} | {_fmt(s_train.get('agreement'))} | "
        f"{_fmt(s_train.get('kl'), '.4f')} | |",
        "",
        "Fidelity to the teacher is the agreement (same top class) and the KL divergence of the "
        "student's class distribution from the teacher's, both at T = 1.",
        "",
        "## Size and latency",
        "",
        f"- parameters: {size['parameters']:,}",
        f"- files: {size['files_bytes']:,} bytes "
        f"({', '.join(f'{k} {v:,}' for k, v in size['file_bytes'].items())})",
        *diff,
        "",
        lat,
        "",
        "## How to load it",
        "",
        _load_snippet(info, int(cfg.student.max_length)),
        "",
        "Inputs: "
        + (
            f"`x` float32 (batch, {info['inputs']['x']}): the dataset's feature columns, as "
            "given (the student scales nothing)."
            if kind == "mlp"
            else f"`input_ids`, `attention_mask` int64 (batch, sequence) from the tokenizer in "
            f"this folder (the teacher's), truncated to {cfg.student.max_length} tokens."
        ),
        "",
        f"Exported {info['created']} by lelp-studio; `{MARKER}` holds these facts as JSON.",
        "",
    ]
    return "\n".join(lines)


# -- the folder -------------------------------------------------------------------------------


#: Where the folder is chosen, in the CLI and the app (messages name both).
_WHERE = "--out in the CLI, the Folder field on Compare"


def _check_out(out: Path, force: bool) -> None:
    """Refuse a destination that exists and is not empty unless ``force`` and it holds a
    previous export: --force never deletes a folder this module did not write."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; choose a new or empty folder ({_WHERE})")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise ExportError(
            f"export folder {out} exists and is not empty; choose a new folder, or replace the "
            f"export in it ({_WHERE}; replacing: --force, or Compare's Replace box)"
        )
    if not (out / MARKER).is_file():
        raise ExportError(
            f"export folder {out} holds files that are not a lelp export (no {MARKER}); "
            f"only a previous export is ever replaced: choose a new folder ({_WHERE})"
        )


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished folder into place; a previous export there is replaced whole."""
    if out.is_dir():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _labels(cfg: RunConfig, n_classes: int) -> tuple[list[str], str]:
    """The dataset's class names (loaded from the run's source), or ``LABEL_i`` with a note
    when the source cannot be read any more."""
    from .data import DataError
    from .pipeline import get_dataset

    try:
        names = [str(x) for x in get_dataset(cfg.dataset).label_names]
    except (DataError, OSError) as err:
        return [f"LABEL_{i}" for i in range(n_classes)], f"class names unavailable ({err})"
    if len(names) != n_classes:
        return [f"LABEL_{i}" for i in range(n_classes)], "the dataset changed since the run"
    return names, ""


def export_run(
    ws: Workspace,
    run: dict[str, Any],
    fmt: str,
    out_dir: str | os.PathLike[str],
    force: bool = False,
) -> Path:
    """Export ``run``'s student as ``fmt`` (``hf`` or ``onnx``) into ``out_dir``; returns it.

    The folder is built beside ``out_dir`` and moved into place only when complete (an ONNX
    graph that disagrees with PyTorch never lands). ``force`` replaces a previous export in
    ``out_dir``; a non-empty folder of anything else is always refused. Raises
    :class:`ExportError` for an unknown format, a run without usable weights, an hf export
    of a non-transformer student, or an occupied destination.
    """
    from .students import WEIGHTS_FILE, unwrap

    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r} is not supported; choose one of: {', '.join(FORMATS)}")
    out = Path(out_dir).expanduser().resolve()
    _check_out(out, force)
    try:
        cfg = RunConfig.model_validate(run["config"])
    except ValueError as err:  # pydantic's ValidationError: a record from an older schema
        why = " ".join(str(err).split())[:160]
        raise ExportError(
            f"run {run.get('run_id')}: its recorded config no longer validates ({why}); "
            "re-run it with this version"
        ) from None
    kind = cfg.student.kind
    if fmt == "hf" and kind != "transformer":
        raise ExportError(
            f"run {run.get('run_id')} has a {kind!r} student; the hf format holds transformer "
            "students only. Supported formats for it: onnx"
        )
    student, meta = load_run_student(ws, run)
    student = unwrap(student).eval()
    if getattr(student, "kind", kind) != kind:
        raise ExportError(
            f"run {run.get('run_id')}: its config names a {kind} student but the saved weights "
            f"are a {student.kind} student; the run folder mixes runs: re-run it"
        )
    head = class_head(cfg, meta, int(student.args["n_out"]))
    labels, label_note = _labels(cfg, head.n_classes)
    module = classifier(student, head)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        info: dict[str, Any] = {
            "format": fmt,
            "name": run.get("name") or run.get("run_id"),
            "run_id": run.get("run_id"),
            "student_kind": kind,
            "labels": labels,
            "head": asdict(head),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "teacher": _teacher_line(ws, cfg, (run.get("artifacts") or {}).get("teacher_key")),
            "output": "logits: class log-probabilities at T = 1 (batch, C)",
            "folder": out.name,
        }
        if label_note:
            info["labels_note"] = label_note
        cost = _measured_cost(ws, run)
        if cost:
            info["cost"] = cost
        names = ["x"] if kind == "mlp" else ["input_ids", "attention_mask"]
        info["inputs"] = (
            {"x": int(student.args["in_dim"])}
            if kind == "mlp"
            else {"input_ids": "int64 (batch, sequence)", "attention_mask": "int64"}
        )
        if fmt == "onnx":
            export_onnx(module, example_inputs(student), tmp / ONNX_FILE, names)
            info["onnx_max_abs_diff"] = _check_onnx(module, tmp / ONNX_FILE, student, names)
            files = [ONNX_FILE]
        else:
            files = _write_hf(student, head, labels, tmp)
        if kind != "mlp":
            files += _save_tokenizer(cfg, tmp)
        params = sum(int(p.numel()) for p in student.parameters())
        file_bytes = {f: (tmp / f).stat().st_size for f in files if (tmp / f).is_file()}
        student_file = ws.artifact_path(run, "student_dir")
        info["size"] = {
            "parameters": params,
            "file_bytes": file_bytes,
            "files_bytes": sum(file_bytes.values()),
            "student_safetensors_bytes": (student_file / WEIGHTS_FILE).stat().st_size
            if student_file is not None
            else None,
        }
        (tmp / "README.md").write_text(model_card(info, run, cfg, head), encoding="utf-8")
        (tmp / MARKER).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
        _check_out(out, force)  # again: another export may have landed meanwhile
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _save_tokenizer(cfg: RunConfig, out: Path) -> list[str]:
    """The teacher's tokenizer (the student's token ids), truncating at the student's
    ``max_length`` by default, as lelp-studio encoded its inputs."""
    from .teachers import load_tokenizer

    tok = load_tokenizer(cfg.teacher)
    if tok is None:  # pragma: no cover - prepare() refuses text students without one
        raise ExportError(f"teacher.kind {cfg.teacher.kind!r} has no tokenizer to ship")
    tok.model_max_length = int(cfg.student.max_length)
    saved = tok.save_pretrained(str(out))
    return sorted({Path(p).name for p in saved if Path(p).is_file()})
