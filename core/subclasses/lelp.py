"""LELP pseudo-subclasses (Loo et al. 2024, ../shared/LELP.md): soft targets from
per-class principal directions, and the pure functions the app reuses on cached coordinates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import log_softmax

from ._base import _SubclasserBase
from ._validation import (
    _FAST_CHUNK,
    _FAST_FIT_ROWS,
    _TARGET_CHUNK,
    SubclassError,
    _blocks,
    _check_chunk_size,
    _check_labels,
    _check_logits,
    _check_positive,
    _class_counts,
    _resolve_sizes,
)
from .statistics import (
    ClassStats,
    _class_rngs,
    _null_space_projector,
    _orthonormal_columns,
    _random_orthogonal,
    _rank,
    class_statistics,
)

# --------------------------------------------------------------------------- targets


def targets_from_coordinates(
    coords: Sequence[np.ndarray], Z: Any, tau: float = 1.0, beta: float = 1.0
) -> np.ndarray:
    """LELP targets (Eq. 5) from precomputed coordinates: a pure function of its inputs.

    Split out of ``LELPSubclasses.targets`` so the app can change ``tau`` or ``beta`` live
    without redoing the projection. Computed in log space
    (``log_softmax(Z/tau)[c] + log_softmax(z_c/beta)``) so large logits never overflow.

    Parameters
    ----------
    coords : list of C arrays, each (n, S_c), from ``LELPSubclasses.coordinates``.
    Z : (n, C) teacher logits.
    tau, beta : teacher and subclass temperatures, > 0.

    Returns
    -------
    (n, sum S_c) non-negative rows summing to 1, class-major; float32 if the coordinates are.

    Example
    -------
    >>> t = targets_from_coordinates([np.zeros((1, 2)), np.zeros((1, 1))], np.zeros((1, 2)))
    >>> t.round(2).tolist()
    [[0.25, 0.25, 0.5]]
    """
    tau = _check_positive("tau", tau)
    beta = _check_positive("beta", beta)
    coords = [np.asarray(z) for z in coords]
    if not coords or any(z.ndim != 2 for z in coords):
        raise SubclassError("coords must be a non-empty list of (n, S_c) arrays, one per class")
    n = coords[0].shape[0]
    if any(z.shape[0] != n for z in coords):
        raise SubclassError(f"coords have different row counts {[z.shape[0] for z in coords]}")
    Z = _check_logits(Z, n, len(coords))
    dtype = np.result_type(*[z.dtype for z in coords], np.float32)
    sizes = [z.shape[1] for z in coords]
    out = np.empty((n, sum(sizes)), dtype=dtype)
    # Row blocks keep the temporaries in cache: 1.6M rows x 8 subclasses take well under 1 s.
    for start in range(0, n, _TARGET_CHUNK):
        sl = slice(start, min(n, start + _TARGET_CHUNK))
        log_pc = log_softmax(Z[sl].astype(dtype, copy=False) / dtype.type(tau), axis=1)
        col = 0
        for c, z in enumerate(coords):
            s = z.shape[1]
            # log_softmax(z / beta) + log p_c, with the row max subtracted before exp.
            t = z[sl].astype(dtype, copy=True)
            t /= dtype.type(beta)
            t -= t.max(axis=1, keepdims=True)
            t -= np.log(np.exp(t).sum(axis=1, keepdims=True))
            t += log_pc[:, c : c + 1]
            np.exp(t, out=out[sl, col : col + s])
            col += s
    return out


def assign_from_coordinates(coords: Sequence[np.ndarray], y: Any) -> np.ndarray:
    """Global pseudo-subclass id ``offset_c + argmax_s z_c(x)`` for each row's own class c.

    A pure function of cached coordinates (LELP step 8), so the app recolours the map after a
    beta or tau change without touching H.
    """
    y = np.asarray(y)
    offsets = np.concatenate([[0], np.cumsum([z.shape[1] for z in coords])])
    out = np.empty(len(y), dtype=np.int64)
    for c, z in enumerate(coords):
        rows = np.flatnonzero(y == c)
        out[rows] = offsets[c] + np.argmax(z[rows], axis=1)
    return out


# --------------------------------------------------------------------------- LELP


class LELPSubclasses(_SubclasserBase):
    """LELP pseudo-subclasses: per-class principal directions of the teacher's embeddings.

    Why: a few-class teacher's class probabilities carry little "dark knowledge"; directions
    inside each class, away from what the logits already show (the null space of W), turn
    into ``sum_c S_c`` soft pseudo-subclasses (Loo et al. 2024, ../shared/LELP.md).

    Parameters
    ----------
    n_subclasses : int or list of int (one per class), S_c.
    directions : None, or per class a list of 0-based principal-component indices (or None
        for that class's top S_c); then ``S_c = len(directions[c])``.
    beta : subclass temperature used by ``targets`` when it is not given there; > 0.
    null_space : project onto the null space of W before the PCA (needs ``W`` in ``fit``).
    rotate : multiply each V_c by a seeded random orthonormal S_c x S_c matrix (equalises the
        PCA variances in expectation); ``rotate=False`` is plain PCA.
    standardize : divide each coordinate by its standard deviation (ddof=0) over the class's
        examples, which makes ``beta`` scale-free (our choice).
    projection : ``"pca"`` or ``"random"`` (random orthonormal directions in the (null) space:
        the paper's Appendix C ablation; ``directions`` must then be None).
    random_state : int, RandomState or None; the only source of randomness. Class c draws
        from its own stream ``SeedSequence([seed, c])``, so changing S_c of one class leaves
        the other classes' directions and rotations unchanged.

    Attributes
    ----------
    sizes_ : list of S_c.  offsets_ : (C + 1,) column offsets, class-major.
    components_ : list of (d, S_c) V_c after rotation (columns orthonormal, in range(P)).
    means_ : list of (d,) mu_c, the class means in the projected space.
    scales_ : list of (S_c,) standard deviations (ones when ``standardize`` is off).
    rotations_ : list of (S_c, S_c) Q_c (identity when ``rotate`` is off).
    explained_variance_, explained_variance_ratio_ : list of (min(n_c, d),) spectra after the
        null-space projection (variance with ddof=1, like scikit-learn's PCA).
    explained_variance_ratio_raw_ : the same without the projection (the app's comparison).
    ranks_ : list of int, the rank of each class's (projected) centred embeddings.
    projector_ : (d, d) P, or None when ``null_space`` is off.

    Notes
    -----
    The PCA is the eigendecomposition of the class's centred scatter matrix ``P S_c P``
    (equal to the SVD of ``G_c - mu_c``: right singular vectors = eigenvectors, s^2 =
    eigenvalues); it is accumulated in row blocks so ``fit`` streams over a float16 memmap.
    Sign convention: each principal direction is flipped so its largest-|.| entry is positive.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> H, y = rng.normal(size=(40, 5)), np.repeat([0, 1], 20)
    >>> W = rng.normal(size=(2, 5))
    >>> sub = LELPSubclasses(n_subclasses=2).fit(H, y, W)
    >>> sub.targets(H, H @ W.T).shape
    (40, 4)
    """

    def __init__(
        self,
        n_subclasses: int | list[int] = 4,
        directions: list[list[int] | None] | None = None,
        beta: float = 1.0,
        null_space: bool = True,
        rotate: bool = True,
        standardize: bool = True,
        projection: str = "pca",
        random_state: int | np.random.RandomState | None = 0,
    ) -> None:
        self.n_subclasses = n_subclasses
        self.directions = directions
        self.beta = beta
        self.null_space = null_space
        self.rotate = rotate
        self.standardize = standardize
        self.projection = projection
        self.random_state = random_state

    def _resolve(self, n_classes: int) -> tuple[list[int], list[list[int] | None]]:
        if self.projection not in ("pca", "random"):
            raise SubclassError(f"projection must be 'pca' or 'random'; got {self.projection!r}")
        if self.directions is None:
            return _resolve_sizes(self.n_subclasses, n_classes), [None] * n_classes
        if self.projection == "random":
            raise SubclassError(
                "directions picks principal components, so it needs projection='pca'; "
                f"got projection='random' with directions={self.directions!r}"
            )
        if len(self.directions) != n_classes:
            raise SubclassError(
                f"directions has {len(self.directions)} entries but y has {n_classes} classes; "
                "give one list of PC indices (or None) per class"
            )
        default = _resolve_sizes(self.n_subclasses, n_classes)
        sizes: list[int] = []
        dirs: list[list[int] | None] = []
        for c, dc in enumerate(self.directions):
            if dc is None:
                sizes.append(default[c])
                dirs.append(None)
                continue
            idx = [int(i) for i in dc]
            if not idx or min(idx) < 0 or len(set(idx)) != len(idx):
                raise SubclassError(
                    f"directions[{c}] must be distinct PC indices >= 0 (0-based); got {dc!r}"
                )
            sizes.append(len(idx))
            dirs.append(idx)
        return sizes, dirs

    def fit(
        self, H: Any, y: Any, W: Any = None, class_stats: ClassStats | None = None
    ) -> LELPSubclasses:
        """Learn V_c, mu_c and the scales from training embeddings ``H`` (n, d), classes ``y``
        (n,) and the teacher's last-layer weight ``W`` (C, d); returns ``self``.

        ``class_stats``: the output of ``class_statistics(H, y)`` for these same H and y;
        given, H is not read again (see :class:`ClassStats`).
        """
        if class_stats is None:
            class_stats = class_statistics(H, y)
        n, d = np.shape(H)
        y = _check_labels(y, n)
        counts = _class_counts(y)
        if class_stats.n_features != d or not np.array_equal(class_stats.counts, counts):
            raise SubclassError(
                "class_stats were computed on other data (feature count or class counts "
                "differ); recompute them with class_statistics(H, y)"
            )
        n_classes = len(counts)
        _check_positive("beta", self.beta)
        sizes, dirs = self._resolve(n_classes)
        for c, s in enumerate(sizes):
            if counts[c] < 2:
                raise SubclassError(
                    f"class {c} has {counts[c]} example(s); LELP needs at least 2 per class "
                    "(add examples or drop the class)"
                )
            if s > min(counts[c] - 1, d):
                raise SubclassError(
                    f"class {c} has {counts[c]} examples and d={d}, so at most "
                    f"{min(counts[c] - 1, d)} pseudo-subclasses fit; requested S={s}: "
                    "lower n_subclasses (or give a per-class list)"
                )
        if self.null_space:
            if W is None:
                raise SubclassError(
                    "null_space=True needs W, the teacher's last-layer weight (n_classes, d): "
                    "pass fit(H, y, W) or set null_space=False"
                )
            P, p_rank = _null_space_projector(W, d, n_classes)
        else:
            P, p_rank = None, d
        rngs = _class_rngs(self.random_state, n_classes)

        fits = [
            self._fit_class(
                class_stats, int(counts[c]), d, c, sizes[c], dirs[c], P, p_rank, rngs[c]
            )
            for c in range(n_classes)
        ]
        comps, means, scales, rots, ranks, ev, evr, evr_raw = (
            list(t) for t in zip(*fits, strict=True)
        )

        self._set_layout(sizes, d)
        self.components_ = comps
        self.means_ = means
        self.scales_ = scales
        self.rotations_ = rots
        self.ranks_ = ranks
        self.explained_variance_ = ev
        self.explained_variance_ratio_ = evr
        self.explained_variance_ratio_raw_ = evr_raw
        self.projector_ = P
        self.class_counts_ = counts
        # z(x) = h @ (P V / s) - mu @ V / s for all classes in one matmul (LELP step 4).
        PV = [V if P is None else P @ V for V in comps]
        self._A = np.concatenate([pv / sc for pv, sc in zip(PV, scales, strict=True)], axis=1)
        self._b = np.concatenate(
            [(m @ pv) / sc for m, pv, sc in zip(means, PV, scales, strict=True)]
        )
        return self

    def _fit_class(
        self,
        stats: ClassStats,
        n_c: int,
        d: int,
        c: int,
        s: int,
        idx: list[int] | None,
        P: np.ndarray | None,
        p_rank: int,
        rng: np.random.RandomState,
    ) -> tuple[Any, ...]:
        """LELP steps 1-4 for class c: (V_c, mu_c, scale_c, Q_c, rank, ev, ev ratio, raw)."""
        raw_vals = stats.projected(c, None)[2]
        mu, scatter, vals, vecs = stats.projected(c, P)
        if P is None:
            space, fix = "", "lower n_subclasses"
        else:
            space = "after the null-space projection "
            fix = "lower n_subclasses or set null_space=False"
        rank = _rank(vals, d)
        if self.projection == "pca":
            pcs = idx if idx is not None else list(range(s))
            if max(pcs) >= rank:
                what = (
                    f"directions[{c}]={pcs} has an index >= {rank}"
                    if idx is not None
                    else f"requested S={s}"
                )
                raise SubclassError(
                    f"class {c}: its {n_c} embeddings {space}span only {rank} directions "
                    f"(PC indices 0..{rank - 1}); {what}: {fix}"
                )
            V = vecs[:, pcs]
        else:
            if s > p_rank:
                raise SubclassError(
                    f"class {c}: the null space of W has {p_rank} dimensions, fewer than the "
                    f"requested S={s}: {fix}"
                )
            A = rng.standard_normal((d, s))
            V = _orthonormal_columns(A if P is None else P @ A)
        Q = _random_orthogonal(s, rng) if self.rotate else np.eye(s)
        V = V @ Q
        # Per-direction variance over class-c examples (ddof=0) straight from the scatter.
        var = np.einsum("ij,ij->j", scatter @ V, V) / n_c
        if self.standardize:
            sd = np.sqrt(np.clip(var, 0.0, None))
            scale = np.where(sd > np.sqrt(vals[0] / n_c) * 1e-12, sd, 1.0)  # guard zero std
        else:
            scale = np.ones(s)
        k = min(n_c, d)
        total, raw_total = vals.sum(), raw_vals.sum()
        ratio = vals[:k] / total if total > 0 else np.zeros(k)
        raw_ratio = raw_vals[:k] / raw_total if raw_total > 0 else np.zeros(k)
        return V, mu, scale, Q, rank, vals[:k] / (n_c - 1), ratio, raw_ratio

    def _coords_matrix(self, H: Any, chunk_size: int | None) -> np.ndarray:
        H = self._check_input(H)
        dtype = np.float64 if H.dtype == np.float64 else np.float32
        A, b = self._A.astype(dtype), self._b.astype(dtype)
        n = H.shape[0]
        out = np.empty((n, self.n_outputs_), dtype=dtype)
        step = _check_chunk_size(chunk_size, n)
        if n < _FAST_FIT_ROWS:
            if chunk_size is None:
                # Row blocks whatever the dtype: a float16 memmap is cast one block at a time,
                # and float16 and float32 copies of the same H give bit-identical coordinates
                # (BLAS results can depend on the number of rows multiplied at once).
                step = min(step, _TARGET_CHUNK)
            for sl, block in _blocks(H, None, step):
                np.matmul(block.astype(dtype, copy=False), A, out=out[sl])
                out[sl] -= b
            return out
        # Large input: never cast all of H at once, two blocks at a time in threads (numpy
        # releases the GIL), and validate through the output (a NaN or inf anywhere in a row
        # of H makes that row's coordinates non-finite) instead of a second full scan of H.
        from concurrent.futures import ThreadPoolExecutor

        step = min(step, _FAST_CHUNK)

        def project(start: int) -> bool:
            sl = slice(start, min(n, start + step))
            np.matmul(np.asarray(H[sl]).astype(dtype, copy=False), A, out=out[sl])
            out[sl] -= b
            return bool(np.isfinite(out[sl]).all())

        starts = range(0, n, step)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="lelp-project") as pool:
            for start, ok in zip(starts, pool.map(project, starts), strict=True):
                if not ok:
                    raise SubclassError(
                        f"H contains NaN or infinity in rows {start}..{min(n, start + step) - 1}"
                        "; fix or drop those rows"
                    )
        return out

    def _split(self, M: np.ndarray) -> list[np.ndarray]:
        return [M[:, self.offsets_[c] : self.offsets_[c + 1]] for c in range(self.n_classes_)]

    def coordinates(self, H: Any, chunk_size: int | None = None) -> list[np.ndarray]:
        """``z_c(x)`` for every example and every class: a list of C arrays (n, S_c).

        Computed as ``H @ (P V_c) - mu_c @ V_c`` (P is symmetric and idempotent and mu_c is
        already projected), so no (n, d) projected copy is formed. ``chunk_size`` processes H
        in row blocks (float16 / memmap input is cast one block at a time). Float64 input
        gives float64 coordinates; other floats give float32.
        """
        return self._split(self._coords_matrix(H, chunk_size))

    def assign(self, H: Any, y: Any, chunk_size: int | None = None) -> np.ndarray:
        """Global pseudo-subclass id ``offsets_[y] + argmax_s z_y(x)`` (LELP step 8), (n,)."""
        M = self._coords_matrix(H, chunk_size)
        y = self._check_own_class(y, M.shape[0])
        return assign_from_coordinates(self._split(M), y)

    def targets(
        self,
        H: Any,
        Z: Any,
        tau: float = 1.0,
        beta: float | None = None,
        chunk_size: int | None = None,
    ) -> np.ndarray:
        """Eq. 5 targets ``softmax(Z/tau)[c] * softmax(z_c/beta)[s]``, (n, sum S_c).

        ``beta=None`` uses the estimator's ``beta``. With ``chunk_size`` neither H nor the
        coordinates are held in full beyond one block plus the output.
        """
        beta = self.beta if beta is None else beta
        H = self._check_input(H)
        n = H.shape[0]
        Z = _check_logits(Z, n, self.n_classes_)
        step = _check_chunk_size(chunk_size, n)
        if step >= n:
            return targets_from_coordinates(self.coordinates(H), Z, tau, beta)
        out: np.ndarray | None = None
        for start in range(0, n, step):
            sl = slice(start, min(n, start + step))
            part = targets_from_coordinates(self.coordinates(H[sl]), Z[sl], tau, beta)
            if out is None:
                out = np.empty((n, part.shape[1]), dtype=part.dtype)
            out[sl] = part
        assert out is not None
        return out
