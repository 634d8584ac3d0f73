"""Training objectives: one ``Objective`` interface and one registry (see ``base``).

>>> from lelp_studio import objectives
>>> objectives.names()[:3]
['hard', 'kd', 'lelp']
>>> objectives.make("kd", tau=2.0).n_outputs(3)
3
"""

from .amad import AMAD
from .base import Batch, Objective, RunContext, TeacherData, embedding_width
from .compress import CompRess, EmbeddingQueue
from .disk import DiSK
from .dwt import DWT, digits_teacher_layers, remap_mlp
from .embedding import SEA, FitNet, sample_rows
from .hard import Hard
from .kd import KD
from .lelp import LELP, to_unit_temperature
from .reaugkd import ReAugKD
from .registry import REGISTRY, doc, get, make, names
from .subclass_distill import SubclassDistill

__all__ = [
    "AMAD", "DWT", "KD", "LELP", "REGISTRY", "SEA", "Batch", "CompRess", "DiSK",
    "EmbeddingQueue", "FitNet", "Hard", "Objective", "ReAugKD", "RunContext",
    "SubclassDistill", "TeacherData", "digits_teacher_layers", "doc", "embedding_width", "get",
    "make", "names", "remap_mlp", "sample_rows", "to_unit_temperature",
]  # fmt: skip
