"""The first import of ``transformers``, made once and under a lock.

transformers resolves its public names lazily (``_LazyModule``), and that is not thread-safe:
two threads asking for names for the first time at once can fail with "cannot import name
'AutoModel' from 'transformers'" (huggingface/transformers 5.x; vllm-project/vllm#40442). The
app meets this when Streamlit runs two script threads and both reach a teacher. Every library
function that imports from transformers calls :func:`load_transformers` first; after it, the
names are plain module attributes and ``from transformers import ...`` is safe anywhere.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

#: Every name the library imports from transformers (a test checks this list is complete).
NAMES = (
    "AutoConfig",
    "AutoModel",
    "AutoModelForSequenceClassification",
    "AutoTokenizer",
    "BertConfig",
    "BertModel",
    "BertPreTrainedModel",
    "PreTrainedModel",
    "PreTrainedTokenizerBase",
)
SUBMODULES = ("transformers.modeling_outputs",)
_LOCK = threading.Lock()
_DONE: list[ModuleType] = []


def load_transformers() -> ModuleType:
    """Import transformers and resolve :data:`NAMES`, once per process, under a lock."""
    if _DONE:
        return _DONE[0]
    with _LOCK:
        if not _DONE:
            module = importlib.import_module("transformers")
            for name in NAMES:
                getattr(module, name)
            for sub in SUBMODULES:
                importlib.import_module(sub)
            _DONE.append(module)
    return _DONE[0]
