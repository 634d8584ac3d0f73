"""The paper's hard-assignment baselines: clustering, a known latent column (the oracle)
and manual groups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import log_softmax
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted

from ._base import _SubclasserBase
from ._validation import (
    SubclassError,
    _blocks,
    _check_chunk_size,
    _check_embeddings,
    _check_labels,
    _check_logits,
    _check_positive,
    _class_counts,
    _resolve_sizes,
)
from .statistics import _nearest


def _sklearn_rows(X: Any) -> np.ndarray:
    """Rows as scikit-learn and UMAP take them: float16 (a stored memmap's rows) becomes
    float32, what the pipeline passed before H stayed float16; float32 and float64 stay;
    other input becomes float64, as before."""
    dtype = np.float32 if getattr(X, "dtype", None) == np.float16 else [np.float64, np.float32]
    return check_array(X, dtype=dtype, input_name="H")


def _hard_targets(
    codes: Sequence[np.ndarray], sizes: Sequence[int], Z: np.ndarray, tau: float, smooth: float
) -> np.ndarray:
    """``softmax(Z/tau)[c] * ((1 - smooth) * onehot(a_c(x)) + smooth / S_c)``, class-major."""
    pc = np.exp(log_softmax(Z.astype(np.float64) / tau, axis=1))
    n = Z.shape[0]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    out = np.empty((n, offsets[-1]))
    rows = np.arange(n)
    for c, (a, s) in enumerate(zip(codes, sizes, strict=True)):
        block = out[:, offsets[c] : offsets[c + 1]]
        block[:] = (pc[:, c] * (smooth / s))[:, None]
        block[rows, a] += pc[:, c] * (1.0 - smooth)
    return out


# --------------------------------------------------------------------------- hard methods


class _HardSubclasser(_SubclasserBase):
    """Hard assignments: class c's block of the target is ``softmax(Z/tau)[c]`` on the
    subclass of class c that x falls into, ``a_c(x)``, smoothed by ``smooth``.

    ``a_c(x)`` is defined for every class, not only x's own (our choice, mirroring LELP where
    ``z_c(x)`` is computed for every class): the nearest subclass of class c.
    """

    smooth: float

    # (H, *args, **kw): each method takes its own keywords (latent=, assignment=)
    def _codes(self, H: np.ndarray, *args: Any, **kw: Any) -> list[np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _check_smooth(self) -> float:
        s = float(self.smooth)
        if not 0.0 <= s < 1.0:
            raise SubclassError(f"smooth must be in [0, 1); got {self.smooth!r}")
        return s

    def assign(self, H: Any, y: Any, chunk_size: int | None = None, **kw: Any) -> np.ndarray:
        """Global pseudo-subclass id of each example within its own class y, (n,)."""
        H = self._check_input(H)
        y = self._check_own_class(y, H.shape[0])
        codes = self._codes(H, chunk_size, **kw)
        a = np.stack(codes)[y, np.arange(len(y))]
        return self.offsets_[y] + a

    def targets(
        self,
        H: Any,
        Z: Any,
        tau: float = 1.0,
        beta: float | None = None,
        chunk_size: int | None = None,
        **kw: Any,
    ) -> np.ndarray:
        """``softmax(Z/tau)[c] * ((1 - smooth) onehot(a_c(x)) + smooth / S_c)``, (n, sum S_c).

        ``smooth`` spreads that share of each class's mass uniformly over its subclasses
        (label smoothing within the class); ``beta`` is accepted so every subclasser takes
        the same call, and ignored (the assignment is hard). ``chunk_size`` bounds the rows
        clustering methods assign at once (keyed methods only look values up).
        """
        tau = _check_positive("tau", tau)
        H = self._check_input(H)
        Z = _check_logits(Z, H.shape[0], self.n_classes_)
        codes = self._codes(H, chunk_size, **kw)
        return _hard_targets(codes, self.sizes_, Z, tau, self._check_smooth())


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

    Every example (training rows included) is assigned to the nearest centroid, so training
    and new rows are treated alike.

    Memory: scikit-learn and UMAP need float32 (or float64). From a float16 memmap, fit
    casts only what they read (kmeans: one class's rows at a time; agglomerative and UMAP:
    their ``max_samples`` rows); assignment casts one block of rows at a time.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> H, y = rng.normal(size=(40, 3)), np.repeat([0, 1], 20)
    >>> int(ClusterSubclasses(n_subclasses=2).fit(H, y).assign(H, y).max())
    3
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

    def fit(self, H: Any, y: Any, W: Any = None) -> ClusterSubclasses:
        """Cluster each class of ``H`` (n, d); ``W`` is accepted for API symmetry and unused."""
        from sklearn.cluster import AgglomerativeClustering, KMeans

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
        centers, reducers = [], []
        for c, s in enumerate(sizes):
            rows = np.flatnonzero(y == c)
            seed = int(rng.randint(2**31 - 1))
            reducer = None
            if self.method == "kmeans":
                # KMeans reads every row of the class: a float32 (or float64) copy of them
                X = _sklearn_rows(H[rows])
                km = KMeans(n_clusters=s, n_init=4, random_state=seed).fit(X)
                C = km.cluster_centers_.astype(np.float64)
            else:
                # Ward and UMAP see at most max_samples rows: only those are read and cast
                if len(rows) > self.max_samples:
                    pick = np.sort(
                        np.random.RandomState(seed).choice(len(rows), self.max_samples, False)
                    )
                    rows = rows[pick]
                sub = _sklearn_rows(H[rows])
                if self.method == "agglomerative":
                    lab = AgglomerativeClustering(n_clusters=s, linkage="ward").fit_predict(sub)
                    C = np.stack([sub[lab == k].mean(0) for k in range(s)]).astype(np.float64)
                else:
                    reducer = self._umap(sub, seed)
                    E = reducer.embedding_
                    km = KMeans(n_clusters=s, n_init=4, random_state=seed).fit(E)
                    C = km.cluster_centers_.astype(np.float64)
            centers.append(C)
            reducers.append(reducer)
        self._set_layout(sizes, d)
        self.centers_ = centers
        self.reducers_ = reducers
        return self

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

    def _codes(self, H: np.ndarray, chunk_size: int | None = None) -> list[np.ndarray]:
        out = [np.empty(H.shape[0], dtype=np.int64) for _ in self.sizes_]
        step = 65_536 if chunk_size is None else _check_chunk_size(chunk_size, H.shape[0])
        for sl, block in _blocks(H, None, step):
            if self.reducers_ and any(r is not None for r in self.reducers_):
                block = _sklearn_rows(block)
            for c, C in enumerate(self.centers_):
                reducer = self.reducers_[c]
                X = block if reducer is None else reducer.transform(block)
                out[c][sl] = _nearest(np.asarray(X), C)
        return out


class _KeyedSubclasser(_HardSubclasser):
    """Subclasses named by a key per row (a latent value, a manual group id).

    Class c's subclasses are the distinct keys seen in class c (sorted). A row whose key is
    not among class c's falls to the nearest subclass centroid of class c in H.
    """

    def _fit_keys(self, H: Any, y: Any, keys: Any, name: str) -> None:
        H = _check_embeddings(H)
        n, d = H.shape
        y = _check_labels(y, n)
        counts = _class_counts(y)
        self._check_smooth()
        k = self._as_keys(keys, n, name)
        values, centers = [], []
        for c in range(len(counts)):
            rows = np.flatnonzero(y == c)
            kc = self._order(np.unique(k[rows]))
            X = _sklearn_rows(H[rows])
            centers.append(np.stack([X[k[rows] == v].mean(0) for v in kc]).astype(np.float64))
            values.append(kc)
        self._set_layout([len(v) for v in values], d)
        self.values_ = values
        self.centers_ = centers
        self._fit_keys_arr = k

    @staticmethod
    def _order(uniq: np.ndarray) -> np.ndarray:
        return uniq

    def _as_keys(self, keys: Any, n: int, name: str) -> np.ndarray:
        k = np.asarray(keys)
        if k.ndim != 1 or len(k) != n:
            raise SubclassError(
                f"{name} must have one value per row of H ({n}); got shape {k.shape}"
            )
        return k.astype(str)

    def _keys_for(self, H: np.ndarray, keys: Any, name: str) -> np.ndarray:
        if keys is None:
            if H.shape[0] != len(self._fit_keys_arr):
                raise SubclassError(
                    f"{name}=None means 'the rows given to fit', which had "
                    f"{len(self._fit_keys_arr)} rows, but H has {H.shape[0]}: pass {name}= for "
                    "these rows"
                )
            return self._fit_keys_arr
        return self._as_keys(keys, H.shape[0], name)

    def _codes_from_keys(self, H: np.ndarray, k: np.ndarray) -> list[np.ndarray]:
        codes = []
        for vals, C in zip(self.values_, self.centers_, strict=True):
            sorted_idx = np.argsort(vals)
            pos = np.searchsorted(vals[sorted_idx], k).clip(0, len(vals) - 1)
            code = sorted_idx[pos]
            miss = vals[code] != k
            if miss.any():
                code[miss] = _nearest(np.asarray(H[miss], dtype=np.float64), C)
            codes.append(code.astype(np.int64))
        return codes


class LatentSubclasses(_KeyedSubclasser):
    """Oracle subclasses from a known latent column (the paper's "oracle" row).

    Why: the upper reference for what true subclasses give the student. The subclasses of
    class c are the distinct latent values seen in class c (sorted as strings).

    Parameters
    ----------
    values : (n,) latent values of the training rows; ``fit(..., latent=...)`` overrides it.
    smooth : label smoothing over a class's subclasses, in [0, 1).

    ``assign`` / ``targets`` take ``latent=`` for the rows of H; ``None`` means H holds the
    rows given to ``fit`` in the same order. A value not seen in class c goes to the nearest
    centroid of class c's subclasses.

    Example
    -------
    >>> H, y = np.eye(4), np.array([0, 0, 1, 1])
    >>> LatentSubclasses().fit(H, y, latent=["a", "b", "a", "a"]).sizes_
    [2, 1]
    """

    def __init__(self, values: Any = None, smooth: float = 0.0) -> None:
        self.values = values
        self.smooth = smooth

    def fit(self, H: Any, y: Any, W: Any = None, latent: Any = None) -> LatentSubclasses:
        """Subclasses of each class = its distinct latent values; ``W`` is unused."""
        keys = latent if latent is not None else self.values
        if keys is None:
            raise SubclassError(
                "LatentSubclasses needs the latent values of the training rows: pass "
                "fit(H, y, latent=...) or LatentSubclasses(values=...)"
            )
        self._fit_keys(H, y, keys, "latent")
        return self

    def _codes(
        self, H: np.ndarray, chunk_size: int | None = None, latent: Any = None
    ) -> list[np.ndarray]:
        return self._codes_from_keys(H, self._keys_for(H, latent, "latent"))

    @property
    def subclass_names_(self) -> list[str]:
        check_is_fitted(self, "sizes_")
        return [f"{c}/{v}" for c, vals in enumerate(self.values_) for v in vals]


class ManualSubclasses(_KeyedSubclasser):
    """Subclasses drawn by a user: one integer group id per training row.

    Why: the app lets a user lasso groups on a map and train with them. Class c's subclasses
    are the groups seen in class c, plus a "rest" subclass (last) when some of its rows are
    unassigned (-1).

    Parameters
    ----------
    assignment : (n,) int group ids of the training rows, -1 = unassigned.
    smooth : label smoothing over a class's subclasses, in [0, 1).

    ``assign`` / ``targets`` take ``assignment=`` for other rows (None = the fit rows).

    Example
    -------
    >>> H, y = np.eye(4), np.array([0, 0, 1, 1])
    >>> ManualSubclasses(np.array([3, -1, 3, 3])).fit(H, y).sizes_
    [2, 1]
    """

    def __init__(self, assignment: Any = None, smooth: float = 0.0) -> None:
        self.assignment = assignment
        self.smooth = smooth

    def fit(self, H: Any, y: Any, W: Any = None) -> ManualSubclasses:
        """Subclasses of each class = its group ids (+ "rest"); ``W`` is unused."""
        if self.assignment is None:
            raise SubclassError(
                "ManualSubclasses needs assignment= (one group id per row, -1 = none)"
            )
        self._fit_keys(H, y, self.assignment, "assignment")
        return self

    def _as_keys(self, keys: Any, n: int, name: str) -> np.ndarray:
        k = np.asarray(keys)
        if k.ndim != 1 or len(k) != n:
            raise SubclassError(
                f"{name} must have one value per row of H ({n}); got shape {k.shape}"
            )
        if k.dtype.kind not in "iu" or (k.size and k.min() < -1):
            raise SubclassError(
                f"{name} must hold integer group ids >= 0, or -1 for unassigned; "
                f"got dtype {k.dtype}" + (f", min {k.min()}" if k.dtype.kind in "iuf" else "")
            )
        return k.astype(np.int64)

    @staticmethod
    def _order(uniq: np.ndarray) -> np.ndarray:
        return np.concatenate([uniq[uniq >= 0], uniq[uniq < 0]])  # "rest" (-1) last

    def _codes(
        self, H: np.ndarray, chunk_size: int | None = None, assignment: Any = None
    ) -> list[np.ndarray]:
        return self._codes_from_keys(H, self._keys_for(H, assignment, "assignment"))

    @property
    def subclass_names_(self) -> list[str]:
        check_is_fitted(self, "sizes_")
        return [
            f"{c}/{'rest' if v < 0 else v}" for c, vals in enumerate(self.values_) for v in vals
        ]
