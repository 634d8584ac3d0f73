"""What the pages show, computed without Streamlit: tables as DataFrames, labels, the sweep
view and the cost records (layer 4: reads pipeline results, never draws)."""

from __future__ import annotations

from .cost_view import cost_records
from .labels import (
    display_texts,
    hash_key,
    pseudo_subclass_names,
    run_labels,
    selection_caption,
    student_files_missing,
    subclass_label,
    subclass_names,
    sweep_runs,
)
from .neighbours import nearest_rows, neighbour_table, teacher_index
from .picks import DEFAULT_PICK, default_pick, run_unfinished, runs_of
from .sweep_view import (
    SWEEP_FIELDS,
    mean_std,
    parse_sweep_values,
    setting_choices,
    setting_text,
    sweep_cli,
    sweep_grid,
    sweep_records,
    sweep_row_label,
    sweep_setting_columns,
    sweep_size,
    sweep_table,
    sweep_varying,
)
from .tables import (
    TINY_SUBCLASS,
    disagreement_table,
    latent_accuracy_table,
    method_facts_table,
    recovery_table,
    run_table,
    shared_columns,
    subclass_table,
    tiny_subclasses,
)

__all__ = [
    "DEFAULT_PICK",
    "default_pick",
    "run_unfinished",
    "runs_of",
    "SWEEP_FIELDS",
    "TINY_SUBCLASS",
    "cost_records",
    "disagreement_table",
    "display_texts",
    "hash_key",
    "latent_accuracy_table",
    "mean_std",
    "method_facts_table",
    "nearest_rows",
    "neighbour_table",
    "parse_sweep_values",
    "pseudo_subclass_names",
    "recovery_table",
    "run_labels",
    "run_table",
    "selection_caption",
    "setting_choices",
    "setting_text",
    "shared_columns",
    "student_files_missing",
    "subclass_label",
    "subclass_names",
    "subclass_table",
    "sweep_cli",
    "sweep_grid",
    "sweep_records",
    "sweep_row_label",
    "sweep_runs",
    "sweep_setting_columns",
    "sweep_size",
    "sweep_table",
    "sweep_varying",
    "teacher_index",
    "tiny_subclasses",
]
