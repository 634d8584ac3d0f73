"""Shared value types that flow between the pipeline stages.

They live in one small module so that data loading, teachers, the workspace and the app can
exchange them without importing each other (data flows one way, see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


class Digest(str):
    """A ``hash_arrays`` digest computed beforehand: folded in as a nested list's or dict's
    digest is, so a part can be hashed by a faster route and still give the same value."""


def hash_arrays(*parts: object) -> str:
    """Stable sha256 over arrays, strings and numbers; used for content addressing."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Digest):
            h.update(p.encode())
        elif isinstance(p, np.ndarray):
            a = np.ascontiguousarray(p)
            h.update(str(a.dtype).encode())
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        elif isinstance(p, (list, tuple)):
            h.update(hash_arrays(*p).encode())
        elif isinstance(p, dict):
            h.update(hash_arrays(*[f"{k}={hash_arrays(v)}" for k, v in sorted(p.items())]).encode())
        else:
            h.update(repr(p).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _str_digest(values: object, chunk: int = 1 << 18) -> str:
    """``hash_arrays(np.asarray(values).astype(str))`` with each distinct value turned into a
    string once, not once per row: a 1.6M-row latent column took 1.5 s; streamed in row
    blocks, so the (n,) unicode array is never built whole. Only integers, booleans and
    strings go this way: values that compare equal but print differently (0.0 and -0.0, 1
    and "1.0" in an object column, None and NaN) would be merged by the factorisation."""
    import pandas as pd

    a = np.asarray(values)
    if a.ndim != 1 or a.dtype.kind not in "iubUO":
        return hash_arrays(a.astype(str))
    codes, uniques = pd.factorize(a, use_na_sentinel=False)
    if a.dtype == object and not all(type(u) is str for u in uniques):
        return hash_arrays(a.astype(str))
    names = np.asarray(uniques, dtype=object).astype(str)
    names = names.astype(np.promote_types(names.dtype, a[:0].astype(str).dtype))
    h = hashlib.sha256()
    h.update(str(names.dtype).encode())
    h.update(str(a.shape).encode())
    for start in range(0, len(codes), chunk):
        h.update(names[codes[start : start + chunk]].tobytes())
    h.update(b"\x00")
    return h.hexdigest()


#: The split of unlabeled transfer rows (label -1): the teacher labels them, distillation
#: objectives learn from them, and nothing scores on them (``core/data/transfer.py``).
TRANSFER = "transfer"
#: The label of a transfer row: never a class id (0..C-1), so no count or score mistakes it
#: for one.
UNLABELED = -1


@dataclass(frozen=True)
class Split:
    """One split of a dataset.

    Text datasets fill ``texts``; non-text data (digits) fills ``features``. ``y`` holds class
    ids 0..C-1 (int64), or ``UNLABELED`` (-1) in the transfer split. ``latent`` maps a latent
    column name to its values (any dtype, shape (n,)), e.g. ``{"topic": array([...])}``.
    """

    y: np.ndarray
    texts: list[str] | None = None
    features: np.ndarray | None = None
    latent: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.y))

    def fingerprint(self) -> str:
        """Content hash, computed once per object (splits are not changed once built; the
        app asks on every rerun, and hashing 1.6M texts takes about half a second)."""
        memo = self.__dict__.get("_fingerprint")
        if memo is None:
            parts: list[object] = [np.asarray(self.y)]
            if self.texts is not None:
                parts.append("\n".join(self.texts))
            if self.features is not None:
                parts.append(np.asarray(self.features))
            # = {k: np.asarray(v).astype(str)}, the form the digest has always been taken of
            latent = [f"{k}={_str_digest(v)}" for k, v in sorted(self.latent.items())]
            memo = hash_arrays(*parts, Digest(hash_arrays(*latent)))
            object.__setattr__(self, "_fingerprint", memo)  # frozen dataclass: a memo only
        return memo


