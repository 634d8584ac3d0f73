"""What a job's card on the Distill page says, computed from its row (no Streamlit).

Why: the card said only "running"; a user waiting on a 200-epoch run wants the epoch, how
long it has run, how long it has left and, once done, the test score.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from ..store import Workspace, WorkspaceError
from .table import Job


@dataclasses.dataclass(frozen=True)
class JobCard:
    """The facts a job card shows; ``facts`` in reading order (epoch, elapsed, ETA, score)."""

    title: str
    state: str
    fraction: float
    bar_text: str
    facts: tuple[str, ...]


def duration_text(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``: short and stable in width."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _epochs(job: Job) -> tuple[int | None, int | None]:
    """(epochs done or under way, epochs planned) from the progress, else the metrics rows."""
    prog = job.progress or {}
    section = "teacher" if job.kind == "teacher-finetune" else "train"
    planned = prog.get("epochs") or ((job.config.get(section) or {}).get("epochs"))
    epoch = prog.get("epoch")
    if epoch is None and job.metrics:
        epoch = max((int(m.get("epoch") or 0) for m in job.metrics), default=None) or None
    if job.state == "succeeded" and planned:
        epoch = planned
    return (int(epoch) if epoch else None), (int(planned) if planned else None)


def _eta(job: Job, now: float, planned: int | None) -> float | None:
    """Seconds left for a running job: from the epoch ends' times once two epochs are done
    (the teacher's embedding pass before training does not count), else from the progress
    fraction since the job started."""
    if job.state != "running":
        return None
    ends = [
        (int(m["epoch"]), float(m["time"])) for m in job.metrics if m.get("epoch") and m.get("time")
    ]
    if planned and len(ends) >= 2:
        (e0, t0), (e1, t1) = ends[0], ends[-1]
        if e1 > e0:
            return max(0.0, (t1 - t0) / (e1 - e0) * (planned - e1) - (now - t1))
    frac = job.fraction
    if job.started is not None and 0 < frac < 1:
        return (now - job.started) * (1 - frac) / frac
    return None


def job_card(job: Job, run: Mapping[str, Any] | None = None, now: float | None = None) -> JobCard:
    """The card of ``job``; ``run`` is its finished run record (``Workspace.load_run`` of
    ``job.result``) for the final test score, ``now`` the clock (for tests)."""
    now = time.time() if now is None else now
    prog = job.progress or {}
    facts: list[str] = []
    epoch, planned = _epochs(job)
    if epoch and planned:
        facts.append(f"epoch {min(epoch, planned)}/{planned}")
    if job.started is not None:
        end = job.finished if job.finished is not None else now
        facts.append(f"elapsed {duration_text(end - job.started)}")
    elif job.state == "queued":
        facts.append(f"queued {duration_text(now - job.created)} ago")
    frac = job.fraction
    left = _eta(job, now, planned)
    if left is not None:
        facts.append(f"ETA {duration_text(left)}")
    score = ((run or {}).get("metrics") or {}).get("student", {}).get("accuracy")
    if job.state == "succeeded" and score is not None:
        facts.append(f"test accuracy {float(score):.1f}%")
    teacher = ((run or {}).get("teacher_accuracy") or {}).get("test")
    if job.state == "succeeded" and teacher is not None:
        facts.append(f"teacher test accuracy {100 * float(teacher):.1f}%")
    stage = prog.get("stage") or prog.get("message")
    if stage:
        bar = str(stage)
    elif job.state == "running" and job.kind == "teacher-finetune" and prog.get("total"):
        bar = f"fine-tuning: step {prog.get('step', 0)}/{prog['total']}"
    elif job.state == "running" and epoch and planned:
        bar = f"training: epoch {epoch}/{planned}"
    else:
        bar = job.state
    return JobCard(
        title=f"#{job.id} {job.name}",
        state=job.state,
        fraction=frac,
        bar_text=bar,
        facts=tuple(facts),
    )


def job_run(ws: Workspace, job: Job) -> dict[str, Any] | None:
    """The run a succeeded distill job recorded (its ``result``); for a teacher fine-tune,
    the cached teacher's accuracy per split (``teacher_accuracy``); None otherwise (other
    kinds, a run or cache entry since deleted)."""
    if job.state != "succeeded" or not job.result:
        return None
    if job.kind == "teacher-finetune":
        for entry in ws.list_teacher_outputs():
            if entry["key"] == job.result:
                return {"teacher_accuracy": entry["meta"].get("accuracy") or {}}
        return None
    if job.kind != "distill":
        return None
    try:
        return ws.load_run(job.result)
    except WorkspaceError:
        return None
