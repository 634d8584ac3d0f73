"""From a ``SubclassSpec`` to an estimator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..config import SubclassSpec
from ._base import _SubclasserBase
from ._validation import SubclassError
from .baselines import LatentSubclasses, ManualSubclasses
from .clusters import ClassStructure, ClusterSubclasses
from .lelp import LELPSubclasses, assign_from_coordinates, targets_from_coordinates
from .statistics import ClassStats

#: Methods built on ``LELPSubclasses`` (soft targets that take a subclass temperature beta).
LELP_METHODS = ("lelp", "pca", "random")


def spec_directions(spec: SubclassSpec) -> list[list[int] | None] | None:
    """``spec.directions`` as ``LELPSubclasses`` takes it: an empty list for a class means
    that class's top S_c (the app's "leave empty for the top S"), and a list that is empty
    for every class (or empty itself) means no choice at all, so the same as None."""
    if spec.method == "random" or not spec.directions:
        return None
    dirs: list[list[int] | None] = [list(d) if d else None for d in spec.directions]
    return None if all(d is None for d in dirs) else dirs


def make_subclasser(spec: SubclassSpec, latent: Any = None, manual: Any = None) -> _SubclasserBase:
    """The estimator a ``SubclassSpec`` describes (unfitted).

    ``latent``: training-row values of ``spec.latent_col`` (method "oracle");
    ``manual``: training-row group ids (method "manual").
    """
    m = spec.method
    if m in LELP_METHODS:
        return LELPSubclasses(
            n_subclasses=spec.n_subclasses,
            directions=spec_directions(spec),
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


def fit_subclasser(
    spec: SubclassSpec,
    H: Any,
    y: Any,
    *,
    W: Any = None,
    latent: Any = None,
    manual: Any = None,
    class_stats: ClassStats | None = None,
    structure: Sequence[ClassStructure] | None = None,
) -> _SubclasserBase:
    """The fitted estimator a ``SubclassSpec`` describes: the one path from a spec to a
    subclasser, so the app's preview and training build the same pseudo-subclasses.

    Parameters
    ----------
    H : (n, d) training embeddings (float16 memmaps are read in blocks).
    y : (n,) class of each row (labels or teacher argmax, per ``spec.class_source``).
    W : (C, d) teacher head weight (LELP's null space).
    latent, manual : see ``make_subclasser`` ("oracle" and "manual").
    class_stats : ``class_statistics(H, y)``, reused by LELP methods when given (the app
        caches it across settings).
    structure : ``structure_`` of an earlier clustering fit of the same method and seed at
        any S, reused by clustering methods (the app keeps it, so a new S skips Ward's tree
        and UMAP).
    """
    sub = make_subclasser(spec, latent=latent, manual=manual)
    if isinstance(sub, LatentSubclasses):
        return sub.fit(H, y, latent=latent)
    if isinstance(sub, LELPSubclasses):
        return sub.fit(H, y, W=W, class_stats=class_stats)
    if isinstance(sub, ClusterSubclasses):
        return sub.fit(H, y, W=W, structure=structure)
    return sub.fit(H, y, W=W)


def spec_targets(
    sub: _SubclasserBase,
    spec: SubclassSpec,
    H: Any,
    Z: Any,
    tau: float,
    coords: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Training targets ``(n, sum S_c)`` of a fitted subclasser at teacher temperature
    ``tau`` (and ``spec.beta`` for LELP methods). ``coords``: LELP coordinates of these rows
    already computed (the app caches them so moving beta or tau skips the projection)."""
    if spec.method not in LELP_METHODS:
        return np.asarray(sub.targets(H, Z, tau=tau))
    if coords is not None:
        return np.asarray(targets_from_coordinates(coords, Z, tau=tau, beta=spec.beta))
    return np.asarray(sub.targets(H, Z, tau=tau, beta=spec.beta))


def spec_targets_and_assignment(
    sub: _SubclasserBase, spec: SubclassSpec, H: Any, Z: Any, tau: float, y: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``spec_targets`` and ``sub.assign(H, y)`` of the same rows, equal to those two calls;
    LELP methods project H once for both (one pass over a 1.6M-row memmap, not two)."""
    if spec.method not in LELP_METHODS:
        return spec_targets(sub, spec, H, Z, tau), np.asarray(sub.assign(H, y))
    assert isinstance(sub, LELPSubclasses)
    coords = sub.coordinates(H)
    y = sub._check_own_class(y, coords[0].shape[0])
    return spec_targets(sub, spec, H, Z, tau, coords=coords), assign_from_coordinates(coords, y)


def new_row_targets(
    sub: _SubclasserBase, spec: SubclassSpec, H: Any, Z: Any, tau: float, latent: Any = None
) -> np.ndarray:
    """``spec_targets`` of rows the subclasser was not fitted on (transfer rows), ``(n, sum
    S_c)``. LELP and clustering methods treat every row alike; the keyed ones look their key
    up: ``latent`` (the rows' values of the oracle's column: a value class c did not show
    goes to the nearest subclass of class c) and, for manual groups, no group (-1: class c's
    "rest" subclass where it has one, else the nearest)."""
    if isinstance(sub, LatentSubclasses):
        if latent is None:
            raise SubclassError("method 'oracle' needs the latent values of these rows (latent=)")
        return np.asarray(sub.targets(H, Z, tau=tau, latent=latent))
    if isinstance(sub, ManualSubclasses):
        none = np.full(int(np.shape(H)[0]), -1, dtype=np.int64)
        return np.asarray(sub.targets(H, Z, tau=tau, assignment=none))
    return spec_targets(sub, spec, H, Z, tau)
