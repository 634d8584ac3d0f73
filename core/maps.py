"""2-D projections of teacher embeddings for the Embedding map (pure functions, no Streamlit).

A projection is fitted ONCE on the teacher's embeddings and then applied with ``transform`` to
anything else (test rows, a student's embeddings, new data), so every point of every run lands
in the same coordinates and comparisons across runs are not refits.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .types import hash_arrays

Method = Literal["pca", "umap", "lelp"]
METHODS: tuple[str, ...] = ("pca", "umap", "lelp")
Progress = Callable[[int, int, str], None]
#: Rows a projection is fitted on (a class-stratified sample of larger sets): PCA's two axes
#: are settled long before, and UMAP's fit grows faster than linearly. Every page asks for the
#: same number, so they share one stored projection.
FIT_SAMPLE = 50_000
#: Rows cast to float32 at a time: a float16 memmap of 1.6M x 384 is never copied whole.
_BLOCK = 65_536
#: Samples whose coordinates a projection remembers (a few pages, a few splits).
_PLACED = 8


def stratified_sample(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted row indices of a seeded sample of at most ``n`` rows, keeping class proportions.

    Why stratified: a map sampled at random can lose a small class entirely; here every class
    keeps at least one point (when ``n`` allows) and the rest is proportional to class size.
    """
    y = np.asarray(y)
    m = len(y)
    if n <= 0:
        raise ValueError(f"sample size n={n} must be >= 1")
    if n >= m:
        return np.arange(m)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    quota = np.floor(counts / m * n).astype(int)
    quota = np.maximum(quota, np.minimum(1, counts))
    # hand the remainder (or take the excess) by largest fractional share, deterministic
    while quota.sum() < n:
        room = counts - quota
        share = counts / m * n - quota
        share[room <= 0] = -np.inf
        quota[int(np.argmax(share))] += 1
    while quota.sum() > n:
        share = counts / m * n - quota
        floor = 1 if (quota > 1).any() else 0  # keep one per class while n allows it
        share[quota <= floor] = np.inf
        quota[int(np.argmin(share))] -= 1
    picked = [
        rng.choice(np.flatnonzero(y == c), size=int(q), replace=False)
        for c, q in zip(classes, quota, strict=True)
        if q > 0
    ]
    return np.sort(np.concatenate(picked))


def projection_key(emb_key: str, method: str, params: dict[str, Any] | None = None) -> str:
    """The workspace key of a projection: embeddings' key + method + every parameter."""
    if method not in METHODS:
        raise ValueError(f"projection method {method!r} is unknown; use one of {list(METHODS)}")
    return hash_arrays("projection", emb_key, method, dict(params or {}))


@dataclass
class Projection:
    """A fitted 2-D projection. ``transform(H)`` places any (n, d) rows in its coordinates.

    ``xy`` holds the coordinates of the rows ``H`` given to ``fit_projection``, computed on
    first use (for PCA and LELP; UMAP's come from its fit): placing another split never pays
    for all of train. ``sample_idx`` holds the rows used to fit.
    """

    method: str
    sample_idx: np.ndarray
    axis_titles: tuple[str, str]
    _fn: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    params: dict[str, Any] = field(default_factory=dict)
    _source: Any = field(default=None, repr=False)
    _xy: np.ndarray | None = field(default=None, repr=False)
    _placed: dict[tuple[int, str], tuple[Any, np.ndarray]] = field(default_factory=dict, repr=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    @property
    def n_fit(self) -> int:
        return int(len(self.sample_idx))

    def rows(self, H: np.ndarray) -> ProjectedRows:
        """``H``'s coordinates, each row computed when first asked for (see ProjectedRows)."""
        return ProjectedRows(self, H)

    def place(self, H: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``transform(H[rows])``, remembered for the last few (H, rows) asked: every rerun
        of a page draws the same sample of the same split again."""
        rows = np.ascontiguousarray(rows)
        digest = hashlib.sha1(rows.data, usedforsecurity=False).hexdigest()
        key = (id(H), f"{rows.dtype.str}{rows.shape}{digest}")  # a mask and ids: not alike
        with self._lock:  # sessions share a cached projection, each in its own thread
            if key not in self._placed:
                if len(self._placed) >= _PLACED:
                    self._placed.pop(next(iter(self._placed)))
                self._placed[key] = (H, self.transform(H[rows]))  # H kept: its id stays its own
            return self._placed[key][1]

    @property
    def xy(self) -> np.ndarray:
        if self._xy is None:
            self._xy = self.transform(self._source)
            self._source = None
        return self._xy

    def transform(self, H: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, 2) float32 in the fitted coordinates; any float dtype (a float16
        memmap included) is cast one block of rows at a time."""
        if getattr(H, "ndim", None) is None:
            H = np.asarray(H, dtype=np.float32)
        if H.ndim != 2:
            raise ValueError(f"transform expects a 2-D array (n, d), got shape {H.shape}")
        out = np.zeros((len(H), 2), dtype=np.float32)
        for start in range(0, len(H), _BLOCK):
            block = np.asarray(H[start : start + _BLOCK], dtype=np.float32)
            out[start : start + len(block)] = np.asarray(self._fn(block))[:, :2]
        return out


class ProjectedRows:
    """The 2-D coordinates of the rows of ``H`` under a fitted projection, computed only for
    the rows asked for: ``rows[idx]`` is their ``(k, 2)`` float32 array.

    Why: a map draws a sample (200,000 of 1.6M rows), and placing every row first cast all of
    H (1.2 GB of float16) for points never drawn. Sorted indices read a memmap in order.
    """

    def __init__(self, projection: Projection, H: np.ndarray) -> None:
        self.projection, self._H = projection, H

    def __len__(self) -> int:
        return len(self._H)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self._H), 2)

    def __getitem__(self, rows: Any) -> np.ndarray:
        idx = None if isinstance(rows, slice) else np.asarray(rows)
        if idx is None or idx.dtype.kind not in "biu":
            return self.projection.transform(self._H[rows])
        return self.projection.place(self._H, idx)


