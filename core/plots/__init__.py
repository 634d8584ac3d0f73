"""Figures as pure functions: arrays and labels in, a plotly Figure out (no Streamlit).

Pages only place these figures, so every figure is tested without a browser. Two pitfalls
shape ``embedding_scatter``: a plotly selection's ``point_indices`` count within each trace,
so the row id of every point travels in ``customdata``; and a null in hover data makes a
selection come back empty, so hover fields are always strings ("" for missing). A map draws
up to ``MAP_POINTS`` (200,000) WebGL points as typed arrays, its hover texts only when small.
"""

from __future__ import annotations

from ._common import HOVER_CHARS, MAX_LEGEND_TRACES, run_colors, truncate
from .maps import (
    HOVER_TEXT_POINTS,
    MAP_POINTS,
    class_balance_bar,
    contingency_heatmap,
    embedding_map,
    embedding_scatter,
    length_histogram,
    selected_row_ids,
    spectrum_plot,
    subclass_sizes_bar,
    target_bars,
)
from .runs import (
    confusion_heatmap,
    fidelity_bars,
    learning_curves,
    neighbour_probs,
    reliability_diagram,
)
from .sweeps import cost_pareto, objective_bars, sweep_heatmap, sweep_line

__all__ = [
    "HOVER_CHARS",
    "HOVER_TEXT_POINTS",
    "MAP_POINTS",
    "MAX_LEGEND_TRACES",
    "class_balance_bar",
    "confusion_heatmap",
    "contingency_heatmap",
    "cost_pareto",
    "embedding_map",
    "embedding_scatter",
    "fidelity_bars",
    "learning_curves",
    "length_histogram",
    "neighbour_probs",
    "objective_bars",
    "reliability_diagram",
    "run_colors",
    "selected_row_ids",
    "spectrum_plot",
    "subclass_sizes_bar",
    "sweep_heatmap",
    "sweep_line",
    "target_bars",
    "truncate",
]
