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

from ._validation import SubclassError
from .baselines import LatentSubclasses, ManualSubclasses
from .clusters import ClassStructure, ClusterSubclasses, ward_cut
from .lelp import LELPSubclasses, assign_from_coordinates, targets_from_coordinates
from .scores import class_ids, recovery_scores, target_entropy
from .spec import (
    LELP_METHODS,
    fit_subclasser,
    make_subclasser,
    new_row_targets,
    spec_directions,
    spec_targets,
    spec_targets_and_assignment,
)
from .statistics import ClassStats, class_statistics

__all__ = [
    "LELP_METHODS",
    "ClassStats",
    "ClassStructure",
    "ClusterSubclasses",
    "LELPSubclasses",
    "LatentSubclasses",
    "ManualSubclasses",
    "SubclassError",
    "assign_from_coordinates",
    "class_ids",
    "class_statistics",
    "fit_subclasser",
    "make_subclasser",
    "new_row_targets",
    "spec_directions",
    "spec_targets",
    "spec_targets_and_assignment",
    "recovery_scores",
    "target_entropy",
    "targets_from_coordinates",
    "ward_cut",
]
