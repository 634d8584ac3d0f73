"""Running one job in this process: ``run_job`` and the runners of the built-in kinds.

``run_job``'s ``on_step`` callback writes progress, metrics and the heartbeat (throttled) and
returns True once a cancel was requested; a heartbeat thread keeps the row fresh while a stage
has no callback. A retry resumes from the job's checkpoint in ``ws.run_dir(f"job-{id}") /
"ckpt"`` (a damaged one falls back to the previous generation or restarts from epoch 1, with a
note: ``resume_point``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import config_from_dict
from ..store import Workspace
from .checkpoints import ResumePoint, _restore_metrics, ckpt_dir, read_checkpoint, resume_text
from .kinds import (
    KINDS,
    STEP_KINDS,
    Runner,
    batch_size,
    effective_config,
    known_kinds,
    plugin_kinds,
)
from .queue import _read_job, finish, get_job
from .table import Job, JobError, _db, _jsonable, _merge_metrics

LOG_TAIL_CHARS = 4000
CANCEL_GRACE_S = 2.5
"""How long a job process may take to reach a cancel check before it is stopped forcibly."""


def _is_eval(info: dict[str, Any]) -> bool:
    return any("accuracy" in k or "agreement" in k for k in info)


def is_oom(err: BaseException) -> bool:
    """True for a CUDA out-of-memory error (checked without importing torch)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        oom = getattr(torch, "OutOfMemoryError", None) or getattr(
            getattr(torch, "cuda", None), "OutOfMemoryError", None
        )
        if oom is not None and isinstance(err, oom):
            return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and "out of memory" in text and "cuda" in text


def _run_config_kind(
    ws: Workspace, job: Job, on_step: Callable, ckpt: Path, resume: bool, progress: Callable
) -> dict[str, Any]:
    """distill / sweep-member: the same ``pipeline.run_distill`` the CLI and the app call."""
    from .. import pipeline  # torch: imported only where a job runs

    cfg = config_from_dict(effective_config(job), f"job {job.id}")
    return pipeline.run_distill(
        cfg,
        ws,
        on_step,
        run_id=f"job-{job.id}",
        checkpoint_dir=ckpt,
        resume=resume,
        progress=progress,
    )


def _run_embed(
    ws: Workspace, job: Job, on_step: Callable, ckpt: Path, resume: bool, progress: Callable
) -> dict[str, Any]:
    """embed / teacher-finetune: compute (or fetch) the teacher outputs into the workspace
    cache, under the key every page and run looks them up by.

    A fine-tuned teacher (``teacher.mode: finetune``, the ``teacher-finetune`` kind) reports
    each step through ``on_step``, stops when it returns True (the job is then cancelled)
    and checkpoints in ``ckpt``, so a retry resumes from the last step saved; once its
    outputs are cached the checkpoint (model and optimizer, ~270 MB) is deleted.
    """
    from .. import pipeline  # torch: imported only where a job runs
    from ..teachers import FinetuneCancelled, FinetuneControl

    cfg = config_from_dict(effective_config(job), f"job {job.id}")
    dataset = pipeline.get_dataset(cfg.dataset)
    control = FinetuneControl(on_step=on_step, checkpoint_dir=ckpt, resume=resume)
    try:
        out, key, hit = pipeline.get_teacher_outputs(ws, dataset, cfg.teacher, progress, control)
    except FinetuneCancelled as stop:
        return {"run_id": None, "metrics": {"cancelled": True, "step": stop.step}}
    shutil.rmtree(ckpt, ignore_errors=True)
    return {"run_id": None, "teacher_key": key, "metrics": {"cache_hit": hit}}


RUNNERS: dict[str, Runner] = {
    "distill": _run_config_kind,
    "sweep-member": _run_config_kind,
    "embed": _run_embed,
    "teacher-finetune": _run_embed,
}
"""Built-in kind -> runner ``(ws, job, on_step, ckpt_dir, resume, progress) -> record``."""


def runner_for(kind: str) -> Runner:
    """The runner of a built-in kind (looked up at call time, so a test may replace one),
    else of a plugged-in kind (see ``kinds``)."""
    if kind in RUNNERS:
        return RUNNERS[kind]
    extra = plugin_kinds().get(kind)
    if extra is None:
        raise JobError(f"job kind {kind!r} is not known; choose one of {', '.join(known_kinds())}")
    return extra.run


def resume_point(ws: Workspace, job_id: int, kind: str | None = None) -> ResumePoint:
    """What a retry of ``job_id`` (a ``kind`` job; read from the table when None) will
    resume from: the kind's own checkpoint if it has a reader for one, else the standard
    safetensors checkpoint (``checkpoints.read_checkpoint``)."""
    ckpt = ckpt_dir(ws, job_id)
    try:
        rel = ckpt.relative_to(ws.root)
    except ValueError:
        rel = ckpt
    kind = _read_job(ws, job_id).kind if kind is None else kind
    extra = None if kind in KINDS else plugin_kinds().get(kind)
    if extra is not None and extra.resume_point is not None:
        point = extra.resume_point(ckpt, rel)
        if point is not None:
            return point
    return read_checkpoint(ckpt, rel, by_step=kind in STEP_KINDS)


