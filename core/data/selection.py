"""The selection split, subsampling, split notes and subclass-count checks.

Why one place: every choice made from scores (epochs, settings, regularisation) is made on
:data:`SELECT`, never on test, and the note a user reads names how each split was made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..types import Dataset, Split
from .readers import DataError

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


def subsample(ds: Dataset, max_train: int, seed: int) -> Dataset:
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


def _sizes(ds: Dataset) -> str:
    """``1,037 train, 115 dev, 288 test rows``: the split sizes a note names."""
    order: list[str] = [s for s in ("train", "dev", "test") if s in ds.splits]
    order += sorted(s for s in ds.splits if s not in order)
    held = ds.holdout_rows is not None  # dev carved out of train by with_selection_split
    return (
        ", ".join(
            f"{len(ds.splits[s]):,} {s}{' (held out of train)' if held and s == SELECT else ''}"
            for s in order
        )
        + " rows"
    )


def with_note(ds: Dataset, extra: str = "") -> Dataset:
    """``ds`` with its split note completed by the split sizes (and ``extra``, a mention)."""
    if not ds.split_note and not extra:
        return ds
    head = f"{ds.split_note}: {_sizes(ds)}" if ds.split_note else ""
    return replace(ds, split_note="; ".join(p for p in (head, extra) if p))


def split_reason(what: str, test_size: float, seed: int) -> str:
    pct = int(round(100 * test_size))
    return f"{what} was split stratified {100 - pct}/{pct} (seed {seed}) into train and test"
