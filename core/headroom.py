"""Does distillation pay here? The teacher against a hard-label student, on the selection split.

Why: distillation can only move a student towards its teacher. When the teacher is barely
better than a student trained on the labels alone (a frozen encoder with a linear head often
is), no objective (KD, LELP or any other) has room to help, and tuning one is wasted effort.
This is measured once per (dataset, teacher, student, training budget) and cached in the
workspace, so the Data and Compare pages and ``lelp distill`` can all say it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from . import metrics as M
from .config import RunConfig, TeacherSpec
from .data import SELECT
from .store import Workspace
from .types import hash_arrays

#: Below this many accuracy points of teacher-over-student gap, distillation has little room.
MEANINGFUL_POINTS = 1.0
DEFAULT_SEEDS = (0, 1, 2)
#: ``lelp distill`` trains the baseline by itself only up to this many training rows.
AUTO_MAX_ROWS = 20_000


def verdict(teacher_acc: float, hard_accs: Sequence[float]) -> dict[str, Any]:
    """Gap (points) between the teacher and the hard-label students, and whether it is
    meaningful: above ``MEANINGFUL_POINTS`` and above the seeds' spread (max - min)."""
    accs = np.asarray(list(hard_accs), dtype=np.float64)
    if accs.size == 0:
        raise ValueError("verdict needs at least one hard-label student accuracy")
    mean = float(accs.mean())
    spread = float(accs.max() - accs.min())
    gap = float(teacher_acc) - mean
    return {
        "teacher_accuracy": float(teacher_acc),
        "hard_mean": mean,
        "hard_std": float(accs.std(ddof=1)) if accs.size > 1 else 0.0,
        "hard_spread": spread,
        "n_seeds": int(accs.size),
        "gap": gap,
        "pays": bool(gap > max(MEANINGFUL_POINTS, spread)),
    }


def stronger_teacher(teacher_kind: str, mode: str = "frozen") -> str:
    """What would give distillation room, in options that exist for this teacher."""
    if teacher_kind == "minilm" and mode == "frozen":
        return "fine-tune the teacher (teacher.mode: finetune) or use a stronger checkpoint"
    if teacher_kind == "minilm":
        return "a stronger checkpoint (teacher.kind: hf)"
    if teacher_kind == "digits-mlp":
        return (
            "a wider teacher (teacher.hidden) or a stronger model's outputs (teacher.kind: arrays)"
        )
    return "a stronger teacher (a better checkpoint or better arrays)"


def message(
    v: dict[str, Any], student_kind: str, split: str = SELECT, teacher: str = "a stronger teacher"
) -> str:
    """The plain sentence the CLI and the pages show; ``teacher`` is ``stronger_teacher``'s
    advice."""
    head = (
        f"Teacher {v['teacher_accuracy']:.2f}% vs a hard-label {student_kind} student "
        f"{v['hard_mean']:.2f}% (std {v['hard_std']:.2f} over {v['n_seeds']} seeds) on the "
        f"selection split ({split}): gap {v['gap']:+.2f} points."
    )
    if v["pays"]:
        return head + " The teacher is meaningfully better: distillation has room to help."
    return (
        head + " The teacher is not meaningfully better (within about "
        f"{MEANINGFUL_POINTS:g} point, or within the seeds' range, max - min = "
        f"{v['hard_spread']:.2f}): no "
        f"distillation objective can help much here. What would: {teacher}, or more "
        "unlabeled inputs for the teacher to label."
    )


def headroom_key(teacher_key: str, cfg: RunConfig, seeds: Sequence[int]) -> str:
    """Everything the hard-label baseline depends on: teacher outputs (hence dataset and
    selection split), the student, its training budget and the seeds."""
    t = cfg.train
    budget = [t.epochs, t.lr, t.batch_size, t.weight_decay]
    data = cfg.dataset.model_dump(mode="json")
    if data.get("transfer") is None:  # as keyed before the setting existed: cached answers hold
        data.pop("transfer", None)
    return hash_arrays(
        "headroom-v1",
        teacher_key,
        json.dumps(cfg.student.model_dump(mode="json"), sort_keys=True),
        json.dumps(data, sort_keys=True),
        json.dumps(budget),
        [int(s) for s in seeds],
    )


def hard_config(cfg: RunConfig, seed: int) -> RunConfig:
    """``cfg`` as a hard-label run with ``seed`` (same data, teacher, student and budget)."""
    train = cfg.train.model_copy(update={"objective": "hard", "seed": int(seed), "alpha": 0.0})
    return cfg.model_copy(update={"train": train, "name": None})


