"""The pipeline as functions: dataset -> teacher outputs -> subclasses -> student -> metrics.

This is the one place that wires the stages together. The CLI, the app's Distill page and the
job runner all call :func:`run_distill`, so a setting found by eye runs identically headless.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core import metrics as M
from core.config import ConfigError, DatasetSpec, RunConfig, SubclassSpec, TeacherSpec
from core.store import Workspace
from core.types import Dataset, TeacherOutputs

ProgressFn = Callable[[int, int, str], None]
OnStep = Callable[[dict[str, Any]], "bool | None"]


def get_dataset(spec: DatasetSpec) -> Dataset:
    """Load and validate the dataset a config names (raises ``core.data.DataError``)."""
    from core.data import load_dataset

    return load_dataset(spec)


def pooling_name(spec: TeacherSpec) -> str:
    """How H was pooled; part of the cache key so a change of pooling is never a false hit."""
    return {"minilm": "mean", "hf": "classifier-input", "arrays": "given"}.get(
        spec.kind, "penultimate"
    )


def get_teacher_outputs(
    ws: Workspace, dataset: Dataset, spec: TeacherSpec, progress: ProgressFn | None = None
) -> tuple[TeacherOutputs, str, bool]:
    """Teacher outputs from the workspace cache, computing and storing them on a miss.

    Returns ``(outputs, cache_key, cache_hit)``; the key is (dataset fingerprint, teacher
    fingerprint, pooling), so a second request for the same pair never recomputes.
    """
    from core.teachers import compute_teacher_outputs, teacher_fingerprint

    dfp, tfp, pooling = dataset.fingerprint(), teacher_fingerprint(spec), pooling_name(spec)
    key = ws.teacher_key(dfp, tfp, pooling)
    cached = ws.load_teacher_outputs(key)
    if cached is not None:
        return cached, key, True
    out = compute_teacher_outputs(dataset, spec, progress=progress)
    ws.save_teacher_outputs(key, out, dataset_fp=dfp, teacher_fp=tfp, pooling=pooling)
    stored = ws.load_teacher_outputs(key)
    assert stored is not None
    return stored, key, False


def class_labels(spec: SubclassSpec, out: TeacherOutputs, dataset: Dataset, split: str) -> np.ndarray:
    """The class that defines each class-conditional set: ground truth or teacher argmax."""
    if spec.class_source == "teacher":
        return np.asarray(out.Z[split]).argmax(1)
    return np.asarray(dataset.splits[split].y)


def fit_subclasses(
    spec: SubclassSpec,
    out: TeacherOutputs,
    dataset: Dataset,
    manual: np.ndarray | None = None,
) -> Any:
    """Fit the pseudo-subclass builder a spec describes on the training split."""
    from core.subclasses import make_subclasser

    train = dataset.splits["train"]
    latent = None
    if spec.method == "oracle":
        col = spec.latent_col or (dataset.latent_columns[0] if dataset.latent_columns else None)
        if col is None or col not in train.latent:
            raise ConfigError(
                f"subclasses.method 'oracle' needs a latent column; got latent_col={col!r}, "
                f"dataset has {dataset.latent_columns or 'none'}"
            )
        latent = train.latent[col]
    sub = make_subclasser(spec, latent=latent, manual=manual)
    H = np.asarray(out.H["train"], dtype=np.float32)
    y = class_labels(spec, out, dataset, "train")
    if spec.method == "oracle":
        sub.fit(H, y, latent=latent)
    else:
        sub.fit(H, y, W=out.W)
    return sub


def _eval_split(dataset: Dataset) -> str:
    return "test" if "test" in dataset.splits else "dev"


def run_distill(
    cfg: RunConfig,
    ws: Workspace,
    on_step: OnStep | None = None,
    *,
    run_id: str | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Distil one student as ``cfg`` says and record the run in the workspace.

    Returns the run record: ``run_id``, ``name``, ``config``, ``metrics`` (student and teacher
    scores on the evaluation split, training history, wall time) and ``artifacts`` (student
    folder, stored logits).
    """
    import torch

    from core.students import build_student, encode_inputs, save_student
    from core.teachers import load_teacher_encoder, load_tokenizer
    from core.train import TrainConfig, TrainData, predict, train

    t0 = time.perf_counter()
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    dataset = get_dataset(cfg.dataset)
    out, teacher_key, cache_hit = get_teacher_outputs(ws, dataset, cfg.teacher, progress)
    ev = _eval_split(dataset)
    train_split, eval_split = dataset.splits["train"], dataset.splits[ev]

    targets = sizes = None
    recovery: dict[str, Any] = {}
    if cfg.train.objective == "lelp":
        sub = fit_subclasses(cfg.subclasses, out, dataset)
        H_train = np.asarray(out.H["train"], dtype=np.float32)
        targets = sub.targets(H_train, np.asarray(out.Z["train"]), tau=cfg.train.tau)
        sizes = list(sub.sizes_)
        if dataset.latent_columns:
            from core.subclasses import recovery_scores

            y_cls = class_labels(cfg.subclasses, out, dataset, "train")
            assign = sub.assign(H_train, y_cls)
            recovery = {
                col: recovery_scores(assign, y_cls, train_split.latent[col])
                for col in dataset.latent_columns
            }

    # Student inputs: the teacher's tokenizer for text, raw features otherwise.
    tokenizer = vocab_size = in_dim = teacher_model = None
    if dataset.is_text:
        if cfg.student.kind == "mlp":
            raise ConfigError(
                "student.kind 'mlp' needs numeric features but this dataset is text; "
                "use student.kind: bag or transformer"
            )
        tokenizer = load_tokenizer(cfg.teacher)
        if tokenizer is None:
            raise ConfigError(
                f"teacher.kind {cfg.teacher.kind!r} has no tokenizer for a text student; "
                "use teacher.kind minilm or hf"
            )
        vocab_size = len(tokenizer)
        if cfg.student.kind == "transformer" and cfg.student.init == "teacher":
            teacher_model = load_teacher_encoder(cfg.teacher)
    else:
        if cfg.student.kind != "mlp":
            raise ConfigError(
                f"student.kind {cfg.student.kind!r} needs text but {dataset.name} has numeric "
                "features; use student.kind: mlp"
            )
        in_dim = int(np.asarray(train_split.features).shape[1])

    n_out = sum(sizes) if sizes else dataset.n_classes
    torch.manual_seed(cfg.train.seed)
    student = build_student(
        cfg.student, n_out, in_dim=in_dim, vocab_size=vocab_size, teacher_model=teacher_model
    )
    enc = {"tokenizer": tokenizer, "max_length": cfg.student.max_length}
    data = TrainData(
        train_inputs=encode_inputs(train_split, **enc),
        y=torch.as_tensor(train_split.y, dtype=torch.long),
        teacher_logits=torch.as_tensor(np.asarray(out.Z["train"]), dtype=torch.float32),
        targets=None if targets is None else torch.as_tensor(targets, dtype=torch.float32),
        sizes=sizes,
        eval_inputs=encode_inputs(eval_split, **enc),
        eval_y=torch.as_tensor(eval_split.y, dtype=torch.long),
        eval_teacher_logits=torch.as_tensor(np.asarray(out.Z[ev]), dtype=torch.float32),
    )
    tcfg = TrainConfig(
        objective=cfg.train.objective,
        tau=cfg.train.tau,
        alpha=cfg.train.alpha,
        epochs=cfg.train.epochs,
        lr=cfg.train.lr,
        batch_size=cfg.train.batch_size,
        weight_decay=cfg.train.weight_decay,
        device=cfg.train.device,
        seed=cfg.train.seed,
        checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir),
        resume=resume,
    )
    result = train(student, data, tcfg, on_step=on_step)

    from core.train import class_logits

    raw_eval = predict(student, data.eval_inputs, batch_size=512)
    student_eval = class_logits(raw_eval, cfg.train.objective, sizes, cfg.train.tau)
    student_eval = np.asarray(student_eval.detach().cpu().float())
    latent_eval = eval_split.latent or None
    student_scores = M.summarize(student_eval, np.asarray(out.Z[ev]), eval_split.y, latent_eval)
    teacher_scores = {
        "accuracy": M.accuracy(np.asarray(out.Z[ev]), eval_split.y),
        "ece": M.ece(M.softmax(np.asarray(out.Z[ev])), eval_split.y),
    }

    rdir = ws.run_dir(run_id)
    save_student(
        rdir / "student",
        student,
        {"config": cfg.model_dump(mode="json"), "sizes": sizes, "teacher_key": teacher_key},
    )
    artifacts = {
        "student_dir": str(rdir / "student"),
        "eval_logits": ws.put_array(student_eval.astype(np.float32)),
        "eval_split": ev,
        "teacher_key": teacher_key,
        "dataset_fp": dataset.fingerprint(),
    }
    record = {
        "run_id": run_id,
        "name": cfg.name or run_id,
        "config": cfg.model_dump(mode="json"),
        "metrics": {
            "student": student_scores,
            "teacher": teacher_scores,
            "history": result.history,
            "recovery": recovery,
            "cancelled": bool(getattr(result, "cancelled", False)),
            "resumed_from_epoch": getattr(result, "resumed_from_epoch", None),
            "teacher_cache_hit": cache_hit,
            "device": str(getattr(result, "device", "")),
            "wall_s": time.perf_counter() - t0,
            "train_s": float(getattr(result, "wall_s", 0.0)),
        },
        "artifacts": artifacts,
    }
    ws.save_run(record)
    return record
