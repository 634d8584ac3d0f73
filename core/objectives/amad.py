"""AMAD: a student with fewer attention heads aligns its attention maps to the teacher's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn

from .. import losses
from ..config import AMADSpec, ConfigError
from ..students import unwrap
from .base import Batch, Objective, RunContext, TeacherData


def _layer_index(layer: int, n_layers: int, name: str) -> int:
    """A Python-style layer index (-1 = last) checked against ``n_layers``."""
    if not -n_layers <= layer < n_layers:
        raise ConfigError(
            f"amad: train.amad.{name}={layer} but the model has {n_layers} layers; use "
            f"0..{n_layers - 1} or -1 for the last"
        )
    return layer % n_layers


class AMAD(Objective):
    """Attention map alignment (AMAD), for a transformer student with fewer attention heads
    than its teacher: each teacher head's attention map of one layer is matched by a mix of
    the student's heads, weighted by a softmax over their cosine similarities,
    a_ij = softmax_j(cos(t_i, s_j)); the loss compares t_i with sum_j a_ij s_j (KL between
    attention rows, the paper's best, or the L2 distance of normalised maps), plus KD for the
    head. Needs student kind 'transformer' and a MiniLM or local checkpoint teacher; the
    teacher's maps of the training set are computed once. Zhao et al., 'Attention Map
    Alignment Distillation' (AMAD), AAAI 2024.

    T: the teacher's maps of ``teacher_layer`` for every training row, computed once by
    ``set_teacher_attention`` on the student's own token ids and kept as float16, at most
    ``max_cache_mb``. S: the student's maps of ``student_layer``, caught by a forward hook
    during the training forward; ``attach`` switches the student to eager attention (the
    only kind that returns maps) and turns off attention dropout in that layer (our choice).
    The loss covers real tokens only; batches cut to a narrower width than the cached maps
    take their top-left corner (padding attends nowhere).
    """

    name = "amad"
    uses_transfer = True
    section = "amad"
    params: AMADSpec
    t_att: Tensor
    t_mask: Tensor

    @classmethod
    def check_compatible(cls, student_kind: str, teacher_kind: str) -> None:
        if student_kind != "transformer":
            raise ConfigError(
                "amad aligns attention maps: it needs student.kind 'transformer' (got "
                f"{student_kind!r})"
            )
        if teacher_kind not in ("minilm", "hf"):
            raise ConfigError(
                "amad needs the teacher's attention maps: use teacher.kind minilm or hf "
                f"(got {teacher_kind})"
            )

    def setup(self, teacher: TeacherData) -> AMAD:
        super().setup(teacher)
        self._require_class_signal(self.params.kd_weight)
        self.register_buffer("t_att", torch.zeros(0), persistent=False)
        self.register_buffer("t_mask", torch.zeros(0), persistent=False)
        self._captured: Tensor | None = None
        self._n = len(teacher)
        return self

    @torch.no_grad()
    def set_teacher_attention(
        self, encoder: nn.Module, inputs: Mapping[str, Tensor], batch_size: int = 64
    ) -> None:
        """Run ``encoder`` (a transformers model) over the training ``inputs`` once and keep
        the attention maps of ``teacher_layer`` (float16, CPU until ``.to(device)``)."""
        p = self.params
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        n, L = ids.shape
        if n != self._n:
            raise ValueError(f"amad: {n} input rows but the teacher data has {self._n}")
        cfg: Any = encoder.config  # a transformers PretrainedConfig
        heads, n_layers = int(cfg.num_attention_heads), int(cfg.num_hidden_layers)
        layer = _layer_index(p.teacher_layer, n_layers, "teacher_layer")
        mb = n * heads * L * L * 2 / 2**20
        if mb > p.max_cache_mb:
            raise ConfigError(
                f"amad: the teacher's attention maps ({n:,} rows x {heads} heads x {L} x {L}, "
                f"float16) need {mb:,.0f} MB, over train.amad.max_cache_mb={p.max_cache_mb}; "
                "lower student.max_length or dataset.max_train, or raise max_cache_mb"
            )
        cast(Any, encoder).set_attn_implementation("eager")  # sdpa returns no maps
        encoder.eval()
        device = next(encoder.parameters()).device
        maps = torch.empty((n, heads, L, L), dtype=torch.float16)
        for i in range(0, n, batch_size):
            sl = slice(i, i + batch_size)
            res = encoder(
                input_ids=ids[sl].to(device), attention_mask=mask[sl].to(device),
                output_attentions=True,
            )  # fmt: skip
            maps[sl] = res.attentions[layer].to(torch.float16).cpu()
        self.t_att, self.t_mask = maps, mask.to(torch.float32).clone()
        self.info_ = {"amad_teacher_heads": heads, "amad_teacher_layer": layer}

    def attach(self, student: nn.Module, context: RunContext | None = None) -> None:
        """With a run ``context``: the teacher's maps over its training inputs first (its
        encoder loaded by ``context.load_teacher_encoder``); then the student's hook."""
        if context is not None:
            self.check_compatible(context.student_kind, context.teacher_kind)
            inputs = context.train_inputs
            if inputs is None or "input_ids" not in inputs:
                raise ConfigError("amad needs a text dataset (token ids for teacher and student)")
            assert context.load_teacher_encoder is not None
            encoder = context.load_teacher_encoder()
            encoder.to(context.device or torch.device("cpu"))
            self.set_teacher_attention(encoder, inputs)
        bert = getattr(unwrap(student), "bert", None)
        if bert is None:
            raise ConfigError(
                "amad aligns attention maps: it needs student.kind 'transformer' (this student "
                f"is {type(unwrap(student)).__name__})"
            )
        p = self.params
        layers = bert.encoder.layer
        attn = layers[_layer_index(p.student_layer, len(layers), "student_layer")].attention.self
        bert.set_attn_implementation("eager")
        attn.dropout.p = 0.0

        def catch(_m: nn.Module, _inputs: Any, output: Any) -> None:
            self._captured = output[1]

        attn.register_forward_hook(catch)
        self.info_ |= {"amad_student_heads": int(bert.config.num_attention_heads)}

    def loss(self, out: Tensor, batch: Batch) -> Tensor:
        p = self.params
        s = self._captured
        if s is None or self.t_att.numel() == 0:
            raise RuntimeError(
                "amad: call set_teacher_attention and attach(student) before training "
                "(core.pipeline.train_student does both)"
            )
        w = s.shape[-1]
        t = self.t_att[batch.idx, :, :w, :w]
        align = losses.attention_alignment(t, s, self.t_mask[batch.idx, :w], p.variant)
        return p.weight * align + self._kd_terms(out, batch, p.kd_weight)
