"""The ``lelp`` command: a thin Typer shell over ``core`` (spaCy's ``cli/`` shape).

Each command parses arguments, calls the same core function the app calls, and prints what it
produced with the artifact ids in the workspace. Expected failures (bad data, bad config, a
missing checkpoint) print one clear line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import functools
import json
import runpy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from .config import RunConfig, dump_config, load_config
from .errors import user_errors

app = typer.Typer(
    name="lelp",
    help="lelp-studio: distil few-class classifiers with LELP pseudo-subclasses.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

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


def _workspace(path: Path | None):  # noqa: ANN202 - Workspace imported lazily for start-up speed
    from .store import Workspace

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


@app.command()
@friendly
def embed(config: ConfigArg = None, set_: SetOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Compute (or fetch from the cache) the teacher's embeddings, logits and W."""
    from . import metrics as M
    from .pipeline import get_dataset, get_teacher_outputs

    cfg = _load(config, set_)
    ws = _workspace(workspace)
    ds = get_dataset(cfg.dataset)
    if ds.split_note:  # a split made here, not by the user, is said with its sizes
        typer.echo(f"note: {ds.split_note}")
    out, key, hit = get_teacher_outputs(ws, ds, cfg.teacher, _tqdm_progress())
    for note in ws.notes:  # damaged cache entries found and recomputed
        typer.echo(f"note: {note}")
    typer.echo(f"teacher outputs: {key[:16]} ({'cache hit' if hit else 'computed'})")
    for split, Z in out.Z.items():
        acc = M.accuracy(Z, ds.splits[split].y)
        typer.echo(f"  {split:5s} n={len(Z):>7d} d={out.dim} teacher accuracy {acc:.2f}%")


@app.command()
@friendly
def subclasses(
    config: ConfigArg = None,
    set_: SetOpt = None,
    workspace: WorkspaceOpt = None,
    save_spec: Annotated[str | None, typer.Option(help="Save this setting under a name")] = None,
) -> None:
    """Build pseudo-subclasses and report their sizes and recovery of latent columns."""
    import numpy as np

    from .pipeline import (
        class_labels,
        fit_subclasses,
        get_dataset,
        get_teacher_outputs,
        manual_assignment,
    )
    from .subclasses import recovery_scores

    cfg = _load(config, set_)
    ws = _workspace(workspace)
    ds = get_dataset(cfg.dataset)
    out, key, _ = get_teacher_outputs(ws, ds, cfg.teacher, _tqdm_progress())
    manual = (
        manual_assignment(ws, ds, cfg.subclasses.manual_groups)
        if cfg.subclasses.method == "manual"
        else None
    )
    sub = fit_subclasses(cfg.subclasses, out, ds, manual=manual)
    H = np.asarray(out.H["train"], dtype=np.float32)
    y = class_labels(cfg.subclasses, out, ds, "train")
    targets = sub.targets(H, np.asarray(out.Z["train"]), tau=cfg.train.tau)
    assign = sub.assign(H, y)
    sha = ws.put_array(targets.astype(np.float32))
    typer.echo(f"{cfg.subclasses.method}: sizes per class {list(sub.sizes_)}; targets {sha[:16]}")
    counts = np.bincount(assign, minlength=int(sum(sub.sizes_)))
    typer.echo(f"  examples per pseudo-subclass: {counts.tolist()}")
    for col in ds.latent_columns:
        rec = recovery_scores(assign, y, ds.splits["train"].latent[col])
        typer.echo(f"  recovery of '{col}': {json.dumps(rec, default=float)}")
    if save_spec:
        name = ws.save_spec(save_spec, cfg.model_dump(mode="json"))
        typer.echo(f"saved spec '{name}'")


