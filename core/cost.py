"""What a model costs to run: parameters, weights on disk, and latency measured here.

People distil to ship a smaller, faster model, so accuracy alone does not say whether a
student was worth it. For the teacher and each student of a run this module counts the
parameters, sizes the weights files, and times the forward pass on this machine at batch 1
and batch 64, on rows of the run's own evaluation split (texts tokenised as the run tokenises
them), on CPU and on CUDA when present. A measurement is made once and cached in the
workspace: the student's next to its folder (``runs/<id>/cost.json``), the teacher's once per
teacher-outputs key (``costs/<key>.json``), so every run of one teacher shares it.

Latency is the median of timed forward passes after two warm-up calls; tokenisation is left
out (the teacher and the text students share the tokenizer, so it does not separate them).
:func:`pareto_front` marks the models that no other model beats on both latency and
accuracy. Torch and transformers are imported inside the functions, so the figure code can
import this module cheaply.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import RunConfig
from .store import Workspace, atomic_write_bytes, safe_name
from .types import Dataset, Split

__all__ = [
    "BATCHES",
    "COST_FILE",
    "CostError",
    "cached_cost",
    "cost_table",
    "device_name",
    "devices",
    "is_cached",
    "pareto_front",
    "run_cost",
    "student_cost",
    "teacher_cost",
]

#: The batch sizes timed: one request at a time, and a throughput-sized batch.
BATCHES = (1, 64)
#: The student's cached measurement, beside its ``student`` folder in ``runs/<id>/``.
COST_FILE = "cost.json"
#: Bump when the way a cost is measured changes, so older cached records are measured again.
COST_VERSION = 1
#: Timed repetitions per (device, batch): at least MIN_REPS, then until the time budget (s) or
#: MAX_REPS is reached. Batch 1 cycles over different rows, so text lengths vary as in use.
MIN_REPS = 3
MAX_REPS = {1: 200, 64: 50}
BUDGET_S = {1: 1.0, 64: 2.0}
WARMUP = 2
#: Rows of the evaluation split the inputs are drawn from (seeded, the same for every model).
SAMPLE_ROWS = 64
SAMPLE_SEED = 0


class CostError(ValueError):
    """A model whose cost cannot be measured (weights gone, teacher not rebuildable); the
    message names the problem and the fix."""


Forward = Callable[[dict[str, Any]], Any]


# --------------------------------------------------------------------------- measuring


def devices() -> list[str]:
    """Where latency is measured: the CPU always, CUDA when torch sees a GPU."""
    import torch

    return ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def count_params(model: Any) -> int:
    """Parameters of a torch module (tied weights counted once, as ``parameters()`` does)."""
    return int(sum(p.numel() for p in model.parameters()))


def _weights_bytes(folder: Path) -> int:
    """Bytes of a folder's weights files: the safetensors ones, else any other weights format
    (a hub folder can hold the same weights twice, as .safetensors and .bin)."""
    files = [f for f in folder.glob("*") if f.is_file()]
    st_files = [f for f in files if f.suffix == ".safetensors"]
    other = [f for f in files if f.suffix in (".bin", ".pt", ".pth", ".h5", ".msgpack")]
    return int(sum(f.stat().st_size for f in (st_files or other)))


def _sample_split(dataset: Dataset, split: str) -> tuple[Split, str]:
    """``SAMPLE_ROWS`` seeded rows of ``split`` (repeated when it has fewer), and a phrase
    naming them; every model of a run is timed on these same rows."""
    sp = dataset.splits[split]
    n = len(sp)
    if n == 0:
        raise CostError(f"{dataset.name}: the {split} split is empty; nothing to time on")
    rng = np.random.default_rng(SAMPLE_SEED)
    idx = rng.choice(n, size=min(n, SAMPLE_ROWS), replace=False)
    idx = np.resize(idx, SAMPLE_ROWS)  # a split smaller than a batch repeats its rows
    sub = Split(
        y=np.asarray(sp.y)[idx],
        texts=None if sp.texts is None else [sp.texts[i] for i in idx],
        features=None if sp.features is None else np.asarray(sp.features)[idx],
    )
    return sub, f"{min(n, SAMPLE_ROWS)} {split} rows of {dataset.name}"


def _batches(sub: Split, tokenizer: Any, max_length: int) -> dict[int, list[dict[str, Any]]]:
    """Encoded inputs per batch size: each row alone (padded to its own length) for batch 1,
    all rows together for batch 64, encoded as the project encodes them."""
    from .students import encode_inputs

    def rows(ix: Sequence[int]) -> Split:
        return Split(
            y=sub.y[list(ix)],
            texts=None if sub.texts is None else [sub.texts[i] for i in ix],
            features=None if sub.features is None else sub.features[list(ix)],
        )

    n1 = min(SAMPLE_ROWS, len(sub))
    return {
        1: [encode_inputs(rows([i]), tokenizer, max_length) for i in range(n1)],
        64: [encode_inputs(rows(range(min(64, len(sub)))), tokenizer, max_length)],
    }


def time_forward(
    forward: Forward, batches: Sequence[dict[str, Any]], device: str, batch: int
) -> float:
    """Median milliseconds of ``forward`` over ``batches`` (already on ``device``), after
    ``WARMUP`` calls; CUDA is synchronised around each call so the time is the work's."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times: list[float] = []
    with torch.inference_mode():
        for i in range(WARMUP):
            forward(batches[i % len(batches)])
        sync()
        stop = time.perf_counter() + BUDGET_S[batch]
        while len(times) < MAX_REPS[batch] and (
            len(times) < MIN_REPS or time.perf_counter() < stop
        ):
            b = batches[len(times) % len(batches)]
            t0 = time.perf_counter()
            forward(b)
            sync()
            times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def measure_latency(
    model: Any,
    forward: Forward,
    inputs: Mapping[int, Sequence[dict[str, Any]]],
    where: Sequence[str],
) -> dict[str, dict[str, float]]:
    """``{device: {"1": ms, "64": ms}}`` for ``model`` (moved to each device, then back to
    the CPU) called through ``forward``."""
    out: dict[str, dict[str, float]] = {}
    for dev in where:
        model.to(dev)
        out[dev] = {}
        for b, batches in inputs.items():
            moved = [{k: v.to(dev) for k, v in x.items()} for x in batches]
            out[dev][str(b)] = round(time_forward(forward, moved, dev, b), 4)
    model.to("cpu")
    return out


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    n = torch.get_num_threads()
    return f"{platform.node()} ({cpu}, {os.cpu_count()} CPUs, {n} torch thread{'s' * (n != 1)})"


