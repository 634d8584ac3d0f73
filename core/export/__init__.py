"""Ship a student: Hugging Face and ONNX exports of a finished run, each with a model card.

Why: people distil to ship a smaller, faster model, and a ``student.safetensors`` plus a JSON
only this project reads is not shippable. An export holds what a user needs and nothing of
lelp-studio: the weights in a standard format, the tokenizer for text students, the class
names, and a ``README.md`` model card (teacher, data, objective, test scores, fidelity to the
teacher, size, how to load it).

Both formats give the project's class prediction: C class log-probabilities at T = 1, the
same numbers as the objective's ``class_logits`` (``core.objectives``)
computes from the student's head. A LELP student's ``sum(S_c)`` subclass outputs are
aggregated per class at the run's tau and mapped back to T = 1 inside the exported model, so
no user ever has to know about pseudo-subclasses.

- ``onnx`` (every student kind): ``model.onnx`` from ``torch.onnx.export`` (the
  ``torch.export``-based exporter: the TorchScript one is deprecated and freezes Python
  branches while tracing), batch (and sequence) axes dynamic, checked in onnxruntime against
  PyTorch before the folder is published.
- ``hf`` (transformer students): a folder the transformers Auto classes load. The student is a
  BERT encoder with masked MEAN pooling and a linear head; ``BertForSequenceClassification``
  pools the [CLS] token through a tanh layer instead and cannot hold it, so the folder ships
  the few lines that differ (``modeling_lelp_student.py``, loaded with
  ``trust_remote_code=True``) under its own ``model_type``, so that loading it without them
  fails loudly instead of silently building a [CLS] classifier with random layers. The
  encoder alone loads with plain ``BertModel.from_pretrained`` (no remote code); the card
  shows the head in five lines.

``export_run(ws, run, fmt, out_dir, force=False)`` is what ``lelp export`` and the app call;
expected failures raise :class:`ExportError`, one line that names the fix.
"""

from .card import model_card
from .hf import HF_MODELING
from .model import (
    FORMATS,
    HF_CODE_FILE,
    HF_MODEL_TYPE,
    MARKER,
    ONNX_FILE,
    ONNX_TOLERANCE,
    ClassHead,
    ExportError,
    FeatureClassifier,
    TokenClassifier,
    aggregate,
    class_head,
    classifier,
    find_run,
    load_run_student,
)
from .onnx import example_inputs, export_onnx, onnx_session, run_onnx
from .run import export_run

__all__ = [
    "FORMATS",
    "HF_CODE_FILE",
    "HF_MODELING",
    "HF_MODEL_TYPE",
    "MARKER",
    "ONNX_FILE",
    "ONNX_TOLERANCE",
    "ClassHead",
    "ExportError",
    "FeatureClassifier",
    "TokenClassifier",
    "aggregate",
    "class_head",
    "classifier",
    "example_inputs",
    "export_onnx",
    "export_run",
    "find_run",
    "load_run_student",
    "model_card",
    "onnx_session",
    "run_onnx",
]