@app.command()
@friendly
def distill(
    config: ConfigArg = None,
    set_: SetOpt = None,
    workspace: WorkspaceOpt = None,
    spec: Annotated[str | None, typer.Option(help="Start from a spec saved in the app")] = None,
    headroom_seeds: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Hard-label students (seeds) that answer 'does distillation pay here?' "
            "(trained once, then cached); 0 skips it. Default: 3 up to 20,000 training rows, "
            "else only a cached answer",
        ),
    ] = None,
) -> None:
    """Distil one student as the config says; print student and teacher scores, which split
    chose what, and whether the teacher leaves distillation room to help."""
    from tqdm.auto import tqdm

    from .config import config_from_dict, parse_overrides
    from .pipeline import check_run, prepare, run_distill

    ws = _workspace(workspace)
    if spec is not None:
        from .config import merge_dicts

        data = merge_dicts(ws.load_spec(spec), parse_overrides(set_ or []))
        cfg = config_from_dict(data, f"spec {spec}")
    else:
        cfg = _load(config, set_)
    bars: list[Any] = []  # the step bar opens at the first step: errors come before it

    def on_step(info: dict[str, Any]) -> None:
        if not bars:
            bars.append(tqdm(total=None, desc="distill", unit="step", file=sys.stderr))
        bar = bars[0]
        bar.total = info.get("total_steps", bar.total)
        bar.n = info.get("step", bar.n)
        loss = f"{info.get('loss', float('nan')):.4f}"
        bar.set_postfix(epoch=info.get("epoch"), loss=loss)

    check_run(cfg)  # a run that cannot work is refused before any work
    try:
        prep = prepare(cfg, ws, _tqdm_progress())
        rec = run_distill(cfg, ws, on_step, prep=prep)
    finally:
        for bar in bars:
            bar.close()
    m = rec["metrics"]
    s, t, sel = m["student"], m["teacher"], m["selection"]
    split = rec["artifacts"]["eval_split"]
    typer.echo(f"run {rec['run_id']}  ({m['wall_s']:.1f} s)")
    if prep.dataset.split_note:  # a split made here, not by the user, is said with its sizes
        typer.echo(f"  note: {prep.dataset.split_note}")
    typer.echo(
        f"  selection split: {sel['split']} ({sel['n']} rows, {sel['source']}); it chose "
        f"{sel['chooses']}. The {split} split was scored once, after training."
    )
    typer.echo(
        f"  teacher  accuracy {t['accuracy']:6.2f}% ({split})  {t['select_accuracy']:6.2f}% "
        f"({sel['split']})"
    )
    typer.echo(
        f"  student  accuracy {s['accuracy']:6.2f}%  agreement {s['agreement']:6.2f}%  "
        f"KL {s['kl']:.4f}  ECE {s['ece']:.4f}  ({split}; KL and ECE at T=1)"
    )
    typer.echo(f"  student saved in {ws.artifact_path(rec, 'student_dir')}")
    from . import headroom

    if headroom_seeds == 0:
        return
    seeds = headroom.DEFAULT_SEEDS if headroom_seeds is None else tuple(range(headroom_seeds))
    n_train = len(prep.dataset.splits["train"])
    key = headroom.headroom_key(prep.teacher_key, cfg, seeds)
    big = headroom_seeds is None and n_train > headroom.AUTO_MAX_ROWS
    if big and headroom.cached_headroom(ws, key) is None:  # 3 more students cost too much
        typer.echo(
            f"  does distillation pay here? not measured ({n_train:,} training rows): pass "
            "--headroom-seeds 3 to train 3 hard-label students once, or use the Data page"
        )
        return
    h = headroom.compute_headroom(ws, prep, cfg, seeds=seeds)
    cached = " (cached)" if h["cache_hit"] else ""
    typer.echo(f"  does distillation pay here?{cached} {h['message']}")


