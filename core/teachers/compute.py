"""The entry points by teacher kind: outputs, tokenizer and encoder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from ..config import TeacherSpec
from ..hf_import import load_transformers
from ..types import Dataset, TeacherOutputs
from .arrays import _compute_arrays
from .common import HSink, Progress, TeacherError
from .digits import _compute_digits_mlp
from .finetune import FinetuneControl, _compute_finetuned
from .hf import (
    _check_local_folder,
    _compute_hf,
    _is_offline,
    _load_hf,
    _resolve_hf,
    _warn_remote_code,
)
from .minilm import _compute_minilm, _load_minilm, minilm_path

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def compute_teacher_outputs(
    dataset: Dataset,
    spec: TeacherSpec,
    progress: Progress | None = None,
    *,
    max_steps: int | None = None,
    encoder_dir: str | Path | None = None,
    h_dir: str | Path | None = None,
    finetune: FinetuneControl | None = None,
) -> TeacherOutputs:
    """H, Z for every split of ``dataset`` plus the teacher's last layer W (C, d), b (C,).

    ``progress(done, total, stage)`` is called as batches finish; without it a tqdm bar is
    drawn on stderr when stderr is a terminal. ``max_steps`` caps fine-tuning steps (minilm
    finetune only); ``encoder_dir``, when given, receives the fine-tuned encoder and tokenizer
    (minilm finetune only) for ``load_teacher_encoder``. ``meta`` holds teacher name,
    pooling, device, seconds and accuracy per split.

    ``h_dir``: H goes to float16 files ``h_dir/H_<split>.npy``, written as batches finish
    (no float32 copy of H is held, except by a frozen MiniLM, whose head is fitted on float32
    H), and ``H`` holds them as read-only memmaps, ready for ``Workspace.adopt_array``. The
    values equal today's float32 H cast to float16, the workspace's stored format. Without
    it, H is float32 in memory.

    ``finetune`` (minilm finetune only) adds step reports, cancel and resumable checkpoints
    to the fine-tune (``teachers.finetune.FinetuneControl``; the background job passes one).
    """
    sink = HSink(h_dir)
    if spec.kind == "hf":
        return _compute_hf(dataset, spec, progress, sink)
    if spec.kind == "minilm" and spec.mode == "finetune":
        return _compute_finetuned(dataset, spec, progress, max_steps, encoder_dir, sink, finetune)
    if spec.kind == "minilm":
        return _compute_minilm(dataset, spec, progress, sink)
    if spec.kind == "arrays":
        return _compute_arrays(dataset, spec, sink)
    if spec.kind == "digits-mlp":
        return _compute_digits_mlp(dataset, spec, sink)
    raise TeacherError(  # pragma: no cover - the config schema forbids other kinds
        f"unknown teacher kind {spec.kind!r}; use minilm, hf, arrays or digits-mlp"
    )


def load_tokenizer(spec: TeacherSpec) -> PreTrainedTokenizerBase | None:
    """The teacher's tokenizer (for the bag and transformer students); an arrays teacher's
    ``teacher.tokenizer``; None for non-text and an arrays teacher without one."""
    load_transformers()  # thread-safe first import (hf_import)
    from transformers import AutoTokenizer

    if spec.kind == "minilm" or (spec.kind == "arrays" and spec.tokenizer == "minilm"):
        return AutoTokenizer.from_pretrained(minilm_path())
    if spec.kind == "arrays" and spec.tokenizer is not None:
        folder = Path(spec.tokenizer).expanduser()
        try:
            if not folder.is_dir():
                raise OSError("not a folder")
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as err:
            raise TeacherError(
                f"teacher.tokenizer {spec.tokenizer!r}: no usable tokenizer ({err}); give "
                "'minilm' or a local folder of tokenizer files (tokenizer.save_pretrained)"
            ) from None
    if spec.kind == "hf":
        where, local = _resolve_hf(spec)
        if local:
            _check_local_folder(Path(where))
        _warn_remote_code(spec, where)
        kw = {"trust_remote_code": spec.trust_remote_code}
        if not local and _is_offline():
            kw["local_files_only"] = True
        try:
            return AutoTokenizer.from_pretrained(where, **kw)
        except (OSError, ValueError) as err:
            raise TeacherError(
                f"{where}: no usable tokenizer ({err}); pass a local folder that holds the "
                "tokenizer files (tokenizer.save_pretrained(folder))"
            ) from None
    return None


def load_teacher_encoder(
    spec: TeacherSpec, encoder_dir: str | Path | None = None
) -> PreTrainedModel:
    """The teacher's transformers base model, for students initialised from teacher layers.

    For ``minilm`` this is the pretrained encoder, or in finetune mode the fine-tuned one that
    ``compute_teacher_outputs(..., encoder_dir=...)`` saved (pass the same ``encoder_dir``);
    for ``hf`` the checkpoint's base model (``model.base_model``).
    """
    if spec.kind == "minilm":
        if encoder_dir is not None:
            load_transformers()  # thread-safe first import (hf_import)
            from transformers import AutoModel

            folder = Path(encoder_dir)
            if not (folder / "model.safetensors").is_file():
                raise TeacherError(
                    f"{folder}: no fine-tuned encoder (model.safetensors) here; run "
                    "compute_teacher_outputs with mode 'finetune' and this encoder_dir first"
                )
            return AutoModel.from_pretrained(folder, use_safetensors=True)
        return _load_minilm()[0]
    if spec.kind == "hf":
        model, _, _ = _load_hf(spec)
        # transformers types base_model as nn.Module; it is the wrapped PreTrainedModel
        return cast("PreTrainedModel", model.base_model)
    raise TeacherError(
        f"teacher kind '{spec.kind}' has no transformer encoder; student init 'teacher' needs "
        "teacher kind 'minilm' or 'hf'"
    )
