"""The workspace (catalogue plus content-addressed arrays) and the file-safety helpers every
writer uses."""

from .files import (
    ArrayDamaged,
    WorkspaceError,
    array_digest,
    atomic_file,
    atomic_path,
    atomic_save_npy,
    atomic_write_bytes,
    safe_name,
)
from .workspace import SCHEMA, Workspace, default_root

__all__ = [
    "SCHEMA",
    "ArrayDamaged",
    "Workspace",
    "WorkspaceError",
    "array_digest",
    "atomic_file",
    "atomic_path",
    "atomic_save_npy",
    "atomic_write_bytes",
    "default_root",
    "safe_name",
]
