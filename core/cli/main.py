"""The ``lelp`` Typer app: every command registered here, in the order ``lelp --help`` lists
them (spaCy's ``cli/`` shape; no command registers itself on import)."""

from __future__ import annotations

import typer

from .bench import bench
from .distill import distill, embed, show_config, subclasses
from .export import export
from .jobs import jobs_app, worker
from .runs import runs
from .teacher import finetune
from .workspace import doctor

app = typer.Typer(
    name="lelp",
    help="lelp-studio: distil few-class classifiers with LELP pseudo-subclasses.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(embed)
app.command()(finetune)
app.command()(subclasses)
app.command()(distill)
app.command()(runs)
app.command()(export)
app.command()(doctor)
app.command("show-config")(show_config)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(bench)
app.add_typer(jobs_app, name="jobs", help="List, cancel, retry and sweep background jobs.")
app.command("worker")(worker)
