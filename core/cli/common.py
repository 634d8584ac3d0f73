"""What every ``lelp`` command shares: argument types, the one-line error wrapper, the
workspace and config loaders and the progress bars."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ..config import RunConfig, load_config
from ..errors import user_errors
from ..store import Workspace

F = TypeVar("F", bound=Callable[..., Any])

ConfigArg = Annotated[
    Path | None, typer.Argument(help="YAML run config (see examples/); defaults apply if omitted")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config value, e.g. --set train.tau=4"),
]
WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace", "-w", help="Workspace folder (default $LELP_WORKSPACE or ./workspace)"
    ),
]


def friendly(fn: F) -> F:
    """Turn expected user errors into one readable line and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except user_errors() as err:
            from tqdm import tqdm

            # tqdm.write puts the line below any open progress bar, never glued to it.
            msg = f"error: {err}"
            if sys.stderr.isatty():
                msg = typer.style(msg, fg=typer.colors.RED)
            tqdm.write(msg, file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _load(config: Path | None, overrides: list[str] | None) -> RunConfig:
    return load_config(config, overrides or [])


def _workspace(path: Path | None) -> Workspace:
    return Workspace(path)


def _tqdm_progress() -> Callable[[int, int, str], None]:
    """A tqdm bar per stage, fed by the core ``progress(done, total, stage)`` callback."""
    from tqdm.auto import tqdm

    bars: dict[str, Any] = {}

    def progress(done: int, total: int, stage: str) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="ex", file=sys.stderr)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return progress
