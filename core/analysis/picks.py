"""Which runs the Compare page shows first, and which runs are not finished.

Why: Compare used to pick the three newest runs of any dataset and then keep adding runs,
so one teacher's reliability curve was drawn beside students of another dataset, and a run
cancelled at epoch 24 of 200 looked like a finished one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..config import DatasetSpec, TeacherSpec

#: How many runs the first visit picks.
DEFAULT_PICK = 3


def run_unfinished(run: Mapping[str, Any]) -> str:
    """Why a recorded run is not a finished one ("cancelled at epoch 24 of 200", "stopped
    at epoch 3 of 8"), or "" for a run that trained every epoch it was asked for."""
    metrics = run.get("metrics") or {}
    history = metrics.get("history") or []
    planned = ((run.get("config") or {}).get("train") or {}).get("epochs")
    done = max((int(h.get("epoch", 0)) for h in history), default=len(history))
    done = max(done, len(history))
    of = f" at epoch {done} of {planned}" if planned else ""
    if metrics.get("cancelled"):
        return f"cancelled{of}"
    if metrics.get("failed") or metrics.get("error"):
        return f"failed{of}"
    if history and planned and done < int(planned):
        return f"partial: stopped{of}"
    return ""


def _same(spec: type[DatasetSpec] | type[TeacherSpec], a: Any, b: Any) -> bool:
    """Whether two specs (pydantic objects or their dicts) are the same setting. Datasets
    that differ only by their transfer set are the same: their runs score on the same
    labeled splits, and Compare's data column says which rows each trained on."""
    try:
        da = spec.model_validate(a or {}).model_dump(mode="json")
        db = spec.model_validate(b or {}).model_dump(mode="json")
    except ValueError:
        return False
    if spec is DatasetSpec:
        da.pop("transfer", None)
        db.pop("transfer", None)
    return bool(da == db)


def runs_of(
    runs: Iterable[Mapping[str, Any]], dataset: Any, teacher: Any
) -> list[Mapping[str, Any]]:
    """The runs made on ``dataset`` with ``teacher`` (specs or their dicts), order kept."""
    return [
        r
        for r in runs
        if _same(DatasetSpec, (r.get("config") or {}).get("dataset"), dataset)
        and _same(TeacherSpec, (r.get("config") or {}).get("teacher"), teacher)
    ]


def default_pick(
    runs: Sequence[Mapping[str, Any]],
    dataset: Any,
    teacher: Any,
    before: Sequence[str] | None = None,
    seen: Iterable[str] | None = None,
    n: int = DEFAULT_PICK,
) -> list[str]:
    """The run ids Compare picks: the ``n`` newest finished runs of the current dataset (any
    transfer set) and teacher (``runs`` newest first, as ``Workspace.list_runs`` gives them).

    ``before`` is the pick of an earlier visit on the same dataset and teacher (None after
    the dataset or teacher changed) and ``seen`` the run ids that existed then (None on a
    first visit). A first visit keeps a pick made elsewhere (a sweep, a preset); a later one
    keeps the pick (runs since deleted are dropped) and puts the finished runs of this
    dataset and teacher made since in front. An unfinished run (:func:`run_unfinished`) is
    never picked here; the user may still pick it by hand.
    """
    ids = {r["run_id"] for r in runs}
    fresh = [r["run_id"] for r in runs_of(runs, dataset, teacher) if not run_unfinished(r)]
    if seen is None:
        kept = [r for r in before or () if r in ids]
        return kept or fresh[:n]
    if before is None:
        return fresh[:n]
    old = set(seen)
    new = [r for r in fresh if r not in old]
    return [*new, *(r for r in before if r in ids and r not in new)]
