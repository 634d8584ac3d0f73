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
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from core.config import ConfigError, DatasetSpec, SubclassSpec, TeacherSpec
from core.errors import user_errors
from core.store import Workspace
from core.types import Dataset, TeacherOutputs

Progress = Callable[[int, int, str], None]


# -- defaults ---------------------------------------------------------------------------------
def minilm_available() -> bool:
    """True when the bundled MiniLM encoder can be loaded offline."""
    try:
        from core.teachers import minilm_path

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
    from core.store import default_root

    return workspace_at(str(st.session_state.get("ws_root") or default_root()))


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=8)
def dataset_from_json(ds_json: str) -> Dataset:
    from core.pipeline import get_dataset

    return get_dataset(DatasetSpec.model_validate_json(ds_json))


def dataset() -> Dataset:
    return dataset_from_json(spec_json(dataset_spec()))


@st.cache_data(show_spinner=False, max_entries=32)
def teacher_cache_key(ws_root: str, ds_json: str, t_json: str) -> str:
    """The workspace key of (dataset, teacher): computing it does not run the teacher."""
    from core.pipeline import pooling_name
    from core.teachers import teacher_fingerprint

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
    from core.pipeline import get_teacher_outputs

    _, key2, _ = get_teacher_outputs(
        workspace(), dataset_from_json(ds_json), teacher_spec(), progress=progress
    )
    return _stored_teacher(ws_root, key2), key2


def st_progress(label: str) -> tuple[Progress, Any]:
    """A ``progress(done, total, stage)`` callback drawing an st.progress bar."""
    bar = st.progress(0.0, text=label)

    def cb(done: int, total: int, stage: str) -> None:
        frac = 0.0 if total <= 0 else min(1.0, max(0.0, done / total))
        bar.progress(frac, text=f"{label}: {stage} ({done:,}/{total:,})")

    return cb, bar


def require_teacher() -> tuple[Dataset, TeacherOutputs, str]:
    """Dataset and teacher for a page; computes them (with a progress bar) if needed and
    stops the page with an explanation when that fails."""
    try:
        ds = dataset()
        got = teacher(compute=False)
        if got is None:
            cb, bar = st_progress("Computing teacher embeddings (once; cached in the workspace)")
            got = teacher(compute=True, progress=cb)
            bar.empty()
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


def split_labels(ds: Dataset, out: TeacherOutputs, split: str, source: str) -> np.ndarray:
    if source == "teacher":
        return np.asarray(out.Z[split]).argmax(1)
    return np.asarray(ds.splits[split].y)


def softmax(z: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """Class probabilities ``softmax(z / tau)`` (core.metrics' stable version)."""
    from core.metrics import softmax as _softmax

    return _softmax(z, T=tau)


@st.cache_resource(show_spinner="Reading the class statistics of the embeddings…", max_entries=8)
def class_stats(ws_root: str, key: str, ds_json: str, class_source: str) -> Any:
    """Per-class means and scatters of the train embeddings: the one pass over H that LELP's
    fit needs, shared by every S / directions / rotation / seed setting."""
    from core.subclasses import class_statistics

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
    from core.subclasses import LELPSubclasses

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
    from core.subclasses import targets_from_coordinates as core_fn

    return np.asarray(core_fn(coords, Z, tau=tau, beta=beta))


def assign_from_coordinates(coords: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Global pseudo-subclass id of each row within its own class (core's pure function)."""
    from core.subclasses import assign_from_coordinates as core_fn

    return core_fn(coords, y)


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
    from core.maps import fit_projection

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
    from core.maps import projection_key

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
    with ws.connect() as con:
        row = con.execute("SELECT meta FROM projections WHERE key = ?", (pkey,)).fetchone()
    titles = json.loads(row[0]).get("titles") if row else None
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
    from core.types import hash_arrays

    return hash_arrays(json.dumps(obj, default=str))[:16]
