"""Per-class statistics of a cached teacher's training embeddings, kept in the workspace.

Why: LELP's fit reads H only to build them, one pass over every training row (about 5 s at
1.6M x 384 on two cores, most of the Subspaces page's first render). They are computed with
the teacher outputs (class sets from the labels) or on first use (from the teacher's
predictions) and stored beside them, so no later visit or restart pays that pass again.
The workspace keeps them as it keeps the map's projections: a key, one array, its meta.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .store import ArrayDamaged, Workspace
from .subclasses import ClassStats, SubclassError, class_statistics
from .types import Dataset, TeacherOutputs, hash_arrays


def stats_key(teacher_key: str, class_source: str) -> str:
    """The workspace key of the statistics of ``teacher_key``'s train split, by class source."""
    return hash_arrays("class-statistics", teacher_key, class_source)


def stored_class_stats(
    ws: Workspace, teacher_key: str, H: np.ndarray, y: np.ndarray, class_source: str
) -> ClassStats:
    """The statistics of ``H`` (the train split of ``teacher_key``) by class ``y``: read
    from the workspace, else computed (``class_statistics``) and stored. ``y`` must be the
    class sets ``class_source`` names ("label" or "teacher"), which the key stands for."""
    key = stats_key(teacher_key, class_source)
    try:
        a = ws.load_projection(key)
    except ArrayDamaged:
        a = None  # set aside by ``lelp doctor``; recomputed here
    if a is not None and a.shape[0] == int(np.max(y)) + 1 and a.shape[2] == H.shape[1]:
        return ClassStats.from_array(a)
    stats = class_statistics(H, y)
    meta = {"kind": "class statistics", "teacher_key": teacher_key, "class_source": class_source}
    ws.save_projection(key, stats.to_array(), meta, dtype=np.float64)
    return stats


def keep_class_stats(ws: Workspace, teacher_key: str, out: TeacherOutputs, ds: Dataset) -> None:
    """Store the label class sets' statistics of freshly computed teacher outputs (a dataset
    whose train split lacks a class has none: its Subspaces page says why)."""
    with contextlib.suppress(SubclassError):
        stored_class_stats(ws, teacher_key, out.H["train"], ds.splits["train"].y, "label")
