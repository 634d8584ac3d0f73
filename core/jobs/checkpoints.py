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


def _safetensors_epoch(path: Path) -> int | None:
    """The epoch a checkpoint's weights file records; None when it is damaged. Checks the
    header and that the file holds every byte it declares (what ``safe_open`` checks in
    ``core.train._load_checkpoint``) without importing torch, so the CLI stays quick."""
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
        return int(header["__metadata__"]["epoch"]) if 8 + n + end == size else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """Where a job's next attempt starts: after ``epoch`` (0: from the start). ``note`` says
    why it is not the newest checkpoint (damaged files), ``history`` is the restored
    checkpoint's per-epoch history, ``saved`` its time; ``exists``: any checkpoint file was
    there (so a restart is news, not a first start)."""

    epoch: int
    note: str | None = None
    history: tuple[dict[str, Any], ...] = ()
    saved: float = 0.0
    exists: bool = False


def read_checkpoint(ckpt: Path, rel: Path) -> ResumePoint:
    """Where a run resumes from the checkpoint folder ``ckpt`` (``rel`` names it in notes),
    with the rule ``core.train._load_checkpoint`` follows (``last.*``, else ``prev.*``, paired
    by epoch; nothing readable restarts from epoch 1). Why: a retry must not claim to resume
    when it restarts, and a damaged checkpoint must be said, not fail every attempt."""
    problems: list[str] = []
    metas: list[tuple[dict[str, Any], float]] = []
    weights: set[int] = set()
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
            epoch = _safetensors_epoch(w_path)
            if epoch is None:
                problems.append(f"{name}.safetensors is damaged (truncated?)")
            else:
                weights.add(epoch)
    if not metas and not weights and not problems:
        return ResumePoint(0)
    newest = max([int(m["epoch"]) for m, _ in metas] + list(weights), default=0)
    good = [(m, t) for m, t in metas if int(m["epoch"]) in weights]
    if not good:
        why = "; ".join(problems) or "no complete checkpoint"
        return ResumePoint(
            0, f"no readable checkpoint in {rel} ({why}); it restarts from epoch 1", exists=True
        )
    meta, saved = max(good, key=lambda mt: int(mt[0]["epoch"]))
    epoch, note = int(meta["epoch"]), None
    if problems and epoch < newest:
        note = (
            f"checkpoint {rel}: {'; '.join(problems)}; it resumes after epoch {epoch} from "
            "the previous checkpoint"
        )
    history = tuple(h for h in meta.get("history", []) if (_epoch(h) or 0) <= epoch)
    return ResumePoint(epoch, note, history, saved, exists=True)


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
