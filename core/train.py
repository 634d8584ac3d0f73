"""The student training loop, in one function you can read top to bottom (nanoGPT style).

``train(student, data, config, on_step)``: device, dtype and autocast are decided once at the
top; inputs live on the device and batches are taken by indexing a seeded permutation (no
DataLoader, no per-example Python); then one loop: forward, loss, backward, clip, step, zero
grads; every ``log_every`` steps and at each epoch end report through ``on_step`` (which can
cancel), evaluate and checkpoint at epoch ends. The loop imports neither SQLite nor Streamlit.

Checkpoints (``checkpoint_dir``): ``last.safetensors`` holds the model weights (``model.*``)
and the optimizer's tensors (``optim.*``); ``last.json`` holds the epoch, step, config,
history, best metric and the optimizer's non-tensor state. Loading never unpickles.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from .checkpoint import load_state, optimizer_state, restore_optimizer, save_state
from .objectives import Batch, Objective, TeacherData, make
from .predict import autocast_for, batch_widths, predict, row_widths, take_rows
from .students import unwrap

OnStep = Callable[[dict[str, Any]], "bool | None"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train a student. ``objective``: a registered name (``core.objectives``), used
    when ``train`` is given no ``Objective``; ``tau``/``alpha`` are its shared knobs;
    ``grad_clip`` <= 0 disables clipping; ``log_every``: steps between ``on_step`` reports
    inside an epoch; ``compile`` runs the student's forward through ``torch.compile`` (pays a
    compile at the start and at new batch widths, so it suits long runs on CUDA)."""

    objective: str = "lelp"
    tau: float = 1.0
    alpha: float = 0.0
    epochs: int = 8
    lr: float = 3e-3
    batch_size: int = 128
    weight_decay: float = 0.0
    device: str = "auto"
    seed: int = 0
    grad_clip: float = 1.0
    eval_every_epoch: bool = True
    checkpoint_dir: str | None = None
    resume: bool = False
    log_every: int = 50
    compile: bool = False


@dataclass
class TrainData:
    """Tensors for one training run (CPU or device; ``train`` moves them).

    ``train_inputs``/``eval_inputs``: dicts from ``core.students.encode_inputs``. ``y``: (n,)
    class ids. ``teacher_logits``: (n, C), needed for kd. ``targets``: (n, sum S_c) and
    ``sizes`` (S_c per class), needed for lelp (both only read when ``train`` sets up the
    objective itself). ``eval_*``: optional held-out split for the per-epoch accuracy and
    teacher agreement.
    """

    train_inputs: dict[str, Tensor]
    y: Tensor
    teacher_logits: Tensor | None = None
    targets: Tensor | None = None
    sizes: list[int] | None = None
    eval_inputs: dict[str, Tensor] | None = None
    eval_y: Tensor | None = None
    eval_teacher_logits: Tensor | None = None


@dataclass
class TrainResult:
    """What ``train`` returns. ``history``: one dict per evaluation (epoch, step, loss,
    eval_accuracy, eval_agreement, examples_per_s, lr). ``eval_class_logits``: (n_eval, C)
    per-class log-probabilities on the eval split after training (CPU), None without eval
    data. ``resumed_from_epoch``: the epoch a checkpoint restored, None for a fresh run."""

    history: list[dict[str, Any]] = field(default_factory=list)
    eval_class_logits: Tensor | None = None
    wall_s: float = 0.0
    device: str = "cpu"
    resumed_from_epoch: int | None = None
    cancelled: bool = False
    epochs_done: int = 0
    steps: int = 0
    batch_size: int = 0


def pick_device(pref: str = "auto") -> torch.device:
    """``auto``: cuda, else mps, else cpu. An explicit device that is absent is an error."""
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if pref == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if pref == "cuda" and not cuda:
        raise ValueError("train.device=cuda but no CUDA GPU is visible; use auto or cpu")
    if pref == "mps" and not mps:
        raise ValueError("train.device=mps but MPS is not available; use auto or cpu")
    if pref not in ("cpu", "cuda", "mps"):
        raise ValueError(f"train.device={pref!r}; valid: auto, cpu, cuda, mps")
    return torch.device(pref)


