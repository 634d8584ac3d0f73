"""The model card (``README.md``) of an export: teacher, data, objective, scores, fidelity,
size, measured latency and how to load it."""

from __future__ import annotations

import json
from typing import Any

from .. import cost as cost_model
from ..analysis.data_view import data_text
from ..config import RunConfig
from ..store import Workspace
from .model import MARKER, ONNX_FILE, ClassHead


def _fmt(x: Any, spec: str = ".2f") -> str:
    try:
        return format(float(x), spec)
    except (TypeError, ValueError):
        return "n/a"


def teacher_line(ws: Workspace, cfg: RunConfig, key: str | None) -> str:
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


def measured_cost(ws: Workspace, run: dict[str, Any]) -> dict[str, Any] | None:
    """Latency ``core.cost`` cached for this run (Compare's Cost section), or None. Read
    only: timing is the Compare page's and bench/latency.py's job, not an export's."""
    try:
        have = cost_model.cached_cost(ws, run)
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
        f"- trained on: {data_text(m.get('data'))}"
        + (f" (transfer file `{cfg.dataset.transfer}`)" if cfg.dataset.transfer else ""),
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
