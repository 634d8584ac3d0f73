"""Batched extraction shared by the text teachers: a token-budgeted batch plan, tokenising
ahead in threads or forked processes, and each batch written straight into its output rows
(a float16 memmap for millions of rows). Not named ``extract.py``: the package re-exports the
``extract`` function, which would hide a submodule of that name."""

from __future__ import annotations

import functools
import inspect
import multiprocessing as mp
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .common import Progress, TeacherError, _Reporter
from .device import _precision_autocast

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


Outputs = tuple[np.ndarray, ...]
ModelFn = Callable[[dict[str, torch.Tensor]], torch.Tensor | tuple[torch.Tensor, ...]]

# Tokens per batch (rows x padded length) and a cap on rows, per device type: batches of short
# texts grow until the model's work per call is about constant. A GPU wants big calls; a CPU
# wants small ones, whose activations stay in cache (MiniLM on 2 EPYC cores: 2,048 tokens ran
# 1.5x faster in bf16 and float32 than 16,384, bench/results/speed.md).
_TOKEN_BUDGET = {"cuda": 131_072, "cpu": 2_048}
_MAX_ROWS = {"cuda": 4_096, "cpu": 1_024}


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


def text_fill(
    model_fn: ModelFn, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int,
    precision: str, device: torch.device, stage: str,
) -> Callable[[slice, list[np.ndarray], Progress | None], None]:  # fmt: skip
    """A text teacher's ``HSink.fill`` callback: ``extract`` over a slice of ``texts``, each
    batch written into the given arrays (float16 memmap rows of a staged chunk, or float32
    arrays in memory)."""

    def fill(rows: slice, out: list[np.ndarray], progress: Progress | None) -> None:
        extract(
            model_fn, tokenizer, texts[rows], max_length, batch_size, progress,
            device=device, stage=stage, precision=precision, out=out,
        )  # fmt: skip

    return fill


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


def _float_head(layer: nn.Linear, h: torch.Tensor) -> torch.Tensor:
    """``layer(h)`` in float32 even under bf16 autocast.

    LELP reads W and b off the head and relies on Z = H W^T + b (LELP.md); bf16 logits from
    the autocast forward would break that identity by up to 1%.
    """
    with torch.autocast(h.device.type, enabled=False):
        return layer(h.float())
