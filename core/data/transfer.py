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

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..types import TRANSFER, UNLABELED, Dataset, Split
from .frames import MISSING, _is_blank, _label_str, _label_values, _rows
from .readers import SUFFIXES, DataError, _decode_utf8, read_table

#: Suffixes of a plain-text transfer file (one input per line).
TEXT_SUFFIXES = (".txt", ".text")


def read_transfer(
    path: str | Path, text_col: str, label_col: str, ds: Dataset
) -> tuple[list[str], dict[str, np.ndarray]]:
    """The inputs of a transfer file and the dataset's latent columns it has (else
    ``MISSING``), as ``(texts, latent)``; empty texts stay (as "") for the caller to count.

    A label column, when the file has one, is checked only: each non-empty label must be a
    class of ``ds`` (its file value or its name), since a file of another task's labels is
    more likely a wrong file than a pool of inputs; the labels are otherwise not used (the
    teacher labels transfer rows). Raises ``DataError`` naming the problem and the fix.
    """
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix not in TEXT_SUFFIXES and suffix not in SUFFIXES:
        raise DataError(
            f"dataset.transfer {p.name}: cannot tell the format from the suffix {suffix!r}; "
            f"use one of {sorted(SUFFIXES)} (a table with a {text_col!r} column) or .txt (one "
            "input per line)"
        )
    if suffix in TEXT_SUFFIXES:
        if not p.is_file():
            raise DataError(f"dataset.transfer {p}: no such file; check the path")
        lines = _decode_utf8(p, p.read_bytes()).splitlines()
        if not lines:
            raise DataError(
                f"dataset.transfer {p.name}: the file is empty; write one input per line"
            )
        return lines, {c: _missing(len(lines)) for c in ds.latent_columns}
    df = read_table(p)
    if text_col not in df.columns:
        raise DataError(
            f"dataset.transfer {p.name}: no text column {text_col!r} (columns are "
            f"{[str(c) for c in df.columns]}); a transfer file uses the dataset's text column "
            f"(dataset.text_col): rename its text column to {text_col!r}, or save the inputs "
            "as a .txt file with one per line"
        )
    if label_col in df.columns:
        _check_labels(df[label_col], p.name, ds)
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
    return texts, latent


def _missing(n: int) -> np.ndarray:
    return np.full(n, MISSING, dtype=object)


def _check_labels(labels: pd.Series, name: str, ds: Dataset) -> None:
    known = set(ds.label_values) | set(ds.label_names)
    given = ~_is_blank(labels)
    values = np.array([_label_str(v) for v in _label_values(labels)], dtype=object)
    bad = given & ~np.isin(values, list(known))
    if bad.any():
        unknown = sorted(set(values[bad].tolist()))[:10]
        raise DataError(
            f"dataset.transfer {name}: {int(bad.sum())} rows have labels outside the dataset's "
            f"classes {sorted(known)}: {unknown} (data rows {_rows(bad)}, counting from 1); a "
            "transfer file's labels, when it has any, must be classes of the dataset (they "
            "are not used: the teacher labels transfer rows); fix or blank those labels, or "
            "check that this is the right file"
        )


def with_transfer(
    ds: Dataset, path: str | Path | None = None, text_col: str = "text", label_col: str = "label"
) -> Dataset:
    """``ds`` with its transfer split final: the unlabeled rows of its training file (already
    in ``ds.splits[TRANSFER]``) plus the rows of the file ``path``, without empty texts and
    without texts of the labeled splits (see the module docstring); ``transfer_info`` counts
    each step. Without either source, ``ds`` unchanged.

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
    texts: list[str] = []
    latent: dict[str, list[np.ndarray]] = {c: [] for c in ds.latent_columns}
    info = {"from_train_file": 0, "from_file": 0}
    if from_train is not None:
        texts += list(from_train.texts or [])
        for c in latent:
            latent[c].append(np.asarray(from_train.latent[c], dtype=object))
        info["from_train_file"] = len(from_train)
    if path is not None:
        file_texts, file_latent = read_transfer(path, text_col, label_col, ds)
        texts += file_texts
        for c in latent:
            latent[c].append(file_latent[c])
        info["from_file"] = len(file_texts)
    keys = [t.strip() for t in texts]
    labeled = {s: sp for s, sp in ds.splits.items() if s != TRANSFER}
    evaluated = {t.strip() for s, sp in labeled.items() if s != "train" for t in sp.texts or []}
    trained = {t.strip() for t in labeled["train"].texts or []}
    empty = np.array([not k for k in keys], dtype=bool)
    in_eval = np.array([k in evaluated for k in keys], dtype=bool) & ~empty
    in_train = np.array([k in trained for k in keys], dtype=bool) & ~empty & ~in_eval
    keep = ~(empty | in_eval | in_train)
    info.update(
        dropped_empty=int(empty.sum()),
        dropped_eval=int(in_eval.sum()),
        dropped_train=int(in_train.sum()),
        kept=int(keep.sum()),
    )
    if not keep.any():
        raise DataError(
            f"{ds.name}: all {len(keys):,} transfer rows were dropped ({_dropped(info)}); the "
            "transfer set adds no input the labeled data lacks; give a file of other inputs "
            "or remove dataset.transfer"
        )
    rows = np.flatnonzero(keep)
    split = Split(
        y=np.full(len(rows), UNLABELED, dtype=np.int64),
        texts=[texts[i] for i in rows],
        latent={c: np.concatenate(parts)[rows] for c, parts in latent.items()},
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