def cached_headroom(ws: Workspace, key: str) -> dict[str, Any] | None:
    """The stored result for ``key``, or None."""
    return ws.load_headroom(key)


def compute_headroom(
    ws: Workspace,
    prep: Any,
    cfg: RunConfig,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    on_seed: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The teacher-vs-hard-label verdict for ``cfg``'s dataset, teacher and student, from
    the workspace cache or by training one hard-label student per seed on ``prep``
    (``core.pipeline.prepare``'s result). ``on_seed(i, n)`` reports progress."""
    from .pipeline import selection_info, train_student

    key = headroom_key(prep.teacher_key, cfg, seeds)
    cached = cached_headroom(ws, key)
    if cached is not None:
        return dict(cached, cache_hit=True)
    t0 = time.perf_counter()
    accs = []
    for i, seed in enumerate(seeds):
        if on_seed is not None:
            on_seed(i, len(seeds))
        run = train_student(prep, hard_config(cfg, seed))
        accs.append(float(run.select_scores["accuracy"]))
    sel = prep.dataset.splits[SELECT]
    teacher = M.accuracy(np.asarray(prep.out.Z[SELECT]), sel.y)
    v = verdict(teacher, accs)
    rec = dict(
        v,
        key=key,
        teacher_key=prep.teacher_key,
        hard_accuracies=accs,
        seeds=[int(s) for s in seeds],
        student_kind=cfg.student.kind,
        selection=selection_info(prep.dataset),
        message=message(
            v, cfg.student.kind, teacher=stronger_teacher(cfg.teacher.kind, cfg.teacher.mode)
        ),
        wall_s=time.perf_counter() - t0,
    )
    ws.save_headroom(key, rec)
    return dict(rec, cache_hit=False)


def offers_finetune(rec: Mapping[str, Any] | None, teacher: TeacherSpec) -> bool:
    """Whether to offer the teacher's fine-tune: the check ran and found the frozen MiniLM
    teacher not meaningfully better than a hard-label student (``rec`` from
    :func:`compute_headroom`). Other teachers have nothing here to fine-tune."""
    return (
        rec is not None
        and not rec["pays"]
        and teacher.kind == "minilm"
        and teacher.mode == "frozen"
    )


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    s = max(1, round(seconds))
    return f"{s} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"


@dataclasses.dataclass(frozen=True)
class FinetuneEstimate:
    """The expected wall time of a teacher fine-tune on this machine and what it rests on:
    ``steps`` optimiser steps (ceil(rows / batch_size) x epochs) at ``seconds_per_step``
    (timed here), then an embedding pass over ``embed_rows`` rows (every split) at
    ``embed_rows_per_s`` (measured here)."""

    rows: int
    epochs: int
    batch_size: int
    steps: int
    seconds_per_step: float
    embed_rows: int
    embed_rows_per_s: float
    device: str

    @property
    def train_seconds(self) -> float:
        return self.steps * self.seconds_per_step

    @property
    def embed_seconds(self) -> float:
        return self.embed_rows / self.embed_rows_per_s

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.embed_seconds

    def text(self) -> str:
        """The estimate and its arithmetic, in one sentence."""
        return (
            f"about {_duration(self.seconds)} on this machine ({self.device}): "
            f"{_count(self.steps, 'step')} ({self.rows:,} rows x {_count(self.epochs, 'epoch')} "
            f"in batches of {self.batch_size}) at {self.seconds_per_step:.2f} s a step, timed "
            "here, then "
            f"{self.embed_rows:,} rows embedded at {self.embed_rows_per_s:,.0f} rows/s"
        )


def estimate_finetune(
    rows: int,
    epochs: int,
    batch_size: int,
    seconds_per_step: float,
    embed_rows: int,
    embed_rows_per_s: float,
    device: str = "cpu",
) -> FinetuneEstimate:
    """The expected time of fine-tuning on ``rows`` labelled training rows, from rates
    measured on this machine (``teachers.time_finetune_steps``, or the frozen teacher's own
    embedding pass for ``embed_rows_per_s``). Why measured: a step's cost depends on the
    CPU or GPU, its load and the texts' lengths far more than on any constant."""
    from .teachers import finetune_steps  # torch: imported only where an estimate is made

    if seconds_per_step <= 0 or embed_rows_per_s <= 0:
        raise ValueError(
            f"measured rates must be positive, got {seconds_per_step} s a step and "
            f"{embed_rows_per_s} rows/s"
        )
    steps = finetune_steps(rows, epochs, batch_size)
    return FinetuneEstimate(
        rows, epochs, batch_size, steps, seconds_per_step, embed_rows, embed_rows_per_s, device
    )
