"""Job checkpoints: where they live and what a retry resumes from, read without torch."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..checkpoint_files import meta_key, scan
from ..store import Workspace
from .table import _epoch, _jsonable


def ckpt_dir(ws: Workspace, job_id: int) -> Path:
    """Where a job checkpoints; kept across attempts so a retry resumes."""
    return ws.run_dir(f"job-{int(job_id)}") / "ckpt"


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """Where a job's next attempt starts: after ``epoch`` and ``step`` (0: from the start).
    ``note`` says why it is not the newest checkpoint (damaged files), ``history`` is the
    restored checkpoint's per-epoch history, ``saved`` its time; ``exists``: any checkpoint
    file was there (so a restart is news, not a first start)."""

    epoch: int
    note: str | None = None
    history: tuple[dict[str, Any], ...] = ()
    saved: float = 0.0
    exists: bool = False
    step: int = 0


def resume_text(point: ResumePoint, by_step: bool = False) -> str:
    """ "after epoch 2" / "from step 7": where a resumed attempt starts, in the unit its kind
    checkpoints in (a teacher fine-tune also checkpoints inside an epoch)."""
    return f"from step {point.step}" if by_step else f"after epoch {point.epoch}"


def read_checkpoint(ckpt: Path, rel: Path, by_step: bool = False) -> ResumePoint:
    """Where a run resumes from the checkpoint folder ``ckpt`` (``rel`` names it in notes),
    with the rule ``core.checkpoint.load_state`` follows (``last.*``, else ``prev.*``, paired
    by epoch and step; nothing readable restarts from the start). Why: a retry must not claim
    to resume when it restarts, and a damaged checkpoint must be said, not fail every attempt.
    ``by_step``: notes count steps (the teacher fine-tune), not epochs."""
    sc = scan(ckpt)
    if not sc.found:
        return ResumePoint(0)
    good = sc.candidates()
    if not good:
        why = "; ".join(sc.problems) or "no complete checkpoint"
        start = "step 0" if by_step else "epoch 1"
        return ResumePoint(
            0, f"no readable checkpoint in {rel} ({why}); it restarts from {start}", exists=True
        )
    meta, saved, _ = good[0]
    point = ResumePoint(int(meta["epoch"]), saved=saved, exists=True, step=int(meta["step"]))
    note = None
    if sc.problems and meta_key(meta) < sc.newest():
        note = (
            f"checkpoint {rel}: {'; '.join(sc.problems)}; it resumes {resume_text(point, by_step)} "
            "from the previous checkpoint"
        )
    history = tuple(h for h in meta.get("history", []) if (_epoch(h) or 0) <= point.epoch)
    return dataclasses.replace(point, note=note, history=history)


def _restore_metrics(hist: list[dict[str, Any]], point: ResumePoint) -> list[dict[str, Any]]:
    """The job's metrics as the attempt resuming at ``point`` starts: rows of later epochs
    dropped (they are redone), and epochs the checkpoint holds but the job's metrics missed
    (killed between the checkpoint and the metrics write) filled in from its history."""
    kept = [m for m in hist if (_epoch(m) or 0) <= point.epoch]
    have = {_epoch(m) for m in kept}
    for h in point.history:
        if _epoch(h) not in have:
            kept.append(_jsonable(h) | {"time": point.saved})
    return sorted(kept, key=lambda m: _epoch(m) or 0)
