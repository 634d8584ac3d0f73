"""Where the library finds data it does not own: its demo files and the shared folder.

Why not paths relative to this file: an installed package has no checkout around it. The demo
files ship as package data (``lelp_studio.sample_data``, read with ``importlib.resources``);
the shared datasets are found through ``LELP_SHARED_DATA``, or ``../shared/data`` beside a
checkout only when the code runs from one.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

#: The package holding the demo files (setuptools maps it to the top-level ``sample_data/``).
SAMPLE_PACKAGE = f"{__name__.split('.')[0]}.sample_data"
#: How a user points the library at the shared datasets.
SHARED_HINT = "set LELP_SHARED_DATA to the folder of shared datasets"


def checkout_root() -> Path | None:
    """The source checkout this code runs from (``core/`` beside ``pyproject.toml``), or None
    for an installed package."""
    root = Path(__file__).resolve().parents[2]
    is_checkout = (root / "pyproject.toml").is_file() and (root / "core").is_dir()
    return root if is_checkout else None


def sample_dir() -> Path:
    """The folder of the demo files: the installed ``sample_data`` package, or the checkout's
    ``sample_data/`` when the code runs from a checkout through the ``lelp_studio -> core``
    link (where that package is not importable)."""
    try:
        found = importlib.resources.files(SAMPLE_PACKAGE)
    except ModuleNotFoundError:
        root = checkout_root()
        if root is None:
            raise FileNotFoundError(
                f"the demo files ({SAMPLE_PACKAGE}) are not installed; reinstall lelp-studio"
            ) from None
        return root / "sample_data"
    return Path(str(found))


def shared_data_root() -> Path | None:
    """Folder of the shared datasets: env ``LELP_SHARED_DATA``, else ``../shared/data`` beside
    the checkout (none for an installed package)."""
    env = os.environ.get("LELP_SHARED_DATA")
    if env:
        root: Path | None = Path(env)
    else:
        checkout = checkout_root()
        root = None if checkout is None else checkout.parent / "shared" / "data"
    return root if root is not None and root.is_dir() else None


def shared_data_default() -> str:
    """Where :func:`shared_data_root` looked, for messages."""
    checkout = checkout_root()
    if checkout is None:
        return "$LELP_SHARED_DATA (not running from a checkout, so no ../shared/data default)"
    return f"$LELP_SHARED_DATA and {checkout.parent / 'shared' / 'data'}"
