"""Prediction in one place: batch the inputs through the student, ask the objective for
per-class log-probabilities (T = 1).

Also the batching helpers ``core/train.py`` shares: token inputs are cut per batch to the
widest row's width, computed on the CPU once per split, so no batch reads the device back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, cast

import torch
from torch import Tensor, nn

from .objectives import Objective
from .students import unwrap


def take(inputs: dict[str, Tensor], idx: Tensor) -> dict[str, Tensor]:
    """Rows ``idx`` of every input; token inputs are cut to the batch's last used column, so
    a batch of short texts is not padded to the longest text of the split.

    The simple per-batch version: it reads the width back from the device (two GPU syncs per
    batch). ``train`` and ``predict`` use ``row_widths`` + ``take_rows`` instead, which cut
    identically; this one stays as the reference for tests and bench/speed.py's old path.
    """
    batch = {k: v[idx] for k, v in inputs.items()}
    mask = batch.get("attention_mask")
    if mask is not None and mask.shape[1] > 1:
        used = mask.any(dim=0)
        width = int(used.nonzero().max()) + 1 if bool(used.any()) else 1
        if width < mask.shape[1]:
            batch = {k: (v[:, :width] if v.dim() == 2 else v) for k, v in batch.items()}
    return batch


_WIDTH_BLOCK = 65_536


def row_widths(inputs: dict[str, Tensor]) -> Tensor | None:
    """Per row, 1 + the last column its attention mask uses (0 for an empty row), on the CPU.

    Computed once per split, so cutting a batch to its widest row needs only the CPU-side
    row indices: the loop never asks the GPU (``nonzero``/``any``) where a batch ends.
    """
    mask = inputs.get("attention_mask")
    if mask is None or mask.dim() != 2 or not mask.shape[1]:
        return None
    cols = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    # in row blocks: the (rows, L) int64 temporary stays small at a million rows
    return (
        torch.cat([((m != 0) * cols).amax(dim=1).cpu() for m in mask.split(_WIDTH_BLOCK)])
        if mask.shape[0]
        else torch.zeros(0, dtype=torch.int64)
    )


def batch_widths(widths: Tensor | None, order: Tensor, bs: int, multiple: int = 1) -> list[int]:
    """The token width of each batch ``order[i * bs : (i + 1) * bs]`` (CPU, one pass per
    epoch): the widest row of the batch, at least 1, rounded up to ``multiple`` (fewer
    distinct shapes for CUDA kernels and ``torch.compile``)."""
    n_batches = math.ceil(order.shape[0] / bs)
    if widths is None:
        return [0] * n_batches
    w = widths[order]
    w = torch.cat([w, w.new_zeros(n_batches * bs - w.shape[0])]).view(n_batches, bs)
    w = w.amax(dim=1).clamp_min(1)
    if multiple > 1:
        w = ((w + multiple - 1) // multiple) * multiple
    return w.tolist()  # a width past the stored one just keeps every column


def take_rows(inputs: dict[str, Tensor], idx: Tensor | slice, width: int) -> dict[str, Tensor]:
    """Rows ``idx`` of every input, token inputs cut to ``width`` columns (0: no cut). The
    gather reads only the kept columns; no value is read back from the device."""
    if width <= 0:
        return {k: v[idx] for k, v in inputs.items()}
    return {k: (v[:, :width][idx] if v.dim() == 2 else v[idx]) for k, v in inputs.items()}


def autocast_for(device: torch.device) -> tuple[Any, torch.dtype | None]:
    """bf16 autocast on CUDA where supported, fp16 otherwise; none off CUDA."""
    if device.type != "cuda":
        return nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return (lambda: torch.autocast("cuda", dtype=dtype)), dtype


def predict(student: nn.Module, inputs: dict[str, Tensor], batch_size: int = 1024) -> Tensor:
    """Raw student outputs (n, n_out) as float32 on CPU: eval mode, inference mode, batched,
    on the device the student's parameters are on. The student's train/eval mode is kept."""
    device = next(student.parameters()).device
    autocast, _ = autocast_for(device)
    n = next(iter(inputs.values())).shape[0]
    cuts = batch_widths(row_widths(inputs), torch.arange(n), batch_size)
    was_training = student.training
    student.eval()
    outs = []
    try:
        with torch.inference_mode(), autocast():
            for j, i in enumerate(range(0, n, batch_size)):
                rows = take_rows(inputs, slice(i, i + batch_size), cuts[j])
                batch = {k: v.to(device, non_blocking=True) for k, v in rows.items()}
                outs.append(student(batch).float().cpu())
    finally:
        student.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


@torch.no_grad()
def embeddings(student: nn.Module, inputs: dict[str, Tensor], batch_size: int = 512) -> Tensor:
    """The student's penultimate embeddings (n, h) on CPU: eval mode, batched, on the device
    of its parameters; its train/eval mode is kept. (Full-width token batches: the students'
    masked pooling makes padding harmless.)"""
    core = unwrap(student)
    device = next(core.parameters()).device
    n = next(iter(inputs.values())).shape[0]
    was_training = core.training
    core.eval()
    outs = []
    embed = cast(Callable[[dict[str, Tensor]], Tensor], core.embed)  # every student has one
    try:
        for i in range(0, n, batch_size):
            batch = {k: v[i : i + batch_size].to(device) for k, v in inputs.items()}
            outs.append(embed(batch).float().cpu())
    finally:
        core.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def class_logits_timed(
    objective: Objective, student: nn.Module, inputs: dict[str, Tensor], batch_size: int = 512
) -> tuple[Tensor, dict[str, float]]:
    """Per-class log-probabilities (n, C) on CPU as the objective predicts (ReAugKD: with
    retrieval), and timings: ``predict_s`` (student forward) and, for retrieval,
    ``retrieval_s`` and ``retrieval_overhead_pct`` = 100 * retrieval_s / predict_s (the
    embedding pass is not counted: a deployed student gets it with its forward)."""
    t0 = time.perf_counter()
    raw = predict(student, inputs, batch_size=batch_size)
    timing = {"predict_s": time.perf_counter() - t0}
    log_probs = objective.class_logits(raw)
    if objective.uses_embeddings_to_predict:
        emb = embeddings(student, inputs, batch_size)
        t1 = time.perf_counter()
        log_probs = objective.augment(log_probs, emb)
        timing["retrieval_s"] = time.perf_counter() - t1
        timing["retrieval_overhead_pct"] = (
            100.0 * timing["retrieval_s"] / max(timing["predict_s"], 1e-9)
        )
    return log_probs, timing


def class_logits(
    objective: Objective, student: nn.Module, inputs: dict[str, Tensor], batch_size: int = 1024
) -> Tensor:
    """Per-class log-probabilities (n, C) at T = 1 on CPU, as ``objective`` predicts."""
    return class_logits_timed(objective, student, inputs, batch_size)[0]
