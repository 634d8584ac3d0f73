"""Loading labelled text (or digit) data into :class:`core.types.Dataset`.

Why one module with strict checks: a bad file discovered halfway through an hour of teacher
inference wastes the hour, and a silently mangled one (a ';'-separated CSV read as one column,
labels "pos " and "pos" counted as two classes, "NA" tweets turned into NaN) gives wrong
results without any error. Every problem raises :class:`DataError` naming the file, the
problem and the fix, before anything expensive runs.

Sources (see docs/ARCHITECTURE.md): a single CSV/TSV/Parquet/JSONL file (split here into
train/test, and :attr:`Dataset.split_note` says so with the sizes), a folder path holding
``train``/``test`` (optional ``dev``) files in any of those formats and an optional
``labels.json``, a folder in the ``../shared/data/<name>/`` format (``shared:<name>``), Hugging
Face ``datasets`` sources with the optional ``hf`` extra (``hf:NAME[:CONFIG]`` online, a folder
written by ``save_to_disk`` offline), and two built-in demos (:data:`DEMOS`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import DatasetSpec
from .store import atomic_write_bytes
from .types import Dataset, Split

__all__ = [
    "DEMOS",
    "MAX_CLASSES",
    "MISSING",
    "DataError",
    "check_subclass_counts",
    "check_upload_size",
    "dataset_from_frame",
    "load_dataset",
    "load_demo",
    "load_file",
    "load_folder",
    "load_hf",
    "load_shared",
    "read_table",
    "shared_data_root",
    "source_table",
    "split_files",
    "upload_limit_mb",
]

DEMOS = ("text-demo", "digits-bin")
#: More distinct labels than this is almost surely a regression target or an id column.
MAX_CLASSES = 1000
#: Stand-in for a missing latent value: plotly hover and selection break on nulls.
MISSING = "(missing)"

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "sample_data"
SPLIT_FILES = ("train", "test", "dev")

_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_FORMATS = ("csv", "tsv", "parquet", "jsonl")
_SEPS = {"csv": ",", "tsv": "\t"}
_SEP_NAMES = {",": "','", "\t": "tab", ";": "';'", "|": "'|'"}


class DataError(ValueError):
    """A data file or frame that cannot be used; the message names the problem and the fix."""


# --------------------------------------------------------------------------- reading files


def _resolve_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        f = fmt.lower().lstrip(".")
        if f not in _FORMATS:
            raise DataError(f"{path.name}: unknown format {fmt!r}; use one of {list(_FORMATS)}")
        return f
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise DataError(
            f"{path.name}: cannot tell the format from the suffix {suffix!r}; rename the file "
            f"to end in one of {sorted(_SUFFIXES)}"
        )
    return _SUFFIXES[suffix]


def _decode_utf8(path: Path, raw: bytes) -> str:
    """Decode strictly so a Latin-1 or UTF-16 file fails loudly instead of as mojibake."""
    bom = b"\xef\xbb\xbf"
    skip = len(bom) if raw.startswith(bom) else 0
    try:
        return raw[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = skip + err.start
        line = raw.count(b"\n", 0, offset) + 1
        bad = raw[offset : offset + 1].hex()
        raise DataError(
            f"{path.name}: not valid UTF-8: byte 0x{bad} at byte offset {offset} (line {line}); "
            "re-save the file as UTF-8 (e.g. in a spreadsheet choose 'CSV UTF-8', or "
            "`iconv -f latin1 -t utf-8`)"
        ) from None


def _check_header(path: Path, names: Sequence[str]) -> None:
    dups = sorted(n for n, k in Counter(names).items() if k > 1)
    if dups:
        raise DataError(
            f"{path.name}: duplicate column names {dups} in the header; rename the columns so "
            "each name is unique"
        )


def _read_delimited(path: Path, raw: bytes, fmt: str) -> pd.DataFrame:
    if raw.startswith(b"PAR1"):
        raise DataError(
            f"{path.name}: this is a Parquet file, not {fmt.upper()}; rename it to .parquet"
        )
    text = _decode_utf8(path, raw)
    sep = _SEPS[fmt]
    try:
        header = next(csv.reader(io.StringIO(text), delimiter=sep), [])
    except csv.Error as err:
        raise DataError(f"{path.name}: cannot read the header row ({err})") from None
    _check_header(path, header)
    try:
        # keep_default_na=False: a text or label "NA"/"null" stays a string, not NaN.
        df = pd.read_csv(io.StringIO(text), sep=sep, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name}: the file has no header and no rows; add data") from None
    except (pd.errors.ParserError, ValueError) as err:
        raise DataError(
            f"{path.name}: not readable as {fmt.upper()} ({str(err).strip()}); check the quoting "
            f"and that every row has the same number of {_SEP_NAMES[sep]}-separated fields"
        ) from None
    if df.shape[1] == 1:
        only = str(df.columns[0])
        for cand in (",", "\t", ";", "|"):
            if cand != sep and cand in only:
                hint = (
                    "rename it to .tsv"
                    if cand == "\t"
                    else "rename it to .csv"
                    if cand == ","
                    else "re-save it with ',' as the delimiter"
                )
                raise DataError(
                    f"{path.name}: only one column was found ({only!r}); the file looks "
                    f"{_SEP_NAMES[cand]}-separated, not {_SEP_NAMES[sep]}-separated; {hint}"
                )
    return df


def _read_parquet(path: Path, raw_head: bytes) -> pd.DataFrame:
    if not raw_head.startswith(b"PAR1"):
        looks = "text (probably a CSV)" if _looks_like_text(raw_head) else "not Parquet"
        raise DataError(
            f"{path.name}: not a Parquet file (it does not start with 'PAR1'; its content looks "
            f"like {looks}); rename it to .csv/.tsv/.jsonl to match its content"
        )
    import pyarrow.parquet as pq

    try:
        _check_header(path, pq.read_schema(path).names)
        return pd.read_parquet(path)
    except DataError:
        raise
    except Exception as err:  # pyarrow raises many types for corrupt files
        raise DataError(
            f"{path.name}: cannot read the Parquet file ({err}); re-export it"
        ) from None


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start > len(head) - 4  # only a multi-byte char cut at the end
    return True


def _read_jsonl(path: Path, raw: bytes) -> pd.DataFrame:
    text = _decode_utf8(path, raw)
    records: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{path.name}: line {lineno} is not valid JSON ({err.msg}); JSONL needs one "
                "JSON object per line"
            ) from None
        if not isinstance(rec, dict):
            raise DataError(
                f"{path.name}: line {lineno} is a {type(rec).__name__}, not an object; write "
                'one object per line, e.g. {"text": "...", "label": "pos"}'
            )
        records.append(rec)
    return pd.DataFrame.from_records(records)


def read_table(path: str | Path, fmt: str | None = None) -> pd.DataFrame:
    """Read a CSV, TSV, Parquet or JSONL file (format from ``fmt`` or the suffix).

    CSV/TSV are read with ``keep_default_na=False`` (empty cells become ``""``), so texts such
    as "NA" or "null" survive; emptiness is checked later, by :func:`dataset_from_frame`.
    """
    p = Path(path)
    f = _resolve_format(p, fmt)
    if not p.is_file():
        raise DataError(f"{p}: no such file; check the path (relative paths start at {Path.cwd()})")
    if p.stat().st_size == 0:
        raise DataError(f"{p.name}: the file is empty (0 bytes); it needs a header and rows")
    if f == "parquet":
        with open(p, "rb") as fh:
            head = fh.read(512)
        return _read_parquet(p, head)
    raw = p.read_bytes()
    if f == "jsonl":
        return _read_jsonl(p, raw)
    return _read_delimited(p, raw, f)


# --------------------------------------------------------------------------- frames -> Dataset


def _rows(mask: np.ndarray, k: int = 5) -> str:
    idx = np.flatnonzero(mask)[:k] + 1
    more = ", ..." if mask.sum() > k else ""
    return ", ".join(str(i) for i in idx) + more


#: Label strings that other tools write for a missing value (R writes NA, numpy nan).
_NA_LABELS = frozenset({"nan", "na", "n/a", "null", "none"})


def _is_blank(s: pd.Series, na_strings: frozenset[str] = frozenset()) -> np.ndarray:
    """NaN/None or an all-whitespace string (CSV read with keep_default_na=False gives "")."""
    blank = s.isna().to_numpy()
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


def _label_values(s: pd.Series) -> np.ndarray:
    """Canonical label values: int64/float64 for numeric columns, stripped str otherwise."""
    if pd.api.types.is_bool_dtype(s):
        return s.astype(str).to_numpy(object)
    if pd.api.types.is_numeric_dtype(s):
        a = s.to_numpy()
        if np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)) and np.all(a == a // 1):
            a = a.astype(np.int64)
        return a
    return np.array([str(v).strip() for v in s], dtype=object)


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
    :data:`MISSING`.
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
    for split, frame in frames.items():
        origin = org[split]
        _check_columns(frame, origin, needed)
        if len(frame) == 0:
            raise DataError(f"{origin}: no rows (only a header); add examples")
        blank = _is_blank(frame[label_col], _NA_LABELS)
        if blank.any():
            raise DataError(
                f"{origin}: {int(blank.sum())} of {len(frame)} rows have an empty or missing "
                f"label (e.g. '', NaN, NA) in column {label_col!r} (data rows {_rows(blank)}, "
                "counting from 1); "
                "fill in those labels or remove the rows"
            )
        tblank = _is_blank(frame[text_col])
        if tblank.any():
            raise DataError(
                f"{origin}: {int(tblank.sum())} of {len(frame)} rows have an empty text in "
                f"column {text_col!r} (data rows {_rows(tblank)}, counting from 1); remove "
                "those rows"
            )
        labels[split] = _label_values(frame[label_col])
        texts[split] = [str(t) for t in frame[text_col]]

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

    latent: dict[str, dict[str, np.ndarray]] = {k: {} for k in frames}
    for col in latent_cols:
        for split, arr in _latent_arrays(frames, col).items():
            latent[split][col] = arr

    if test_df is None:
        splits = _split_single(
            ys["train"], texts["train"], latent["train"], label_names, train_origin, test_size, seed
        )
    else:
        splits = {s: Split(y=ys[s], texts=texts[s], latent=latent[s]) for s in frames}
    if dev_df is not None and "dev" not in splits:
        splits["dev"] = Split(y=ys["dev"], texts=texts["dev"], latent=latent["dev"])
    return Dataset(name=name, label_names=label_names, splits=splits)


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


def _sizes(ds: Dataset) -> str:
    """``1,037 train, 115 dev, 288 test rows``: the split sizes a note names."""
    order = [s for s in ("train", "dev", "test") if s in ds.splits]
    order += sorted(s for s in ds.splits if s not in order)
    held = ds.holdout_rows is not None  # dev carved out of train by with_selection_split
    return (
        ", ".join(
            f"{len(ds.splits[s]):,} {s}{' (held out of train)' if held and s == SELECT else ''}"
            for s in order
        )
        + " rows"
    )


def _with_note(ds: Dataset, extra: str = "") -> Dataset:
    """``ds`` with its split note completed by the split sizes (and ``extra``, a mention)."""
    if not ds.split_note and not extra:
        return ds
    head = f"{ds.split_note}: {_sizes(ds)}" if ds.split_note else ""
    return replace(ds, split_note="; ".join(p for p in (head, extra) if p))


def _split_reason(what: str, test_size: float, seed: int) -> str:
    pct = int(round(100 * test_size))
    return f"{what} was split stratified {100 - pct}/{pct} (seed {seed}) into train and test"


def _load_file(
    p: Path,
    text_col: str,
    label_col: str,
    latent_cols: Sequence[str],
    test_size: float,
    seed: int,
) -> Dataset:
    ds = dataset_from_frame(
        read_table(p),
        p.stem,
        text_col=text_col,
        label_col=label_col,
        latent_cols=latent_cols,
        test_size=test_size,
        seed=seed,
        origins={"train": p.name},
    )
    return replace(ds, split_note=_split_reason(p.name, test_size, seed))


def load_file(
    path: str | Path,
    text_col: str = "text",
    label_col: str = "label",
    latent_cols: Sequence[str] = (),
    test_size: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """One CSV/TSV/Parquet/JSONL file, split stratified into train/test.

    ``split_note`` names the split and its sizes: a split made here, not by the user, should
    never pass unnoticed (the held-out rows are what the test score means)."""
    p = Path(path)
    return _with_note(_load_file(p, text_col, label_col, latent_cols, test_size, seed))


# --------------------------------------------------------------------------- folders, demos


def shared_data_root() -> Path | None:
    """Folder of the shared datasets: env ``LELP_SHARED_DATA``, else ``../shared/data``."""
    env = os.environ.get("LELP_SHARED_DATA")
    root = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    return root if root.is_dir() else None


def _read_label_map(lpath: Path) -> dict[str, Any]:
    """``labels.json`` (class id -> name), in id order; the messages name the fix."""
    try:
        label_map = json.loads(lpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f'{lpath}: not valid JSON ({err}); write e.g. {{"0": "neg"}}') from None
    if not isinstance(label_map, dict) or not label_map:
        raise DataError(f'{lpath}: expected an object mapping id to name, e.g. {{"0": "neg"}}')
    try:
        return dict(sorted(label_map.items(), key=lambda kv: int(kv[0])))
    except ValueError:
        raise DataError(
            f"{lpath}: keys must be integer class ids 0..C-1, got {list(label_map)}"
        ) from None


def _load_folder(folder: Path, name: str) -> Dataset:
    """The shared folder format: train/test(/dev).csv + labels.json; extra columns are latent."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such dataset folder")
    for need in ("train.csv", "test.csv", "labels.json"):
        if not (folder / need).is_file():
            present = sorted(p.name for p in folder.iterdir())
            raise DataError(
                f"{folder}: {need} is missing (found {present}); a dataset folder needs "
                "train.csv, test.csv and labels.json (dev.csv optional)"
            )
    label_map = _read_label_map(folder / "labels.json")
    frames = {
        s: read_table(folder / f"{s}.csv") for s in SPLIT_FILES if (folder / f"{s}.csv").is_file()
    }
    latent: list[str] = []
    for df in frames.values():
        latent += [str(c) for c in df.columns if c not in ("text", "label") and c not in latent]
    for s, df in frames.items():
        missing = [c for c in latent if c not in df.columns]
        if missing:
            frames[s] = df.assign(**dict.fromkeys(missing, ""))
    return dataset_from_frame(
        frames["train"],
        name,
        latent_cols=latent,
        test_df=frames["test"],
        dev_df=frames.get("dev"),
        label_map=label_map,
        origins={s: f"{folder.name}/{s}.csv" for s in frames},
    )


