"""Hugging Face ``datasets`` sources (the optional ``hf`` extra): hub names and folders
written by ``save_to_disk``, through the same checks as files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..types import Dataset
from .frames import SourceOptions, dataset_from_splits
from .readers import SPLIT_STEMS, DataError
from .selection import split_reason, with_note


def is_saved_hf(folder: Path) -> bool:
    """A folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


_TRUE = {"1", "on", "yes", "true"}


def hf_offline() -> str | None:
    """The environment variable that makes Hugging Face offline (``HF_DATASETS_OFFLINE`` or
    ``HF_HUB_OFFLINE`` set to 1/ON/YES/TRUE), or None when online is allowed."""
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return var
    return None


def import_datasets() -> Any:
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


def _from_hf(obj: Any, name: str, opts: SourceOptions) -> Dataset:
    """A ``datasets`` Dataset or DatasetDict through the same checks as files.

    Splits ``train``, ``validation``/``dev`` and ``test`` are used; ClassLabel names become
    the class names. A test split without labels (all -1) is left out and the validation
    split takes its place; other splits are named in the note, never dropped silently.
    """
    datasets = import_datasets()
    parts = dict(obj) if isinstance(obj, datasets.DatasetDict) else {"train": obj}
    mapped: dict[str, str] = {}
    for raw in parts:
        split = SPLIT_STEMS.get(str(raw).lower())
        if split is not None and split not in mapped.values():
            mapped[str(raw)] = split
    if "train" not in mapped.values():
        raise DataError(
            f"{name}: no train split (splits: {sorted(map(str, parts))}); a dataset needs a "
            "'train' split (rename one with DatasetDict({'train': ...}) before save_to_disk)"
        )
    frames = {split: parts[raw].to_pandas() for raw, split in mapped.items()}
    notes: list[str] = []
    if "test" in frames and _is_unlabelled(frames["test"], opts.label_col):
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
    feature = parts[next(r for r, s in mapped.items() if s == "train")].features.get(opts.label_col)
    if isinstance(feature, datasets.ClassLabel):
        label_map = dict(enumerate(feature.names))
    ds = dataset_from_splits(
        frames,
        name,
        opts,
        label_map,
        label_source=f"the dataset's ClassLabel names {list(label_map.values())[:10]}"
        if label_map
        else "labels.json",
    )
    if "test" not in frames:
        notes.append(split_reason("train", opts.test_size, opts.seed))
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
    opts = SourceOptions(text_col, label_col, latent_cols, test_size, seed)
    src = source.strip()
    if not src:
        raise DataError(
            "hf: needs a dataset name, e.g. hf:imdb or hf:glue:sst2 (NAME[:CONFIG]), or the "
            "path of a folder saved with save_to_disk"
        )
    local = Path(src).expanduser()
    pathlike = src.startswith(("/", ".", "~")) or Path(src).is_absolute()
    if local.is_dir() and (pathlike or is_saved_hf(local)):
        if not is_saved_hf(local):
            raise DataError(
                f"{local}: not a folder written by datasets' save_to_disk (no dataset_dict.json "
                "or state.json); save it with ds.save_to_disk(folder), or give a folder of "
                "train/test files as a plain path"
            )
        datasets = import_datasets()
        try:
            obj = datasets.load_from_disk(str(local))
        except Exception as err:  # datasets raises many types for damaged folders
            detail = " ".join(str(err).split())[:200]
            raise DataError(
                f"{local}: cannot be read as a saved datasets folder ({detail}); save it again "
                "with save_to_disk"
            ) from None
        return _from_hf(obj, local.name, opts)
    name, _, config = src.partition(":")
    var = hf_offline()
    if var is not None:
        raise DataError(
            f"hf:{src} needs the Hugging Face hub but {var} is set (offline); unset it, or where "
            "you are online save the data with load_dataset(...).save_to_disk(folder) and give "
            "that folder as the source"
        )
    datasets = import_datasets()
    try:
        obj = datasets.load_dataset(name, config or None)
    except Exception as err:  # not found, no network, a config needed: all say why
        raise DataError(
            f"hf:{src}: cannot be loaded ({' '.join(str(err).split())[:300]}); check the name "
            "and config on huggingface.co/datasets (hf:NAME or hf:NAME:CONFIG) and the network"
        ) from None
    label = name.rsplit("/", 1)[-1] + (f"-{config}" if config else "")
    return _from_hf(obj, label, opts)


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
    return with_note(load_hf_raw(source, text_col, label_col, latent_cols, test_size, seed))
