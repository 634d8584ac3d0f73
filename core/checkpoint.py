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

from .store import atomic_path, atomic_write_bytes

WEIGHTS = "last.safetensors"
META = "last.json"
GENERATIONS = ((META, WEIGHTS), ("prev.json", "prev.safetensors"))


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


def _tag(path: Path) -> tuple[int, int | None]:
    """(epoch, step) a weights file records; step None for files written before it did."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return int(meta["epoch"]), (int(meta["step"]) if "step" in meta else None)


def _sound_last(ckpt_dir: Path) -> bool:
    try:
        epoch, step = _tag(ckpt_dir / WEIGHTS)
        meta = json.loads((ckpt_dir / META).read_text(encoding="utf-8"))
        return epoch == int(meta["epoch"]) and step in (None, int(meta["step"]))
    except Exception:  # noqa: BLE001 - missing or damaged (SafetensorError, bad JSON)
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
    out = Loaded()
    metas: list[dict[str, Any]] = []
    weights: dict[tuple[int, int | None], Path] = {}
    for meta_name, weights_name in GENERATIONS:
        meta_path, w_path = ckpt_dir / meta_name, ckpt_dir / weights_name
        out.found = out.found or meta_path.exists() or w_path.exists()
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                int(meta["epoch"]), int(meta["step"]), meta["optim_param_groups"]
                metas.append(meta)
            except (OSError, ValueError, KeyError, TypeError):
                out.problems.append(f"{meta_name} is unreadable")
        if w_path.exists():
            try:
                weights.setdefault(_tag(w_path), w_path)
            except Exception:  # noqa: BLE001 - SafetensorError (truncated), OSError, no epoch
                out.problems.append(f"{weights_name} is damaged (truncated or not safetensors)")
    # the newest generation any readable file names (weights from before steps were recorded
    # compare by epoch alone)
    newest = max(
        [(int(m["epoch"]), int(m["step"])) for m in metas]
        + [(e, -1 if s is None else s) for e, s in weights],
        default=(0, -1),
    )
    for meta in sorted(metas, key=lambda m: (int(m["epoch"]), int(m["step"])), reverse=True):
        epoch, step = int(meta["epoch"]), int(meta["step"])
        paired = weights.get((epoch, step)) or weights.get((epoch, None))
        if paired is None:
            continue
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
        out.fell_back = bool(out.problems) and (epoch, step) < newest
        return out
    return out
