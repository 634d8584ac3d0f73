"""Job checkpoints: where they live and what a retry resumes from, read without torch."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..store import Workspace
from .table import _epoch, _jsonable


def ckpt_dir(ws: Workspace, job_id: int) -> Path:
    """Where a job checkpoints; kept across attempts so a retry resumes."""
    return ws.run_dir(f"job-{int(job_id)}") / "ckpt"


def _safetensors_tag(path: Path) -> tuple[int, int | None] | None:
    """The (epoch, step) a checkpoint's weights file records (step None in files written
    before it did); None when it is damaged. Checks the header and that the file holds every
    byte it declares (what ``safe_open`` checks in ``core.checkpoint.load_state``) without
    importing torch, so the CLI stays quick."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n <= size - 8:
                return None
            header = json.loads(f.read(n))
        end = max(
            (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
            default=0,
        )
        tag = header["__metadata__"]
        step = int(tag["step"]) if "step" in tag else None
        return (int(tag["epoch"]), step) if 8 + n + end == size else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


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
    problems: list[str] = []
    metas: list[tuple[dict[str, Any], float]] = []
    weights: set[tuple[int, int | None]] = set()
    for name in ("last", "prev"):
        meta_path, w_path = ckpt / f"{name}.json", ckpt / f"{name}.safetensors"
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                int(meta["epoch"]), int(meta["step"]), meta["optim_param_groups"]
                metas.append((meta, meta_path.stat().st_mtime))
            except (OSError, ValueError, KeyError, TypeError):
                problems.append(f"{name}.json is unreadable")
        if w_path.exists():
            tag = _safetensors_tag(w_path)
            if tag is None:
                problems.append(f"{name}.safetensors is damaged (truncated?)")
            else:
                weights.add(tag)
    if not metas and not weights and not problems:
        return ResumePoint(0)

    def key(m: dict[str, Any]) -> tuple[int, int]:
        return int(m["epoch"]), int(m["step"])

    newest = max(
        [key(m) for m, _ in metas] + [(e, -1 if s is None else s) for e, s in weights],
        default=(0, -1),
    )
    good = [(m, t) for m, t in metas if key(m) in weights or (int(m["epoch"]), None) in weights]
    if not good:
        why = "; ".join(problems) or "no complete checkpoint"
        start = "step 0" if by_step else "epoch 1"
        return ResumePoint(
            0, f"no readable checkpoint in {rel} ({why}); it restarts from {start}", exists=True
        )
    meta, saved = max(good, key=lambda mt: key(mt[0]))
    point = ResumePoint(int(meta["epoch"]), saved=saved, exists=True, step=int(meta["step"]))
    note = None
    if problems and key(meta) < newest:
        note = (
            f"checkpoint {rel}: {'; '.join(problems)}; it resumes {resume_text(point, by_step)} "
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
