"""Reading CSV, TSV, Parquet and JSONL files into frames, strictly.

Why strict: a ';'-separated CSV read as one column, or a Latin-1 file read as mojibake, gives
wrong results without any error; every problem raises :class:`DataError` naming the file, the
problem and the fix, before anything expensive runs.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
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


_BOM = b"\xef\xbb\xbf"


def _utf8_error(path: Path, offset: int, line: int, bad: str) -> DataError:
    return DataError(
        f"{path.name}: not valid UTF-8: byte 0x{bad} at byte offset {offset} (line {line}); "
        "re-save the file as UTF-8 (e.g. in a spreadsheet choose 'CSV UTF-8', or "
        "`iconv -f latin1 -t utf-8`)"
    )


def _decode_utf8(path: Path, raw: bytes) -> str:
    """Decode strictly so a Latin-1 or UTF-16 file fails loudly instead of as mojibake."""
    skip = len(_BOM) if raw.startswith(_BOM) else 0
    try:
        return raw[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = skip + err.start
        line = raw.count(b"\n", 0, offset) + 1
        raise _utf8_error(path, offset, line, raw[offset : offset + 1].hex()) from None


#: Bytes read at a time when a file is streamed (``iter_lines``).
READ_BYTES = 1 << 22


def iter_lines(path: Path, block_bytes: int | None = None) -> Iterator[list[str]]:
    """The lines of a UTF-8 text file in blocks, as ``_decode_utf8(path, raw).splitlines()``
    would give them all at once, without holding the file: one block of bytes and its lines
    at a time (``block_bytes``, default ``READ_BYTES``). A byte that is not UTF-8 raises the
    same ``DataError`` (offset and line)."""
    block_bytes = int(block_bytes or READ_BYTES)
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    carry, offset, newlines, first = "", 0, 0, True
    with open(path, "rb") as f:
        while True:
            raw = f.read(max(block_bytes, len(_BOM)) if first else block_bytes)
            final = not raw
            if first and raw.startswith(_BOM):
                raw, offset = raw[len(_BOM) :], len(_BOM)
            first = False
            pending = decoder.getstate()[0]
            try:
                text = carry + decoder.decode(raw, final=final)
            except UnicodeDecodeError as err:
                at = offset - len(pending) + err.start
                line = newlines + bytes(err.object).count(b"\n", 0, err.start) + 1
                bad = bytes(err.object)[err.start : err.start + 1].hex()
                raise _utf8_error(path, at, line, bad) from None
            offset += len(raw)
            newlines += raw.count(b"\n")
            lines = text.splitlines()
            carry = ""
            if not final and lines and text[-1] == "\r":  # its "\n" may open the next block
                carry = lines.pop() + "\r"
            elif not final and lines and text[-1] not in _ENDS:  # a line cut by the block end
                carry = lines.pop()
            if lines:
                yield lines
            if final:
                return


#: What ends a line for ``str.splitlines`` besides "\r" (which may be half of "\r\n").
_ENDS = "\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


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
        raise _parse_error(path, fmt, sep, err) from None
    if df.shape[1] == 1:
        _check_one_column(path, str(df.columns[0]), sep)
    return df


def _check_one_column(path: Path, only: str, sep: str) -> None:
    """A file read as one column whose name holds another delimiter was saved with it."""
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


def _parse_error(path: Path, fmt: str, sep: str, err: Exception) -> DataError:
    return DataError(
        f"{path.name}: not readable as {fmt.upper()} ({str(err).strip()}); check the quoting "
        f"and that every row has the same number of {_SEP_NAMES[sep]}-separated fields"
    )


def _check_parquet_magic(path: Path, raw_head: bytes) -> None:
    if not raw_head.startswith(b"PAR1"):
        looks = "text (probably a CSV)" if _looks_like_text(raw_head) else "not Parquet"
        raise DataError(
            f"{path.name}: not a Parquet file (it does not start with 'PAR1'; its content looks "
            f"like {looks}); rename it to .csv/.tsv/.jsonl to match its content"
        )


def _read_parquet(path: Path, raw_head: bytes) -> pd.DataFrame:
    _check_parquet_magic(path, raw_head)
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
        if line.strip():
            records.append(_json_record(path, lineno, line))
    return pd.DataFrame.from_records(records)


def _json_record(path: Path, lineno: int, line: str) -> dict[str, Any]:
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
    return rec


def _check_file(p: Path) -> None:
    if not p.is_file():
        raise DataError(f"{p}: no such file; check the path (relative paths start at {Path.cwd()})")
    if p.stat().st_size == 0:
        raise DataError(f"{p.name}: the file is empty (0 bytes); it needs a header and rows")


def read_table(path: str | Path, fmt: str | None = None) -> pd.DataFrame:
    """Read a CSV, TSV, Parquet or JSONL file (format from ``fmt`` or the suffix).

    CSV/TSV are read with ``keep_default_na=False`` (empty cells become ``""``), so texts such
    as "NA" or "null" survive; emptiness is checked later, by :func:`dataset_from_frame`.
    """
    p = Path(path)
    f = _resolve_format(p, fmt)
    _check_file(p)
    if f == "parquet":
        with open(p, "rb") as fh:
            head = fh.read(512)
        return _read_parquet(p, head)
    raw = p.read_bytes()
    if f == "jsonl":
        return _read_jsonl(p, raw)
    return _read_delimited(p, raw, f)


#: Rows per block when a table is streamed (``iter_table``).
READ_ROWS = 65_536

_JSONL_ROWS = 16_384

#: ``columns(header)``: the columns to read, given the file's column names (may raise).
Columns = Callable[[list[str]], list[str]]


def iter_table(
    path: str | Path, columns: Columns | None = None, rows: int = READ_ROWS
) -> Iterator[pd.DataFrame]:
    """``read_table`` in blocks of ``rows`` rows, for a file that need not fit in memory
    twice: CSV/TSV through pandas' ``chunksize``, Parquet by record batches, JSONL line by
    line; only the columns ``columns(header)`` names are read (all without it). Each block
    is what ``read_table`` would give for those rows; the same problems raise the same
    ``DataError``. A JSONL file has no header: ``columns`` sees each block's keys."""
    p = Path(path)
    f = _resolve_format(p, None)
    _check_file(p)
    with open(p, "rb") as fh:
        head = fh.read(512)
    pick = columns or (lambda names: list(names))
    if f == "parquet":
        yield from _iter_parquet(p, head, pick, rows)
    elif f == "jsonl":
        yield from _iter_jsonl(p, pick, rows)
    else:
        yield from _iter_delimited(p, head, f, pick, rows)


