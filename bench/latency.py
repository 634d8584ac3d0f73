"""Latency of the teacher against its students on this machine (issue 17, point 5).

People distil to ship a faster model; this measures how much faster, in the runtimes a
student ships to: PyTorch (the project's own forward and class aggregation) and onnxruntime
(the graph ``lelp_studio.export`` writes, class aggregation inside). One run times every model of a
dataset interleaved, round after round, so the machine's load falls on all of them alike,
and reports each as a ratio to the teacher timed in the same run, same runtime, same batch:

- **text** (the bundled text demo, test split): the MiniLM-L6 teacher (mean pooling + a
  linear head, max 128 tokens) against the reference bag student, the bag student with a
  LELP head (S = 4 per class, aggregated in the graph), a small random-init transformer
  (StudentSpec defaults: 2 layers, width 64) and a transformer initialised from the
  teacher's first 2 layers (width 384); students read at most 64 tokens (StudentSpec);
- **digits** (digits-bin test features): the digits-MLP teacher (64-128-128-2) against the
  MLP student (64-64-64-2) with a plain and a LELP head.

Batch 1 is one request at a time (each text padded to its own length, cycling over
``--texts`` texts); batch 64 is ``--batches`` batches of 64 texts, padded to their longest.
Tokenising is left out: teacher and students share the tokenizer. Students are randomly
initialised (seeded): latency depends on the architecture, not on the trained weights.
Medians of all timed calls. One thread each for torch and onnxruntime by default: on a
shared 2-core machine a second thread often waits for a busy core, and small operations then
pay milliseconds at every barrier (seen here: a 64 x 64 MLP at 18 ms instead of 0.04 ms); pass
``--threads N`` on a dedicated machine.

    python bench/latency.py                            # both datasets, results in bench/results/
    python bench/latency.py --only digits --rounds 1 --out /tmp/lat   # a seconds-long look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make ``core`` importable
    sys.path.insert(0, str(REPO))

BATCHES = (1, 64)
BACKENDS = ("pytorch", "onnxruntime")


@dataclass
class Model:
    """One timed model: a PyTorch callable on named inputs, its exportable twin, and the
    inputs it reads (its own tokenisation length)."""

    name: str
    role: str  # "teacher" or "student"
    torch_fn: Callable[[dict[str, Any]], Any]
    graph: Any  # nn.Module with positional inputs named ``input_names``
    input_names: list[str]
    params: int
    max_length: int | None = None
    onnx_bytes: int = 0
    session: Any = None
    inputs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


def machine() -> dict[str, Any]:
    """bench/machine.py's facts plus the runtimes timed here."""
    import onnxruntime
    import transformers

    from bench.machine import machine_info

    return machine_info() | {
        "onnxruntime": onnxruntime.__version__,
        "transformers": transformers.__version__,
    }


def _params(m: Any) -> int:
    return sum(int(p.numel()) for p in m.parameters())


# --------------------------------------------------------------------------- models


def _student(spec_kw: dict[str, Any], n_out: int, head: Any, **build: Any) -> tuple[Any, Any]:
    """(PyTorch forward on named inputs, export graph) of a random-init student as the
    project predicts with it: the student's own forward, then ``lelp_studio.export.aggregate``."""
    import torch

    from lelp_studio.config import StudentSpec
    from lelp_studio.export import aggregate, classifier
    from lelp_studio.students import build_student

    torch.manual_seed(0)
    student = build_student(StudentSpec(**spec_kw), n_out, **build).eval()

    def fn(batch: dict[str, Any]) -> Any:
        return aggregate(student(batch), head)

    return (fn, classifier(student, head)), student


