"""Shared value types that flow between the pipeline stages.

They live in one small module so that data loading, teachers, the workspace and the app can
exchange them without importing each other (data flows one way, see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Split:
    """One split of a dataset.

    Text datasets fill ``texts``; non-text data (digits) fills ``features``. ``y`` holds class
    ids 0..C-1 (int64). ``latent`` maps a latent column name to its values (any dtype,
    shape (n,)), e.g. ``{"topic": array([...])}``.
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
    """A labelled dataset with named splits ("train", "test", optionally "dev")."""

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

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

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
