"""What every teacher source shares: the error type, progress reporting, and the
assembly of the final ``TeacherOutputs`` (float32 H in memory, or float16 memmaps on disk)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..types import TRANSFER, Dataset, TeacherOutputs
from . import staged

Progress = Callable[[int, int, str], None]


class TeacherError(ValueError):
    """A teacher that cannot be used: bad checkpoint, missing file, offline hub id, bad arrays.

    The message names the problem and the fix.
    """


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
    """Accuracy on the labeled rows (y >= 0); NaN for a split without any (transfer)."""
    y = np.asarray(y)
    known = y >= 0
    if not known.any():
        return float("nan")
    return float(np.mean(np.argmax(np.asarray(z)[known], axis=1) == y[known]))


#: Rows per block when H is cast, checked or copied: 16,384 x 384 float64 is 50 MB.
ROW_BLOCK = 16_384


def open_embedding_memmap(path: str | Path, n: int, dim: int, dtype: Any = np.float16) -> np.memmap:
    """A new ``.npy`` file of shape (n, dim) opened for writing, to pass as ``extract(out=...)``.

    float16 halves the disk and page-cache footprint of 1.6M x 384 embeddings (1.2 GB) and
    ``np.load(path, mmap_mode="r")`` reads it back without loading it.
    """
    return np.lib.format.open_memmap(Path(path), mode="w+", dtype=dtype, shape=(int(n), int(dim)))


class HSink:
    """Where each split's H goes: float32 arrays in memory (``folder`` None, the library's
    default), or float16 ``H_<split>.npy`` files in ``folder`` returned as read-only memmaps.

    Why float16 files: the workspace stores H as float16 anyway, so writing it there during
    extraction means no float32 copy of a 1.6M x 384 H (2.4 GB) is ever held. Values are cast
    through float32 first, so each float16 equals the cast of the float32 H made before.
    A text teacher's pass goes through :meth:`fill`, which in a folder writes chunk by chunk
    and resumes an interrupted pass (``staged``); ``chunk_rows`` overrides
    ``staged.CHUNK_ROWS``.
    """

    def __init__(self, folder: str | Path | None = None, chunk_rows: int | None = None) -> None:
        self.folder = None if folder is None else Path(folder)
        self.chunk_rows = chunk_rows
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def fill(
        self, split: str, n: int, widths: tuple[int, int], fill: staged.Fill,
        progress: Progress | None, stage: str, context: str = "",
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """The split's ``(H, Z)`` computed by ``fill(rows, [H_rows, Z_rows], progress)``:
        in memory one call over all rows (float32 H); in a folder chunk by chunk, keeping
        the verified chunks of an interrupted earlier pass with the same ``context``
        (``staged.fill_split``)."""
        if self.folder is None or n == 0:
            H = np.empty((int(n), widths[0]), dtype=np.float32)
            Z = np.empty((int(n), widths[1]), dtype=np.float32)
            fill(slice(0, int(n)), [H, Z], progress)
            return H, Z
        return staged.fill_split(
            self.folder, split, n, widths, fill,
            lambda st: _Reporter(progress, int(n), st), stage,
            context=context, chunk_rows=self.chunk_rows,
        )  # fmt: skip

    def path(self, split: str) -> Path:
        assert self.folder is not None
        return self.folder / f"H_{split}.npy"

    def new(self, split: str, n: int, dim: int) -> np.ndarray:
        """An empty (n, dim) H to fill row by row (``extract(out=...)``)."""
        if self.folder is None:
            return np.empty((int(n), int(dim)), dtype=np.float32)
        return open_embedding_memmap(self.path(split), n, dim)

    def finish(self, split: str, a: Any) -> np.ndarray:
        """The split's final H: ``a`` itself when it came from :meth:`new`, else copied in
        blocks of rows (``a`` may be a memmap, a row view or float64)."""
        if self.folder is None:
            if isinstance(a, np.ndarray) and not isinstance(a, np.memmap):
                return np.ascontiguousarray(a, dtype=np.float32)
            out = np.empty(a.shape, dtype=np.float32)
        elif isinstance(a, np.memmap) and str(a.filename) == os.path.abspath(self.path(split)):
            a.flush()
            return np.load(self.path(split), mmap_mode="r")
        else:
            out = self.new(split, *a.shape)
        for i in range(0, a.shape[0], ROW_BLOCK):
            out[i : i + ROW_BLOCK] = np.asarray(a[i : i + ROW_BLOCK], dtype=np.float32)
        if self.folder is None:
            return out
        assert isinstance(out, np.memmap)  # new() made it in the folder
        out.flush()
        del out
        return np.load(self.path(split), mmap_mode="r")


def _outputs(
    dataset: Dataset,
    H: dict[str, Any],
    Z: dict[str, np.ndarray],
    W: np.ndarray,
    b: np.ndarray,
    meta: dict[str, object],
    sink: HSink | None = None,
) -> TeacherOutputs:
    """Cast to float32 (H into ``sink``) and add the facts every teacher reports (accuracy per
    split, shapes)."""
    sink = sink or HSink()
    H = {k: sink.finish(k, v) for k, v in H.items()}
    Z = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in Z.items()}
    W = np.ascontiguousarray(W, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32).reshape(-1)
    meta = dict(meta)
    # per labeled split: the transfer split has no labels to score
    meta["accuracy"] = {k: _accuracy(Z[k], dataset.splits[k].y) for k in Z if k != TRANSFER}
    meta["dim"] = int(W.shape[1])
    meta["n_classes"] = int(W.shape[0])
    return TeacherOutputs(H=H, Z=Z, W=W, b=b, meta=meta)


def _need_text(dataset: Dataset, kind: str) -> None:
    if not dataset.is_text:
        raise TeacherError(
            f"teacher kind '{kind}' needs a text dataset, but '{dataset.name}' has features; "
            "use teacher kind 'digits-mlp' or 'arrays' for feature data"
        )