def text_models(n_classes: int, s: int = 4) -> tuple[list[Model], Any, Any]:
    """The MiniLM teacher and the text students; returns (models, teacher tokenizer, note)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from lelp_studio.config import TeacherSpec
    from lelp_studio.export import ClassHead
    from lelp_studio.teachers import load_teacher_encoder, load_tokenizer, mean_pool

    spec = TeacherSpec(kind="minilm")
    encoder = load_teacher_encoder(spec).eval()
    tok = load_tokenizer(spec)
    torch.manual_seed(0)

    class Teacher(nn.Module):
        """MiniLM + mean pooling + linear head, as lelp_studio.teachers computes Z (log-softmax
        added so every model returns class log-probabilities)."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = nn.Linear(int(encoder.config.hidden_size), n_classes)

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
            return F.log_softmax(self.head(mean_pool(h.last_hidden_state, attention_mask)), -1)

    teacher = Teacher().eval()
    names = ["input_ids", "attention_mask"]
    models = [
        Model(
            "teacher: MiniLM-L6 + head",
            "teacher",
            lambda b: teacher(b["input_ids"], b["attention_mask"]),
            teacher,
            names,
            _params(teacher),
            max_length=spec.max_length,
        )
    ]
    plain, lelp = ClassHead("softmax", n_classes), ClassHead("lelp", n_classes, (s,) * n_classes)
    vocab = len(tok)
    for name, kw, head, extra in (
        ("bag (64-d, reference)", {"kind": "bag"}, plain, {}),
        (f"bag, LELP head (S={s})", {"kind": "bag"}, lelp, {}),
        ("transformer (2 x 64, random init)", {"kind": "transformer"}, plain, {}),
        (
            "transformer (2 of 6 teacher layers, 384)",
            {"kind": "transformer", "init": "teacher", "layers": 2},
            plain,
            {"teacher_model": encoder},
        ),
    ):
        (fn, graph), student = _student(kw, head.n_inputs, head, vocab_size=vocab, **extra)
        models.append(Model(name, "student", fn, graph, names, _params(student), max_length=64))
    return models, tok, "MiniLM-L6 teacher, head random (latency only)"