class _JobLog:
    """The job's log file (``runs/job-N/job.log``): worker-redirected output lands there too."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, line: str) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {line.rstrip()}\n")

    def tail(self, n: int = LOG_TAIL_CHARS) -> str:
        try:
            with open(self.path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - n))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class _Heartbeat(threading.Thread):
    """Keeps the job's heartbeat fresh and watches for cancel even while a stage (teacher
    embedding) reports nothing; with ``hard_cancel`` it ends a process that ignores a cancel
    for ``CANCEL_GRACE_S`` (only in a dedicated job process)."""

    def __init__(
        self, ws: Workspace, job: Job, interval: float, hard_cancel: bool, log: _JobLog
    ) -> None:
        super().__init__(daemon=True, name=f"heartbeat-job-{job.id}")
        self.ws, self.job, self.interval, self.hard_cancel, self.log = (
            ws,
            job,
            interval,
            hard_cancel,
            log,
        )
        self.stop = threading.Event()
        self.cancel = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        cancel_seen: float | None = None
        while not self.stop.wait(self.interval):
            try:
                with _db(self.ws) as con:
                    con.execute(
                        "UPDATE jobs SET heartbeat=? WHERE id=? AND attempts=? AND state='running'",
                        (time.time(), self.job.id, self.job.attempts),
                    )
                    row = con.execute(
                        "SELECT state, attempts, cancel_requested FROM jobs WHERE id=?",
                        (self.job.id,),
                    ).fetchone()
            except sqlite3.Error:
                continue  # a busy catalogue: try again next beat
            if row is None or row["state"] != "running" or row["attempts"] != self.job.attempts:
                self.lost.set()  # failed by recover_stale or re-queued: stop working on it
                self.cancel.set()
            elif row["cancel_requested"]:
                self.cancel.set()
            if self.cancel.is_set() and self.hard_cancel and not self.stop.is_set():
                cancel_seen = cancel_seen or time.monotonic()
                if time.monotonic() - cancel_seen > CANCEL_GRACE_S:
                    self.log.write("cancel: no cancel check reached in time; stopping the process")
                    if not self.lost.is_set():
                        finish(
                            self.ws,
                            self.job.id,
                            "cancelled",
                            error="cancelled (stopped forcibly: the job was in a stage "
                            "without cancel checks)",
                            attempt=self.job.attempts,
                            log_tail=self.log.tail(),
                        )
                    os._exit(0)


def _claim_specific(ws: Workspace, job_id: int, worker_id: str, device: str) -> Job:
    now = time.time()
    with _db(ws) as con:
        n = con.execute(
            "UPDATE jobs SET state='running', device=?, worker_id=?, started=?, heartbeat=?, "
            "attempts=attempts+1, pid=NULL, finished=NULL, error=NULL "
            "WHERE id=? AND state='queued'",
            (device, worker_id, now, now, int(job_id)),
        ).rowcount
    job = get_job(ws, job_id)
    if n == 0 and job.state != "running":
        raise JobError(f"job {job_id} is {job.state}; only queued or claimed jobs can be run")
    return job


def run_job(
    ws: Workspace | str | Path,
    job_id: int,
    *,
    throttle: float = 0.5,
    heartbeat_interval: float = 1.0,
    hard_cancel: bool = False,
) -> Job:
    """Execute one job in this process and record its outcome; returns the final row.

    A queued job is claimed first (so ``python -m lelp_studio.jobs run --job N`` works alone). The
    ``on_step`` callback writes progress at most every ``throttle`` s and always at an
    evaluation (then also a metrics row and a log line), and returns True once a cancel was
    requested. A CUDA out-of-memory error retries once with half the batch size (recorded in
    ``batch_size_override``, so a later retry keeps it); every other exception fails the job
    with its message, the traceback going to the job log.
    """
    ws = ws if isinstance(ws, Workspace) else Workspace(ws)
    job = _claim_specific(ws, job_id, f"direct-{socket.gethostname()}-{os.getpid()}", "local")
    attempt = job.attempts
    log = _JobLog(ws.run_dir(f"job-{job.id}") / "job.log")
    ckpt = ckpt_dir(ws, job.id)
    try:
        runner = runner_for(job.kind)
        point = resume_point(ws, job.id, job.kind)
    except JobError as err:  # a plugged-in kind this process cannot load
        log.write(f"failed: {err}")
        finish(ws, job.id, "failed", error=str(err), attempt=attempt, log_tail=log.tail())
        return get_job(ws, job.id)
    with _db(ws) as con:
        row = con.execute("SELECT metrics, progress FROM jobs WHERE id=?", (job.id,)).fetchone()
        progress = json.loads(row["progress"] or "{}")
        progress.pop("note", None)
        if point.note:
            progress["note"] = point.note
        con.execute(
            "UPDATE jobs SET pid=?, heartbeat=?, metrics=?, progress=? WHERE id=? AND attempts=?",
            (
                os.getpid(),
                time.time(),
                json.dumps(_restore_metrics(json.loads(row["metrics"]), point)),
                json.dumps(progress),
                job.id,
                attempt,
            ),
        )
    log.write(f"attempt {attempt} of {job.kind} job {job.id} on {job.device} (pid {os.getpid()})")
    if point.note:
        log.write(point.note)
    elif point.epoch or point.step:
        log.write(f"resuming {resume_text(point, job.kind in STEP_KINDS)}")
    hb = _Heartbeat(ws, job, heartbeat_interval, hard_cancel, log)
    hb.start()
    state = {"last": 0.0, "cancel": False}

    def write(progress: dict[str, Any], metrics_row: dict[str, Any] | None) -> None:
        with _db(ws) as con:
            row = con.execute(
                "SELECT metrics, cancel_requested, state, attempts FROM jobs WHERE id=?",
                (job.id,),
            ).fetchone()
            if row["state"] != "running" or row["attempts"] != attempt:
                state["cancel"] = True  # no longer ours: stop as soon as possible
                return
            hist = json.loads(row["metrics"])
            if metrics_row is not None:
                hist = _merge_metrics(hist, metrics_row)
            if point.note:
                progress = progress | {"note": point.note}
            con.execute(
                "UPDATE jobs SET progress=?, metrics=?, heartbeat=? WHERE id=?",
                (json.dumps(progress), json.dumps(hist), time.time(), job.id),
            )
            state["cancel"] = state["cancel"] or bool(row["cancel_requested"])

    def on_step(info: dict[str, Any]) -> bool:
        now = time.monotonic()
        ev = _is_eval(info)
        total = info.get("total_steps")
        if ev or now - state["last"] >= throttle or (total and info.get("step") == total):
            state["last"] = now
            progress = _jsonable(
                {
                    "step": info.get("step"),
                    "total": total,
                    "epoch": info.get("epoch"),
                    "epochs": info.get("epochs"),
                    "loss": info.get("loss"),
                }
            )
            row = _jsonable(info) | {"time": time.time()} if ev else None
            write(progress, row)
            if ev:
                shown = " ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in _jsonable(info).items()
                )
                log.write(shown)
        return bool(state["cancel"]) or hb.cancel.is_set()

    def progress_cb(done: int, total: int, stage: str) -> None:
        now = time.monotonic()
        if now - state["last"] >= throttle or done >= total:
            state["last"] = now
            write({"stage": stage, "step": done, "total": total}, None)

    final, result, error = "failed", None, None
    try:
        for try_ in range(2):
            resume = ckpt.is_dir() and any(ckpt.iterdir())
            try:
                record = runner(ws, job, on_step, ckpt, resume, progress_cb)
                break
            except Exception as err:
                if not is_oom(err):
                    raise
                bs = batch_size(job)
                if try_ == 1 or bs <= 1:
                    orig = batch_size(dataclasses.replace(job, batch_size_override=None))
                    raise RuntimeError(
                        f"CUDA out of memory at train.batch_size={bs} (started at {orig}, "
                        "already retried with half); lower train.batch_size, "
                        "student.max_length or the student size, free the GPU (nvidia-smi), "
                        "or set train.device=cpu"
                    ) from err
                half = max(1, bs // 2)
                log.write(f"CUDA out of memory at batch size {bs}; retrying with {half}")
                torch = sys.modules.get("torch")
                if torch is not None and torch.cuda.is_available():
                    torch.cuda.empty_cache()
                with _db(ws) as con:
                    con.execute("UPDATE jobs SET batch_size_override=? WHERE id=?", (half, job.id))
                job = dataclasses.replace(job, batch_size_override=half)
        metrics = record.get("metrics") or {}
        result = record.get("run_id") or record.get("teacher_key")
        if point.note and record.get("run_id") and isinstance(record.get("metrics"), dict):
            record["metrics"]["resume_note"] = point.note  # the run says how it was resumed
            ws.save_run(record)
        if metrics.get("cancelled") or state["cancel"] or hb.cancel.is_set():
            final = "cancelled"
            log.write("cancelled; partial progress and metrics kept")
        else:
            final = "succeeded"
            log.write(f"succeeded; result {result}")
    except BaseException as err:  # noqa: BLE001 - every failure must reach the catalogue
        error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        log.write("failed:\n" + "".join(traceback.format_exception(err)))
        if not isinstance(err, Exception):
            error = f"interrupted ({type(err).__name__}); retry resumes from the last checkpoint"
    finally:
        hb.stop.set()
    hb.join(timeout=5)
    finish(ws, job.id, final, result=result, error=error, attempt=attempt, log_tail=log.tail())
    return get_job(ws, job.id)
