"""What every teacher source shares: the error type, progress reporting, and the
assembly of the final ``TeacherOutputs`` (float32 H in memory, or float16 memmaps on disk)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np

from ..types import Dataset, TeacherOutputs

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
