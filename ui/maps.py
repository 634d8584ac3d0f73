"""2-D projections of the teacher's embeddings (Embedding map, Subspaces and Compare pages):
stored in the workspace per split, fitted on train once per process and setting."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from lelp_studio.maps import ProjectedRows, Projection, fit_projection, projection_key
from lelp_studio.store import Workspace

from . import background
from .cache import _stored_teacher, float_H
from .state import Progress, workspace

#: Fitted projections kept to place other splits (a fitted UMAP holds its training graph).
KEEP_FITTED = 8


class _Fitted:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: OrderedDict[tuple[Any, ...], Projection] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> Projection | None:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
            return self.items.get(key)

    def put(self, key: tuple[Any, ...], proj: Projection) -> None:
        with self.lock:
            self.items[key] = proj
            while len(self.items) > KEEP_FITTED:
                self.items.popitem(last=False)


@st.cache_resource(show_spinner=False)
def _fitted() -> _Fitted:
    """Fitted projections of this process, shared by sessions and by background work (a
    plain ``st.cache_resource`` per setting cannot be filled from a worker thread)."""
    return _Fitted()


def _job(
    key: str,
    split: str,
    method: str,
    sample: int,
    seed: int,
    class_index: int,
    lelp_model: Any,
    lelp_id: str,
) -> tuple[str, Callable[[Progress | None], tuple[np.ndarray | ProjectedRows, tuple[str, str]]]]:
    """The workspace key of ``split``'s coordinates and the work that computes and stores
    them. The work calls no Streamlit, so it may run in a background thread."""
    ws = workspace()
    params: dict[str, Any] = {"sample": sample, "seed": seed, "split": split}
    if method == "lelp":
        params |= {"class_index": class_index, "lelp": lelp_id}
    pkey = projection_key(key, method, params)
    ws_root = str(ws.root)
    H_train = float_H(ws_root, key, "train")  # memory maps: read by the work, not here
    H_split = H_train if split == "train" else float_H(ws_root, key, split)
    y = np.asarray(_stored_teacher(ws_root, key).Z["train"]).argmax(1)
    fit_key = (ws_root, key, method, sample, seed, class_index, lelp_id)
    fitted = _fitted()

    def work(progress: Progress | None) -> tuple[np.ndarray | ProjectedRows, tuple[str, str]]:
        extra = 0 if split == "train" else 1  # placing the other split is one more step
        steps = [1]

        def fit_progress(done: int, total: int, stage: str) -> None:
            steps[0] = total
            if progress is not None:
                progress(done, total + extra, stage)

        proj = fitted.get(fit_key)
        if proj is None:
            proj = fit_projection(
                H_train,
                method,
                sample=sample,
                random_state=seed,
                lelp_model=lelp_model,
                class_index=class_index,
                y=y,
                progress=fit_progress,
            )
            fitted.put(fit_key, proj)
        if method != "umap":  # a linear map: coordinates of the rows a map draws, on demand
            return proj.rows(H_split), proj.axis_titles
        if split == "train":
            xy = proj.xy
        else:
            if progress is not None:
                progress(steps[0], steps[0] + 1, f"placing the {len(H_split):,} {split} rows")
            xy = proj.transform(H_split)
        meta = {"method": method, "titles": list(proj.axis_titles), **params}
        ws.save_projection(pkey, xy, meta)
        return xy, proj.axis_titles

    return pkey, work


def map_xy(
    key: str,
    split: str,
    method: str,
    sample: int,
    seed: int = 0,
    class_index: int = 0,
    lelp_model: Any = None,
    lelp_id: str = "",
    *,
    in_background: bool = False,
) -> tuple[np.ndarray | ProjectedRows, tuple[str, str]]:
    """Coordinates of every row of ``split`` (the same for every split: fitted on train).

    UMAP's are computed for all rows once and stored in the workspace (placing rows is its
    slow part). PCA and LELP directions are linear maps: their coordinates are computed for
    the rows a map draws (``ProjectedRows``), from a fit kept per process; a projection
    stored by an earlier version is still read. ``in_background``: a computation longer
    than a few seconds (UMAP on a large set) runs in the background, and meanwhile the page
    shows its stage and elapsed time and stops there (see ``background``); it reruns by
    itself when the coordinates are stored. Otherwise it runs here, under a spinner."""
    ws = workspace()
    pkey, work = _job(key, split, method, sample, seed, class_index, lelp_model, lelp_id)
    if not (in_background and background.running(pkey) is not None):
        xy = ws.load_projection(pkey)
        if xy is not None:
            background.forget(pkey)  # a finished task's result is stored: drop it
            return xy, _stored_titles(ws, pkey, method)
    if not in_background:
        with st.spinner("Fitting the projection…", show_time=True):
            return work(None)
    n = len(float_H(str(ws.root), key, split))
    task = background.submit(pkey, f"Map of {n:,} {split} rows", work)
    got: tuple[np.ndarray | ProjectedRows, tuple[str, str]] = background.result_or_wait(task)
    background.forget(pkey)
    return got


def _stored_titles(ws: Workspace, pkey: str, method: str) -> tuple[str, str]:
    """Axis titles saved with a projection (so a restart shows them without refitting)."""
    titles = (ws.projection_meta(pkey) or {}).get("titles")
    if titles and len(titles) == 2:
        return str(titles[0]), str(titles[1])
    return (f"{method.upper()} 1", f"{method.upper()} 2")
