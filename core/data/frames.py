"""Frames to a :class:`Dataset`: column checks, label codes, latent columns, a split.

Why here and not in the readers: a file, a folder and a Hugging Face dataset all end as
frames, and the same checks (empty labels, "pos " and "pos", a label column that is an id)
must hold for all of them with the same messages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..types import TRANSFER, UNLABELED, Dataset, Split
from .readers import SPLIT_FILES, DataError

#: More distinct labels than this is almost surely a regression target or an id column.
MAX_CLASSES = 1000
#: Stand-in for a missing latent value: plotly hover and selection break on nulls.
MISSING = "(missing)"


def _rows(mask: np.ndarray, k: int = 5) -> str:
    idx = np.flatnonzero(mask)[:k] + 1
    more = ", ..." if mask.sum() > k else ""
    return ", ".join(str(i) for i in idx) + more


#: Label strings that other tools write for a missing value (R writes NA, numpy nan).
_NA_LABELS = frozenset({"nan", "na", "n/a", "null", "none"})


def _is_blank(s: pd.Series, na_strings: frozenset[str] = frozenset()) -> np.ndarray:
    """NaN/None or an all-whitespace string (CSV read with keep_default_na=False gives "")."""
    blank = s.isna().to_numpy()
    if isinstance(s.dtype, pd.StringDtype):
        # pandas' string dtype holds only strings and missing values, so this runs vectorised
        # (1.6M texts from Parquet: 0.3 s instead of 2 s for a Python call per row)
        stripped = s.str.strip()
        hit = stripped.eq("") | stripped.str.lower().isin(na_strings)
        return blank | hit.fillna(False).to_numpy(bool)
    if s.dtype == object or pd.api.types.is_string_dtype(s):

        def empty(v: object) -> bool:
            return isinstance(v, str) and (not v.strip() or v.strip().lower() in na_strings)

        blank = blank | s.map(empty).to_numpy(bool)
    return blank


#: How a user names a column: the option that exists in the CLI, and where the app has it.
_FLAG = "--set dataset.{0}=<column>, or the Data page's column mapping"


def _check_columns(df: pd.DataFrame, origin: str, needed: dict[str, str]) -> None:
    cols = [str(c) for c in df.columns]
    dups = sorted(n for n, k in Counter(cols).items() if k > 1)
    if dups:
        raise DataError(
            f"{origin}: duplicate column names {dups}; rename the columns so each is unique"
        )
    for col, flag in needed.items():
        if col not in df.columns:
            raise DataError(
                f"{origin}: column {col!r} not found; columns are {cols}; choose one: {flag}"
            )


#: Column names taken as the label when a file has no ``label`` column (lower-cased).
LABEL_NAMES = ("label", "labels", "class", "target", "y", "sentiment", "category", "rating")


def guess_columns(df: pd.DataFrame) -> tuple[str, str]:
    """A first guess at the (text, label) columns of a new file, for the column mapping.

    Why: a file without ``text``/``label`` columns used to get the first column for both, and
    the user then saw every sentence reported as a class. Text: a column named ``text``, else
    the string column with the longest mean length. Label: a column named like a label
    (``LABEL_NAMES``), else the column other than the text with the fewest distinct values
    (at least 2). Either falls back to the first column when nothing fits.
    """
    cols = [str(c) for c in df.columns]
    if not cols:
        raise DataError("the file has no columns; give it a header row (e.g. text,label)")
    lower = {c.lower(): c for c in cols}
    strings = [c for c in cols if df[c].dtype == object]
    lengths = {c: df[c].astype(str).str.len().mean() for c in strings}
    text = lower.get("text") or (max(lengths, key=lengths.__getitem__) if lengths else cols[0])
    named = next((lower[n] for n in LABEL_NAMES if n in lower and lower[n] != text), None)
    if named is not None:
        return text, named
    counts = {c: df[c].nunique(dropna=True) for c in cols if c != text}
    counts = {c: k for c, k in counts.items() if k >= 2}
    return text, min(counts, key=counts.__getitem__) if counts else cols[0]


#: A column not named in ``latent_cols`` is a latent subclass only with at most this many
#: distinct values ...
MAX_LATENT_VALUES = 50
#: ... and fewer distinct values than this fraction of rows: a free-text column (a review's
#: title) would otherwise become thousands of map colours and per-latent table rows.
MAX_LATENT_FRACTION = 0.05


def few_values(s: pd.Series) -> bool:
    """Whether a column has few enough distinct values to be a latent subclass unasked."""
    k = int(s.nunique(dropna=True))
    return k <= MAX_LATENT_VALUES and k < MAX_LATENT_FRACTION * len(s)


def latent_candidates(
    frames: Sequence[pd.DataFrame], exclude: Sequence[str] = (), named: Sequence[str] = ()
) -> list[str]:
    """The columns of ``frames`` (the splits of one dataset, in file order) that count as
    latent subclasses: those in ``named``, and the others outside ``exclude`` whose values,
    pooled over the splits that have the column, are :func:`few_values`."""
    cols: list[str] = []
    for df in frames:
        cols += [str(c) for c in df.columns if str(c) not in exclude and str(c) not in cols]
    return [
        c
        for c in cols
        if c in named or few_values(pd.concat([df[c] for df in frames if c in df.columns]))
    ]


def _strings(s: pd.Series) -> list[str]:
    """Every value as a ``str``; a string-dtype column's values already are one (``tolist``
    is 6x faster than a ``str()`` per row: 1.6M texts in 0.4 s)."""
    if isinstance(s.dtype, pd.StringDtype) and not s.hasnans:
        return s.tolist()
    return [str(t) for t in s]


def _label_values(s: pd.Series) -> np.ndarray:
    """Canonical label values: int64/float64 for numeric columns, stripped str otherwise."""
    if pd.api.types.is_bool_dtype(s):
        return s.astype(str).to_numpy(object)
    if pd.api.types.is_numeric_dtype(s):
        a = s.to_numpy()
        if np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)) and np.all(a == a // 1):
            a = a.astype(np.int64)
        return a
    return np.array([v.strip() for v in _strings(s)], dtype=object)


def _label_str(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _latent_arrays(frames: dict[str, pd.DataFrame], col: str) -> dict[str, np.ndarray]:
    """One column's values per split; when any split has gaps, all become str with MISSING."""
    blanks = {k: _is_blank(df[col]) for k, df in frames.items()}
    if not any(b.any() for b in blanks.values()):
        return {k: df[col].to_numpy() for k, df in frames.items()}
    return {
        k: np.array(
            [MISSING if b else _label_str(v) for v, b in zip(df[col], blanks[k], strict=True)],
            dtype=object,
        )
        for k, df in frames.items()
    }


