"""Figures of sweeps and cost: heat map, line, objectives side by side, the Pareto front."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..cost import pareto_front
from ._common import _frame


def sweep_heatmap(g: Mapping[str, Any], *, metric: str = "accuracy") -> go.Figure:
    """A sweep over two settings: the selection-split mean of each cell, its std and n on
    hover (``core.sweeps.grid``'s output). Cells never run stay blank."""
    mean, std, n = np.asarray(g["mean"]), np.asarray(g["std"]), np.asarray(g["n"])
    text = np.where(np.isnan(mean), "", np.char.mod("%.2f", np.nan_to_num(mean)))
    custom = np.dstack([np.nan_to_num(std, nan=-1.0), n])
    fig = go.Figure(
        go.Heatmap(
            z=mean,
            x=[_tick(v) for v in g["x"]],
            y=[_tick(v) for v in g["y"]],
            text=text,
            texttemplate="%{text}",
            customdata=custom,
            colorscale="Viridis",
            colorbar={"title": f"selection<br>{metric}"},
            hovertemplate=(
                f"{g['x_name']} %{{x}}, {g['y_name']} %{{y}}<br>selection {metric} %{{z:.2f}}"
                " ± %{customdata[0]:.2f} (std; -1: one seed)<br>n = %{customdata[1]}"
                "<extra></extra>"
            ),
        )
    )
    return _frame(
        fig,
        height=320,
        legend="right",
        xaxis_title=str(g["x_name"]),
        yaxis_title=str(g["y_name"]),
        xaxis_type="category",
        yaxis_type="category",
    )


def sweep_line(df: pd.DataFrame, x: str, *, metric: str = "accuracy") -> go.Figure:
    """A sweep over one setting: selection-split mean ± std against it, one line per
    objective when several are in the table."""
    fig = go.Figure()
    groups = df.groupby("objective", sort=False) if "objective" in df.columns else [("", df)]
    for name, g in groups:
        g = g.sort_values(x)
        fig.add_trace(
            go.Scatter(
                x=[_tick(v) for v in g[x]],
                y=g["sel_mean"],
                error_y={"type": "data", "array": g["sel_std"].fillna(0.0)},
                mode="lines+markers",
                name=str(name) or metric,
                hovertemplate=f"{x} %{{x}}: %{{y:.2f}}<extra>{name}</extra>",
            )
        )
    return _frame(
        fig,
        height=300,
        legend="below",
        xaxis_title=x,
        yaxis_title=f"selection {metric}",
        xaxis_type="category",
    )


def objective_bars(side: pd.DataFrame, *, metric: str = "accuracy") -> go.Figure:
    """Objectives side by side (``core.sweeps.objective_rows``): selection mean with the
    seeds' std as error bars, so "beyond the noise?" reads at a glance."""
    fig = go.Figure(
        go.Bar(
            x=list(side["label"]),
            y=side["sel_mean"],
            error_y={"type": "data", "array": side["sel_std"].fillna(0.0)},
            customdata=np.c_[side["n"], side["test_mean"]],
            hovertemplate=(
                "%{x}<br>selection %{y:.2f}<br>n = %{customdata[0]}<br>test (not used to rank) "
                "%{customdata[1]:.2f}<extra></extra>"
            ),
        )
    )
    lo = float(np.nanmin(side["sel_mean"] - side["sel_std"].fillna(0.0)))
    hi = float(np.nanmax(side["sel_mean"] + side["sel_std"].fillna(0.0)))
    pad = max(0.5, 0.15 * (hi - lo))
    return _frame(
        fig,
        height=300,
        xaxis_title="objective",
        yaxis_title=f"selection {metric} (mean ± std over seeds)",
        yaxis_range=[lo - pad, hi + pad],
    )


def _tick(v: Any) -> str:
    """A setting's value as an axis label: ``4`` for 4 and 4.0 (a column holding NaN for runs
    that ignore the setting turns ints into floats), ``0.5``, or the text."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def cost_pareto(
    names: Sequence[str],
    latency_ms: Sequence[float | None],
    accuracy: Sequence[float | None],
    *,
    teacher: str | Sequence[str] = "teacher",
    colors: Mapping[str, str] | None = None,
    params: Sequence[int | None] | None = None,
    latency_title: str = "latency (ms, CPU, batch 1; log scale)",
    accuracy_title: str = "test accuracy (%)",
) -> go.Figure:
    """Accuracy against measured latency, one marker per model, the Pareto front joined.

    Why: a student is worth shipping when nothing else is both faster and more accurate;
    the front (``core.cost.pareto_front``) is drawn as a line through its points, and the
    models off it are dimmed (the teacher, the reference, never is). Latency is on a log
    axis (teachers and students differ by orders of magnitude). ``teacher`` names the teacher
    model(s), drawn in near-black;
    ``colors`` (``run_colors``) keeps a run's colour; ``params`` adds parameters on hover.
    Models without a latency or an accuracy are left out.
    """
    n = len(names)
    if len(latency_ms) != n or len(accuracy) != n or (params is not None and len(params) != n):
        raise ValueError(
            f"cost_pareto: {n} names but {len(latency_ms)} latencies, {len(accuracy)} "
            f"accuracies{'' if params is None else f' and {len(params)} parameter counts'}; "
            "give one value per model"
        )
    lat = np.array([np.nan if v is None else float(v) for v in latency_ms])
    acc = np.array([np.nan if v is None else float(v) for v in accuracy])
    keep = np.isfinite(lat) & np.isfinite(acc) & (lat > 0)
    front = pareto_front(np.c_[lat, acc]) & keep
    teachers = {teacher} if isinstance(teacher, str) else set(teacher)
    fig = go.Figure()
    order = np.flatnonzero(front)[np.argsort(lat[front], kind="stable")]
    fig.add_trace(
        go.Scatter(
            x=lat[order],
            y=acc[order],
            mode="lines",
            name="Pareto front",
            line={"color": "#888888", "dash": "dash", "width": 1.5},
            hoverinfo="skip",
        )
    )
    for i in np.flatnonzero(keep):
        name = str(names[int(i)])
        colour = "#222222" if name in teachers else (colors or {}).get(name)
        n_params = None if params is None else params[int(i)]
        p = "" if n_params is None else f"{int(n_params):,}"
        fig.add_trace(
            go.Scatter(
                x=[lat[i]],
                y=[acc[i]],
                mode="markers",
                name=name,
                opacity=1.0 if front[i] or name in teachers else 0.35,  # the reference stays
                marker={
                    "size": 13 if name in teachers else 11,
                    "color": colour,
                    "symbol": "diamond" if name in teachers else "circle",
                    "line": {"width": 1, "color": "white"},
                },
                customdata=[[name, p, "on the Pareto front" if front[i] else "dominated"]],
                hovertemplate=(
                    "%{customdata[0]}<br>latency %{x:.3g} ms<br>accuracy %{y:.2f}"
                    "<br>parameters %{customdata[1]}<br>%{customdata[2]}<extra></extra>"
                ),
            )
        )
    shown = lat[keep]
    # Over two decades plotly's log ticks (1, 2, 5, 10, ...) crowd; powers of ten read better.
    wide = shown.size > 1 and np.log10(shown.max() / shown.min()) >= 2
    return _frame(
        fig,
        height=360,
        legend="below",
        xaxis_title=latency_title,
        yaxis_title=accuracy_title,
        xaxis_type="log",
        **cast(dict[str, Any], {"xaxis_dtick": 1} if wide else {}),
    )
