"""Cached 2-D projections of the teacher's embeddings (Embedding map and Subspaces pages)."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from lelp_studio.maps import ProjectedRows, fit_projection, projection_key
from lelp_studio.store import Workspace

from .cache import H32, _stored_teacher, float_H
from .state import workspace


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
) -> tuple[np.ndarray | ProjectedRows, tuple[str, str]]:
    """Coordinates of every row of ``split`` (the same for every split: fitted on train).

    UMAP's are computed for all rows once and stored in the workspace (placing rows is its
    slow part). PCA and LELP directions are linear maps: their coordinates are computed for
    the rows a map draws (``ProjectedRows``), from a fit cached per process; a projection
    stored by an earlier version is still read."""

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
    if method != "umap":
        return proj.rows(float_H(str(ws.root), key, split)), proj.axis_titles
    xy = proj.xy if split == "train" else proj.transform(H32(key, split))
    ws.save_projection(pkey, xy, {"method": method, "titles": list(proj.axis_titles), **params})
    return xy, proj.axis_titles


def _stored_titles(ws: Workspace, pkey: str, method: str) -> tuple[str, str]:
    """Axis titles saved with a projection (so a restart shows them without refitting)."""
    titles = (ws.projection_meta(pkey) or {}).get("titles")
    if titles and len(titles) == 2:
        return str(titles[0]), str(titles[1])
    return (f"{method.upper()} 1", f"{method.upper()} 2")
