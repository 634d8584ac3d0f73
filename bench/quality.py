"""Quality benchmark (issue 3 item 9): hard labels vs KD vs LELP vs k-means/oracle subclasses.

For each dataset the teacher outputs and the student inputs are made once
(``core.pipeline.prepare``), each subclass fit is made once per S, and then every student of
the grid is trained on them (``core.pipeline.train_student``) for several seeds. Results go to
``<out>/quality.json`` (every row, the machine, the wall times) and ``<out>/quality.md`` (a
table per dataset and the best LELP vs best KD line the acceptance criterion asks for).

    python bench/quality.py                       # all datasets found, frozen MiniLM teacher
    python bench/quality.py --quick --out /tmp/q  # digits only, 1 seed, small grid (the test)
    lelp bench quality --datasets amazon_multidomain --teacher finetune   # on a GPU
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make ``core`` importable
    sys.path.insert(0, str(REPO))

from core.config import (  # noqa: E402
    DatasetSpec,
    RunConfig,
    StudentSpec,
    SubclassSpec,
    TeacherSpec,
    TrainSpec,
)

#: LELP must beat KD by this many accuracy points on amazon_multidomain (issue 3).
MARGIN = 0.8
GRID_S = (2, 4, 8)
GRID_BETA = (0.5, 1.0, 2.0)
GRID_TAU = (1.0, 4.0)
KD_TAUS = (1.0, 4.0)


@dataclass(frozen=True)
class BenchData:
    """One benchmark dataset: where it comes from, its teacher/student sizes and latent column."""

    name: str
    source: str
    text: bool = True
    max_length: int = 64
    epochs: int = 8
    max_train: int | None = None
    latent: str | None = None
    shared: bool = True
    notes: str = ""


DATASETS: dict[str, BenchData] = {
    "digits-bin": BenchData(
        "digits-bin", "digits-bin", text=False, epochs=20, latent="digit", shared=False
    ),
    "amazon_multidomain": BenchData(
        "amazon_multidomain", "shared:amazon_multidomain", max_length=256, latent="domain"
    ),
    "sst2": BenchData("sst2", "shared:sst2", latent="fine_label"),
    "sentiment140": BenchData(
        "sentiment140",
        "shared:sentiment140",
        epochs=4,
        max_train=20_000,
        notes="train = a stratified seeded subsample of 20,000 rows (dataset.max_train; LELP.md "
        "took the first 20,000); the query column is not a latent subclass, so no oracle row",
    ),
    "trec": BenchData("trec", "shared:trec", latent="fine_label"),
}


@dataclass
class Setting:
    """One student recipe of the grid (seeds are added when it runs)."""

    key: str
    family: str  # hard, kd, lelp, kmeans, oracle, ablation
    objective: str
    tau: float = 1.0
    method: str | None = None
    n_subclasses: int | list[int] | None = None
    beta: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def subclass_spec(self, latent: str | None) -> SubclassSpec:
        if self.method is None:
            return SubclassSpec()
        return SubclassSpec(
            method=self.method,  # type: ignore[arg-type]
            n_subclasses=self.n_subclasses if self.n_subclasses is not None else 4,
            beta=self.beta,
            latent_col=latent if self.method == "oracle" else None,
            **self.extra,
        )


# --------------------------------------------------------------------------- machine


def machine_info(threads: int) -> dict[str, Any]:
    """What the timings depend on (bench/machine.py), with the torch threads used."""
    from bench.machine import machine_info as base

    return base() | {"cpu_count": os.cpu_count(), "torch_threads": threads}


# --------------------------------------------------------------------------- settings


def latent_sizes(prep: Any, col: str | None) -> list[int] | None:
    """Distinct latent values within each class (the oracle's S_c), None without a column."""
    if col is None:
        return None
    tr = prep.dataset.splits["train"]
    if col not in tr.latent:
        return None
    y, v = np.asarray(tr.y), np.asarray(tr.latent[col]).astype(str)
    return [int(len(np.unique(v[y == c]))) for c in range(prep.dataset.n_classes)]


def make_settings(quick: bool, sizes_latent: list[int] | None, ablations: bool) -> list[Setting]:
    """hard, KD (tau 1, 4), the LELP grid, k-means and oracle (and optional LELP ablations)."""
    grid_s, grid_b, grid_t = ((2, 4), (1.0,), (1.0,)) if quick else (GRID_S, GRID_BETA, GRID_TAU)
    out = [Setting("hard", "hard", "hard")]
    out += [Setting(f"kd tau={t:g}", "kd", "kd", tau=t) for t in KD_TAUS]
    for s, b, t in itertools.product(grid_s, grid_b, grid_t):
        out.append(Setting(f"lelp S={s} beta={b:g} tau={t:g}", "lelp", "lelp", t, "lelp", s, b))
    # k-means with the oracle's per-class counts (or 4), tau 1: same subclass budget.
    km = sizes_latent if sizes_latent is not None else 4
    out.append(Setting("kmeans", "kmeans", "lelp", 1.0, "kmeans", km))
    if sizes_latent is not None:
        out.append(Setting("oracle", "oracle", "lelp", 1.0, "oracle", sizes_latent))
    if ablations:
        # Which LELP ingredient matters, at S=4 beta=1 tau=1.
        for key, extra, method in [
            ("no null space", {"null_space": False}, "lelp"),
            ("no rotation (pca)", {}, "pca"),
            ("no standardisation", {"standardize": False}, "lelp"),
            ("random directions", {}, "random"),
        ]:
            out.append(
                Setting(f"ablation S=4: {key}", "ablation", "lelp", 1.0, method, 4, 1.0, extra)
            )
    return out


# --------------------------------------------------------------------------- running


def _std(xs: list[float]) -> float:
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


def run_setting(
    prep: Any,
    base: RunConfig,
    st: Setting,
    seeds: list[int],
    latent: str | None,
    fits: dict[str, Any],
    log: Any,
) -> dict[str, Any]:
    """Train ``st`` once per seed; return the aggregated row (mean/std and per-seed values)."""
    from core.pipeline import subclass_targets, train_student

    spec = st.subclass_spec(latent)
    cfg = base.model_copy(
        update={
            "subclasses": spec,
            "train": base.train.model_copy(update={"objective": st.objective, "tau": st.tau}),
        }
    )
    sub = None
    recovery: dict[str, Any] = {}
    if st.objective == "lelp":
        # The fit depends on the method, S and the projection switches, not on tau or beta.
        fit_key = json.dumps(spec.model_dump(exclude={"beta"}), sort_keys=True, default=str)
        if fit_key not in fits:
            t = time.perf_counter()
            _, _, rec, fitted = subclass_targets(prep, spec, st.tau)
            fits[fit_key] = (fitted, rec, time.perf_counter() - t)
        sub, recovery, _ = fits[fit_key]
    accs, agrees, train_s = [], [], []
    for seed in seeds:
        c = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
        run = train_student(prep, c, sub=sub)
        accs.append(float(run.scores["accuracy"]))
        agrees.append(float(run.scores["agreement"]))
        train_s.append(float(run.wall_s))
    rec = recovery.get(latent, {}) if latent else {}
    row = {
        "setting": st.key,
        "family": st.family,
        "objective": st.objective,
        "tau": st.tau,
        "method": st.method,
        "n_subclasses": st.n_subclasses,
        "beta": st.beta if st.family in ("lelp", "ablation") else None,
        "options": st.extra,
        "seeds": list(seeds),
        "accuracy": accs,
        "agreement": agrees,
        "acc_mean": float(np.mean(accs)),
        "acc_std": _std(accs),
        "agree_mean": float(np.mean(agrees)),
        "agree_std": _std(agrees),
        "ari": rec.get("ari"),
        "nmi": rec.get("nmi"),
        "run_s_mean": float(np.mean(train_s)),
    }
    log(
        f"  {st.key:<34} acc {row['acc_mean']:6.2f} ± {row['acc_std']:4.2f}  "
        f"agree {row['agree_mean']:6.2f}"
        + (f"  ARI {row['ari']:.3f}" if row["ari"] is not None else "")
        + f"  ({row['run_s_mean']:.1f} s/run)"
    )
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Best KD vs best LELP-grid setting by mean accuracy, and whether LELP clears the margin."""
    kd = [r for r in rows if r["family"] == "kd"]
    lelp = [r for r in rows if r["family"] == "lelp"]
    hard = [r for r in rows if r["family"] == "hard"]
    if not kd or not lelp:
        return {}
    bk = max(kd, key=lambda r: r["acc_mean"])
    bl = max(lelp, key=lambda r: r["acc_mean"])
    diff = bl["acc_mean"] - bk["acc_mean"]
    return {
        "hard": hard[0]["acc_mean"] if hard else None,
        "best_kd": bk["setting"],
        "best_kd_acc": bk["acc_mean"],
        "best_kd_std": bk["acc_std"],
        "best_lelp": bl["setting"],
        "best_lelp_acc": bl["acc_mean"],
        "best_lelp_std": bl["acc_std"],
        "best_lelp_seeds": len(bl["seeds"]),
        "diff": diff,
        "margin": MARGIN,
        "clears_margin": bool(diff >= MARGIN),
    }


def base_config(bd: BenchData, teacher: str, device: str) -> RunConfig:
    """The reference recipe of ../shared/LELP.md for ``bd`` (digits: the MLP demo)."""
    ds = DatasetSpec(source=bd.source, max_train=bd.max_train)
    if not bd.text:
        t = TeacherSpec(kind="digits-mlp")
        s = StudentSpec(kind="mlp", hidden=32)
    else:
        mode = "finetune" if teacher == "finetune" else "frozen"
        t = TeacherSpec(
            kind="minilm", mode=mode, max_length=bd.max_length, epochs=3, lr=5e-5, batch_size=64
        )
        s = StudentSpec(kind="bag", embed_dim=64, hidden=64, layers=2, max_length=bd.max_length)
    tr = TrainSpec(epochs=bd.epochs, lr=3e-3, batch_size=128, alpha=0.0, device=device)
    return RunConfig(name=f"bench-{bd.name}", dataset=ds, teacher=t, student=s, train=tr)


def available(bd: BenchData) -> str | None:
    """None when the dataset can be loaded here, else why it is skipped."""
    if not bd.shared:
        return None
    from core.data import shared_data_root

    root = shared_data_root()
    name = bd.source.split(":", 1)[1]
    if root is None or not (Path(root) / name / "train.csv").is_file():
        return f"not found under the shared data folder ({root})"
    return None


def bench_dataset(bd: BenchData, args: argparse.Namespace, ws: Any, log: Any) -> dict[str, Any]:
    """Teacher once, then every setting; returns the dataset's JSON entry."""
    from core import metrics as M
    from core.pipeline import prepare

    t0 = time.perf_counter()
    base = base_config(bd, args.teacher, args.device)
    if args.quick:  # the test's budget: fewer epochs, same recipe otherwise
        base = base.model_copy(update={"train": base.train.model_copy(update={"epochs": 8})})
    prep = prepare(base, ws)
    out, ev = prep.out, prep.eval_split
    y_ev = prep.dataset.splits[ev].y
    teacher = {
        "kind": base.teacher.kind,
        "mode": base.teacher.mode if bd.text else None,
        "accuracy": M.accuracy(np.asarray(out.Z[ev]), y_ev),
        "train_accuracy": M.accuracy(np.asarray(out.Z["train"]), prep.dataset.splits["train"].y),
        "cache_hit": prep.cache_hit,
        "compute_s": out.meta.get("seconds"),
        "head_C": out.meta.get("head_C"),
    }
    latent = bd.latent if bd.latent in prep.dataset.latent_columns else None
    log(
        f"{bd.name}: train {len(prep.dataset.splits['train'])}, {ev} {len(y_ev)}, teacher "
        f"{teacher['accuracy']:.2f} ({prep.timings})"
    )
    settings = make_settings(args.quick, latent_sizes(prep, latent), args.ablations)
    seeds = list(range(args.seeds))
    grid_seeds = seeds[: args.grid_seeds] if args.grid_seeds else seeds
    fits: dict[str, Any] = {}
    rows = []
    t_students = time.perf_counter()
    for st in settings:
        use = grid_seeds if st.family in ("lelp", "ablation") else seeds
        rows.append(run_setting(prep, base, st, use, latent, fits, log))
    # Headline rows keep every seed: top up the best LELP setting if the grid used fewer,
    # until the best one (which may change after a top-up) has them all.
    while True:
        best = max((r for r in rows if r["family"] == "lelp"), key=lambda r: r["acc_mean"])
        if len(best["seeds"]) >= len(seeds):
            break
        st = next(s for s in settings if s.key == best["setting"])
        rows[rows.index(best)] = run_setting(prep, base, st, seeds, latent, fits, log)
    students_s = time.perf_counter() - t_students
    summary = summarize(rows)
    if summary:
        log(
            f"  best LELP {summary['best_lelp']} {summary['best_lelp_acc']:.2f} vs best KD "
            f"{summary['best_kd']} {summary['best_kd_acc']:.2f}: {summary['diff']:+.2f}"
        )
    return {
        "source": bd.source,
        "notes": bd.notes,
        "n_train": len(prep.dataset.splits["train"]),
        "eval_split": ev,
        "n_eval": len(y_ev),
        "n_classes": prep.dataset.n_classes,
        "latent_col": latent,
        "latent_sizes": latent_sizes(prep, latent),
        "config": base.model_dump(mode="json"),
        "teacher": teacher,
        "seeds": seeds,
        "grid_seeds": grid_seeds,
        "rows": rows,
        "summary": summary,
        "timings": {
            **prep.timings,
            "students_s": students_s,
            "subclass_fits_s": sum(f[2] for f in fits.values()),
            "runs": sum(len(r["seeds"]) for r in rows),
            "wall_s": time.perf_counter() - t0,
        },
    }


# --------------------------------------------------------------------------- report


def _f(x: float | None, nd: int = 2) -> str:
    return "" if x is None else f"{x:.{nd}f}"


def render_md(res: dict[str, Any]) -> str:
    """The committed table: one block per dataset plus the LELP-vs-KD line."""
    m = res["machine"]
    lines = [
        "# Quality benchmark",
        "",
        f"Generated by `bench/quality.py` on {res['date']} ({res['wall_s'] / 60:.1f} min wall). "
        f"Machine: {m['cpu']} ({m['cpu_count']} cores, torch {m['torch']}, "
        f"{m['torch_threads']} torch thread(s)){', GPU ' + m['gpu'] if m['gpu'] else ''}. "
        f"Teacher: MiniLM-L6 {res['teacher']} (digits: MLP). Student: the LELP.md reference "
        "(mean of 64-d token embeddings, 64-64 MLP, Adam 3e-3, batch 128, alpha 0). "
        "Test accuracy and teacher agreement in %, mean ± std over seeds; ARI/NMI of the "
        "pseudo-subclasses vs the latent column on train. Best settings are picked on the "
        "evaluation split itself (as in LELP.md's reference run), which favours the 18-setting "
        "LELP grid over the 2-setting KD grid.",
        "",
    ]
    reduced = [n for n, d in res["datasets"].items() if len(d["grid_seeds"]) < len(d["seeds"])]
    if reduced:
        lines += [
            f"To fit the CPU time budget, on {', '.join(reduced)} the LELP grid (and ablation) "
            "rows use fewer seeds (see the seeds column); hard labels, KD, k-means, oracle and "
            "the best LELP setting (topped up after the grid) use all seeds.",
            "",
        ]
    for name, d in res["datasets"].items():
        t = d["teacher"]
        s = d["summary"]
        lines += [
            f"## {name}",
            "",
            f"train {d['n_train']}, {d['eval_split']} {d['n_eval']}, {d['n_classes']} classes; "
            f"latent: {d['latent_col'] or 'none'}; seeds {len(d['seeds'])} "
            f"(LELP grid: {len(d['grid_seeds'])}); teacher {t['accuracy']:.2f} "
            f"(train {t['train_accuracy']:.2f}; computed in {_f(t['compute_s'], 0)} s, "
            f"{'cached' if t['cache_hit'] else 'not cached'} at this run); "
            f"{d['timings']['runs']} student runs in "
            f"{d['timings']['students_s'] / 60:.1f} min, dataset total "
            f"{d['timings']['wall_s'] / 60:.1f} min."
            + (f" Note: {d['notes']}." if d["notes"] else ""),
            "",
        ]
        if s:
            verdict = "clears" if s["clears_margin"] else "does not clear"
            lines += [
                f"**Best LELP ({s['best_lelp']}) {s['best_lelp_acc']:.2f} vs best KD "
                f"({s['best_kd']}) {s['best_kd_acc']:.2f}: {s['diff']:+.2f} points, "
                f"{verdict} +{s['margin']}.** Hard labels {_f(s['hard'])}.",
                "",
            ]
        lines += [
            "| setting | accuracy | agreement | ARI | NMI | seeds |",
            "|---|---|---|---|---|---|",
        ]
        for r in d["rows"]:
            lines.append(
                f"| {r['setting']} | {r['acc_mean']:.2f} ± {r['acc_std']:.2f} | "
                f"{r['agree_mean']:.2f} ± {r['agree_std']:.2f} | {_f(r['ari'], 3)} | "
                f"{_f(r['nmi'], 3)} | {len(r['seeds'])} |"
            )
        lines.append("")
    if "amazon_multidomain" in res["datasets"] and not res.get("quick"):
        lines += [
            "See `quality_diagnosis.md` for why LELP does or does not clear the +0.8 bar on "
            "amazon_multidomain with this teacher.",
            "",
        ]
    for name, why in res.get("skipped", {}).items():
        lines.append(f"- {name}: skipped, {why}")
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--datasets",
        default=",".join(DATASETS),
        help=f"comma-separated subset of {','.join(DATASETS)} (absent shared ones are skipped)",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per setting (default 3)")
    p.add_argument(
        "--grid-seeds",
        type=int,
        default=0,
        help="seeds for the LELP grid only (0 = --seeds); the best LELP setting is topped up",
    )
    p.add_argument("--quick", action="store_true", help="digits only, 1 seed, small grid")
    p.add_argument("--teacher", choices=("frozen", "finetune"), default="frozen")
    p.add_argument("--ablations", action="store_true", help="add LELP ablation rows")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the students are tiny, and more threads on a "
        "shared machine make each step much slower)",
    )
    p.add_argument("--workspace", default=None, help="workspace for teacher outputs")
    p.add_argument("--out", default=str(REPO / "bench" / "results"), help="output folder")
    p.add_argument("--name", default="quality", help="file stem of the outputs")
    p.add_argument(
        "--append",
        action="store_true",
        help="keep the other datasets of an existing <out>/<name>.json (re-run some datasets)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.datasets, args.seeds = "digits-bin", 1
    unknown = [d for d in args.datasets.split(",") if d not in DATASETS]
    if unknown:
        p.error(f"unknown datasets {unknown}; choose from {list(DATASETS)}")
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    from core.store import Workspace

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ws = Workspace(args.workspace)

    def log(msg: str) -> None:
        print(msg, flush=True)

    t0 = time.perf_counter()
    res: dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(args.threads),
        "teacher": args.teacher,
        "args": vars(args),
        "quick": args.quick,
        "datasets": {},
        "skipped": {},
        "wall_s": 0.0,
    }
    prev = out_dir / (args.name + ".json")
    if args.append and prev.is_file():
        old = json.loads(prev.read_text(encoding="utf-8"))
        res["datasets"] = {k: v for k, v in old.get("datasets", {}).items()}
    for name in args.datasets.split(","):
        bd = DATASETS[name]
        why = available(bd)
        if why:
            log(f"{name}: skipped, {why}")
            res["skipped"][name] = why
            continue
        res["datasets"][name] = bench_dataset(bd, args, ws, log)
        res["wall_s"] = _total_wall(res)
        write(res, out_dir, args.name)  # after each dataset, so a long run leaves results
    res["wall_s"] = _total_wall(res)
    write(res, out_dir, args.name)
    log(
        f"wrote {out_dir / (args.name + '.json')} and .md "
        f"in {(time.perf_counter() - t0) / 60:.1f} min"
    )
    return res


def _total_wall(res: dict[str, Any]) -> float:
    """Benchmark wall time: the sum over datasets (also when some came from --append)."""
    return float(sum(d["timings"]["wall_s"] for d in res["datasets"].values()))


def write(res: dict[str, Any], out_dir: Path, stem: str) -> None:
    """JSON and Markdown, each written atomically."""
    for suffix, text in (
        (".json", json.dumps(res, indent=1, default=str)),
        (".md", render_md(res)),
    ):
        path = out_dir / (stem + suffix)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
