"""Subspaces-page speed (issue 4): how fast moving S or beta answers at 100,000 points.

Two levels, each against a naive baseline measured in the same run (a ratio, because the
machine is shared and noisy):

- core: the recomputation behind one control change, i.e. LELP fit (for S), coordinates,
  targets and assignments for all points. Tuned = what the app does (per-class statistics
  cached in ``ClassStats``, coordinates cached across beta/tau, ``targets_from_coordinates``);
  naive = a full ``LELPSubclasses().fit(H, y, W)`` plus ``targets`` and ``assign`` every time.
- page: the whole rerun of ``pages/3_subspaces.py`` under Streamlit's AppTest after changing
  S or beta, on a 100,000-row training set (synthetic texts, planted latent groups, an
  ``arrays`` teacher), against the page's first (cold) render of the same data.

    python bench/subspaces.py                   # results in bench/results/subspaces.{json,md}
    python bench/subspaces.py --rows 20000 --out /tmp/sub   # a quick look
    python bench/subspaces.py --rows 1600000 --repeat 1 --name subspaces_1m6   # issue 7 scale
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make ``core`` importable
    sys.path.insert(0, str(REPO))

from bench.machine import machine_info  # noqa: E402

D = 384
N_LATENT = 4


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two classes, four planted latent groups per class, embeddings (n, 384) float32."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)[:n]
    latent = rng.integers(0, N_LATENT, size=n)
    W = rng.normal(size=(2, D)).astype(np.float32)
    centres = rng.normal(scale=2.0, size=(2, N_LATENT, D))
    H = (centres[y, latent] + rng.normal(size=(n, D))).astype(np.float32)
    H += 3.0 * np.outer(2 * y - 1, W[1] - W[0]) / np.linalg.norm(W[1] - W[0])
    return H, y, latent, W


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall seconds of ``repeat`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def core_figures(n: int, repeat: int) -> dict[str, Any]:
    """Seconds for one S change and one beta change, tuned vs naive, at ``n`` points."""
    from lelp_studio.subclasses import (
        LELPSubclasses,
        assign_from_coordinates,
        class_statistics,
        targets_from_coordinates,
    )

    H, y, _, W = synthetic(n)
    Z = (H @ W.T).astype(np.float32)
    stats = class_statistics(H, y)  # paid once when the page first opens

    def tuned_s_change(S: int) -> Any:
        m = LELPSubclasses(n_subclasses=S, random_state=0).fit(H, y, W, class_stats=stats)
        coords = m.coordinates(H)
        T = targets_from_coordinates(coords, Z, tau=1.0, beta=1.0)
        return T, assign_from_coordinates(coords, y)

    def naive_change(S: int, beta: float) -> Any:
        m = LELPSubclasses(n_subclasses=S, beta=beta, random_state=0).fit(H, y, W)
        return m.targets(H, Z, tau=1.0), m.assign(H, y)

    tuned_s_change(4)  # warm the eigen-decomposition memo, as the first render does
    t_s, (T_fast, a_fast) = timed(lambda: tuned_s_change(6), repeat)
    n_s, (T_slow, a_slow) = timed(lambda: naive_change(6, 1.0), repeat)
    np.testing.assert_allclose(T_fast, T_slow, atol=1e-5)  # same answer, or the ratio is moot
    assert np.array_equal(a_fast, a_slow)

    coords = LELPSubclasses(n_subclasses=6, random_state=0).fit(H, y, W, stats).coordinates(H)
    t_b, _ = timed(lambda: targets_from_coordinates(coords, Z, tau=1.0, beta=0.5), repeat)
    n_b, _ = timed(lambda: naive_change(6, 0.5), repeat)
    return {
        "points": n,
        "S_change_s": {"tuned": t_s, "naive": n_s, "ratio": n_s / t_s},
        "beta_change_s": {"tuned": t_b, "naive": n_b, "ratio": n_b / t_b},
    }


def page_workspace(n: int, root: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A dataset file with ``n`` training rows and an arrays teacher for it, in ``root``."""
    import pandas as pd

    from lelp_studio.config import DatasetSpec, TeacherSpec
    from lelp_studio.data import load_dataset

    n_total = int(n / 0.8)
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], n_total // 2 + 1)[:n_total]
    topic = rng.integers(0, N_LATENT, size=n_total)
    texts = [f"review {i} about topic {t}" for i, t in enumerate(topic)]
    csv = root / "big.csv"
    pd.DataFrame({"text": texts, "label": y, "topic": topic}).to_csv(csv, index=False)
    ds_spec = DatasetSpec(source=str(csv), latent_cols=["topic"], test_size=0.2, seed=0)
    ds = load_dataset(ds_spec)
    W = rng.normal(size=(2, D)).astype(np.float32)
    centres = rng.normal(scale=2.0, size=(2, N_LATENT, D))
    arrays: dict[str, np.ndarray] = {"W": W, "b": np.zeros(2, np.float32)}
    for split, sp in ds.splits.items():
        t = np.asarray(sp.latent["topic"]).astype(int)
        H = (centres[sp.y, t] + rng.normal(size=(len(sp), D))).astype(np.float32)
        arrays[f"H_{split}"] = H
        arrays[f"Z_{split}"] = H @ W.T
    npz = root / "teacher.npz"
    np.savez(npz, **arrays)
    t_spec = TeacherSpec(kind="arrays", path=str(npz))
    return ds_spec.model_dump(mode="json"), t_spec.model_dump(mode="json"), str(root / "ws")


