"""Resumable extraction: one split's outputs written chunk by chunk into ``.npy`` files.

Why: a teacher pass over a million transfer texts takes long enough to be interrupted (a
killed process, Ctrl-C, a cancelled job), and redoing it from the start wastes that time. A
split's H (float16) and Z (float32) are memory-mapped files ``H_<split>.npy`` and
``Z_<split>.npy`` in the staging folder, filled ``CHUNK_ROWS`` rows at a time; after each
chunk the files are flushed and the chunk's sha256 (its H and Z rows) is added to
``<split>.chunks.json``, written atomically. A later call with the same folder keeps a chunk
only when the manifest names it, its header (row count, widths, chunk size, the teacher's
``context``) matches and the rows still hash to the recorded digest: a damaged or half-written
chunk is redone, never used silently. Each chunk is computed alone (its own batch plan), so a
resumed pass gives the same arrays as an uninterrupted one.

The files are opened per chunk and closed after it, so the pages written stay in the page
cache, not in the process's resident set. The folder belongs to one writer at a time
(``store.staging.claim_staging``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..store import atomic_write_bytes

#: Rows per chunk: what an interruption can lose. 32,768 short texts are about a minute of a
#: MiniLM pass on two loaded CPU cores and well under a second on a GPU.
CHUNK_ROWS = 32_768
_VERSION = 1
_DTYPES = (np.float16, np.float32)  # H as the workspace stores it; Z as every teacher gives it

Progress = Callable[[int, int, str], None]
#: ``fill(rows, out, progress)`` computes the outputs of ``rows`` (a slice of the split) into
#: ``out``, one ``(len, width)`` array per output, reporting ``progress(done, total, stage)``
#: (done counts rows of this call).
Fill = Callable[[slice, list[np.ndarray], "Progress | None"], None]


class Reporter(Protocol):
    """Where a split's progress goes (``common._Reporter``): rows done since the last call."""

    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


def _digest(parts: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in parts:
        h.update(np.ascontiguousarray(a).data.cast("B"))
    return h.hexdigest()


def _bounds(n: int, chunk_rows: int) -> list[tuple[int, int]]:
    return [(a, min(n, a + chunk_rows)) for a in range(0, n, chunk_rows)]


def _kept_chunks(manifest: Path, head: dict[str, Any], paths: list[Path]) -> dict[str, str]:
    """The chunks of an earlier pass that may be reused: named by a manifest with this
    ``head``, in files of the right shape and dtype, and hashing to their recorded digest."""
    try:
        saved = json.loads(manifest.read_text(encoding="utf-8"))
        if {k: saved.get(k) for k in head} != head:
            return {}
        arrays = [np.load(p, mmap_mode="r", allow_pickle=False) for p in paths]
    except (OSError, ValueError):  # absent, unreadable, or not .npy files
        return {}
    widths = head["widths"]
    if any(
        a.shape != (head["n"], w) or a.dtype != d
        for a, w, d in zip(arrays, widths, _DTYPES, strict=True)
    ):
        return {}
    kept = {}
    bounds = _bounds(head["n"], head["chunk_rows"])
    for key, sha in dict(saved.get("done") or {}).items():
        i = int(key)
        if 0 <= i < len(bounds):
            a, b = bounds[i]
            if _digest([arr[a:b] for arr in arrays]) == sha:
                kept[str(i)] = sha
    return kept


def fill_split(
    folder: Path,
    split: str,
    n: int,
    widths: tuple[int, int],
    fill: Fill,
    reporter: Callable[[str], Reporter],
    stage: str,
    *,
    context: str = "",
    chunk_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The split's ``(H, Z)``: H a read-only float16 memmap of ``folder/H_<split>.npy``, Z a
    float32 array in memory; chunks finished by an earlier call with the same ``folder``,
    ``n``, ``widths`` and ``context`` are verified and kept (see the module docstring).

    ``context`` names what else decides the values (device, precision, a digest of the
    head): chunks made under another context are discarded. Progress goes to
    ``reporter(stage)``, the stage saying how many chunks were kept.
    """
    rows = int(chunk_rows or CHUNK_ROWS)
    paths = [folder / f"H_{split}.npy", folder / f"Z_{split}.npy"]
    manifest = folder / f"{split}.chunks.json"
    dims = [int(w) for w in widths]
    head: dict[str, Any] = {"version": _VERSION, "n": int(n), "widths": dims}
    head |= {"chunk_rows": rows, "context": context}
    bounds = _bounds(int(n), rows)
    done = _kept_chunks(manifest, head, paths)
    if not done:  # a fresh pass: new (sparse) files and an empty manifest
        for p, w, d in zip(paths, dims, _DTYPES, strict=True):
            np.lib.format.open_memmap(p, mode="w+", dtype=d, shape=(int(n), w)).flush()
        atomic_write_bytes(manifest, json.dumps(head | {"done": {}}).encode("utf-8"))
    elif len(done) < len(bounds):
        stage = f"{stage} (resumed: {len(done)} of {len(bounds)} chunks kept)"
    rep = reporter(stage)
    try:
        rep.update(sum(b - a for i, (a, b) in enumerate(bounds) if str(i) in done))
        for i, (a, b) in enumerate(bounds):
            if str(i) in done:
                continue
            last = 0

            def report(d: int, _total: int, _stage: str) -> None:
                nonlocal last
                rep.update(d - last)
                last = d

            arrays = [np.lib.format.open_memmap(p, mode="r+") for p in paths]
            views = [arr[a:b] for arr in arrays]
            fill(slice(a, b), views, report)
            for arr in arrays:
                arr.flush()
            done[str(i)] = _digest(views)
            del views, arrays  # unmapped: the pages stay in the page cache, not in our RSS
            atomic_write_bytes(manifest, json.dumps(head | {"done": done}).encode("utf-8"))
    finally:
        rep.close()
    H = np.load(paths[0], mmap_mode="r")
    Z = np.array(np.load(paths[1], mmap_mode="r"))  # (n, C): small, and owns its memory
    return H, Z
