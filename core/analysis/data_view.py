"""Which data a dataset holds and a run used: labeled and transfer row counts, and the class
each row is shown with (a transfer row's is the teacher's, marked as unlabeled)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..types import TRANSFER, Dataset

#: How a transfer row's class is marked wherever rows are listed or coloured.
UNLABELED_MARK = "(unlabeled)"


def data_text(data: Mapping[str, Any] | None) -> str:
    """A run's data in a few words: ``1,037 labeled + 2,000 transfer rows``, or ``1,037
    labeled rows``; runs recorded before transfer data existed trained on labeled rows only,
    and say ``labeled rows`` without a count."""
    if not data:
        return "labeled rows"
    labeled, transfer = int(data.get("labeled", 0)), int(data.get("transfer", 0))
    if transfer:
        return f"{labeled:,} labeled + {transfer:,} transfer rows"
    return f"{labeled:,} labeled rows"


def row_counts(ds: Dataset) -> dict[str, int]:
    """The rows of each kind a page shows: ``labeled`` (training rows with a label),
    ``selection``/``test`` (labeled, never trained on), ``transfer`` (unlabeled rows kept)
    and the transfer rows dropped (``Dataset.transfer_info``)."""
    info = ds.transfer_info
    counts = {
        "labeled": len(ds.splits["train"]),
        "selection": len(ds.splits["dev"]) if "dev" in ds.splits else 0,
        "test": len(ds.splits["test"]) if "test" in ds.splits else 0,
        "transfer": ds.n_transfer,
    }
    dropped = {
        "dropped (equal to a dev/test text)": info.get("dropped_eval", 0),
        "dropped (equal to a labeled training text)": info.get("dropped_train", 0),
        "dropped (empty)": info.get("dropped_empty", 0),
    }
    return counts | {k: v for k, v in dropped.items() if v}


def display_classes(ds: Dataset, split: str, teacher_logits: Any = None) -> np.ndarray:
    """Per row of ``split``, the class name a page shows: its label, or for a transfer row
    (y = -1) the teacher's class (from ``teacher_logits``) marked ``(unlabeled)``, so it is
    never mistaken for a labeled row, nor for class 0."""
    y = np.asarray(ds.splits[split].y)
    names = np.array(ds.label_names, dtype=object)
    out = np.empty(len(y), dtype=object)
    known = y >= 0
    out[known] = names[y[known]]
    if (~known).any():
        if teacher_logits is None:
            out[~known] = UNLABELED_MARK
        else:
            pred = np.asarray(teacher_logits)[~known].argmax(1)
            out[~known] = [f"{names[p]} {UNLABELED_MARK}" for p in pred]
    return out


def transfer_class_table(ds: Dataset, teacher_logits: Any) -> pd.DataFrame:
    """How the teacher labels the transfer rows: rows and share per class (the Data page)."""
    if not ds.n_transfer:
        return pd.DataFrame(columns=["class", "transfer rows", "share %"])
    pred = np.asarray(teacher_logits).argmax(1)
    counts = np.bincount(pred, minlength=ds.n_classes)
    return pd.DataFrame(
        {
            "class": ds.label_names,
            "transfer rows": counts,
            "share %": np.round(100 * counts / max(len(pred), 1), 1),
        }
    )


def labeled_splits(ds: Dataset) -> dict[str, np.ndarray]:
    """The labels of each labeled split (class balance charts: never the transfer split)."""
    return {k: s.y for k, s in ds.splits.items() if k != TRANSFER}