def _normalize_label_map(label_map: Mapping[Any, str]) -> dict[Any, str]:
    out: dict[Any, str] = {}
    for k, v in label_map.items():
        key: Any = k
        if isinstance(k, str) and k.strip().lstrip("-").isdigit():
            key = int(k)
        out[key] = str(v)
    return out


def dataset_from_frame(
    df: pd.DataFrame,
    name: str,
    text_col: str = "text",
    label_col: str = "label",
    latent_cols: Sequence[str] = (),
    test_df: pd.DataFrame | None = None,
    dev_df: pd.DataFrame | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    min_per_class: int = 1,
    *,
    label_map: Mapping[Any, str] | None = None,
    origins: Mapping[str, str] | None = None,
    label_source: str = "labels.json",
) -> Dataset:
    """Validate frames and build a :class:`Dataset` with y in 0..C-1.

    Labels may be strings (classes in sorted order) or numbers (numeric order); string labels
    are stripped of surrounding whitespace so "pos " and "pos" are one class. ``label_map``
    (original value -> display name, in class order) fixes the classes instead, as
    ``labels.json`` does for the shared data (``label_source`` names where it came from, for
    messages). ``origins`` names each split's source (e.g.
    ``{"train": "train.csv"}``) for error messages. Without ``test_df`` the frame is split
    stratified by label with ``test_size`` and ``seed``. Missing latent values become
    :data:`MISSING`. Training rows with an empty label (``''``, NaN, NA) are not classes:
    they become the ``transfer`` split (y = -1; ``core/data/transfer.py`` drops the empty
    and the repeated ones); an empty label in test or dev is an error.
    """
    org = {s: f"{name} ({s})" for s in SPLIT_FILES}
    org.update(origins or {})
    frames = {"train": df}
    if test_df is not None:
        frames["test"] = test_df
    if dev_df is not None:
        frames["dev"] = dev_df
    latent_cols = list(latent_cols)
    if text_col == label_col:
        raise DataError(
            f"{name}: the text column and the label column are both {text_col!r}; map the "
            "label to the column that holds the classes (the Data page's Label column, or --set "
            "dataset.label_col=<column>)"
        )
    needed = {text_col: _FLAG.format("text_col"), label_col: _FLAG.format("label_col")}
    needed.update({c: "a fixed dataset.latent_cols" for c in latent_cols if c not in needed})

    labels: dict[str, np.ndarray] = {}
    texts: dict[str, list[str]] = {}
    unlabeled: pd.DataFrame | None = None
    for split, frame in list(frames.items()):
        origin = org[split]
        _check_columns(frame, origin, needed)
        if len(frame) == 0:
            raise DataError(f"{origin}: no rows (only a header); add examples")
        blank = _is_blank(frame[label_col], _NA_LABELS)
        if blank.any() and split != "train":
            raise DataError(
                f"{origin}: {int(blank.sum())} of {len(frame)} rows have an empty or missing "
                f"label (e.g. '', NaN, NA) in column {label_col!r} (data rows {_rows(blank)}, "
                f"counting from 1); every {split} row needs a label (only training rows may "
                "be unlabeled: they become transfer rows); fill in those labels or remove the "
                "rows"
            )
        if blank.all():
            raise DataError(
                f"{origin}: none of the {len(frame)} rows has a label in column {label_col!r}; "
                "a classifier needs labeled rows (rows with an empty label are only used as "
                "unlabeled transfer rows beside them); fill in labels or choose the label "
                "column: " + _FLAG.format("label_col")
            )
        tblank = _is_blank(frame[text_col]) & ~blank  # empty unlabeled texts: dropped later
        if tblank.any():
            raise DataError(
                f"{origin}: {int(tblank.sum())} of {len(frame)} rows have an empty text in "
                f"column {text_col!r} (data rows {_rows(tblank)}, counting from 1); remove "
                "those rows"
            )
        if blank.any():  # unlabeled training rows: the transfer split (core/data/transfer.py)
            unlabeled, frame = frame[blank], frame[~blank]
            frames[split] = frame
        labels[split] = _label_values(frame[label_col])
        texts[split] = _strings(frame[text_col])

    if not all(np.issubdtype(a.dtype, np.number) for a in labels.values()):
        labels = {k: np.array([_label_str(v) for v in a], dtype=object) for k, a in labels.items()}

    train_origin = org["train"]
    if label_map is not None:
        lm = _normalize_label_map(label_map)
        if all(isinstance(k, int) for k in lm) and labels["train"].dtype == object:
            lm = {str(k): v for k, v in lm.items()}
        classes = list(lm)
        label_names = list(lm.values())
    else:
        uniq = np.unique(labels["train"])
        if len(uniq) > MAX_CLASSES:
            raise DataError(
                f"{train_origin}: column {label_col!r} has {len(uniq)} distinct values (more "
                f"than {MAX_CLASSES}); it looks like a regression target or an id, not class "
                "labels; choose the column of class labels: " + _FLAG.format("label_col")
            )
        classes = uniq.tolist()
        label_names = [_label_str(c) for c in classes]

    ys: dict[str, np.ndarray] = {}
    for split, a in labels.items():
        codes = pd.Categorical(a, categories=classes).codes.astype(np.int64)
        if (codes < 0).any():
            unknown = sorted({_label_str(v) for v in a[codes < 0]})[:10]
            where = label_source if label_map is not None else "the training data"
            raise DataError(
                f"{org[split]}: label values {unknown} do not occur in {where}; fix those "
                "labels or remove the rows"
            )
        ys[split] = codes

    counts = np.bincount(ys["train"], minlength=len(classes))
    present = int((counts > 0).sum())
    if present < 2:
        only = label_names[int(np.argmax(counts))]
        raise DataError(
            f"{train_origin}: only one class ({only!r}) in column {label_col!r}; a classifier "
            "needs at least two classes; add examples of another class or check the label column ("
            + _FLAG.format("label_col")
            + ")"
        )
    # With label_map a class may legitimately be absent from train (labels.json lists all).
    low = [i for i in np.flatnonzero(counts < min_per_class) if label_map is None or counts[i]]
    if low:
        detail = ", ".join(f"{label_names[i]!r}: {counts[i]}" for i in low[:10])
        raise DataError(
            f"{train_origin}: classes with fewer than {min_per_class} examples ({detail}); "
            "add examples or remove those classes"
        )

    with_unlabeled = frames if unlabeled is None else {**frames, TRANSFER: unlabeled}
    latent: dict[str, dict[str, np.ndarray]] = {k: {} for k in with_unlabeled}
    for col in latent_cols:
        for split, arr in _latent_arrays(with_unlabeled, col).items():
            latent[split][col] = arr

    if test_df is None:
        splits = _split_single(
            ys["train"], texts["train"], latent["train"], label_names, train_origin, test_size, seed
        )
    else:
        splits = {s: Split(y=ys[s], texts=texts[s], latent=latent[s]) for s in frames}
    if dev_df is not None and "dev" not in splits:
        splits["dev"] = Split(y=ys["dev"], texts=texts["dev"], latent=latent["dev"])
    info: dict[str, int] = {}
    if unlabeled is not None:
        splits[TRANSFER] = Split(
            y=np.full(len(unlabeled), UNLABELED, dtype=np.int64),
            texts=[
                "" if b else str(t)
                for t, b in zip(unlabeled[text_col], _is_blank(unlabeled[text_col]), strict=True)
            ],
            latent=latent[TRANSFER],
        )
        info = {"from_train_file": len(unlabeled)}
    return Dataset(
        name=name,
        label_names=label_names,
        splits=splits,
        label_values=tuple(_label_str(c) for c in classes),
        transfer_info=info,
    )


