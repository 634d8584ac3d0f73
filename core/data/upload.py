"""Uploads: the size limit Streamlit enforces, checked for paths too, and keeping a file."""

from __future__ import annotations

import contextlib
import hashlib
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from ..store import atomic_write_bytes
from . import paths
from .readers import DataError, read_table

#: Streamlit's own default for ``server.maxUploadSize`` (MB), used when the config omits it.
DEFAULT_UPLOAD_MB = 200


def upload_limit_mb(config_path: str | Path | None = None) -> int:
    """The upload limit in MB: ``server.maxUploadSize`` of ``.streamlit/config.toml``.

    One number, kept where Streamlit reads it, so the app's widget and this check agree.
    """
    base = paths.checkout_root() or Path.cwd()  # Streamlit reads .streamlit/ in the working folder
    path = Path(config_path) if config_path is not None else base / ".streamlit" / "config.toml"
    try:
        conf = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return DEFAULT_UPLOAD_MB
    value = conf.get("server", {}).get("maxUploadSize", DEFAULT_UPLOAD_MB)
    return int(value) if isinstance(value, (int, float)) and value > 0 else DEFAULT_UPLOAD_MB


def check_upload_size(n_bytes: int, limit_mb: float | None = None, name: str = "upload") -> None:
    """Raise DataError when an upload of ``n_bytes`` exceeds ``limit_mb`` (MB = 2**20 bytes).

    Why here and not only in Streamlit: a path given on the Data page or the CLI bypasses the
    widget's limit, and the message should say what to do instead (pass a path).
    """
    limit = upload_limit_mb() if limit_mb is None else limit_mb
    if n_bytes < 0:
        raise DataError(f"{name}: size {n_bytes} bytes is negative; pass the size in bytes")
    if n_bytes > limit * 2**20:
        raise DataError(
            f"{name}: {n_bytes / 2**20:.1f} MB is over the upload limit of {limit:g} MB; give "
            "the file's path on the Data page (or to the CLI) instead of uploading it, or raise "
            "server.maxUploadSize in .streamlit/config.toml"
        )


def store_upload(folder: str | Path, name: str, data: bytes) -> Path:
    """Keep an uploaded file as ``folder/<content hash>/<its own name>`` so jobs and the CLI
    can read it by path and every message names it as the user does; a file that cannot be
    read as a table is refused (DataError) and not kept."""
    base = Path(name).name or "upload"
    target = Path(folder) / hashlib.sha256(data).hexdigest()[:16] / base
    if not target.exists():
        atomic_write_bytes(target, data)  # a crash mid-write never leaves a partial file
    try:
        read_table(target)
    except DataError:
        target.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            target.parent.rmdir()
        raise
    return target
