"""Figures of the embeddings and pseudo-subclasses (Data, Embedding map and Subspaces pages)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..maps import ProjectedRows, stratified_sample
from ._common import _PALETTE, _count_heatmap, _frame, _hover_strings, truncate

#: Points an embedding map draws at most (the Embedding map's default): WebGL traces draw this
#: many at interactive speed, and their float32 coordinates and int32 row ids are about 3 MB of
#: figure (typed arrays, base64 in plotly's JSON).
MAP_POINTS = 200_000
#: Up to this many points the hover shows each point's label and text; above it only the row
#: id and the colour group: texts of up to 160 characters would be most of what is sent, and
#: the selection table below the map lists them for the rows picked.
HOVER_TEXT_POINTS = 20_000


def _points(
    xy: np.ndarray, rows: np.ndarray, idx: np.ndarray, marker: dict[str, Any], name: str, **kw: Any
) -> go.Scattergl:
    """One WebGL marker trace of the points ``idx`` of a map, each carrying its row id as
    ``customdata`` (and its hover string as ``text`` when given)."""
    text = kw.pop("text", None)
    return go.Scattergl(
        x=xy[idx, 0],
        y=xy[idx, 1],
        mode="markers",
        customdata=rows[idx],
        text=None if text is None else text[idx],
        marker=marker,
        name=name,
        **kw,
    )


def _row_ids(row_ids: np.ndarray | None, m: int) -> np.ndarray:
    """Row ids as int32 (a typed array of 4 bytes a point) when they fit, else int64."""
    rows = np.arange(m) if row_ids is None else np.asarray(row_ids, dtype=np.int64)
    if len(rows) != m:
        raise ValueError(f"row_ids has {len(rows)} entries for {m} points")
    fits = not len(rows) or (rows.min() >= 0 and rows.max() < 2**31)
    return rows.astype(np.int32) if fits else rows


def _hover_lines(
    hover_text: Sequence[object] | np.ndarray | None,
    labels: Sequence[object] | np.ndarray | None,
    m: int,
) -> np.ndarray | None:
    """Each point's hover line ("label: x<br>text"; strings, never null), or None when there
    is nothing to show or more than ``HOVER_TEXT_POINTS`` points."""
    if m > HOVER_TEXT_POINTS or (hover_text is None and labels is None):
        return None
    text = _hover_strings(hover_text, m)
    if labels is None:
        return text
    lab = _hover_strings(labels, m)
    return np.array(
        [f"label: {a}<br>{b}" if b else f"label: {a}" for a, b in zip(lab, text, strict=True)],
        dtype=object,
    )


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
    marker_size: int | None = None,
    highlight: np.ndarray | None = None,
    title: str | None = None,
    unlabeled: np.ndarray | None = None,
) -> go.Figure:
    """WebGL scatter of a 2-D map, lean enough for ``MAP_POINTS`` points.

    Categorical ``color``: one ``Scattergl`` trace per value (legend = values, sorted).
    ``continuous=True``: a single trace with a colour bar. Every point's ``customdata`` is its
    row id: read selections through it (``selected_row_ids``), never through
    ``point_indices``, which count within each trace. Coordinates go as float32 and ids as
    int32 typed arrays; up to ``HOVER_TEXT_POINTS`` points the hover also shows ``labels``
    and ``hover_text`` (as each point's ``text``), above it only the row id and colour group.
    ``marker_size`` defaults to 5 px, 3 px above 50,000 points. ``highlight`` (row ids) adds
    a ring trace on top.
    ``unlabeled`` (bool per point): transfer rows, drawn as open, fainter symbols in traces of
    their own named ``<value> (unlabeled)``, in their value's colour.
    """
    xy = np.asarray(xy, dtype=np.float32)
    m = len(xy)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy must have shape (n, 2), got {xy.shape}")
    if len(color) != m:
        raise ValueError(f"color has {len(color)} entries for {m} points")
    rows = _row_ids(row_ids, m)
    text = _hover_lines(hover_text, labels, m)
    size = marker_size if marker_size is not None else (5 if m <= 50_000 else 3)
    # row id and colour group first, then (small maps) the label and the text
    hover, tail = "row %{customdata}<br>", ("<br>%{text}" if text is not None else "")
    fig = go.Figure()
    open_ = np.zeros(m, dtype=bool) if unlabeled is None else np.asarray(unlabeled, dtype=bool)
    if len(open_) != m:
        raise ValueError(f"unlabeled has {len(open_)} entries for {m} points")
    if continuous:
        c = np.nan_to_num(np.asarray(color, dtype=np.float64), nan=0.0).astype(np.float32)
        marker = {
            "size": size,
            "color": c,
            "colorscale": "Viridis",
            "showscale": True,
            "colorbar": {"title": {"text": color_title}},
        }
        if open_.any():
            marker["symbol"] = np.where(open_, "circle-open", "circle").tolist()
        fig.add_trace(
            _points(
                xy,
                rows,
                np.arange(m),
                marker,
                name=color_title,
                text=text,
                hovertemplate=f"{hover}{color_title}: %{{marker.color:.3f}}{tail}<extra></extra>",
                showlegend=False,
            )
        )
    else:
        # factorised first: only the distinct values are turned into legend names
        codes, uniques = pd.factorize(np.asarray(color, dtype=object), use_na_sentinel=False)
        keys = [truncate(v, 40) for v in uniques]
        for i, v in enumerate(sorted(set(keys), key=_natural_key)):
            in_v = np.isin(codes, [j for j, k in enumerate(keys) if k == v])
            colour = _PALETTE[i % len(_PALETTE)]
            name = v if v != "" else "(none)"
            for faint in (False, True):
                idx = np.flatnonzero(in_v & (open_ == faint))
                if not len(idx):
                    continue
                look: dict[str, Any] = {"size": size, "color": colour}
                if faint:
                    look |= {"symbol": "circle-open", "opacity": 0.7}
                fig.add_trace(
                    _points(
                        xy,
                        rows,
                        idx,
                        look,
                        f"{name} (unlabeled)" if faint else name,
                        text=text,
                        meta=v,
                        hovertemplate=f"{hover}{color_title}: %{{meta}}{tail}<extra></extra>",
                    )
                )
    if highlight is not None and len(highlight):
        hi = np.flatnonzero(np.isin(rows, np.asarray(highlight, dtype=np.int64)))
        if len(hi):
            ring = {
                "size": size + 6,
                "color": "rgba(0,0,0,0)",
                "line": {"width": 2, "color": "black"},
            }
            fig.add_trace(
                _points(
                    xy,
                    rows,
                    hi,
                    ring,
                    "highlighted",
                    text=text,
                    meta="highlighted",
                    hovertemplate=f"{hover}%{{meta}}{tail}<extra></extra>",
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


def embedding_map(
    xy: np.ndarray | ProjectedRows,
    color: np.ndarray | Sequence[object],
    y: np.ndarray,
    *,
    max_points: int = MAP_POINTS,
    seed: int = 0,
    texts: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    unlabeled: np.ndarray | None = None,
    **kw: Any,
) -> go.Figure:
    """The map of a whole split (``xy``, ``color`` and labels ``y`` for each of its rows): a
    seeded class-stratified sample of at most ``max_points`` rows (all of them when fewer),
    drawn by ``embedding_scatter`` with the split's row numbers as ids, so a selection names
    rows of the split. ``xy`` may compute coordinates on demand (``maps.ProjectedRows``):
    only the sample's are asked for. ``texts`` and ``label_names`` feed the hover of small
    samples only (a row labelled -1 is "unlabeled"). ``unlabeled`` (bool per row) marks
    transfer rows. ``kw`` goes to ``embedding_scatter`` (titles, ``continuous``, ...).
    """
    y = np.asarray(y)
    if len(xy) != len(y):
        raise ValueError(f"y has {len(y)} entries for {len(xy)} points")
    idx = stratified_sample(y, max_points, seed)
    rich = len(idx) <= HOVER_TEXT_POINTS
    hover = [texts[i] for i in idx] if rich and texts is not None else None
    labels = None
    if rich and label_names is not None:
        named = np.asarray([*label_names, "unlabeled"], dtype=object)  # y = -1: the last
        labels = named[np.where(y[idx] < 0, len(label_names), y[idx])]
    return embedding_scatter(
        np.asarray(xy[idx]),
        np.asarray(color)[idx],
        hover_text=hover,
        labels=labels,
        row_ids=idx,
        unlabeled=None if unlabeled is None else np.asarray(unlabeled, dtype=bool)[idx],
        **kw,
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
    # Long latent values are drawn turned (up to 40 characters, about 7 px each) below the
    # plot; counted into the height, so the cells keep room (they were squeezed to a few px).
    label_px = 7 * max((len(c) for c in cols), default=0) if len(cols) > 3 else 20
    return _frame(
        _count_heatmap(counts, cols, rows, latent_title, assign_title),
        height=max(320, 110 + max(160, 28 * len(rows)) + label_px),
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
                    # one legend entry says what the dotted lines are; it toggles them all
                    name="teacher p(class)",
                    legendgroup="teacher",
                    showlegend=c == 0,
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


#: Texts a length histogram reads at most (a seeded sample of larger sets): counting the
#: words of 1.6M texts took 2 s of the Data page's first render, for the same shape.
LENGTH_SAMPLE = 100_000


def length_histogram(
    texts: Sequence[str], *, unit: str = "words", nbins: int = 40, max_texts: int = LENGTH_SAMPLE
) -> go.Figure:
    """Distribution of text lengths (words by default) of one split; above ``max_texts``
    texts, of a seeded sample of them, in % of examples."""
    n = len(texts)
    sampled = n > max_texts
    if sampled:
        rows = np.sort(np.random.default_rng(0).choice(n, max_texts, replace=False))
        texts = [texts[i] for i in rows]
    if unit == "words":
        lengths = np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))
    else:
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    fig = go.Figure(
        go.Histogram(
            x=lengths,
            nbinsx=nbins,
            marker_color="#1f77b4",
            histnorm="percent" if sampled else None,
        )
    )
    y_title = f"% of examples ({max_texts:,}-row sample)" if sampled else "examples"
    return _frame(fig, height=280, xaxis_title=f"length ({unit})", yaxis_title=y_title)
