"""core/plots.py: figures have the traces, axes and hover data the pages rely on."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from lelp_studio import plots
from lelp_studio.maps import stratified_sample


@pytest.fixture
def points() -> dict[str, object]:
    rng = np.random.default_rng(0)
    n = 40
    return {
        "xy": rng.normal(size=(n, 2)),
        "color": np.array(["neg", "pos"] * (n // 2)),
        "texts": [None if i == 3 else ("word " * (i * 20)) for i in range(n)],
        "labels": ["neg", "pos"] * (n // 2),
        "row_ids": np.arange(100, 100 + n),
    }


def _all_ids(fig: go.Figure) -> list[int]:
    return [int(r) for tr in fig.data for r in tr.customdata]


def test_scatter_one_webgl_trace_per_category_with_row_ids(points):
    fig = plots.embedding_scatter(
        points["xy"],
        points["color"],
        hover_text=points["texts"],
        labels=points["labels"],
        row_ids=points["row_ids"],
        color_title="class",
        axis_titles=("PC1", "PC2"),
    )
    assert [tr.name for tr in fig.data] == ["neg", "pos"]
    assert all(isinstance(tr, go.Scattergl) for tr in fig.data)
    assert fig.layout.xaxis.title.text == "PC1" and fig.layout.yaxis.title.text == "PC2"
    assert sorted(_all_ids(fig)) == list(range(100, 140))
    # point i of trace "pos" is row 100 + (2 * i + 1): the selection mapping goes through ids
    pos = fig.data[1]
    assert [int(c) for c in pos.customdata[:3]] == [101, 103, 105]
    np.testing.assert_allclose(pos.x[:3], points["xy"][[1, 3, 5], 0], rtol=1e-6)
    # lean: float32 coordinates and int32 ids (typed arrays in the figure's JSON)
    assert pos.x.dtype == np.float32 and pos.customdata.dtype == np.int32


def test_scatter_hover_has_no_nulls_and_is_truncated(points):
    fig = plots.embedding_scatter(
        points["xy"],
        points["color"],
        hover_text=points["texts"],
        labels=points["labels"],
        row_ids=points["row_ids"],
    )
    texts = {int(r): t for tr in fig.data for r, t in zip(tr.customdata, tr.text, strict=True)}
    assert all(isinstance(t, str) for t in texts.values())
    assert texts[103] == "label: pos"  # the None text became nothing, the label stays
    body = [t.split("<br>", 1)[1] for t in texts.values() if "<br>" in t]
    assert max(len(t) for t in body) <= plots.HOVER_CHARS
    assert texts[139].endswith("…") and texts[139].startswith("label: pos<br>word")
    assert all("%{text}" in tr.hovertemplate for tr in fig.data)


def test_scatter_above_the_hover_limit_sends_ids_only():
    m = plots.HOVER_TEXT_POINTS + 1
    fig = plots.embedding_scatter(
        np.zeros((m, 2)), ["a"] * m, hover_text=["some text"] * m, labels=["a"] * m
    )
    assert fig.data[0].text is None and "%{text}" not in fig.data[0].hovertemplate
    assert "row %{customdata}" in fig.data[0].hovertemplate


def test_scatter_continuous_is_one_trace_with_colorbar(points):
    conf = np.linspace(0.5, 1.0, 40)
    conf[5] = np.nan
    fig = plots.embedding_scatter(
        points["xy"], conf, row_ids=points["row_ids"], color_title="confidence", continuous=True
    )
    assert len(fig.data) == 1
    assert fig.data[0].marker.showscale
    assert np.isfinite(np.asarray(fig.data[0].marker.color, float)).all()


def test_scatter_highlight_adds_a_ring_trace(points):
    fig = plots.embedding_scatter(
        points["xy"], points["color"], row_ids=points["row_ids"], highlight=np.array([101, 999])
    )
    assert len(fig.data) == 3 and fig.data[-1].name == "highlighted"
    assert [int(c) for c in fig.data[-1].customdata] == [101]


def test_scatter_rejects_mismatched_lengths(points):
    with pytest.raises(ValueError, match="color has 3 entries for 40 points"):
        plots.embedding_scatter(points["xy"], ["a", "b", "c"])


def test_selected_row_ids_reads_customdata_not_point_index():
    event = {
        "selection": {
            "points": [
                {"point_index": 0, "curve_number": 1, "customdata": 103},
                {"point_index": 0, "curve_number": 0, "customdata": 100},
                {"point_index": 2, "curve_number": 0, "customdata": [100, "neg", "y"]},
                {"point_index": 1},
            ]
        }
    }
    assert plots.selected_row_ids(event).tolist() == [100, 103]
    assert plots.selected_row_ids(None).tolist() == []


def _lasso(fig: go.Figure, x0: float, x1: float, y0: float, y1: float) -> dict[str, object]:
    """What Streamlit hands back for a selection of the region: per selected point its trace,
    its index within the trace (plotly's point_index) and its customdata."""
    points = []
    for k, tr in enumerate(fig.data):
        x, y = np.asarray(tr.x), np.asarray(tr.y)
        for i in np.flatnonzero((x > x0) & (x < x1) & (y > y0) & (y < y1)):
            points.append(
                {"curve_number": k, "point_index": int(i), "customdata": int(tr.customdata[i])}
            )
    return {"selection": {"points": points, "point_indices": [p["point_index"] for p in points]}}


def test_map_of_1m6_rows_draws_200k_webgl_points_and_a_lasso_names_the_rows():
    """Issue 18 item 9: at 1.6M rows the map drew a 50,000-point sample."""
    n = 1_600_000
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    xy = rng.normal(size=(n, 2)).astype(np.float32)
    color = np.array(["alpha", "beta", "gamma", "delta"], dtype=object)[rng.integers(0, 4, n)]
    fig = plots.embedding_map(xy, color, y, texts=["t"] * n, label_names=["a", "b", "c"])
    assert all(isinstance(tr, go.Scattergl) for tr in fig.data)
    assert sum(len(tr.x) for tr in fig.data) == plots.MAP_POINTS >= 200_000
    assert fig.layout.dragmode == "lasso"
    assert all(tr.text is None for tr in fig.data)  # no per-point hover text at this size
    assert len(fig.to_json()) < 5_000_000  # float32 + int32 typed arrays: ~3.8 MB
    sel = plots.selected_row_ids(_lasso(fig, -0.5, 0.5, 0.0, 1.0))
    drawn = stratified_sample(y, plots.MAP_POINTS, 0)
    inside = drawn[(np.abs(xy[drawn, 0]) < 0.5) & (xy[drawn, 1] > 0) & (xy[drawn, 1] < 1)]
    assert len(sel) > 10_000
    np.testing.assert_array_equal(sel, inside)  # the rows of the dataset, not trace positions
    by_name = {tr.name: set(np.asarray(tr.customdata).tolist()) for tr in fig.data}
    assert all(int(r) in by_name[color[r]] for r in sel[:500])  # each in its colour's trace


def test_map_of_a_small_split_draws_every_row_with_its_text():
    y = np.array([0, 1, 1, 0])
    fig = plots.embedding_map(
        np.arange(8.0).reshape(4, 2), ["p", "q", "q", "p"], y, texts=list("wxyz"),
        label_names=["neg", "pos"],
    )  # fmt: skip
    rows = {int(r): t for tr in fig.data for r, t in zip(tr.customdata, tr.text, strict=True)}
    assert rows == {0: "label: neg<br>w", 1: "label: pos<br>x", 2: "label: pos<br>y",
                    3: "label: neg<br>z"}  # fmt: skip


def test_spectrum_plot_traces_and_axes():
    fig = plots.spectrum_plot(
        np.array([0.5, 0.3, 0.2]), np.array([0.6, 0.3, 0.1]), "pos", chosen=[1]
    )
    assert fig.layout.xaxis.title.text == "principal component"
    assert "pos" in fig.layout.title.text
    # The legend says what the colours mean: red bars are the chosen directions.
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"chosen directions", "other directions", "before null-space projection"}
    assert list(by_name["chosen directions"].x) == [1]
    assert by_name["chosen directions"].marker.color == "#d62728"
    assert list(by_name["other directions"].x) == [0, 2]
    assert len(plots.spectrum_plot(np.array([1.0]), None, "c").data) == 1


