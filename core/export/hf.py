"""Hugging Face: a folder transformers' Auto classes load (config, safetensors weights, the
custom modeling file below) and the teacher's tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from ..config import RunConfig
from ..hf_import import load_transformers
from ..teachers import load_tokenizer
from .model import HF_CODE_FILE, HF_MODEL_TYPE, ClassHead, ExportError, student_args

# The model code shipped in an hf export. Self-contained (torch + transformers only), so a
# user needs nothing of lelp-studio; ``model.aggregate`` is the same computation.
HF_MODELING = '''"""A lelp-studio transformer student for transformers' Auto classes.

Written by lelp-studio's export. The student is a BERT encoder without pooler, masked MEAN
pooling over the tokens, and a linear head. BertForSequenceClassification pools the [CLS]
token through a tanh layer instead, so it cannot hold this model: these are the lines that
differ. Load with trust_remote_code=True:

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

``logits`` are class LOG-PROBABILITIES at temperature 1 (softmax gives the probabilities,
argmax the class). A LELP student's head has sum(lelp_sizes) pseudo-subclass outputs; they
are summed per class at temperature lelp_tau and mapped back to temperature 1 here, exactly as
lelp-studio predicts (``head_logits`` returns the raw head outputs).
"""

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput


class LelpStudentConfig(BertConfig):
    """BertConfig plus how the head's outputs become class log-probabilities."""

    model_type = "lelp_student"

    def __init__(self, head_outputs=None, lelp_head="softmax", lelp_sizes=None, lelp_tau=1.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.head_outputs = head_outputs
        self.lelp_head = lelp_head
        self.lelp_sizes = lelp_sizes
        self.lelp_tau = lelp_tau


def masked_mean(x, mask):
    """Mean over the positions where mask is 1 (padding ignored)."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def class_log_probs(u, config):
    """Class log-probabilities (B, C) at T = 1 from head outputs u (B, head_outputs)."""
    if config.lelp_head == "softmax":
        return F.log_softmax(u.float(), dim=-1)
    sizes = [int(s) for s in config.lelp_sizes]
    if config.lelp_head == "subclass":
        return F.log_softmax(u.float().view(-1, len(sizes), sizes[0]).logsumexp(dim=-1), dim=-1)
    tau = float(config.lelp_tau)
    log_q = F.log_softmax(u.float() / tau, dim=-1)
    log_p = torch.stack([b.logsumexp(dim=-1) for b in torch.split(log_q, sizes, dim=-1)], -1)
    return log_p if tau == 1.0 else F.log_softmax(tau * log_p.float(), dim=-1)


class LelpStudentModel(BertPreTrainedModel):
    """The encoder alone; ``last_hidden_state`` (B, L, h) and the mean-pooled ``pooler_output``."""

    config_class = LelpStudentConfig

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        out = BaseModelOutput(last_hidden_state=h)
        out["pooler_output"] = masked_mean(h, attention_mask)
        return out


class LelpStudentForSequenceClassification(BertPreTrainedModel):
    """Encoder + masked mean pooling + linear head; ``logits`` are class log-probabilities."""

    config_class = LelpStudentConfig

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.head_outputs or config.num_labels)
        self.post_init()

    def head_logits(self, input_ids, attention_mask=None):
        """The head's raw outputs (B, head_outputs): subclass logits for a LELP student.
        token_type_ids are not used: the student was trained without them."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.classifier(masked_mean(h, attention_mask))

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        logits = class_log_probs(self.head_logits(input_ids, attention_mask), self.config)
        loss = None if labels is None else F.nll_loss(logits, labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)
'''


def _hf_config(student: nn.Module, head: ClassHead, labels: list[str]) -> dict[str, Any]:
    """config.json: the student's BertConfig fields + label maps + the aggregation + the
    ``auto_map`` that points the Auto classes at ``modeling_lelp_student.py``."""
    BertConfig = load_transformers().BertConfig  # noqa: N806 - the class, resolved under the lock

    bert = BertConfig.from_dict(dict(student_args(student)["bert_config"])).to_dict()
    for k in ("architectures", "auto_map", "id2label", "label2id", "model_type", "num_labels"):
        bert.pop(k, None)
    mod = Path(HF_CODE_FILE).stem
    return {
        **bert,
        "model_type": HF_MODEL_TYPE,
        "architectures": ["LelpStudentForSequenceClassification"],
        "auto_map": {
            "AutoConfig": f"{mod}.LelpStudentConfig",
            "AutoModel": f"{mod}.LelpStudentModel",
            "AutoModelForSequenceClassification": f"{mod}.LelpStudentForSequenceClassification",
        },
        "id2label": {str(i): n for i, n in enumerate(labels)},
        "label2id": {n: i for i, n in enumerate(labels)},
        "head_outputs": int(student_args(student)["n_out"]),
        "lelp_head": head.mode,
        "lelp_sizes": list(head.sizes) if head.sizes else None,
        "lelp_tau": float(head.tau),
        "dtype": "float32",
    }


def write_hf(student: nn.Module, head: ClassHead, labels: list[str], out: Path) -> list[str]:
    """config.json, model.safetensors (``bert.*`` + ``classifier.*``) and the model code."""
    (out / "config.json").write_text(json.dumps(_hf_config(student, head, labels), indent=2))
    state = {}
    for k, v in student.state_dict().items():
        name = "classifier." + k[len("head.") :] if k.startswith("head.") else k
        state[name] = v.detach().cpu().contiguous()
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / HF_CODE_FILE).write_text(HF_MODELING)
    return ["config.json", "model.safetensors", HF_CODE_FILE]


def save_tokenizer(cfg: RunConfig, out: Path) -> list[str]:
    """The teacher's tokenizer (the student's token ids), truncating at the student's
    ``max_length`` by default, as lelp-studio encoded its inputs."""
    tok = load_tokenizer(cfg.teacher)
    if tok is None:  # pragma: no cover - prepare() refuses text students without one
        raise ExportError(f"teacher.kind {cfg.teacher.kind!r} has no tokenizer to ship")
    tok.model_max_length = int(cfg.student.max_length)
    saved = tok.save_pretrained(str(out))
    return sorted({Path(p).name for p in saved if Path(p).is_file()})
