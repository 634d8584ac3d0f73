"""Reading CSV, TSV, Parquet and JSONL files into frames, strictly.

Why strict: a ';'-separated CSV read as one column, or a Latin-1 file read as mojibake, gives
wrong results without any error; every problem raises :class:`DataError` naming the file, the
problem and the fix, before anything expensive runs.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

SPLIT_FILES = ("train", "test", "dev")

SUFFIXES = {
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
    if suffix not in SUFFIXES:
        raise DataError(
            f"{path.name}: cannot tell the format from the suffix {suffix!r}; rename the file "
            f"to end in one of {sorted(SUFFIXES)}"
        )
    return SUFFIXES[suffix]


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


#: File stems a dataset folder's splits go by (``validation`` is Hugging Face's name for dev).
SPLIT_STEMS = {"train": "train", "dev": "dev", "validation": "dev", "test": "test"}


def split_files(folder: Path) -> dict[str, Path]:
    """The ``train``/``dev``/``test`` files of a folder (any readable suffix; ``validation``
    counts as dev), by split; a split given twice is refused, naming both files."""
    found: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        split = SPLIT_STEMS.get(f.stem.lower())
        if split is not None and f.is_file() and f.suffix.lower() in SUFFIXES:
            found.setdefault(split, []).append(f)
    for split, files in found.items():
        if len(files) > 1:
            names = [f.name for f in files]
            raise DataError(
                f"{folder}: {len(files)} files for the {split} split ({names}); keep one of them"
            )
    return {s: fs[0] for s, fs in found.items()}