def test_spectrum_plot_without_projection_draws_no_projection_line():
    fig = plots.spectrum_plot(
        np.array([0.5, 0.5]), np.array([0.5, 0.5]), "pos", chosen=[0], projected=False
    )
    assert [t.name for t in fig.data] == ["chosen directions", "other directions"]
    assert "no projection" in fig.layout.title.text


def test_contingency_heatmap_counts():
    fig = plots.contingency_heatmap(np.array([0, 0, 1, 1, 1]), np.array(["a", "b", "b", "b", None]))
    z = np.asarray(fig.data[0].z)
    assert list(fig.data[0].y) == ["0", "1"]
    assert list(fig.data[0].x) == ["", "a", "b"]
    assert z.tolist() == [[0, 1, 1], [1, 0, 2]]
    assert z.sum() == 5


def test_contingency_heatmap_names_ids_and_merges_equal_labels():
    long_a, long_b = "x" * 60 + "a", "x" * 60 + "b"  # the same once cut to 40 characters
    fig = plots.contingency_heatmap(
        np.array([1, 0, 1, 1]), np.array([long_a, long_b, np.nan, "y"], dtype=object),
        assign_names=["neg.0", "pos.0"],
    )  # fmt: skip
    assert list(fig.data[0].y) == ["neg.0", "pos.0"]
    assert list(fig.data[0].x) == ["", "x" * 39 + "…", "y"]
    assert np.asarray(fig.data[0].z).tolist() == [[0, 1, 0], [1, 1, 1]]


