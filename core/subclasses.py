"""Pseudo-subclasses: LELP projections (../shared/LELP.md) and the paper's baselines.

Every builder is a scikit-learn style estimator with the same surface, so the pipeline, the
CLI and the app never branch on the method:

- ``fit(H, y, W=None) -> self`` learns per-class structure from the training embeddings;
- ``assign(H, y) -> (n,)`` global pseudo-subclass id of each example within its own class;
- ``targets(H, Z, tau=1.0, beta=None) -> (n, sum S_c)`` the C x S target, class-major;
- ``sizes_`` (S_c per class) and ``offsets_`` (length C + 1; class c owns columns
  ``offsets_[c]:offsets_[c + 1]``).

``LELPSubclasses`` gives soft targets (Eq. 5 of Loo et al. 2024); ``ClusterSubclasses``,
``LatentSubclasses`` (the oracle) and ``ManualSubclasses`` give hard ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg
from scipy.special import entr, log_softmax
from sklearn.base import BaseEstimator
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from .config import SubclassSpec

__all__ = [
    "ClusterSubclasses",
    "LELPSubclasses",
    "LatentSubclasses",
    "ManualSubclasses",
    "SubclassError",
    "class_ids",
    "make_subclasser",
    "recovery_scores",
    "target_entropy",
    "targets_from_coordinates",
]

_FLOATS = (np.float64, np.float32, np.float16)
# Rows per block when fit streams over H: bounds the float64 copy to ~50 MB at d = 384.
_FIT_CHUNK = 16_384
# From this many rows, fit accumulates float16/float32 input in float32 (torch's GEMM, 2-3x
# numpy's here) over 65,536-row blocks, each checked for NaN/inf through its own scatter's
# diagonal instead of a full scan: 1.6M x 384 in seconds. Smaller inputs stay exact float64.
_FAST_FIT_ROWS = 200_000
_FAST_CHUNK = 65_536
_TARGET_CHUNK = 32_768
# A direction whose variance is below this fraction of the class's largest variance (times d)
# counts as empty: eigh's round-off on an exact zero is about eps * largest eigenvalue.
_RANK_RTOL = 10 * np.finfo(np.float64).eps


# --------------------------------------------------------------------------- validation


class SubclassError(ValueError):
    """Inputs or settings a subclasser cannot use (S too large, beta <= 0, bad shapes).

    A ``ValueError`` as scikit-learn raises, under its own name so the CLI and the job runner
    can report it as one clear line instead of a traceback; the message says what to change.
    """


def _check_embeddings(H: Any, name: str = "H") -> np.ndarray:
    """2-D float array without copying large float arrays (memmaps stay memmaps).

    Finiteness of big arrays is checked chunk by chunk where they are read (``_blocks``).
    """
    if isinstance(H, np.ndarray) and H.dtype in _FLOATS:
        if H.ndim != 2:
            raise SubclassError(
                f"{name} must be 2-D (n_samples, d); got an array of shape {H.shape}"
            )
        if H.shape[0] < 1:
            raise SubclassError(f"{name} has no rows (shape {H.shape}); pass at least one row")
        if H.shape[1] < 1:
            raise SubclassError(
                f"{name} has no columns (shape {H.shape}); pass embeddings with at least one "
                "feature"
            )
        return H
    return check_array(H, dtype=list(_FLOATS), input_name=name)


def _blocks(H: np.ndarray, rows: np.ndarray | None, chunk: int, name: str = "H") -> Iterator:
    """Yield ``(slice into the output, validated block of H)``; ``rows`` selects rows."""
    n = H.shape[0] if rows is None else len(rows)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        block = H[start:stop] if rows is None else H[rows[start:stop]]
        yield slice(start, stop), check_array(block, dtype=list(_FLOATS), input_name=name)


def _check_chunk_size(chunk_size: int | None, n: int) -> int:
    if chunk_size is None:
        return max(n, 1)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise TypeError(f"chunk_size must be a positive int or None; got {chunk_size!r}")
    if chunk_size < 1:
        raise SubclassError(f"chunk_size must be >= 1 or None; got {chunk_size}")
    return int(chunk_size)


def _check_labels(y: Any, n: int, name: str = "y") -> np.ndarray:
    """Integer class ids 0..C-1, one per row of H."""
    y = column_or_1d(np.asarray(y), warn=False)
    if len(y) != n:
        raise SubclassError(f"{name} has {len(y)} entries but H has {n} rows; pass one per row")
    if y.dtype.kind not in "iub":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise SubclassError(
                f"{name} must hold integer class ids 0..C-1; got dtype {y.dtype} "
                "(map string labels to ids first, e.g. with core.data)"
            )
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise SubclassError(f"{name} must hold class ids >= 0; got {int(y.min())}")
    return y


def _check_positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number; got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise SubclassError(f"{name} must be > 0; got {value!r}")
    return v


def _check_logits(Z: Any, n: int, n_classes: int) -> np.ndarray:
    Z = check_array(Z, dtype=[np.float64, np.float32], input_name="Z")
    if Z.shape != (n, n_classes):
        raise SubclassError(
            f"Z has shape {Z.shape} but expected ({n}, {n_classes}): one row of teacher logits "
            f"per row of H and one column per class the subclasser was fitted on"
        )
    return Z


def _resolve_sizes(n_subclasses: Any, n_classes: int) -> list[int]:
    """One S per class from an int or a per-class list."""
    if isinstance(n_subclasses, (int, np.integer)) and not isinstance(n_subclasses, bool):
        sizes = [int(n_subclasses)] * n_classes
    elif isinstance(n_subclasses, (list, tuple, np.ndarray)):
        sizes = [int(s) for s in n_subclasses]
        if len(sizes) != n_classes:
            raise SubclassError(
                f"n_subclasses has {len(sizes)} entries but y has {n_classes} classes; "
                "pass one int for all classes or one per class"
            )
    else:
        raise TypeError(
            f"n_subclasses must be an int or a list of ints (one per class); got {n_subclasses!r}"
        )
    for c, s in enumerate(sizes):
        if s < 1:
            raise SubclassError(f"n_subclasses must be >= 1 for every class; got {s} for class {c}")
    return sizes


def _class_counts(y: np.ndarray) -> np.ndarray:
    counts = np.bincount(y)
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        raise SubclassError(
            f"class {int(missing[0])} has no examples in y (classes must be 0..C-1, all present); "
            "relabel the classes or add examples"
        )
    return counts


# --------------------------------------------------------------------------- linear algebra


def _sign_fix(V: np.ndarray) -> np.ndarray:
    """Flip each column so its largest-|.| entry is positive (first one on ties).

    SVD and eigh return directions up to sign; fixing it makes equal seeds give equal targets
    on every machine and LAPACK (scikit-learn's PCA does the same for the same reason).
    """
    if V.size == 0:
        return V
    rows = np.argmax(np.abs(V), axis=0)
    signs = np.sign(V[rows, np.arange(V.shape[1])])
    signs[signs == 0] = 1.0
    return V * signs


def _eigh_desc(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, clipped at 0) and sign-fixed eigenvectors of a symmetric PSD."""
    w, v = scipy.linalg.eigh(S, driver="evd")  # divide and conquer: fastest here
    order = np.argsort(w)[::-1]
    return np.clip(w[order], 0.0, None), _sign_fix(v[:, order])


def _rank(eigvals: np.ndarray, d: int) -> int:
    top = float(eigvals[0]) if len(eigvals) else 0.0
    if top <= 0:
        return 0
    return int(np.sum(eigvals > top * max(d, 1) * _RANK_RTOL))


def _random_orthogonal(k: int, rng: np.random.RandomState) -> np.ndarray:
    """A Haar-random k x k orthogonal matrix: QR of a Gaussian with R's diagonal made positive.

    The sign fix makes the result unique given the Gaussian draw, so it does not depend on the
    LAPACK's QR sign convention; RandomState streams are frozen across numpy versions.
    """
    if k == 1:
        return np.ones((1, 1))
    return _orthonormal_columns(rng.standard_normal((k, k)))


def _class_rngs(random_state: Any, n_classes: int) -> list[np.random.RandomState]:
    """One RandomState per class, seeded from ``SeedSequence([seed, c])``.

    Why: with one stream consumed in class order, changing S of class 0 shifted every later
    class's rotation; now class c's draws depend only on the seed and c. A RandomState (or
    None) given as ``random_state`` supplies the seed with one draw. The bit generator is
    MT19937 under RandomState's legacy methods, whose streams numpy keeps frozen.
    """
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise SubclassError(
                f"random_state must be an int >= 0, a RandomState or None; got {random_state}"
            )
        seed = int(random_state)
    else:
        seed = int(check_random_state(random_state).randint(2**31 - 1))
    return [
        np.random.RandomState(np.random.MT19937(np.random.SeedSequence([seed, c])))
        for c in range(n_classes)
    ]


def _orthonormal_columns(A: np.ndarray) -> np.ndarray:
    Q, R = np.linalg.qr(A)
    d = np.sign(np.diag(R))
    d[d == 0] = 1.0
    return Q * d


def _gram32(X: np.ndarray) -> np.ndarray:
    """``X^T X`` of a float32 block, through torch when installed (MKL/oneDNN beat OpenBLAS)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch ships with the app
        return (X.T @ X).astype(np.float64)
    t = torch.from_numpy(X)
    return (t.T @ t).numpy().astype(np.float64)


def _class_scatters(
    H: np.ndarray, y: np.ndarray, n_classes: int, fast: bool
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per class: mean and centred scatter ``(X - m)^T (X - m)`` of its rows, in float64.

    One pass over contiguous row blocks (a memmap is read once, in order, whatever the class
    layout). Each class is centred on a shift ``s_c`` (the mean of its rows in the first block
    that has any), then ``S = sum (x - s)(x - s)^T - n (m - s)(m - s)^T``: as stable as two
    passes because ``m - s`` is small. A column of ones appended to each centred block makes
    one GEMM give the scatter, the column sums and the count. ``fast`` accumulates each block
    in float32 (see ``_FAST_FIT_ROWS``) and reads the next block in a thread while the GEMM
    runs; the sums across blocks are float64 either way.
    """
    from concurrent.futures import ThreadPoolExecutor

    n, d = H.shape
    grams = [np.zeros((d + 1, d + 1)) for _ in range(n_classes)]
    shifts: list[np.ndarray | None] = [None] * n_classes
    chunk = _FAST_CHUNK if fast else _FIT_CHUNK
    work = np.float32 if fast else np.float64

    def prepare(start: int) -> list[tuple[int, np.ndarray]]:
        """Read rows start.. of H, split them by class, cast and centre (with the ones column).
        Runs in one worker thread, in block order, so ``shifts`` has a single writer."""
        block = H[start : start + chunk]
        if not fast:
            block = check_array(block, dtype=list(_FLOATS), input_name="H")
        yb = y[start : start + chunk]
        parts = []
        for c in np.unique(yb):
            raw = block[yb == c]
            if shifts[c] is None:
                shifts[c] = raw.mean(axis=0, dtype=np.float64)
            X = np.empty((len(raw), d + 1), dtype=work)
            X[:, d] = 1.0
            np.subtract(raw, np.asarray(shifts[c], dtype=work), out=X[:, :d])  # cast + centre
            parts.append((int(c), X))
        return parts

    starts = list(range(0, n, chunk))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lelp-read") as pool:
        ahead = pool.submit(prepare, starts[0])
        for k, start in enumerate(starts):
            parts = ahead.result()
            if k + 1 < len(starts):
                ahead = pool.submit(prepare, starts[k + 1])
            for c, X in parts:
                G = _gram32(X) if fast else X.T @ X
                if fast and not np.isfinite(np.diagonal(G)).all():
                    raise SubclassError(
                        f"H contains NaN or infinity (or values too large for float32) in rows "
                        f"{start}..{min(n, start + chunk) - 1}; fix or drop those rows"
                    )
                grams[c] += G
    means, out = [], []
    for c in range(n_classes):
        G = grams[c]
        count = G[d, d]
        delta = G[:d, d] / count
        means.append(np.asarray(shifts[c]) + delta)
        S = G[:d, :d] - count * np.outer(delta, delta)
        out.append((S + S.T) / 2)
    return means, out


@dataclass
class ClassStats:
    """Per-class sufficient statistics of the training embeddings: counts, means, scatters.

    Why: LELP's fit reads H only to build these (one pass over all rows); everything else is
    d x d work. Computing them once with :func:`class_statistics` and passing them to
    ``LELPSubclasses.fit(..., class_stats=...)`` makes a change of S, directions, rotation,
    seed or standardisation cost milliseconds instead of a pass over H, which is what the
    Subspaces page needs. Eigen-decompositions are memoised per (class, projector).
    """

    counts: np.ndarray
    means: list[np.ndarray]
    scatters: list[np.ndarray]
    n_features: int
    _memo: dict[tuple[int, str], tuple[Any, ...]] = field(default_factory=dict, repr=False)

    def projected(self, c: int, P: np.ndarray | None) -> tuple[Any, Any, Any, Any]:
        """Class c's (mean, scatter, eigenvalues, eigenvectors) after the projector P (raw
        when None); eigenpairs in descending order. Memoised: the d x d products and the
        eigen-decomposition are the costly part of a refit once H has been read."""
        key = (c, "raw" if P is None else hashlib.sha1(np.ascontiguousarray(P)).hexdigest())
        if key not in self._memo:
            mean, scatter = self.means[c], self.scatters[c]
            if P is not None:
                mean, scatter = mean @ P, P @ scatter @ P
            self._memo[key] = (mean, scatter, *_eigh_desc(scatter))
        return self._memo[key]


def class_statistics(H: Any, y: Any) -> ClassStats:
    """One pass over ``H`` (n, d) for the per-class means and scatters LELP's fit needs."""
    H = _check_embeddings(H)
    y = _check_labels(y, H.shape[0])
    counts = _class_counts(y)
    fast = H.dtype != np.float64 and H.shape[0] >= _FAST_FIT_ROWS
    means, scatters = _class_scatters(H, y, len(counts), fast)
    return ClassStats(counts, list(means), list(scatters), int(H.shape[1]))


def _null_space_projector(W: Any, d: int, n_classes: int) -> tuple[np.ndarray, int]:
    """The projector P onto directions that leave the logits unchanged, and its rank d - r.

    Built as ``I - V_r V_r^T`` from W's SVD rather than ``I - pinv(W) @ W``: pinv's fixed
    cutoff (1e-15 relative) inverts a singular value that is round-off, e.g. the ~1e-14 one
    of a multinomial logistic regression (its rows sum to ~0), and |W P| then reaches ~0.1.
    The rank r counts singular values above numpy's ``matrix_rank`` tolerance
    ``s_max * max(C, d) * eps`` with eps of W's own dtype (float32 weights carry float32
    round-off); P is then symmetric, idempotent and ``W P ~ 0`` to round-off.
    """
    W = check_array(W, dtype=[np.float64, np.float32], input_name="W")
    eps = float(np.finfo(W.dtype).eps)
    W = W.astype(np.float64)
    if W.shape[1] != d:
        raise SubclassError(
            f"W has {W.shape[1]} columns but H has {d}: W must be the teacher's last-layer "
            f"weight of shape (n_classes, {d})"
        )
    if W.shape[0] != n_classes:
        raise SubclassError(
            f"W has shape {W.shape} but y has {n_classes} classes: pass the teacher's "
            f"last-layer weight of shape ({n_classes}, {d}), one row per class"
        )
    _, s, Vt = np.linalg.svd(W, full_matrices=False)
    r = int(np.sum(s > s.max(initial=0.0) * max(W.shape) * eps))
    Vr = Vt[:r].T
    P = np.eye(d) - Vr @ Vr.T
    return (P + P.T) / 2, d - r


def _nearest(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest center (squared Euclidean) for each row of X."""
    X = X.astype(np.float64, copy=False)
    d2 = (centers**2).sum(1)[None, :] - 2.0 * (X @ centers.T)
    return np.argmin(d2, axis=1)


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


# --------------------------------------------------------------------------- base class


class _SubclasserBase(BaseEstimator):
    """Shared layout (``sizes_``, ``offsets_``) and the checks every method needs."""

    def _set_layout(self, sizes: Sequence[int], n_features: int) -> None:
        self.sizes_ = [int(s) for s in sizes]
        self.offsets_ = np.concatenate([[0], np.cumsum(self.sizes_)]).astype(np.int64)
        self.n_classes_ = len(self.sizes_)
        self.n_outputs_ = int(self.offsets_[-1])
        self.n_features_in_ = int(n_features)

    def _check_input(self, H: Any) -> np.ndarray:
        check_is_fitted(self, "sizes_")
        H = _check_embeddings(H)
        if H.shape[1] != self.n_features_in_:
            raise SubclassError(
                f"H has {H.shape[1]} columns but {type(self).__name__} was fitted on "
                f"{self.n_features_in_}; pass embeddings from the same teacher"
            )
        return H

    def _check_own_class(self, y: Any, n: int) -> np.ndarray:
        y = _check_labels(y, n)
        if y.size and y.max() >= self.n_classes_:
            raise SubclassError(
                f"y holds class {int(y.max())} but the subclasser was fitted on "
                f"{self.n_classes_} classes (0..{self.n_classes_ - 1})"
            )
        return y

    @property
    def subclass_names_(self) -> list[str]:
        """``"c/s"`` per output column, class-major (the app's axis labels)."""
        check_is_fitted(self, "sizes_")
        return [f"{c}/{s}" for c, k in enumerate(self.sizes_) for s in range(k)]


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


# --------------------------------------------------------------------------- hard methods


class _HardSubclasser(_SubclasserBase):
    """Hard assignments: class c's block of the target is ``softmax(Z/tau)[c]`` on the
    subclass of class c that x falls into, ``a_c(x)``, smoothed by ``smooth``.

    ``a_c(x)`` is defined for every class, not only x's own (our choice, mirroring LELP where
    ``z_c(x)`` is computed for every class): the nearest subclass of class c.
    """

    smooth: float

    def _codes(
        self, H: np.ndarray, chunk_size: int | None = None, **kw: Any
    ) -> list[np.ndarray]:  # pragma: no cover
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
            X = check_array(H[rows], dtype=[np.float64, np.float32], input_name="H")
            reducer = None
            if self.method == "kmeans":
                km = KMeans(n_clusters=s, n_init=4, random_state=seed).fit(X)
                C = km.cluster_centers_.astype(np.float64)
            else:
                sub = X
                if len(X) > self.max_samples:
                    pick = np.sort(
                        np.random.RandomState(seed).choice(len(X), self.max_samples, False)
                    )
                    sub = X[pick]
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
            for c, C in enumerate(self.centers_):
                X = block if self.reducers_[c] is None else self.reducers_[c].transform(block)
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
            X = check_array(H[rows], dtype=[np.float64, np.float32], input_name="H")
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


# --------------------------------------------------------------------------- helpers


def make_subclasser(spec: SubclassSpec, latent: Any = None, manual: Any = None) -> _SubclasserBase:
    """The estimator a ``SubclassSpec`` describes (unfitted).

    ``latent``: training-row values of ``spec.latent_col`` (method "oracle");
    ``manual``: training-row group ids (method "manual").
    """
    m = spec.method
    if m in ("lelp", "pca", "random"):
        return LELPSubclasses(
            n_subclasses=spec.n_subclasses,
            directions=spec.directions if m != "random" else None,
            beta=spec.beta,
            null_space=spec.null_space,
            rotate=spec.rotate if m != "pca" else False,
            standardize=spec.standardize,
            projection="random" if m == "random" else "pca",
            random_state=spec.seed,
        )
    if m in ClusterSubclasses._METHODS:
        return ClusterSubclasses(method=m, n_subclasses=spec.n_subclasses, random_state=spec.seed)
    if m == "oracle":
        if latent is None:
            raise SubclassError(
                f"method 'oracle' needs the values of the latent column {spec.latent_col!r} for "
                "the training rows; set subclasses.latent_col to a column the dataset has"
            )
        return LatentSubclasses(values=latent)
    if m == "manual":
        if manual is None:
            raise SubclassError(
                "method 'manual' needs a group id per training row (manual=...); draw groups "
                "in the app or choose another method"
            )
        return ManualSubclasses(assignment=np.asarray(manual))
    raise SubclassError(f"unknown subclass method {m!r}")


def class_ids(y: Any, Z: Any, class_source: str = "label") -> np.ndarray:
    """Classes that define the class-conditional sets: ``"label"`` (ground truth ``y``) or
    ``"teacher"`` (argmax of the teacher logits ``Z``, for unlabeled transfer data)."""
    if class_source == "label":
        if y is None:
            raise SubclassError("class_source='label' needs y; pass labels or use 'teacher'")
        return _check_labels(y, len(np.asarray(y)))
    if class_source == "teacher":
        Z = check_array(Z, dtype=[np.float64, np.float32], input_name="Z")
        return np.argmax(Z, axis=1).astype(np.int64)
    raise SubclassError(f"class_source must be 'label' or 'teacher'; got {class_source!r}")


def recovery_scores(assign: Any, y: Any, latent: Any) -> dict[str, Any]:
    """How well pseudo-subclasses recover a known latent column, within each class.

    Returns ``{"ari", "nmi"}`` (class-size-weighted means over classes) and ``"per_class"``:
    ``{str(c): {"ari", "nmi", "n"}}``. Plain floats and ints, ready for JSON.
    """
    a = np.asarray(assign).ravel()
    y = _check_labels(y, len(a))
    v = np.asarray(latent).ravel()
    if len(v) != len(a):
        raise SubclassError(f"latent has {len(v)} entries but assign has {len(a)}")
    # Integer codes (missing values: one category, -1): sklearn's scores hash ints far faster
    # than the strings an object column would become.
    v = pd.factorize(v.astype(object))[0]
    per: dict[str, dict[str, float | int]] = {}
    for c in np.unique(y):
        rows = y == c
        per[str(int(c))] = {
            "ari": float(adjusted_rand_score(v[rows], a[rows])),
            "nmi": float(normalized_mutual_info_score(v[rows], a[rows])),
            "n": int(rows.sum()),
        }
    ns = np.array([p["n"] for p in per.values()], dtype=float)
    mean = lambda key: float(np.dot([p[key] for p in per.values()], ns) / ns.sum())  # noqa: E731
    return {"ari": mean("ari"), "nmi": mean("nmi"), "per_class": per}


def target_entropy(targets: Any) -> np.ndarray:
    """Entropy (nats) of each target row, (n,); 0 log 0 = 0. High = spread-out targets."""
    T = check_array(targets, dtype=[np.float64, np.float32], input_name="targets")
    return entr(T.astype(np.float64)).sum(axis=1)
