"""Sources to a :class:`Dataset`: a file, a folder of split files, ``shared:<name>``,
``hf:NAME[:CONFIG]`` and the built-in demos; :func:`load_dataset` dispatches on a spec."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import DatasetSpec
from ..types import Dataset, Split
from .frames import SourceOptions, dataset_from_frame, dataset_from_splits, latent_candidates
from .hf import import_datasets, is_saved_hf, load_hf_raw
from .paths import SHARED_HINT, sample_dir, shared_data_default, shared_data_root
from .readers import SPLIT_FILES, SPLIT_STEMS, SUFFIXES, DataError, read_table, split_files
from .selection import split_reason, subsample, with_note, with_selection_split
from .transfer import transfer_note, with_transfer

DEMOS = ("text-demo", "digits-bin")


def _load_file(p: Path, opts: SourceOptions) -> Dataset:
    ds = dataset_from_splits(
        {"train": read_table(p)}, p.stem, opts, None, origins={"train": p.name}
    )
    return replace(ds, split_note=split_reason(p.name, opts.test_size, opts.seed))


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
    opts = SourceOptions(text_col, label_col, latent_cols, test_size, seed)
    ds = with_transfer(_load_file(Path(path), opts))
    return with_note(ds, transfer_note(ds))


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


def _load_folder(folder: Path, name: str, latent_cols: Sequence[str] = ()) -> Dataset:
    """The shared folder format: train/test(/dev).csv + labels.json. An extra column is latent
    when named in ``latent_cols`` or when it has few distinct values
    (:func:`~.frames.latent_candidates`)."""
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
    latent = latent_candidates(list(frames.values()), ("text", "label"), latent_cols)
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
    opts = SourceOptions(text_col, label_col, latent_cols, test_size, seed)
    ds = with_transfer(
        load_hf_raw(str(d), *opts) if is_saved_hf(d) else _load_split_folder(d, opts)
    )
    return with_note(ds, transfer_note(ds))


def _load_split_folder(d: Path, opts: SourceOptions) -> Dataset:
    files = split_files(d)
    if "train" not in files:
        present = sorted(p.name for p in d.iterdir())
        raise DataError(
            f"{d}: no train file (found {present}); a dataset folder needs train and test files "
            f"named train.<ext>, test.<ext> (dev.<ext> optional), <ext> one of "
            f"{sorted(SUFFIXES)}; or give one file's path to split it"
        )
    frames = {s: read_table(f) for s, f in files.items()}
    lpath = d / "labels.json"
    label_map = _read_label_map(lpath) if lpath.is_file() else None
    ds = dataset_from_splits(
        frames,
        d.name,
        opts,
        label_map,
        origins={s: f"{d.name}/{f.name}" for s, f in files.items()},
    )
    if "test" not in files:
        what = f"{d.name}/{files['train'].name} (no test file)"
        reason = split_reason(what, opts.test_size, opts.seed)
        return replace(ds, split_note=reason)
    return ds


def load_shared(
    name: str, root: str | Path | None = None, latent_cols: Sequence[str] = ()
) -> Dataset:
    """A dataset folder of ``../shared/data`` (or ``root``) by name, e.g. ``"sst2"``;
    ``latent_cols`` keeps columns as latent that have too many values to be kept unasked."""
    base = Path(root) if root is not None else shared_data_root()
    if base is None or not base.is_dir():
        raise DataError(
            f"no shared data folder found (looked at {shared_data_default()}); {SHARED_HINT}"
        )
    folder = base / name
    if not folder.is_dir():
        names = sorted(p.name for p in base.iterdir() if p.is_dir())
        raise DataError(f"shared:{name}: no folder {folder}; available: {names}")
    return _load_folder(folder, name, latent_cols)


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


def load_demo(name: str, latent_cols: Sequence[str] = ()) -> Dataset:
    """A built-in demo: ``text-demo`` (synthetic reviews) or ``digits-bin``."""
    if name == "digits-bin":
        return _digits()
    if name == "text-demo":
        return _load_folder(sample_dir() / "text_demo", "text-demo", latent_cols)
    raise DataError(f"unknown demo {name!r}; the demos are {list(DEMOS)}")


def _beside(p: Path) -> tuple[Path | None, str]:
    """A file given by path, read together with the split files beside it.

    Returns ``(folder, "")`` when ``p`` is a folder's ``train`` file and a ``test`` file sits
    beside it (the folder case: those splits are used as they are), else ``(None, mention)``
    where the mention names split files beside ``p`` that this source does not read.
    """
    is_train = SPLIT_STEMS.get(p.stem.lower()) == "train"
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
    if is_saved_hf(p):
        datasets = import_datasets()
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

    For demos and shared folders the columns are fixed (extra columns with few values are
    latent, and those named in ``latent_cols``), so
    ``text_col``/``label_col`` are not used; ``latent_cols``, when given, must exist. A path
    to a folder's ``train`` file with a ``test`` file beside it reads the folder.
    ``split_note`` says how splits were made when the source did not give them all, and
    what the transfer split (``spec.transfer``, and the training file's unlabeled rows)
    kept and dropped (``data/transfer.py``).
    """
    src = spec.source.strip()
    opts = SourceOptions(spec.text_col, spec.label_col, spec.latent_cols, spec.test_size, spec.seed)
    mention = ""
    if src in DEMOS:
        ds = load_demo(src, spec.latent_cols)
    elif src.startswith("shared:"):
        ds = load_shared(src.split(":", 1)[1], latent_cols=spec.latent_cols)
    elif src.startswith("hf:"):
        ds = load_hf_raw(src[3:], *opts)
    else:
        p = Path(src).expanduser()
        if p.is_dir():
            ds = load_hf_raw(str(p), *opts) if is_saved_hf(p) else _load_split_folder(p, opts)
        elif p.is_file():
            folder, mention = _beside(p)
            if folder is not None:
                ds = _load_split_folder(folder, opts)
                ds = replace(
                    ds,
                    split_note=f"{p.name}: the split files beside it are used as they are "
                    f"(the folder {folder})",
                )
            else:
                ds = _load_file(p, opts)
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
        ds = subsample(ds, spec.max_train, spec.seed)
        ds = replace(ds, before_holdout=None)  # its rows no longer map one to one
    # Last: the transfer rows are checked against the final labeled splits.
    ds = with_transfer(ds, spec.transfer, spec.text_col, spec.label_col)
    return with_note(ds, "; ".join(p for p in (mention, transfer_note(ds)) if p))
