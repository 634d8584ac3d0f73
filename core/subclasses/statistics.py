"""Per-class statistics and the linear algebra LELP fits from (streamed over H)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array
from threadpoolctl import threadpool_limits

from ._validation import (
    _FAST_CHUNK,
    _FAST_FIT_ROWS,
    _FIT_CHUNK,
    _FLOATS,
    _RANK_RTOL,
    SubclassError,
    _check_embeddings,
    _check_labels,
    _class_counts,
)

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
    """Eigenvalues (descending, clipped at 0) and sign-fixed eigenvectors of a symmetric PSD.

    One BLAS thread: a d x d (d ~ 384) problem gains nothing from threads, and on a busy
    2-core machine OpenBLAS's threads wait on each other: 1.9 s instead of 15 ms per call in
    ``lelp subclasses`` at 1.6M rows (bench/results/speed.md)."""
    with threadpool_limits(limits=1, user_api="blas"):
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

    def to_array(self) -> np.ndarray:
        """The statistics as one float64 array ``(C, d + 2, d)`` (to be stored): per class,
        row 0 its mean, rows 1..d its scatter, row d + 1 its count (first entry)."""
        d = self.n_features
        a = np.zeros((len(self.counts), d + 2, d))
        for c, (mean, scatter) in enumerate(zip(self.means, self.scatters, strict=True)):
            a[c, 0], a[c, 1 : d + 1], a[c, d + 1, 0] = mean, scatter, self.counts[c]
        return a

    @classmethod
    def from_array(cls, a: np.ndarray) -> ClassStats:
        """The statistics ``to_array`` wrote (what a fit on the same H and y would compute)."""
        a = np.asarray(a, dtype=np.float64)
        d = a.shape[2]
        if a.ndim != 3 or a.shape[1] != d + 2:
            raise SubclassError(f"class statistics must have shape (C, d + 2, d), got {a.shape}")
        counts = a[:, d + 1, 0].astype(np.int64)
        return cls(counts, [m.copy() for m in a[:, 0]], [S.copy() for S in a[:, 1 : d + 1]], d)

    def projected(self, c: int, P: np.ndarray | None) -> tuple[Any, Any, Any, Any]:
        """Class c's (mean, scatter, eigenvalues, eigenvectors) after the projector P (raw
        when None); eigenpairs in descending order. Memoised: the d x d products and the
        eigen-decomposition are the costly part of a refit once H has been read."""
        # the digest is only a memo key (not security); .data: the array's bytes as a Buffer
        digest = (
            "raw"
            if P is None
            else hashlib.sha1(np.ascontiguousarray(P).data, usedforsecurity=False).hexdigest()
        )
        key = (c, digest)
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
