"""Student networks, their inputs, and their checkpoints.

Every student takes the dict made by ``encode_inputs`` (``{"x"}`` for features,
``{"input_ids", "attention_mask"}`` for text) and returns logits ``(B, n_out)``; ``embed``
returns the penultimate representation ``(B, h)``. Each student records its constructor
arguments in ``self.args`` so ``save_student`` / ``load_student`` can rebuild it from JSON plus
safetensors weights, without unpickling anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from .config import StudentSpec
from .hf_import import load_transformers
from .store import atomic_path, atomic_write_bytes
from .types import Split

WEIGHTS_FILE = "student.safetensors"
META_FILE = "student.json"
FORMAT_VERSION = 1
# The BertConfig fields that define a BERT-shaped student (a teacher config may carry its own
# model_type, architectures or label maps, which the student must not inherit).
_BERT_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "hidden_act",
    "layer_norm_eps",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "pad_token_id",
)


def _mlp(in_dim: int, hidden: int, layers: int) -> nn.Sequential:
    """``layers`` hidden Linear+ReLU blocks (the trunk; the head is separate)."""
    blocks: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        blocks += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    return nn.Sequential(*blocks)


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` (B, L, h) over positions where ``mask`` (B, L) is 1; padding is ignored."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def _bag_mean(weight: Tensor, ids: Tensor, mask: Tensor, dense: bool | None = None) -> Tensor:
    """``_masked_mean(embedding(ids), mask)`` without the (B, L, h) intermediate.

    Why: on CPU the gather, the masked sum and their backward over every padded position
    dominated a step of the bag student (half of Amazon's 256 positions are padding);
    ``embedding_bag`` reads only the real tokens. A row without tokens gives zeros, as the
    masked mean does. ``dense`` (default: on CUDA) weights every position by mask / length
    instead: selecting the real tokens has a data-dependent size, which makes the CPU wait
    for the GPU each batch and breaks ``torch.compile`` graphs; the GPU does not mind the
    padded positions.
    """
    if ids.is_cuda if dense is None else dense:
        w = mask.to(weight.dtype)
        w = w / w.sum(dim=1, keepdim=True).clamp_min(1.0)
        return F.embedding_bag(ids, weight, mode="sum", per_sample_weights=w)
    keep = mask.bool()
    lengths = keep.sum(dim=1)
    offsets = torch.zeros_like(lengths)
    offsets[1:] = lengths.cumsum(0)[:-1]
    return F.embedding_bag(ids[keep], weight, offsets, mode="mean")


class MLPStudent(nn.Module):
    """An MLP over float features: ``layers`` hidden ReLU layers of width ``hidden``, then a
    linear head. Input key ``"x"`` (B, in_dim)."""

    kind = "mlp"

    def __init__(self, in_dim: int, hidden: int, n_out: int, layers: int = 2) -> None:
        super().__init__()
        self.args = {"in_dim": in_dim, "hidden": hidden, "n_out": n_out, "layers": layers}
        self.trunk = _mlp(in_dim, hidden, layers)
        self.head = nn.Linear(hidden if layers > 0 else in_dim, n_out)

    def embed(self, batch: dict[str, Tensor]) -> Tensor:
        return self.trunk(batch["x"].float())

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.head(self.embed(batch))


class BagOfEmbeddingsStudent(nn.Module):
    """Mean of token embeddings (padding masked out), then an MLP ``embed_dim -> hidden ->
    hidden -> n_out`` (with the default ``layers=2``): the reference student of
    ../shared/LELP.md. Inputs ``"input_ids"`` and ``"attention_mask"`` (B, L).

    ``n_out`` is keyword-only so the argument order can follow the data flow (vocabulary,
    embedding, hidden) while keeping the defaults.
    """

    kind = "bag"

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        hidden: int = 64,
        *,
        n_out: int,
        layers: int = 2,
    ) -> None:
        super().__init__()
        self.args = {
            "vocab_size": vocab_size,
            "embed_dim": embed_dim,
            "hidden": hidden,
            "n_out": n_out,
            "layers": layers,
        }
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.trunk = _mlp(embed_dim, hidden, layers)
        self.head = nn.Linear(hidden if layers > 0 else embed_dim, n_out)

    def embed(self, batch: dict[str, Tensor]) -> Tensor:
        return self.trunk(
            _bag_mean(self.embedding.weight, batch["input_ids"], batch["attention_mask"])
        )

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.head(self.embed(batch))


class TransformerStudent(nn.Module):
    """A small BERT (``transformers.BertModel``, no pooler) + masked mean pooling + a linear
    head. Built from explicit sizes or from a full ``bert_config`` dict (used when the
    architecture is copied from a teacher, and by ``load_student``)."""

    kind = "transformer"

    def __init__(
        self,
        vocab_size: int,
        n_out: int,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 4,
        max_length: int = 512,
        bert_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        load_transformers()  # thread-safe first import (hf_import)
        from transformers import BertConfig, BertModel

        if bert_config is None:
            if hidden % heads:
                raise ValueError(
                    f"transformer student: hidden={hidden} is not divisible by heads={heads}; "
                    "pick student.embed_dim a multiple of student.heads"
                )
            cfg = BertConfig(
                vocab_size=vocab_size,
                hidden_size=hidden,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                intermediate_size=4 * hidden,
                max_position_embeddings=max(max_length, 8),
            )
        else:
            cfg = BertConfig.from_dict(bert_config)
        self.bert = BertModel(cfg, add_pooling_layer=False)
        self.head = nn.Linear(cfg.hidden_size, n_out)
        # The full BERT config is what rebuilds the student; the sizes are kept for display.
        full = cfg.to_dict()
        self.args = {
            "vocab_size": cfg.vocab_size,
            "n_out": n_out,
            "bert_config": _plain_bert_config(full),
        }

    def embed(self, batch: dict[str, Tensor]) -> Tensor:
        mask = batch["attention_mask"]
        out = self.bert(input_ids=batch["input_ids"], attention_mask=mask)
        return _masked_mean(out.last_hidden_state, mask)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.head(self.embed(batch))


STUDENT_CLASSES: dict[str, type[nn.Module]] = {
    "mlp": MLPStudent,
    "bag": BagOfEmbeddingsStudent,
    "transformer": TransformerStudent,
}


def _bert_trunk(model: nn.Module) -> Any:
    """The BERT-like module (``.embeddings`` + ``.encoder.layer``) inside a transformers model
    or a wrapper (e.g. a sequence-classification model or a teacher with a custom head).
    Typed ``Any``: its ``config``, ``embeddings`` and ``encoder`` are found by duck typing."""
    for m in (model, getattr(model, "base_model", None), *model.modules()):
        if (
            m is not None
            and hasattr(m, "embeddings")
            and hasattr(getattr(m, "encoder", None), "layer")
        ):
            return m
    raise ValueError(
        f"init_from_teacher: {type(model).__name__} has no BERT-like encoder "
        "(.embeddings and .encoder.layer); use student.init=random for this teacher"
    )


def init_from_teacher(student: TransformerStudent, teacher_model: nn.Module, k: int) -> None:
    """Copy the teacher's embeddings and its first ``k`` encoder layers into ``student``.

    The student must have the teacher's width (and layer shapes); the head stays random.
    """
    if not isinstance(student, TransformerStudent):
        raise ValueError(
            f"init_from_teacher needs a TransformerStudent, got {type(student).__name__}; "
            "set student.kind=transformer"
        )
    src = _bert_trunk(teacher_model)
    dst = student.bert
    t_width = int(src.config.hidden_size)
    s_width = int(dst.config.hidden_size)
    if t_width != s_width:
        raise ValueError(
            f"init_from_teacher: student width {s_width} != teacher width {t_width}; set "
            f"student.embed_dim={t_width} (and heads dividing it) or use student.init=random"
        )
    n_teacher = len(src.encoder.layer)
    n_student = len(dst.encoder.layer)
    if not 1 <= k <= min(n_teacher, n_student):
        raise ValueError(
            f"init_from_teacher: k={k} layers requested but the teacher has {n_teacher} and "
            f"the student {n_student}; pick 1 <= k <= {min(n_teacher, n_student)}"
        )
    try:
        dst.embeddings.load_state_dict(src.embeddings.state_dict())
        for i in range(k):
            dst.encoder.layer[i].load_state_dict(src.encoder.layer[i].state_dict())
    except RuntimeError as err:
        raise ValueError(
            f"init_from_teacher: teacher and student layers differ in shape ({err}); build "
            "the student with build_student(..., teacher_model=...) to copy the teacher's sizes"
        ) from None


def build_student(
    spec: StudentSpec,
    n_out: int,
    *,
    in_dim: int | None = None,
    vocab_size: int | None = None,
    teacher_model: nn.Module | None = None,
) -> nn.Module:
    """Make the student a ``StudentSpec`` describes, with ``n_out`` outputs.

    ``mlp`` needs ``in_dim``; ``bag`` and ``transformer`` need ``vocab_size`` (the teacher's
    tokenizer size). With ``init="teacher"`` (transformer only) the architecture (width,
    heads, feed-forward size, vocabulary, positions) is the teacher's, ``spec.layers`` sets
    how many of its first layers are copied, and ``spec.embed_dim``/``heads`` are ignored.
    Seed torch before calling for a reproducible random initialisation.
    """
    if spec.init == "teacher" and spec.kind != "transformer":
        raise ValueError(
            f"student.init=teacher works only with student.kind=transformer, got {spec.kind!r}"
        )
    if spec.kind == "mlp":
        if in_dim is None:
            raise ValueError("mlp student: pass in_dim (the number of input features)")
        model: nn.Module = MLPStudent(in_dim, spec.hidden, n_out, layers=spec.layers)
    elif spec.kind == "bag":
        if vocab_size is None:
            raise ValueError("bag student: pass vocab_size (the teacher tokenizer's size)")
        model = BagOfEmbeddingsStudent(
            vocab_size, spec.embed_dim, spec.hidden, n_out=n_out, layers=spec.layers
        )
    elif spec.kind == "transformer":
        if spec.init == "teacher":
            if teacher_model is None:
                raise ValueError(
                    "transformer student with init=teacher: pass teacher_model (a "
                    "transformers model), or set student.init=random"
                )
            trunk = _bert_trunk(teacher_model)
            cfg = trunk.config.to_dict()
            n_teacher = len(trunk.encoder.layer)
            if spec.layers > n_teacher:
                raise ValueError(
                    f"student.layers={spec.layers} but the teacher has only {n_teacher} layers"
                )
            cfg["num_hidden_layers"] = spec.layers
            model = TransformerStudent(
                int(cfg["vocab_size"]), n_out, bert_config=_plain_bert_config(cfg)
            )
            init_from_teacher(model, teacher_model, spec.layers)
        else:
            if vocab_size is None:
                raise ValueError("transformer student: pass vocab_size (the tokenizer's size)")
            model = TransformerStudent(
                vocab_size,
                n_out,
                hidden=spec.embed_dim,
                layers=spec.layers,
                heads=spec.heads,
                max_length=spec.max_length,
            )
    else:  # pragma: no cover - StudentSpec's Literal already rejects other kinds
        raise ValueError(f"unknown student kind {spec.kind!r}; valid: {sorted(STUDENT_CLASSES)}")
    model.spec = spec  # type: ignore[assignment]  # recorded in student.json by save_student
    return model


def _plain_bert_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Keep only the BertConfig fields in ``_BERT_KEYS``."""
    return {k: cfg[k] for k in _BERT_KEYS if k in cfg}


def encode_inputs(split: Split, tokenizer: Any = None, max_length: int = 64) -> dict[str, Tensor]:
    """Turn a split into the student's input tensors, once, so training only indexes them.

    Features -> ``{"x": float32 (n, d)}``. Texts (with a tokenizer) -> ``{"input_ids": int64
    (n, L), "attention_mask": int64 (n, L)}``, truncated to ``max_length`` and padded to the
    longest text of the split: the same ids as one padded transformers call, but made by
    the Rust tokenizer's batch path in chunks (core.teachers' ``_BatchEncoder``; the
    transformers call managed ~4.5k texts/s, too slow for 1.6M texts). When a split has
    both, a tokenizer selects the texts.
    """
    if split.texts is not None and (tokenizer is not None or split.features is None):
        if tokenizer is None:
            raise ValueError(
                "encode_inputs: this split holds texts; pass the teacher's tokenizer "
                "(core.teachers.load_tokenizer(spec))"
            )
        return _encode_texts(list(split.texts), tokenizer, max_length)
    if split.features is None:
        raise ValueError("encode_inputs: the split has neither texts nor features")
    x = np.asarray(split.features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"encode_inputs: features must be 2-D (n, d), got shape {x.shape}")
    return {"x": torch.from_numpy(np.ascontiguousarray(x))}


_ENCODE_CHUNK = 16_384


def _encode_texts(texts: list[str], tokenizer: Any, max_length: int) -> dict[str, Tensor]:
    """Tokenise in chunks (each padded to its own longest text), then lay the chunks into one
    (n, L) array padded with the tokenizer's pad id on its padding side, L the longest.

    Chunks wait as int32 ids and uint8 masks (5 bytes a token, not the 16 of the final int64
    pair, and no token type ids), so a million texts never hold two int64 copies."""
    from .teachers.extraction import _BatchEncoder

    encode = _BatchEncoder(tokenizer, max_length, torch.device("cpu"), pin=False)
    chunks = []
    for i in range(0, len(texts), _ENCODE_CHUNK):
        c = encode(texts[i : i + _ENCODE_CHUNK])
        chunks.append({"input_ids": c["input_ids"].to(torch.int32),
                       "attention_mask": c["attention_mask"].to(torch.uint8)})  # fmt: skip
        del c
    n = len(texts)
    width = max((c["input_ids"].shape[1] for c in chunks), default=0)
    pad_id = tokenizer.pad_token_id
    if pad_id is None and any(c["input_ids"].shape[1] < width for c in chunks):
        raise ValueError(
            "encode_inputs: the tokenizer has no pad token, so texts of different lengths "
            "cannot be padded; set tokenizer.pad_token (e.g. to its eos_token)"
        )
    ids = torch.full((n, width), int(pad_id or 0), dtype=torch.int64)
    mask = torch.zeros((n, width), dtype=torch.int64)
    left = getattr(tokenizer, "padding_side", "right") == "left"
    row = 0
    while chunks:
        c = chunks.pop(0)  # freed as it is laid in
        rows, w = c["input_ids"].shape
        cols = slice(width - w, width) if left else slice(0, w)
        ids[row : row + rows, cols] = c["input_ids"]
        mask[row : row + rows, cols] = c["attention_mask"]
        row += rows
    return {"input_ids": ids, "attention_mask": mask}


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under ``torch.compile`` (``_orig_mod``) or DataParallel (``module``)."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def save_student(path_dir: str | os.PathLike[str], model: nn.Module, meta: dict) -> Path:
    """Save ``model`` as ``student.safetensors`` + ``student.json`` in ``path_dir``.

    The JSON holds the student kind and constructor arguments (so ``load_student`` rebuilds
    it), the ``StudentSpec`` when the model came from ``build_student``, and ``meta``
    (must be JSON-serialisable). Both files are written atomically.
    """
    model = unwrap(model)
    kind = getattr(model, "kind", None)
    if kind not in STUDENT_CLASSES:
        raise ValueError(
            f"save_student: {type(model).__name__} is not a lelp-studio student "
            f"(kinds: {sorted(STUDENT_CLASSES)})"
        )
    out = Path(path_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = getattr(model, "spec", None)
    args = cast(dict[str, Any], model.args)  # every student class sets it (STUDENT_CLASSES)
    info = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "args": args,
        "n_out": args["n_out"],
        "in_dim": args.get("in_dim"),
        "vocab_size": args.get("vocab_size"),
        "spec": spec.model_dump(mode="json") if isinstance(spec, StudentSpec) else None,
        "meta": meta,
    }
    text = json.dumps(info, indent=2)  # fail on unserialisable meta before touching disk
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        save_model(model, str(tmp), metadata={"kind": kind})
    atomic_write_bytes(out / META_FILE, text.encode("utf-8"))
    return out


def load_student(path_dir: str | os.PathLike[str]) -> tuple[nn.Module, dict]:
    """Rebuild a student saved by ``save_student``; returns ``(model on CPU in eval mode,
    meta)``, where ``meta`` is the dict given to ``save_student``. Never unpickles."""
    d = Path(path_dir)
    info_path, weights = d / META_FILE, d / WEIGHTS_FILE
    if not info_path.is_file() or not weights.is_file():
        raise FileNotFoundError(
            f"load_student: {d} needs {META_FILE} and {WEIGHTS_FILE} (written by save_student)"
        )
    info = json.loads(info_path.read_text(encoding="utf-8"))
    kind = info.get("kind")
    if kind not in STUDENT_CLASSES:
        raise ValueError(f"load_student: {info_path} has unknown kind {kind!r}")
    model = STUDENT_CLASSES[kind](**info["args"])
    if info.get("spec") is not None:
        model.spec = StudentSpec.model_validate(info["spec"])  # type: ignore[assignment]
    load_model(model, str(weights), strict=True)
    model.eval()
    return model, info.get("meta") or {}