def test_target_bars_groups_by_class():
    fig = plots.target_bars(
        np.array([0.1, 0.2, 0.3, 0.15, 0.25]),
        ["neg", "pos"],
        [2, 3],
        teacher_probs=np.array([0.3, 0.7]),
    )
    bars = [tr for tr in fig.data if isinstance(tr, go.Bar)]
    assert [len(b.x) for b in bars] == [2, 3]
    assert list(bars[1].x) == ["pos/0", "pos/1", "pos/2"]
    assert fig.layout.yaxis.title.text == "target probability"
    with pytest.raises(ValueError, match="sizes sum to 4"):
        plots.target_bars(np.ones(5) / 5, ["a", "b"], [2, 2])


def test_reliability_diagram_one_line_per_model_plus_diagonal():
    curves = {
        "teacher": {"confidence": [0.55, 0.8, None], "accuracy": [0.5, 0.9, None]},
        "student": {"confidence": [0.6, 0.9, 0.95], "accuracy": [0.6, 0.7, 0.9]},
    }
    fig = plots.reliability_diagram(curves)
    assert len(fig.data) == 3
    assert len(fig.data[1].x) == 2  # the empty bin is dropped
    assert fig.layout.xaxis.title.text == "confidence"


def test_confusion_heatmap_axes():
    fig = plots.confusion_heatmap(np.array([[5, 1], [2, 7]]), ["neg", "pos"])
    assert fig.layout.xaxis.title.text == "predicted" and fig.layout.yaxis.title.text == "true"
    assert np.asarray(fig.data[0].z).tolist() == [[5, 1], [2, 7]]


def test_learning_curves_traces_per_run_and_metric():
    hist = [{"step": 1, "loss": 1.0, "val_acc": 0.5}, {"step": 2, "loss": 0.5, "val_acc": None}]
    fig = plots.learning_curves(
        {"a": hist, "b": [{"step": 1, "loss": 0.9}]}, metrics=("loss", "val_acc")
    )
    names = [tr.name for tr in fig.data]
    assert names == ["a: loss", "a: val_acc", "b: loss"]
    assert fig.data[1].yaxis == "y2" and len(fig.data[1].x) == 1


