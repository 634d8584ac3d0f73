"""Unlabeled transfer rows: the inputs a teacher labels for its student.

Why a split of their own (``types.TRANSFER``, y = -1): the teacher computes H and Z for them
like for any split, the workspace stores them under the dataset's fingerprint, and every
score keeps to the labeled splits. They come from rows with an empty label in the training
file (``frames.dataset_from_frame``) and from ``dataset.transfer``: a CSV/TSV/Parquet/JSONL
file with the dataset's text column, or a .txt file with one input per line.

Leakage: a transfer row whose text equals a dev or test text (the selection split included)
is dropped, so no evaluated input is ever trained on; one equal to a labeled training text is
dropped too (that input is already trained on, with its label); empty texts are dropped.
Each count is kept in ``Dataset.transfer_info`` and said in the split note. Texts are compared
after stripping surrounding whitespace. Repeats inside the transfer set are kept: a pool
drawn from real traffic repeats its frequent inputs, and that is what the student should see.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..types import TRANSFER, UNLABELED, Dataset, Split
from .frames import MISSING, _is_blank, _label_str, _label_values
from .readers import SUFFIXES, DataError, iter_lines, iter_table

#: Suffixes of a plain-text transfer file (one input per line).
TEXT_SUFFIXES = (".txt", ".text")


#: Rows per block when a transfer file is read: the file streams, one block at a time.
READ_ROWS = 65_536

#: A block of a transfer file: its texts ("" for an empty one) and the dataset's latent
#: columns (``MISSING`` where the file has none).
Block = tuple[list[str], dict[str, np.ndarray]]


def iter_transfer(
    path: str | Path, text_col: str, label_col: str, ds: Dataset, rows: int | None = None
) -> Iterator[Block]:
    """The inputs of a transfer file in blocks of ``rows`` (``READ_ROWS``; a .txt file in
    blocks of 4 MB), as ``(texts, latent)``; empty texts stay (as "") for the caller to
    count. The file is streamed (CSV/TSV in pandas chunks, Parquet by record batches, JSONL
    and .txt line by line) and only the text, label and latent columns are read, so a file
    far larger than its texts never sits in memory, and no block is held after the caller
    moves on.

    A label column, when the file has one, is checked only: each non-empty label must be a
    class of ``ds`` (its file value or its name), since a file of another task's labels is
    more likely a wrong file than a pool of inputs; the labels are otherwise not used (the
    teacher labels transfer rows). Raises ``DataError`` naming the problem and the fix (a
    label problem after the whole file was read, with the count over all of it).
    """
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    rows = int(rows or READ_ROWS)
    if suffix not in TEXT_SUFFIXES and suffix not in SUFFIXES:
        raise DataError(
            f"dataset.transfer {p.name}: cannot tell the format from the suffix {suffix!r}; "
            f"use one of {sorted(SUFFIXES)} (a table with a {text_col!r} column) or .txt (one "
            "input per line)"
        )
    if suffix in TEXT_SUFFIXES:
        yield from _iter_text_file(p, ds)
        return

    def columns(names: list[str]) -> list[str]:
        if text_col not in names:
            raise DataError(
                f"dataset.transfer {p.name}: no text column {text_col!r} (columns are "
                f"{[str(c) for c in names]}); a transfer file uses the dataset's text column "
                f"(dataset.text_col): rename its text column to {text_col!r}, or save the "
                "inputs as a .txt file with one per line"
            )
        return [c for c in names if c in {text_col, label_col, *ds.latent_columns}]

    bad = _BadLabels()
    for df in iter_table(p, columns, rows):
        if label_col in df.columns:
            bad.check(df[label_col], ds)
        blank = _is_blank(df[text_col])
        texts = ["" if b else str(t) for t, b in zip(df[text_col], blank, strict=True)]
        latent = {
            c: (
                np.array(
                    [
                        MISSING if b else _label_str(v)
                        for v, b in zip(df[c], _is_blank(df[c]), strict=True)
                    ],
                    dtype=object,
                )
                if c in df.columns
                else _missing(len(df))
            )
            for c in ds.latent_columns
        }
        yield texts, latent
    bad.raise_if_any(p.name, ds)


def _iter_text_file(p: Path, ds: Dataset) -> Iterator[Block]:
    """A .txt file's lines in the blocks ``iter_lines`` reads (4 MB of the file each)."""
    if not p.is_file():
        raise DataError(f"dataset.transfer {p}: no such file; check the path")
    seen = False
    for lines in iter_lines(p):
        seen = True
        yield lines, {c: _missing(len(lines)) for c in ds.latent_columns}
    if not seen:
        raise DataError(f"dataset.transfer {p.name}: the file is empty; write one input per line")


def read_transfer(
    path: str | Path, text_col: str, label_col: str, ds: Dataset
) -> tuple[list[str], dict[str, np.ndarray]]:
    """All the inputs of a transfer file at once, as ``(texts, latent)`` (``iter_transfer``'s
    blocks joined; ``with_transfer`` keeps only the rows it keeps, block by block)."""
    texts: list[str] = []
    parts: dict[str, list[np.ndarray]] = {c: [] for c in ds.latent_columns}
    for block, latent in iter_transfer(path, text_col, label_col, ds):
        texts += block
        for c in parts:
            parts[c].append(latent[c])
    return texts, {c: _join(v) for c, v in parts.items()}


def _missing(n: int) -> np.ndarray:
    return np.full(n, MISSING, dtype=object)


def _join(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=object)


