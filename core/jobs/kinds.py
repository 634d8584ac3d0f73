"""Job kinds: the built-in ones, extra kinds plugged in by name, and where each keeps its
device and batch size.

Built-in kinds run a :class:`~lelp_studio.config.RunConfig` (validated at submit; device and
batch size under ``train``). Extra kinds are named by the environment variable
``LELP_JOB_PLUGINS``: ``module:ATTR`` (several separated by commas), where ``ATTR`` is a
``dict[str, JobKind]``. Every process that submits or runs jobs reads it (the app, ``lelp
worker``, each job process, which inherits the worker's environment), so a kind one process
queues is a kind the others can run; nothing registers itself on import. An extra kind's
config is plain JSON with ``device`` (cpu, cuda or auto; default cpu) and ``batch_size``
(default 128) at its top level. The test suite plugs in its ``sleep`` kind this way
(``tests/jobkinds.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .checkpoints import ResumePoint
from .table import Job, JobError

CONFIG_KINDS = ("distill", "sweep-member", "embed", "teacher-finetune")
"""Kinds whose config is a :class:`lelp_studio.config.RunConfig` (validated at submit)."""
KINDS = CONFIG_KINDS
"""The built-in job kinds; :func:`known_kinds` adds the plugged-in ones."""
RESUMABLE_KINDS = ("distill", "sweep-member", "teacher-finetune")
"""Built-in kinds that checkpoint every epoch, so a retry resumes."""
STEP_KINDS = ("teacher-finetune",)
"""Built-in kinds that also checkpoint inside an epoch: a retry resumes from a step."""
PLUGINS_ENV = "LELP_JOB_PLUGINS"

Runner = Callable[..., dict[str, Any]]
"""``(ws, job, on_step, ckpt_dir, resume, progress) -> run record`` (see ``runner.run_job``)."""


@dataclasses.dataclass(frozen=True)
class JobKind:
    """An extra job kind.

    Attributes
    ----------
    run : a :data:`Runner`; it calls ``on_step(info)`` per step and stops when it returns True.
    resume_point : ``(ckpt_dir, rel) -> ResumePoint | None`` reads the kind's own checkpoint
        (``rel`` names the folder in notes); None, or a None result, falls back to the
        standard safetensors checkpoint.
    checkpoints : whether the kind checkpoints every epoch (a retry then says it resumes).
    """

    run: Runner
    resume_point: Callable[[Path, Path], ResumePoint | None] | None = None
    checkpoints: bool = False


@functools.lru_cache(maxsize=8)
def _load(spec: str) -> dict[str, JobKind]:
    kinds: dict[str, JobKind] = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        where = f"{PLUGINS_ENV}={spec!r}"
        module, _, attr = entry.partition(":")
        if not module or not attr:
            raise JobError(f"{where}: give module:ATTR (e.g. mypkg.kinds:KINDS), got {entry!r}")
        try:
            found = getattr(importlib.import_module(module), attr)
        except AttributeError:
            raise JobError(f"{where}: module {module!r} has no attribute {attr!r}") from None
        except Exception as err:  # an import error, or one raised while importing
            raise JobError(
                f"{where}: cannot import {module!r} ({type(err).__name__}: {err}); is it on "
                "PYTHONPATH?"
            ) from None
        if not isinstance(found, dict) or not all(
            isinstance(k, str) and isinstance(v, JobKind) for k, v in found.items()
        ):
            raise JobError(f"{where}: {entry} must be a dict of kind name -> JobKind")
        clash = sorted(set(found) & set(KINDS))
        if clash:
            raise JobError(f"{where}: {entry} redefines the built-in kind {', '.join(clash)}")
        kinds.update(found)
    return kinds


def plugin_kinds() -> dict[str, JobKind]:
    """The extra kinds ``LELP_JOB_PLUGINS`` names (none when unset); a :class:`JobError`
    says in one line why they cannot be loaded."""
    return _load(os.environ.get(PLUGINS_ENV, "").strip())


def known_kinds() -> tuple[str, ...]:
    """Built-in kinds, then the plugged-in ones."""
    return KINDS + tuple(plugin_kinds())


def checkpoints_each_epoch(kind: str) -> bool:
    """Whether a retry of a ``kind`` job resumes from a per-epoch checkpoint."""
    if kind in KINDS:
        return kind in RESUMABLE_KINDS
    extra = plugin_kinds().get(kind)
    return bool(extra and extra.checkpoints)


def resources(kind: str, config: dict[str, Any]) -> str:
    """'gpu' (needs one), 'cpu' (must not use one) or 'any' (a GPU if free, else CPU)."""
    if kind in CONFIG_KINDS:
        device = config.get("train", {}).get("device", "auto")
    else:
        device = config.get("device", "cpu")
    return {"cuda": "gpu", "auto": "any"}.get(device, "cpu")


def batch_size(job: Job) -> int:
    """The batch size this attempt uses (the out-of-memory override, else the config's)."""
    if job.batch_size_override:
        return int(job.batch_size_override)
    if job.kind not in CONFIG_KINDS:
        return int(job.config.get("batch_size", 128))
    return int(job.config.get("train", {}).get("batch_size", 128))


def effective_config(job: Job) -> dict[str, Any]:
    """The job's config with the out-of-memory batch size override applied."""
    cfg = json.loads(json.dumps(job.config))
    if job.batch_size_override:
        if job.kind not in CONFIG_KINDS:
            cfg["batch_size"] = job.batch_size_override
        else:
            cfg.setdefault("train", {})["batch_size"] = job.batch_size_override
    return cfg
