"""``lelp embed``, ``lelp subclasses``, ``lelp distill`` and ``lelp show-config``: the
distillation pipeline, one stage per command, each calling the same core function the app
calls. Heavy modules (torch through the pipeline, pandas) are imported inside each command, so
``lelp --help`` and the quick commands start fast.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from ..config import config_from_dict, dump_config, merge_dicts, parse_overrides
from ..types import TRANSFER
from .common import ConfigArg, SetOpt, WorkspaceOpt, _load, _tqdm_progress, _workspace, friendly


@friendly
def embed(config: ConfigArg = None, set_: SetOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Compute (or fetch from the cache) the teacher's embeddings, logits and W."""
    import numpy as np

    from .. import metrics as M
    from ..pipeline import get_dataset, get_teacher_outputs

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
        if split == TRANSFER:  # unlabeled: nothing to score, the teacher's classes instead
            share = np.bincount(np.asarray(Z).argmax(1), minlength=ds.n_classes) / max(len(Z), 1)
            classes = ", ".join(
                f"{n} {100 * f:.0f}%" for n, f in zip(ds.label_names, share, strict=True)
            )
            typer.echo(
                f"  {split} n={len(Z):>7d} d={out.dim} unlabeled; teacher's classes: {classes}"
            )
            continue
        acc = M.accuracy(Z, ds.splits[split].y)
        typer.echo(f"  {split:5s} n={len(Z):>7d} d={out.dim} teacher accuracy {acc:.2f}%")


@friendly
def subclasses(
    config: ConfigArg = None,
    set_: SetOpt = None,
    workspace: WorkspaceOpt = None,
    save_spec: Annotated[str | None, typer.Option(help="Save this setting under a name")] = None,
) -> None:
    """Build pseudo-subclasses and report their sizes and recovery of latent columns."""
    import numpy as np

    from ..pipeline import (
        class_labels,
        fit_subclasses,
        get_dataset,
        get_teacher_outputs,
        manual_assignment,
    )
    from ..subclasses import recovery_scores, spec_targets_and_assignment

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
    H = out.H["train"]  # the cached float16 memmap; the subclasser casts it per block
    y = class_labels(cfg.subclasses, out, ds, "train")
    Z = np.asarray(out.Z["train"])
    targets, assign = spec_targets_and_assignment(sub, cfg.subclasses, H, Z, cfg.train.tau, y)
    sha = ws.put_array(targets.astype(np.float32, copy=False))
    typer.echo(f"{cfg.subclasses.method}: sizes per class {list(sub.sizes_)}; targets {sha[:16]}")
    counts = np.bincount(assign, minlength=int(sum(sub.sizes_)))
    typer.echo(f"  examples per pseudo-subclass: {counts.tolist()}")
    for col in ds.latent_columns:
        rec = recovery_scores(assign, y, ds.splits["train"].latent[col])
        typer.echo(f"  recovery of '{col}': {json.dumps(rec, default=float)}")
    if save_spec:
        name = ws.save_spec(save_spec, cfg.model_dump(mode="json"))
        typer.echo(f"saved spec '{name}'")


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

    from ..analysis import data_text
    from ..pipeline import check_run, prepare, run_distill

    ws = _workspace(workspace)
    if spec is not None:
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
    typer.echo(f"  data: {data_text(m.get('data'))}")
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
    from .. import headroom

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


@friendly
def show_config(config: ConfigArg = None, set_: SetOpt = None) -> None:
    """Print the fully resolved config (defaults filled in) as YAML."""
    from .. import objectives  # torch: only this command needs it

    cfg = _load(config, set_)
    objectives.get(cfg.train.objective)  # a name the registry does not know is one line
    typer.echo(dump_config(cfg), nl=False)
