"""Teacher kind ``minilm`` in mode ``finetune``: MiniLM and a linear head trained end to end.

Why a module of its own: a fine-tune on a CPU takes minutes to hours, so it runs as a
background job that reports every step, stops within a step when cancelled and resumes from
its checkpoint (model, optimizer and step, written with ``core.checkpoint`` at every epoch end
and every ``checkpoint_every_s`` seconds). Each epoch's order and each step's dropout are
seeded from (seed, epoch) and (seed, step), and the learning rate is a function of the step,
so a resumed fine-tune takes the same steps an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import load_state, optimizer_state, restore_optimizer, save_state
from ..config import TeacherSpec
from ..types import Dataset, TeacherOutputs, hash_arrays
from .common import HSink, Progress, TeacherError, _need_text, _outputs, _Reporter
from .device import _precision_autocast, pick_device
from .extraction import _filter_inputs, _float_head, extract, mean_pool
from .minilm import _load_minilm, _minilm_meta, fill_texts, staging_context

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: Part of a fine-tuned teacher's cache key: bump when the loop's steps change for a spec.
FINETUNE_LOOP_VERSION = 2


class FinetuneCancelled(Exception):
    """A fine-tune stopped because its ``on_step`` asked it to; ``step`` is where it stopped,
    ``saved`` the step of the last checkpoint (a retry resumes there)."""

    def __init__(self, step: int, saved: int) -> None:
        super().__init__(f"fine-tune cancelled at step {step}; the checkpoint holds step {saved}")
        self.step, self.saved = step, saved


@dataclasses.dataclass(frozen=True)
class FinetuneControl:
    """How a fine-tune is driven (the job runner fills it; the defaults run it plainly).

    ``on_step(info)`` gets step, total_steps, epoch, epochs, loss and lr after every step
    (plus the epoch's loss and train_accuracy at an epoch end) and stops the fine-tune by
    returning True. ``checkpoint_dir``: where it checkpoints; with ``resume`` a readable
    checkpoint there is continued from (a damaged one restarts it, with a warning).
    """

    on_step: Callable[[dict[str, Any]], bool | None] | None = None
    checkpoint_dir: str | Path | None = None
    resume: bool = True
    checkpoint_every_s: float = 120.0


class _MeanPoolClassifier(nn.Module):
    """Encoder + mean pooling + linear head: the fine-tuned MiniLM teacher. ``facts`` holds
    what the last fine-tune reports (steps run, resume point and note, seconds per step)."""

    def __init__(self, encoder: PreTrainedModel, dim: int, n_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(dim, n_classes)
        self.facts: dict[str, Any] = {}

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.encoder(**_filter_inputs(self.encoder, batch)).last_hidden_state
        return mean_pool(out, batch["attention_mask"])

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(batch)
        return h, self.head(h)

    def outputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(H, Z) for extraction, Z from the float32 head so Z = H W^T + b holds exactly."""
        h = self.embed(batch)
        return h, _float_head(self.head, h)


def _quiet(done: int, total: int, stage: str) -> None:
    """A progress callback that says nothing."""


def lr_factor(step: int, total: int) -> float:
    """Linear warm-up over the first tenth of the steps, then linear decay to 0."""
    return min(1.0, (step + 1) / max(1, total // 10)) * max(0.0, 1 - step / max(1, total))


def finetune_steps(n_rows: int, epochs: int, batch_size: int, max_steps: int | None = None) -> int:
    """Optimisation steps of a fine-tune: ceil(rows / batch) per epoch, capped by max_steps."""
    total = math.ceil(n_rows / batch_size) * epochs
    return total if max_steps is None else min(total, max_steps)


class _Setup:
    """The model, optimizer and tokenised labelled training rows of one fine-tune, and its
    one training step (the timing in :func:`time_finetune_steps` runs the same step)."""

    def __init__(self, dataset: Dataset, spec: TeacherSpec) -> None:
        _need_text(dataset, "minilm")
        train = dataset.splits["train"]
        assert train.texts is not None
        y_all = np.asarray(train.y)
        # Unlabelled rows (label < 0, e.g. transfer data) have no class to fit.
        self.rows = np.flatnonzero(y_all >= 0)
        if len(self.rows) == 0:
            raise TeacherError(
                f"dataset '{dataset.name}' has no labelled training rows to fine-tune on; "
                "use teacher.mode frozen or add labelled rows"
            )
        encoder, self.tok = _load_minilm()
        self.device = pick_device()
        self.spec = spec
        torch.manual_seed(spec.seed)  # the head's initial weights
        self.model = _MeanPoolClassifier(
            encoder, int(encoder.config.hidden_size), dataset.n_classes
        )
        self.model.to(self.device).train()
        texts = [train.texts[i] for i in self.rows]
        self.enc = self.tok(texts, truncation=True, max_length=spec.max_length, padding=False)
        self.y = torch.as_tensor(y_all[self.rows], dtype=torch.long)
        # fused: one kernel over all 22.7M parameters, 4.6x faster than the default loop on
        # this 2-core CPU (0.63 s against 2.9 s a step, measured)
        fused = self.device.type in ("cpu", "cuda")
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=spec.lr, weight_decay=0.01, fused=fused
        )

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The rows ``idx`` padded to their longest, on the device."""
        feats = [{k: self.enc[k][i] for k in self.enc} for i in idx.tolist()]
        padded = self.tok.pad(feats, padding="longest", return_tensors="pt")
        return {k: v.to(self.device) for k, v in padded.items()}

    def step(self, idx: torch.Tensor, lr: float) -> tuple[float, int]:
        """One optimisation step on the rows ``idx``: (loss, correct predictions)."""
        batch = self.batch(idx)
        y = self.y[idx].to(self.device)
        for group in self.opt.param_groups:
            group["lr"] = lr
        with _precision_autocast(self.device, self.spec.precision):
            _, logits = self.model(batch)
        loss = nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach()), int((logits.detach().argmax(-1) == y).sum())


def _run_id(dataset: Dataset, spec: TeacherSpec, total: int) -> str:
    """What a checkpoint must match to be resumed: this data, spec and number of steps."""
    return f"{dataset.fingerprint()}:{spec.model_dump_json()}:{total}:{FINETUNE_LOOP_VERSION}"


def _resume(s: _Setup, ckpt: Path, run_id: str) -> tuple[dict[str, Any] | None, str | None]:
    """Load the newest readable checkpoint of this very fine-tune into ``s``; ``(meta, note)``
    with a note when files were damaged or belong to another fine-tune (it then restarts)."""
    got = load_state(ckpt)
    if got.meta is None:
        return None, got.restart_note(ckpt, "the fine-tune restarts from step 0")
    if got.meta.get("run") != run_id:
        return None, (
            f"{ckpt}: the checkpoint belongs to another fine-tune (other data, settings or "
            "steps); the fine-tune restarts from step 0"
        )
    s.model.load_state_dict(got.tensors.get("model", {}))
    restore_optimizer(s.opt, got.tensors.get("optim", {}), got.meta)
    return got.meta, got.fallback_note(ckpt, f"step {got.meta['step']}")


def finetune_minilm(
    dataset: Dataset,
    spec: TeacherSpec,
    progress: Progress | None = None,
    *,
    max_steps: int | None = None,
    control: FinetuneControl | None = None,
) -> tuple[_MeanPoolClassifier, PreTrainedTokenizerBase]:
    """Fine-tune MiniLM + a linear head end to end on the labelled training rows (AdamW;
    bf16 autocast where ``resolve_precision(spec.precision)`` says bf16: CUDA, and CPUs with
    native bf16).

    Returns the ``_MeanPoolClassifier`` (``.encoder``, ``.head``; ``.facts``) in eval mode,
    and the tokenizer. ``max_steps`` caps optimisation steps (tests; quick looks).
    ``control`` adds step reports, cancel and checkpoints (:class:`FinetuneControl`); a
    cancel raises :class:`FinetuneCancelled`.
    """
    ctl = control or FinetuneControl()
    s = _Setup(dataset, spec)
    n = len(s.rows)
    spe = math.ceil(n / spec.batch_size)  # steps per epoch
    total = finetune_steps(n, spec.epochs, spec.batch_size, max_steps)
    epochs = math.ceil(total / spe)
    run_id = _run_id(dataset, spec, total)
    ckpt = Path(ctl.checkpoint_dir) if ctl.checkpoint_dir is not None else None
    meta, note = _resume(s, ckpt, run_id) if ckpt is not None and ctl.resume else (None, None)
    if note is not None:
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    step = int(meta["step"]) if meta else 0
    history: list[dict[str, Any]] = list(meta["history"]) if meta else []
    sums: dict[str, float] = dict(meta["sums"]) if meta else {"loss": 0.0, "right": 0, "seen": 0}
    s.model.facts = {"resumed_from_step": step, "resume_note": note, "steps": total}
    saved = step
    # With on_step the caller hears every step already; progress is for the embedding passes.
    rep = _Reporter(progress if ctl.on_step is None else _quiet, total, "finetune")
    rep.done = step
    t_start, t_save, start = time.perf_counter(), time.monotonic(), step

    def checkpoint() -> None:
        assert ckpt is not None
        optim, optim_meta = optimizer_state(s.opt)
        tensors = {f"model.{k}": v for k, v in s.model.state_dict().items()} | optim
        state = {"epoch": step // spe, "step": step, "run": run_id, "history": history}
        save_state(ckpt, tensors, dict(state, sums=sums, **optim_meta))

    try:
        while step < total:
            epoch = step // spe
            gen = torch.Generator().manual_seed(spec.seed * 1_000_003 + epoch)
            batches = torch.randperm(n, generator=gen).split(spec.batch_size)
            for idx in batches[step - epoch * spe :]:
                if step >= total:
                    break
                torch.manual_seed(spec.seed * 1_000_003 + step)  # this step's dropout
                lr = spec.lr * lr_factor(step, total)
                t0 = time.perf_counter()
                loss, right = s.step(idx, lr)
                step += 1
                rep.update(1)
                sums = {
                    "loss": sums["loss"] + loss * len(idx),
                    "right": sums["right"] + right,
                    "seen": sums["seen"] + len(idx),
                }
                info: dict[str, Any] = {
                    "step": step, "total_steps": total, "epoch": epoch + 1, "epochs": epochs,
                    "loss": loss, "lr": lr,
                    "examples_per_s": len(idx) / max(time.perf_counter() - t0, 1e-9),
                }  # fmt: skip
                if step % spe == 0 or step == total:  # an epoch ends
                    seen = max(1.0, sums["seen"])
                    entry = {
                        "epoch": epoch + 1, "step": step, "loss": sums["loss"] / seen,
                        "train_accuracy": sums["right"] / seen,
                    }  # fmt: skip
                    history.append(entry)
                    info |= entry
                    sums = {"loss": 0.0, "right": 0, "seen": 0}
                    due = True
                else:
                    due = time.monotonic() - t_save >= ctl.checkpoint_every_s
                if ckpt is not None and due:
                    checkpoint()
                    saved, t_save = step, time.monotonic()
                if ctl.on_step is not None and ctl.on_step(info):
                    raise FinetuneCancelled(step, saved)
    finally:
        rep.close()
    ran = step - start
    s.model.facts |= {
        "steps_run": ran,
        "seconds_per_step": (time.perf_counter() - t_start) / ran if ran else None,
        "history": history,
    }
    s.model.eval()
    return s.model, s.tok


def time_finetune_steps(
    dataset: Dataset, spec: TeacherSpec, steps: int = 2, embed_rows: int = 64
) -> tuple[float, float]:
    """(seconds per fine-tuning step, rows per second of the embedding pass) on this
    machine, for the expected time of a fine-tune before it is queued.

    The steps are the fine-tune's own (model, optimizer, batch size, precision) on real
    training rows: one warm-up step, then the median of ``steps`` timed ones. The embedding
    speed is that of ``extract`` (the pass the fine-tune ends with: rows sorted by length,
    token-budgeted batches) over up to ``embed_rows`` training texts; a plain forward over
    random batches ran 2.5x slower than the real pass here, and overstated the time.
    """
    s = _Setup(dataset, spec)
    gen = torch.Generator().manual_seed(spec.seed)
    perm = torch.randperm(len(s.rows), generator=gen)
    bs = min(spec.batch_size, len(s.rows))
    times = []
    for i in range(steps + 1):
        idx = perm[(i * bs) % len(perm) :][:bs]
        t0 = time.perf_counter()
        s.step(idx, spec.lr)
        times.append(time.perf_counter() - t0)
    s.model.eval()
    texts = dataset.splits["train"].texts
    assert texts is not None  # _Setup checked
    sample = [texts[s.rows[i]] for i in perm[:embed_rows].tolist()]
    t0 = time.perf_counter()
    extract(
        s.model.outputs, s.tok, sample, spec.max_length, spec.batch_size, _quiet,
        device=s.device, precision=spec.precision,
    )  # fmt: skip
    rate = len(sample) / max(time.perf_counter() - t0, 1e-9)
    return float(np.median(times[1:])), float(rate)


def _compute_finetuned(
    dataset: Dataset,
    spec: TeacherSpec,
    progress: Progress | None,
    max_steps: int | None,
    encoder_dir: str | Path | None,
    sink: HSink,
    control: FinetuneControl | None,
) -> TeacherOutputs:
    t0 = time.perf_counter()
    model, tok = finetune_minilm(dataset, spec, progress, max_steps=max_steps, control=control)
    device = pick_device()
    H: dict[str, np.ndarray] = {}
    Z: dict[str, np.ndarray] = {}
    t_embed = time.perf_counter()
    head_fp = hash_arrays(*(p.detach().float().cpu().numpy() for p in model.head.parameters()))
    context = staging_context(spec, device, f"head={head_fp[:16]}")
    for name in dataset.splits:
        H[name], Z[name] = fill_texts(
            sink, dataset, name, model.outputs, tok, spec, device, progress, context,
            int(model.head.weight.shape[1]),
        )  # fmt: skip
    n_rows = sum(len(split) for split in dataset.splits.values())
    meta = _minilm_meta(spec, device)
    meta["embed_rows_per_s"] = n_rows / max(time.perf_counter() - t_embed, 1e-9)
    if encoder_dir is not None:
        # safetensors by default; students initialised from the teacher load it from here.
        model.encoder.save_pretrained(encoder_dir)
        tok.save_pretrained(encoder_dir)
        meta["encoder_dir"] = str(encoder_dir)
    W = model.head.weight.detach().float().cpu().numpy()
    b = model.head.bias.detach().float().cpu().numpy()
    meta.update(
        epochs=spec.epochs, lr=spec.lr, max_steps=max_steps, batch_size=spec.batch_size,
        spec=spec.model_dump(mode="json"), finetune=model.facts,
    )  # fmt: skip
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    return _outputs(dataset, H, Z, W, b, meta, sink)
