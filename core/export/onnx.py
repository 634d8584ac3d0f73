"""ONNX: ``torch.onnx.export`` of a student (or bench/latency.py's teacher), and the check of
the graph against PyTorch in onnxruntime."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .model import ONNX_TOLERANCE, ExportError, student_args


def example_inputs(student: nn.Module, batch: int = 2, length: int = 8) -> tuple[Tensor, ...]:
    """A small valid input for tracing and checking: features (batch, d), or token ids below
    the vocabulary size with a padded row, so the mask is exercised."""
    g = torch.Generator().manual_seed(0)
    if getattr(student, "kind", None) == "mlp":
        return (torch.randn(batch, int(student_args(student)["in_dim"]), generator=g),)
    vocab = int(student_args(student)["vocab_size"])
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


def check_onnx(module: nn.Module, path: Path, student: nn.Module, names: Sequence[str]) -> float:
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
