"""The layout and checks every pseudo-subclass builder shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._validation import SubclassError, _check_embeddings, _check_labels

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
