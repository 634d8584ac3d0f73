"""Quality benchmark (issue 3 item 9): hard labels vs KD vs LELP vs k-means/oracle subclasses.

For each dataset the teacher outputs and the student inputs are made once
(``lelp_studio.pipeline.prepare``), each subclass fit is made once per S, and then every student of
the grid is trained on them (``pipeline.train_student``) for several seeds. Results go to
``<out>/quality.json`` (every row, the machine, the wall times) and ``<out>/quality.md`` (a
table per dataset and the best LELP vs best KD line the acceptance criterion asks for).

Protocol (issue 13): every "best" row is the arg-max of mean accuracy on the selection split
(``data.SELECT``); its test accuracy is reported and never chooses. KD and LELP get grids
of the same size and are reported both at their default and as best of N.

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

from lelp_studio.config import (  # noqa: E402
    DatasetSpec,
    RunConfig,
    StudentSpec,
    SubclassSpec,
    TeacherSpec,
    TrainSpec,
)
from lelp_studio.data import SELECT  # noqa: E402

#: LELP must beat KD by this many accuracy points on amazon_multidomain (issue 3).
MARGIN = 0.8
GRID_S = (2, 4, 8)
GRID_BETA = (0.5, 1.0, 2.0)
GRID_TAU = (1.0, 4.0)
#: KD's grid has as many points as LELP's (18), so neither wins by being tuned more (issue 13).
KD_TAUS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
KD_ALPHAS = (0.0, 0.25, 0.5)
#: ``--quick``'s grids: equal N (2 and 2) at the test's budget.
QUICK_KD_TAUS = (1.0, 4.0)
QUICK_GRID_S = (2, 4)
#: Each method's default (examples/digits-kd.yaml's KD; LELP's S=4 beta=1 tau=1), reported
#: beside its best of N so an untuned comparison (N = 1 each) is there too.
KD_DEFAULT: dict[str, float] = {"tau": 4.0, "alpha": 0.0}
DEFAULT_LELP: dict[str, Any] = {"n_subclasses": 4, "beta": 1.0, "tau": 1.0}
#: Written at the top of every JSON this script makes: how its best rows were chosen.
PROTOCOL = "selection-picked (issue 13)"


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
    # The AMAD table's quick run (a test): the built-in demo, no shared data needed.
    "text-demo": BenchData("text-demo", "text-demo", epochs=2, latent="topic", shared=False),
}
#: The quality table's datasets (text-demo is only the AMAD table's smoke test).
QUALITY_DATASETS = tuple(k for k in DATASETS if k != "text-demo")


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
    #: Further ``TrainSpec`` overrides, nested for the method sections (``{"sea": {...}}``).
    train: dict[str, Any] = field(default_factory=dict)
    #: The row's name in the methods/DWT tables (``key`` when None).
    label: str | None = None
    #: Settings tried on the selection split to pick this row (1: a default, no tuning).
    n_tried: int = 1

    def train_spec(self, base: TrainSpec) -> TrainSpec:
        """``base`` with this setting's objective, tau and overrides (validated again)."""
        upd = _merge(base.model_dump(), {"objective": self.objective, "tau": self.tau})
        return TrainSpec.model_validate(_merge(upd, self.train))

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


def kd_key(tau: float, alpha: float) -> str:
    """A KD row's key; the grid, the defaults and the methods table share it."""
    return f"kd tau={tau:g} alpha={alpha:g}"


def lelp_key(n_subclasses: Any, beta: float, tau: float) -> str:
    """A LELP row's key; the grid, the defaults and the methods table share it."""
    return f"lelp S={n_subclasses} beta={beta:g} tau={tau:g}"


def kd_setting(tau: float, alpha: float, **kw: Any) -> Setting:
    """KD at ``tau`` with ``alpha`` times the hard-label loss added."""
    return Setting(kd_key(tau, alpha), "kd", "kd", tau, train={"alpha": alpha}, **kw)


def lelp_setting(n_subclasses: Any, beta: float, tau: float, **kw: Any) -> Setting:
    """LELP targets from ``n_subclasses`` directions per class at ``beta``, trained at ``tau``."""
    key = lelp_key(n_subclasses, beta, tau)
    return Setting(key, "lelp", "lelp", tau, "lelp", n_subclasses, beta, **kw)


def is_default(r: dict[str, Any]) -> bool:
    """Whether a KD or LELP row is that method's default (KD_DEFAULT, DEFAULT_LELP)."""
    if r["family"] == "kd":
        return (r["tau"], r.get("alpha", 0.0)) == (KD_DEFAULT["tau"], KD_DEFAULT["alpha"])
    if r["family"] == "lelp":
        d = DEFAULT_LELP
        return (r.get("n_subclasses"), r.get("beta"), r["tau"]) == (
            d["n_subclasses"],
            d["beta"],
            d["tau"],
        )
    return False


def best_row(rows: list[dict[str, Any]], family: str) -> dict[str, Any] | None:
    """The ``family`` row with the highest mean selection-split accuracy (first on ties).

    Why: a pick made on test makes the test score optimistic (issue 13); test never chooses.
    """
    cands = [r for r in rows if r["family"] == family]
    return max(cands, key=lambda r: r["sel_mean"]) if cands else None


def default_row(rows: list[dict[str, Any]], family: str) -> dict[str, Any] | None:
    """The ``family`` row at the method's default setting, if it ran."""
    return next((r for r in rows if r["family"] == family and is_default(r)), None)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``, recursing into sub-dicts (the TrainSpec sections)."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


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
    """hard, the KD grid, the LELP grid (as many points as KD's), k-means and oracle (and
    optional LELP ablations)."""
    grid_s, grid_b, grid_t = (
        (QUICK_GRID_S, (1.0,), (1.0,)) if quick else (GRID_S, GRID_BETA, GRID_TAU)
    )
    kd_t, kd_a = (QUICK_KD_TAUS, (0.0,)) if quick else (KD_TAUS, KD_ALPHAS)
    out = [Setting("hard", "hard", "hard")]
    out += [kd_setting(t, a) for t, a in itertools.product(kd_t, kd_a)]
    out += [lelp_setting(s, b, t) for s, b, t in itertools.product(grid_s, grid_b, grid_t)]
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


#: What each run records, per seed: row key -> (scores dict: test/select/train/"" = wall,
#: score name). ``sel`` (selection-split accuracy) is what every pick uses.
PER_SEED: dict[str, tuple[str, str]] = {
    "sel": ("select", "accuracy"),
    "sel_agree": ("select", "agreement"),
    "accuracy": ("test", "accuracy"),
    "agreement": ("test", "agreement"),
    "kl": ("test", "kl"),
    "ece": ("test", "ece"),
    "train_agree": ("train", "agreement"),
    "train_kl": ("train", "kl"),
    "run_s": ("", ""),
}
#: Per-seed keys whose mean/std already have historical names (acc_mean, agree_mean, ...).
MEAN_DONE = ("accuracy", "agreement")


def _fold(records: list[dict[str, Any]]) -> dict[str, float]:
    """One setting's seeds folded by ``lelp_studio.sweeps.aggregate`` (selection and test mean and
    std); a single seed has std 0 here, as the tables always showed."""
    from lelp_studio.sweeps import aggregate

    row = aggregate(records, settings=[]).iloc[0]
    keys = ("sel_mean", "sel_std", "test_mean", "test_std", "agreement_mean")
    return {k: 0.0 if np.isnan(row[k]) else float(row[k]) for k in keys}


