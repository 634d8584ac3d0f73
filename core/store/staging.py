"""The staging folder an extraction writes into, one per cache key, kept across an interruption.

Why one folder per key (not per call): a teacher pass over a million transfer texts takes
long enough to be interrupted (a killed process, Ctrl-C, a cancelled job); the finished
chunks stay in ``staging/<key>/`` and the next call for the same key finds and reuses them
(``core.teachers.staged``). Two writers of one key must not write into the same files, so
the folder is claimed with an exclusive ``flock`` on ``staging/<key>.lock``, which the kernel
drops when the holder dies (a claim never goes stale). A second writer that finds the lock
held does not wait: it gets a private ``.<key>.<uuid>.tmp`` folder of its own (no resume, no
shared files), as every writer did before.

On success the folder and the lock file are removed; on failure a claimed folder is kept for
the next call and a private one is removed. ``lelp doctor`` removes stale private folders
(``.*.tmp``); claimed folders are progress, not debris.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .files import safe_name


@dataclass
class Staging:
    """A folder to write one key's extraction into. ``shared``: the key's own folder, claimed
    (earlier chunks may be in it, and what is written stays for a later call if this one
    fails); False: a private folder for this call only."""

    path: Path
    shared: bool


def _lock(path: Path) -> int | None:
    """An exclusive ``flock`` on ``path`` (created if absent), or None when another writer
    holds it or the platform has no ``flock``. The lock is taken on the file the path names
    now: a file removed and recreated by the previous holder meanwhile is locked again."""
    try:
        import fcntl
    except ImportError:  # Windows: no claim, every writer gets a private folder
        return None
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder finished and removed the file: lock the new one


@contextlib.contextmanager
def claim_staging(root: Path, key: str) -> Iterator[Staging]:
    """The staging folder for ``key`` under ``root/staging`` (see the module docstring):
    removed when the block succeeds; on an error or interruption kept if claimed, removed
    if private."""
    base = Path(root) / "staging"
    base.mkdir(parents=True, exist_ok=True)
    name = safe_name(key)
    lock_path = base / f"{name}.lock"
    fd = _lock(lock_path)
    if fd is None:
        staging = Staging(base / f".{name}.{uuid.uuid4().hex[:12]}.tmp", shared=False)
    else:
        staging = Staging(base / name, shared=True)
    staging.path.mkdir(parents=True, exist_ok=True)
    ok = False
    try:
        yield staging
        ok = True
    finally:
        if ok or not staging.shared:
            shutil.rmtree(staging.path, ignore_errors=True)
        if fd is not None:
            if ok:  # removed while still held: a waiting writer re-checks the inode
                with contextlib.suppress(FileNotFoundError):
                    lock_path.unlink()
            os.close(fd)