def test_small_bars_and_histogram():
    fig = plots.subclass_sizes_bar({"neg/0": 3, "neg/1": 5})
    assert list(fig.data[0].y) == [3, 5]
    fig = plots.class_balance_bar(
        {"train": np.array([0, 1, 1]), "test": np.array([0])}, ["neg", "pos"]
    )
    assert [list(tr.y) for tr in fig.data] == [[1, 2], [1, 0]]
    fig = plots.length_histogram(["a b c", "a", ""])
    assert sorted(fig.data[0].x) == [0, 1, 3]
    assert fig.layout.xaxis.title.text == "length (words)"
    assert fig.layout.yaxis.title.text == "examples"
    # a large split: a seeded sample, in percent, and the axis says so
    fig = plots.length_histogram(["a b"] * 30 + ["a"] * 10, max_texts=20)
    assert len(fig.data[0].x) == 20 and fig.data[0].histnorm == "percent"
    assert fig.layout.yaxis.title.text == "% of examples (20-row sample)"


def test_fidelity_bars_groups_test_and_train_per_run():
    fig = plots.fidelity_bars(
        {"kd": {"test": 0.9, "train": 0.95}, "lelp": {"test": 0.93, "train": None}},
        measure="agreement",
    )
    assert [tr.name for tr in fig.data] == ["test", "train"]
    assert list(fig.data[0].x) == ["kd", "lelp"]
    assert list(fig.data[0].y) == [0.9, 0.93]
    assert list(fig.data[1].y) == [0.95, None]  # a missing value is a gap, not a zero
    assert fig.layout.barmode == "group"
    assert fig.layout.yaxis.title.text == "agreement"


def test_neighbour_probs_one_stacked_trace_per_class_nearest_on_top():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    fig = plots.neighbour_probs(
        probs, ["even", "odd"], [0.99, 0.9, 0.8], [12, 7, 3], texts=["a", None, "c" * 500]
    )
    assert [tr.name for tr in fig.data] == ["even", "odd"]
    assert fig.layout.barmode == "stack"
    assert fig.layout.yaxis.autorange == "reversed"  # nearest (first) drawn on top
    assert list(fig.data[0].y) == ["#1 row 12", "#2 row 7", "#3 row 3"]
    assert list(fig.data[1].x) == pytest.approx([0.1, 0.8, 0.5])
    custom = [list(r) for r in fig.data[0].customdata]
    assert custom[0][:2] == [12, 0.99]
    assert custom[1][2] == ""  # None text becomes an empty hover string
    assert len(custom[2][2]) == plots.HOVER_CHARS
    assert fig.layout.xaxis.title.text == "teacher probability"


def test_neighbour_probs_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"expected \(k, C\) with k = 2"):
        plots.neighbour_probs(np.ones((3, 2)) / 2, ["a", "b"], [0.9, 0.8], [1, 2])


# -- layout: nothing clipped, nothing under the mode bar or the legend -------------------------


def _axes(fig: go.Figure) -> list[object]:
    return [*fig.select_xaxes(), *fig.select_yaxes()]


