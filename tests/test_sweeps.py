"""Sweep aggregation on hand-made run records: seeds folded, ranked on the selection split."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lelp_studio import sweeps
from lelp_studio.config import RunConfig


def _run(rid: str, objective: str, seed: int, sel: float, test: float, **kw: Any) -> dict:
    cfg = RunConfig().model_dump(mode="json")
    cfg["train"].update(objective=objective, seed=seed, tau=kw.get("tau", 1.0))
    cfg["subclasses"].update(n_subclasses=kw.get("S", 4), beta=kw.get("beta", 1.0))
    cfg["name"] = f"run {rid}"
    metrics = {
        "student": {"accuracy": test, "agreement": 90.0},
        "student_select": {"accuracy": sel},
    }
    return {"run_id": rid, "config": cfg, "metrics": metrics}


def test_seeds_fold_into_one_row_with_mean_std_and_n() -> None:
    recs = [
        _run("a", "lelp", 0, 80.0, 70.0, S=2),
        _run("b", "lelp", 1, 82.0, 72.0, S=2),
        _run("c", "lelp", 2, 84.0, 74.0, S=2),
        _run("d", "lelp", 0, 81.0, 71.0, S=8),
    ]
    df = sweeps.aggregate(recs)
    assert list(df["S"]) == [2, 8]  # the one swept setting, by its short name
    top = df.iloc[0]
    assert top["n"] == 3 and top["seeds"] == [0, 1, 2]
    assert top["sel_mean"] == pytest.approx(82.0) and top["sel_std"] == pytest.approx(2.0)
    assert top["test_mean"] == pytest.approx(72.0) and top["test_std"] == pytest.approx(2.0)
    # Missing seeds are shown: S=8 ran seed 0 only.
    s8 = df[df["S"] == 8].iloc[0]
    assert s8["n"] == 1 and s8["missing_seeds"] == [1, 2] and np.isnan(s8["sel_std"])
    assert sorted(top["run_ids"]) == ["a", "b", "c"]


def test_ranking_is_made_on_the_selection_split_and_test_cannot_change_it() -> None:
    recs = [
        _run("a", "kd", 0, 85.0, 60.0, tau=1.0),
        _run("b", "kd", 0, 80.0, 99.0, tau=4.0),  # best on test, worse on selection
    ]
    df = sweeps.aggregate(recs)
    assert list(df["tau"]) == [1.0, 4.0] and list(df["rank"]) == [1, 2]
    assert sweeps.best_setting(df)["tau"] == 1.0
    # However high the test score goes, the ranking stays.
    recs[1]["metrics"]["student"]["accuracy"] = 100.0
    assert list(sweeps.aggregate(recs)["tau"]) == [1.0, 4.0]
    # A run without a selection score (made before it existed) ranks last.
    del recs[0]["metrics"]["student_select"]
    df = sweeps.aggregate(recs)
    assert list(df["tau"]) == [4.0, 1.0] and np.isnan(df.iloc[1]["sel_mean"])


def test_settings_a_run_ignored_do_not_split_it_and_objectives_sit_side_by_side() -> None:
    recs = [
        _run("h0", "hard", 0, 70.0, 69.0, tau=1.0),
        _run("h1", "hard", 1, 72.0, 71.0, tau=4.0),  # tau means nothing to hard labels
        _run("k1", "kd", 0, 75.0, 74.0, tau=1.0),
        _run("k4", "kd", 0, 77.0, 76.0, tau=4.0),
        _run("l2", "lelp", 0, 78.0, 77.0, S=2, tau=4.0),
        _run("l4", "lelp", 0, 79.0, 75.0, S=4, tau=4.0),
    ]
    df = sweeps.aggregate(recs)
    hard = df[df["objective"] == "hard"]
    assert len(hard) == 1 and hard.iloc[0]["n"] == 2
    side = sweeps.objective_rows(df)
    assert list(side["label"]) == ["lelp (best of 2)", "kd tau=1", "kd tau=4", "hard"]
    assert side.iloc[0]["S"] == 4  # LELP's best by selection score, though S=2 tests higher
    g = sweeps.grid(df[df["objective"] == "lelp"], "S", "tau")
    assert g["x"] == [2, 4] and g["y"] == [4.0]
    assert g["mean"][0].tolist() == [78.0, 79.0] and g["n"][0].tolist() == [1, 1]
    text = sweeps.text_table(df)
    assert "selection (ranks)" in text and "test (shown only)" in text


def test_best_setting_refuses_runs_with_no_selection_score() -> None:
    rec = _run("a", "kd", 0, 1.0, 2.0)
    del rec["metrics"]["student_select"]
    with pytest.raises(ValueError, match="selection-split score"):
        sweeps.best_setting(sweeps.aggregate([rec]))


def test_sweep_figures_carry_the_selection_means_and_spreads() -> None:
    from lelp_studio import plots

    recs = [
        _run(f"{s}-{b}-{seed}", "lelp", seed, 70 + s + b + seed, 0.0, S=s, beta=b)
        for s in (2, 4)
        for b in (0.5, 1.0)
        for seed in (0, 1)
    ]
    df = sweeps.aggregate(recs)
    heat = plots.sweep_heatmap(sweeps.grid(df, "S", "beta"))
    z = np.asarray(heat.data[0].z)
    assert z.shape == (2, 2) and z[1, 1] == pytest.approx(70 + 4 + 1.0 + 0.5)
    assert list(heat.data[0].x) == ["2", "4"] and "± %{customdata[0]" in heat.data[0].hovertemplate
    line = plots.sweep_line(df[df["beta"] == 1.0], "S")
    assert list(line.data[0].y) == pytest.approx([73.5, 75.5])
    assert list(line.data[0].error_y.array) == pytest.approx([np.sqrt(0.5)] * 2)
    bars = plots.objective_bars(sweeps.objective_rows(df))
    assert list(bars.data[0].x) == ["lelp (best of 4)"]


def test_lelp_vs_kd_says_beyond_the_noise_within_it_or_not_at_all() -> None:
    def table(lelp: tuple[float, ...], kd: tuple[float, ...]) -> Any:
        recs = [_run(f"l{i}", "lelp", i, v, 0.0, S=2) for i, v in enumerate(lelp)]
        recs += [_run(f"k{i}", "kd", i, v, 0.0) for i, v in enumerate(kd)]
        recs += [_run("k9", "kd", 0, 10.0, 99.0, tau=8.0)]  # a worse KD setting: not the best
        return sweeps.aggregate(recs)

    # stds 1.0 each: +3 is beyond one std, +0.5 within it, -1 is no win at all.
    beyond = sweeps.lelp_vs_kd(table((82.0, 84.0, 83.0), (79.0, 81.0, 80.0)))
    assert beyond is not None and beyond.startswith("LELP beats KD beyond the noise (+3.00 > std")
    assert "best LELP 83.00 (n=3) vs best KD 80.00 (n=3)" in beyond
    within = sweeps.lelp_vs_kd(table((80.0, 82.0, 81.5), (80.0, 82.0, 81.0)))
    assert within is not None and within.startswith("LELP is ahead of KD only within the noise")
    worse = sweeps.lelp_vs_kd(table((78.0, 80.0, 79.0), (79.0, 81.0, 80.0)))
    assert worse is not None and worse.startswith("LELP does not beat KD here (-1.00")
    one_seed = sweeps.lelp_vs_kd(table((90.0,), (80.0,)))
    assert one_seed is not None and "noise is unknown" in one_seed
    only_kd = sweeps.aggregate([_run("k", "kd", 0, 80.0, 80.0)])
    assert sweeps.lelp_vs_kd(only_kd) is None


def test_new_seeds_skip_the_ones_used() -> None:
    assert sweeps.new_seeds([0, 1, 3], 3) == [2, 4, 5]
    assert sweeps.new_seeds([], 2) == [0, 1]


def test_a_setting_the_objective_ignores_does_not_queue_the_same_student_twice() -> None:
    from lelp_studio.config import RunConfig
    from lelp_studio.jobs import expand_grid

    grid = {"train.objective": ["hard", "kd"], "train.tau": [1.0, 4.0], "train.seed": [0, 1]}
    assert len(sweeps.distinct_combos(grid, "kd")) == 6  # hard: 2 seeds; kd: 2 tau x 2 seeds
    members = expand_grid(RunConfig(), grid)
    assert len(members) == 6
    assert sorted(
        (m.train.objective, m.train.seed) for m in members if m.train.objective == "hard"
    ) == [
        ("hard", 0),
        ("hard", 1),
    ]
    lelp = {"subclasses.n_subclasses": [2, 4], "train.objective": ["kd", "lelp"]}
    assert len(sweeps.distinct_combos(lelp, "kd")) == 3  # S means nothing to kd
