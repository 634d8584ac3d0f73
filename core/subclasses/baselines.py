"""The paper's hard-assignment baselines: the shared hard targets, a known latent column (the
oracle) and manual groups; the clustering baselines live in ``clusters``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import log_softmax
from sklearn.utils.validation import check_array, check_is_fitted

from ._base import _SubclasserBase
from ._validation import (
    SubclassError,
    _check_embeddings,
    _check_labels,
    _check_logits,
    _check_positive,
    _class_counts,
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
