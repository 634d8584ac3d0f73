"""Costs of the picked runs' teachers and students, keyed by the names the page shows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import cost
from ..store import Workspace


def cost_records(
    ws: Workspace, runs: Sequence[Mapping[str, Any]], labels: Mapping[str, str]
) -> tuple[dict[str, dict[str, Any] | None], dict[str, float | None]]:
    """Cached costs of the runs' teachers and students by display name (teachers first: one
    per teacher, "teacher" when the runs share one), and each name's test accuracy."""

    keys = [(r.get("artifacts") or {}).get("teacher_key") for r in runs]
    distinct = list(dict.fromkeys(k for k in keys if k))
    recs: dict[str, dict[str, Any] | None] = {}
    acc: dict[str, float | None] = {}
    for r, key in zip(runs, keys, strict=True):
        if key and key in distinct:
            name = "teacher" if len(distinct) == 1 else f"teacher of {labels[r['run_id']]}"
            recs[name] = cost.cached_cost(ws, r)["teacher"]
            acc[name] = (r.get("metrics") or {}).get("teacher", {}).get("accuracy")
            distinct.remove(key)
    for r in runs:
        name = labels[r["run_id"]]
        recs[name] = cost.cached_cost(ws, r)["student"]
        acc[name] = (r.get("metrics") or {}).get("student", {}).get("accuracy")
    return recs, acc
