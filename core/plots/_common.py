"""What every figure shares: hover-safe text, legend placement, the frame, run colours."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

HOVER_CHARS = 160
MAX_LEGEND_TRACES = 60  # more categories than this fall back to a continuous colour scale
_PALETTE = tuple(qualitative.D3) + tuple(qualitative.Dark24)


def truncate(text: object, n: int = HOVER_CHARS) -> str:
    """A hover-safe string: never None/NaN, single line, at most ``n`` characters."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    s = " ".join(str(text).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _hover_strings(values: Sequence[object] | np.ndarray | None, m: int) -> np.ndarray:
    if values is None:
        return np.full(m, "", dtype=object)
    out = np.array([truncate(v) for v in values], dtype=object)
    if len(out) != m:
        raise ValueError(f"hover_text has {len(out)} entries for {m} points")
    return out


# Plotly's mode bar floats over the top ~30 px of a figure's right-hand side.
_MODEBAR_CLEARANCE = 50
# A horizontal legend in the figure's bottom strip: ``yref="container"`` makes plotly reserve
# its height below the x axis, so it can never cover the tick labels or the axis title (a
# paper-referenced ``y < 0`` is bottom-anchored and grows upwards onto them).
_LEGEND_BELOW = {
    "orientation": "h",
    "yref": "container",
    "y": 0,
    "yanchor": "bottom",
    "x": 0,
    "xanchor": "left",
}
# A vertical legend right of the plot, its top level with the plot's (below the mode bar).
_LEGEND_RIGHT = {"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top"}


def _frame(
    fig: go.Figure,
    *,
    height: int,
    title: str | None = None,
    legend: Literal["below", "right"] | None = None,
    **layout: Any,
) -> go.Figure:
    """The layout every figure shares; ``layout`` holds the figure's own settings.

    Margins start slim and grow to fit what sits in them: every axis has ``automargin``, so
    tick labels and axis titles are never clipped or drawn over each other (the Streamlit
    template, unlike plotly's own, does not set it). ``legend="below"``: a horizontal legend
    under the x-axis title; ``legend="right"`` (also for a colour bar): the top margin clears
    the mode bar, which would otherwise hide the legend's title and first entries.
    """
    top = 40 if title else 20
    if legend == "right":
        top = max(top, _MODEBAR_CLEARANCE)
    fig.update_layout(
        height=height,
        title=title,
        margin={"l": 10, "r": 10, "t": top, "b": 10, "autoexpand": True},
        **layout,
    )
    if legend == "below":
        fig.update_layout(legend=_LEGEND_BELOW)
    elif legend == "right":
        fig.update_layout(legend=_LEGEND_RIGHT)
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def run_colors(names: Sequence[str]) -> dict[str, str]:
    """One colour per run name, in order: passed to every figure of a page, so a run has the
    same colour in the reliability diagram as in the learning curves."""
    return {str(n): _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)}


def _count_heatmap(
    counts: np.ndarray, x: Sequence[Any], y: Sequence[Any], x_name: str, y_name: str
) -> go.Figure:
    """A heat map of counts (rows ``y``, columns ``x``), each cell's count written in it."""
    return go.Figure(
        go.Heatmap(
            z=counts,
            x=x,
            y=y,
            colorscale="Blues",
            text=counts,
            texttemplate="%{text}",
            hovertemplate=f"{y_name} %{{y}}<br>{x_name} %{{x}}<br>count %{{z}}<extra></extra>",
        )
    )
