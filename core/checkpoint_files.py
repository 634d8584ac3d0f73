"""Which checkpoint generation is readable, found without torch (the job runner and the CLI
ask where a retry resumes; ``core.checkpoint`` then loads the tensors).

A checkpoint folder holds ``last.*`` and, after the first rotation, ``prev.*``: a JSON file
(epoch, step, optimizer groups, ...) and a safetensors file whose metadata records the same
epoch and step. :func:`scan` reads every JSON and every weights header once and pairs them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

WEIGHTS = "last.safetensors"
META = "last.json"
GENERATIONS = ((META, WEIGHTS), ("prev.json", "prev.safetensors"))

Tag = tuple[int, int | None]


def weights_tag(path: Path) -> Tag | None:
    """The (epoch, step) a weights file records (step None in files written before it did);
    None when it is damaged. Checks the header and that the file holds every byte it
    declares, what ``safe_open`` checks, without importing torch."""
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


def meta_key(meta: dict[str, Any]) -> tuple[int, int]:
    return int(meta["epoch"]), int(meta["step"])


@dataclasses.dataclass
class Scan:
    """What a checkpoint folder holds. ``metas``: the readable JSON files with their mtimes;
    ``weights``: each sound weights file by its tag; ``problems`` names the damaged files;
    ``found``: any checkpoint file was there."""

    metas: list[tuple[dict[str, Any], float]] = dataclasses.field(default_factory=list)
    weights: dict[Tag, Path] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)
    found: bool = False

    def newest(self) -> tuple[int, int]:
        """The newest generation any readable file names (weights from before steps were
        recorded compare by epoch alone)."""
        return max(
            [meta_key(m) for m, _ in self.metas]
            + [(e, -1 if s is None else s) for e, s in self.weights],
            default=(0, -1),
        )

    def candidates(self) -> list[tuple[dict[str, Any], float, Path]]:
        """The JSON files that have a matching weights file, newest first, with that file."""
        out = []
        for meta, mtime in sorted(self.metas, key=lambda mt: meta_key(mt[0]), reverse=True):
            epoch, step = meta_key(meta)
            paired = self.weights.get((epoch, step)) or self.weights.get((epoch, None))
            if paired is not None:
                out.append((meta, mtime, paired))
        return out


def scan(ckpt_dir: Path) -> Scan:
    """Read every generation's JSON and weights header in ``ckpt_dir`` (see :class:`Scan`)."""
    out = Scan()
    for meta_name, weights_name in GENERATIONS:
        meta_path, w_path = ckpt_dir / meta_name, ckpt_dir / weights_name
        out.found = out.found or meta_path.exists() or w_path.exists()
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                int(meta["epoch"]), int(meta["step"]), meta["optim_param_groups"]
                out.metas.append((meta, meta_path.stat().st_mtime))
            except (OSError, ValueError, KeyError, TypeError):
                out.problems.append(f"{meta_name} is unreadable")
        if w_path.exists():
            tag = weights_tag(w_path)
            if tag is None:
                out.problems.append(f"{weights_name} is damaged (truncated or not safetensors)")
            else:
                out.weights.setdefault(tag, w_path)
    return out
