"""Figures of finished runs: reliability, confusion, learning curves, fidelity, neighbours."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ._common import _PALETTE, _count_heatmap, _frame, _hover_strings, run_colors


def reliability_diagram(
    curves: Mapping[str, Mapping[str, Any]], *, colors: Mapping[str, str] | None = None
) -> go.Figure:
    """Reliability curves, one line per model.

    Each curve is a mapping with ``confidence`` (mean confidence per bin) and ``accuracy``
    (accuracy per bin); optional ``count``. Empty bins (NaN/None) are dropped. ``colors``
    (``run_colors``) fixes a name's colour; names it lacks (the teacher) get plotly's next.
    """
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line={"dash": "dash", "color": "grey"},
            name="perfect calibration",
        )
    )
    for name, curve in curves.items():
        conf = np.asarray(_curve_field(curve, "confidence", "mean_confidence", "conf"), float)
        acc = np.asarray(_curve_field(curve, "accuracy", "acc"), float)
        ok = np.isfinite(conf) & np.isfinite(acc)
        line = {"color": colors[str(name)]} if colors and str(name) in colors else None
        fig.add_trace(
            go.Scatter(x=conf[ok], y=acc[ok], mode="lines+markers", name=str(name), line=line)
        )
    return _frame(
        fig,
        height=420,
        legend="below",  # run names are long: on the right they squeeze a half-width plot
        xaxis_title="confidence",
        yaxis_title="accuracy",
        xaxis_range=[0, 1],
        yaxis_range=[0, 1],
    )


def _curve_field(curve: Mapping[str, Any], *names: str) -> list[float]:
    for n in names:
        if n in curve and curve[n] is not None:
            return [np.nan if v is None else v for v in curve[n]]
    raise KeyError(f"reliability curve needs one of {list(names)}; it has {sorted(curve)}")


def confusion_heatmap(
    cm: np.ndarray, class_names: Sequence[str], *, title: str | None = None
) -> go.Figure:
    """A confusion matrix (rows = true class, columns = predicted) with counts as text.

    A long ``title`` (a run name with its id) is wrapped, not cut at the figure's edge."""
    if title:
        title = "<br>".join(textwrap.wrap(title, 34))
    cm = np.asarray(cm)
    names = [str(c) for c in class_names]
    fig = _frame(
        _count_heatmap(cm, names, names, "predicted", "true"),
        height=340,
        title=title,
        legend="right",  # the colour bar
        xaxis_title="predicted",
        yaxis_title="true",
        yaxis_autorange="reversed",
        xaxis_type="category",
        yaxis_type="category",
    )
    lines = title.count("<br>") + 1 if title else 0
    return fig.update_layout(margin_t=max(fig.layout.margin.t, 24 * lines + 16))


def _metric_dash(metric: str) -> str:
    """A run has one colour, so its metrics differ by dash: accuracy solid, agreement dashed
    (they share an axis and often overlap), loss dotted."""
    if "agree" in metric:
        return "dash"
    return "solid" if "acc" in metric else "dot"