def page_figures(n: int, repeat: int) -> dict[str, Any]:
    """Whole-page rerun seconds of the Subspaces page after an S or a beta change."""
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as tmp:
        ds_json, t_json, ws_root = page_workspace(n, Path(tmp))
        os.environ["LELP_WORKSPACE"] = ws_root
        os.environ["LELP_APP_AUTOSTART_WORKER"] = "0"
        at = AppTest.from_file(str(REPO / "pages" / "3_subspaces.py"), default_timeout=900)
        at.session_state["ws_root"] = ws_root
        at.session_state["dataset_spec"] = ds_json
        at.session_state["teacher_spec"] = t_json
        at.session_state["sub_compare"] = []  # baselines are opt-in work, timed elsewhere
        t0 = time.perf_counter()
        at.run()
        cold = time.perf_counter() - t0
        assert not at.exception, at.exception
        assert at.number_input(key="sub_S").value == 4

        def change(key: str, values: list[Any]) -> float:
            times = []
            for v in values:
                if key == "sub_S":
                    at.number_input(key=key).set_value(v)
                else:
                    at.select_slider(key=key).set_value(v)
                t = time.perf_counter()
                at.run()
                times.append(time.perf_counter() - t)
                assert not at.exception, at.exception
            return statistics.median(times)

        # First visits of each S pay the fit (cached afterwards), so time fresh values.
        s_rerun = change("sub_S", [5, 6, 3][:repeat] if repeat < 3 else [5, 6, 3])
        b_rerun = change("sub_beta", [0.5, 2.0, 1.0])
        rows = next(len(df.value) for df in at.dataframe if "pseudo-subclass" in df.value.columns)
        return {
            "train_points": n,
            "cold_render_s": cold,
            "rerun_after_S_change_s": s_rerun,
            "rerun_after_beta_change_s": b_rerun,
            "ratio_cold_to_S_rerun": cold / s_rerun,
            "table_rows_after_changes": rows,
        }


def write(results: dict[str, Any], out: Path, name: str = "subspaces") -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    m, c, p = results["machine"], results["core"], results["page"]
    lines = [
        "# Subspaces page speed",
        "",
        f"Generated by `bench/subspaces.py` on {m['date']}. Machine: {m['cpu']} "
        f"({m['cores']} cores, {m.get('memory_gb', '?')} GB, torch {m['torch']}, "
        f"load average at start {m['load_average_start']}). Median of the repeats.",
        "",
        f"## Core recomputation, {c['points']:,} points x {D} (goal < 0.2 s)",
        "",
        "| control change | tuned (s) | naive full refit (s) | naive / tuned |",
        "|---|---|---|---|",
    ]
    for label, k in (("S (4 -> 6)", "S_change_s"), ("beta (1 -> 0.5)", "beta_change_s")):
        lines.append(
            f"| {label} | {c[k]['tuned']:.3f} | {c[k]['naive']:.3f} | {c[k]['ratio']:.1f}x |"
        )
    lines += [
        "",
        f"## Whole page rerun (AppTest), {p['train_points']:,} training points (goal < 1.5 s)",
        "",
        "| what | seconds |",
        "|---|---|",
        f"| first (cold) render: statistics, fit, projection, map | {p['cold_render_s']:.2f} |",
        f"| rerun after changing S (new S each time) | {p['rerun_after_S_change_s']:.2f} |",
        f"| rerun after changing beta | {p['rerun_after_beta_change_s']:.2f} |",
        f"| cold / S-rerun | {p['ratio_cold_to_S_rerun']:.1f}x |",
        "",
        "Tuned = the app's path: per-class statistics (one pass over H) and eigen-"
        "decompositions cached in `ClassStats`, coordinates cached across beta/tau. Naive = a "
        "full `LELPSubclasses().fit` + `targets` + `assign` on every change. The AppTest "
        "rerun includes building the 50,000-point map figure and all tables, but not the "
        "browser's drawing.",
        "",
    ]
    (out / f"{name}.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000, help="points (default 100,000)")
    ap.add_argument("--repeat", type=int, default=3, help="timed repeats (median)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--name", default="subspaces", help="file stem of the results")
    args = ap.parse_args(argv)
    results = {
        "machine": machine_info(),
        "core": core_figures(args.rows, args.repeat),
        "page": page_figures(args.rows, args.repeat),
    }
    write(results, args.out, args.name)
    print((args.out / f"{args.name}.md").read_text())
    return results


if __name__ == "__main__":
    main()
