"""The pipeline as functions: dataset -> teacher outputs -> subclasses -> student -> metrics.

This is the one place that wires the stages together. The CLI, the app's Distill page and the
job runner all call :func:`run_distill`, so a setting found by eye runs identically headless.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import metrics as M
from . import objectives, training_rows
from .config import ConfigError, DatasetSpec, RunConfig, SubclassSpec, TeacherSpec
from .data import SELECT, load_dataset
from .objectives import Objective, RunContext, TeacherData
from .predict import class_logits_timed
from .replay import save_method_state
from .store import Workspace, claim_staging
from .stored_stats import keep_class_stats
from .students import build_student, encode_inputs, save_student
from .teachers import (
    FinetuneControl,
    compute_teacher_outputs,
    load_teacher_encoder,
    load_tokenizer,
    pick_device,
    teacher_fingerprint,
)
from .train import TrainConfig, TrainData, train
from .training_rows import (  # re-exported: the CLI, the app and tests call them from here
    class_labels as class_labels,
)
from .training_rows import dataset_fps as dataset_fps
from .training_rows import fit_subclasses as fit_subclasses
from .training_rows import manual_assignment as manual_assignment
from .training_rows import manual_groups as manual_groups
from .training_rows import oracle_latent as oracle_latent
from .training_rows import same_data as same_data
from .training_rows import training_split, uses_transfer
from .types import Dataset, TeacherOutputs

ProgressFn = Callable[[int, int, str], None]
OnStep = Callable[[dict[str, Any]], "bool | None"]


def get_dataset(spec: DatasetSpec) -> Dataset:
    """Load and validate the dataset a config names (raises ``core.data.DataError``)."""
    return load_dataset(spec)


def pooling_name(spec: TeacherSpec) -> str:
    """How H was pooled; part of the cache key so a change of pooling is never a false hit."""
    return {"minilm": "mean", "hf": "classifier-input", "arrays": "given"}.get(
        spec.kind, "penultimate"
    )


def get_teacher_outputs(
    ws: Workspace, dataset: Dataset, spec: TeacherSpec, progress: ProgressFn | None = None,
    finetune: FinetuneControl | None = None,
) -> tuple[TeacherOutputs, str, bool]:  # fmt: skip
    """Teacher outputs from the workspace cache, computing and storing them on a miss.

    Returns ``(outputs, cache_key, cache_hit)``; the key is (dataset fingerprint, teacher
    fingerprint, pooling), so a second request for the same pair never recomputes. A
    fine-tuned MiniLM's encoder is kept in ``ws.encoder_dir(key)`` (``Prepared.encoder_dir``).
    ``finetune`` drives a fine-tune on a miss (reports, cancel, checkpoints: the job's). A
    text teacher's pass that is interrupted (killed, Ctrl-C, a cancelled job) keeps its
    finished chunks, and the next call for the key computes only the rest
    (``teachers.staged``).
    """
    dfp, tfp, pooling = dataset.fingerprint(), teacher_fingerprint(spec), pooling_name(spec)
    key = ws.teacher_key(dfp, tfp, pooling)
    cached = ws.load_teacher_outputs(key)
    if cached is not None:
        return cached, key, True
    keep = spec.kind == "minilm" and spec.mode == "finetune"
    # Per call: two writers of one key never touch each other's encoder files.
    tmp = ws.encoder_dir(key).with_name(f".{key}.{uuid.uuid4().hex[:12]}.tmp") if keep else None
    # The key's own staging folder when free (an interrupted pass left its finished chunks
    # there, and they are reused), else a private one; the float16 H files are adopted
    # into arrays/ (store.staging).
    with claim_staging(ws.root, key) as staging:
        if staging.shared:  # a writer that held the claim may have finished meanwhile
            cached = ws.load_teacher_outputs(key)
            if cached is not None:
                return cached, key, True
        try:
            out = compute_teacher_outputs(
                dataset,
                spec,
                progress=progress,
                encoder_dir=tmp,
                h_dir=staging.path,
                finetune=finetune,
            )
            if tmp is not None:  # whole or not at all: renamed only once fully written
                shutil.rmtree(ws.encoder_dir(key), ignore_errors=True)
                try:
                    os.replace(tmp, ws.encoder_dir(key))
                except OSError:  # another writer of this key renamed its (equal) encoder first
                    if not ws.encoder_dir(key).is_dir():
                        raise
            ws.save_teacher_outputs(key, out, dataset_fp=dfp, teacher_fp=tfp, pooling=pooling)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    stored = ws.load_teacher_outputs(key)
    assert stored is not None
    keep_class_stats(ws, key, stored, dataset)  # the Subspaces page's pass over H, done now
    return stored, key, False


def _eval_split(dataset: Dataset) -> str:
    """The split a finished run is scored on once: test (the selection split only when a
    dataset has no test split)."""
    return "test" if "test" in dataset.splits else SELECT


def selection_info(dataset: Dataset) -> dict[str, Any]:
    """What chose what, recorded with every run and shown by the CLI and Compare."""
    return {
        "split": SELECT,
        "source": dataset.selection or f"the dataset's {SELECT} split",
        "n": len(dataset.splits[SELECT]),
        "chooses": "per-epoch monitoring, sweep and benchmark picks, the teacher head's C",
    }


@dataclass
class Prepared:
    """What every student run on one (dataset, teacher, student inputs) shares, made once.

    Why: a sweep or a benchmark trains many students on the same data; loading, running the
    teacher and tokenising are then paid once instead of per run. ``train_student`` checks
    that a run's config names the same dataset, teacher and input length.
    """

    cfg: RunConfig
    dataset: Dataset
    out: TeacherOutputs
    teacher_key: str
    cache_hit: bool
    eval_split: str
    train_inputs: dict[str, Any]
    eval_inputs: dict[str, Any]
    #: The selection split's inputs: per-epoch monitoring and every pick made from scores.
    select_inputs: dict[str, Any] = field(default_factory=dict)
    #: The labeled training rows' inputs and then the transfer rows' (``train_inputs`` is
    #: its first rows, a view): what an objective that ``uses_transfer`` trains on.
    distill_inputs: dict[str, Any] = field(default_factory=dict)
    in_dim: int | None = None
    vocab_size: int | None = None
    teacher_model: Any = None
    #: A fine-tuned MiniLM teacher's saved encoder (None: the teacher loads without one).
    encoder_dir: str | None = None
    manual: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class StudentRun:
    """One trained student: the model, its training result, its scores on the eval (test)
    split, scored once, and on the selection split, which every choice uses."""

    student: Any
    result: Any
    eval_class_logits: np.ndarray
    scores: dict[str, Any]
    sizes: list[int] | None
    recovery: dict[str, Any]
    wall_s: float
    train_scores: dict[str, Any] = field(default_factory=dict)
    method_info: dict[str, Any] = field(default_factory=dict)
    method: Objective | None = None  # the trained objective (its state, info, prediction)
    select_scores: dict[str, Any] = field(default_factory=dict)
    #: The rows it trained on: ``training_rows.data_used`` (labeled and transfer counts).
    data: dict[str, Any] = field(default_factory=dict)


def prepare(cfg: RunConfig, ws: Workspace, progress: ProgressFn | None = None) -> Prepared:
    """Load the dataset, get the teacher outputs (cached) and encode the student inputs."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    dataset = get_dataset(cfg.dataset)
    timings["dataset_s"] = time.perf_counter() - t
    t = time.perf_counter()
    out, teacher_key, cache_hit = get_teacher_outputs(ws, dataset, cfg.teacher, progress)
    timings["teacher_s"] = time.perf_counter() - t
    ev = _eval_split(dataset)
    train_split, eval_split = dataset.splits["train"], dataset.splits[ev]
    t_spec = cfg.teacher
    finetuned = t_spec.kind == "minilm" and t_spec.mode == "finetune"
    encoder_dir = str(ws.encoder_dir(teacher_key)) if finetuned else None

    # Student inputs: the teacher's tokenizer for text, raw features otherwise.
    t = time.perf_counter()
    tokenizer = vocab_size = in_dim = teacher_model = None
    if dataset.is_text:
        if cfg.student.kind == "mlp":
            raise ConfigError(
                "student.kind 'mlp' needs numeric features but this dataset is text; "
                "use student.kind: bag or transformer"
            )
        tokenizer = load_tokenizer(cfg.teacher)
        if tokenizer is None:
            fix = (
                "set teacher.tokenizer: minilm (or a folder of tokenizer files)"
                if cfg.teacher.kind == "arrays"
                else "use teacher.kind minilm or hf"
            )
            raise ConfigError(
                f"teacher.kind {cfg.teacher.kind!r} has no tokenizer for a text student; {fix}"
            )
        vocab_size = len(tokenizer)
        if cfg.student.kind == "transformer" and cfg.student.init == "teacher":
            teacher_model = load_teacher_encoder(cfg.teacher, encoder_dir)
    else:
        if cfg.student.kind != "mlp":
            raise ConfigError(
                f"student.kind {cfg.student.kind!r} needs text but {dataset.name} has numeric "
                "features; use student.kind: mlp"
            )
        in_dim = int(np.asarray(train_split.features).shape[1])
    enc: dict[str, Any] = {"tokenizer": tokenizer, "max_length": cfg.student.max_length}
    with torch.no_grad():
        # labeled and transfer rows encoded once, as one; the labeled rows are a view of it
        distill_inputs = encode_inputs(training_split(dataset), **enc)
        train_inputs = {k: v[: len(train_split)] for k, v in distill_inputs.items()}
        eval_inputs = encode_inputs(eval_split, **enc)
        select_inputs = (
            eval_inputs if ev == SELECT else encode_inputs(dataset.splits[SELECT], **enc)
        )
    timings["encode_s"] = time.perf_counter() - t
    return Prepared(
        cfg=cfg,
        dataset=dataset,
        out=out,
        teacher_key=teacher_key,
        cache_hit=cache_hit,
        eval_split=ev,
        train_inputs=train_inputs,
        eval_inputs=eval_inputs,
        select_inputs=select_inputs,
        distill_inputs=distill_inputs,
        in_dim=in_dim,
        vocab_size=vocab_size,
        teacher_model=teacher_model,
        encoder_dir=encoder_dir,
        manual=(
            manual_assignment(ws, dataset, cfg.subclasses.manual_groups)
            if cfg.subclasses.method == "manual"
            else None
        ),
        timings=timings,
    )


def _check_same_inputs(prep: Prepared, cfg: RunConfig) -> None:
    """A run may only reuse ``prep`` when its data, teacher and student inputs are the same."""
    a, b = prep.cfg, cfg
    if a.dataset != b.dataset or a.teacher != b.teacher:
        raise ValueError(
            "train_student: cfg names another dataset or teacher than the prepared one; "
            "call prepare(cfg, ws) for it"
        )
    if (a.student.kind, a.student.max_length, a.student.init) != (
        b.student.kind,
        b.student.max_length,
        b.student.init,
    ):
        raise ValueError(
            "train_student: student kind, max_length or init differ from the prepared inputs; "
            "call prepare(cfg, ws) for this student"
        )


def subclass_targets(
    prep: Prepared, spec: SubclassSpec, tau: float, sub: Any = None, *, transfer: bool = False
) -> tuple[np.ndarray, list[int], dict[str, Any], Any]:
    """Training targets (n, sum S_c) for ``spec`` at teacher temperature ``tau`` on the
    prepared rows (``transfer``: the transfer rows after the labeled ones); see
    ``training_rows.subclass_targets``."""
    return training_rows.subclass_targets(
        prep.out, prep.dataset, spec, tau, sub, manual=prep.manual, transfer=transfer
    )


#: What ``teacher.path`` must name for the teacher kinds that need one.
TEACHER_PATHS = {
    "hf": "the folder of a saved sequence-classification checkpoint",
    "arrays": "a .npz or .parquet file of teacher arrays",
}


def check_run(cfg: RunConfig) -> None:
    """Refuse, before any work, a run that cannot work: a teacher without the path it needs,
    or an objective its teacher or student cannot serve (called by the Distill page before
    queueing, so such a job is never queued to fail later, by the CLI and by
    ``run_distill``)."""
    what = TEACHER_PATHS.get(cfg.teacher.kind)
    if what is not None and not cfg.teacher.path:
        raise ConfigError(
            f"teacher kind {cfg.teacher.kind!r} needs teacher.path: {what}; give it on the "
            "Data & teacher page (or --set teacher.path=...)"
        )
    objectives.get(cfg.train.objective).check_compatible(cfg.student.kind, cfg.teacher.kind)


def teacher_data(
    prep: Prepared, cfg: RunConfig, objective: Objective, sub: Any = None
) -> tuple[TeacherData, dict[str, Any]]:
    """The cached teacher arrays ``objective`` sets up from (the labeled training rows, and
    the transfer rows when it ``uses_transfer``; the selection split as its eval arrays),
    with pseudo-subclass targets when it learns them; and the subclasses' recovery scores
    (empty without targets)."""
    transfer = uses_transfer(objective, prep.dataset)
    recovery: dict[str, Any] = {}
    targets = sizes = None
    if objective.needs_subclass_targets:
        targets, sizes, recovery, _ = subclass_targets(
            prep, cfg.subclasses, cfg.train.tau, sub, transfer=transfer
        )
    teacher = training_rows.training_data(
        prep.out, prep.dataset, transfer, targets=targets, sizes=sizes, select=SELECT
    )
    return teacher, recovery


def run_context(prep: Prepared, cfg: RunConfig, transfer: bool = False) -> RunContext:
    """What ``Objective.attach`` may use of this run beyond the student (``transfer``: its
    training rows include the transfer rows)."""
    dev = cfg.train.device

    def encoder() -> Any:
        if prep.teacher_model is not None:
            return prep.teacher_model
        return load_teacher_encoder(cfg.teacher, prep.encoder_dir)

    return RunContext(
        student_kind=cfg.student.kind,
        teacher_kind=cfg.teacher.kind,
        train_inputs=prep.distill_inputs if transfer else prep.train_inputs,
        train_features=prep.dataset.splits["train"].features,
        teacher=cfg.teacher,
        load_teacher_encoder=encoder,
        device=pick_device() if dev == "auto" else torch.device(dev),
    )


def train_student(
    prep: Prepared,
    cfg: RunConfig,
    on_step: OnStep | None = None,
    *,
    sub: Any = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> StudentRun:
    """Train and score one student on prepared inputs (nothing is written to the workspace).

    ``sub``: an already fitted subclasser for ``cfg.subclasses`` (see ``subclass_targets``).
    """
    t0 = time.perf_counter()
    _check_same_inputs(prep, cfg)
    out, dataset, ev = prep.out, prep.dataset, prep.eval_split
    train_split, eval_split = dataset.splits["train"], dataset.splits[ev]
    select_split = dataset.splits[SELECT]

    objective = objectives.make(cfg.train.objective, cfg.train)
    transfer = uses_transfer(objective, dataset)  # distillation: labeled + transfer rows
    teacher, recovery = teacher_data(prep, cfg, objective, sub)
    objective.setup(teacher)
    torch.manual_seed(cfg.train.seed)
    student = build_student(
        cfg.student,
        objective.n_outputs(dataset.n_classes),
        in_dim=prep.in_dim,
        vocab_size=prep.vocab_size,
        teacher_model=prep.teacher_model,
    )
    objective.attach(student, run_context(prep, cfg, transfer))
    data = TrainData(
        train_inputs=prep.distill_inputs if transfer else prep.train_inputs,
        y=torch.as_tensor(np.asarray(teacher.y), dtype=torch.long),  # -1: a transfer row
        # Per-epoch monitoring runs on the selection split, never on test.
        eval_inputs=prep.select_inputs,
        eval_y=torch.as_tensor(select_split.y, dtype=torch.long),
        eval_teacher_logits=torch.as_tensor(np.asarray(out.Z[SELECT]), dtype=torch.float32),
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
        compile=cfg.train.compile,
        checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir),
        resume=resume,
    )
    result = train(student, data, tcfg, on_step=on_step, objective=objective)

    def class_log_probs(inputs: dict[str, Any]) -> tuple[np.ndarray, dict[str, float]]:
        lp, timing = class_logits_timed(objective, student, inputs, batch_size=512)
        return np.asarray(lp.detach().cpu().float()), timing

    # The test split is scored once, here, after training; nothing above looked at it.
    student_eval, timing = class_log_probs(prep.eval_inputs)
    latent_eval = eval_split.latent or None
    scores = M.summarize(student_eval, np.asarray(out.Z[ev]), eval_split.y, latent_eval)
    student_sel = student_eval if ev == SELECT else class_log_probs(prep.select_inputs)[0]
    select_scores = M.summarize(student_sel, np.asarray(out.Z[SELECT]), select_split.y)
    # Fidelity on the training data too (Stanton et al. 2021: students often fail to match
    # their teacher even where they were trained).
    student_train, _ = class_log_probs(prep.train_inputs)
    z_train = np.asarray(out.Z["train"])
    train_scores = {
        "accuracy": M.accuracy(student_train, train_split.y),
        "agreement": M.agreement(student_train, z_train),
        "kl": M.predictive_kl(z_train, student_train),
    }
    info = objective.info()
    method_info = dict(info, **timing) if objective.records_predict_time else info
    return StudentRun(
        student=student,
        result=result,
        eval_class_logits=student_eval,
        scores=scores,
        sizes=teacher.sizes,
        recovery=recovery,
        wall_s=time.perf_counter() - t0,
        train_scores=train_scores,
        method_info=method_info,
        method=objective,
        select_scores=select_scores,
        data=training_rows.data_used(dataset, transfer),
    )


def run_distill(
    cfg: RunConfig,
    ws: Workspace,
    on_step: OnStep | None = None,
    *,
    run_id: str | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
    prep: Prepared | None = None,
) -> dict[str, Any]:
    """Distil one student as ``cfg`` says and record the run in the workspace.

    ``prep``: ``prepare(cfg, ws)``'s result when the caller already has it (the CLI reuses it
    for the hard-label baseline of ``core.headroom``).

    Returns the run record: ``run_id``, ``name``, ``config``, ``metrics`` (student and teacher
    scores on the evaluation split, training history, wall time) and ``artifacts`` (student
    folder, stored logits).
    """
    check_run(cfg)  # before any work: a run that cannot work is refused first
    t0 = time.perf_counter()
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    prep = prepare(cfg, ws, progress) if prep is None else prep
    run = train_student(prep, cfg, on_step, checkpoint_dir=checkpoint_dir, resume=resume)
    out, dataset, ev = prep.out, prep.dataset, prep.eval_split
    eval_split = dataset.splits[ev]
    student_eval, result, sizes = run.eval_class_logits, run.result, run.sizes
    teacher_scores = {
        "accuracy": M.accuracy(np.asarray(out.Z[ev]), eval_split.y),
        "ece": M.ece(M.softmax(np.asarray(out.Z[ev])), eval_split.y),
        "select_accuracy": M.accuracy(np.asarray(out.Z[SELECT]), dataset.splits[SELECT].y),
    }

    rdir = ws.run_dir(run_id)
    save_student(
        rdir / "student",
        run.student,
        {"config": cfg.model_dump(mode="json"), "sizes": sizes, "teacher_key": prep.teacher_key},
    )
    assert run.method is not None  # train_student always sets it
    state_path = save_method_state(rdir / "student", run.method)
    # Paths relative to the workspace: a moved or copied workspace serves its own files.
    artifacts = {
        "student_dir": (rdir / "student").relative_to(ws.root).as_posix(),
        "eval_logits": ws.put_array(student_eval.astype(np.float32)),
        "eval_split": ev,
        "teacher_key": prep.teacher_key,
        "dataset_fp": dataset.fingerprint(),
        "labeled_fp": dataset.labeled().fingerprint(),  # the splits it was scored on
    }
    if state_path is not None:
        artifacts["method_state"] = state_path.relative_to(ws.root).as_posix()
    record = {
        "run_id": run_id,
        "name": cfg.name or run_id,
        "config": cfg.model_dump(mode="json"),
        "metrics": {
            "student": run.scores,
            "student_train": run.train_scores,
            "student_select": run.select_scores,
            "selection": selection_info(dataset),
            "data": run.data,
            "method": run.method_info,
            "teacher": teacher_scores,
            "history": result.history,
            "recovery": run.recovery,
            "cancelled": bool(getattr(result, "cancelled", False)),
            "resumed_from_epoch": getattr(result, "resumed_from_epoch", None),
            "teacher_cache_hit": prep.cache_hit,
            "device": str(getattr(result, "device", "")),
            "wall_s": time.perf_counter() - t0,
            "train_s": float(getattr(result, "wall_s", 0.0)),
        },
        "artifacts": artifacts,
    }
    ws.save_run(record)
    return record