def learning_curves(
    histories: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    x: str = "step",
    metrics: Sequence[str] = ("loss", "eval_accuracy", "eval_agreement"),
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Loss and accuracy over training, one line per run and metric present in its history.

    Accuracy-like metrics (names containing 'acc' or 'agree') go on a second y axis with its
    own ticks (every 20 %), in [0, 1] shown as percent when every value is a fraction
    (percentages are drawn as they are). The legend sits below the x-axis title.
    """
    fig = go.Figure()
    acc_max = 0.0
    colors = colors or run_colors(list(histories))  # one colour per run, dash per metric
    for name, hist in histories.items():
        for metric in metrics:
            pts = [
                (h.get(x, i), h[metric])
                for i, h in enumerate(hist)
                if h.get(metric) is not None and np.isfinite(float(h[metric]))
            ]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            is_acc = "acc" in metric or "agree" in metric
            if is_acc:
                acc_max = max(acc_max, max(float(v) for v in ys))
            fig.add_trace(
                go.Scatter(
                    x=list(xs),
                    y=list(ys),
                    mode="lines+markers" if len(xs) < 40 else "lines",
                    name=f"{name}: {metric}",
                    yaxis="y2" if is_acc else "y",
                    line={"dash": _metric_dash(metric), "color": colors.get(str(name))},
                    marker={"symbol": "diamond" if "agree" in metric else "circle"},
                )
            )
    # the accuracy axis gets ticks of its own: recent plotly.js defaults an overlaying axis to
    # tickmode "sync", which copies the loss axis's grid (0.077, 0.356, ...) onto this scale
    acc_axis: dict[str, Any] = {
        "title": {"text": "accuracy"},
        "overlaying": "y",
        "side": "right",
        "tickmode": "linear",
        "tick0": 0,
        "showgrid": False,  # the grid is the loss axis's
    }
    if acc_max <= 1.0:
        acc_axis.update(range=[0, 1], dtick=0.2, tickformat=".0%", hoverformat=".1%")
    else:
        acc_axis.update(range=[0, 100], dtick=20, ticksuffix="%", hoverformat=".1f")
    return _frame(
        fig,
        # the legend sits below the plot, a row per two or three traces: grow, not squeeze
        height=300 + 20 * len(fig.data),
        legend="below",
        xaxis_title=x,
        yaxis={"title": {"text": "loss"}},
        yaxis2=acc_axis,
    )


def fidelity_bars(
    values: Mapping[str, Mapping[str, float | None]], *, measure: str = "agreement"
) -> go.Figure:
    """One measure of fidelity on the test and train splits, grouped by run.

    ``values``: run name -> ``{"test": v, "train": v}`` (a missing or None value leaves a gap).
    Why both splits: Stanton et al. (2021) found students often fail to match their teacher
    even on the data they were trained on; the gap between the two bars shows it.
    """
    runs = list(values)
    fig = go.Figure()
    for split in ("test", "train"):
        ys = [values[r].get(split) for r in runs]
        fig.add_trace(
            go.Bar(
                x=runs,
                y=[None if v is None else float(v) for v in ys],
                name=split,
                hovertemplate=f"%{{x}}<br>{split} {measure}: %{{y:.4f}}<extra></extra>",
            )
        )
    return _frame(
        fig, height=300, legend="below", barmode="group", xaxis_title="run", yaxis_title=measure
    )


def neighbour_probs(
    probs: np.ndarray,
    class_names: Sequence[str],
    similarities: Sequence[float],
    row_ids: Sequence[int],
    texts: Sequence[object] | None = None,
) -> go.Figure:
    """Teacher class probabilities of retrieved neighbours as stacked horizontal bars.

    ``probs``: (k, C) rows summing to one, nearest first (drawn top to bottom); one trace per
    class; hover shows the training row, its similarity and its (truncated) text.
    """
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != len(class_names) or P.shape[0] != len(similarities):
        raise ValueError(
            f"neighbour_probs: probs has shape {P.shape}; expected (k, C) with k = "
            f"{len(similarities)} similarities and C = {len(class_names)} class names"
        )
    k = P.shape[0]
    ylab = [f"#{i + 1} row {int(r)}" for i, r in enumerate(row_ids)]
    hover = _hover_strings(texts, k)
    custom = np.column_stack(
        [np.asarray(row_ids, dtype=object), np.round(np.asarray(similarities, float), 4), hover]
    )
    fig = go.Figure()
    for c, name in enumerate(class_names):
        fig.add_trace(
            go.Bar(
                x=P[:, c],
                y=ylab,
                orientation="h",
                name=str(name),
                marker_color=_PALETTE[c % len(_PALETTE)],
                customdata=custom,
                hovertemplate=(
                    f"{name}: %{{x:.3f}}<br>row %{{customdata[0]}}, similarity "
                    "%{customdata[1]}<br>%{customdata[2]}<extra></extra>"
                ),
            )
        )
    return _frame(
        fig,
        height=max(240, 100 + 28 * k),
        legend="below",
        barmode="stack",
        xaxis={"title": {"text": "teacher probability"}, "range": [0, 1]},
        yaxis={"title": {"text": "neighbour"}, "autorange": "reversed"},
    )
