"""The paper's clustering baselines (k-means, Ward, UMAP + k-means) and the part of their fit
that does not depend on S, so a preview that changes S reuses it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from ._validation import (
    SubclassError,
    _blocks,
    _check_chunk_size,
    _check_embeddings,
    _check_labels,
    _class_counts,
    _resolve_sizes,
)
from .baselines import _HardSubclasser, _sklearn_rows
from .statistics import _nearest

#: Rows read at once when assigning (bounds the float32 copy of a float16 memmap).
_ASSIGN_CHUNK = 65_536
#: KMeans on at most this many rows runs on one thread (see ``ClusterSubclasses._kmeans``).
_SERIAL_KMEANS_ROWS = 20_000


@dataclass(frozen=True)
class ClassStructure:
    """What ``ClusterSubclasses`` learns from one class before it picks S clusters.

    Why: the seed, the sampled rows, Ward's merge tree and the UMAP model do not depend on
    ``n_subclasses``; the Subspaces preview keeps them so a new S costs only a cut of the tree
    (agglomerative) or a k-means in UMAP's 5-D space (umap-kmeans), not a refit.

    Attributes
    ----------
    method, max_samples, seed : the settings it was made with (checked on reuse).
    n_rows, n_features : the class's rows and H's columns at fit (checked on reuse).
    sample : (m,) positions within the class's rows that Ward / UMAP saw (None: all rows).
    children : (m - 1, 2) Ward merges in order, scikit-learn's ``ward_tree`` (agglomerative).
    reducer : the fitted UMAP model (umap-kmeans).
    """

    method: str
    max_samples: int
    seed: int
    n_rows: int
    n_features: int
    sample: np.ndarray | None = None
    children: np.ndarray | None = None
    reducer: Any = None


def ward_cut(children: np.ndarray, n_leaves: int, n_clusters: int) -> np.ndarray:
    """Cluster label (0..n_clusters-1) of each leaf after the first ``n_leaves - n_clusters``
    merges of a Ward tree: the partition ``AgglomerativeClustering(n_clusters, linkage="ward")``
    returns, numbered by each cluster's first leaf so equal trees give equal labels.

    Example
    -------
    >>> children = np.array([[0, 1], [2, 3], [4, 5]])  # {0,1}=4, {2,3}=5, then 4+5
    >>> ward_cut(children, 4, 2).tolist()
    [0, 0, 1, 1]
    """
    merges = n_leaves - n_clusters
    top = n_leaves + merges
    parent = np.arange(top)
    new = np.arange(n_leaves, top)
    parent[children[:merges, 0]] = new
    parent[children[:merges, 1]] = new
    root = parent.copy()
    for node in range(top - 1, -1, -1):  # a merge's node id exceeds its children's
        root[node] = root[parent[node]]
    _, first, inverse = np.unique(root[:n_leaves], return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse]


class ClusterSubclasses(_HardSubclasser):
    """Clustering baselines (the paper's Table 1): cluster each class's embeddings.

    Why: the paper compares LELP against hard pseudo-subclasses from clustering.

    Parameters
    ----------
    method : ``"kmeans"`` (KMeans, n_init=4), ``"agglomerative"`` (Ward on at most
        ``max_samples`` sampled rows, centroids of its clusters) or ``"umap-kmeans"``
        (UMAP to 5-D fitted on at most ``max_samples`` rows, then KMeans).
    n_subclasses : int or list per class.
    smooth : label smoothing over a class's subclasses, in [0, 1).
    max_samples : cap on the rows that agglomerative / UMAP are fitted on.
    random_state : seed for sampling, KMeans and UMAP.

    Attributes
    ----------
    centers_ : list of (S_c, d) centroids (in UMAP space for umap-kmeans).
    reducers_ : list of fitted UMAP models (umap-kmeans only, else None).
    structure_ : list of ``ClassStructure``, one per class: what did not depend on S; pass
        it to ``fit(..., structure=...)`` to fit another S without redoing it.

    Every example (training rows included) is assigned to the nearest centroid, so training
    and new rows are treated alike.

    Memory: scikit-learn and UMAP need float32 (or float64). From a float16 memmap, fit
    casts only what they read (kmeans: one class's rows at a time; agglomerative and UMAP:
    their ``max_samples`` rows); assignment casts one block of rows at a time.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> H, y = rng.normal(size=(40, 3)), np.repeat([0, 1], 20)
    >>> sub = ClusterSubclasses("agglomerative", n_subclasses=2).fit(H, y)
    >>> int(sub.assign(H, y).max())
    3
    >>> again = ClusterSubclasses("agglomerative", 3).fit(H, y, structure=sub.structure_)
    >>> again.sizes_
    [3, 3]
    """

    _METHODS = ("kmeans", "agglomerative", "umap-kmeans")

    def __init__(
        self,
        method: str = "kmeans",
        n_subclasses: int | list[int] = 4,
        smooth: float = 0.0,
        max_samples: int = 3000,
        random_state: int | np.random.RandomState | None = 0,
    ) -> None:
        self.method = method
        self.n_subclasses = n_subclasses
        self.smooth = smooth
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(
        self,
        H: Any,
        y: Any,
        W: Any = None,
        structure: Sequence[ClassStructure] | None = None,
    ) -> ClusterSubclasses:
        """Cluster each class of ``H`` (n, d); ``W`` is accepted for API symmetry and unused.

        ``structure``: the ``structure_`` of an earlier fit with the same method,
        ``max_samples``, ``random_state``, H and y (any ``n_subclasses``); reused instead of
        sampling, building Ward's tree and fitting UMAP again.
        """
        if self.method not in self._METHODS:
            raise SubclassError(f"method must be one of {list(self._METHODS)}; got {self.method!r}")
        self._check_smooth()
        if int(self.max_samples) < 2:
            raise SubclassError(f"max_samples must be >= 2; got {self.max_samples!r}")
        H = _check_embeddings(H)
        n, d = H.shape
        y = _check_labels(y, n)
        counts = _class_counts(y)
        sizes = _resolve_sizes(self.n_subclasses, len(counts))
        for c, s in enumerate(sizes):
            if s > counts[c]:
                raise SubclassError(
                    f"class {c} has {counts[c]} examples, fewer than the requested S={s} "
                    "clusters: lower n_subclasses"
                )
        rng = check_random_state(self.random_state)
        seeds = [int(rng.randint(2**31 - 1)) for _ in sizes]
        if structure is None:
            structure = [
                self._structure(H, np.flatnonzero(y == c), seed) for c, seed in enumerate(seeds)
            ]
        else:
            structure = self._check_structure(structure, counts, seeds, d)
        centers = []
        for c, (s, st) in enumerate(zip(sizes, structure, strict=True)):
            rows = np.flatnonzero(y == c)
            if st.method == "kmeans":
                centers.append(self._kmeans(_sklearn_rows(H[rows]), s, st.seed))
            elif st.method == "agglomerative":
                sub = _sklearn_rows(H[rows if st.sample is None else rows[st.sample]])
                assert st.children is not None
                lab = ward_cut(st.children, len(sub), s)
                means = [sub[lab == k].mean(0) for k in range(s)]
                centers.append(np.stack(means).astype(np.float64))
            else:
                centers.append(self._kmeans(st.reducer.embedding_, s, st.seed))
        self._set_layout(sizes, d)
        self.centers_ = centers
        self.reducers_ = [st.reducer for st in structure]
        self.structure_ = list(structure)
        return self

    @staticmethod
    def _kmeans(X: np.ndarray, s: int, seed: int) -> np.ndarray:
        """KMeans centroids; one thread for a class of up to ``_SERIAL_KMEANS_ROWS`` rows.

        Why: on a shared 2-core machine, OpenMP and BLAS threads that spin while waiting for
        each other made KMeans on one amazon_multidomain class (2,794 x 384) take 1.7-2.9 s
        instead of 0.26-0.32 s on one thread (and 42 s instead of 16 s at 56,000 rows); a
        second thread saves little at this size on an idle machine.
        """
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1 if len(X) <= _SERIAL_KMEANS_ROWS else None):
            km = KMeans(n_clusters=s, n_init=4, random_state=seed).fit(X)
        return np.asarray(km.cluster_centers_, dtype=np.float64)

    def _structure(self, H: np.ndarray, rows: np.ndarray, seed: int) -> ClassStructure:
        """The S-free part of one class's fit: Ward and UMAP see at most ``max_samples`` rows,
        and only those are read and cast (KMeans reads every row at fit, so keeps nothing)."""
        common = {
            "method": self.method,
            "max_samples": int(self.max_samples),
            "seed": seed,
            "n_rows": len(rows),
            "n_features": H.shape[1],
        }
        if self.method == "kmeans":
            return ClassStructure(**common)
        sample = None
        if len(rows) > self.max_samples:
            sample = np.sort(np.random.RandomState(seed).choice(len(rows), self.max_samples, False))
        X = _sklearn_rows(H[rows if sample is None else rows[sample]])
        if self.method == "agglomerative":
            from sklearn.cluster import ward_tree

            return ClassStructure(**common, sample=sample, children=ward_tree(X)[0])
        return ClassStructure(**common, sample=sample, reducer=self._umap(X, seed))

    def _check_structure(
        self, structure: Sequence[ClassStructure], counts: np.ndarray, seeds: list[int], d: int
    ) -> list[ClassStructure]:
        got = list(structure)
        m = int(self.max_samples)
        want = [(self.method, m, s, int(k), d) for s, k in zip(seeds, counts, strict=True)]
        have = [(st.method, st.max_samples, st.seed, st.n_rows, st.n_features) for st in got]
        if have != want:
            raise SubclassError(
                "structure was made by another fit (method, max_samples, seed, rows per class "
                f"or columns differ: {have} vs this fit's {want}); pass the structure_ of a fit "
                "with the same method, max_samples, random_state, H and y, or None"
            )
        return got

    @staticmethod
    def _umap(X: np.ndarray, seed: int) -> Any:
        try:
            import umap  # lazy: numba compilation is slow and only this method needs it
        except ImportError as err:  # pragma: no cover
            raise ImportError(
                "method 'umap-kmeans' needs umap-learn: pip install umap-learn"
            ) from err
        n_comp = min(5, max(1, len(X) - 2))
        return umap.UMAP(
            n_components=n_comp,
            n_neighbors=max(2, min(15, len(X) - 1)),
            init="spectral" if len(X) > n_comp + 2 else "random",
            random_state=seed,
            n_jobs=1,  # a seed forces one thread anyway; saying so avoids umap's warning
        ).fit(X)

    def _nearest_center(self, c: int, X: np.ndarray) -> np.ndarray:
        """Code within class c of each row of X (a block of H's rows)."""
        reducer = self.reducers_[c]
        if reducer is not None:
            X = reducer.transform(_sklearn_rows(X))
        return _nearest(np.asarray(X), self.centers_[c])

    def assign(self, H: Any, y: Any, chunk_size: int | None = None, **kw: Any) -> np.ndarray:
        """Global pseudo-subclass id of each example within its own class y, (n,).

        Only a row's own class places it (the same answer as the nearest centroid of every
        class, C times cheaper): UMAP + k-means transforms each row once, and a class's own
        training rows, when UMAP saw all of them, come back from its embedding as they are.
        """
        H = self._check_input(H)
        y = self._check_own_class(y, H.shape[0])
        out = np.empty(len(y), dtype=np.int64)
        step = _ASSIGN_CHUNK if chunk_size is None else _check_chunk_size(chunk_size, len(y))
        for c in range(self.n_classes_):
            rows = np.flatnonzero(y == c)
            for sl, block in _blocks(H, rows, step):
                out[rows[sl]] = self.offsets_[c] + self._nearest_center(c, block)
        return out

    def _codes(self, H: np.ndarray, chunk_size: int | None = None) -> list[np.ndarray]:
        out = [np.empty(H.shape[0], dtype=np.int64) for _ in self.sizes_]
        step = _ASSIGN_CHUNK if chunk_size is None else _check_chunk_size(chunk_size, H.shape[0])
        for sl, block in _blocks(H, None, step):
            for c in range(self.n_classes_):
                out[c][sl] = self._nearest_center(c, block)
        return out