@dataclass(frozen=True)
class Dataset:
    """A labelled dataset with named splits ("train", "test", optionally "dev", and
    ``TRANSFER``: unlabeled rows with y = -1, never scored)."""

    name: str
    label_names: list[str]
    splits: dict[str, Split]
    #: Where the selection split ("dev") came from; "" before ``with_selection_split``.
    selection: str = ""
    #: For a holdout selection split: (kept, held-out) row indices into the train split as
    #: loaded, so per-split arrays given for the original train (teacher kind arrays) align.
    holdout_rows: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, compare=False, repr=False
    )
    #: The dataset before the holdout was carved (None when it has its own dev split or a
    #: max_train subset): what workspaces written before the selection split keyed groups on.
    before_holdout: Dataset | None = field(default=None, compare=False, repr=False)
    #: One line on how the loader made the splits when the source did not give them all
    #: (a single file split here, a test file beside it), with the split sizes; "" otherwise.
    split_note: str = field(default="", compare=False)
    #: The class values as the files write them (``"0"``, ``"pos"``), in class order, when
    #: they differ from ``label_names`` (labels.json names them): what a transfer file's
    #: label column is checked against.
    label_values: tuple[str, ...] = field(default=(), compare=False, repr=False)
    #: How the transfer split was made: rows found (``from_train_file``, ``from_file``),
    #: dropped (``dropped_empty``, ``dropped_eval``: equal to a dev/test text,
    #: ``dropped_train``: equal to a labeled training text) and ``kept``; empty without one.
    transfer_info: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    @property
    def n_transfer(self) -> int:
        """Unlabeled transfer rows (0 without a transfer split)."""
        return len(self.splits[TRANSFER]) if TRANSFER in self.splits else 0

    def labeled(self) -> Dataset:
        """This dataset without its transfer split (itself when it has none): what keys the
        things that belong to the labeled rows (manual groups of training rows, the runs a
        page compares), so adding a transfer file keeps them."""
        if TRANSFER not in self.splits:
            return self
        splits = {k: v for k, v in self.splits.items() if k != TRANSFER}
        return replace(self, splits=splits, transfer_info={})

    @property
    def latent_columns(self) -> list[str]:
        """In the file's column order (the first is what pages pick by default)."""
        return list(self.splits["train"].latent)

    @property
    def is_text(self) -> bool:
        return self.splits["train"].texts is not None

    def fingerprint(self) -> str:
        return hash_arrays(
            self.name,
            list(self.label_names),
            {k: s.fingerprint() for k, s in sorted(self.splits.items())},
        )


@dataclass(frozen=True)
class TeacherOutputs:
    """What a teacher gives the rest of the pipeline, per split.

    ``H[split]``: (n, d) float32 embeddings, the input of the teacher's last linear layer.
    ``Z[split]``: (n, C) float32 logits. ``W``: (C, d) last-layer weight; ``b``: (C,) bias.
    ``meta``: free-form facts (teacher name, pooling, timing) kept in the catalogue.
    """

    H: dict[str, np.ndarray]
    Z: dict[str, np.ndarray]
    W: np.ndarray
    b: np.ndarray
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.W.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.W.shape[0])


class RowStack:
    """Row blocks of several (n_i, d) arrays read as one (sum n_i, d) array, without copying
    them: the labeled training rows' H followed by the transfer rows' H (float16 memmaps at
    1M rows) as one training set.

    Supports what the readers of H use: ``shape``, ``dtype``, ``ndim``, ``len``, and indexing
    rows by a slice, an integer, an integer array or a boolean mask (each returns an ndarray
    of only those rows). ``np.asarray(stack)`` concatenates (a copy): only for small arrays.

    >>> a, b = np.zeros((2, 3), np.float16), np.ones((1, 3), np.float16)
    >>> s = RowStack([a, b])
    >>> s.shape, s[1:3].tolist(), s[np.array([2, 0])][:, 0].tolist()
    ((3, 3), [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], [1.0, 0.0])
    """

    def __init__(self, parts: list[Any]) -> None:
        widths = {tuple(np.shape(p)[1:]) for p in parts}
        if not parts or len(widths) != 1:
            raise ValueError(f"RowStack needs arrays of one row shape; got {sorted(widths)}")
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [int(np.shape(p)[0]) for p in parts])
        self.dtype = np.result_type(*[p.dtype for p in parts])
        self.shape = (int(self.offsets[-1]), *widths.pop())
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.concatenate([np.asarray(p) for p in self.parts])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):  # rows first, then the rest on the gathered rows
            rest: tuple[Any, ...] = (slice(None),) + tuple(key[1:])
            return self[key[0]][rest]
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step == 1:  # contiguous: a slice of each part, no index array
                blocks = []
                for i, p in enumerate(self.parts):
                    lo, hi = self.offsets[i], self.offsets[i + 1]
                    a, b = max(start, lo), min(stop, hi)
                    if a < b:
                        blocks.append(np.asarray(p[a - lo : b - lo]))
                if len(blocks) == 1:
                    return blocks[0]
                if not blocks:
                    return np.empty((0, *self.shape[1:]), dtype=self.dtype)
                return np.concatenate(blocks).astype(self.dtype, copy=False)
            key = np.arange(start, stop, step)
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            i = int(key) + (self.shape[0] if int(key) < 0 else 0)
            part = int(np.searchsorted(self.offsets, i, side="right")) - 1
            return np.asarray(self.parts[part][i - self.offsets[part]])
        idx = np.asarray(key)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        idx = np.where(idx < 0, idx + self.shape[0], idx)
        out = np.empty((len(idx), *self.shape[1:]), dtype=self.dtype)
        which = np.searchsorted(self.offsets, idx, side="right") - 1
        for i, p in enumerate(self.parts):
            sel = np.flatnonzero(which == i)
            if len(sel):
                local = idx[sel] - self.offsets[i]
                order = np.argsort(local, kind="stable")  # memmaps read best in order
                out[sel[order]] = np.asarray(p[local[order]])
        return out
