"""Test-only job kinds, plugged in through ``LELP_JOB_PLUGINS=jobkinds:KINDS`` (the
``sleep_jobs`` fixture in conftest.py sets it, with this folder on PYTHONPATH so job
processes and workers find it too).

``sleep`` is a dependency-free stand-in for a training job: steps with a delay, an evaluation
and a counter-file checkpoint per epoch, so the job machinery is exercised in seconds.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lelp_studio.jobs import Job, JobKind, ResumePoint, effective_config
from lelp_studio.store import Workspace, atomic_write_bytes


def _run_sleep(
    ws: Workspace, job: Job, on_step: Callable, ckpt: Path, resume: bool, progress: Callable
) -> dict[str, Any]:
    """A stand-in job without torch: ``steps`` steps of ``delay`` s, an evaluation and a
    checkpoint (a counter file) every ``steps_per_epoch``; ``fail_at`` raises at that step,
    ``oom_above`` raises torch.OutOfMemoryError while ``batch_size`` exceeds it; ``together``
    waits (up to ``together_s`` seconds, else fails) until that many sleep jobs have their
    own process running, so it can only succeed when they run at the same time."""
    c = effective_config(job)
    if c.get("together"):
        _wait_for_company(ws, job, int(c["together"]), float(c.get("together_s", 60)))
    steps, spe = int(c.get("steps", 20)), max(1, int(c.get("steps_per_epoch", 5)))
    delay, fail_at = float(c.get("delay", 0.05)), c.get("fail_at")
    epochs = math.ceil(steps / spe)
    counter = ckpt / "counter.json"
    start_epoch = 0
    if resume and counter.exists():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # damaged: restart
            start_epoch = int(json.loads(counter.read_text())["epoch"])
    if c.get("oom_above") is not None and int(c.get("batch_size", 128)) > int(c["oom_above"]):
        import torch

        raise torch.OutOfMemoryError(
            f"CUDA out of memory (simulated at batch size {c.get('batch_size', 128)})"
        )
    for step in range(start_epoch * spe + 1, steps + 1):
        time.sleep(delay)
        if fail_at is not None and step == int(fail_at):
            raise RuntimeError(f"sleep job: planned failure at step {step}")
        epoch = (step - 1) // spe + 1
        info: dict[str, Any] = {
            "step": step,
            "total_steps": steps,
            "epoch": epoch,
            "epochs": epochs,
            "loss": 1.0 / step,
        }
        end_of_epoch = step % spe == 0 or step == steps
        if end_of_epoch:
            info |= {"accuracy": step / steps, "agreement": step / steps}
        if on_step(info):
            return {"run_id": None, "metrics": {"cancelled": True, "step": step}}
        if end_of_epoch:
            atomic_write_bytes(counter, json.dumps({"epoch": epoch, "step": step}).encode())
    record = {
        "run_id": f"job-{job.id}",
        "name": c.get("name") or f"sleep job {job.id}",
        "config": c,
        "metrics": {"steps": steps, "resumed_from_epoch": start_epoch, "cancelled": False},
        "artifacts": {"checkpoint": str(counter)},
    }
    ws.save_run(record)
    return record


def _wait_for_company(ws: Workspace, job: Job, n: int, timeout: float) -> None:
    """Each waiting job leaves a mark (a file named by its id) and waits for ``n`` marks. A
    mark stays after its job ends: polling the job table for ``n`` running jobs missed the
    moment on a busy machine, when the other job saw both, finished at once and ended
    (CI, 2026-12-02)."""
    marks = ws.root / "together"
    marks.mkdir(parents=True, exist_ok=True)
    (marks / str(job.id)).touch()
    deadline = time.monotonic() + timeout
    while True:
        seen = len(list(marks.iterdir()))
        if seen >= n:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"sleep job: {seen} of {n} jobs ran at once for {timeout} s")
        time.sleep(0.05)


def _sleep_resume_point(ckpt: Path, rel: Path) -> ResumePoint | None:
    """Where a retry of a sleep job resumes: after the epoch its counter file records."""
    counter = ckpt / "counter.json"
    if not counter.exists():
        return None
    try:
        return ResumePoint(int(json.loads(counter.read_text())["epoch"]), exists=True)
    except (OSError, ValueError, KeyError, TypeError):
        note = f"checkpoint {rel}/counter.json is unreadable; it restarts from epoch 1"
        return ResumePoint(0, note, exists=True)


KINDS = {"sleep": JobKind(_run_sleep, resume_point=_sleep_resume_point, checkpoints=True)}
"""What ``LELP_JOB_PLUGINS=jobkinds:KINDS`` plugs in."""


def plug_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set ``LELP_JOB_PLUGINS`` to these kinds, with this folder on PYTHONPATH, for this
    process and every worker, job process or Ray worker started after it."""
    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("LELP_JOB_PLUGINS", "jobkinds:KINDS")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    )
