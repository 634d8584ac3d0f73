"""The one registry: config name (``train.objective``) -> Objective class.

Adding an objective: write its module in this package and add one line to ``REGISTRY``
(the config takes the name as a string; :func:`get` checks it when a run is checked).
"""

from __future__ import annotations

import inspect
from typing import Any

from ..config import ConfigError, TrainSpec
from .amad import AMAD
from .base import Objective
from .compress import CompRess
from .disk import DiSK
from .dwt import DWT
from .embedding import SEA, FitNet
from .hard import Hard
from .kd import KD
from .lelp import LELP
from .reaugkd import ReAugKD
from .subclass_distill import SubclassDistill

REGISTRY: dict[str, type[Objective]] = {
    "hard": Hard,
    "kd": KD,
    "lelp": LELP,
    "fitnet": FitNet,
    "sea": SEA,
    "compress": CompRess,
    "reaugkd": ReAugKD,
    "subclass-distill": SubclassDistill,
    "dwt": DWT,
    "disk": DiSK,
    "amad": AMAD,
}


def names(registry: dict[str, type[Objective]] | None = None) -> list[str]:
    """The registered objective names, in registry order (hard, kd, lelp first)."""
    return list(REGISTRY if registry is None else registry)


def get(name: str, registry: dict[str, type[Objective]] | None = None) -> type[Objective]:
    """The class registered under ``name``; an unknown name lists the valid ones."""
    reg = REGISTRY if registry is None else registry
    try:
        return reg[name]
    except KeyError:
        valid = ", ".join(sorted(reg))
        raise ConfigError(
            f"train.objective {name!r} is not known; choose one of: {valid}"
        ) from None


def doc(name: str, registry: dict[str, type[Objective]] | None = None) -> str:
    """Help text for ``name``: the first paragraph of its class docstring, on one line."""
    text = inspect.getdoc(get(name, registry)) or ""
    return " ".join(text.split("\n\n", 1)[0].split())


def make(
    name: str,
    spec: TrainSpec | None = None,
    registry: dict[str, type[Objective]] | None = None,
    **common: Any,
) -> Objective:
    """A fresh objective ``name`` given only its own section of ``spec`` (``train.<section>``)
    and the shared ``tau``, ``alpha``, ``seed``. Without ``spec``: default section values,
    and ``common`` (tau=, alpha=, seed=) as keywords."""
    cls = get(name, registry)
    if spec is None:
        params = getattr(TrainSpec(), cls.section) if cls.section else None
        return cls(params, **common)
    params = getattr(spec, cls.section) if cls.section else None
    return cls(params, tau=spec.tau, alpha=spec.alpha, seed=spec.seed)
