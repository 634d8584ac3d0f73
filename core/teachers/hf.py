"""Teacher kind ``hf``: a saved ``AutoModelForSequenceClassification`` checkpoint.

H is captured with a forward hook on the final linear layer, so H is exactly that layer's input
whatever the architecture's pooling. Weights are read only from safetensors, or through
transformers' ``weights_only`` loader, so a user's folder never runs pickled code.
"""

from __future__ import annotations

import inspect
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from ..config import TeacherSpec
from ..hf_import import load_transformers
from ..types import Dataset, TeacherOutputs
from .common import HSink, Progress, TeacherError, _need_text, _outputs
from .device import pick_device, resolve_precision
from .extraction import _filter_inputs, _float_head, text_fill

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _is_offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        import huggingface_hub.constants as hc

        return bool(hc.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - huggingface_hub always ships with transformers
        return False


def _looks_like_path(s: str) -> bool:
    return s.startswith(("/", "./", "../", "~", ".\\")) or "\\" in s or s.count("/") > 1


def _resolve_hf(spec: TeacherSpec) -> tuple[str, bool]:
    """Return (name or folder, is_local); errors say whether a folder or a hub id is wrong."""
    if not spec.path:
        raise TeacherError(
            "teacher kind 'hf' needs teacher.path: a local folder saved with "
            "save_pretrained (config.json + model.safetensors + tokenizer) or a hub id"
        )
    p = Path(spec.path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise TeacherError(
                f"{p}: expected a folder saved with save_pretrained, got a file; "
                "pass the folder that holds config.json and model.safetensors"
            )
        return str(p), True
    if _looks_like_path(spec.path):
        raise TeacherError(f"{p}: no such folder; pass the folder of a saved checkpoint")
    return spec.path, False


def _check_local_folder(folder: Path) -> dict[str, Any]:
    """Decide how weights may be loaded from a user's folder without unpickling code."""
    if not (folder / "config.json").is_file():
        raise TeacherError(
            f"{folder}: no config.json; expected a folder written by save_pretrained of an "
            "AutoModelForSequenceClassification checkpoint (config.json, model.safetensors, "
            "tokenizer files)"
        )
    names = {p.name for p in folder.iterdir() if p.is_file()}
    if any(n.endswith(".safetensors") for n in names):
        return {"use_safetensors": True}
    if any(n.startswith("pytorch_model") and n.endswith(".bin") for n in names):
        load_transformers()  # thread-safe first import (hf_import)
        from transformers import PreTrainedModel

        torch_ok = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 6)
        kw_ok = "weights_only" in inspect.signature(PreTrainedModel.from_pretrained).parameters
        if not (torch_ok and kw_ok):
            raise TeacherError(
                f"{folder}: only pytorch_model.bin (a pickle) is present, and this torch "
                f"({torch.__version__}) / transformers cannot guarantee a weights_only load, "
                "so loading it could run arbitrary code; re-save the checkpoint with "
                "model.save_pretrained(folder, safe_serialization=True) to get model.safetensors"
            )
        return {"use_safetensors": False, "weights_only": True}
    raise TeacherError(
        f"{folder}: no PyTorch weights (model.safetensors or pytorch_model.bin) found; "
        "save the checkpoint with model.save_pretrained(folder, safe_serialization=True)"
    )


def _warn_remote_code(spec: TeacherSpec, where: str) -> None:
    """Say it out loud: with trust_remote_code a checkpoint's Python files run on this machine."""
    if spec.trust_remote_code:
        warnings.warn(
            f"teacher.trust_remote_code is on: Python code shipped with {where} may run on this "
            "machine; turn it off unless you trust the checkpoint's author",
            UserWarning,
            stacklevel=3,
        )


def _load_hf(spec: TeacherSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """Load a sequence-classification model and its tokenizer; returns (model, tok, name)."""
    from safetensors import SafetensorError

    load_transformers()  # thread-safe first import (hf_import)
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    where, local = _resolve_hf(spec)
    _warn_remote_code(spec, where)
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if local:
        kwargs.update(_check_local_folder(Path(where)))
    else:
        load_transformers()  # thread-safe first import (hf_import)
        from transformers import PreTrainedModel

        if "weights_only" in inspect.signature(PreTrainedModel.from_pretrained).parameters:
            kwargs["weights_only"] = True  # a hub repo may hold only pickled weights
        if _is_offline():
            kwargs["local_files_only"] = True
    common = {k: v for k, v in kwargs.items() if k in ("trust_remote_code", "local_files_only")}
    try:
        config = AutoConfig.from_pretrained(where, **common)
    except OSError as err:
        if local:
            raise TeacherError(f"{where}: config.json could not be read ({err})") from None
        raise TeacherError(
            f"hub id '{where}' cannot be fetched"
            + (" offline (HF_HUB_OFFLINE is set)" if _is_offline() else " (no network?)")
            + "; download it elsewhere and pass the local folder as teacher.path"
        ) from None
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise TeacherError(
                f"{where}: the checkpoint needs custom code; set teacher.trust_remote_code: "
                "true only if you trust its author"
            ) from None
        raise TeacherError(f"{where}: config.json is not a transformers config ({err})") from None
    archs = list(getattr(config, "architectures", None) or [])
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise TeacherError(
            f"{where}: config.json declares architectures {archs or '(none)'}, not a "
            "*ForSequenceClassification; a base encoder has no trained classifier head. "
            "Expected an AutoModelForSequenceClassification checkpoint, or use teacher kind "
            "'minilm' to fit a head"
        )
    if getattr(config, "problem_type", None) == "regression" or config.num_labels < 2:
        raise TeacherError(
            f"{where}: a regression head (num_labels={config.num_labels}); a teacher must "
            "classify into at least 2 classes"
        )
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            where, config=config, output_loading_info=True, **kwargs
        )
    except (OSError, RuntimeError, ValueError, SafetensorError) as err:
        # A truncated or corrupt file, or weights whose shapes do not match config.json.
        detail = " ".join(str(err).split())[:300]
        raise TeacherError(
            f"{where}: weights could not be loaded ({detail}); re-save the checkpoint with "
            "model.save_pretrained(folder, safe_serialization=True)"
        ) from None
    head = _find_head(model, config.num_labels)[0]
    missing = [k for k in info.get("missing_keys", []) if k.startswith(head)]
    if missing:
        raise TeacherError(
            f"{where}: the classifier weights {missing} are missing from the checkpoint, so "
            "the head would be random; pass a fine-tuned sequence-classification checkpoint"
        )
    try:
        tok = AutoTokenizer.from_pretrained(where, **common)
    except (OSError, ValueError) as err:
        raise TeacherError(
            f"{where}: no usable tokenizer ({err}); save it next to the model with "
            "tokenizer.save_pretrained(folder)"
        ) from None
    model.eval()
    name = Path(where).name if local else where
    return model, tok, name


def _find_head(model: nn.Module, num_labels: int) -> tuple[str, nn.Linear]:
    """The final linear layer: known names first, else the last Linear with C outputs."""
    modules = dict(model.named_modules())
    for name in ("classifier.out_proj", "classifier", "score", "classifier.dense_out"):
        m = modules.get(name)
        if isinstance(m, nn.Linear) and m.out_features == num_labels:
            return name, m
    found = [
        (n, m)
        for n, m in modules.items()
        if isinstance(m, nn.Linear) and m.out_features == num_labels
    ]
    if not found:
        raise TeacherError(
            f"{type(model).__name__}: no nn.Linear with out_features == num_labels "
            f"({num_labels}); cannot find the final layer to read H from"
        )
    return found[-1]


def _max_length(spec: TeacherSpec, tok: Any, config: Any) -> int:
    """Clamp to what the tokenizer and position embeddings allow (RoBERTa offsets by pad+1)."""
    limit = spec.max_length
    mml = getattr(tok, "model_max_length", None)
    if isinstance(mml, int) and 0 < mml < 100_000:
        limit = min(limit, mml)
    mpe = getattr(config, "max_position_embeddings", None)
    if isinstance(mpe, int) and mpe > 0:
        offset = 0
        if "roberta" in str(getattr(config, "model_type", "")) or "camembert" in str(
            getattr(config, "model_type", "")
        ):
            offset = int(getattr(config, "pad_token_id", 1) or 0) + 1
        limit = min(limit, mpe - offset)
    return max(1, limit)


def _hf_model_fn(
    model: nn.Module, layer: nn.Linear
) -> tuple[Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]], Any]:
    """Forward that returns (H, logits), H caught by a hook on the final linear layer.

    Also returns the hook handle, so the caller removes the hook when done.
    """
    captured: list[torch.Tensor] = []

    def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        captured.append(inputs[0])

    handle = layer.register_forward_hook(hook)

    def fn(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        captured.clear()
        logits = model(**_filter_inputs(model, batch)).logits
        h = captured[-1]
        if h.dim() == 3:
            # Decoder-style heads score every position, then pick one (the last real token);
            # keep the position whose layer output equals the returned logits.
            per_pos = layer(h)
            dist = (per_pos.float() - logits.float().unsqueeze(1)).abs().sum(-1)
            h = h[torch.arange(h.shape[0], device=h.device), dist.argmin(1)]
        return h, _float_head(layer, h)

    return fn, handle


def _label_permutation(config: Any, label_names: Sequence[str]) -> np.ndarray | None:
    """Map checkpoint classes onto the dataset's when id2label names the same labels."""
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label.get(i, id2label.get(str(i), ""))) for i in range(config.num_labels)]
    wanted = [str(x) for x in label_names]
    if sorted(names) == sorted(wanted) and names != wanted:
        return np.array([names.index(w) for w in wanted])
    return None