def _every_figure() -> dict[str, go.Figure]:
    rng = np.random.default_rng(1)
    hist = [{"step": s, "loss": 1.0 / s, "eval_accuracy": 0.5 + s / 100} for s in (1, 2, 3)]
    curves = {"m": {"confidence": [0.6, 0.9], "accuracy": [0.5, 0.8]}}
    return {
        "scatter": plots.embedding_scatter(rng.normal(size=(6, 2)), list("aabbcc")),
        "scatter_continuous": plots.embedding_scatter(
            rng.normal(size=(6, 2)), np.linspace(0, 1, 6), continuous=True
        ),
        "spectrum": plots.spectrum_plot(np.array([0.6, 0.4]), np.array([0.7, 0.3]), "pos"),
        "contingency": plots.contingency_heatmap(np.array([0, 1, 1]), np.array(["a", "b", "a"])),
        "target": plots.target_bars(np.array([0.2, 0.3, 0.5]), ["neg", "pos"], [1, 2]),
        "reliability": plots.reliability_diagram(curves),
        "confusion": plots.confusion_heatmap(np.eye(2), ["neg", "pos"], title="cm"),
        "curves": plots.learning_curves({"a": hist, "b": hist}),
        "sizes": plots.subclass_sizes_bar([3, 4], title="sizes"),
        "balance": plots.class_balance_bar(
            {"train": np.array([0, 1]), "test": np.array([1])}, ["n", "p"]
        ),
        "lengths": plots.length_histogram(["a b", "c"]),
        "fidelity": plots.fidelity_bars({"kd": {"test": 0.9, "train": 0.95}}),
        "neighbours": plots.neighbour_probs(np.array([[0.3, 0.7]]), ["n", "p"], [0.9], [4]),
    }


@pytest.mark.parametrize("name", sorted(_every_figure()))
def test_every_figure_grows_its_margins_to_fit_labels_and_legend(name):
    """The Streamlit template sets no automargin: with the old fixed 10 px margins tick labels
    were cut off ("12" drawn as ".2") and axis titles sat on the tick labels."""
    fig = _every_figure()[name]
    assert all(ax.automargin is True for ax in _axes(fig)), name
    assert fig.layout.margin.autoexpand is not False
    legend = fig.layout.legend
    if legend.orientation == "h":
        # a paper-referenced y < 0 is bottom-anchored and grows upwards onto the x-axis title;
        # in the container's bottom strip plotly reserves the room below the axis instead
        assert (legend.yref, legend.y, legend.yanchor) == ("container", 0, "bottom")
    elif legend.orientation == "v":  # a legend or colour bar on the right
        # starting level with the plot's top, which sits below the mode bar
        assert legend.yanchor == "top" and legend.y <= 1
        assert fig.layout.margin.t >= plots._common._MODEBAR_CLEARANCE


def test_scatter_legend_title_clears_the_mode_bar(points):
    fig = plots.embedding_scatter(points["xy"], points["color"], color_title="topic")
    assert fig.layout.legend.title.text == "topic"
    assert fig.layout.margin.t >= 40  # was 10: the mode bar hid "topic" and the first entry
    assert fig.layout.legend.x > 1 and fig.layout.legend.xanchor == "left"
    assert fig.layout.xaxis.automargin and fig.layout.yaxis.automargin
    assert fig.layout.dragmode == "lasso" and fig.layout.height == 560


def test_learning_curves_accuracy_axis_has_its_own_ticks():
    hist = [{"step": 12 * i, "loss": 11 - i, "eval_accuracy": 0.6 + i / 100} for i in range(1, 9)]
    fig = plots.learning_curves({"run": hist})
    acc = fig.layout.yaxis2
    assert acc.overlaying == "y" and acc.side == "right"
    # unset, plotly.js syncs an overlaying axis to the loss ticks (0.077, 0.356, 0.635, ...)
    assert acc.tickmode == "linear" and (acc.tick0, acc.dtick) == (0, 0.2)
    assert list(acc.range) == [0, 1] and acc.tickformat == ".0%"
    assert acc.showgrid is False  # one grid, the loss axis's
    pct = plots.learning_curves({"run": [{"step": 1, "loss": 1.0, "eval_accuracy": 62.5}]})
    assert list(pct.layout.yaxis2.range) == [0, 100] and pct.layout.yaxis2.dtick == 20
    assert pct.layout.yaxis2.tickmode == "linear" and pct.layout.yaxis2.ticksuffix == "%"


