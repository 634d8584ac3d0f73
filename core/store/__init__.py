"""The workspace (catalogue plus content-addressed arrays), the catalogue's schema versions,
and the file-safety helpers every writer uses."""

from .choices import CHOICES_FILE, Choices, load_choices, save_choices
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
from .schema import Schema, ensure_schema, schema_versions
from .staging import Staging, claim_staging
from .workspace import SCHEMA, WORKSPACE_SCHEMA, Workspace, default_root

__all__ = [
    "CHOICES_FILE",
    "SCHEMA",
    "WORKSPACE_SCHEMA",
    "ArrayDamaged",
    "Choices",
    "Schema",
    "Staging",
    "Workspace",
    "WorkspaceError",
    "array_digest",
    "atomic_file",
    "atomic_path",
    "atomic_save_npy",
    "atomic_write_bytes",
    "claim_staging",
    "default_root",
    "ensure_schema",
    "load_choices",
    "safe_name",
    "save_choices",
    "schema_versions",
]
