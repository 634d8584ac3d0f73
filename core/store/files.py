"""Files that are complete or absent, safe names, and array digests.

Why: every write goes to a temporary file, is fsynced, then renamed, so a crash mid-write
leaves the previous version; a user-given name can never write outside the workspace.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..types import hash_arrays

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+=,@-]{0,99}$")


#: Arrays whose content was checked against their hash in this process: path -> stat key.
#: Why not on every read: hashing 1.6M x 384 float16 (1.2 GB) takes 2-3 s. A file changed
#: since (size, mtime or inode) is checked again.
_VERIFIED: dict[str, tuple[int, int, int]] = {}
_HASH_CHUNK = 1 << 24  # bytes per hashing step: no full copy of a large memory-mapped array


def _stat_key(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _marker(path: Path) -> Path:
    return path.with_suffix(".verified")


def is_verified(path: Path, key: tuple[int, int, int]) -> bool:
    """Whether ``path``, with stat key ``key``, was checked against its hash, in this process
    or in an earlier one: a ``<sha>.verified`` file beside it holds the stat key it had then.

    Why across processes: every app restart hashed H again, 2-3 s of each first page at 1.6M
    rows. Writing to the file changes its size or mtime, replacing it its inode, and any of
    them makes it checked again; ``lelp doctor`` still hashes every array.
    """
    if _VERIFIED.get(str(path)) == key:
        return True
    try:
        seen = tuple(int(v) for v in _marker(path).read_text().split())
    except (OSError, ValueError):
        return False
    if seen != key:
        return False
    _VERIFIED[str(path)] = key
    return True


def mark_verified(path: Path) -> None:
    """Record that ``path`` as it is now matches its hash (see :func:`is_verified`); a
    read-only workspace only remembers it in this process."""
    key = _stat_key(path)
    _VERIFIED[str(path)] = key
    with contextlib.suppress(OSError):
        atomic_write_bytes(_marker(path), " ".join(map(str, key)).encode())


def forget_verified(path: Path) -> None:
    """Drop what :func:`mark_verified` recorded for ``path`` (it was found damaged)."""
    _VERIFIED.pop(str(path), None)
    with contextlib.suppress(OSError):
        _marker(path).unlink()


def array_digest(a: np.ndarray) -> str:
    """``hash_arrays(a)`` for one array, streamed in chunks (a memory map is not copied)."""
    a = np.asarray(a)
    if a.ndim == 0 or not a.flags.c_contiguous:
        return hash_arrays(a)  # small or strided: one copy is fine
    h = hashlib.sha256()
    h.update(str(a.dtype).encode())
    h.update(str(a.shape).encode())
    rows = max(1, _HASH_CHUNK // max(1, a[:1].nbytes))
    for i in range(0, a.shape[0], rows):
        h.update(np.ascontiguousarray(a[i : i + rows]).data.cast("B"))
    h.update(b"\x00")
    return h.hexdigest()


class WorkspaceError(RuntimeError):
    """The workspace cannot be used (unwritable, disk full, bad name); the message says how to
    fix it."""


class ArrayDamaged(WorkspaceError):
    """A stored array is missing, unreadable or no longer matches its hash."""


def safe_name(name: str, what: str = "name") -> str:
    """Validate a user-given name that becomes part of a path or a key.

    Rejects path separators, ``..``, absolute paths, control and non-ASCII look-alike characters,
    so no name can write outside the workspace.
    """
    norm = unicodedata.normalize("NFKC", str(name)).strip()
    if norm != str(name).strip() or not _NAME_RE.match(norm) or ".." in norm:
        raise WorkspaceError(
            f"{what} {name!r} is not allowed: use 1-100 letters, digits, spaces or . _ - + = , @ "
            "(no slashes, no '..', not starting with a dot)"
        )
    return norm


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to (by any library); on success it is fsynced
    and renamed over ``path``, so ``path`` only ever holds a complete file. On any error (or a
    kill) the previous version stays and the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file object that appears at ``path`` only once fully written (see
    :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)


def atomic_save_npy(path: Path, a: np.ndarray) -> None:
    """Save one array as ``.npy`` atomically (``allow_pickle`` is never needed to read it)."""
    with atomic_file(path) as f:
        np.save(f, np.ascontiguousarray(a), allow_pickle=False)
