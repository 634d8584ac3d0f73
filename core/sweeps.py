"""Sweeps read by eye: runs that differ only by seed folded into one row, ranked on the
selection split.

Why: a sweep over S, beta, tau, objective and seed gives dozens of runs; one row per run
answers nothing. ``aggregate`` folds seeds (mean ± std and n), ranks settings by their
selection-split score and shows the test score beside it, never using it to rank. The
Compare page's sweep view, ``lelp runs`` and the benchmark tables all read this one table.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Config keys that never define a setting: the seed is what gets folded; names are labels.
NOT_SETTINGS = ("train.seed", "name")
#: The swept settings users read, by their short name (the grid builder offers these).
SHORT = {
    "train.objective": "objective",
    "subclasses.n_subclasses": "S",
    "subclasses.beta": "beta",
    "train.tau": "tau",
    "train.alpha": "alpha",
}
#: Which config keys matter for which objectives (others are defaults the run ignored).
_ONLY_FOR = {"subclasses.": ("lelp",), "train.tau": None, "train.alpha": None}
_NO_TAU = ("hard",)


def flat_config(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"tau": 4}}`` -> ``{"train.tau": 4}``; lists become tuples (hashable)."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_config(v, key + "."))
        else:
            out[key] = tuple(v) if isinstance(v, list) else v
    return out


def relevant(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The keys that shaped this run: subclass settings only for lelp, tau and alpha not for
    hard labels, a method's own section only for that method."""
    obj = flat.get("train.objective")
    out = {}
    for k, v in flat.items():
        if k.startswith("subclasses.") and obj != "lelp":
            continue
        if k in ("train.tau", "train.alpha") and obj in _NO_TAU:
            continue
        parts = k.split(".")
        if len(parts) == 3 and parts[0] == "train" and parts[1].replace("_", "-") != obj:
            continue  # another method's section (train.fitnet.* for a kd run)
        out[k] = v
    return out