def _check_data(data: TrainData, config: TrainConfig) -> None:
    n = data.y.shape[0]
    for k, v in data.train_inputs.items():
        if v.shape[0] != n:
            raise ValueError(f"train_inputs[{k!r}] has {v.shape[0]} rows but y has {n}")
    if config.batch_size < 1 or config.epochs < 1:
        raise ValueError("train.batch_size and train.epochs must be >= 1")


def objective_from_data(data: TrainData, config: TrainConfig) -> Objective:
    """The objective ``config.objective`` names, set up from ``data``'s teacher logits and
    subclass targets (what a run without the pipeline's teacher arrays can offer)."""
    objective = make(config.objective, tau=config.tau, alpha=config.alpha, seed=config.seed)
    teacher = TeacherData(Z=data.teacher_logits, y=data.y, targets=data.targets, sizes=data.sizes)
    return objective.setup(teacher)


def _save_checkpoint(
    ckpt_dir: Path, student: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any],
    objective: Objective,
) -> None:  # fmt: skip
    """Model (``model.*``), objective (``method.*``) and optimizer tensors in safetensors, the
    rest in JSON, one generation kept as ``prev.*`` (``checkpoint.save_state``)."""
    tensors = {f"model.{k}": v for k, v in unwrap(student).state_dict().items()}
    tensors |= {f"method.{k}": v for k, v in objective.state_dict().items()}
    optim, optim_meta = optimizer_state(opt)
    save_state(ckpt_dir, tensors | optim, dict(state, **optim_meta))


def _load_checkpoint(
    ckpt_dir: Path, student: nn.Module, opt: torch.optim.Optimizer, objective: Objective
) -> tuple[dict[str, Any] | None, str | None]:
    """Restore model, objective and optimizer from the newest readable checkpoint in ``ckpt_dir``.

    Returns ``(meta, note)``. Why a note: a truncated or unreadable ``last.*`` must not fail
    every retry, so the previous generation (``prev.*``) is used instead, and when nothing is
    readable ``(None, note)`` means "restart from epoch 1"; the note names the damaged files.
    ``(None, None)``: no checkpoint.
    """
    got = load_state(ckpt_dir)
    if got.meta is None:
        return None, got.restart_note(ckpt_dir, "restarting from epoch 1")
    meta = got.meta
    try:
        unwrap(student).load_state_dict(got.tensors.get("model", {}))
        objective.load_state_dict(got.tensors.get("method", {}))
    except (RuntimeError, KeyError) as err:
        stateful = bool(objective.state_dict())
        what = f"student and {objective.name} method" if stateful else "student"
        raise ValueError(
            f"{ckpt_dir}: the checkpoint does not fit this {what} ({err}); use a fresh "
            "checkpoint_dir or set resume=False"
        ) from None
    restore_optimizer(opt, got.tensors.get("optim", {}), meta)
    return meta, got.fallback_note(ckpt_dir, f"epoch {meta['epoch']}")