def _mean_info(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """Numeric ``method_info`` entries as ``{key: {"mean", "std", "values"}}`` over seeds."""
    out: dict[str, Any] = {}
    for k in infos[0] if infos else {}:
        vals = [i.get(k) for i in infos]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            xs = [float(v) for v in vals]  # type: ignore[arg-type]
            out[k] = {"mean": float(np.mean(xs)), "std": _std(xs), "values": xs}
        else:
            out[k] = {"values": vals}
    return out


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
    from lelp_studio.pipeline import subclass_targets, train_student

    spec = st.subclass_spec(latent)
    cfg = base.model_copy(update={"subclasses": spec, "train": st.train_spec(base.train)})
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
    per: dict[str, list[float]] = {k: [] for k in PER_SEED}
    infos: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for seed in seeds:
        c = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
        run = train_student(prep, c, sub=sub)
        scores = {"test": run.scores, "select": run.select_scores, "train": run.train_scores}
        records.append(
            {
                "run_id": f"{st.key} seed {seed}",
                "config": c.model_dump(mode="json"),
                "metrics": {"student": run.scores, "student_select": run.select_scores},
            }
        )
        for key, (where, name) in PER_SEED.items():
            per[key].append(float(scores[where][name]) if where else float(run.wall_s))
        infos.append(run.method_info)
    accs, agrees, train_s = per["accuracy"], per["agreement"], per["run_s"]
    folded = _fold(records)  # the same aggregation as `lelp runs` and Compare's sweep view
    rec = recovery.get(latent, {}) if latent else {}
    row = {
        "setting": st.key,
        "family": st.family,
        "objective": st.objective,
        "tau": st.tau,
        "alpha": float(cfg.train.alpha),
        "method": st.method,
        "n_subclasses": st.n_subclasses,
        "beta": st.beta if st.family in ("lelp", "ablation") else None,
        "options": st.extra,
        "seeds": list(seeds),
        "accuracy": accs,
        "agreement": agrees,
        "acc_mean": folded["test_mean"],
        "acc_std": folded["test_std"],
        "agree_mean": folded["agreement_mean"],
        "agree_std": _std(agrees),
        "ari": rec.get("ari"),
        "nmi": rec.get("nmi"),
        "run_s_mean": float(np.mean(train_s)),
        **{f"{k}_values": v for k, v in per.items() if k not in ("accuracy", "agreement")},
        **{f"{k}_mean": float(np.mean(per[k])) for k in PER_SEED if k not in MEAN_DONE},
        **{f"{k}_std": _std(per[k]) for k in PER_SEED if k not in MEAN_DONE},
        "sel_mean": folded["sel_mean"],
        "sel_std": folded["sel_std"],
        "label": st.label or st.key,
        "n_tried": st.n_tried,
        "train_overrides": st.train,
        "method_info": _mean_info(infos),
    }
    log(
        f"  {st.key:<34} sel {row['sel_mean']:6.2f}  acc {row['acc_mean']:6.2f} ± "
        f"{row['acc_std']:4.2f}  "
        f"agree {row['agree_mean']:6.2f}"
        + (f"  ARI {row['ari']:.3f}" if row["ari"] is not None else "")
        + f"  ({row['run_s_mean']:.1f} s/run)"
    )
    return row


def _beyond_std(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two rows' mean accuracies differ by more than the larger of their stds."""
    return abs(a["acc_mean"] - b["acc_mean"]) > max(a["acc_std"], b["acc_std"])


def lelp_vs_kd(lelp: dict[str, Any], kd: dict[str, Any]) -> str:
    """How best LELP compares with best KD on test, in plain words (issue 13: say it)."""
    diff = lelp["acc_mean"] - kd["acc_mean"]
    if diff > 0:
        return "beyond one std" if _beyond_std(lelp, kd) else "within noise"
    return "not at all"


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each method at its default and as best of N on the selection split; then best LELP
    against best KD on test (the pick never looked at test)."""
    bk, bl = best_row(rows, "kd"), best_row(rows, "lelp")
    if bk is None or bl is None:
        return {}
    hard = next((r for r in rows if r["family"] == "hard"), None)
    dk, dl = default_row(rows, "kd"), default_row(rows, "lelp")
    diff = bl["acc_mean"] - bk["acc_mean"]
    out: dict[str, Any] = {
        "picked_on": SELECT,
        "hard": hard["acc_mean"] if hard else None,
        "hard_std": hard["acc_std"] if hard else None,
        "hard_sel": hard["sel_mean"] if hard else None,
    }
    for name, r in (("kd_default", dk), ("lelp_default", dl), ("best_kd", bk), ("best_lelp", bl)):
        out |= {
            name: None if r is None else r["setting"],
            f"{name}_acc": None if r is None else r["acc_mean"],
            f"{name}_std": None if r is None else r["acc_std"],
            f"{name}_sel": None if r is None else r["sel_mean"],
            f"{name}_sel_std": None if r is None else r["sel_std"],
        }
    n_kd = sum(r["family"] == "kd" for r in rows)
    n_lelp = sum(r["family"] == "lelp" for r in rows)
    return out | {
        "n_kd": n_kd,
        "n_lelp": n_lelp,
        "best_lelp_seeds": len(bl["seeds"]),
        "diff": diff,
        "beyond_std": _beyond_std(bl, bk),
        "lelp_vs_kd": lelp_vs_kd(bl, bk),
        "margin": MARGIN,
        "clears_margin": bool(diff >= MARGIN),
    }


def distill_gap(teacher_sel: float, hard: dict[str, Any] | None) -> dict[str, Any]:
    """Teacher minus hard-label student on the selection split, and whether distillation can
    pay: not when the teacher is within ~1 point or within the seeds' spread (issue 13)."""
    if hard is None:
        return {}
    from lelp_studio.headroom import verdict

    v = verdict(teacher_sel, hard.get("sel_values") or [hard["sel_mean"]])  # the app's rule
    return {
        "split": SELECT,
        "teacher_sel": teacher_sel,
        "hard_sel": hard["sel_mean"],
        "hard_sel_std": hard["sel_std"],
        "hard_sel_spread": v["hard_spread"],
        "gap": v["gap"],
        "pays": v["pays"],
    }


def base_config(bd: BenchData, teacher: str, device: str, precision: str = "auto") -> RunConfig:
    """The reference recipe of ../shared/LELP.md for ``bd`` (digits: the MLP demo);
    ``precision`` is the text teacher's (``teacher.precision``)."""
    ds = DatasetSpec(source=bd.source, max_train=bd.max_train)
    if not bd.text:
        t = TeacherSpec(kind="digits-mlp")
        s = StudentSpec(kind="mlp", hidden=32)
    else:
        mode = "finetune" if teacher == "finetune" else "frozen"
        t = TeacherSpec(
            kind="minilm", mode=mode, max_length=bd.max_length, epochs=3, lr=5e-5, batch_size=64,
            precision=precision,
        )  # fmt: skip
        s = StudentSpec(kind="bag", embed_dim=64, hidden=64, layers=2, max_length=bd.max_length)
    tr = TrainSpec(epochs=bd.epochs, lr=3e-3, batch_size=128, alpha=0.0, device=device)
    return RunConfig(name=f"bench-{bd.name}", dataset=ds, teacher=t, student=s, train=tr)


def available(bd: BenchData) -> str | None:
    """None when the dataset can be loaded here, else why it is skipped."""
    if not bd.shared:
        return None
    from lelp_studio.data import shared_data_root

    root = shared_data_root()
    name = bd.source.split(":", 1)[1]
    if root is None or not (Path(root) / name / "train.csv").is_file():
        return f"not found under the shared data folder ({root})"
    return None


def bench_dataset(bd: BenchData, args: argparse.Namespace, ws: Any, log: Any) -> dict[str, Any]:
    """Teacher once, then every setting; returns the dataset's JSON entry."""
    from lelp_studio.pipeline import selection_info

    t0 = time.perf_counter()
    base = base_config(bd, args.teacher, args.device, args.precision)
    if args.quick:  # the test's budget: fewer epochs, same recipe otherwise
        base = base.model_copy(update={"train": base.train.model_copy(update={"epochs": 8})})
    prep, teacher = _prepare(base, ws, bd)
    ev = prep.eval_split
    y_ev = prep.dataset.splits[ev].y
    selection = selection_info(prep.dataset)
    latent = bd.latent if bd.latent in prep.dataset.latent_columns else None
    log(
        f"{bd.name}: train {len(prep.dataset.splits['train'])}, {ev} {len(y_ev)}, "
        f"{SELECT} {selection['n']} ({selection['source']}), teacher {teacher['accuracy']:.2f} "
        f"({SELECT} {teacher['select_accuracy']:.2f}) ({prep.timings})"
    )
    settings = make_settings(args.quick, latent_sizes(prep, latent), args.ablations)
    by_key = {st.key: st for st in settings}
    seeds = list(range(args.seeds))
    grid_seeds = seeds[: args.grid_seeds] if args.grid_seeds else seeds
    fits: dict[str, Any] = {}
    rows = []
    t_students = time.perf_counter()
    for st in settings:
        use = grid_seeds if st.family in ("kd", "lelp", "ablation") else seeds
        rows.append(run_setting(prep, base, st, use, latent, fits, log))
    # Headline rows keep every seed: top up each method's default and its best grid setting
    # (picked on the selection split) if the grid used fewer, until the best one (which may
    # change after a top-up) has them all.
    for fam in ("kd", "lelp"):
        for pick in (best_row, default_row):
            while (r := pick(rows, fam)) is not None and len(r["seeds"]) < len(seeds):
                st = by_key[r["setting"]]
                rows[rows.index(r)] = run_setting(prep, base, st, seeds, latent, fits, log)
    students_s = time.perf_counter() - t_students
    summary = summarize(rows)
    gap = distill_gap(teacher["select_accuracy"], next(r for r in rows if r["family"] == "hard"))
    if summary:
        log(
            f"  best LELP {summary['best_lelp']} {summary['best_lelp_acc']:.2f} vs best KD "
            f"{summary['best_kd']} {summary['best_kd_acc']:.2f}: {summary['diff']:+.2f} "
            f"({summary['lelp_vs_kd']}); teacher - hard on {SELECT}: {gap['gap']:+.2f}"
        )
    return {
        "source": bd.source,
        "notes": bd.notes,
        "n_train": len(prep.dataset.splits["train"]),
        "eval_split": ev,
        "n_eval": len(y_ev),
        "selection": selection,
        "n_classes": prep.dataset.n_classes,
        "latent_col": latent,
        "latent_sizes": latent_sizes(prep, latent),
        "config": base.model_dump(mode="json"),
        "teacher": teacher,
        "seeds": seeds,
        "grid_seeds": grid_seeds,
        "rows": rows,
        "summary": summary,
        "distill_gap": gap,
        "timings": {
            **prep.timings,
            "students_s": students_s,
            "subclass_fits_s": sum(f[2] for f in fits.values()),
            "runs": sum(len(r["seeds"]) for r in rows),
            "wall_s": time.perf_counter() - t0,
        },
    }


# --------------------------------------------------------------------------- methods table

#: Datasets of the methods table (issue 6); sentiment140 has no latent column for the oracle.
METHOD_DATASETS = ("digits-bin", "amazon_multidomain", "sst2", "trec")
#: CompRess anchor queue on CPU text runs: the default min(128000, n) keeps the whole
#: training set and makes every step a (batch x n) similarity; 4096 is the author's CPU choice.
CPU_QUEUE = 4096


def best_setting(quality: dict[str, Any] | None, name: str, family: str) -> dict[str, Any]:
    """The best ``family`` (kd or lelp) setting of ``name`` in a quality.json result, picked
    there on the selection split, with its scores and N; else the method's default, with
    ``source`` saying why. A quality.json from before issue 13 picked on test: not used."""
    params = ("tau", "alpha") if family == "kd" else ("n_subclasses", "beta", "tau")
    default = KD_DEFAULT if family == "kd" else DEFAULT_LELP
    d = (quality or {}).get("datasets", {}).get(name)
    summary = (d or {}).get("summary", {})
    best = summary.get(f"best_{family}")
    row = next((r for r in (d or {}).get("rows", []) if r["setting"] == best), None)
    if quality is not None and quality.get("protocol") != PROTOCOL:
        why = "quality.json predates issue 13: its best rows were picked on test"
    elif row is None:
        why = "no quality.json" if quality is None else f"no {family} row for {name} in it"
    else:
        return {k: row.get(k, 0.0) for k in params} | {
            "source": f"quality.json, best of {summary[f'n_{family}']} on {SELECT}: {best}",
            "n_tried": summary[f"n_{family}"],
            "quality_acc": row["acc_mean"],
            "quality_std": row["acc_std"],
            "quality_sel": row["sel_mean"],
            "quality_seeds": row["seeds"],
        }
    return dict(default) | {"source": f"default ({why})", "n_tried": 1, "quality_acc": None}


def best_lelp_setting(quality: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """``best_setting(quality, name, "lelp")``: the LELP row the methods/AMAD tables re-run."""
    return best_setting(quality, name, "lelp")


def kd_lelp_rows(kd: dict[str, Any], lelp: dict[str, Any]) -> tuple[list[Setting], list[Setting]]:
    """KD and LELP rows for the methods/AMAD tables: each at its default (N = 1, like every
    other method there) and at its best of N from quality.json, when that differs."""

    def kd_row(p: dict[str, Any], n: int, what: str) -> Setting:
        lab = f"KD (tau={p['tau']:g}, alpha={p['alpha']:g}; {what})"
        return kd_setting(p["tau"], p["alpha"], label=lab, n_tried=n)

    def lelp_row(p: dict[str, Any], n: int, what: str) -> Setting:
        S, b, t = p["n_subclasses"], p["beta"], p["tau"]
        return lelp_setting(
            S, b, t, label=f"LELP (S={S}, beta={b:g}, tau={t:g}; {what})", n_tried=n
        )

    out: tuple[list[Setting], list[Setting]] = ([], [])
    for rows, p, default, make in (
        (out[0], kd, KD_DEFAULT, kd_row),
        (out[1], lelp, DEFAULT_LELP, lelp_row),
    ):
        n = int(p.get("n_tried", 1))
        same = all(p[k] == v for k, v in default.items())
        if same:
            rows.append(
                make(p, n, "default" + (f", also best of {n} on {SELECT}" if n > 1 else ""))
            )
        else:
            rows.append(make(default, 1, "default"))
            rows.append(make(p, n, f"best of {n} on {SELECT}"))
    return out


def method_settings(
    quick: bool,
    sizes_latent: list[int] | None,
    lelp: dict[str, Any],
    cpu_text: bool,
    kd: dict[str, Any] | None = None,
) -> list[Setting]:
    """The rows of the methods table, with the author's recommended overrides (README); KD
    and LELP at their default and at their best of N on the selection split (quality.json)."""
    queue = {"queue_size": CPU_QUEUE} if cpu_text else {}
    km = sizes_latent if sizes_latent is not None else 4
    kd_rows, lelp_rows = kd_lelp_rows(kd or dict(KD_DEFAULT), lelp)
    rows = [
        Setting("hard", "hard", "hard", label="hard labels"),
        *kd_rows,
        Setting("fitnet+kd", "fitnet", "fitnet", 4.0, label="FitNet + KD (tau=4)"),
        Setting(
            "fitnet alone",
            "fitnet",
            "fitnet",
            train={"alpha": 1.0, "fitnet": {"kd_weight": 0.0}},
            label="FitNet alone (+ hard labels)",
        ),
        Setting("sea", "sea", "sea", 4.0, label="SEA (random sample, tau=4)"),
        Setting(
            "sea diverse",
            "sea",
            "sea",
            4.0,
            train={"sea": {"sampling": "diverse"}},
            label="SEA (diverse sample, tau=4)",
        ),
        Setting(
            "compress two",
            "compress",
            "compress",
            4.0,
            train={"compress": dict(queue)},
            label="CompRess (two queues, tau=4)",
        ),
        Setting(
            "compress one",
            "compress",
            "compress",
            4.0,
            train={"compress": {"queues": "one", **queue}},
            label="CompRess (one queue, tau=4)",
        ),
        Setting("reaugkd", "reaugkd", "reaugkd", 4.0, label="ReAugKD (tau=4)"),
        Setting(
            "subclass-distill",
            "subclass-distill",
            "subclass-distill",
            label="Subclass Distillation (S=4)",
        ),
        *lelp_rows,
        Setting("kmeans", "kmeans", "lelp", 1.0, "kmeans", km, label="LELP, k-means subclasses"),
    ]
    if sizes_latent is not None:
        rows.append(
            Setting(
                "oracle", "oracle", "lelp", 1.0, "oracle", sizes_latent, label="oracle subclasses"
            )
        )
    rows.append(
        Setting("disk", "disk", "disk", 4.0, train={"alpha": 1.0}, label="Scaffolding (DiSK)")
    )
    if quick:  # the test's budget: one of each kind of machinery
        keep = {"hard", "fitnet+kd", "reaugkd", "subclass-distill", "oracle", "disk"}
        rows = [r for r in rows if r.key in keep or r.family in ("kd", "lelp")]
    return rows


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the table shows and ranks: KD and LELP each collapsed to their default and
    their best on the selection split (a full grid, as in quality.json, is not repeated)."""
    n = {f: sum(r["family"] == f for r in rows) for f in ("kd", "lelp")}
    best = {f: best_row(rows, f) for f in n}
    out = []
    for r in rows:
        fam = r["family"]
        if fam not in n:
            out.append(r)
        elif r is best[fam] or is_default(r):
            if n[fam] > 1 and r["label"] == r["setting"]:  # a grid row: say how it was chosen
                won = r is best[fam]
                what = ["default"] * is_default(r) + [f"best of {n[fam]} on {SELECT}"] * won
                r = r | {
                    "label": f"{r['setting']} ({', '.join(what)})",
                    "n_tried": n[fam] if won else 1,
                }
            out.append(r)
    return out


def lelp_rank(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the best LELP row (picked on the selection split) ranks by mean test accuracy
    among the shown rows, and against whom it wins or loses by more than one std (the larger
    std of the two rows)."""
    shown = sorted(table_rows(rows), key=lambda r: -r["acc_mean"])
    lelp, kd = best_row(shown, "lelp"), best_row(shown, "kd")
    if lelp is None:
        return {}
    top = shown[0] if shown[0] is not lelp else (shown[1] if len(shown) > 1 else lelp)
    hard = next((r for r in shown if r["family"] == "hard"), None)
    return {
        "lelp": lelp["label"],
        "lelp_acc": lelp["acc_mean"],
        "lelp_std": lelp["acc_std"],
        "rank": shown.index(lelp) + 1,
        "n_rows": len(shown),
        "winner": shown[0]["label"],
        "winner_acc": shown[0]["acc_mean"],
        "winner_std": shown[0]["acc_std"],
        # LELP minus the best other row: positive when LELP wins, by how much.
        "vs_best_other": lelp["acc_mean"] - top["acc_mean"],
        "best_other": top["label"],
        "vs_best_other_beyond_std": _beyond_std(lelp, top),
        "vs_hard": None if hard is None else lelp["acc_mean"] - hard["acc_mean"],
        "vs_kd": None if kd is None else lelp["acc_mean"] - kd["acc_mean"],
        "kd": None if kd is None else kd["label"],
        "lelp_vs_kd": None if kd is None else lelp_vs_kd(lelp, kd),
        "above_by_more_than_std": [
            r["label"]
            for r in shown
            if r is not lelp and r["acc_mean"] > lelp["acc_mean"] and _beyond_std(r, lelp)
        ],
        "below_by_more_than_std": [
            r["label"]
            for r in shown
            if r is not lelp and r["acc_mean"] < lelp["acc_mean"] and _beyond_std(r, lelp)
        ],
    }


def _prepare(base: RunConfig, ws: Any, bd: BenchData) -> tuple[Any, dict[str, Any]]:
    """``prepare`` plus the teacher's scores (eval, selection and train split) for the
    report."""
    from lelp_studio import metrics as M
    from lelp_studio.pipeline import prepare

    prep = prepare(base, ws)
    out, ev = prep.out, prep.eval_split
    teacher = {
        "kind": base.teacher.kind,
        "mode": base.teacher.mode if bd.text else None,
        "hidden": base.teacher.hidden if not bd.text else None,
        "accuracy": M.accuracy(np.asarray(out.Z[ev]), prep.dataset.splits[ev].y),
        "select_accuracy": M.accuracy(np.asarray(out.Z[SELECT]), prep.dataset.splits[SELECT].y),
        "train_accuracy": M.accuracy(np.asarray(out.Z["train"]), prep.dataset.splits["train"].y),
        "cache_hit": prep.cache_hit,
        "compute_s": out.meta.get("seconds"),
        "precision": out.meta.get("precision"),
        "head_C": out.meta.get("head_C"),
    }
    return prep, teacher


def _cpu(device: str) -> bool:
    import torch

    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())


def bench_methods(
    bd: BenchData, args: argparse.Namespace, ws: Any, log: Any, quality: dict[str, Any] | None
) -> dict[str, Any]:
    """Every method of issue 6 on one dataset, same teacher, student, data and seeds
    (``--table amad``: the transformer student and the rows ``amad_settings`` names)."""
    from lelp_studio.pipeline import selection_info

    t0 = time.perf_counter()
    base = base_config(bd, args.teacher, args.device, args.precision)
    if args.table == "amad":
        student = base.student.model_copy(update=AMAD_STUDENT)
        base = base.model_copy(update={"student": student})
    if args.quick:
        base = base.model_copy(update={"train": base.train.model_copy(update={"epochs": 2})})
    prep, teacher = _prepare(base, ws, bd)
    ev = prep.eval_split
    latent = bd.latent if bd.latent in prep.dataset.latent_columns else None
    sizes = latent_sizes(prep, latent)
    lelp = best_setting(quality, bd.name, "lelp")
    kd = best_setting(quality, bd.name, "kd")
    if args.table == "amad":
        settings = amad_settings(args.quick, lelp, kd)
    else:
        settings = method_settings(args.quick, sizes, lelp, bd.text and _cpu(args.device), kd)
    log(
        f"{bd.name}: teacher {teacher['accuracy']:.2f} ({SELECT} "
        f"{teacher['select_accuracy']:.2f}); KD from {kd['source']}; LELP from {lelp['source']}"
    )
    seeds = list(range(args.seeds))
    fits: dict[str, Any] = {}
    t = time.perf_counter()
    rows = [run_setting(prep, base, st, seeds, latent, fits, log) for st in settings]
    students_s = time.perf_counter() - t
    return {
        "source": bd.source,
        "notes": bd.notes,
        "n_train": len(prep.dataset.splits["train"]),
        "eval_split": ev,
        "n_eval": len(prep.dataset.splits[ev]),
        "selection": selection_info(prep.dataset),
        "n_classes": prep.dataset.n_classes,
        "latent_col": latent,
        "latent_sizes": sizes,
        "config": base.model_dump(mode="json"),
        "teacher": teacher,
        "lelp_setting": lelp,
        "kd_setting": kd,
        "seeds": seeds,
        "grid_seeds": seeds,
        "rows": rows,
        "ranking": lelp_rank(rows),
        "distill_gap": distill_gap(
            teacher["select_accuracy"], next((r for r in rows if r["family"] == "hard"), None)
        ),
        "timings": {
            **prep.timings,
            "students_s": students_s,
            "runs": sum(len(r["seeds"]) for r in rows),
            "wall_s": time.perf_counter() - t0,
        },
    }


# --------------------------------------------------------------------------- AMAD table

#: AMAD aligns attention maps, so its table uses a small transformer student (2 layers of 4
#: heads, width 128) instead of the bag-of-embeddings one; every row uses it.
AMAD_STUDENT = {"kind": "transformer", "embed_dim": 128, "hidden": 128, "layers": 2, "heads": 4}
AMAD_DATASETS = ("trec", "sst2")


def amad_settings(
    quick: bool, lelp: dict[str, Any], kd: dict[str, Any] | None = None
) -> list[Setting]:
    """Hard labels, KD, LELP and AMAD at two weights, all on the transformer student: does
    aligning the last layer's attention with the teacher's add to KD, and at what weight?"""
    kd_rows, lelp_rows = kd_lelp_rows(kd or dict(KD_DEFAULT), lelp)
    rows = [
        Setting("hard", "hard", "hard", label="hard labels"),
        *kd_rows,
        *lelp_rows,
        Setting("amad w=1", "amad", "amad", 4.0, label="AMAD (kl, weight 1, tau=4)"),
        Setting(
            "amad w=0.1",
            "amad",
            "amad",
            4.0,
            train={"amad": {"weight": 0.1}},
            label="AMAD (kl, weight 0.1, tau=4)",
        ),  # fmt: skip
    ]
    if quick:  # the test's budget: one row of each kind
        rows = [r for r in rows if r.key in ("hard", kd_key(**KD_DEFAULT), "amad w=1")]
    return rows


# --------------------------------------------------------------------------- DWT table

DWT_TEACHER_HIDDEN = 16
DWT_STUDENT = {"hidden": 128, "layers": 3}


def dwt_settings() -> list[Setting]:
    """Hard labels, KD, and DWT's weight schedules and remapping (Lee et al. 2023), all at
    tau 1 (DWT's plain KL; our kd's tau^2 factor is 1 there)."""
    return [
        Setting("hard", "hard", "hard", label="hard labels"),
        Setting("kd alpha=1", "kd", "kd", train={"alpha": 1.0}, label="KD + hard (alpha=1)"),
        Setting(
            "dwt constant 1",
            "dwt",
            "dwt",
            train={"dwt": {"schedule": "constant", "soft_start": 1.0}},
            label="DWT, soft weight 1 (constant)",
        ),
        Setting(
            "dwt constant 4",
            "dwt",
            "dwt",
            train={"dwt": {"schedule": "constant"}},
            label="DWT, soft weight 4 (constant)",
        ),
        Setting("dwt linear", "dwt", "dwt", label="DWT, soft weight 4 -> 1 (linear)"),
        Setting(
            "dwt linear remap",
            "dwt",
            "dwt",
            train={"dwt": {"remap": True}},
            label="DWT, 4 -> 1 + parameter remapping",
        ),
    ]


def dwt_findings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paper's three claims, each checked on our rows: (difference, beyond one std)."""
    by: dict[str, Any] = {r["setting"]: r for r in rows}
    claims = [
        ("DWT (4 -> 1) from a weaker teacher beats hard labels", "dwt linear", "hard"),
        ("decaying the soft weight 4 -> 1 beats keeping it at 4", "dwt linear", "dwt constant 4"),
        ("decaying 4 -> 1 beats a constant weight of 1", "dwt linear", "dwt constant 1"),
        ("parameter remapping hurts", "dwt linear", "dwt linear remap"),
    ]
    soft_keys = ("kd alpha=1", "dwt constant 1", "dwt constant 4", "dwt linear")
    soft = [by[k] for k in soft_keys if k in by]
    if soft:  # the weak teacher's soft labels at all, at the schedule best on the selection split
        by["best soft"] = max(soft, key=lambda r: r["sel_mean"])
        claims.insert(1, ("the best soft-label row beats hard labels", "best soft", "hard"))
    out = []
    for claim, a, b in claims:
        if a in by and b in by:
            d = by[a]["acc_mean"] - by[b]["acc_mean"]
            out.append(
                {
                    "claim": claim,
                    "n_tried": len(soft) if a == "best soft" else 1,
                    "a": by[a]["label"],
                    "b": by[b]["label"],
                    "diff": d,
                    "same_direction": bool(d > 0),
                    "beyond_std": _beyond_std(by[a], by[b]),
                }
            )
    return out


def bench_dwt(args: argparse.Namespace, ws: Any, log: Any) -> dict[str, Any]:
    """DWT on digits-bin: a 16-unit digits-MLP teacher, a 3x128 MLP student (larger)."""
    from lelp_studio.pipeline import selection_info

    t0 = time.perf_counter()
    bd = DATASETS["digits-bin"]
    base = base_config(bd, args.teacher, args.device, args.precision)
    base = base.model_copy(
        update={
            "name": "bench-dwt-digits",
            "teacher": TeacherSpec(kind="digits-mlp", hidden=DWT_TEACHER_HIDDEN),
            "student": StudentSpec(kind="mlp", **DWT_STUDENT),
            "train": base.train.model_copy(update={"epochs": 2 if args.quick else bd.epochs}),
        }
    )
    prep, teacher = _prepare(base, ws, bd)
    seeds = list(range(args.seeds))
    log(f"dwt digits-bin: teacher (hidden {DWT_TEACHER_HIDDEN}) {teacher['accuracy']:.2f}")
    t = time.perf_counter()
    rows = [run_setting(prep, base, st, seeds, None, {}, log) for st in dwt_settings()]
    return {
        "source": bd.source,
        "notes": "",
        "n_train": len(prep.dataset.splits["train"]),
        "eval_split": prep.eval_split,
        "n_eval": len(prep.dataset.splits[prep.eval_split]),
        "selection": selection_info(prep.dataset),
        "distill_gap": distill_gap(teacher["select_accuracy"], rows[0]),
        "n_classes": prep.dataset.n_classes,
        "config": base.model_dump(mode="json"),
        "teacher": teacher,
        "seeds": seeds,
        "grid_seeds": seeds,
        "rows": rows,
        "findings": dwt_findings(rows),
        "timings": {
            **prep.timings,
            "students_s": time.perf_counter() - t,
            "runs": sum(len(r["seeds"]) for r in rows),
            "wall_s": time.perf_counter() - t0,
        },
    }


# --------------------------------------------------------------------------- report


def _f(x: float | None, nd: int = 2) -> str:
    return "" if x is None else f"{x:.{nd}f}"


def _sel_line(d: dict[str, Any]) -> str:
    """Which split chose, from where, how many rows: said next to every table (issue 13)."""
    s = d.get("selection") or {}
    where = f"{s.get('split', SELECT)}: {s.get('source')}, {s.get('n')} rows"
    return f"picked on the selection split ({where})"


def gap_sentence(g: dict[str, Any]) -> str:
    """Does distillation pay here: the teacher against a hard-label student on the selection
    split, said plainly when it cannot (issue 13, point 5)."""
    if not g:
        return ""
    head = (
        f"**Does distillation pay here?** On the selection split ({g['split']}) the teacher "
        f"scores {g['teacher_sel']:.2f} and the hard-label student {g['hard_sel']:.2f} ± "
        f"{g['hard_sel_std']:.2f}: gap {g['gap']:+.2f} points. "
    )
    if g["pays"]:
        return head + "The teacher is meaningfully better: there is room for distillation."
    return head + (
        "The teacher is not meaningfully better than a hard-label student here (gap within "
        "~1 point or within the seeds' spread): no distillation objective can help much. A "
        "stronger teacher (fine-tuned, or a checkpoint) or more unlabeled transfer data would."
    )


def verdict_sentence(s: dict[str, Any]) -> str:
    """Best LELP against best KD (each best of N on the selection split), on test, plainly."""
    words = {
        "beyond one std": "LELP beats KD beyond one std",
        "within noise": "LELP is ahead of KD only within noise (within one std)",
        "not at all": "LELP does not beat KD"
        + (" (KD is ahead beyond one std)" if s["beyond_std"] and s["diff"] < 0 else ""),
    }
    return (
        f"**Best LELP ({s['best_lelp']}, best of {s['n_lelp']}) {s['best_lelp_acc']:.2f} ± "
        f"{s['best_lelp_std']:.2f} vs best KD ({s['best_kd']}, best of {s['n_kd']}) "
        f"{s['best_kd_acc']:.2f} ± {s['best_kd_std']:.2f} on test: {s['diff']:+.2f} points; "
        f"{words[s['lelp_vs_kd']]}.** Issue 3's bar (+{s['margin']}): "
        f"{'cleared' if s['clears_margin'] else 'not cleared'}."
    )


HEADLINE_HEAD = [
    "| | N tried | setting | selection accuracy | test accuracy | agreement | KL | ECE (%) |",
    "|---|---|---|---|---|---|---|---|",
]


def headline_rows(d: dict[str, Any]) -> list[str]:
    """Teacher, hard labels, KD and LELP at their default and as best of N: the rows the
    README quotes. N is the settings tried on the selection split to get the row."""
    t, s, rows = d["teacher"], d["summary"], {r["setting"]: r for r in d["rows"]}
    lines = HEADLINE_HEAD + [
        f"| teacher | | {t['kind']} {t.get('mode') or ''} | {_f(t.get('select_accuracy'))} | "
        f"{t['accuracy']:.2f} | | | |"
    ]
    picks = [("hard labels", "hard", 1)]
    picks += [("KD default", s.get("kd_default"), 1), ("best KD", s["best_kd"], s["n_kd"])]
    picks += [("LELP default", s.get("lelp_default"), 1)]
    picks += [("best LELP", s["best_lelp"], s["n_lelp"])]
    for what, key, n in picks:
        r = rows.get(key) if key else None
        if r is not None:
            lines.append(
                f"| {what} | {n} | {r['setting']} | {_pm(r, 'sel')} | {_pm(r, 'acc')} | "
                f"{_pm(r, 'agree')} | {_pm(r, 'kl', 3)} | {_pm(r, 'ece', 2, 100.0)} |"
            )
    return lines


def render_md(res: dict[str, Any]) -> str:
    """The committed table: per dataset the headline rows, whether distillation pays, best
    LELP vs best KD, then every row."""
    m = res["machine"]
    lines = [
        "# Quality benchmark",
        "",
        f"Generated by `bench/quality.py` on {res['date']} ({res['wall_s'] / 60:.1f} min wall"
        + (
            f", summed over datasets run as {len(res['merged_from'])} parallel invocations"
            if res.get("merged_from")
            else ""
        )
        + "). "
        f"Machine: {m['cpu']} ({m['cpu_count']} cores, torch {m['torch']}, "
        f"{m['torch_threads']} torch thread(s)){', GPU ' + m['gpu'] if m['gpu'] else ''}. "
        f"Teacher: MiniLM-L6 {res['teacher']} (digits: MLP). Student: the LELP.md reference "
        "(mean of 64-d token embeddings, 64-64 MLP, Adam 3e-3, batch 128, alpha 0 unless the "
        "row says otherwise).",
        "",
        "**Protocol (issue 13).** Every best row is picked on the selection split (the "
        "dataset's dev split, else a seeded stratified 10% holdout of train; each section says "
        "which) by mean accuracy over seeds; its test accuracy is then reported, mean ± std over "
        "seeds, and never used to choose. Equal tuning budgets: KD's grid (tau "
        f"{'/'.join(f'{t:g}' for t in KD_TAUS)} x alpha {'/'.join(f'{a:g}' for a in KD_ALPHAS)}) "
        "has as many points as LELP's (S 2/4/8 x beta 0.5/1/2 x tau 1/4); each is shown at its "
        f"default (N = 1: KD tau={KD_DEFAULT['tau']:g} alpha={KD_DEFAULT['alpha']:g}, LELP "
        "S=4 beta=1 tau=1) and as best of N. LELP's KL and ECE are scored at T = 1. 'One std' "
        "is the larger of two rows' test stds: a yardstick, not a significance test.",
        "",
    ]
    reduced = [n for n, d in res["datasets"].items() if len(d["grid_seeds"]) < len(d["seeds"])]
    if reduced:
        lines += [
            f"To fit the CPU time budget, on {', '.join(reduced)} the KD and LELP grid (and "
            "ablation) rows use fewer seeds (see the seeds column); hard labels, k-means, "
            "oracle, the defaults and each best setting (topped up after the grid) use all seeds.",
            "",
        ]
    for name, d in res["datasets"].items():
        t = d["teacher"]
        s = d["summary"]
        lines += [
            f"## {name}",
            "",
            f"train {d['n_train']}, {d['eval_split']} {d['n_eval']}, selection "
            f"{d['selection']['n']} ({d['selection']['source']}), {d['n_classes']} classes; "
            f"latent: {d['latent_col'] or 'none'}; seeds {len(d['seeds'])} "
            f"(KD/LELP grids: {len(d['grid_seeds'])}); teacher test {t['accuracy']:.2f}, "
            f"selection {_f(t.get('select_accuracy'))} (train {t['train_accuracy']:.2f}; "
            f"computed in {_f(t['compute_s'], 0)} s, "
            f"{'cached' if t['cache_hit'] else 'not cached'} at this run); "
            f"{d['timings']['runs']} student runs in "
            f"{d['timings']['students_s'] / 60:.1f} min, dataset total "
            f"{d['timings']['wall_s'] / 60:.1f} min."
            + (f" Note: {d['notes']}." if d["notes"] else ""),
            "",
            gap_sentence(d.get("distill_gap", {})),
            "",
        ]
        if s:
            lines += [
                verdict_sentence(s),
                "",
                f"Best rows {_sel_line(d)}; test reported. One selection row is "
                f"{100 / d['selection']['n']:.2f} points; ties go to the first setting in grid "
                "order.",
                "",
                *headline_rows(d),
                "",
            ]
        lines += [
            "Every row (selection accuracy chooses; the test columns only report):",
            "",
            "| setting | selection accuracy | test accuracy | agreement | KL | ECE (%) | ARI | "
            "NMI | seeds |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in d["rows"]:
            lines.append(
                f"| {r['setting']} | {_pm(r, 'sel')} | {_pm(r, 'acc')} | {_pm(r, 'agree')} | "
                f"{_pm(r, 'kl', 3)} | {_pm(r, 'ece', 2, 100.0)} | {_f(r['ari'], 3)} | "
                f"{_f(r['nmi'], 3)} | {len(r['seeds'])} |"
            )
        lines.append("")
    for name, why in res.get("skipped", {}).items():
        lines.append(f"- {name}: skipped, {why}")
    return "\n".join(lines).rstrip() + "\n"


def _pm(r: dict[str, Any], key: str, nd: int = 2, scale: float = 1.0) -> str:
    """``mean ± std`` of a row's per-seed score (``std`` omitted with one seed)."""
    m, s = r.get(f"{key}_mean"), r.get(f"{key}_std")
    if m is None:
        return ""
    return f"{m * scale:.{nd}f}" + (f" ± {s * scale:.{nd}f}" if len(r["seeds"]) > 1 else "")


def _row_note(r: dict[str, Any], d: dict[str, Any]) -> str:
    """What a row needs next to its accuracy: retrieval cost, the retrained teacher, ..."""
    info = r.get("method_info", {})
    if "retrieval_overhead_pct" in info:
        ms = 1000 * info["retrieval_s"]["mean"]
        return (
            f"retrieval +{info['retrieval_overhead_pct']['mean']:.0f}% of the student's "
            f"predict time ({ms:.0f} ms for {d['n_eval']} rows)"
        )
    if "subclass_teacher_accuracy" in info:
        a = info["subclass_teacher_accuracy"]
        return (
            f"retrained teacher {a['mean']:.2f} ± {a['std']:.2f} (original "
            f"{d['teacher']['accuracy']:.2f})"
        )
    if r["family"] in ("kd", "lelp") and r.get("n_tried", 1) > 1:
        q = d.get(f"{r['family']}_setting", {})
        if q.get("quality_acc") is not None:
            other = d["config"]["student"]["kind"] != "bag"  # the AMAD table's transformer
            return f"quality.json{' (bag student)' if other else ''}: selection " + (
                f"{q['quality_sel']:.2f}, test {q['quality_acc']:.2f} ± {q['quality_std']:.2f}"
            )
    if r["family"] in ("oracle", "kmeans"):
        return f"S_c = {r['n_subclasses']}"
    return ""


TABLE_HEAD = [
    "| method | N tried | selection accuracy | test accuracy | agreement | KL | ECE (%) | "
    "train agreement | train KL | s/run | notes |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
]


def _table(rows: list[dict[str, Any]], d: dict[str, Any]) -> list[str]:
    return TABLE_HEAD + [
        f"| {r['label']} | {r.get('n_tried', 1)} | {_pm(r, 'sel')} | {_pm(r, 'acc')} | "
        f"{_pm(r, 'agree')} | {_pm(r, 'kl', 3)} | {_pm(r, 'ece', 2, 100.0)} | "
        f"{_pm(r, 'train_agree')} | {_pm(r, 'train_kl', 3)} | {r['run_s_mean']:.1f} | "
        f"{_row_note(r, d)} |"
        for r in rows
    ]


def _machine_line(res: dict[str, Any]) -> str:
    m = res["machine"]
    gpu = f"GPU {m['gpu']}" if m.get("gpu") else "no GPU"
    return (
        f"Generated by `bench/quality.py --table {res['table']}` on {res['date']} "
        f"({res['wall_s'] / 60:.1f} min wall"
        + (
            f", summed over datasets run as {len(res['merged_from'])} parallel invocations"
            if res.get("merged_from")
            else ""
        )
        + f"). Machine: {m['cpu']} ({m['cpu_count']} cores, "
        f"{gpu}, torch {m['torch']}, {m['torch_threads']} torch thread(s))."
    )


COLUMNS_NOTE = (
    "Columns: N tried (settings tried on the selection split to pick the row; 1 = a default), "
    "accuracy on the selection split (what every pick uses), then on the test split, scored "
    "once and never used to choose: accuracy, agreement with the teacher (%), predictive "
    "KL(teacher || student) (nats, T = 1 for every objective), ECE (15 bins, %); agreement "
    "and KL on the training split (Stanton et al. 2021's fidelity measures), mean ± std over "
    "seeds, and wall time per run (method fit + training + predicting the splits)."
)


def rank_sentence(name: str, k: dict[str, Any]) -> str:
    """The 'where LELP ranks' paragraph of one dataset, from its ``lelp_rank`` numbers."""
    if not k:
        return f"- **{name}**: no LELP row."
    std_word = "more than" if k["vs_best_other_beyond_std"] else "within"
    if k["rank"] == 1:
        head = (
            f"{k['lelp']} ranks **1st of {k['n_rows']}** ({k['lelp_acc']:.2f} ± "
            f"{k['lelp_std']:.2f}), {k['vs_best_other']:+.2f} points ahead of the runner-up, "
            f"{k['best_other']} ({std_word} one std)."
        )
    else:
        head = (
            f"{k['lelp']} ranks **{k['rank']} of {k['n_rows']}** ({k['lelp_acc']:.2f} ± "
            f"{k['lelp_std']:.2f}); {k['winner']} wins with {k['winner_acc']:.2f} ± "
            f"{k['winner_std']:.2f}, {-k['vs_best_other']:.2f} points ahead ({std_word} one std)."
        )
    parts = [head]
    if k["vs_kd"] is not None:
        verdict = {
            "beyond one std": "LELP beats KD beyond one std",
            "within noise": "LELP is ahead within noise",
            "not at all": "LELP does not beat KD",
        }.get(k.get("lelp_vs_kd") or "", "")
        parts.append(
            f"LELP vs {k.get('kd') or 'best KD'}: {k['vs_kd']:+.2f} ({verdict}); vs hard "
            f"labels: {k['vs_hard']:+.2f}."
        )
    above, below = k["above_by_more_than_std"], k["below_by_more_than_std"]
    parts.append(
        "Above LELP by more than one std: " + (", ".join(above) if above else "none") + "."
    )
    parts.append(
        "Below LELP by more than one std: " + (", ".join(below) if below else "none") + "."
    )
    return f"- **{name}**: " + " ".join(parts)


def _teacher_words(res: dict[str, Any]) -> str:
    """The methods table's teacher sentence, for the frozen or the fine-tuned MiniLM."""
    if res.get("teacher") == "finetune":
        return (
            "**Teacher**: on the text datasets the bundled MiniLM-L6 **fine-tuned** end to end "
            "(3 epochs, lr 5e-5, batch 64); on digits-bin the digits MLP."
        )
    return (
        "**Teacher**: on the text datasets the bundled MiniLM-L6 **frozen** (mean-pooled "
        "embeddings + a linear head fitted on them), run on **CPU**: no GPU was used, so these "
        "are not fine-tuned-teacher results; on digits-bin the digits MLP."
    )


def render_methods_md(res: dict[str, Any]) -> str:
    """One table per dataset with every method, then where LELP ranks."""
    lines = [
        "# Methods benchmark (issue 6)",
        "",
        _machine_line(res),
        "",
        _teacher_words(res) + " **Student**: the "
        "LELP.md reference (text: mean of 64-d token embeddings, 64-64 MLP; digits: MLP 32), "
        "Adam 3e-3, batch 128, alpha 0 unless the row says otherwise. Every row uses the same "
        "teacher outputs, student, data and seeds. Overrides: FitNet + KD `objective=fitnet, "
        "tau=4`; FitNet alone `alpha=1, fitnet.kd_weight=0`; SEA `tau=4` (random or diverse PCA "
        f"sample); CompRess `tau=4`, two or one queue (text on CPU: `queue_size={CPU_QUEUE}`); "
        "ReAugKD `tau=4`; Subclass Distillation S=4, its own tau 4 and alpha 0.5; k-means and "
        "oracle subclasses at tau 1 with the oracle's per-class counts; DiSK `tau=4, alpha=1`.",
        "",
        "**Protocol (issue 13).** KD and LELP appear at their default (N = 1, like every other "
        "method here) and at their best of N settings of `"
        + Path(res["args"].get("quality_json") or "quality.json").name
        + "`, picked there on the selection split (each section names it) and re-run here with "
        "the same seeds; the test split only reports. " + COLUMNS_NOTE + " ReAugKD's "
        "train-split fidelity is optimistic by design (each training row retrieves itself from "
        "the knowledge base).",
        "",
    ]
    return "\n".join(lines + _dataset_sections(res, ranking=True))


def _dataset_sections(res: dict[str, Any], ranking: bool) -> list[str]:
    """One table per dataset, then (``ranking``) where LELP ranks, then skipped datasets."""
    lines: list[str] = []
    for name, d in res["datasets"].items():
        t = d["teacher"]
        sel = d.get("selection") or {}
        lines += [
            f"## {name}",
            "",
            f"train {d['n_train']}, {d['eval_split']} {d['n_eval']}, selection {sel.get('n')} "
            f"({sel.get('source')}), {d['n_classes']} classes; "
            f"latent: {d['latent_col'] or 'none'}; seeds {len(d['seeds'])}; teacher test "
            f"{t['accuracy']:.2f}, selection {_f(t.get('select_accuracy'))} (train "
            f"{t['train_accuracy']:.2f}"
            + (f", {t['precision']}" if t.get("precision") else "")
            + f"); KD from {d.get('kd_setting', {}).get('source')}; LELP from "
            f"{d['lelp_setting']['source']}; {d['timings']['runs']} student runs in "
            f"{d['timings']['students_s'] / 60:.1f} min.",
            "",
            gap_sentence(d.get("distill_gap", {})),
            "",
            *_table(table_rows(d["rows"]), d),
            "",
        ]
    if ranking:
        lines += ["## Where LELP ranks", ""]
        lines += [rank_sentence(n, d["ranking"]) for n, d in res["datasets"].items()]
        lines.append("")
        lines += [
            "'One std' is the larger of the two rows' standard deviations over "
            f"{len(next(iter(res['datasets'].values()))['seeds']) if res['datasets'] else 0} "
            "seeds: a rough yardstick, not a significance test. The LELP row ranked is its best "
            "of N (picked on the selection split); KD's best of N likewise, so KD and LELP are "
            "tuned equally, while every other method runs at its one recommended setting "
            f"(N = 1). Wall times come from a shared {res['machine']['cpu_count']}"
            "-core machine with other jobs running (the first row of each dataset also pays "
            "the warm-up): compare them only roughly.",
            "",
        ]
    for name, why in res.get("skipped", {}).items():
        lines.append(f"- {name}: skipped, {why}")
    return lines


def render_amad_md(res: dict[str, Any]) -> str:
    """The AMAD table: KD, LELP and AMAD on a transformer student, then AMAD vs KD."""
    s = AMAD_STUDENT
    lines = [
        "# AMAD benchmark: attention-map alignment on a transformer student (issue 6, item 8)",
        "",
        _machine_line(res),
        "",
        f"**Teacher**: the bundled MiniLM-L6 ({res['teacher']}; 12 heads, 6 layers), run on "
        f"CPU. **Student**: a BERT-style transformer trained from scratch ({s['layers']} layers, "
        f"{s['heads']} heads, width {s['embed_dim']}, the teacher's tokenizer), Adam 3e-3, "
        "batch 128, alpha 0; every row uses it. AMAD (Zhao et al. 2024) adds "
        "`weight * KL(teacher maps || student maps)` between the teacher's last layer and the "
        "student's last layer (12 heads against 4, real tokens only) to KD at tau 4. KD and "
        "LELP: their defaults and their best settings of `quality.json` for the dataset (found "
        "with the bag student, on the selection split).",
        "",
        COLUMNS_NOTE,
        "",
    ]
    lines += _dataset_sections(res, ranking=False)
    lines += [
        "## AMAD against KD",
        "",
        "Against KD at AMAD's own tau (4: what the attention term adds) and against the best "
        "KD (picked on the selection split).",
        "",
    ]
    for name, d in res["datasets"].items():
        kds = [r for r in d["rows"] if r["family"] == "kd"]
        best = best_row(d["rows"], "kd")
        for r in (r for r in d["rows"] if r["family"] == "amad" and best is not None):
            same = next((k for k in kds if k["tau"] == r["tau"]), best)
            parts = [
                f"{_versus(r, k)} vs {what} ({k['acc_mean']:.2f} ± {k['acc_std']:.2f})"
                for what, k in ((f"KD tau={same['tau']:g}", same), ("best KD", best))
            ]
            lines.append(
                f"- **{name}**, {r['label']} ({r['acc_mean']:.2f} ± {r['acc_std']:.2f}): "
                + "; ".join(parts)
                + "."
            )
    return "\n".join(lines).rstrip() + "\n"


def _versus(r: dict[str, Any], k: dict[str, Any]) -> str:
    """``+1.60 (more than one std), agreement +2.80``: row ``r`` against row ``k``."""
    if len(r["seeds"]) < 2:
        spread = "one seed: no spread to compare with"
    else:
        spread = ("more than" if _beyond_std(r, k) else "within") + " one std"
    return (
        f"{r['acc_mean'] - k['acc_mean']:+.2f} ({spread}), agreement "
        f"{r['agree_mean'] - k['agree_mean']:+.2f}"
    )


def render_dwt_md(res: dict[str, Any]) -> str:
    """The DWT table (digits-bin) and the paper's claims checked on it."""
    d = res["datasets"]["digits-bin"]
    t = d["teacher"]
    lines = [
        "# DWT benchmark: a student larger than its teacher (issue 6, item 5)",
        "",
        _machine_line(res),
        "",
        f"digits-bin (train {d['n_train']}, {d['eval_split']} {d['n_eval']}). **Teacher**: the "
        f"digits MLP with {DWT_TEACHER_HIDDEN} hidden units (test {t['accuracy']:.2f}, "
        f"selection {_f(t.get('select_accuracy'))}, train {t['train_accuracy']:.2f}). "
        f"**Student**: an MLP with {DWT_STUDENT['layers']} hidden "
        f"layers of {DWT_STUDENT['hidden']} units (larger than the teacher), Adam 3e-3, batch "
        f"128, {d['config']['train']['epochs']} epochs, tau 1; seeds {len(d['seeds'])}. DWT's "
        "loss is `CE(y) + a_s * KD`; KD + hard at alpha 1 is the same loss as DWT at a constant "
        "weight 1, computed by the plain KD path (a consistency check). Remapping copies the "
        "teacher's layers into the top-left blocks of the student's (the last hidden layer "
        "reused for the extra one).",
        "",
        COLUMNS_NOTE
        + f" The best soft-label row of the findings is {_sel_line(d)} among the soft-label "
        "rows; its test accuracy is reported.",
        "",
        gap_sentence(d.get("distill_gap", {})),
        "",
        *_table(d["rows"], d),
        "",
        "## The paper's findings, checked here",
        "",
    ]
    for f in d["findings"]:
        verdict = (
            "no difference"
            if f["diff"] == 0
            else "same direction as the paper"
            if f["same_direction"]
            else "opposite to the paper"
        )
        size = "more than" if f["beyond_std"] else "within"
        n = f.get("n_tried", 1)
        picked = f" (best of {n} on the selection split)" if n > 1 else ""
        lines.append(
            f"- {f['claim']}: {f['a']}{picked} minus {f['b']} = {f['diff']:+.2f} points "
            f"({verdict}, {size} one std)."
        )
    hard = next((r for r in d["rows"] if r["family"] == "hard"), None)
    lines += [
        "",
        f"One test example is {100 / d['n_eval']:.2f} points; with {len(d['seeds'])} seeds "
        "'one std' is a yardstick, not a test. "
        + (
            f"Hard labels alone reach {hard['acc_mean']:.2f}, "
            f"{'above' if hard['acc_mean'] > t['accuracy'] else 'below'} the teacher's "
            f"{t['accuracy']:.2f}: "
            + (
                "the student can outgrow its teacher (DWT's regime)."
                if hard["acc_mean"] > t["accuracy"]
                else "the teacher is not weaker than the student here."
            )
            if hard
            else ""
        ),
        "",
        "Text datasets: not run. A DWT case needs a teacher weaker than a larger student; the "
        "only text teacher core builds is MiniLM (frozen or fine-tuned), which is far stronger "
        "than the bag student, and core cannot yet use a trained student as a teacher. Using "
        "MiniLM itself as the student of a small teacher (the issue's example) is a transformer "
        "fine-tune, too slow on this CPU.",
        "",
    ]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--table",
        choices=("quality", "methods", "dwt", "amad"),
        default="quality",
        help="quality: hard/KD/LELP grid (issue 3); methods: every method of issue 6 in one "
        "table per dataset; dwt: DWT's weight schedules and remapping on digits-bin; amad: "
        "KD, LELP and AMAD on a transformer student",
    )
    p.add_argument(
        "--datasets",
        default=None,
        help=f"comma-separated subset of {','.join(DATASETS)} (absent shared ones are skipped; "
        f"default: all for --table quality, {','.join(METHOD_DATASETS)} for methods, "
        f"{','.join(AMAD_DATASETS)} for amad; dwt runs digits-bin only)",
    )
    p.add_argument(
        "--quality-json",
        default=str(REPO / "bench" / "results" / "quality.json"),
        help="--table methods takes each dataset's best LELP setting from this file",
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
    p.add_argument(
        "--precision",
        choices=("auto", "float32", "bf16"),
        default="auto",
        help="the text teacher's precision (teacher.precision; the committed frozen-teacher "
        "tables were measured in float32, before bf16 became auto's choice on this CPU)",
    )
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
    p.add_argument("--name", default=None, help="file stem of the outputs (default: the table)")
    p.add_argument(
        "--append",
        action="store_true",
        help="keep the other datasets of an existing <out>/<name>.json (re-run some datasets)",
    )
    args = p.parse_args(argv)
    args.name = args.name or args.table
    if args.datasets is None:
        defaults = {"methods": METHOD_DATASETS, "amad": AMAD_DATASETS}
        args.datasets = ",".join(defaults.get(args.table, QUALITY_DATASETS))
    if args.quick or args.table == "dwt":
        args.datasets = "text-demo" if args.table == "amad" else "digits-bin"
    if args.quick:
        args.seeds = 1
    unknown = [d for d in args.datasets.split(",") if d not in DATASETS]
    if unknown:
        p.error(f"unknown datasets {unknown}; choose from {list(DATASETS)}")
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    from lelp_studio.store import Workspace

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
        "table": args.table,
        "protocol": PROTOCOL,
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
    qpath = Path(args.quality_json)
    quality = json.loads(qpath.read_text(encoding="utf-8")) if qpath.is_file() else None
    for name in args.datasets.split(","):
        bd = DATASETS[name]
        why = available(bd)
        if why:
            log(f"{name}: skipped, {why}")
            res["skipped"][name] = why
            continue
        if args.table in ("methods", "amad"):
            res["datasets"][name] = bench_methods(bd, args, ws, log, quality)
        elif args.table == "dwt":
            res["datasets"][name] = bench_dwt(args, ws, log)
        else:
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


RENDER = {
    "quality": render_md,
    "methods": render_methods_md,
    "dwt": render_dwt_md,
    "amad": render_amad_md,
}


def write(res: dict[str, Any], out_dir: Path, stem: str) -> None:
    """JSON and Markdown, each written atomically."""
    for suffix, text in (
        (".json", json.dumps(res, indent=1, default=str)),
        (".md", RENDER[res.get("table", "quality")](res)),
    ):
        path = out_dir / (stem + suffix)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