#: File stems a dataset folder's splits go by (``validation`` is Hugging Face's name for dev).
_SPLIT_STEMS = {"train": "train", "dev": "dev", "validation": "dev", "test": "test"}


def split_files(folder: Path) -> dict[str, Path]:
    """The ``train``/``dev``/``test`` files of a folder (any readable suffix; ``validation``
    counts as dev), by split; a split given twice is refused, naming both files."""
    found: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        split = _SPLIT_STEMS.get(f.stem.lower())
        if split is not None and f.is_file() and f.suffix.lower() in _SUFFIXES:
            found.setdefault(split, []).append(f)
    for split, files in found.items():
        if len(files) > 1:
            names = [f.name for f in files]
            raise DataError(
                f"{folder}: {len(files)} files for the {split} split ({names}); keep one of them"
            )
    return {s: fs[0] for s, fs in found.items()}


def _is_saved_hf(folder: Path) -> bool:
    """A folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def load_folder(
    folder: str | Path,
    text_col: str = "text",
    label_col: str = "label",
    latent_cols: Sequence[str] = (),
    test_size: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """A folder of ``train``, ``test`` and optional ``dev`` files (CSV/TSV/Parquet/JSONL),
    with an optional ``labels.json``; a folder saved by ``datasets`` goes to :func:`load_hf`.

    Why: users keep their splits as files side by side; re-splitting them would score on
    rows the user trained on elsewhere. Columns are mapped as for a single file. Without a
    test file, train is split (and ``split_note`` says so).
    """
    d = Path(folder)
    if _is_saved_hf(d):
        return _with_note(load_hf_raw(str(d), text_col, label_col, latent_cols, test_size, seed))
    return _with_note(_load_split_folder(d, text_col, label_col, latent_cols, test_size, seed))


def _load_split_folder(
    d: Path,
    text_col: str,
    label_col: str,
    latent_cols: Sequence[str],
    test_size: float,
    seed: int,
) -> Dataset:
    files = split_files(d)
    if "train" not in files:
        present = sorted(p.name for p in d.iterdir())
        raise DataError(
            f"{d}: no train file (found {present}); a dataset folder needs train and test files "
            f"named train.<ext>, test.<ext> (dev.<ext> optional), <ext> one of "
            f"{sorted(_SUFFIXES)}; or give one file's path to split it"
        )
    frames = {s: read_table(f) for s, f in files.items()}
    lpath = d / "labels.json"
    label_map = _read_label_map(lpath) if lpath.is_file() else None
    ds = dataset_from_frame(
        frames["train"],
        d.name,
        text_col=text_col,
        label_col=label_col,
        latent_cols=latent_cols,
        test_df=frames.get("test"),
        dev_df=frames.get("dev"),
        test_size=test_size,
        seed=seed,
        label_map=label_map,
        origins={s: f"{d.name}/{f.name}" for s, f in files.items()},
    )
    if "test" not in files:
        reason = _split_reason(f"{d.name}/{files['train'].name} (no test file)", test_size, seed)
        return replace(ds, split_note=reason)
    return ds


# --------------------------------------------------------------------------- Hugging Face


_TRUE = {"1", "on", "yes", "true"}


def hf_offline() -> str | None:
    """The environment variable that makes Hugging Face offline (``HF_DATASETS_OFFLINE`` or
    ``HF_HUB_OFFLINE`` set to 1/ON/YES/TRUE), or None when online is allowed."""
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return var
    return None


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise DataError(
            "Hugging Face dataset sources need the optional 'hf' extra; install it with "
            "pip install 'lelp-studio[hf]' (or pip install datasets)"
        ) from None
    return datasets


def _is_unlabelled(df: pd.DataFrame, label_col: str) -> bool:
    """A hidden test set (GLUE's): every label -1."""
    if label_col not in df.columns or not len(df):
        return False
    col = df[label_col]
    return bool(pd.api.types.is_numeric_dtype(col) and (col == -1).all())


def _from_hf(
    obj: Any,
    name: str,
    text_col: str,
    label_col: str,
    latent_cols: Sequence[str],
    test_size: float,
    seed: int,
) -> Dataset:
    """A ``datasets`` Dataset or DatasetDict through the same checks as files.

    Splits ``train``, ``validation``/``dev`` and ``test`` are used; ClassLabel names become
    the class names. A test split without labels (all -1) is left out and the validation
    split takes its place; other splits are named in the note, never dropped silently.
    """
    datasets = _import_datasets()
    parts = dict(obj) if isinstance(obj, datasets.DatasetDict) else {"train": obj}
    mapped: dict[str, str] = {}
    for raw in parts:
        split = _SPLIT_STEMS.get(str(raw).lower())
        if split is not None and split not in mapped.values():
            mapped[str(raw)] = split
    if "train" not in mapped.values():
        raise DataError(
            f"{name}: no train split (splits: {sorted(map(str, parts))}); a dataset needs a "
            "'train' split (rename one with DatasetDict({'train': ...}) before save_to_disk)"
        )
    frames = {split: parts[raw].to_pandas() for raw, split in mapped.items()}
    notes: list[str] = []
    if "test" in frames and _is_unlabelled(frames["test"], label_col):
        del frames["test"]
        if "dev" in frames:
            frames["test"] = frames.pop("dev")
            notes.append("its test split has no labels (all -1), so validation is the test split")
        else:
            notes.append("its test split has no labels (all -1) and is left out")
    ignored = sorted(str(r) for r in parts if str(r) not in mapped)
    if ignored:
        notes.append(f"splits {ignored} are not used")
    label_map = None
    feature = parts[next(r for r, s in mapped.items() if s == "train")].features.get(label_col)
    if isinstance(feature, datasets.ClassLabel):
        label_map = dict(enumerate(feature.names))
    ds = dataset_from_frame(
        frames["train"],
        name,
        text_col=text_col,
        label_col=label_col,
        latent_cols=latent_cols,
        test_df=frames.get("test"),
        dev_df=frames.get("dev"),
        test_size=test_size,
        seed=seed,
        label_map=label_map,
        label_source=f"the dataset's ClassLabel names {list(label_map.values())[:10]}"
        if label_map
        else "labels.json",
    )
    if "test" not in frames:
        notes.append(_split_reason("train", test_size, seed))
    return replace(ds, split_note=(f"{name}: " + "; ".join(notes)) if notes else "")


def load_hf_raw(
    source: str,
    text_col: str = "text",
    label_col: str = "label",
    latent_cols: Sequence[str] = (),
    test_size: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """:func:`load_hf` without the split sizes in ``split_note`` (``load_dataset`` adds them
    after the selection split is carved)."""
    src = source.strip()
    if not src:
        raise DataError(
            "hf: needs a dataset name, e.g. hf:imdb or hf:glue:sst2 (NAME[:CONFIG]), or the "
            "path of a folder saved with save_to_disk"
        )
    local = Path(src).expanduser()
    pathlike = src.startswith(("/", ".", "~")) or Path(src).is_absolute()
    if local.is_dir() and (pathlike or _is_saved_hf(local)):
        if not _is_saved_hf(local):
            raise DataError(
                f"{local}: not a folder written by datasets' save_to_disk (no dataset_dict.json "
                "or state.json); save it with ds.save_to_disk(folder), or give a folder of "
                "train/test files as a plain path"
            )
        datasets = _import_datasets()
        try:
            obj = datasets.load_from_disk(str(local))
        except Exception as err:  # datasets raises many types for damaged folders
            detail = " ".join(str(err).split())[:200]
            raise DataError(
                f"{local}: cannot be read as a saved datasets folder ({detail}); save it again "
                "with save_to_disk"
            ) from None
        return _from_hf(obj, local.name, text_col, label_col, latent_cols, test_size, seed)
    name, _, config = src.partition(":")
    var = hf_offline()
    if var is not None:
        raise DataError(
            f"hf:{src} needs the Hugging Face hub but {var} is set (offline); unset it, or where "
            "you are online save the data with load_dataset(...).save_to_disk(folder) and give "
            "that folder as the source"
        )
    datasets = _import_datasets()
    try:
        obj = datasets.load_dataset(name, config or None)
    except Exception as err:  # not found, no network, a config needed: all say why
        raise DataError(
            f"hf:{src}: cannot be loaded ({' '.join(str(err).split())[:300]}); check the name "
            "and config on huggingface.co/datasets (hf:NAME or hf:NAME:CONFIG) and the network"
        ) from None
    label = name.rsplit("/", 1)[-1] + (f"-{config}" if config else "")
    return _from_hf(obj, label, text_col, label_col, latent_cols, test_size, seed)


def load_hf(
    source: str,
    text_col: str = "text",
    label_col: str = "label",
    latent_cols: Sequence[str] = (),
    test_size: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """A Hugging Face ``datasets`` source: ``NAME[:CONFIG]`` from the hub (refused while
    ``HF_DATASETS_OFFLINE``/``HF_HUB_OFFLINE`` is set), or a folder saved by ``save_to_disk``.

    Why through the same checks as files: a hub dataset has the same pitfalls (a text column
    under another name, a hidden test set labelled -1); the messages name the same fixes.
    """
    return _with_note(load_hf_raw(source, text_col, label_col, latent_cols, test_size, seed))


def load_shared(name: str, root: str | Path | None = None) -> Dataset:
    """A dataset folder of ``../shared/data`` (or ``root``) by name, e.g. ``"sst2"``."""
    base = Path(root) if root is not None else shared_data_root()
    if base is None or not base.is_dir():
        raise DataError(
            "no shared data folder found (looked at $LELP_SHARED_DATA and "
            f"{REPO_ROOT.parent / 'shared' / 'data'}); set LELP_SHARED_DATA to it"
        )
    folder = base / name
    if not folder.is_dir():
        names = sorted(p.name for p in base.iterdir() if p.is_dir())
        raise DataError(f"shared:{name}: no folder {folder}; available: {names}")
    return _load_folder(folder, name)


def _digits() -> Dataset:
    """sklearn's 8x8 digits as an even/odd task; the digit itself is the latent subclass."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    digit = d.target.astype(np.int64)
    y = digit % 2
    tr, te = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0, stratify=y)
    tr, te = np.sort(tr), np.sort(te)
    splits = {
        s: Split(y=y[ix], features=X[ix], latent={"digit": digit[ix]})
        for s, ix in (("train", tr), ("test", te))
    }
    return Dataset(name="digits-bin", label_names=["even", "odd"], splits=splits)


def load_demo(name: str) -> Dataset:
    """A built-in demo: ``text-demo`` (synthetic reviews) or ``digits-bin``."""
    if name == "digits-bin":
        return _digits()
    if name == "text-demo":
        return _load_folder(SAMPLE_DIR / "text_demo", "text-demo")
    raise DataError(f"unknown demo {name!r}; the demos are {list(DEMOS)}")


def _subsample(ds: Dataset, max_train: int, seed: int) -> Dataset:
    """Stratified, seeded subset of train (other splits untouched); order is preserved."""
    from sklearn.model_selection import train_test_split

    tr = ds.splits["train"]
    n = len(tr)
    if max_train >= n:
        return ds
    if max_train < ds.n_classes:
        raise DataError(
            f"{ds.name}: max_train={max_train} is below the number of classes "
            f"({ds.n_classes}); a stratified subsample needs one example per class; raise it"
        )
    try:
        keep, _ = train_test_split(
            np.arange(n), train_size=max_train, random_state=seed, stratify=tr.y
        )
    except ValueError as err:
        raise DataError(f"{ds.name}: cannot subsample train to {max_train} ({err})") from None
    return replace(ds, splits={**ds.splits, "train": _take(tr, np.sort(keep))})


def _beside(p: Path) -> tuple[Path | None, str]:
    """A file given by path, read together with the split files beside it.

    Returns ``(folder, "")`` when ``p`` is a folder's ``train`` file and a ``test`` file sits
    beside it (the folder case: those splits are used as they are), else ``(None, mention)``
    where the mention names split files beside ``p`` that this source does not read.
    """
    is_train = _SPLIT_STEMS.get(p.stem.lower()) == "train"
    try:
        siblings = split_files(p.parent)
    except DataError as err:  # e.g. train.csv and train.parquet side by side
        return None, f"the files beside it are not read ({err})"
    if is_train and "test" in siblings:
        return p.parent, ""
    unread = [f.name for s, f in sorted(siblings.items()) if f != p and s in ("test", "dev")]
    if not unread:
        return None, ""
    return None, (
        f"{' and '.join(unread)} beside it {'is' if len(unread) == 1 else 'are'} not read; give "
        f"the folder {p.parent} as the source (with train, test and optional dev files) to use "
        "them"
    )


def source_table(path: str | Path) -> pd.DataFrame:
    """The training table of a path source (a file, a folder of split files, or a folder
    saved by ``datasets``), for a column mapping such as the Data page's."""
    p = Path(path).expanduser()
    if not p.is_dir():
        return read_table(p)
    if _is_saved_hf(p):
        datasets = _import_datasets()
        obj = datasets.load_from_disk(str(p))
        parts = dict(obj) if isinstance(obj, datasets.DatasetDict) else {"train": obj}
        if "train" not in parts:
            raise DataError(f"{p.name}: no train split (splits: {sorted(map(str, parts))})")
        return parts["train"].to_pandas()
    files = split_files(p)
    if "train" not in files:
        raise DataError(
            f"{p}: no train file (found {sorted(f.name for f in p.iterdir())}); a dataset "
            "folder needs train and test files (dev optional)"
        )
    return read_table(files["train"])


def load_dataset(spec: DatasetSpec) -> Dataset:
    """Dispatch on ``spec.source``: a demo name, ``shared:<name>``, ``hf:NAME[:CONFIG]``, a
    folder path (split files, or a ``save_to_disk`` folder) or a file path.

    For demos and shared folders the columns are fixed (all extra columns are latent), so
    ``text_col``/``label_col`` are not used; ``latent_cols``, when given, must exist. A path
    to a folder's ``train`` file with a ``test`` file beside it reads the folder.
    ``split_note`` says how splits were made when the source did not give them all.
    """
    src = spec.source.strip()
    cols = (spec.text_col, spec.label_col, spec.latent_cols, spec.test_size, spec.seed)
    mention = ""
    if src in DEMOS:
        ds = load_demo(src)
    elif src.startswith("shared:"):
        ds = load_shared(src.split(":", 1)[1])
    elif src.startswith("hf:"):
        ds = load_hf_raw(src[3:], *cols)
    else:
        p = Path(src).expanduser()
        if p.is_dir():
            ds = load_hf_raw(str(p), *cols) if _is_saved_hf(p) else _load_split_folder(p, *cols)
        elif p.is_file():
            folder, mention = _beside(p)
            if folder is not None:
                ds = _load_split_folder(folder, *cols)
                ds = replace(
                    ds,
                    split_note=f"{p.name}: the split files beside it are used as they are "
                    f"(the folder {folder})",
                )
            else:
                ds = _load_file(p, *cols)
        else:
            raise DataError(
                f"dataset source {src!r} is not a demo {list(DEMOS)}, not shared:<name> or "
                "hf:<name>, and no such file or folder exists; fix the path or pick a demo"
            )
    missing = [c for c in spec.latent_cols if c not in ds.splits["train"].latent]
    if missing:
        raise DataError(
            f"{ds.name}: latent columns {missing} not found; latent columns are "
            f"{ds.latent_columns}; fix latent_cols"
        )
    # The holdout is carved before max_train, so max_train stays the rows trained on.
    ds = with_selection_split(ds, spec.selection_fraction, spec.seed)
    if spec.max_train is not None:
        ds = _subsample(ds, spec.max_train, spec.seed)
        ds = replace(ds, before_holdout=None)  # its rows no longer map one to one
    return _with_note(ds, mention)


#: The split every choice made from scores is made on (epochs, settings, regularisation).
SELECT = "dev"


def with_selection_split(ds: Dataset, fraction: float = 0.1, seed: int = 0) -> Dataset:
    """``ds`` with a selection split: its own ``dev`` split, else a seeded stratified holdout of
    ``fraction`` of train (train keeps the rest, in file order).

    Why: a setting, an epoch or a regularisation picked on the test split makes the test
    score optimistic; the test split is scored once per finished run and never chooses.
    ``Dataset.selection`` records where the split came from.
    """
    from sklearn.model_selection import train_test_split

    if SELECT in ds.splits and len(ds.splits[SELECT]):
        return replace(ds, selection=f"the dataset's own {SELECT} split")
    if not 0 < fraction < 1:
        raise DataError(
            f"dataset.selection_fraction={fraction!r} must lie strictly between 0 and 1"
        )
    tr = ds.splits["train"]
    n = len(tr)
    n_sel = max(1, int(round(fraction * n)))
    if n < 2 or n_sel >= n:
        raise DataError(
            f"{ds.name}: train has {n} rows, too few to hold out a selection split of "
            f"{fraction:.0%}; add training rows or give a dev split"
        )
    idx = np.arange(n)
    try:  # stratified when every class can give a row to each side
        keep, sel = train_test_split(idx, test_size=n_sel, random_state=seed, stratify=tr.y)
    except ValueError:  # a class with one row, or fewer selection rows than classes
        keep, sel = train_test_split(idx, test_size=n_sel, random_state=seed)
    keep, sel = np.sort(keep), np.sort(sel)
    splits = {**ds.splits, "train": _take(tr, keep), SELECT: _take(tr, sel)}
    how = f"a stratified {fraction:.0%} holdout of train (seed {seed}; the dataset has no dev)"
    return replace(ds, splits=splits, selection=how, holdout_rows=(keep, sel), before_holdout=ds)


def _take(sp: Split, ix: np.ndarray) -> Split:
    """The rows ``ix`` of a split (texts, features and latent columns alike)."""
    return Split(
        y=sp.y[ix],
        texts=None if sp.texts is None else [sp.texts[i] for i in ix],
        features=None if sp.features is None else sp.features[ix],
        latent={k: v[ix] for k, v in sp.latent.items()},
    )


def check_subclass_counts(
    dataset_or_y: Dataset | np.ndarray | Sequence[int], n_subclasses: int | Sequence[int]
) -> None:
    """Raise DataError when a class has fewer training examples than requested subclasses.

    A class with k examples spans at most k directions, so asking for more subclasses than
    examples cannot work (and LELP's PCA would fail later with a less clear error).
    """
    if isinstance(dataset_or_y, Dataset):
        y = np.asarray(dataset_or_y.splits["train"].y)
        names = list(dataset_or_y.label_names)
    else:
        y = np.asarray(dataset_or_y)
        names = []
    n_cls = len(names) if names else int(y.max()) + 1 if y.size else 0
    if isinstance(n_subclasses, (int, np.integer)):
        per = [int(n_subclasses)] * n_cls
    else:
        per = [int(s) for s in n_subclasses]
        if (names and len(per) != n_cls) or (not names and len(per) < n_cls):
            raise DataError(
                f"n_subclasses has {len(per)} entries but there are {n_cls} classes; give one "
                "number per class or a single number for all"
            )
        n_cls = max(n_cls, len(per))
    counts = np.bincount(y.astype(np.int64), minlength=n_cls) if y.size else np.zeros(n_cls, int)
    bad = [c for c in range(n_cls) if counts[c] < per[c]]
    if bad:
        detail = "; ".join(
            f"class {names[c] if names else c!r} has {counts[c]} examples but {per[c]} "
            "subclasses were requested"
            for c in bad
        )
        raise DataError(
            f"too few examples for the requested subclasses: {detail}; lower n_subclasses "
            "for those classes or add training examples"
        )


#: Streamlit's own default for ``server.maxUploadSize`` (MB), used when the config omits it.
DEFAULT_UPLOAD_MB = 200


def upload_limit_mb(config_path: str | Path | None = None) -> int:
    """The upload limit in MB: ``server.maxUploadSize`` of ``.streamlit/config.toml``.

    One number, kept where Streamlit reads it, so the app's widget and this check agree.
    """
    import tomllib

    path = (
        Path(config_path) if config_path is not None else REPO_ROOT / ".streamlit" / "config.toml"
    )
    try:
        conf = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return DEFAULT_UPLOAD_MB
    value = conf.get("server", {}).get("maxUploadSize", DEFAULT_UPLOAD_MB)
    return int(value) if isinstance(value, (int, float)) and value > 0 else DEFAULT_UPLOAD_MB


def check_upload_size(n_bytes: int, limit_mb: float | None = None, name: str = "upload") -> None:
    """Raise DataError when an upload of ``n_bytes`` exceeds ``limit_mb`` (MB = 2**20 bytes).

    Why here and not only in Streamlit: a path given on the Data page or the CLI bypasses the
    widget's limit, and the message should say what to do instead (pass a path).
    """
    limit = upload_limit_mb() if limit_mb is None else limit_mb
    if n_bytes < 0:
        raise DataError(f"{name}: size {n_bytes} bytes is negative; pass the size in bytes")
    if n_bytes > limit * 2**20:
        raise DataError(
            f"{name}: {n_bytes / 2**20:.1f} MB is over the upload limit of {limit:g} MB; give "
            "the file's path on the Data page (or to the CLI) instead of uploading it, or raise "
            "server.maxUploadSize in .streamlit/config.toml"
        )


def store_upload(folder: str | Path, name: str, data: bytes) -> Path:
    """Keep an uploaded file as ``folder/<content hash>/<its own name>`` so jobs and the CLI
    can read it by path and every message names it as the user does; a file that cannot be
    read as a table is refused (DataError) and not kept."""
    base = Path(name).name or "upload"
    target = Path(folder) / hashlib.sha256(data).hexdigest()[:16] / base
    if not target.exists():
        atomic_write_bytes(target, data)  # a crash mid-write never leaves a partial file
    try:
        read_table(target)
    except DataError:
        target.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            target.parent.rmdir()
        raise
    return target
