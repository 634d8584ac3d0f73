"""Teachers: turn a dataset into ``TeacherOutputs`` (H, Z per split, and the last layer W, b).

LELP only needs what the teacher's final linear layer sees and produces (../shared/LELP.md), so
every teacher source is reduced to the same four things. Four sources exist, one module each:
``hf`` (a saved sequence-classification checkpoint), ``minilm`` (the bundled encoder, frozen
with a fitted head or fine-tuned), ``arrays`` (H, Z and W computed elsewhere) and ``digits``
(a small MLP for the offline demo); ``finetune`` trains the MiniLM teacher end to end,
resumably. ``extract`` runs a text model over a dataset in batches,
``device`` decides device and precision, ``fingerprint`` keys the workspace cache.
"""

from .common import HSink, Progress, TeacherError, open_embedding_memmap
from .compute import compute_teacher_outputs, load_teacher_encoder, load_tokenizer
from .device import cpu_has_native_bf16, pick_device, resolve_precision
from .extraction import extract, mean_pool, process_workers
from .finetune import (
    FinetuneCancelled,
    FinetuneControl,
    finetune_minilm,
    finetune_steps,
    time_finetune_steps,
)
from .fingerprint import teacher_fingerprint
from .minilm import fit_linear_head, minilm_path

__all__ = [
    "FinetuneCancelled",
    "FinetuneControl",
    "HSink",
    "Progress",
    "TeacherError",
    "compute_teacher_outputs",
    "cpu_has_native_bf16",
    "extract",
    "finetune_minilm",
    "finetune_steps",
    "fit_linear_head",
    "load_teacher_encoder",
    "load_tokenizer",
    "mean_pool",
    "minilm_path",
    "open_embedding_memmap",
    "pick_device",
    "process_workers",
    "resolve_precision",
    "teacher_fingerprint",
    "time_finetune_steps",
]
