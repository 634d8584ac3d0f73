"""How rows, runs and settings are named on the pages (pure functions)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import SubclassSpec
from ..data import SELECT
from ..types import Dataset, hash_arrays


def display_texts(ds: Dataset, split: str) -> list[str]:
    """Text shown for each row (hover, tables): the text, or latent values for feature data."""
    s = ds.splits[split]
    if s.texts is not None:
        return list(s.texts)
    if s.latent:
        cols = sorted(s.latent)
        return [", ".join(f"{c}={s.latent[c][i]}" for c in cols) for i in range(len(s))]
    return [f"row {i}" for i in range(len(s))]


def hash_key(obj: Any) -> str:
    """A short stable id for a cache-key tuple (used to name stored projections)."""

    return hash_arrays(json.dumps(obj, default=str))[:16]


def run_labels(runs: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Run id -> the name a page shows; a name several runs share gets the id appended.

    Why: tables, legends and the dicts the plots take are keyed by name, so two runs named
    alike ("text-demo hard" twice) were shown as one row, one curve, one matrix title.
    """
    counts = Counter(str(r["name"]) for r in runs)
    return {
        r["run_id"]: f"{r['name']}" + (f" ({r['run_id']})" if counts[str(r["name"])] > 1 else "")
        for r in runs
    }


def subclass_label(spec: SubclassSpec) -> str:
    """How a run's pseudo-subclass setting reads in its name: ``S=4 beta=1.0`` for LELP,
    ``manual groups`` or ``kmeans S=4`` otherwise, so runs on different settings differ."""
    if spec.method == "manual":
        return "manual groups"
    head = "" if spec.method == "lelp" else f"{spec.method} "
    tail = f" beta={spec.beta}" if spec.method == "lelp" else ""
    return f"{head}S={spec.n_subclasses}{tail}"


def subclass_names(class_names: list[str], sizes: list[int]) -> list[str]:
    return [f"{c}/{s}" for c, n in zip(class_names, sizes, strict=True) for s in range(n)]


def selection_caption(ds: Dataset) -> str:
    """Which split chooses, and that test only scores (the Data and Compare pages)."""

    return (
        f"Selection split: **{SELECT}**, {len(ds.splits[SELECT]):,} rows, "
        f"{ds.selection or 'the dataset’s own'}. Every choice made from scores (the per-epoch "
        "curves, a sweep’s best setting, the teacher head’s regularisation) uses it; the test "
        "split is scored once per finished run and chooses nothing."
    )


def student_files_missing(student_dir: Any) -> str | None:
    """Why a run's student cannot be downloaded (folder or weights gone), or None."""
    if student_dir is None or not Path(student_dir).is_dir():
        return "this run's student folder is not in the workspace any more"
    for name in ("student.safetensors", "student.json"):
        if not (Path(student_dir) / name).is_file():
            return f"this run's {name} is missing from {student_dir}"
    return None


def sweep_runs(by_sweep: dict[str, list[str]], run_ids: set[str]) -> dict[str, list[str]]:
    """The sweeps (``jobs.sweep_run_ids``: ``{sweep_id: [run_id, ...]}``) restricted to the
    runs shown; sweeps with none of them are left out."""
    return {k: [r for r in v if r in run_ids] for k, v in by_sweep.items() if set(v) & run_ids}


def pseudo_subclass_names(
    sub: Any, label_names: Sequence[str], group_names: Sequence[str] | None = None
) -> list[str]:
    """The name of each pseudo-subclass of a fitted subclasser, as the pages show it:
    ``negative/2`` (LELP, clusters), ``negative/books`` (a latent column's values) or
    ``positive/electronics blob`` (manual ``group_names``; ``rest`` for rows in no group)."""
    values = getattr(sub, "values_", None)
    if values is None:
        return subclass_names(list(label_names), list(sub.sizes_))

    def value(v: Any) -> str:
        if group_names is None:
            return str(v)
        return "rest" if v < 0 else str(group_names[v])

    return [f"{label_names[c]}/{value(v)}" for c, vs in enumerate(values) for v in vs]
