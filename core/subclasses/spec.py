"""From a ``SubclassSpec`` to an estimator."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import SubclassSpec
from ._base import _SubclasserBase
from ._validation import SubclassError
from .baselines import ClusterSubclasses, LatentSubclasses, ManualSubclasses
from .lelp import LELPSubclasses

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