def varying_settings(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Config keys whose value differs between the runs that use them (seed and name
    excepted), in config order. A key a run ignores (a kd run's subclass settings) does not
    make it vary: else a kd + lelp sweep showed every subclass option as a column."""
    flats = [relevant(flat_config(r["config"])) for r in records]
    keys: list[str] = []
    for f in flats:
        keys += [k for k in f if k not in keys]
    return [
        k for k in keys if k not in NOT_SETTINGS and len({repr(f[k]) for f in flats if k in f}) > 1
    ]


def _score(r: Mapping[str, Any], where: str, metric: str) -> float:
    m = (r.get("metrics") or {}).get(where) or {}
    v = m.get(metric)
    return float("nan") if v is None else float(v)


def _std(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.std(ddof=1)) if len(x) > 1 else float("nan")


def aggregate(
    records: Iterable[Mapping[str, Any]],
    metric: str = "accuracy",
    settings: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per setting: the setting columns (``settings``; by default the objective and
    every setting that varies, by short name where there is one), ``n`` (runs
    folded), ``seeds``, ``missing_seeds`` (seeds other settings have and this one lacks),
    ``sel_mean``/``sel_std`` (the selection split), ``test_mean``/``test_std``,
    ``agreement_mean``, ``rank`` (1 = best selection mean) and ``run_ids``.

    Sorted by ``rank``; the test score is shown, never used to rank (ties on the selection
    score keep the settings' order). Runs made before the selection split existed have no
    selection score: their rows rank last, with ``sel_mean`` NaN.
    """
    recs = [r for r in records if not (r.get("metrics") or {}).get("cancelled")]
    if settings is None:  # the objective always shows: it names what a row is
        settings = [
            "train.objective",
            *(k for k in varying_settings(recs) if k != "train.objective"),
        ]
    cols = list(settings)
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in recs:
        f = relevant(flat_config(r["config"]))
        groups.setdefault(tuple(repr(f.get(k)) for k in cols), []).append(r)
    all_seeds = sorted({int(r["config"]["train"]["seed"]) for r in recs})
    rows = []
    for members in groups.values():
        f = relevant(flat_config(members[0]["config"]))
        seeds = sorted(int(m["config"]["train"]["seed"]) for m in members)
        sel = np.array([_score(m, "student_select", metric) for m in members])
        test = np.array([_score(m, "student", metric) for m in members])
        agree = np.array([_score(m, "student", "agreement") for m in members])
        row: dict[str, Any] = {SHORT.get(k, k): f.get(k) for k in cols}
        row.update(
            n=len(members),
            seeds=seeds,
            missing_seeds=[s for s in all_seeds if s not in seeds],
            sel_mean=float(np.nanmean(sel)) if not np.isnan(sel).all() else float("nan"),
            sel_std=_std(sel),
            test_mean=float(np.nanmean(test)) if not np.isnan(test).all() else float("nan"),
            test_std=_std(test),
            agreement_mean=float(np.nanmean(agree)) if not np.isnan(agree).all() else np.nan,
            run_ids=[m["run_id"] for m in members],
        )
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    order = df["sel_mean"].fillna(-np.inf).rank(method="first", ascending=False)
    df["rank"] = order.astype(int)
    return df.sort_values("rank", kind="stable").reset_index(drop=True)


def best_setting(df: pd.DataFrame) -> pd.Series:
    """The top row by selection score (raises when no row has one)."""
    scored = df.dropna(subset=["sel_mean"])
    if scored.empty:
        raise ValueError(
            "no run here has a selection-split score (they predate it); re-run them to rank"
        )
    return scored.sort_values("rank").iloc[0]


def objective_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Objectives side by side: hard, KD at each tau, each other objective's best setting
    (by selection score) — the "does LELP beat KD here, beyond the noise?" chart's rows."""
    out = []
    for obj, g in df.groupby("objective", sort=False):
        if obj == "kd" and "tau" in g.columns:
            for tau, gt in g.groupby("tau", sort=True):
                top = gt.sort_values("rank").iloc[0]
                out.append(top.to_dict() | {"label": f"kd tau={tau:g}"})
        else:
            top = g.sort_values("rank").iloc[0]
            label = str(obj) if len(g) == 1 else f"{obj} (best of {len(g)})"
            out.append(top.to_dict() | {"label": label})
    return pd.DataFrame(out)


def grid(df: pd.DataFrame, x: str, y: str, fixed: Mapping[str, Any] | None = None) -> dict:
    """The heat map's data over two settings at fixed values of the others: ``{"x": [...],
    "y": [...], "mean": (len(y), len(x)), "std": ..., "n": ...}`` (NaN where not run)."""
    sub = df
    for k, v in (fixed or {}).items():
        sub = sub[sub[k].map(repr) == repr(v)]
    sub = sub.dropna(subset=[x, y])  # rows whose objective ignores x or y (kd has no S)
    xs = sorted(sub[x].dropna().unique().tolist(), key=_sort_key)
    ys = sorted(sub[y].dropna().unique().tolist(), key=_sort_key)
    shape = (len(ys), len(xs))
    mean, std, n = np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape, int)
    for _, r in sub.iterrows():
        i, j = ys.index(r[y]), xs.index(r[x])
        mean[i, j], std[i, j], n[i, j] = r["sel_mean"], r["sel_std"], r["n"]
    return {"x": xs, "y": ys, "mean": mean, "std": std, "n": n, "x_name": x, "y_name": y}


def _sort_key(v: Any) -> tuple:
    return (0, float(v), "") if isinstance(v, (int, float)) else (1, 0.0, str(v))


def text_table(df: pd.DataFrame) -> str:
    """The aggregated table as text (``lelp runs``): settings, n, selection and test."""
    if df.empty:
        return "no finished runs"
    show = [c for c in df.columns if c not in ("run_ids", "seeds", "missing_seeds")]
    out = df[show].copy()
    for c in ("sel", "test"):
        out[c] = [_pm(m, s) for m, s in zip(df[f"{c}_mean"], df[f"{c}_std"], strict=True)]
        out = out.drop(columns=[f"{c}_mean", f"{c}_std"])
    out["agreement_mean"] = out["agreement_mean"].map(lambda v: f"{v:.2f}")
    out["missing"] = [", ".join(map(str, m)) or "-" for m in df["missing_seeds"]]
    out = out.rename(columns={"sel": "selection (ranks)", "test": "test (shown only)"})
    return out.to_string(index=False)


def _pm(mean: float, std: float) -> str:
    if np.isnan(mean):
        return "-"
    return f"{mean:.2f}" if np.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def best_config(ws: Any, df: pd.DataFrame) -> dict[str, Any]:
    """The best row's run config (its first run's, seed and name dropped): a spec that
    ``lelp distill --spec`` and the Distill page run again."""
    row = best_setting(df)
    cfg = dict(ws.load_run(row["run_ids"][0])["config"])
    cfg.pop("name", None)
    cfg["train"] = {k: v for k, v in cfg["train"].items() if k != "seed"}
    return cfg


def lelp_vs_kd(df: pd.DataFrame) -> str | None:
    """One sentence: does the best LELP setting beat the best KD setting beyond the noise?

    Both are picked by selection score (``rank``); "beyond the noise" means their selection
    means differ by more than the larger of their two seed stds. None when the table lacks
    a scored LELP or KD row.
    """
    if "objective" not in df.columns:
        return None
    scored = df.dropna(subset=["sel_mean"])
    lelp, kd = (scored[scored["objective"] == o].sort_values("rank") for o in ("lelp", "kd"))
    if lelp.empty or kd.empty:
        return None
    a, b = lelp.iloc[0], kd.iloc[0]
    diff = float(a["sel_mean"] - b["sel_mean"])
    stds = [float(v) for v in (a["sel_std"], b["sel_std"]) if not np.isnan(v)]
    noise = max(stds) if stds else float("nan")
    said = (
        f"best LELP {a['sel_mean']:.2f} (n={a['n']}) vs best KD {b['sel_mean']:.2f} "
        f"(n={b['n']}) on the selection split"
    )
    if np.isnan(noise):
        head = "LELP is ahead of KD" if diff > 0 else "LELP does not beat KD"
        return f"{head}, but with one seed per setting the noise is unknown: {said}."
    if diff > noise:
        return f"LELP beats KD beyond the noise (+{diff:.2f} > std {noise:.2f}): {said}."
    if diff > 0:
        return f"LELP is ahead of KD only within the noise (+{diff:.2f} ≤ std {noise:.2f}): {said}."
    return f"LELP does not beat KD here ({diff:+.2f}, std {noise:.2f}): {said}."


def new_seeds(used: Iterable[int], k: int) -> list[int]:
    """The ``k`` smallest non-negative seeds not in ``used`` (to re-run a setting afresh)."""
    have, s = {int(u) for u in used}, 0
    out: list[int] = []
    while len(out) < k:
        if s not in have:
            out.append(s)
        s += 1
    return out


#: ``lelp runs --format``: how the aggregated table is written.
FORMATS = ("table", "csv", "json", "markdown")


def filter_runs(
    records: Iterable[Mapping[str, Any]],
    *,
    dataset: str | None = None,
    teacher: str | None = None,
    objective: str | None = None,
) -> list[Mapping[str, Any]]:
    """Runs whose dataset source, teacher kind and objective match the given values (None:
    any). Why here: ``lelp runs`` and the benchmark pick runs the same way."""
    out = []
    for r in records:
        cfg = r.get("config") or {}
        if dataset is not None and (cfg.get("dataset") or {}).get("source") != dataset:
            continue
        if teacher is not None and (cfg.get("teacher") or {}).get("kind") != teacher:
            continue
        if objective is not None and (cfg.get("train") or {}).get("objective") != objective:
            continue
        out.append(r)
    return out


def render(df: pd.DataFrame, fmt: str = "table") -> str:
    """The aggregated table as text (``table``), CSV, JSON (records) or Markdown."""
    if fmt == "table":
        return text_table(df)
    flat = df.copy()
    for c in ("seeds", "missing_seeds", "run_ids"):
        if c in flat.columns:
            flat[c] = [" ".join(map(str, v)) for v in flat[c]]
    if fmt == "csv":
        return flat.to_csv(index=False)
    if fmt == "json":
        return flat.to_json(orient="records", indent=1)
    if fmt == "markdown":
        return flat.drop(columns=["run_ids"], errors="ignore").to_markdown(
            index=False, floatfmt=".2f"
        )
    raise ValueError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")


def distinct_combos(grid: Mapping[str, Sequence[Any]], objective: str) -> list[dict[str, Any]]:
    """The grid's points that train different students: a setting the objective ignores
    (tau for hard labels, S and beta for all but lelp) does not make a new job.

    Why: "hard x tau 1, 4" used to queue the same student twice, and the sweep view then
    folded the copies as extra seeds (n and the spread both wrong)."""
    seen: set[str] = set()
    out = []
    for combo in itertools.product(*grid.values()):
        point = dict(zip(grid, combo, strict=True))
        key = repr(sorted(relevant({"train.objective": objective, **point}).items()))
        if key not in seen:
            seen.add(key)
            out.append(point)
    return out


def same_student(cfg: Mapping[str, Any]) -> str:
    """A key equal for two run configs that train the same student (name and ignored
    settings left out)."""
    flat = relevant(flat_config({k: v for k, v in cfg.items() if k != "name"}))
    return repr(sorted(flat.items()))