def _iter_parquet(p: Path, head: bytes, pick: Columns, rows: int) -> Iterator[pd.DataFrame]:
    _check_parquet_magic(p, head)
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
        names = list(pf.schema_arrow.names)
    except Exception as err:  # pyarrow raises many types for corrupt files
        raise DataError(f"{p.name}: cannot read the Parquet file ({err}); re-export it") from None
    _check_header(p, names)
    cols = pick(names)
    try:
        for batch in pf.iter_batches(batch_size=rows, columns=cols):
            yield batch.to_pandas()
    except Exception as err:  # noqa: BLE001 - pyarrow raises many types for corrupt files
        raise DataError(f"{p.name}: cannot read the Parquet file ({err}); re-export it") from None


def _iter_jsonl(p: Path, pick: Columns, rows: int) -> Iterator[pd.DataFrame]:
    rows = min(rows, _JSONL_ROWS)  # a parsed record (a dict) weighs ten times its text
    lineno = 0
    records: list[dict[str, Any]] = []

    def frame() -> pd.DataFrame:
        df = pd.DataFrame.from_records(records)
        return df[pick([str(c) for c in df.columns])]

    for lines in iter_lines(p):
        for line in lines:
            lineno += 1
            if line.strip():
                records.append(_json_record(p, lineno, line))
            if len(records) >= rows:
                yield frame()
                records = []
    if records:
        yield frame()


def _iter_delimited(
    p: Path, head: bytes, fmt: str, pick: Columns, rows: int
) -> Iterator[pd.DataFrame]:
    if head.startswith(b"PAR1"):
        raise DataError(
            f"{p.name}: this is a Parquet file, not {fmt.upper()}; rename it to .parquet"
        )
    sep = _SEPS[fmt]
    try:
        with open(p, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh, delimiter=sep), [])
    except UnicodeDecodeError:
        _locate_utf8_error(p)
        raise
    except csv.Error as err:
        raise DataError(f"{p.name}: cannot read the header row ({err})") from None
    _check_header(p, header)
    if len(header) == 1:
        _check_one_column(p, header[0], sep)
    try:
        # keep_default_na=False: a text or label "NA"/"null" stays a string, not NaN.
        reader = pd.read_csv(
            p, sep=sep, keep_default_na=False, chunksize=rows, usecols=pick(header),
            encoding="utf-8-sig",
        )  # fmt: skip
        with reader:
            yield from reader
    except UnicodeDecodeError:
        _locate_utf8_error(p)
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{p.name}: the file has no header and no rows; add data") from None
    except (pd.errors.ParserError, ValueError) as err:
        raise _parse_error(p, fmt, sep, err) from None


def _locate_utf8_error(p: Path) -> None:
    """Raise the ``DataError`` that names the first byte of ``p`` that is not UTF-8."""
    for _ in iter_lines(p):
        pass


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