def _report(progress: Progress | None, done: int, total: int, stage: str) -> None:
    if progress is not None:
        progress(done, total, stage)


def fit_projection(
    H: np.ndarray,
    method: str = "pca",
    *,
    sample: int = FIT_SAMPLE,
    random_state: int = 0,
    lelp_model: Any = None,
    class_index: int = 0,
    y: np.ndarray | None = None,
    n_neighbors: int = 15,
    progress: Progress | None = None,
) -> Projection:
    """Fit a 2-D projection of ``H`` (n, d).

    Parameters
    ----------
    method : "pca" (sklearn PCA(2), on a seeded sample of at most ``sample`` rows), "umap"
        (umap-learn fitted on a seeded sample of at most ``sample`` rows; the others placed by
        ``transform``), or "lelp" (the first two directions of class ``class_index``'s LELP
        subspace, read through ``lelp_model.coordinates``; a 1-direction subspace gets a zero
        second axis).
    y : optional labels; when given, the fitting sample is stratified by class.

    Returns a :class:`Projection` whose ``xy`` are the coordinates of all rows of ``H``. ``H``
    may be a float16 memmap: only the fitting sample is read at once.
    """
    if getattr(H, "ndim", None) is None:
        H = np.asarray(H, dtype=np.float32)
    if H.ndim != 2 or len(H) == 0:
        raise ValueError(f"fit_projection needs a non-empty 2-D array (n, d), got {H.shape}")
    if method not in METHODS:
        raise ValueError(f"projection method {method!r} is unknown; use one of {list(METHODS)}")
    n = len(H)
    labels = np.zeros(n, dtype=np.int64) if y is None else np.asarray(y)
    idx = stratified_sample(labels, sample, random_state) if n > sample else np.arange(n)
    params: dict[str, Any] = {"sample": int(sample), "random_state": int(random_state)}

    if method == "pca":
        from sklearn.decomposition import PCA

        _report(progress, 0, 1, "PCA")
        pca = PCA(n_components=min(2, H.shape[1], len(idx)), random_state=random_state)
        pca.fit(np.asarray(H[idx], dtype=np.float32))
        # sign convention: largest-magnitude loading of each component is positive, so equal
        # data gives the same picture on every machine
        signs = np.sign(
            pca.components_[
                np.arange(len(pca.components_)), np.argmax(np.abs(pca.components_), axis=1)
            ]
        )
        signs[signs == 0] = 1
        comps = pca.components_ * signs[:, None]
        mean = pca.mean_.astype(np.float32)
        comps = comps.astype(np.float32)

        def fn(X: np.ndarray) -> np.ndarray:
            out = (X - mean) @ comps.T
            return out if out.shape[1] == 2 else np.pad(out, ((0, 0), (0, 2 - out.shape[1])))

        ratio = pca.explained_variance_ratio_
        pcs = [f"PC{i + 1} ({100 * r:.1f}% var.)" for i, r in enumerate(ratio)] + ["PC2"]
        titles = (pcs[0], pcs[1])
        _report(progress, 1, 1, "PCA")
    elif method == "umap":
        import umap

        params["n_neighbors"] = int(n_neighbors)
        _report(progress, 0, 2, f"UMAP: fitting on {len(idx):,} points")
        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=min(n_neighbors, max(2, len(idx) - 1)),
            random_state=random_state,
            n_jobs=1,
        )
        fitted = reducer.fit_transform(np.asarray(H[idx], dtype=np.float32)).astype(np.float32)
        _report(progress, 1, 2, "UMAP: placing the other points")

        def fn(X: np.ndarray) -> np.ndarray:
            return reducer.transform(X)

        titles = ("UMAP 1", "UMAP 2")
    else:
        if lelp_model is None:
            raise ValueError(
                "method='lelp' needs lelp_model: a fitted LELPSubclasses (fit it on the "
                "Subspaces page or pick PCA)"
            )
        n_cls = len(lelp_model.sizes_)
        if not 0 <= class_index < n_cls:
            raise ValueError(f"class_index={class_index} is out of range 0..{n_cls - 1}")
        params["class_index"] = int(class_index)
        _report(progress, 0, 1, "LELP directions")

        def fn(X: np.ndarray) -> np.ndarray:
            z = np.asarray(lelp_model.coordinates(X)[class_index], dtype=np.float32)
            if z.shape[1] < 2:
                z = np.pad(z, ((0, 0), (0, 2 - z.shape[1])))
            return z[:, :2]

        # 0-based, as the Subspaces page numbers directions; pages put the class's name
        titles = (f"class {class_index} direction 0", f"class {class_index} direction 1")
        _report(progress, 1, 1, "LELP directions")

    proj = Projection(
        method=method, sample_idx=idx, axis_titles=titles, _fn=fn, params=params, _source=H
    )
    if method == "umap":
        xy = np.empty((n, 2), dtype=np.float32)
        xy[idx] = fitted
        rest = np.setdiff1d(np.arange(n), idx)
        if len(rest):
            xy[rest] = proj.transform(H[rest])
        proj._xy, proj._source = xy, None
        _report(progress, 2, 2, "UMAP: done")
    return proj