def train(
    student: nn.Module,
    data: TrainData,
    config: TrainConfig,
    on_step: OnStep | None = None,
    objective: Objective | None = None,
) -> TrainResult:
    """Train ``student`` in place on ``data`` and return the history and final eval outputs.

    ``objective`` (``core.objectives``; set up and attached to ``student``) gives the loss:
    the loop calls ``objective.loss`` (with the student's embedding when
    ``objective.needs_embedding``), trains ``objective.extra_modules()`` with the student,
    calls ``objective.after_step`` after each optimiser step and predicts with
    ``objective.class_logits``. Its ``state_dict()`` is saved with each checkpoint, so a
    resume continues the objective too. Without one, ``config.objective`` is made and set
    up from ``data`` (``objective_from_data``).

    ``on_step(info)`` gets dict(step, total_steps, epoch, epochs, loss, examples_per_s, lr)
    every ``config.log_every`` steps and at each epoch end (then also eval_accuracy,
    eval_agreement); returning True stops cleanly with ``result.cancelled = True`` (a
    checkpoint keeps the last complete epoch, so a resume redoes a cancelled partial one).
    A CUDA out-of-memory error propagates as ``torch.OutOfMemoryError`` (see
    ``core.jobs``, which retries once at half the batch size).
    """
    t_start = time.perf_counter()
    if objective is None:
        objective = objective_from_data(data, config)
        objective.attach(student)
    _check_data(data, config)

    # ---- device, dtype, autocast: decided once ----
    device = pick_device(config.device)
    autocast, amp_dtype = autocast_for(device)
    # A gradient scaler is only needed for fp16 (bf16 has float32's exponent range).
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    # ---- seeds: torch for init/dropout, a private generator for the shuffling ----
    torch.manual_seed(config.seed)
    gen = torch.Generator()

    # ---- data on the device, once ----
    inputs = {k: v.to(device) for k, v in data.train_inputs.items()}
    # Token widths per row stay on the CPU; on CUDA widths are rounded up to 8 (tensor-core
    # friendly, and fewer shapes for torch.compile to specialise on).
    widths = row_widths(data.train_inputs)
    width_multiple = 8 if device.type == "cuda" else 1
    y = data.y.to(device).long()
    n = y.shape[0]
    eval_inputs = (
        {k: v.to(device) for k, v in data.eval_inputs.items()} if data.eval_inputs else None
    )
    eval_y = data.eval_y.long() if data.eval_y is not None else None
    eval_teacher_pred = (
        data.eval_teacher_logits.argmax(-1) if data.eval_teacher_logits is not None else None
    )

    student.to(device)
    objective.to(device)
    # The compiled wrapper runs the forward; ``student`` (its parameters, predict, the
    # checkpoints through ``unwrap``) stays the plain module.
    model = _compile(student) if config.compile else student
    params = list(student.parameters())
    params += [p for m in objective.extra_modules() for p in m.parameters()]
    # The default AdamW runs ~7 elementwise ops (CUDA: kernel launches) per parameter
    # tensor; the fused kernel does one pass (same update), on CPU and CUDA.
    opt = torch.optim.AdamW(
        params,
        lr=config.lr,
        weight_decay=config.weight_decay,
        fused=device.type in ("cpu", "cuda") or None,
    )
    bs = min(config.batch_size, n)
    steps_per_epoch = math.ceil(n / bs)
    total_steps = config.epochs * steps_per_epoch
    saved_config = dict(asdict(config), objective=objective.name)

    # ---- resume ----
    result = TrainResult(device=str(device), batch_size=bs)
    start_epoch, step, best = 0, 0, None
    ckpt_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    if ckpt_dir is not None and config.resume:
        # A damaged checkpoint falls back to the previous one or restarts; the note says so
        # (the job runner records it too), and the restored history ends at that epoch.
        meta, note = _load_checkpoint(ckpt_dir, student, opt, objective)
        if note is not None:
            warnings.warn(note, RuntimeWarning, stacklevel=2)
        if meta is not None:
            if meta["config"]["objective"] != objective.name:
                raise ValueError(
                    f"{ckpt_dir}: checkpoint trained objective {meta['config']['objective']!r}, "
                    f"this run asks for {objective.name!r}; use another checkpoint_dir"
                )
            start_epoch, step, best = int(meta["epoch"]), int(meta["step"]), meta.get("best")
            result.history = [h for h in meta.get("history", []) if h["epoch"] <= start_epoch]
            result.resumed_from_epoch = start_epoch

    def eval_class_logits() -> Tensor:
        # Monitoring scores the student alone (no inference-time retrieval).
        assert eval_inputs is not None  # called only when there are eval inputs
        return objective.class_logits(predict(student, eval_inputs))

    def evaluate() -> dict[str, float | None]:
        if eval_inputs is None:
            return {"eval_accuracy": None, "eval_agreement": None}
        pred = eval_class_logits().argmax(-1)
        acc = float((pred == eval_y).float().mean()) if eval_y is not None else None
        agree = (
            float((pred == eval_teacher_pred).float().mean())
            if eval_teacher_pred is not None
            else None
        )
        return {"eval_accuracy": acc, "eval_agreement": agree}

    # ---- the loop ----
    result.epochs_done = start_epoch
    for epoch in range(start_epoch, config.epochs):
        # Re-seeding per epoch makes a resumed run shuffle (and drop out) exactly as an
        # uninterrupted one would.
        gen.manual_seed(config.seed * 1_000_003 + epoch)
        torch.manual_seed(config.seed * 1_000_003 + epoch)
        perm_cpu = torch.randperm(n, generator=gen)
        cuts = batch_widths(widths, perm_cpu, bs, width_multiple)  # no device reads
        perm = perm_cpu.to(device)
        student.train()
        t_epoch = t_log = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        seen_log = 0
        for i in range(steps_per_epoch):
            idx = perm[i * bs : (i + 1) * bs]
            batch = take_rows(inputs, idx, cuts[i])
            emb = None
            with autocast():
                if objective.needs_embedding:
                    core = unwrap(student)  # the embedding and the logits from one pass
                    embed = cast(Callable[[dict[str, Tensor]], Tensor], core.embed)
                    emb = embed(batch).float()
                    out = cast(nn.Linear, core.head)(emb).float()
                else:
                    out = model(batch).float()
            objective.check_outputs(out.shape[-1])
            progress = step / total_steps
            loss = objective.loss(out, Batch(idx, y[idx], emb, progress))
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            opt.zero_grad(set_to_none=True)
            # queues, DiSK's gate and dual variable
            detached = None if emb is None else emb.detach()
            objective.after_step(out.detach(), Batch(idx, y[idx], detached, progress))
            loss_sum += loss.detach() * idx.shape[0]
            step += 1
            seen_log += idx.shape[0]
            if on_step is not None and step % config.log_every == 0 and i < steps_per_epoch - 1:
                now = time.perf_counter()
                info = {
                    "step": step,
                    "total_steps": total_steps,
                    "epoch": epoch + 1,
                    "epochs": config.epochs,
                    "loss": float(loss.detach()),  # this batch's loss (one sync per report)
                    "examples_per_s": seen_log / max(now - t_log, 1e-9),
                    "lr": opt.param_groups[0]["lr"],
                }
                t_log, seen_log = now, 0
                if on_step(info):
                    result.cancelled = True
                    break
        if result.cancelled:
            break

        # ---- epoch end: evaluate, report, checkpoint ----
        epoch_loss = float(loss_sum) / n  # mean training loss over the epoch (syncs the GPU)
        elapsed = time.perf_counter() - t_epoch
        entry: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            "loss": epoch_loss,
            "examples_per_s": n / max(elapsed, 1e-9),
            "lr": opt.param_groups[0]["lr"],
        }
        if config.eval_every_epoch or epoch == config.epochs - 1:
            entry.update(evaluate())
            acc = entry["eval_accuracy"]
            if acc is not None and (best is None or acc > best):
                best = acc
        result.history.append(entry)
        result.epochs_done = epoch + 1
        if ckpt_dir is not None:
            _save_checkpoint(
                ckpt_dir,
                student,
                opt,
                {
                    "epoch": epoch + 1,
                    "step": step,
                    "config": saved_config,
                    "best": best,
                    "history": result.history,
                },
                objective,
            )
        if on_step is not None and on_step(
            dict(entry, total_steps=total_steps, epochs=config.epochs)
        ):
            result.cancelled = True
            break

    if eval_inputs is not None:
        result.eval_class_logits = eval_class_logits()
    result.steps = step
    result.wall_s = time.perf_counter() - t_start
    return result


def _compile(student: nn.Module) -> nn.Module:
    """``torch.compile(student)``, or a clear error where this torch cannot compile."""
    if not hasattr(torch, "compile"):
        raise RuntimeError("train.compile=True needs torch >= 2.0; set compile=False")
    try:
        # torch.compile of a module returns an OptimizedModule (an nn.Module)
        return cast(nn.Module, torch.compile(student, dynamic=None))
    except RuntimeError as err:  # e.g. an unsupported Python version for dynamo
        raise RuntimeError(f"torch.compile is unavailable here ({err}); set compile=False") from err


def _free_cuda() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
