"""Figures as pure functions: arrays and labels in, a plotly Figure out (no Streamlit).

Pages only place these figures, so every figure is tested without a browser. Two pitfalls
shape ``embedding_scatter``: a plotly selection's ``point_indices`` count within each trace,
so the row id of every point travels in ``customdata``; and a null in hover data makes a
selection come back empty, so hover fields are always strings ("" for missing).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
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


def embedding_scatter(
    xy: np.ndarray,
    color: np.ndarray | Sequence[object],
    *,
    hover_text: Sequence[object] | np.ndarray | None = None,
    labels: Sequence[object] | np.ndarray | None = None,
    row_ids: np.ndarray | None = None,
    color_title: str = "class",
    continuous: bool = False,
    axis_titles: tuple[str, str] = ("x", "y"),
    marker_size: int = 5,
    highlight: np.ndarray | None = None,
    title: str | None = None,
) -> go.Figure:
    """WebGL scatter of a 2-D map.

    Categorical ``color``: one ``Scattergl`` trace per value (legend = values, sorted).
    ``continuous=True``: a single trace with a colour bar. Every point's ``customdata`` is
    ``[row_id, label, text]`` (strings for the last two, never null); read selections through
    ``customdata[0]``, not ``point_indices``. ``highlight`` (row ids) adds a ring trace on top.
    """
    xy = np.asarray(xy, dtype=np.float32)
    m = len(xy)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy must have shape (n, 2), got {xy.shape}")
    color = np.asarray(color, dtype=object if not continuous else np.float64)
    if len(color) != m:
        raise ValueError(f"color has {len(color)} entries for {m} points")
    rows = np.arange(m) if row_ids is None else np.asarray(row_ids, dtype=np.int64)
    text = _hover_strings(hover_text, m)
    lab = _hover_strings(labels, m)
    custom = np.empty((m, 3), dtype=object)
    custom[:, 0] = rows
    custom[:, 1] = lab
    custom[:, 2] = text
    hover = (
        "row %{customdata[0]}<br>label: %{customdata[1]}<br>"
        + color_title
        + ": %{meta}<br>%{customdata[2]}<extra></extra>"
    )
    fig = go.Figure()
    if continuous:
        c = np.nan_to_num(color.astype(np.float64), nan=0.0)
        fig.add_trace(
            go.Scattergl(
                x=xy[:, 0],
                y=xy[:, 1],
                mode="markers",
                customdata=custom,
                marker={
                    "size": marker_size,
                    "color": c,
                    "colorscale": "Viridis",
                    "showscale": True,
                    "colorbar": {"title": {"text": color_title}},
                },
                name=color_title,
                hovertemplate=(
                    "row %{customdata[0]}<br>label: %{customdata[1]}<br>"
                    + color_title
                    + ": %{marker.color:.3f}<br>%{customdata[2]}<extra></extra>"
                ),
                showlegend=False,
            )
        )
    else:
        keys = np.array([truncate(v, 40) for v in color], dtype=object)
        values = sorted(set(keys.tolist()), key=_natural_key)
        for i, v in enumerate(values):
            mask = keys == v
            fig.add_trace(
                go.Scattergl(
                    x=xy[mask, 0],
                    y=xy[mask, 1],
                    mode="markers",
                    customdata=custom[mask],
                    marker={"size": marker_size, "color": _PALETTE[i % len(_PALETTE)]},
                    name=v if v != "" else "(none)",
                    meta=v,
                    hovertemplate=hover,
                )
            )
    if highlight is not None and len(highlight):
        pos = {int(r): i for i, r in enumerate(rows)}
        hi = np.array([pos[int(r)] for r in highlight if int(r) in pos], dtype=np.int64)
        if len(hi):
            fig.add_trace(
                go.Scattergl(
                    x=xy[hi, 0],
                    y=xy[hi, 1],
                    mode="markers",
                    customdata=custom[hi],
                    marker={
                        "size": marker_size + 6,
                        "color": "rgba(0,0,0,0)",
                        "line": {"width": 2, "color": "black"},
                    },
                    name="highlighted",
                    meta="highlighted",
                    hovertemplate=hover,
                )
            )
    return _frame(
        fig,
        height=560,
        title=title,
        legend="right",
        xaxis_title=axis_titles[0],
        yaxis_title=axis_titles[1],
        legend_title_text=color_title,
        dragmode="lasso",
        uirevision="map",  # keep zoom when only colours change
    )


def _natural_key(v: str) -> tuple[int, float | str]:
    try:
        return (0, float(v))
    except ValueError:
        return (1, v)


def selected_row_ids(selection: Mapping[str, Any] | None) -> np.ndarray:
    """Row ids of a Streamlit plotly selection event, read from each point's customdata."""
    if not selection:
        return np.zeros(0, dtype=np.int64)
    sel = selection.get("selection", selection)
    points = sel.get("points", []) if isinstance(sel, Mapping) else []
    ids = []
    for p in points:
        cd = p.get("customdata")
        if cd is None:
            continue
        first = cd[0] if isinstance(cd, (list, tuple)) else cd
        try:
            ids.append(int(first))
        except (TypeError, ValueError):
            continue
    return np.unique(np.asarray(ids, dtype=np.int64))


