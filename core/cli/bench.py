"""``lelp bench``: run a benchmark script from the checkout's ``bench/`` folder.

The benchmarks are repository files, not package data: an installed ``lelp`` outside a
checkout says so in one line (exit status 2) instead of looking for a file that is not there.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Annotated

import typer

CHECKOUT = Path(__file__).resolve().parents[2]
"""The repository this package runs from, when it runs from one (``core/cli/`` in it)."""


def bench(
    ctx: typer.Context,
    which: Annotated[str, typer.Argument(help="quality or speed")] = "quality",
) -> None:
    """Run a benchmark script from bench/ (extra arguments are passed through)."""
    folder = CHECKOUT / "bench"
    if not (CHECKOUT / "pyproject.toml").is_file() or not folder.is_dir():
        typer.secho(
            "error: `lelp bench` runs the scripts in bench/ of a lelp-studio checkout, and this "
            "lelp is installed without one; run it from a clone of the repository",
            err=True,
        )
        raise typer.Exit(2)
    script = folder / f"{which}.py"
    if not script.is_file():
        typer.secho(f"error: no benchmark {script}; choose quality or speed", err=True)
        raise typer.Exit(2)
    sys.argv = [str(script), *ctx.args]
    runpy.run_path(str(script), run_name="__main__")