@app.command()
@friendly
def runs(
    sweep: Annotated[str | None, typer.Option(help="Only the runs of this sweep id")] = None,
    metric: Annotated[str, typer.Option(help="Score to rank by: accuracy or agreement")] = (
        "accuracy"
    ),
    save_best: Annotated[
        str | None, typer.Option(help="Save the best setting as a spec with this name")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Only runs on this dataset source")] = None,
    teacher: Annotated[str | None, typer.Option(help="Only runs with this teacher kind")] = None,
    objective: Annotated[str | None, typer.Option(help="Only runs of this objective")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json or markdown")] = "table",
    workspace: WorkspaceOpt = None,
) -> None:
    """Finished runs aggregated: seeds folded (mean ± std, n), grouped by every setting that
    differs, ranked on the selection split, test shown beside it (Compare's sweep view)."""
    from . import sweeps

    if metric not in ("accuracy", "agreement"):
        raise typer.BadParameter("choose accuracy or agreement", param_hint="--metric")
    if fmt not in sweeps.FORMATS:
        raise typer.BadParameter(
            f"choose one of {', '.join(sweeps.FORMATS)}", param_hint="--format"
        )
    ws = _workspace(workspace)
    records = sweeps.filter_runs(
        ws.list_runs(), dataset=dataset, teacher=teacher, objective=objective
    )
    if sweep is not None:
        ids = set(sweeps.sweep_run_ids(ws, sweep).get(sweep, []))
        if not ids:
            typer.secho(
                f"error: sweep {sweep!r} has no finished runs in {ws.root}; see `lelp jobs list`",
                err=True,
            )
            raise typer.Exit(2)
        records = [r for r in records if r["run_id"] in ids]
    df = sweeps.aggregate(records, metric=metric)
    typer.echo(sweeps.render(df, fmt))
    if df.empty or fmt != "table":
        if save_best is not None and not df.empty:
            ws.save_spec(save_best, sweeps.best_config(ws, df))
        return
    scored = df.dropna(subset=["sel_mean"])
    if not scored.empty:
        top = scored.iloc[0]
        typer.echo(
            f"best on the selection split: rank {top['rank']} ({top['n']} seeds), selection "
            f"{top['sel_mean']:.2f}, test {top['test_mean']:.2f} (shown, never used to rank)"
        )
    if save_best is not None:
        ws.save_spec(save_best, sweeps.best_config(ws, df))
        typer.echo(f"saved the best setting as spec {save_best!r}: lelp distill --spec {save_best}")


@app.command()
@friendly
def export(
    run_id: Annotated[str, typer.Argument(help="The run to ship (ids: `lelp runs`)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write: new or empty")],
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", help="onnx (every student) or hf (transformer students)"),
    ] = "onnx",
    force: Annotated[
        bool, typer.Option("--force", help="Replace a previous export in --out")
    ] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Export a run's student with a model card: onnx (onnxruntime) or hf (transformers'
    Auto classes); both output the class log-probabilities the project scores."""
    from .export import MARKER, export_run, find_run

    ws = _workspace(workspace)
    folder = export_run(ws, find_run(ws, run_id), fmt, out, force=force)
    info = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    size = info["size"]
    typer.echo(
        f"exported run {run_id} ({info['student_kind']} student, {len(info['labels'])} classes) "
        f"as {fmt} to {folder}"
    )
    typer.echo(
        f"  {size['parameters']:,} parameters, {size['files_bytes']:,} bytes; model card: "
        f"{folder / 'README.md'}"
    )


@app.command()
def doctor(
    workspace: WorkspaceOpt = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Set damaged files aside and rebuild what can be")
    ] = False,
) -> None:
    """Check a workspace: catalogue, every array's header, size and hash, references,
    student weights, dead jobs, half-written files. Exit status 1 when problems remain."""
    from . import doctor as dr
    from .store import default_root

    root = Path(workspace) if workspace is not None else default_root()
    if not root.is_dir():
        typer.secho(f"error: no workspace folder at {root}; pass -w with one", err=True)
        raise typer.Exit(2)
    if repair:
        for line in dr.repair(root):
            typer.echo(f"repaired: {line}")
    findings, _ = dr.safe_check(root)
    for f in findings:
        typer.echo(f.line())
    typer.echo(f"{root}: {dr.summary(findings)}")
    if findings:
        raise typer.Exit(1)


@app.command("show-config")
@friendly
def show_config(config: ConfigArg = None, set_: SetOpt = None) -> None:
    """Print the fully resolved config (defaults filled in) as YAML."""
    typer.echo(dump_config(_load(config, set_)), nl=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    ctx: typer.Context,
    which: Annotated[str, typer.Argument(help="quality or speed")] = "quality",
) -> None:
    """Run a benchmark script from bench/ (extra arguments are passed through)."""
    script = Path(__file__).resolve().parent.parent / "bench" / f"{which}.py"
    if not script.is_file():
        typer.secho(f"error: no benchmark {script}; choose quality or speed", err=True)
        raise typer.Exit(2)
    sys.argv = [str(script), *ctx.args]
    runpy.run_path(str(script), run_name="__main__")


def _mount_jobs() -> None:
    try:
        from .cli_jobs import jobs_app, worker
    except ImportError:  # the jobs module is optional while it is being built
        return
    app.add_typer(jobs_app, name="jobs", help="List, cancel, retry and sweep background jobs.")
    app.command("worker")(worker)


_mount_jobs()

if __name__ == "__main__":
    app()