class _BadLabels:
    """Labels outside the dataset's classes, counted over every block of a file."""

    def __init__(self) -> None:
        self.count, self.seen = 0, 0
        self.rows: list[int] = []  # the first few, 1-based over the whole file
        self.unknown: set[str] = set()

    def check(self, labels: pd.Series, ds: Dataset) -> None:
        known = set(ds.label_values) | set(ds.label_names)
        given = ~_is_blank(labels)
        values = np.array([_label_str(v) for v in _label_values(labels)], dtype=object)
        bad = given & ~np.isin(values, list(known))
        if bad.any():
            self.count += int(bad.sum())
            self.rows += (np.flatnonzero(bad)[:5] + self.seen + 1).tolist()
            self.unknown |= set(values[bad].tolist())
        self.seen += len(labels)

    def raise_if_any(self, name: str, ds: Dataset) -> None:
        if not self.count:
            return
        known = set(ds.label_values) | set(ds.label_names)
        rows = ", ".join(str(i) for i in self.rows[:5]) + (", ..." if self.count > 5 else "")
        raise DataError(
            f"dataset.transfer {name}: {self.count} rows have labels outside the dataset's "
            f"classes {sorted(known)}: {sorted(self.unknown)[:10]} (data rows {rows}, counting "
            "from 1); a transfer file's labels, when it has any, must be classes of the "
            "dataset (they are not used: the teacher labels transfer rows); fix or blank "
            "those labels, or check that this is the right file"
        )


def with_transfer(
    ds: Dataset, path: str | Path | None = None, text_col: str = "text", label_col: str = "label"
) -> Dataset:
    """``ds`` with its transfer split final: the unlabeled rows of its training file (already
    in ``ds.splits[TRANSFER]``) plus the rows of the file ``path``, without empty texts and
    without texts of the labeled splits (see the module docstring); ``transfer_info`` counts
    each step. Without either source, ``ds`` unchanged.

    The file is read block by block (``iter_transfer``) and only the kept rows of each block
    are held, so memory holds the kept texts once plus one block; the labeled splits' texts
    are compared through Python sets (hashes) of their stripped strings.

    Raises ``DataError`` for a non-text dataset, a file that cannot be used, and when every
    transfer row is dropped (a transfer set that only repeats the labeled data).
    """
    from_train = ds.splits.get(TRANSFER)
    if path is None and from_train is None:
        return ds
    if not ds.is_text:
        raise DataError(
            f"dataset.transfer: {ds.name} has numeric features, and transfer rows are texts; "
            "remove dataset.transfer or use a text dataset"
        )
    labeled = {s: sp for s, sp in ds.splits.items() if s != TRANSFER}
    evaluated = {t.strip() for s, sp in labeled.items() if s != "train" for t in sp.texts or []}
    trained = {t.strip() for t in labeled["train"].texts or []}
    info = {"from_train_file": 0, "from_file": 0}
    info |= {"dropped_empty": 0, "dropped_eval": 0, "dropped_train": 0, "kept": 0}
    texts: list[str] = []
    latent: dict[str, list[np.ndarray]] = {c: [] for c in ds.latent_columns}

    def take(block: list[str], block_latent: dict[str, np.ndarray]) -> None:
        keys = [t.strip() for t in block]
        empty = np.array([not k for k in keys], dtype=bool)
        in_eval = np.array([k in evaluated for k in keys], dtype=bool) & ~empty
        in_train = np.array([k in trained for k in keys], dtype=bool) & ~empty & ~in_eval
        keep = np.flatnonzero(~(empty | in_eval | in_train))
        info["dropped_empty"] += int(empty.sum())
        info["dropped_eval"] += int(in_eval.sum())
        info["dropped_train"] += int(in_train.sum())
        info["kept"] += len(keep)
        texts.extend(block[i] for i in keep)
        for c in latent:
            latent[c].append(np.asarray(block_latent[c], dtype=object)[keep])

    if from_train is not None:
        info["from_train_file"] = len(from_train)
        take(list(from_train.texts or []), {c: from_train.latent[c] for c in latent})
    if path is not None:
        for block, block_latent in iter_transfer(path, text_col, label_col, ds):
            info["from_file"] += len(block)
            take(block, block_latent)
    if not info["kept"]:
        total = info["from_train_file"] + info["from_file"]
        raise DataError(
            f"{ds.name}: all {total:,} transfer rows were dropped ({_dropped(info)}); the "
            "transfer set adds no input the labeled data lacks; give a file of other inputs "
            "or remove dataset.transfer"
        )
    split = Split(
        y=np.full(len(texts), UNLABELED, dtype=np.int64),
        texts=texts,
        latent={c: _join(parts) for c, parts in latent.items()},
    )
    splits = {**labeled, TRANSFER: split}
    before = ds.before_holdout.labeled() if ds.before_holdout is not None else None
    return replace(ds, splits=splits, transfer_info=info, before_holdout=before)


def _dropped(info: dict[str, int]) -> str:
    parts = [
        f"{info.get('dropped_eval', 0):,} equal to a dev/test text",
        f"{info.get('dropped_train', 0):,} equal to a labeled training text",
        f"{info.get('dropped_empty', 0):,} empty",
    ]
    return ", ".join(parts)


def transfer_note(ds: Dataset) -> str:
    """One line on the transfer rows, for the split note (empty without any): how many were
    kept, where they came from and what was dropped."""
    info = ds.transfer_info
    if not info:
        return ""
    sources = []
    if info.get("from_file"):
        sources.append(f"{info['from_file']:,} from the transfer file")
    if info.get("from_train_file"):
        sources.append(f"{info['from_train_file']:,} with an empty label in the training file")
    return (
        f"{info.get('kept', ds.n_transfer):,} unlabeled transfer rows ({' and '.join(sources)}; "
        f"dropped {_dropped(info)})"
    )
