"""The sweep view and the grid builder: grids from typed text, and the aggregated table as
the Compare page shows it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..config import ConfigError
from ..sweeps import _sort_key

#: The grid builder's fields: short name -> (config key as ``lelp jobs sweep --grid`` spells
#: it, value type). Seeds are folded by the sweep view; the others become its settings.
SWEEP_FIELDS: dict[str, tuple[str, type]] = {
    "S": ("subclasses.n_subclasses", int),
    "beta": ("subclasses.beta", float),
    "tau": ("train.tau", float),
    "seed": ("train.seed", int),
}


def parse_sweep_values(text: str, kind: type, what: str) -> list[Any]:
    """``"2, 4 8"`` -> ``[2, 4, 8]`` (commas or spaces, duplicates dropped, order kept); an
    empty field is ``[]`` (not swept). Raises ``ConfigError`` naming the field and the value."""
    out: list[Any] = []
    for tok in text.replace(",", " ").split():
        try:
            v = kind(tok) if kind is float else int(tok)
        except ValueError:
            accepted = "whole numbers like 0, 1, 2" if kind is int else "numbers like 0.5, 1, 4"
            raise ConfigError(f"{what}: {tok!r} is not a number; enter {accepted}") from None
        if v not in out:
            out.append(v)
    return out


def sweep_grid(values: Mapping[str, str], objectives: Sequence[str] = ()) -> dict[str, list[Any]]:
    """The Distill page's grid builder as a ``core.jobs.submit_sweep`` grid: ``values`` maps
    the short names of ``SWEEP_FIELDS`` to the typed text; keys in the same order and with the
    same dotted names as ``lelp jobs sweep --grid``, objectives first. Empty fields are left
    out."""
    grid: dict[str, list[Any]] = {}
    if objectives:
        grid["train.objective"] = list(objectives)
    for short, (key, kind) in SWEEP_FIELDS.items():
        vals = parse_sweep_values(values.get(short, ""), kind, f"{short} ({key})")
        if vals:
            grid[key] = vals
    return grid


def sweep_size(grid: Mapping[str, Sequence[Any]] | None) -> int:
    """How many jobs a grid queues: the product of its list lengths (0 for no grid)."""
    return math.prod(len(v) for v in grid.values()) if grid else 0


def sweep_cli(grid: Mapping[str, Sequence[Any]]) -> str:
    """The ``lelp jobs sweep`` options that queue the same grid."""
    return " ".join(f"--grid {k}={','.join(str(v) for v in vals)}" for k, vals in grid.items())


def sweep_records(runs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The runs the sweep view can fold: those recording a full config (with a seed)."""
    return [
        r
        for r in runs
        if isinstance((r.get("config") or {}).get("train"), Mapping)
        and "seed" in r["config"]["train"]
    ]


def sweep_setting_columns(df: Any) -> list[str]:
    """The setting columns of a ``core.sweeps.aggregate`` table (those before ``n``)."""
    cols = list(df.columns)
    return cols[: cols.index("n")] if "n" in cols else []


def sweep_varying(df: Any) -> list[str]:
    """The setting columns whose value differs between rows (the axes a chart can use)."""
    return [c for c in sweep_setting_columns(df) if len({repr(v) for v in df[c]}) > 1]


def setting_text(value: Any) -> str:
    """How a setting's value reads in a selector: ``4``, ``0.5``, ``(not used)`` for a value
    the objective ignores (S and beta of a kd run)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "(not used)"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def setting_choices(df: Any, column: str) -> dict[str, Any]:
    """``{label: value}`` of a setting column's distinct values, in numeric order."""

    seen: dict[str, Any] = {}
    for v in df[column]:
        seen.setdefault(setting_text(v), v)
    return dict(sorted(seen.items(), key=lambda kv: _sort_key(kv[1])))


def sweep_row_label(row: Mapping[str, Any], columns: Sequence[str]) -> str:
    """``kd tau=4`` for one row of the aggregated table (values its objective ignores left
    out)."""
    parts = [str(row["objective"])] if "objective" in columns else []
    for c in columns:
        if c != "objective" and setting_text(row[c]) != "(not used)":
            parts.append(f"{c}={setting_text(row[c])}")
    return " ".join(parts)


def mean_std(mean: float, std: float) -> str:
    """``82.00 ± 2.00``; the mean alone for one seed, ``-`` for no score."""
    if mean is None or math.isnan(mean):
        return "-"
    return f"{mean:.2f}" if std is None or math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def sweep_table(df: Any) -> Any:
    """The aggregated table as the sweep view shows it: rank, settings, n, seeds, missing
    seeds, selection mean ± std (ranks) and test mean ± std (shown only)."""

    settings = sweep_setting_columns(df)
    out = pd.DataFrame({"rank": df["rank"]})
    for c in settings:
        out[c] = [setting_text(v) for v in df[c]]
    out["n"] = df["n"]
    out["seeds"] = [", ".join(map(str, s)) for s in df["seeds"]]
    out["missing seeds"] = [", ".join(map(str, s)) or "-" for s in df["missing_seeds"]]
    out["selection (ranks)"] = [
        mean_std(m, s) for m, s in zip(df["sel_mean"], df["sel_std"], strict=True)
    ]
    out["test (shown only)"] = [
        mean_std(m, s) for m, s in zip(df["test_mean"], df["test_std"], strict=True)
    ]
    return out