def _split_single(
    y: np.ndarray,
    texts: list[str],
    latent: dict[str, np.ndarray],
    label_names: list[str],
    origin: str,
    test_size: float,
    seed: int,
) -> dict[str, Split]:
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y, minlength=len(label_names))
    single = [label_names[i] for i in np.flatnonzero(counts == 1)]
    if single:
        raise DataError(
            f"{origin}: classes {single[:10]} have only 1 example; a stratified train/test "
            "split needs at least 2 per class; add examples, remove those rows, or give a "
            "separate test file"
        )
    idx = np.arange(len(y))
    try:
        tr, te = train_test_split(idx, test_size=test_size, random_state=seed, stratify=y)
    except ValueError as err:
        raise DataError(
            f"{origin}: cannot split {len(y)} rows into train/test with test_size={test_size} "
            f"({err}); change test_size or add examples"
        ) from None
    tr, te = np.sort(tr), np.sort(te)

    def take(ix: np.ndarray) -> Split:
        return Split(
            y=y[ix],
            texts=[texts[i] for i in ix],
            latent={k: v[ix] for k, v in latent.items()},
        )

    return {"train": take(tr), "test": take(te)}


class SourceOptions(NamedTuple):
    """The column mapping and fallback split every file, folder and ``hf:`` source takes
    (a :class:`DatasetSpec`'s fields), passed on as one value."""

    text_col: str = "text"
    label_col: str = "label"
    latent_cols: Sequence[str] = ()
    test_size: float = 0.2
    seed: int = 0


def dataset_from_splits(
    frames: Mapping[str, pd.DataFrame],
    name: str,
    opts: SourceOptions,
    label_map: Mapping[Any, str] | None,
    **kw: Any,
) -> Dataset:
    """:func:`dataset_from_frame` on split frames keyed ``train``/``test``/``dev`` (a folder's
    files, a DatasetDict's splits); without ``test``, train is split."""
    return dataset_from_frame(
        frames["train"],
        name,
        text_col=opts.text_col,
        label_col=opts.label_col,
        latent_cols=opts.latent_cols,
        test_df=frames.get("test"),
        dev_df=frames.get("dev"),
        test_size=opts.test_size,
        seed=opts.seed,
        label_map=label_map,
        **kw,
    )
