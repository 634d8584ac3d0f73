"""Resumable training state on disk, shared by the student loop (``train``) and the teacher's
fine-tune (``teachers.finetune``).

Why one module: both must survive a kill, a full disk or a truncated file the same way. A
checkpoint is ``last.safetensors`` (tensors, grouped by a prefix such as ``model.`` or
``optim.``; its metadata records the epoch and step) plus ``last.json`` (epoch, step and
whatever else the caller keeps), each written atomically, the JSON last. The previous sound
pair is kept as ``prev.*``, so a damaged newest generation falls back one step. Loading never
unpickles.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from .checkpoint_files import META, WEIGHTS, meta_key, scan, weights_tag
from .store import atomic_path, atomic_write_bytes


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The optimizer's tensors as ``optim.<param id>.<name>`` and, for the JSON, its param
    groups and non-tensor state (``optim_param_groups``, ``optim_scalars``)."""
    state = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in state["state"].items():
        for name, val in st.items():
            if isinstance(val, Tensor):
                tensors[f"optim.{pid}.{name}"] = val
            else:
                scalars.setdefault(str(pid), {})[name] = val
    return tensors, {"optim_param_groups": state["param_groups"], "optim_scalars": scalars}


def restore_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]
) -> None:
    """Load what :func:`optimizer_state` saved (``tensors``: the ``optim`` group, keys
    ``<param id>.<name>``)."""
    state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = val
    for pid, vals in meta.get("optim_scalars", {}).items():
        state.setdefault(int(pid), {}).update(vals)
    opt.load_state_dict({"state": state, "param_groups": meta["optim_param_groups"]})


def _sound_last(ckpt_dir: Path) -> bool:
    tag = weights_tag(ckpt_dir / WEIGHTS)
    if tag is None:
        return False
    try:
        meta = json.loads((ckpt_dir / META).read_text(encoding="utf-8"))
        return tag[0] == int(meta["epoch"]) and tag[1] in (None, int(meta["step"]))
    except (OSError, ValueError, KeyError, TypeError):  # missing or bad JSON
        return False


def save_state(ckpt_dir: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Write one generation: ``tensors`` to safetensors, then ``meta`` (with ``epoch`` and
    ``step``) to JSON, each atomically. A sound ``last.*`` pair is first renamed to
    ``prev.*``; a damaged one is never rotated over a sound ``prev.*``. Each file records its
    epoch and step, so a kill between the renames still leaves a matching pair."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if _sound_last(ckpt_dir):
        (ckpt_dir / META).replace(ckpt_dir / "prev.json")
        (ckpt_dir / WEIGHTS).replace(ckpt_dir / "prev.safetensors")
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    tag = {"epoch": str(int(meta["epoch"])), "step": str(int(meta["step"]))}
    with atomic_path(ckpt_dir / WEIGHTS) as tmp:
        save_file(flat, str(tmp), metadata=tag)
    atomic_write_bytes(ckpt_dir / META, json.dumps(meta, indent=1).encode("utf-8"))


@dataclasses.dataclass
class Loaded:
    """What :func:`load_state` found. ``meta`` None: nothing readable (``found`` says whether
    any checkpoint file was there). ``tensors`` maps a prefix (``model``, ``optim``, ...) to
    its tensors; ``problems`` names damaged files; ``fell_back``: a newer generation than the
    one returned was damaged."""

    meta: dict[str, Any] | None = None
    tensors: dict[str, dict[str, Tensor]] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)
    fell_back: bool = False
    found: bool = False

    def restart_note(self, ckpt_dir: Path, restart: str) -> str | None:
        """With nothing readable: None when there was no checkpoint at all, else a note that
        names the damaged files and ``restart`` (what the caller does instead)."""
        if not self.found:
            return None
        why = "; ".join(self.problems) or "no complete checkpoint"
        return f"{ckpt_dir}: {why}; {restart}"

    def fallback_note(self, ckpt_dir: Path, at: str) -> str | None:
        """A note when a damaged newer generation made this the previous one (``at``: where
        it resumes, e.g. "epoch 3"); None otherwise."""
        if not self.fell_back:
            return None
        return (
            f"{ckpt_dir}: {'; '.join(self.problems)}; resumed from the previous checkpoint ({at})"
        )


def load_state(ckpt_dir: Path) -> Loaded:
    """The newest readable generation in ``ckpt_dir``: ``last.*``, else ``prev.*``, JSON and
    weights paired by the epoch and step both record. Nothing is returned until a whole file
    has been read, so a caller never loads half a checkpoint."""
    sc = scan(ckpt_dir)
    out = Loaded(problems=list(sc.problems), found=sc.found)
    newest = sc.newest()
    for meta, _, paired in sc.candidates():
        groups: dict[str, dict[str, Tensor]] = {}
        try:
            with safe_open(str(paired), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
                    prefix, rest = key.split(".", 1)
                    groups.setdefault(prefix, {})[rest] = f.get_tensor(key)
        except Exception:  # noqa: BLE001 - a damaged tensor: try the older generation
            out.problems.append(f"{paired.name} is damaged (a tensor cannot be read)")
            continue
        out.meta, out.tensors = meta, groups
        out.fell_back = bool(out.problems) and meta_key(meta) < newest
        return out
    return out
