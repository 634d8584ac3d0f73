"""Cached loaders: dataset, teacher outputs, fitted subclassers and their coordinates.

Why: every page needs the same objects, each computed once per content key (dataset spec,
teacher cache key, subclass parameters) whichever page asks first. Expensive objects go
through ``st.cache_resource`` keyed on small strings (spec JSON, artifact hashes), never on
arrays; the workspace cache underneath makes a restart instant.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from lelp_studio.config import ConfigError, DatasetSpec, SubclassSpec, TeacherSpec
from lelp_studio.errors import user_errors
from lelp_studio.pipeline import (
    get_dataset,
    get_teacher_outputs,
    manual_assignment,
    oracle_latent,
    pooling_name,
)
from lelp_studio.store import Workspace
from lelp_studio.stored_stats import stored_class_stats
from lelp_studio.subclasses import (
    LELP_METHODS,
    assign_from_coordinates,
    class_ids,
    fit_subclasser,
    spec_targets,
)
from lelp_studio.types import Dataset, TeacherOutputs

from .state import Progress, dataset_spec, spec_json, teacher_spec, workspace, workspace_at


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=8)
def dataset_from_json(ds_json: str) -> Dataset:
    return get_dataset(DatasetSpec.model_validate_json(ds_json))


def dataset() -> Dataset:
    return dataset_from_json(spec_json(dataset_spec()))


@st.cache_data(show_spinner=False, max_entries=32)
def teacher_cache_key(ws_root: str, ds_json: str, t_json: str) -> str:
    """The workspace key of (dataset, teacher): computing it does not run the teacher."""

    ds = dataset_from_json(ds_json)
    t = TeacherSpec.model_validate_json(t_json)
    from lelp_studio.teachers import teacher_fingerprint  # torch: not before it is needed

    return Workspace.teacher_key(ds.fingerprint(), teacher_fingerprint(t), pooling_name(t))


class _Miss(LookupError):
    pass


@st.cache_resource(show_spinner=False, max_entries=8)
def _stored_teacher(ws_root: str, key: str) -> TeacherOutputs:
    out = workspace_at(ws_root).load_teacher_outputs(key)
    if out is None:
        raise _Miss(key)  # exceptions are not cached, so a later call sees the new entry
    return out


def teacher(
    *, compute: bool = True, progress: Progress | None = None
) -> tuple[TeacherOutputs, str] | None:
    """The current teacher outputs and their key; computed (with progress) on a miss when
    ``compute``, else None."""
    ws_root = str(workspace().root)
    ds_json, t_json = spec_json(dataset_spec()), spec_json(teacher_spec())
    key = teacher_cache_key(ws_root, ds_json, t_json)
    try:
        return _stored_teacher(ws_root, key), key
    except _Miss:
        if not compute:
            return None

    _, key2, _ = get_teacher_outputs(
        workspace(), dataset_from_json(ds_json), teacher_spec(), progress=progress
    )
    return _stored_teacher(ws_root, key2), key2


def compute_teacher(label: str) -> tuple[TeacherOutputs, str] | None:
    """``teacher(compute=True)`` under a progress bar; the bar goes also when it fails, so
    no stale "Computing..." bar is left above the error message."""
    bar = st.progress(0.0, text=label)

    def cb(done: int, total: int, stage: str) -> None:
        frac = 0.0 if total <= 0 else min(1.0, max(0.0, done / total))
        bar.progress(frac, text=f"{label}: {stage} ({done:,}/{total:,})")

    try:
        return teacher(compute=True, progress=cb)
    finally:
        bar.empty()


def require_teacher() -> tuple[Dataset, TeacherOutputs, str]:
    """Dataset and teacher for a page; computes them (with a progress bar) if needed and
    stops the page with an explanation when that fails."""
    try:
        ds = dataset()
        got = teacher(compute=False)
        if got is None:
            got = compute_teacher("Computing teacher embeddings (once; cached in the workspace)")
    except user_errors() as err:
        st.error(f"{err}\n\nFix the dataset or teacher on the **Data & teacher** page.")
        st.stop()
    assert got is not None
    out, key = got
    return ds, out, key


def float_H(ws_root: str, key: str, split: str) -> np.ndarray:
    """The teacher embeddings of a split as stored: a float16 memmap, held by the cached
    teacher outputs. No float32 copy is cached (1.6M x 384 would be 2.4 GB per entry);
    the subclassers and projections cast one block of rows at a time."""
    return _stored_teacher(ws_root, key).H[split]


def H32(key: str, split: str = "train") -> np.ndarray:
    """``float_H`` of the current workspace (the name predates the float16 memmap)."""
    return float_H(str(workspace().root), key, split)


def Z32(key: str, split: str = "train") -> np.ndarray:
    """The teacher logits of a split as float32."""
    return np.asarray(_stored_teacher(str(workspace().root), key).Z[split], dtype=np.float32)


def split_labels(ds: Dataset, out: TeacherOutputs, split: str, source: str) -> np.ndarray:
    """The class of each row of ``split`` (label or teacher argmax; a transfer row: the
    teacher's), as training defines class-conditional sets (``class_ids``)."""
    return class_ids(np.asarray(ds.splits[split].y), out.Z[split], source)


@st.cache_resource(show_spinner="Reading the class statistics of the embeddings…", max_entries=8)
def class_stats(ws_root: str, key: str, ds_json: str, class_source: str) -> Any:
    """Per-class means and scatters of the train embeddings: the one pass over H that LELP's
    fit needs, shared by every S / directions / rotation / seed setting; stored in the
    workspace with the teacher outputs (``lelp_studio.stored_stats``)."""

    out = _stored_teacher(ws_root, key)
    y = split_labels(dataset_from_json(ds_json), out, "train", class_source)
    H = float_H(ws_root, key, "train")
    return stored_class_stats(workspace_at(ws_root), key, H, y, class_source)


def subclass_fit_args(spec: SubclassSpec, key: str, n_classes: int) -> tuple[str, ...]:
    """``fit_args_at`` for the session's workspace and dataset."""
    return fit_args_at(str(workspace().root), key, spec_json(dataset_spec()), spec, n_classes)


def fit_args_at(
    ws_root: str, key: str, ds_json: str, spec: SubclassSpec, n_classes: int
) -> tuple[str, ...]:
    """The cache key of ``fitted_subclasser`` for a spec: workspace, teacher key, dataset
    JSON, the spec's JSON without beta (beta only changes targets, recomputed from cached
    coordinates) and, for manual groups, the saved group names (a new group refits)."""
    S = spec.n_subclasses
    if isinstance(S, list) and len(S) != n_classes:
        raise ConfigError(
            f"n_subclasses lists {len(S)} values but the dataset has {n_classes} classes; "
            "give one S per class"
        )
    groups = ""
    if spec.method == "manual":
        fp = dataset_from_json(ds_json).labeled().fingerprint()  # groups of labeled rows
        groups = ",".join(sorted(workspace_at(ws_root).list_manual_groups(fp)))
    fit_json = spec_json(spec.model_copy(update={"beta": 1.0}))
    return (ws_root, key, ds_json, fit_json, groups)


def fit_inputs(ws_root: str, key: str, ds_json: str, spec: SubclassSpec) -> dict[str, Any]:
    """Keyword arguments of ``fit_subclasser`` for a spec on the train split: H, y (per the
    spec's class source), W, and the latent values or manual group ids its method needs.
    Resolved on the script thread (cached loaders), so a background fit gets plain arrays."""
    out = _stored_teacher(ws_root, key)
    ds = dataset_from_json(ds_json)
    manual = None
    if spec.method == "manual":
        manual = manual_assignment(workspace_at(ws_root), ds, spec.manual_groups)
    return {
        "H": float_H(ws_root, key, "train"),
        "y": split_labels(ds, out, "train", spec.class_source),
        "W": np.asarray(out.W),
        "latent": oracle_latent(spec, ds),
        "manual": manual,
    }


@st.cache_resource(show_spinner="Fitting the pseudo-subclasses…", max_entries=16)
def fitted_subclasser(ws_root: str, key: str, ds_json: str, fit_json: str, groups: str = "") -> Any:
    """The subclasser a spec describes, fitted on the train split by the same function
    training uses (``lelp_studio.subclasses.fit_subclasser``); LELP methods reuse the cached
    class statistics, so changing S, directions, rotation or seed skips the pass over H."""
    spec = SubclassSpec.model_validate_json(fit_json)
    stats = None
    if spec.method in LELP_METHODS:
        stats = class_stats(ws_root, key, ds_json, spec.class_source)
    return fit_subclasser(spec, **fit_inputs(ws_root, key, ds_json, spec), class_stats=stats)


@st.cache_resource(show_spinner=False, max_entries=16)
def lelp_coordinates(fit_args: tuple[str, ...], split: str) -> list[np.ndarray]:
    """Per-class coordinates z_c of every row of a split, for the LELP model
    ``fitted_subclasser(*fit_args)``. Cached per (fit setting, split): moving beta or tau
    never recomputes them."""
    model = fitted_subclasser(*fit_args)
    H = float_H(fit_args[0], fit_args[1], split)
    return [np.asarray(z, dtype=np.float32) for z in model.coordinates(H)]


@st.cache_resource(show_spinner=False, max_entries=32)
def train_assign(fit_args: tuple[str, ...]) -> np.ndarray:
    """The pseudo-subclass of every training row within its own class (global ids), for
    ``fitted_subclasser(*fit_args)``; LELP methods read it off the cached coordinates."""
    spec = SubclassSpec.model_validate_json(fit_args[3])
    ws_root, key = fit_args[0], fit_args[1]
    out = _stored_teacher(ws_root, key)
    y = split_labels(dataset_from_json(fit_args[2]), out, "train", spec.class_source)
    if spec.method in LELP_METHODS:
        return assign_from_coordinates(lelp_coordinates(fit_args, "train"), y)
    return np.asarray(fitted_subclasser(*fit_args).assign(float_H(ws_root, key, "train"), y))


def preview_targets(fit_args: tuple[str, ...], tau: float, beta: float) -> np.ndarray:
    """The training targets ``(n_train, sum S_c)`` the preview shows: the same function as
    training (``spec_targets``), from cached coordinates for LELP methods."""
    spec = SubclassSpec.model_validate_json(fit_args[3]).model_copy(update={"beta": beta})
    ws_root, key = fit_args[0], fit_args[1]
    coords = lelp_coordinates(fit_args, "train") if spec.method in LELP_METHODS else None
    return spec_targets(
        fitted_subclasser(*fit_args),
        spec,
        float_H(ws_root, key, "train"),
        np.asarray(_stored_teacher(ws_root, key).Z["train"]),
        tau,
        coords=coords,
    )