def spectrum_plot(
    ratio_with_null: np.ndarray,
    ratio_without: np.ndarray | None,
    class_name: str,
    *,
    chosen: Sequence[int] = (),
    max_components: int = 20,
    projected: bool = True,
) -> go.Figure:
    """Explained-variance ratio per principal component of one class: bars for the spectrum
    LELP uses (chosen directions in red, in their own legend entry), and with ``projected``
    a line for the spectrum before the null-space projection. The legend used to call every
    bar "after null-space projection", also with the projection off."""
    fig = go.Figure()
    chosen = [int(c) for c in chosen]
    max_components = max(max_components, max(chosen, default=-1) + 1)  # show every chosen one
    r1 = np.asarray(ratio_with_null, dtype=np.float64)[:max_components]
    xs = np.arange(len(r1))
    pick = np.isin(xs, chosen)
    for name, mask, colour in (
        ("chosen directions", pick, "#d62728"),
        ("other directions", ~pick, "#1f77b4"),
    ):
        if mask.any():
            fig.add_trace(go.Bar(x=xs[mask], y=r1[mask], name=name, marker_color=colour))
    if ratio_without is not None and projected:
        r0 = np.asarray(ratio_without, dtype=np.float64)[:max_components]
        fig.add_trace(
            go.Scatter(
                x=np.arange(len(r0)),
                y=r0,
                mode="lines+markers",
                name="before null-space projection",
                line={"color": "#7f7f7f"},
            )
        )
    return _frame(
        fig,
        height=300,
        title=f"{class_name}: explained variance" + ("" if projected else " (no projection)"),
        legend="below",
        xaxis_title="principal component",
        yaxis_title="explained variance ratio",
    )


def contingency_heatmap(
    assign: np.ndarray,
    latent: np.ndarray,
    *,
    assign_title: str = "pseudo-subclass",
    latent_title: str = "latent value",
    assign_names: Sequence[str] | None = None,
) -> go.Figure:
    """Counts of (pseudo-subclass, latent value) pairs as a heat map.

    ``assign`` holds ids or names; ``assign_names`` (optional) names the ids. Values are
    factorised first, so only the distinct ones are turned into labels (no per-row Python:
    the Subspaces page draws this for every training row, 1.6M at the largest).
    """
    if assign_names is not None:
        assign = np.asarray(assign_names, dtype=object)[np.asarray(assign)]
    rows, ri = _category_index(assign, None)
    cols, ci = _category_index(latent, 40)
    flat = np.bincount(ri * len(cols) + ci, minlength=len(rows) * len(cols))
    counts = flat.reshape(len(rows), len(cols))
    fig = go.Figure(
        go.Heatmap(
            z=counts,
            x=cols,
            y=rows,
            colorscale="Blues",
            text=counts,
            texttemplate="%{text}",
            hovertemplate=f"{assign_title} %{{y}}<br>{latent_title} %{{x}}<br>"
            "count %{z}<extra></extra>",
        )
    )
    return _frame(
        fig,
        height=max(270, 70 + 28 * len(rows)),
        legend="right",  # the colour bar
        xaxis_title=latent_title,
        yaxis_title=assign_title,
        yaxis_type="category",
        xaxis_type="category",
    )


