"""Shared state and cached loaders for the Streamlit pages.

Why one module: every page needs the same workspace, dataset, teacher outputs and fitted
subclassers, and each must be computed once per content key (dataset spec, teacher cache key,
subclass parameters) no matter which page asks first. Expensive objects go through
``st.cache_resource`` keyed on small strings (spec JSON, artifact hashes), never on arrays;
the workspace cache underneath makes a restart instant.

Session keys shared by pages (no page prefix): ``ws_root``, ``dataset_spec``,
``teacher_spec``, ``subclass_spec``, ``tau``, ``inspect_row``.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import numpy as np
import streamlit as st
from pydantic import BaseModel

from .config import ConfigError, DatasetSpec, SubclassSpec, TeacherSpec
from .errors import user_errors
from .store import Workspace
from .types import Dataset, TeacherOutputs

Progress = Callable[[int, int, str], None]


# -- defaults ---------------------------------------------------------------------------------
def minilm_available() -> bool:
    """True when the bundled MiniLM encoder can be loaded offline."""
    try:
        from .teachers import minilm_path

        return os.path.isdir(minilm_path())
    except Exception:  # noqa: BLE001 - any failure means "fall back to digits-bin"
        return False


def default_specs() -> tuple[DatasetSpec, TeacherSpec]:
    """The demo the app opens on: text-demo + frozen MiniLM, else digits-bin + its MLP.

    ``LELP_APP_DEMO=digits-bin`` forces the light demo (used by quick tests and slow CPUs).
    """
    forced = os.environ.get("LELP_APP_DEMO", "")
    if forced != "digits-bin" and minilm_available():
        return DatasetSpec(source="text-demo"), TeacherSpec(kind="minilm", mode="frozen")
    return DatasetSpec(source="digits-bin"), TeacherSpec(kind="digits-mlp")


def default_teacher_for(ds: DatasetSpec, is_text: bool) -> TeacherSpec:
    if is_text and minilm_available():
        return TeacherSpec(kind="minilm", mode="frozen")
    return TeacherSpec(kind="digits-mlp" if not is_text else "minilm")


def init_session() -> None:
    """Initialise the shared keys once per session (setdefault keeps user choices).

    Called by app.py and again by every page: Streamlit's AppTest runs only the page script
    after the first run, so a page must not rely on app.py having run in the same rerun."""
    ds, t = default_specs()
    ss = st.session_state
    ss.setdefault("ws_root", os.environ.get("LELP_WORKSPACE", "workspace"))
    ss.setdefault("dataset_spec", ds.model_dump(mode="json"))
    ss.setdefault("teacher_spec", t.model_dump(mode="json"))
    ss.setdefault("subclass_spec", SubclassSpec().model_dump(mode="json"))
    ss.setdefault("tau", 1.0)
    ss.setdefault("inspect_row", 0)
    kept = ss.setdefault(_KEPT, {})
    for key in kept:  # see remember()
        if key in ss:
            kept[key] = ss[key]
        ss[key] = kept[key]


_KEPT = "_kept_widget_values"


def remember(key: str, default: Any) -> Any:
    """``setdefault`` for a widget key whose value must survive a visit to another page.

    Streamlit deletes a widget's value at the end of a run that does not draw it, and the
    Distill page's self-refreshing job list (a fragment) drops them too, so pages forgot their
    settings (epochs, run name, file path, column mapping) when the user opened another page.
    Remembered keys keep a copy of their last value in a plain session key; ``init_session``,
    at the top of every page, refreshes that copy and writes it back, which both re-saves the
    key (Streamlit's documented way to keep it) and restores one that was dropped. Only value
    widgets may be remembered: buttons, uploads and charts cannot be set through state.
    """
    ss = st.session_state
    kept = ss.setdefault(_KEPT, {})
    if key not in ss:
        ss[key] = kept.get(key, default)
    kept[key] = ss[key]
    return ss[key]


def dataset_spec() -> DatasetSpec:
    return DatasetSpec.model_validate(st.session_state["dataset_spec"])


def teacher_spec() -> TeacherSpec:
    return TeacherSpec.model_validate(st.session_state["teacher_spec"])


def subclass_spec() -> SubclassSpec:
    return SubclassSpec.model_validate(st.session_state["subclass_spec"])


def spec_json(spec: Any) -> str:
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True)


# -- cached loaders ---------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def workspace_at(root: str) -> Workspace:
    return Workspace(root)


def workspace() -> Workspace:
    from .store import default_root

    return workspace_at(str(st.session_state.get("ws_root") or default_root()))


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=8)
def dataset_from_json(ds_json: str) -> Dataset:
    from .pipeline import get_dataset

    return get_dataset(DatasetSpec.model_validate_json(ds_json))


def dataset() -> Dataset:
    return dataset_from_json(spec_json(dataset_spec()))


@st.cache_data(show_spinner=False, max_entries=32)
def teacher_cache_key(ws_root: str, ds_json: str, t_json: str) -> str:
    """The workspace key of (dataset, teacher): computing it does not run the teacher."""
    from .pipeline import pooling_name
    from .teachers import teacher_fingerprint

    ds = dataset_from_json(ds_json)
    t = TeacherSpec.model_validate_json(t_json)
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
    from .pipeline import get_teacher_outputs

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


@st.cache_resource(show_spinner=False, max_entries=8)
def float_H(ws_root: str, key: str, split: str) -> np.ndarray:
    """The teacher embeddings of a split as float32 (stored as float16), once per key."""
    return np.asarray(_stored_teacher(ws_root, key).H[split], dtype=np.float32)


def H32(key: str, split: str = "train") -> np.ndarray:
    return float_H(str(workspace().root), key, split)


def Z32(key: str, split: str = "train") -> np.ndarray:
    """The teacher logits of a split as float32."""
    return np.asarray(_stored_teacher(str(workspace().root), key).Z[split], dtype=np.float32)


def split_labels(ds: Dataset, out: TeacherOutputs, split: str, source: str) -> np.ndarray:
    if source == "teacher":
        return np.asarray(out.Z[split]).argmax(1)
    return np.asarray(ds.splits[split].y)


def softmax(z: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """Class probabilities ``softmax(z / tau)`` (core.metrics' stable version)."""
    from .metrics import softmax as _softmax

    return _softmax(z, T=tau)


@st.cache_resource(show_spinner="Reading the class statistics of the embeddings…", max_entries=8)
def class_stats(ws_root: str, key: str, ds_json: str, class_source: str) -> Any:
    """Per-class means and scatters of the train embeddings: the one pass over H that LELP's
    fit needs, shared by every S / directions / rotation / seed setting."""
    from .subclasses import class_statistics

    out = _stored_teacher(ws_root, key)
    y = split_labels(dataset_from_json(ds_json), out, "train", class_source)
    return class_statistics(float_H(ws_root, key, "train"), y)


@st.cache_resource(show_spinner="Fitting LELP subspaces…", max_entries=16)
def fit_lelp(
    ws_root: str,
    key: str,
    ds_json: str,
    sizes: tuple[int, ...],
    directions: tuple[tuple[int, ...], ...] | None,
    null_space: bool,
    rotate: bool,
    seed: int,
    standardize: bool,
    class_source: str,
) -> Any:
    """A fitted LELPSubclasses for one setting; beta/tau are not part of the key, because
    they only change targets, which are recomputed from the cached coordinates."""
    from .subclasses import LELPSubclasses

    out = _stored_teacher(ws_root, key)
    ds = dataset_from_json(ds_json)
    y = split_labels(ds, out, "train", class_source)
    n_sub: int | list[int] = list(sizes) if len(set(sizes)) > 1 else int(sizes[0])
    model = LELPSubclasses(
        n_subclasses=n_sub,
        directions=None if directions is None else [list(d) for d in directions],
        null_space=null_space,
        rotate=rotate,
        standardize=standardize,
        random_state=seed,
    )
    stats = class_stats(ws_root, key, ds_json, class_source)
    return model.fit(float_H(ws_root, key, "train"), y, W=np.asarray(out.W), class_stats=stats)


@st.cache_resource(show_spinner=False, max_entries=16)
def lelp_coordinates(fit_args: tuple, split: str) -> list[np.ndarray]:
    """Per-class coordinates z_c of every row of a split, for the model ``fit_lelp(*fit_args)``.

    Cached per (fit setting, split): moving beta or tau never recomputes them."""
    model = fit_lelp(*fit_args)
    H = float_H(fit_args[0], fit_args[1], split)
    return [np.asarray(z, dtype=np.float32) for z in model.coordinates(H)]


def targets_from_coordinates(
    Z: np.ndarray, coords: list[np.ndarray], tau: float, beta: float
) -> np.ndarray:
    """LELP Eq. 5 from precomputed coordinates: softmax(Z/tau)[c] * softmax(z_c/beta)[s].

    Core's function, so the app and training agree exactly."""
    from .subclasses import targets_from_coordinates as core_fn

    return np.asarray(core_fn(coords, Z, tau=tau, beta=beta))


def assign_from_coordinates(coords: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Global pseudo-subclass id of each row within its own class (core's pure function)."""
    from .subclasses import assign_from_coordinates as core_fn

    return core_fn(coords, y)


#: Pseudo-subclasses with fewer training rows than this get a warning on the Subspaces page.
TINY_SUBCLASS = 5


def subclass_names(class_names: list[str], sizes: list[int]) -> list[str]:
    return [f"{c}/{s}" for c, n in zip(class_names, sizes, strict=True) for s in range(n)]


@st.cache_resource(show_spinner="Fitting the projection…", max_entries=16)
def projection(
    ws_root: str,
    key: str,
    method: str,
    sample: int,
    seed: int,
    class_index: int = 0,
    _lelp_model: Any = None,
    lelp_id: str = "",
) -> Any:
    """A fitted 2-D projection of the teacher's train embeddings (see core.maps)."""
    from .maps import fit_projection

    out = _stored_teacher(ws_root, key)
    return fit_projection(
        float_H(ws_root, key, "train"),
        method,
        sample=sample,
        random_state=seed,
        lelp_model=_lelp_model,
        class_index=class_index,
        y=np.asarray(out.Z["train"]).argmax(1),
    )


def map_xy(
    key: str,
    split: str,
    method: str,
    sample: int,
    seed: int = 0,
    class_index: int = 0,
    lelp_model: Any = None,
    lelp_id: str = "",
) -> tuple[np.ndarray, tuple[str, str]]:
    """Coordinates of every row of ``split``: from the workspace when stored, else fitted on
    train once and placed with ``transform`` (same coordinates for every split)."""
    from .maps import projection_key

    ws = workspace()
    params = {"sample": sample, "seed": seed, "split": split}
    if method == "lelp":
        params |= {"class_index": class_index, "lelp": lelp_id}
    pkey = projection_key(key, method, params)
    xy = ws.load_projection(pkey)
    if xy is not None:
        return xy, _stored_titles(ws, pkey, method)
    proj = projection(
        str(ws.root),
        key,
        method,
        sample,
        seed,
        class_index,
        _lelp_model=lelp_model,
        lelp_id=lelp_id,
    )
    xy = proj.xy if split == "train" else proj.transform(H32(key, split))
    ws.save_projection(pkey, xy, {"method": method, "titles": list(proj.axis_titles), **params})
    return xy, proj.axis_titles


def _stored_titles(ws: Workspace, pkey: str, method: str) -> tuple[str, str]:
    """Axis titles saved with a projection (so a restart shows them without refitting)."""
    titles = (ws.projection_meta(pkey) or {}).get("titles")
    if titles and len(titles) == 2:
        return str(titles[0]), str(titles[1])
    return (f"{method.upper()} 1", f"{method.upper()} 2")


def lelp_fit_args(spec: SubclassSpec, key: str, n_classes: int) -> tuple:
    """The cache key tuple of ``fit_lelp`` for a subclass spec (beta excluded on purpose)."""
    S = spec.n_subclasses
    sizes = tuple([S] * n_classes) if isinstance(S, int) else tuple(S)
    if len(sizes) != n_classes:
        raise ConfigError(
            f"n_subclasses lists {len(sizes)} values but the dataset has {n_classes} classes; "
            "give one S per class"
        )
    dirs = None if spec.directions is None else tuple(tuple(d) for d in spec.directions)
    if dirs is not None:
        sizes = tuple(len(d) if d else s for d, s in zip(dirs, sizes, strict=True))
    return (
        str(workspace().root),
        key,
        spec_json(dataset_spec()),
        sizes,
        dirs,
        bool(spec.null_space),
        bool(spec.rotate) and spec.method != "pca",
        int(spec.seed),
        bool(spec.standardize),
        spec.class_source,
    )


def display_texts(ds: Dataset, split: str) -> list[str]:
    """Text shown for each row (hover, tables): the text, or latent values for feature data."""
    s = ds.splits[split]
    if s.texts is not None:
        return list(s.texts)
    if s.latent:
        cols = sorted(s.latent)
        return [", ".join(f"{c}={s.latent[c][i]}" for c in cols) for i in range(len(s))]
    return [f"row {i}" for i in range(len(s))]


def hash_key(obj: Any) -> str:
    """A short stable id for a cache-key tuple (used to name stored projections)."""
    from .types import hash_arrays

    return hash_arrays(json.dumps(obj, default=str))[:16]


# -- method parameters as widgets (Distill page) ----------------------------------------------
PARAM_HELP: dict[str, str] = {
    "weight": "Weight of this method's own loss term (0 switches it off).",
    "kd_weight": "Weight of the usual KD loss (teacher class probabilities at train tau) "
    "added to this method's term; 0 needs train alpha > 0 for class signal.",
    "normalize": "L2-normalise both embeddings before the MSE (matches directions, not scale).",
    "sample_size": "Training rows the PCA reducing the teacher embedding is fitted on.",
    "sampling": "How those rows are picked: at random, or spread out (k-means++ seeding).",
    "queues": "two: each network keeps its own anchor queue; one: the teacher's queue for "
    "both (the student embedding mapped to the teacher's width).",
    "queue_size": "Anchors kept in each queue; empty = min(128000, training rows).",
    "temperature": "Softmax temperature of the similarity distributions (lower = sharper).",
    "k": "Knowledge-base neighbours retrieved for each prediction.",
    "lam": "Weight of the retrieved neighbours' soft labels in the final prediction "
    "(0 = the student alone, 1 = retrieval alone).",
    "retrieval_temperature": "Temperature of the softmax over neighbour similarities that "
    "weights their soft labels.",
    "proj_epochs": "Epochs of supervised-contrastive training of the teacher-side projection.",
    "proj_lr": "Adam learning rate of that projection.",
    "supcon_temperature": "Temperature of the supervised contrastive loss.",
    "n_subclasses": "Subclass outputs per class of the retrained teacher head (S).",
    "tau": "Distillation temperature T of this method (the paper uses 4).",
    "alpha": "Weight of the soft (subclass) loss; 1 - alpha goes to the hard labels.",
    "aux_weight": "Weight of the auxiliary loss that spreads examples over subclasses.",
    "aux_temperature": "Temperature of the auxiliary loss.",
    "head_epochs": "Epochs of retraining the teacher head on the cached embeddings.",
    "head_lr": "Adam learning rate of the retrained teacher head.",
    "hard_weight": "Weight of the hard-label cross-entropy.",
    "schedule": "constant: soft weight stays at its start value; linear: decays from start "
    "to end over training.",
    "soft_start": "Soft (KD) loss weight at the start of training (the paper: 4).",
    "soft_end": "Soft loss weight at the end of training with the linear schedule (paper: 1).",
    "remap": "Start the student from the teacher's layers (the paper found it hurts).",
    "top_k": "Teacher classes the gate may boost besides the true class; empty = automatic.",
    "boost": "Largest amount added to the boosted logits (times the gate value g(x)).",
    "budget": "Mean gate value allowed at the start; it decays to 0 on a cosine schedule.",
    "gate_hidden": "Hidden units of the gating network.",
    "gate_lr": "Learning rate of the gating network (its own optimiser).",
    "dual_lr": "Step size of the dual variable that enforces the budget.",
    "variant": "kl: KL between each teacher head's attention rows and the mix of student "
    "heads (the paper's best); l2: distance between L2-normalised flattened maps.",
    "teacher_layer": "Teacher layer whose attention maps are matched (-1 = the last).",
    "student_layer": "Student layer that matches them (-1 = the last).",
    "max_cache_mb": "Memory allowed for the teacher's attention maps of the training rows "
    "(float16); lower student max_length or the training rows if they do not fit.",
}


@dataclass(frozen=True)
class ParamField:
    """How one pydantic field becomes one widget: ``kind`` is ``int``, ``float``, ``choice``
    or ``bool``; ``low``/``high`` are inclusive bounds (strict pydantic bounds made inclusive);
    ``optional`` means None is allowed (an empty number input = the field's automatic value).
    """

    name: str
    kind: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    options: tuple[Any, ...] = ()
    optional: bool = False


def _bounds(kind: str, metadata: list[Any]) -> tuple[float | None, float | None]:
    low = high = None
    for m in metadata:
        if getattr(m, "ge", None) is not None:
            low = m.ge
        if getattr(m, "gt", None) is not None:
            # Streamlit bounds are inclusive: just above gt (1e-6 relative for floats, far
            # below any learning rate or temperature worth trying).
            low = m.gt + 1 if kind == "int" else float(m.gt) + 1e-6 * max(1.0, abs(m.gt))
        if getattr(m, "le", None) is not None:
            high = m.le
        if getattr(m, "lt", None) is not None:
            high = m.lt - 1 if kind == "int" else float(m.lt) - 1e-6 * max(1.0, abs(m.lt))
    return low, high


def param_fields(model: type[BaseModel], helps: dict[str, str] | None = None) -> list[ParamField]:
    """One ``ParamField`` per field of a (flat) pydantic settings model, in declaration order.

    Why generic: each method's sub-section of ``TrainSpec`` is the single source of its
    parameters, so a field added there appears on the Distill page with no page edit. The help
    text is the field's description, else ``helps[name]``, else a generic line.
    """
    helps = PARAM_HELP if helps is None else helps
    out = []
    for name, f in model.model_fields.items():
        ann, optional = f.annotation, False
        args = [a for a in get_args(ann) if a is not type(None)]
        if get_origin(ann) in (Union, UnionType) and len(args) == 1:
            ann, optional = args[0], True
        if get_origin(ann) is Literal:
            kind, options = "choice", tuple(get_args(ann))
        elif ann is bool:
            kind, options = "bool", ()
        elif ann in (int, float):
            kind, options = ann.__name__, ()
        else:
            raise TypeError(
                f"param_fields: {model.__name__}.{name} has type {ann!r}; only int, float, "
                "bool, Literal and their Optional forms become widgets"
            )
        low, high = _bounds(kind, f.metadata) if kind in ("int", "float") else (None, None)
        text = f.description or helps.get(name) or f"{model.__name__}.{name}"
        out.append(
            ParamField(name, kind, f.default, text, low, high, options, optional),
        )
    return out


def _float_step(default: Any) -> float:
    """A step one decade below the default (lr 1e-3 steps by 1e-4, a weight 1.0 by 0.1)."""
    if not default:
        return 0.1
    return 10.0 ** (math.floor(math.log10(abs(float(default)))) - 1)


def param_widgets(model: type[BaseModel], prefix: str, *, columns: int = 3) -> dict[str, Any]:
    """Draw one widget per field of ``model`` (keys ``{prefix}{field}``, initialised with
    ``setdefault`` to the field's default) and return ``{field: value}`` ready for
    ``model(**values)``."""
    ss = st.session_state
    fields = param_fields(model)
    cols = st.columns(columns)
    values: dict[str, Any] = {}
    for i, p in enumerate(fields):
        key = f"{prefix}{p.name}"
        ss.setdefault(key, p.default)
        with cols[i % columns]:
            if p.kind == "choice":
                values[p.name] = st.selectbox(p.name, list(p.options), key=key, help=p.help)
            elif p.kind == "bool":
                values[p.name] = st.checkbox(p.name, key=key, help=p.help)
            elif p.kind == "int":
                v = st.number_input(
                    p.name,
                    min_value=None if p.low is None else int(p.low),
                    max_value=None if p.high is None else int(p.high),
                    step=1,
                    key=key,
                    help=_range_help(p),
                    placeholder="auto" if p.optional else None,
                )
                values[p.name] = None if v is None else int(v)
            else:
                v = st.number_input(
                    p.name,
                    min_value=None if p.low is None else float(p.low),
                    max_value=None if p.high is None else float(p.high),
                    step=_float_step(p.default),
                    format="%g",
                    key=key,
                    help=_range_help(p),
                    placeholder="auto" if p.optional else None,
                )
                values[p.name] = None if v is None else float(v)
    return values


def run_labels(runs: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Run id -> the name a page shows; a name several runs share gets the id appended.

    Why: tables, legends and the dicts the plots take are keyed by name, so two runs named
    alike ("text-demo hard" twice) were shown as one row, one curve, one matrix title.
    """
    counts = Counter(str(r["name"]) for r in runs)
    return {
        r["run_id"]: f"{r['name']}" + (f" ({r['run_id']})" if counts[str(r["name"])] > 1 else "")
        for r in runs
    }


def subclass_label(spec: SubclassSpec) -> str:
    """How a run's pseudo-subclass setting reads in its name: ``S=4 beta=1.0`` for LELP,
    ``manual groups`` or ``kmeans S=4`` otherwise, so runs on different settings differ."""
    if spec.method == "manual":
        return "manual groups"
    head = "" if spec.method == "lelp" else f"{spec.method} "
    tail = f" beta={spec.beta}" if spec.method == "lelp" else ""
    return f"{head}S={spec.n_subclasses}{tail}"


def _range_help(p: ParamField) -> str:
    """The field's help with its allowed range: Streamlit does not apply a number typed
    outside the widget's bounds, so the user must be able to see them."""
    if p.kind not in ("int", "float") or (p.low is None and p.high is None):
        return p.help
    if p.low is not None and p.high is not None:
        return f"{p.help} Allowed: from {p.low:g} to {p.high:g}."
    if p.low is not None:
        return f"{p.help} Allowed: at least {p.low:g}."
    return f"{p.help} Allowed: at most {p.high:g}."


def train_section(objective: str) -> str | None:
    """The ``TrainSpec`` sub-section holding an objective's parameters (``subclass-distill``
    -> ``subclass_distill``); None for objectives without one (hard, kd, lelp)."""
    return objective.replace("-", "_") if section_model(objective) is not None else None


def section_model(objective: str) -> type[BaseModel] | None:
    """The pydantic model of an objective's ``TrainSpec`` sub-section, or None."""
    from .config import TrainSpec

    f = TrainSpec.model_fields.get(objective.replace("-", "_"))
    ann = None if f is None else f.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


# -- nearest training rows by teacher embedding (Compare page, ReAugKD fallback) -----------------
@st.cache_resource(show_spinner="Indexing the teacher's training embeddings…", max_entries=4)
def teacher_index(ws_root: str, key: str) -> Any:
    """A cosine ``NearestNeighbors`` over the teacher's train embeddings, once per key."""
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(metric="cosine", algorithm="brute").fit(float_H(ws_root, key, "train"))


def teacher_neighbours(
    key: str, split: str, rows: np.ndarray | list[int], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` training rows whose teacher embeddings are nearest (cosine) to those of
    ``rows`` of ``split``: ``(indices (m, k), cosine similarities (m, k))``, nearest first.

    A stand-in for ReAugKD's own retrieval (learned projection + query map), which runs are
    not saved with; a train row's nearest neighbour is itself."""
    ws_root = str(workspace().root)
    index = teacher_index(ws_root, key)
    q = float_H(ws_root, key, split)[np.asarray(rows, dtype=int)]
    k = int(min(k, index.n_samples_fit_))
    dist, ind = index.kneighbors(q, n_neighbors=k)
    return ind, 1.0 - dist


# -- ReAugKD's real retrieval, replayed from a saved run (Compare page) ------------------------
def has_reaugkd_state(run: dict[str, Any]) -> bool:
    """True when the run saved ReAugKD's learned maps (runs from before that show a fallback)."""
    from .pipeline import method_state_path

    return method_state_path(workspace(), run) is not None


@st.cache_resource(show_spinner="Rebuilding the run's ReAugKD knowledge base…", max_entries=4)
def reaugkd_model(ws_root: str, run_id: str, state_path: str) -> tuple[Any, Any]:
    """``core.pipeline.load_reaugkd`` once per run (``state_path`` keys the cache to the file)."""
    from .pipeline import load_reaugkd

    ws = workspace_at(ws_root)
    return load_reaugkd(ws, ws.load_run(run_id))


def reaugkd_neighbours(
    run: dict[str, Any], ds: Dataset, split: str, rows: np.ndarray | list[int], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The run's own retrieval for ``rows`` of ``split``: ``(train indices (m, k), cosine
    similarities (m, k))`` of its query ``normalize(B h_s)`` to the keys ``normalize(P h_t)``."""
    from . import pipeline

    ws = workspace()
    loaded = reaugkd_model(str(ws.root), run["run_id"], str(pipeline.method_state_path(ws, run)))
    return pipeline.reaugkd_neighbours(ws, run, rows, split, dataset=ds, loaded=loaded, k=k)


def sweep_runs(ws: Workspace, run_ids: set[str]) -> dict[str, list[str]]:
    """Finished runs grouped by the sweep that queued them: ``{sweep_id: [run_id, ...]}``."""
    from .jobs import sweep_run_ids

    return {
        k: [r for r in v if r in run_ids] for k, v in sweep_run_ids(ws).items() if set(v) & run_ids
    }


# -- "does distillation pay here?" (core.headroom) -------------------------------------------
def selection_caption(ds: Dataset) -> str:
    """Which split chooses, and that test only scores (the Data and Compare pages)."""
    from .data import SELECT

    return (
        f"Selection split: **{SELECT}**, {len(ds.splits[SELECT]):,} rows, "
        f"{ds.selection or 'the dataset’s own'}. Every choice made from scores (the per-epoch "
        "curves, a sweep’s best setting, the teacher head’s regularisation) uses it; the test "
        "split is scored once per finished run and chooses nothing."
    )


def show_headroom(cfg: Any, teacher_key: str, widget_key: str) -> None:
    """The teacher vs a hard-label student of ``cfg``'s kind and budget on the selection
    split: read from the workspace, or computed (3 seeds) on request and cached there."""
    from . import headroom, pipeline

    ws = workspace()
    seeds = headroom.DEFAULT_SEEDS
    rec = ws.load_headroom(headroom.headroom_key(teacher_key, cfg, seeds))
    if rec is None:
        st.caption(
            f"Not measured yet for a {cfg.student.kind} student trained {cfg.train.epochs} "
            f"epochs: {len(seeds)} hard-label students are trained once and the answer is "
            "kept in the workspace."
        )
        if not st.button("Does distillation pay here?", key=widget_key):
            return
        bar = st.progress(0.0, text="Training hard-label students")

        def on_seed(i: int, n: int) -> None:
            bar.progress(i / n, text=f"Training hard-label student {i + 1} of {n}")

        try:
            prep = pipeline.prepare(cfg, ws)
            rec = headroom.compute_headroom(ws, prep, cfg, seeds, on_seed=on_seed)
        finally:
            bar.empty()
    c1, c2, c3 = st.columns(3)
    c1.metric("Teacher (selection split)", f"{rec['teacher_accuracy']:.1f}%")
    c2.metric(
        f"Hard-label {rec['student_kind']} student",
        f"{rec['hard_mean']:.1f}%",
        help=f"Mean of {rec['n_seeds']} seeds, ± {rec['hard_std']:.2f} (std).",
    )
    c3.metric("Gap", f"{rec['gap']:+.1f} points")
    (st.success if rec["pays"] else st.warning)(rec["message"])


def headroom_config() -> Any:
    """The run the Distill page would queue (student kind and budget as chosen there, or
    their defaults), for the Data page's headroom check."""
    from .config import RunConfig, StudentSpec, TrainSpec

    ss = st.session_state
    kept = ss.get(_KEPT, {})
    ds = dataset()
    kinds = ["bag", "transformer"] if ds.is_text else ["mlp"]
    kind = kept.get("distill_kind", kinds[0])
    t = TrainSpec()
    train = TrainSpec(
        objective="hard",
        epochs=int(kept.get("distill_epochs", t.epochs if ds.is_text else 4)),
        lr=float(kept.get("distill_lr", t.lr)),
        batch_size=int(kept.get("distill_batch", t.batch_size)),
    )
    kind = kind if kind in kinds else kinds[0]
    s = StudentSpec()
    student = StudentSpec(  # as the Distill page builds it
        kind=kind,
        hidden=int(kept.get("distill_hidden", s.hidden)),
        embed_dim=int(kept.get("distill_embed", s.embed_dim)),
        layers=int(kept.get("distill_layers", s.layers)),
        init=kept.get("distill_init", s.init) if kind == "transformer" else "random",
    )
    return RunConfig(dataset=dataset_spec(), teacher=teacher_spec(), student=student, train=train)


def show_compare_headroom(runs: Sequence[Mapping[str, Any]]) -> None:
    """The headroom of each (teacher, student, budget) among ``runs`` (Compare page)."""
    from .config import RunConfig

    groups: dict[str, tuple[Any, str, str]] = {}
    for r in runs:
        key = (r.get("artifacts") or {}).get("teacher_key")
        if not key:
            continue
        cfg = RunConfig.model_validate(r["config"])
        t = cfg.train
        gid = spec_json(cfg.student) + f"{key}{t.epochs}{t.lr}{t.batch_size}{t.weight_decay}"
        groups.setdefault(gid, (cfg, key, r.get("name") or r["run_id"]))
    if not groups:
        st.caption("The picked runs record no teacher outputs to measure against.")
    for i, (cfg, key, name) in enumerate(groups.values()):
        if len(groups) > 1:
            st.markdown(f"**{cfg.dataset.source}, {cfg.student.kind} student** (as {name})")
        show_headroom(cfg, key, f"cmp_headroom_{i}")


# -- sweeps: the Compare page's sweep view and the Distill page's grid builder -----------------
#: The grid builder's fields: short name -> (config key as ``lelp jobs sweep --grid`` spells
#: it, value type). Seeds are folded by the sweep view; the others become its settings.
SWEEP_FIELDS: dict[str, tuple[str, type]] = {
    "S": ("subclasses.n_subclasses", int),
    "beta": ("subclasses.beta", float),
    "tau": ("train.tau", float),
    "seed": ("train.seed", int),
}


def parse_sweep_values(text: str, kind: type, what: str) -> list[Any]:
    """``"2, 4 8"`` -> ``[2, 4, 8]`` (commas or spaces, duplicates dropped, order kept); an
    empty field is ``[]`` (not swept). Raises ``ConfigError`` naming the field and the value."""
    out: list[Any] = []
    for tok in text.replace(",", " ").split():
        try:
            v = kind(tok) if kind is float else int(tok)
        except ValueError:
            accepted = "whole numbers like 0, 1, 2" if kind is int else "numbers like 0.5, 1, 4"
            raise ConfigError(f"{what}: {tok!r} is not a number; enter {accepted}") from None
        if v not in out:
            out.append(v)
    return out


def sweep_grid(values: Mapping[str, str], objectives: Sequence[str] = ()) -> dict[str, list[Any]]:
    """The Distill page's grid builder as a ``core.jobs.submit_sweep`` grid: ``values`` maps
    the short names of ``SWEEP_FIELDS`` to the typed text; keys in the same order and with the
    same dotted names as ``lelp jobs sweep --grid``, objectives first. Empty fields are left
    out."""
    grid: dict[str, list[Any]] = {}
    if objectives:
        grid["train.objective"] = list(objectives)
    for short, (key, kind) in SWEEP_FIELDS.items():
        vals = parse_sweep_values(values.get(short, ""), kind, f"{short} ({key})")
        if vals:
            grid[key] = vals
    return grid


def sweep_size(grid: Mapping[str, Sequence[Any]] | None) -> int:
    """How many jobs a grid queues: the product of its list lengths (0 for no grid)."""
    return math.prod(len(v) for v in grid.values()) if grid else 0


def sweep_cli(grid: Mapping[str, Sequence[Any]]) -> str:
    """The ``lelp jobs sweep`` options that queue the same grid."""
    return " ".join(f"--grid {k}={','.join(str(v) for v in vals)}" for k, vals in grid.items())


def sweep_records(runs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The runs the sweep view can fold: those recording a full config (with a seed)."""
    return [
        r
        for r in runs
        if isinstance((r.get("config") or {}).get("train"), Mapping)
        and "seed" in r["config"]["train"]
    ]


def sweep_setting_columns(df: Any) -> list[str]:
    """The setting columns of a ``core.sweeps.aggregate`` table (those before ``n``)."""
    cols = list(df.columns)
    return cols[: cols.index("n")] if "n" in cols else []


def sweep_varying(df: Any) -> list[str]:
    """The setting columns whose value differs between rows (the axes a chart can use)."""
    return [c for c in sweep_setting_columns(df) if len({repr(v) for v in df[c]}) > 1]


def setting_text(value: Any) -> str:
    """How a setting's value reads in a selector: ``4``, ``0.5``, ``(not used)`` for a value
    the objective ignores (S and beta of a kd run)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "(not used)"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def setting_choices(df: Any, column: str) -> dict[str, Any]:
    """``{label: value}`` of a setting column's distinct values, in numeric order."""
    from .sweeps import _sort_key

    seen: dict[str, Any] = {}
    for v in df[column]:
        seen.setdefault(setting_text(v), v)
    return dict(sorted(seen.items(), key=lambda kv: _sort_key(kv[1])))


def sweep_row_label(row: Mapping[str, Any], columns: Sequence[str]) -> str:
    """``kd tau=4`` for one row of the aggregated table (values its objective ignores left
    out)."""
    parts = [str(row["objective"])] if "objective" in columns else []
    for c in columns:
        if c != "objective" and setting_text(row[c]) != "(not used)":
            parts.append(f"{c}={setting_text(row[c])}")
    return " ".join(parts)


def mean_std(mean: float, std: float) -> str:
    """``82.00 ± 2.00``; the mean alone for one seed, ``-`` for no score."""
    if mean is None or math.isnan(mean):
        return "-"
    return f"{mean:.2f}" if std is None or math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def sweep_table(df: Any) -> Any:
    """The aggregated table as the sweep view shows it: rank, settings, n, seeds, missing
    seeds, selection mean ± std (ranks) and test mean ± std (shown only)."""
    import pandas as pd

    settings = sweep_setting_columns(df)
    out = pd.DataFrame({"rank": df["rank"]})
    for c in settings:
        out[c] = [setting_text(v) for v in df[c]]
    out["n"] = df["n"]
    out["seeds"] = [", ".join(map(str, s)) for s in df["seeds"]]
    out["missing seeds"] = [", ".join(map(str, s)) or "-" for s in df["missing_seeds"]]
    out["selection (ranks)"] = [
        mean_std(m, s) for m, s in zip(df["sel_mean"], df["sel_std"], strict=True)
    ]
    out["test (shown only)"] = [
        mean_std(m, s) for m, s in zip(df["test_mean"], df["test_std"], strict=True)
    ]
    return out


# -- a damaged workspace: the doctor's findings --------------------------------------------------
def offer_repair(err: Exception) -> bool:
    """For a damaged workspace, show ``lelp doctor``'s findings and how to repair it; False
    when ``err`` is not damage (an unwritable folder, say). The repair stays a command: it
    moves files and must not race the app's own reads."""
    from . import doctor
    from .store import default_root

    root = str(st.session_state.get("ws_root") or default_root())
    if "damaged" not in str(err) and "doctor" not in str(err):
        return False
    findings, _ = doctor.safe_check(root)
    st.error(f"Workspace `{root}`: {doctor.summary(findings)}.")
    for f in findings:
        st.markdown(f"- {f.line()}")
    st.info(
        f"Repair it with `lelp doctor --repair -w {root}` (damaged files are moved to "
        "quarantine/, the catalogue is rebuilt from the saved run, spec and teacher files), "
        "then reload this page."
    )
    return True


def student_files_missing(student_dir: Any) -> str | None:
    """Why a run's student cannot be downloaded (folder or weights gone), or None."""
    if student_dir is None or not Path(student_dir).is_dir():
        return "this run's student folder is not in the workspace any more"
    for name in ("student.safetensors", "student.json"):
        if not (Path(student_dir) / name).is_file():
            return f"this run's {name} is missing from {student_dir}"
    return None


# -- cost beside accuracy: the Compare page's Cost section (core.cost) -------------------------
def cost_records(
    ws: Workspace, runs: Sequence[Mapping[str, Any]], labels: Mapping[str, str]
) -> tuple[dict[str, dict[str, Any] | None], dict[str, float | None]]:
    """Cached costs of the runs' teachers and students by display name (teachers first: one
    per teacher, "teacher" when the runs share one), and each name's test accuracy."""
    from . import cost

    keys = [(r.get("artifacts") or {}).get("teacher_key") for r in runs]
    distinct = list(dict.fromkeys(k for k in keys if k))
    recs: dict[str, dict[str, Any] | None] = {}
    acc: dict[str, float | None] = {}
    for r, key in zip(runs, keys, strict=True):
        if key and key in distinct:
            name = "teacher" if len(distinct) == 1 else f"teacher of {labels[r['run_id']]}"
            recs[name] = cost.cached_cost(ws, r)["teacher"]
            acc[name] = (r.get("metrics") or {}).get("teacher", {}).get("accuracy")
            distinct.remove(key)
    for r in runs:
        name = labels[r["run_id"]]
        recs[name] = cost.cached_cost(ws, r)["student"]
        acc[name] = (r.get("metrics") or {}).get("student", {}).get("accuracy")
    return recs, acc


def measure_costs(runs: Sequence[Mapping[str, Any]], *, force: bool = False) -> list[str]:
    """Measure (and cache) the cost of each run's teacher and student; returns one line per
    run that could not be measured, naming the run and why."""
    from . import cost

    ws = workspace()
    problems: list[str] = []
    for r in runs:
        try:
            ds = dataset_from_json(spec_json(DatasetSpec.model_validate(r["config"]["dataset"])))
            cost.run_cost(ws, r, ds, force=force)
        except (*user_errors(), cost.CostError, OSError) as err:
            problems.append(f"{r.get('name') or r['run_id']}: {err}")
    return problems


def show_compare_cost(runs: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> None:
    """Compare's Cost section: parameters, size and latency of the teacher and each picked
    run, measured on request and cached, with accuracy against latency and its Pareto front.

    Why on request: timing a transformer teacher takes seconds, and a page must not block
    on it each visit; once measured, the numbers come from the workspace."""
    from . import cost, plots

    ws = workspace()
    recs, acc = cost_records(ws, runs, labels)
    missing = [r for r in runs if not cost.is_cached(ws, r)]
    if missing:
        st.caption(
            f"{len(missing)} of {len(runs)} picked run(s) not measured yet: timing runs each "
            "model's forward pass on this machine (a few seconds per transformer), once; the "
            "numbers are then kept in the workspace."
        )
    again = not missing and st.button(
        "Measure again",
        key="cmp_cost_remeasure",
        help="Time every model again (e.g. on another machine or after a driver update).",
    )
    if (
        missing
        and st.button(
            "Measure cost",
            key="cmp_cost_measure",
            type="primary",
            help="Parameters, weights size and latency at batch 1 and 64, CPU (and CUDA when "
            "present), on rows of each run's test split.",
        )
    ) or again:
        with st.spinner("Timing the teacher and the students…"):
            problems = measure_costs(runs if again else missing, force=bool(again))
        # Drawn again from the cache, so the buttons and captions above say what now holds.
        st.session_state["cmp_cost_problems"] = problems
        st.rerun()
    for p in st.session_state.pop("cmp_cost_problems", []):
        st.warning(p)
    if not any(recs.values()):
        return
    st.dataframe(
        cost.cost_table(recs),
        hide_index=True,
        key="cmp_cost_table",
        column_config={
            "parameters": st.column_config.NumberColumn(format="localized"),
            "size MB": st.column_config.NumberColumn(
                format="%.3f", help="Bytes of the weights files on disk (tokenizer excluded)."
            ),
            "ms (batch 1)": st.column_config.NumberColumn(
                format="%.3f", help="Median forward pass, one example at a time."
            ),
            "ms (batch 64)": st.column_config.NumberColumn(
                format="%.3f", help="Median forward pass of a batch of 64 examples."
            ),
        },
    )
    measured = [r for r in recs.values() if r and r.get("latency_ms")]
    options = [
        (dev, b)
        for dev in dict.fromkeys(d for r in measured for d in r["latency_ms"])
        for b in ("1", "64")
    ]
    if options:
        names = {f"{cost.device_name(d)}, batch {b}": (d, b) for d, b in options}
        c1, _ = st.columns([1, 2])
        ss = st.session_state
        if ss.get("cmp_cost_latency") not in names:
            ss["cmp_cost_latency"] = next(iter(names))
        pick = c1.selectbox(
            "Latency", list(names), key="cmp_cost_latency", help="Which timing the chart uses."
        )
        dev, b = names[pick]
        models = list(recs)
        lat = [((recs[m] or {}).get("latency_ms") or {}).get(dev, {}).get(b) for m in models]
        colors = plots.run_colors([labels[r["run_id"]] for r in runs])
        st.plotly_chart(
            plots.cost_pareto(
                models,
                lat,
                [acc.get(m) for m in models],
                teacher=[m for m in models if m.startswith("teacher")],
                colors=colors,
                params=[(recs[m] or {}).get("params") for m in models],
                latency_title=f"latency (ms, {pick}; log scale)",
            ),
            key="cmp_cost_chart",
        )
    notes = sorted({f"{m}: {r['note']}" for m, r in recs.items() if r and r.get("note")})
    machines = sorted({r["machine"] for r in measured if r.get("machine")})
    st.caption(
        "Median forward pass after warm-up on the same rows of each run's test split "
        "(tokenisation not included); the dashed line joins the Pareto front (no model is both "
        "faster and more accurate), models off it are dimmed, the teacher is near-black. "
        + (f"Measured on {', '.join(machines)}. " if machines else "")
        + " ".join(f"{n}." for n in notes)
    )