def test_learning_curves_legend_is_below_the_step_title_and_the_figure_grows_for_it():
    hist = [{"step": 1, "loss": 1.0, "eval_accuracy": 0.5, "eval_agreement": 0.6}]
    one = plots.learning_curves({"a": hist})
    two = plots.learning_curves({"a": hist, "b": hist})
    assert two.layout.xaxis.title.text == "step"
    for fig in (one, two):
        legend = fig.layout.legend
        assert (legend.orientation, legend.yref, legend.y, legend.yanchor) == (
            "h",
            "container",
            0,
            "bottom",
        )
    assert two.layout.height > one.layout.height  # six legend rows do not squeeze the plot


def test_confusion_title_is_wrapped_and_gets_room():
    name = "my first run lelp S=4 beta=1.0 (job-3)"
    fig = plots.confusion_heatmap(np.eye(2), ["neg", "pos"], title=name)
    text = fig.layout.title.text
    assert "<br>" in text and text.replace("<br>", " ") == name  # nothing cut
    assert fig.layout.margin.t >= 24 * (text.count("<br>") + 1)


def test_spectrum_plot_shows_every_chosen_direction_beyond_twenty():
    ratios = np.full(64, 1 / 64)
    fig = plots.spectrum_plot(ratios, None, "pos", chosen=range(40))
    chosen = next(t for t in fig.data if t.name == "chosen directions")
    assert len(chosen.x) == 40 and max(chosen.x) == 39


def test_a_run_has_the_same_colour_in_reliability_and_learning_curves():
    colors = plots.run_colors(["kd", "lelp"])
    hist = [{"step": 1, "loss": 1.0, "eval_accuracy": 0.5}]
    curves = plots.learning_curves({"lelp": hist, "kd": hist}, colors=colors)
    curve = {"confidence": [0.6], "accuracy": [0.5]}
    rel = plots.reliability_diagram({"teacher": curve, "lelp": curve, "kd": curve}, colors=colors)
    for fig in (curves, rel):
        by_run = {t.name.split(":")[0]: t.line.color for t in fig.data if t.name != "teacher"}
        assert by_run["lelp"] == colors["lelp"] and by_run["kd"] == colors["kd"]
    assert colors["kd"] != colors["lelp"]


def test_learning_curves_tell_accuracy_from_agreement():
    """Issue 18: a run's accuracy and agreement curves shared colour and style."""
    hist = [{"step": 1, "loss": 1.0, "eval_accuracy": 0.5, "eval_agreement": 0.6}]
    fig = plots.learning_curves({"a": hist})
    style = {tr.name: (tr.line.dash, tr.marker.symbol) for tr in fig.data}
    assert len(set(style.values())) == 3, style  # loss, accuracy, agreement all differ
    assert style["a: eval_accuracy"][0] != style["a: eval_agreement"][0]
    assert len({tr.line.color for tr in fig.data}) == 1  # one colour per run


def test_target_bars_name_the_dotted_teacher_line_once():
    """Issue 18: the inspector's dotted teacher line had no legend entry."""
    fig = plots.target_bars(
        np.array([0.1, 0.2, 0.3, 0.15, 0.25]), ["neg", "pos"], [2, 3], teacher_probs=[0.3, 0.7]
    )
    lines = [tr for tr in fig.data if isinstance(tr, go.Scatter)]
    assert len(lines) == 2 and all(tr.line.dash == "dot" for tr in lines)
    shown = [tr for tr in lines if tr.showlegend is not False]
    assert [tr.name for tr in shown] == ["teacher p(class)"]
    assert {tr.legendgroup for tr in lines} == {"teacher"}  # one click toggles them all


def test_contingency_heatmap_keeps_room_for_its_cells_under_long_labels():
    """Issue 18: the oracle and manual heat maps were squeezed to a few pixels."""
    short = plots.contingency_heatmap(np.array([0, 1]), np.array(["a", "b"]))
    assert short.layout.height >= 320
    values = np.array([f"a rather long latent value number {i}" for i in range(8)])
    long = plots.contingency_heatmap(np.arange(8) % 2, values)
    # the turned labels (about 7 px a character) leave at least 200 px for the cells
    assert long.layout.height - 7 * max(len(v) for v in values) >= 200