def _category_index(values: Any, n_chars: int | None) -> tuple[list[str], np.ndarray]:
    """Sorted distinct display labels of ``values`` and each row's index into them; missing
    values are the label "" and values whose labels coincide (after truncation) merge."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object).ravel())
    shown = [truncate(u, n_chars or 1_000_000) for u in uniques]
    labels = sorted(set(shown) | ({""} if (codes < 0).any() else set()), key=_natural_key)
    where = {lab: i for i, lab in enumerate(labels)}
    lookup = np.array([where[lab] for lab in shown] + [where.get("", 0)], dtype=np.int64)
    return labels, lookup[codes]  # code -1 (missing) reads the last entry: ""


def target_bars(
    target_row: np.ndarray,
    class_names: Sequence[str],
    sizes: Sequence[int],
    *,
    teacher_probs: np.ndarray | None = None,
) -> go.Figure:
    """One example's C x S target distribution: one bar per (class, subclass), grouped by
    class colour; the teacher's class probability is drawn as a line over each group."""
    t = np.asarray(target_row, dtype=np.float64).ravel()
    if int(sum(sizes)) != len(t):
        raise ValueError(f"target has {len(t)} entries but sizes sum to {sum(sizes)}")
    fig = go.Figure()
    start = 0
    for c, (name, s) in enumerate(zip(class_names, sizes, strict=True)):
        xs = [f"{name}/{j}" for j in range(s)]
        fig.add_trace(
            go.Bar(
                x=xs,
                y=t[start : start + s],
                name=str(name),
                marker_color=_PALETTE[c % len(_PALETTE)],
                hovertemplate="%{x}: %{y:.3f}<extra></extra>",
            )
        )
        if teacher_probs is not None:
            fig.add_trace(
                go.Scatter(
                    x=[xs[0], xs[-1]],
                    y=[float(teacher_probs[c])] * 2,
                    mode="lines",
                    line={"dash": "dot", "color": "black"},
                    name=f"teacher p({name})",
                    showlegend=False,
                    hovertemplate=f"teacher p({name}) = {float(teacher_probs[c]):.3f}"
                    "<extra></extra>",
                )
            )
        start += s
    return _frame(
        fig,
        height=330,
        legend="right",
        xaxis_title="class / pseudo-subclass",
        yaxis_title="target probability",
        yaxis_range=[0, 1],
        bargap=0.15,
    )


def run_colors(names: Sequence[str]) -> dict[str, str]:
    """One colour per run name, in order: passed to every figure of a page, so a run has the
    same colour in the reliability diagram as in the learning curves."""
    return {str(n): _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)}


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
    fig = go.Figure(
        go.Heatmap(
            z=cm,
            x=names,
            y=names,
            colorscale="Blues",
            text=cm,
            texttemplate="%{text}",
            hovertemplate="true %{y}<br>predicted %{x}<br>count %{z}<extra></extra>",
        )
    )
    fig = _frame(
        fig,
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
                    line={"dash": "solid" if is_acc else "dot", "color": colors.get(str(name))},
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


def subclass_sizes_bar(
    sizes: Mapping[str, int] | Sequence[int], *, title: str | None = None
) -> go.Figure:
    """Number of examples per pseudo-subclass."""
    if isinstance(sizes, Mapping):
        xs, ys = [str(k) for k in sizes], list(sizes.values())
    else:
        xs, ys = [str(i) for i in range(len(sizes))], list(sizes)
    fig = go.Figure(go.Bar(x=xs, y=ys, marker_color="#1f77b4"))
    return _frame(
        fig,
        height=260,
        title=title,
        xaxis_title="pseudo-subclass",
        yaxis_title="examples",
        xaxis_type="category",
    )


def class_balance_bar(
    y_by_split: Mapping[str, np.ndarray], class_names: Sequence[str]
) -> go.Figure:
    """Examples per class, one bar group per split."""
    fig = go.Figure()
    names = [str(c) for c in class_names]
    for split, y in y_by_split.items():
        counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(names))[: len(names)]
        fig.add_trace(go.Bar(x=names, y=counts, name=split))
    return _frame(
        fig,
        height=300,
        legend="right",
        barmode="group",
        xaxis_title="class",
        yaxis_title="examples",
        xaxis_type="category",
    )


def length_histogram(texts: Sequence[str], *, unit: str = "words", nbins: int = 40) -> go.Figure:
    """Distribution of text lengths (words by default) of one split."""
    if unit == "words":
        lengths = np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))
    else:
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    fig = go.Figure(go.Histogram(x=lengths, nbinsx=nbins, marker_color="#1f77b4"))
    return _frame(fig, height=280, xaxis_title=f"length ({unit})", yaxis_title="examples")


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
    from .cost import pareto_front

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
        name = str(names[i])
        colour = "#222222" if name in teachers else (colors or {}).get(name)
        p = "" if params is None or params[i] is None else f"{int(params[i]):,}"
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
        **({"xaxis_dtick": 1} if wide else {}),
    )