def _compute_hf(
    dataset: Dataset, spec: TeacherSpec, progress: Progress | None, sink: HSink
) -> TeacherOutputs:
    _need_text(dataset, "hf")
    model, tok, name = _load_hf(spec)
    config = model.config
    if config.num_labels != dataset.n_classes:
        raise TeacherError(
            f"{name}: the checkpoint has {config.num_labels} classes but dataset "
            f"'{dataset.name}' has {dataset.n_classes} ({dataset.label_names}); pass a teacher "
            "trained on these labels"
        )
    device = pick_device()
    # typed as nn.Module: transformers' @wraps(nn.Module.to) hides to()'s signature
    cast(nn.Module, model).to(device)
    layer_name, layer = _find_head(model, config.num_labels)
    fn, handle = _hf_model_fn(model, layer)
    max_len = _max_length(spec, tok, config)
    precision = resolve_precision(spec.precision, device)
    H: dict[str, np.ndarray] = {}
    Z: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    try:
        for split_name, split in dataset.splits.items():
            assert split.texts is not None
            H[split_name], Z[split_name] = sink.fill(
                split_name, len(split.texts), (layer.in_features, config.num_labels),
                text_fill(fn, tok, split.texts, max_len, spec.batch_size, spec.precision, device,
                          f"embed {split_name}"),
                progress, f"embed {split_name}",
                context=f"hf {device.type} {precision} max_length={max_len}",
            )  # fmt: skip
    finally:
        handle.remove()
    W = layer.weight.detach().float().cpu().numpy()
    b = (
        layer.bias.detach().float().cpu().numpy()
        if layer.bias is not None
        else np.zeros(W.shape[0], np.float32)
    )
    meta: dict[str, object] = {
        "teacher": name,
        "kind": "hf",
        "pooling": f"classifier input ({layer_name})",
        "layer": layer_name,
        "device": str(device),
        "precision": precision,
        "max_length": max_len,
    }
    perm = _label_permutation(config, dataset.label_names)
    if perm is not None:
        W, b = W[perm], b[perm]
        Z = {k: v[:, perm] for k, v in Z.items()}
        meta["label_permutation"] = perm.tolist()
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    return _outputs(dataset, H, Z, W, b, meta, sink)
