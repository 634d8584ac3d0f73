"""Input checks and shared constants of the pseudo-subclass builders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.utils.validation import check_array, column_or_1d

_FLOATS = (np.float64, np.float32, np.float16)
# Rows per block when fit streams over H: bounds the float64 copy to ~50 MB at d = 384.
_FIT_CHUNK = 16_384
# From this many rows, fit accumulates float16/float32 input in float32 (torch's GEMM, 2-3x
# numpy's here) over 65,536-row blocks, each checked for NaN/inf through its own scatter's
# diagonal instead of a full scan: 1.6M x 384 in seconds. Smaller inputs stay exact float64.
_FAST_FIT_ROWS = 200_000
_FAST_CHUNK = 65_536
_TARGET_CHUNK = 32_768
# A direction whose variance is below this fraction of the class's largest variance (times d)
# counts as empty: eigh's round-off on an exact zero is about eps * largest eigenvalue.
_RANK_RTOL = 10 * np.finfo(np.float64).eps


# --------------------------------------------------------------------------- validation


class SubclassError(ValueError):
    """Inputs or settings a subclasser cannot use (S too large, beta <= 0, bad shapes).

    A ``ValueError`` as scikit-learn raises, under its own name so the CLI and the job runner
    can report it as one clear line instead of a traceback; the message says what to change.
    """


def _check_embeddings(H: Any, name: str = "H") -> np.ndarray:
    """2-D float array without copying large float arrays (memmaps stay memmaps).

    Finiteness of big arrays is checked chunk by chunk where they are read (``_blocks``).
    """
    if isinstance(H, np.ndarray) and H.dtype in _FLOATS:
        if H.ndim != 2:
            raise SubclassError(
                f"{name} must be 2-D (n_samples, d); got an array of shape {H.shape}"
            )
        if H.shape[0] < 1:
            raise SubclassError(f"{name} has no rows (shape {H.shape}); pass at least one row")
        if H.shape[1] < 1:
            raise SubclassError(
                f"{name} has no columns (shape {H.shape}); pass embeddings with at least one "
                "feature"
            )
        return H
    return check_array(H, dtype=list(_FLOATS), input_name=name)


def _blocks(H: np.ndarray, rows: np.ndarray | None, chunk: int, name: str = "H") -> Iterator:
    """Yield ``(slice into the output, validated block of H)``; ``rows`` selects rows."""
    n = H.shape[0] if rows is None else len(rows)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        block = H[start:stop] if rows is None else H[rows[start:stop]]
        yield slice(start, stop), check_array(block, dtype=list(_FLOATS), input_name=name)


def _check_chunk_size(chunk_size: int | None, n: int) -> int:
    if chunk_size is None:
        return max(n, 1)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise TypeError(f"chunk_size must be a positive int or None; got {chunk_size!r}")
    if chunk_size < 1:
        raise SubclassError(f"chunk_size must be >= 1 or None; got {chunk_size}")
    return int(chunk_size)


def _check_labels(y: Any, n: int, name: str = "y") -> np.ndarray:
    """Integer class ids 0..C-1, one per row of H."""
    y = column_or_1d(np.asarray(y), warn=False)
    if len(y) != n:
        raise SubclassError(f"{name} has {len(y)} entries but H has {n} rows; pass one per row")
    if y.dtype.kind not in "iub":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise SubclassError(
                f"{name} must hold integer class ids 0..C-1; got dtype {y.dtype} "
                "(map string labels to ids first, e.g. with core.data)"
            )
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise SubclassError(f"{name} must hold class ids >= 0; got {int(y.min())}")
    return y


def _check_positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number; got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise SubclassError(f"{name} must be > 0; got {value!r}")
    return v


def _check_logits(Z: Any, n: int, n_classes: int) -> np.ndarray:
    Z = check_array(Z, dtype=[np.float64, np.float32], input_name="Z")
    if Z.shape != (n, n_classes):
        raise SubclassError(
            f"Z has shape {Z.shape} but expected ({n}, {n_classes}): one row of teacher logits "
            f"per row of H and one column per class the subclasser was fitted on"
        )
    return Z


def _resolve_sizes(n_subclasses: Any, n_classes: int) -> list[int]:
    """One S per class from an int or a per-class list."""
    if isinstance(n_subclasses, (int, np.integer)) and not isinstance(n_subclasses, bool):
        sizes = [int(n_subclasses)] * n_classes
    elif isinstance(n_subclasses, (list, tuple, np.ndarray)):
        sizes = [int(s) for s in n_subclasses]
        if len(sizes) != n_classes:
            raise SubclassError(
                f"n_subclasses has {len(sizes)} entries but y has {n_classes} classes; "
                "pass one int for all classes or one per class"
            )
    else:
        raise TypeError(
            f"n_subclasses must be an int or a list of ints (one per class); got {n_subclasses!r}"
        )
    for c, s in enumerate(sizes):
        if s < 1:
            raise SubclassError(f"n_subclasses must be >= 1 for every class; got {s} for class {c}")
    return sizes


def _class_counts(y: np.ndarray) -> np.ndarray:
    counts = np.bincount(y)
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        raise SubclassError(
            f"class {int(missing[0])} has no examples in y (classes must be 0..C-1, all present); "
            "relabel the classes or add examples"
        )
    return counts