def digits_models(in_dim: int, n_classes: int, s: int = 4) -> list[Model]:
    """The digits-MLP teacher (the digits-mlp architecture) and MLP students."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from lelp_studio.export import ClassHead

    torch.manual_seed(0)
    k = 128
    body = nn.Sequential(nn.Linear(in_dim, k), nn.ReLU(), nn.Linear(k, k), nn.ReLU())
    net = nn.Sequential(body, nn.Linear(k, n_classes)).eval()

    class Teacher(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            return F.log_softmax(self.net(x), -1)

    teacher = Teacher().eval()
    models = [
        Model(
            "teacher: digits-MLP 64-128-128",
            "teacher",
            lambda b: teacher(b["x"]),
            teacher,
            ["x"],
            _params(teacher),
        )
    ]
    plain, lelp = ClassHead("softmax", n_classes), ClassHead("lelp", n_classes, (s,) * n_classes)
    for name, head in (("mlp 64-64-64", plain), (f"mlp 64-64-64, LELP head (S={s})", lelp)):
        (fn, graph), student = _student({"kind": "mlp"}, head.n_inputs, head, in_dim=in_dim)
        models.append(Model(name, "student", fn, graph, ["x"], _params(student)))
    return models


# --------------------------------------------------------------------------- inputs


def token_batches(tok: Any, texts: Sequence[str], max_length: int, n1: int, n64: int) -> dict:
    """Batch 1: ``n1`` texts one by one (own length); batch 64: ``n64`` batches of 64."""
    from lelp_studio.students import _encode_texts

    one = [_encode_texts([t], tok, max_length) for t in texts[:n1]]
    big = [_encode_texts(list(texts[i * 64 : (i + 1) * 64]), tok, max_length) for i in range(n64)]
    return {1: one, 64: big}


def feature_batches(x: np.ndarray, n1: int, n64: int) -> dict:
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return {
        1: [{"x": t[i : i + 1]} for i in range(n1)],
        64: [{"x": t[i * 64 : (i + 1) * 64]} for i in range(n64)],
    }


def _cycle(texts: Sequence[str], n: int) -> list[str]:
    reps = -(-n // max(len(texts), 1))
    return (list(texts) * reps)[:n]


# --------------------------------------------------------------------------- timing


def export_all(models: Sequence[Model], folder: Path, threads: int) -> None:
    """Each model to ONNX (``lelp_studio.export.export_onnx``) and an onnxruntime session for it."""
    from lelp_studio.export import export_onnx, onnx_session

    for i, m in enumerate(models):
        example = tuple(m.inputs[64][0][n] for n in m.input_names)
        path = export_onnx(m.graph, example, folder / f"m{i}.onnx", m.input_names)
        m.onnx_bytes = path.stat().st_size
        m.session = onnx_session(path, threads)


def _call(m: Model, backend: str, batch: dict[str, Any]) -> None:
    if backend == "pytorch":
        m.torch_fn(batch)
    else:
        m.session.run(["logits"], {n: batch[n].numpy() for n in m.input_names})


def time_models(models: Sequence[Model], rounds: int) -> dict[tuple[str, str, int], list[float]]:
    """Per (model, backend, batch) the seconds of every timed call. One warm-up pass, then
    ``rounds`` rounds, each timing every model once over its batches (interleaved)."""
    import gc

    times: dict[tuple[str, str, int], list[float]] = {}
    gc.collect()
    gc.disable()  # a collection inside one timed call would be charged to that model
    try:
        _rounds(models, rounds, times)
    finally:
        gc.enable()
    return times


def _rounds(models: Sequence[Model], rounds: int, times: dict) -> None:
    import torch

    with torch.inference_mode():
        for r in range(rounds + 1):
            for m in models:
                for backend in BACKENDS:
                    for b in BATCHES:
                        key = (m.name, backend, b)
                        for x in m.inputs[b]:
                            t0 = time.perf_counter()
                            _call(m, backend, x)
                            dt = time.perf_counter() - t0
                            if r > 0:  # round 0 warms caches and allocators up
                                times.setdefault(key, []).append(dt)


def rows_for(group: str, models: Sequence[Model], times: dict) -> list[dict[str, Any]]:
    """One row per (model, backend, batch): median ms, examples/s and the ratios."""
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    teacher = next(m for m in models if m.role == "teacher")
    rows = []
    for m in models:
        for backend in BACKENDS:
            for b in BATCHES:
                ms = med[(m.name, backend, b)]
                t_ms = med[(teacher.name, backend, b)]
                rows.append(
                    {
                        "data": group,
                        "model": m.name,
                        "role": m.role,
                        "params": m.params,
                        "onnx_bytes": m.onnx_bytes,
                        "max_length": m.max_length,
                        "backend": backend,
                        "batch": b,
                        "ms": round(ms, 4),
                        "ms_min": round(min(times[(m.name, backend, b)]) * 1000, 4),
                        "ms_p90": round(
                            float(np.percentile(times[(m.name, backend, b)], 90)) * 1000, 4
                        ),
                        "calls": len(times[(m.name, backend, b)]),
                        "examples_per_s": round(1000 * b / ms, 1),
                        "speedup_vs_teacher": round(t_ms / ms, 2),
                        "onnxruntime_vs_pytorch": round(
                            med[(m.name, "pytorch", b)] / med[(m.name, "onnxruntime", b)], 2
                        ),
                    }
                )
    return rows


# --------------------------------------------------------------------------- report


def write(results: dict[str, Any], out: Path, name: str = "latency") -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    m, st = results["machine"], results["settings"]
    threads = f"{m['torch_threads']} thread" + ("s" if m["torch_threads"] != 1 else "")
    lines = [
        "# Latency: teacher vs students (issue 17)",
        "",
        f"Generated by `bench/latency.py` on {m['date']}. Machine: {m['cpu']} ({m['cores']} "
        f"cores, {m.get('memory_gb', '?')} GB; GPU: {m.get('gpu') or 'none'}), torch "
        f"{m['torch']} ({threads}), onnxruntime {m['onnxruntime']} (the same), transformers "
        f"{m['transformers']}. Load average at start "
        f"{m['load_average_start']}, at end {results['load_average_end']} (a shared machine: "
        "the models were timed interleaved, so the load falls on all of them alike).",
        "",
        f"Median ms per call over {st['rounds']} rounds after a warm-up round; batch 1 cycles "
        f"over {st['texts']} inputs, batch 64 over {st['batches']} batches. **x teacher** = "
        "teacher ms / model ms in the same runtime and batch (higher: faster than the "
        "teacher); **ORT x** = PyTorch ms / onnxruntime ms for the same model. Model forward "
        "only (tokenising is shared by all text models); students are random-init (latency "
        "does not depend on the weights). Every model returns class log-probabilities; LELP "
        "heads are aggregated per class inside the model.",
        "",
    ]
    for group, info in results["groups"].items():
        rows = [r for r in results["rows"] if r["data"] == group]
        lines += [
            f"## {group}: {info['what']}",
            "",
            "| model | parameters | ONNX MB | runtime | batch 1 ms | x teacher | batch 64 ms "
            "| x teacher | ORT x (b1 / b64) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for model in dict.fromkeys(r["model"] for r in rows):
            for backend in BACKENDS:
                b1, b64 = (
                    next(
                        r
                        for r in rows
                        if r["model"] == model and r["backend"] == backend and r["batch"] == b
                    )
                    for b in BATCHES
                )
                ort = (
                    f"{b1['onnxruntime_vs_pytorch']:.2f} / {b64['onnxruntime_vs_pytorch']:.2f}"
                    if backend == "onnxruntime"
                    else ""
                )
                lines.append(
                    f"| {model} | {b1['params']:,} | {b1['onnx_bytes'] / 1e6:.2f} | {backend} | "
                    f"{b1['ms']:.3f} | {b1['speedup_vs_teacher']:.1f} | {b64['ms']:.3f} | "
                    f"{b64['speedup_vs_teacher']:.1f} | {ort} |"
                )
        lines.append("")
    lines += [
        "Reproduce: `python bench/latency.py` (about two minutes on 2 cores; "
        "`--only digits --rounds 1` for a seconds-long look).",
        "",
    ]
    (out / f"{name}.md").write_text("\n".join(lines))


def run_group(
    group: str, models: list[Model], batches: Callable[[Model], dict], args: Any, tmp: Path
) -> list[dict[str, Any]]:
    for m in models:
        m.inputs = batches(m)
    export_all(models, tmp, args.threads)
    return rows_for(group, models, time_models(models, args.rounds))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="text,digits", help="text, digits or both (default)")
    ap.add_argument("--texts", type=int, default=64, help="batch-1 inputs per round")
    ap.add_argument("--batches", type=int, default=4, help="batch-64 batches per round")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (after one warm-up)")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch and onnxruntime threads (default 1)"
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--name", default="latency", help="file stem of the results")
    args = ap.parse_args(argv)
    import torch

    from lelp_studio.data import load_demo

    torch.set_num_threads(args.threads)
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    bad = sorted(set(groups) - {"text", "digits"})
    if bad or not groups:
        ap.error(f"--only: unknown {bad or groups}; choose text, digits or both")
    results: dict[str, Any] = {
        "machine": machine(),
        "settings": {"rounds": args.rounds, "texts": args.texts, "batches": args.batches},
        "groups": {},
        "rows": [],
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if "text" in groups:
            ds = load_demo("text-demo")
            test = ds.splits["test"]
            texts = _cycle(test.texts or [], max(args.texts, 64 * args.batches))
            models, tok, note = text_models(ds.n_classes)
            lengths = [len(x) for x in tok(texts[: args.texts])["input_ids"]]
            results["groups"]["text"] = {
                "what": f"text demo test split, mean {np.mean(lengths):.1f} tokens; {note}",
                "mean_tokens": round(float(np.mean(lengths)), 1),
            }
            results["rows"] += run_group(
                "text",
                models,
                lambda m: token_batches(tok, texts, m.max_length, args.texts, args.batches),
                args,
                Path(tmp),
            )
        if "digits" in groups:
            ds = load_demo("digits-bin")
            x = np.asarray(ds.splits["test"].features, dtype=np.float32)
            x = np.concatenate([x] * -(-64 * args.batches // len(x)))
            results["groups"]["digits"] = {"what": f"digits-bin test features ({x.shape[1]})"}
            results["rows"] += run_group(
                "digits",
                digits_models(x.shape[1], ds.n_classes),
                lambda m: feature_batches(x, args.texts, args.batches),
                args,
                Path(tmp),
            )
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    results["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    write(results, args.out, args.name)
    print((args.out / f"{args.name}.md").read_text())
    return results


if __name__ == "__main__":
    main()
