"""Streamlit glue for the pages: session state, cached loaders and the widgets several pages
draw. The library (``lelp_studio``) never imports Streamlit; everything here does."""

from __future__ import annotations

from .cache import (
    H32,
    Z32,
    class_stats,
    compute_teacher,
    dataset,
    dataset_from_json,
    fit_args_at,
    fitted_subclasser,
    float_H,
    lelp_coordinates,
    preview_targets,
    require_teacher,
    split_labels,
    subclass_fit_args,
    teacher,
    teacher_cache_key,
    train_assign,
)
from .cost import measure_costs, show_compare_cost
from .finetune import (
    finetune_estimate,
    queue_finetune,
    show_finetune_offer,
    show_finetune_panel,
    show_finetuned_ready,
)
from .headroom import headroom_config, show_compare_headroom, show_headroom
from .jobs import autostart, show_job_card, start_worker
from .maps import map_xy, projection
from .retrieval import (
    has_reaugkd_state,
    reaugkd_model,
    reaugkd_neighbours,
    show_reaugkd,
    teacher_index,
    teacher_neighbours,
)
from .state import (
    Progress,
    dataset_spec,
    default_specs,
    default_teacher_for,
    init_session,
    minilm_available,
    offer_repair,
    remember,
    spec_json,
    subclass_spec,
    teacher_spec,
    workspace,
    workspace_at,
)
from .student_files import show_student_files
from .sweep_view import show_sweep_view
from .widgets import param_widgets

__all__ = [
    "H32",
    "Progress",
    "Z32",
    "autostart",
    "class_stats",
    "compute_teacher",
    "dataset",
    "dataset_from_json",
    "dataset_spec",
    "default_specs",
    "default_teacher_for",
    "finetune_estimate",
    "fit_args_at",
    "fitted_subclasser",
    "float_H",
    "has_reaugkd_state",
    "headroom_config",
    "init_session",
    "lelp_coordinates",
    "map_xy",
    "measure_costs",
    "minilm_available",
    "offer_repair",
    "param_widgets",
    "preview_targets",
    "projection",
    "queue_finetune",
    "reaugkd_model",
    "reaugkd_neighbours",
    "remember",
    "require_teacher",
    "show_compare_cost",
    "show_compare_headroom",
    "show_finetune_offer",
    "show_finetune_panel",
    "show_finetuned_ready",
    "show_headroom",
    "show_job_card",
    "show_reaugkd",
    "show_student_files",
    "show_sweep_view",
    "spec_json",
    "split_labels",
    "start_worker",
    "subclass_fit_args",
    "subclass_spec",
    "teacher",
    "teacher_cache_key",
    "teacher_index",
    "teacher_neighbours",
    "teacher_spec",
    "train_assign",
    "workspace",
    "workspace_at",
]