def _record(role: str, model: Any, size: int | None, latency: dict, **extra: Any) -> dict:
    return {
        "version": COST_VERSION,
        "role": role,
        "params": None if model is None else count_params(model),
        "size_bytes": size,
        "latency_ms": latency,
        "machine": _machine(),
        "measured": time.time(),
        **extra,
    }


def _run_config(run: Mapping[str, Any]) -> Any:
    return RunConfig.model_validate(run["config"])


def _eval_split(dataset: Dataset, run: Mapping[str, Any]) -> str:
    split = (run.get("artifacts") or {}).get("eval_split", "test")
    return split if split in dataset.splits else next(iter(dataset.splits))


def student_cost(
    ws: Workspace,
    run: Mapping[str, Any],
    dataset: Dataset | None = None,
    where: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Measure a run's student: parameters, bytes of its weights files, latency.

    Why the forward pass of the saved student: it is what ships; a method's extras at
    inference (ReAugKD's retrieval) are reported by that method, not here.
    """
    from safetensors import SafetensorError

    from .pipeline import get_dataset
    from .replay import METHOD_STATE_FILE
    from .students import META_FILE, WEIGHTS_FILE, load_student
    from .teachers import load_tokenizer

    rid = run.get("run_id", "?")
    sdir = ws.artifact_path(dict(run), "student_dir")
    if sdir is None or not (sdir / WEIGHTS_FILE).is_file() or not (sdir / META_FILE).is_file():
        raise CostError(
            f"run {rid}: the student's {WEIGHTS_FILE} or {META_FILE} is missing from "
            f"{sdir or 'the workspace'}; re-run it (lelp doctor lists such runs)"
        )
    cfg = _run_config(run)
    try:
        model, _ = load_student(sdir)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        detail = " ".join(str(err).split())[:200]
        raise CostError(f"run {rid}: the student cannot be loaded ({detail}); re-run it") from None
    ds = dataset if dataset is not None else get_dataset(cfg.dataset)
    sub, what = _sample_split(ds, _eval_split(ds, run))
    tokenizer = load_tokenizer(cfg.teacher) if ds.is_text else None
    inputs = _batches(sub, tokenizer, cfg.student.max_length)
    size = sum(
        (sdir / f).stat().st_size for f in (WEIGHTS_FILE, METHOD_STATE_FILE) if (sdir / f).is_file()
    )
    latency = measure_latency(model, model, inputs, where or devices())
    return _record("student", model, size, latency, kind=cfg.student.kind, inputs=what)


def _teacher_model(
    ws: Workspace, run: Mapping[str, Any], ds: Dataset
) -> tuple[Any, Forward, int | None, Any, int, str]:
    """(module, forward, weights bytes, tokenizer, max_length, note) of a run's teacher,
    rebuilt as it produced the run's outputs."""
    import torch
    from torch import nn

    from .teachers import load_teacher_encoder, load_tokenizer, minilm_path
    from .teachers.extraction import _filter_inputs
    from .teachers.finetune import _MeanPoolClassifier
    from .teachers.hf import _load_hf, _max_length, _resolve_hf

    spec = _run_config(run).teacher
    key = (run.get("artifacts") or {}).get("teacher_key", "")
    if spec.kind == "digits-mlp":
        # Trained in a second and not kept: the same architecture with fresh weights costs
        # the same; its size is that of its float32 weights.
        if ds.splits["train"].features is None:
            raise CostError(f"{ds.name}: a digits-mlp teacher needs a feature dataset")
        d, k = int(np.asarray(ds.splits["train"].features).shape[1]), spec.hidden
        model: nn.Module = nn.Sequential(
            nn.Linear(d, k), nn.ReLU(), nn.Linear(k, k), nn.ReLU(), nn.Linear(k, ds.n_classes)
        )
        size = 4 * count_params(model)
        note = "not saved by the project: size of its float32 weights"
        return model, lambda b: model(b["x"]), size, None, 0, note
    if spec.kind == "minilm":
        folder, note = Path(minilm_path()), ""
        enc_dir = ws.encoder_dir(key) if spec.mode == "finetune" and key else None
        if enc_dir is not None and (enc_dir / "model.safetensors").is_file():
            folder = enc_dir
        elif spec.mode == "finetune":
            enc_dir, note = None, "fine-tuned encoder not kept: the pretrained one was timed"
        encoder = load_teacher_encoder(spec, enc_dir)
        encoder.float().eval()
        dim = int(encoder.config.hidden_size)
        model = _MeanPoolClassifier(encoder, dim, ds.n_classes).eval()
        size = _weights_bytes(folder) + 4 * (dim + 1) * ds.n_classes  # + the linear head
        tok = load_tokenizer(spec)
        return model, lambda b: model(b)[1], size, tok, spec.max_length, note
    if spec.kind == "hf":
        model, tok, _ = _load_hf(spec)
        model.float().eval()
        where, local = _resolve_hf(spec)
        if local:
            size = _weights_bytes(Path(where))
        else:
            size = int(sum(p.numel() * p.element_size() for p in model.parameters()))
        max_len = _max_length(spec, tok, model.config)

        def forward(b: dict[str, Any]) -> torch.Tensor:
            return model(**_filter_inputs(model, b)).logits

        return model, forward, size, tok, max_len, ""
    raise CostError(
        f"teacher kind {spec.kind!r} has no model in this project to time (its outputs were "
        "given as arrays); its cost is whatever produced them"
    )


def teacher_cost(
    ws: Workspace,
    run: Mapping[str, Any],
    dataset: Dataset | None = None,
    where: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Measure a run's teacher: for MiniLM the encoder's forward pass plus its linear head,
    for an hf checkpoint the whole classifier, for digits-mlp its MLP; an ``arrays`` teacher
    gets a record without numbers, saying why."""
    from .pipeline import get_dataset

    cfg = _run_config(run)
    ds = dataset if dataset is not None else get_dataset(cfg.dataset)
    if cfg.teacher.kind == "arrays":
        return _record(
            "teacher",
            None,
            None,
            {},
            kind="arrays",
            note="outputs given as arrays: no model here to time",
        )
    model, forward, size, tok, max_len, note = _teacher_model(ws, run, ds)
    sub, what = _sample_split(ds, _eval_split(ds, run))
    inputs = _batches(sub, tok, max_len)
    latency = measure_latency(model, forward, inputs, where or devices())
    return _record("teacher", model, size, latency, kind=cfg.teacher.kind, inputs=what, note=note)


# --------------------------------------------------------------------------- the cache


def student_cost_path(ws: Workspace, run: Mapping[str, Any]) -> Path:
    """``runs/<id>/cost.json``: beside the student folder, outside it (the download zips the
    folder, and a measurement is not part of the model)."""
    sdir = ws.artifact_path(dict(run), "student_dir")
    return (sdir.parent if sdir is not None else ws.run_dir(run["run_id"])) / COST_FILE


def teacher_cost_path(ws: Workspace, teacher_key: str) -> Path:
    """``costs/<teacher key>.json``: one measurement per teacher, shared by its runs."""
    return ws.root / "costs" / f"{safe_name(teacher_key, 'teacher key')}.json"


def _read(path: Path) -> dict[str, Any] | None:
    """A cached record, or None when absent, unreadable or from an older way of measuring."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("version") == COST_VERSION else None


def _write(path: Path, rec: dict[str, Any]) -> None:
    atomic_write_bytes(path, json.dumps(rec, indent=1).encode())


def cached_cost(ws: Workspace, run: Mapping[str, Any]) -> dict[str, dict[str, Any] | None]:
    """``{"teacher": record or None, "student": record or None}`` from the cache only."""
    key = (run.get("artifacts") or {}).get("teacher_key")
    return {
        "teacher": _read(teacher_cost_path(ws, key)) if key else None,
        "student": _read(student_cost_path(ws, run)),
    }


def is_cached(ws: Workspace, run: Mapping[str, Any]) -> bool:
    """Whether the run's student (and its teacher, when the run names one) are measured."""
    have = cached_cost(ws, run)
    has_key = bool((run.get("artifacts") or {}).get("teacher_key"))
    return have["student"] is not None and (have["teacher"] is not None or not has_key)


def run_cost(
    ws: Workspace,
    run: Mapping[str, Any],
    dataset: Dataset | None = None,
    *,
    force: bool = False,
    where: Sequence[str] | None = None,
) -> dict[str, dict[str, Any] | None]:
    """The teacher's and the student's cost of ``run``: from the cache, else measured now
    and cached (``force`` measures again). The dataset is loaded at most once."""
    from .pipeline import get_dataset

    have: dict[str, dict[str, Any] | None]
    have = {"teacher": None, "student": None} if force else cached_cost(ws, run)
    key = (run.get("artifacts") or {}).get("teacher_key")
    if have["teacher"] is None or have["student"] is None:
        ds = dataset if dataset is not None else get_dataset(_run_config(run).dataset)
        if have["teacher"] is None and key:
            have["teacher"] = measured = teacher_cost(ws, run, ds, where)
            _write(teacher_cost_path(ws, key), measured)
        if have["student"] is None:
            have["student"] = measured = student_cost(ws, run, ds, where)
            _write(student_cost_path(ws, run), measured)
    return have


# --------------------------------------------------------------------------- reading costs


def pareto_front(points: Any) -> np.ndarray:
    """Which points no other point beats: ``points`` is ``(n, 2)`` of (cost, accuracy), cost
    lower-is-better (latency), accuracy higher-is-better; returns a bool mask ``(n,)``.

    A point is off the front when another has cost <= and accuracy >= with one strictly
    better; equal points are both on it. Rows with a NaN are never on it.

    >>> pareto_front([[1.0, 80.0], [2.0, 90.0], [3.0, 85.0]]).tolist()
    [True, True, False]
    """
    P = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    ok = np.isfinite(P).all(axis=1)
    front = ok.copy()
    for i in np.flatnonzero(ok):
        c, a = P[i]
        others = P[ok]
        beats = (
            (others[:, 0] <= c) & (others[:, 1] >= a) & ((others[:, 0] < c) | (others[:, 1] > a))
        )
        front[i] = not beats.any()
    return front


def device_name(dev: str) -> str:
    """How a device is named in tables and menus."""
    return {"cpu": "CPU", "cuda": "CUDA"}.get(dev, dev)


def cost_table(records: Mapping[str, Mapping[str, Any] | None]) -> pd.DataFrame:
    """One row per (model, device): parameters, size MB, latency ms at batch 1 and 64.

    ``records``: model name -> a record of :func:`run_cost` (None: not measured yet, shown
    as an empty row so the table lists every model)."""
    rows: list[dict[str, Any]] = []
    for name, rec in records.items():
        rec = rec or {}
        base = {
            "model": name,
            "parameters": rec.get("params"),
            "size MB": None if rec.get("size_bytes") is None else rec["size_bytes"] / 1e6,
        }
        lat = rec.get("latency_ms") or {}
        if not lat:
            rows.append({**base, "device": None, "ms (batch 1)": None, "ms (batch 64)": None})
        for dev, ms in lat.items():
            rows.append(
                {
                    **base,
                    "device": device_name(dev),
                    "ms (batch 1)": ms.get("1"),
                    "ms (batch 64)": ms.get("64"),
                }
            )
    cols = ["model", "device", "parameters", "size MB", "ms (batch 1)", "ms (batch 64)"]
    return pd.DataFrame(rows, columns=cols)
