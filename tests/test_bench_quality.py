"""bench/quality.py --quick on digits-bin: the rows, keys and files the committed table needs,
and issue 13's protocol: picks on the selection split, equal KD/LELP budgets, plain verdicts."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_quality", REPO / "bench" / "quality.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_quality"] = mod
    spec.loader.exec_module(mod)
    return mod


bq = _load_bench()


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench")
    ws = tmp_path_factory.mktemp("ws")
    bq.main(["--quick", "--out", str(out), "--workspace", str(ws)])
    return json.loads((out / "quality.json").read_text()), out


def test_quick_writes_json_and_md(quick: tuple[dict[str, Any], Path]) -> None:
    res, out = quick
    assert set(res) >= {"date", "machine", "datasets", "wall_s", "teacher", "protocol"}
    assert res["protocol"] == bq.PROTOCOL
    assert res["machine"]["torch"] and res["machine"]["cpu"]
    assert list(res["datasets"]) == ["digits-bin"]
    d = res["datasets"]["digits-bin"]
    assert d["selection"]["split"] == "dev" and "holdout" in d["selection"]["source"]
    md = (out / "quality.md").read_text()
    assert "## digits-bin" in md and "Best LELP" in md and "| kd tau=4 alpha=0 |" in md
    # The tables name the selection split and its source, and show its accuracy column.
    assert "picked on the selection split (dev: a stratified 10% holdout" in md
    assert "selection accuracy" in md and "Does distillation pay here?" in md
    assert "| best KD | 2 |" in md and "| best LELP | 2 |" in md and "| KD default | 1 |" in md


def test_quick_has_every_family_once_per_setting(quick: tuple[dict[str, Any], Path]) -> None:
    d = quick[0]["datasets"]["digits-bin"]
    settings = [r["setting"] for r in d["rows"]]
    assert settings == [
        "hard",
        "kd tau=1 alpha=0",
        "kd tau=4 alpha=0",
        "lelp S=2 beta=1 tau=1",
        "lelp S=4 beta=1 tau=1",
        "kmeans",
        "oracle",
    ]
    assert d["latent_col"] == "digit"
    # Each class (even / odd) holds five digits: the oracle's subclass counts.
    assert d["latent_sizes"] == [5, 5]
    assert d["timings"]["runs"] == len(settings)  # --quick: one seed each
    # Equal tuning budgets, also in --quick.
    assert d["summary"]["n_kd"] == d["summary"]["n_lelp"] == 2


def test_quick_rows_hold_scores_in_range(quick: tuple[dict[str, Any], Path]) -> None:
    d = quick[0]["datasets"]["digits-bin"]
    assert d["teacher"]["accuracy"] > 90 and d["teacher"]["select_accuracy"] > 90
    for r in d["rows"]:
        keys = {"acc_mean", "acc_std", "agree_mean", "agree_std", "ari", "nmi", "seeds"}
        assert set(r) >= keys | {"sel_mean", "sel_std", "sel_values", "alpha", "n_tried"}
        assert 50 < r["acc_mean"] <= 100 and 50 < r["agree_mean"] <= 100
        assert 50 < r["sel_mean"] <= 100 and len(r["sel_values"]) == 1
        assert r["acc_std"] == 0.0 and r["sel_std"] == 0.0 and r["seeds"] == [0]
        has_subclasses = r["family"] in ("lelp", "kmeans", "oracle")
        assert (r["ari"] is not None) == has_subclasses
    oracle = next(r for r in d["rows"] if r["family"] == "oracle")
    assert oracle["ari"] == pytest.approx(1.0)  # the oracle's subclasses are the digits


def test_summary_picks_on_the_selection_split(quick: tuple[dict[str, Any], Path]) -> None:
    d = quick[0]["datasets"]["digits-bin"]
    s = d["summary"]
    rows = d["rows"]
    for fam in ("kd", "lelp"):
        fr = [r for r in rows if r["family"] == fam]
        best = max(fr, key=lambda r: r["sel_mean"])  # the first on ties, like best_row
        assert s[f"best_{fam}"] == best["setting"] and s[f"best_{fam}_acc"] == best["acc_mean"]
        assert s[f"best_{fam}_sel"] == best["sel_mean"]
    assert s["kd_default"] == "kd tau=4 alpha=0" and s["lelp_default"] == "lelp S=4 beta=1 tau=1"
    assert s["diff"] == pytest.approx(s["best_lelp_acc"] - s["best_kd_acc"])
    assert s["clears_margin"] == (s["diff"] >= bq.MARGIN) and s["picked_on"] == "dev"
    g = d["distill_gap"]
    hard = rows[0]
    assert g["gap"] == pytest.approx(d["teacher"]["select_accuracy"] - hard["sel_mean"])


def _hm(family: str, setting: str, acc: float, std: float, sel: float, **kw: Any) -> dict[str, Any]:
    return {"family": family, "setting": setting, "acc_mean": acc, "acc_std": std,
            "sel_mean": sel, "sel_std": 0.0, "seeds": [0, 1, 2], "tau": 1.0, **kw}  # fmt: skip


def test_summary_on_hand_made_rows_never_picks_on_test() -> None:
    rows = [
        _hm("hard", "hard", 70.0, 0.0, 71.0),
        _hm("kd", "kd tau=1 alpha=0", 75.0, 0.1, 77.0),
        _hm("kd", "kd tau=4 alpha=0", 76.0, 0.2, 76.0, tau=4.0),  # best test, worse selection
        _hm("lelp", "a", 76.5, 0.3, 78.0, n_subclasses=2, beta=1.0),
        _hm("lelp", "b", 79.9, 0.4, 77.5, n_subclasses=4, beta=1.0),  # best test: not picked
        _hm("oracle", "oracle", 99.0, 0.0, 99.0),
    ]
    s = bq.summarize(rows)
    assert (s["best_kd"], s["best_lelp"], s["hard"]) == ("kd tau=1 alpha=0", "a", 70.0)
    assert (s["kd_default"], s["lelp_default"]) == ("kd tau=4 alpha=0", "b")
    assert (s["n_kd"], s["n_lelp"]) == (2, 2)
    assert s["diff"] == pytest.approx(1.5) and s["clears_margin"]  # the oracle is not LELP
    assert s["lelp_vs_kd"] == "beyond one std" and s["beyond_std"]
    assert "LELP beats KD beyond one std" in bq.verdict_sentence(s)
    rows[3]["acc_mean"] = 75.2  # +0.2, within the larger std 0.3
    assert bq.summarize(rows)["lelp_vs_kd"] == "within noise"
    rows[3]["acc_mean"] = 74.0
    s = bq.summarize(rows)
    assert s["lelp_vs_kd"] == "not at all" and "KD is ahead beyond one std" in bq.verdict_sentence(
        s
    )


def test_distill_gap_says_when_distillation_cannot_pay() -> None:
    hard = {"sel_mean": 80.75, "sel_std": 0.39, "sel_values": [80.36, 80.75, 81.14]}
    g = bq.distill_gap(80.96, hard)
    assert g["gap"] == pytest.approx(0.21) and not g["pays"]
    assert "not meaningfully better than a hard-label student here" in bq.gap_sentence(g)
    assert "no distillation objective can help much" in bq.gap_sentence(g)
    spread = {"sel_mean": 80.0, "sel_std": 2.0, "sel_values": [78.0, 80.0, 82.0]}
    assert not bq.distill_gap(82.0, spread)["pays"]  # +2 is within the seeds' spread of 4
    ok = bq.distill_gap(85.0, hard)
    assert ok["pays"] and "room for distillation" in bq.gap_sentence(ok)
    # The one rule the app, the CLI and the benchmark share (lelp_studio.headroom).
    from lelp_studio.headroom import verdict

    for t, h in ((80.96, hard), (82.0, spread), (85.0, hard)):
        assert bq.distill_gap(t, h)["pays"] == verdict(t, h["sel_values"])["pays"]


def test_benchmark_rows_fold_seeds_through_the_sweep_aggregation() -> None:
    """The benchmark's per-setting means and its best pick come out of lelp_studio.sweeps, the code
    behind `lelp runs` and Compare's sweep view."""
    from lelp_studio import sweeps
    from lelp_studio.config import RunConfig

    def rec(tau: float, seed: int, sel: float, test: float) -> dict:
        cfg = RunConfig().model_dump(mode="json")
        cfg["train"].update(objective="kd", tau=tau, seed=seed)
        metrics = {"student": {"accuracy": test, "agreement": 90.0},
                   "student_select": {"accuracy": sel}}  # fmt: skip
        return {"run_id": f"{tau}-{seed}", "config": cfg, "metrics": metrics}

    a = [rec(1.0, 0, 80.0, 70.0), rec(1.0, 1, 82.0, 72.0)]
    b = [rec(4.0, 0, 79.0, 99.0), rec(4.0, 1, 80.0, 99.0)]
    fa = bq._fold(a)
    assert fa["sel_mean"] == 81.0 and fa["test_mean"] == 71.0
    assert fa["sel_std"] == pytest.approx(2.0**0.5)
    rows = [dict(bq._fold(r), family="kd", tau=r[0]["config"]["train"]["tau"]) for r in (a, b)]
    assert bq.best_row(rows, "kd")["tau"] == sweeps.best_setting(sweeps.aggregate(a + b))["tau"]


def test_full_grid_is_the_issue_grid_and_kd_gets_as_many_points() -> None:
    st = bq.make_settings(quick=False, sizes_latent=[4, 4], ablations=False)
    lelp = [s for s in st if s.family == "lelp"]
    kd = [s for s in st if s.family == "kd"]
    assert len(lelp) == len(kd) == 3 * 3 * 2
    assert {(s.n_subclasses, s.beta, s.tau) for s in lelp} == {
        (S, b, t) for S in (2, 4, 8) for b in (0.5, 1.0, 2.0) for t in (1.0, 4.0)
    }
    assert {(s.tau, s.train_spec(bq.TrainSpec()).alpha) for s in kd} == {
        (t, a) for t in (1.0, 2.0, 3.0, 4.0, 6.0, 8.0) for a in (0.0, 0.25, 0.5)
    }
    # Each default is one of its grid's points.
    assert bq.kd_key(**bq.KD_DEFAULT) in {s.key for s in kd}
    assert bq.lelp_key(**bq.DEFAULT_LELP) in {s.key for s in lelp}
    km = next(s for s in st if s.family == "kmeans")
    assert (km.n_subclasses, km.tau) == ([4, 4], 1.0)
    no_latent = bq.make_settings(quick=False, sizes_latent=None, ablations=False)
    assert "oracle" not in {s.family for s in no_latent}
    assert next(s for s in no_latent if s.family == "kmeans").n_subclasses == 4
    quick = bq.make_settings(quick=True, sizes_latent=None, ablations=False)
    assert sum(s.family == "kd" for s in quick) == sum(s.family == "lelp" for s in quick) == 2


# --------------------------------------------------------------------------- methods table


@pytest.fixture(scope="module")
def methods_quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench_methods")
    ws = tmp_path_factory.mktemp("ws_methods")
    absent = out / "no-quality.json"  # hermetic: the LELP row falls back to DEFAULT_LELP
    argv = ["--table", "methods", "--quick", "--out", str(out), "--workspace", str(ws)]
    bq.main([*argv, "--quality-json", str(absent)])
    return json.loads((out / "methods.json").read_text()), out


QUICK_METHOD_KEYS = [
    "hard",
    "kd tau=4 alpha=0",
    "fitnet+kd",
    "reaugkd",
    "subclass-distill",
    "lelp S=4 beta=1 tau=1",
    "oracle",
    "disk",
]


def test_methods_quick_rows_and_files(methods_quick: tuple[dict[str, Any], Path]) -> None:
    res, out = methods_quick
    assert res["table"] == "methods" and list(res["datasets"]) == ["digits-bin"]
    d = res["datasets"]["digits-bin"]
    assert [r["setting"] for r in d["rows"]] == QUICK_METHOD_KEYS
    assert d["config"]["train"]["epochs"] == 2 and d["seeds"] == [0]
    assert d["lelp_setting"]["source"].startswith("default (no quality.json")
    assert d["kd_setting"]["source"].startswith("default (no quality.json")
    assert res["protocol"] == bq.PROTOCOL and d["selection"]["split"] == "dev"
    md = (out / "methods.md").read_text()
    assert "## digits-bin" in md and "## Where LELP ranks" in md and "frozen" in md
    assert "| N tried | selection accuracy | test accuracy |" in md
    assert "Does distillation pay here?" in md and "selection 144 (a stratified 10% holdout" in md
    assert "| KD (tau=4, alpha=0; default) | 1 |" in md
    for label in ("hard labels", "ReAugKD (tau=4)", "Scaffolding (DiSK)", "oracle subclasses"):
        assert f"| {label} |" in md
    assert "retrieval +" in md and "retrained teacher" in md


def test_methods_quick_rows_hold_fidelity_and_calibration(
    methods_quick: tuple[dict[str, Any], Path],
) -> None:
    d = methods_quick[0]["datasets"]["digits-bin"]
    for r in d["rows"]:
        assert 0 <= r["acc_mean"] <= 100 and 0 <= r["agree_mean"] <= 100
        assert 0 <= r["train_agree_mean"] <= 100
        assert r["kl_mean"] >= 0 and r["train_kl_mean"] >= 0
        assert 0 <= r["ece_mean"] <= 1
        assert r["run_s_mean"] > 0 and len(r["kl_values"]) == 1
    rows = {r["setting"]: r for r in d["rows"]}
    info = rows["reaugkd"]["method_info"]
    assert info["retrieval_overhead_pct"]["mean"] > 0 and info["retrieval_s"]["mean"] > 0
    # The retrained subclass teacher keeps roughly the frozen teacher's accuracy on digits.
    sd = rows["subclass-distill"]["method_info"]["subclass_teacher_accuracy"]["mean"]
    assert sd > 85
    assert rows["hard"]["method_info"] == {}  # hard/kd/lelp are not Method objects


def test_methods_quick_ranking_matches_rows(methods_quick: tuple[dict[str, Any], Path]) -> None:
    d = methods_quick[0]["datasets"]["digits-bin"]
    k = d["ranking"]
    lelp = next(r for r in d["rows"] if r["family"] == "lelp")
    better = [r for r in d["rows"] if r["acc_mean"] > lelp["acc_mean"]]
    assert k["rank"] == len(better) + 1 and k["n_rows"] == len(d["rows"])  # one KD row
    assert k["winner_acc"] == max(r["acc_mean"] for r in d["rows"])


def _row(
    label: str, family: str, acc: float, std: float, tau: float = 1.0, sel: float = 0.0
) -> dict[str, Any]:
    return {"label": label, "setting": label, "family": family, "acc_mean": acc,
            "acc_std": std, "tau": tau, "sel_mean": sel}  # fmt: skip


def test_lelp_rank_on_hand_made_rows() -> None:
    rows = [
        _row("hard", "hard", 80.0, 0.5),
        _row("kd1", "kd", 82.0, 0.2, 1.0, sel=80.0),  # better test, worse selection
        _row("kd2", "kd", 81.0, 0.2, 2.0, sel=81.0),  # picked on the selection split
        _row("kd4", "kd", 79.0, 0.2, 4.0, sel=79.0),  # the default: shown too
        _row("lelp", "lelp", 83.0, 0.4, sel=82.0),
        _row("sd", "subclass-distill", 83.3, 0.5),
        _row("disk", "disk", 85.0, 0.1),
    ]
    shown = bq.table_rows(rows)
    assert [r["label"] for r in shown] == [
        "hard",
        "kd2 (best of 3 on dev)",
        "kd4 (default)",
        "lelp",
        "sd",
        "disk",
    ]  # kd1, best on test, is not shown
    k = bq.lelp_rank(rows)
    assert (k["rank"], k["n_rows"], k["winner"]) == (3, 6, "disk")
    assert k["vs_best_other"] == pytest.approx(-2.0) and k["vs_best_other_beyond_std"]
    # Against the KD picked on the selection split (kd2), not the one best on test (kd1).
    assert k["vs_kd"] == pytest.approx(2.0) and k["vs_hard"] == pytest.approx(3.0)
    assert k["kd"] == "kd2 (best of 3 on dev)" and k["lelp_vs_kd"] == "beyond one std"
    # sd is 0.3 above with std 0.5: within one std; disk 2.0 above: beyond.
    assert k["above_by_more_than_std"] == ["disk"]
    assert k["below_by_more_than_std"] == ["kd2 (best of 3 on dev)", "hard", "kd4 (default)"]
    text = bq.rank_sentence("toy", k)
    assert "ranks **3 of 6**" in text and "disk wins" in text and "(more than one std)" in text
    assert "LELP beats KD beyond one std" in text


def test_best_lelp_setting_reads_quality_json() -> None:
    q = {
        "protocol": bq.PROTOCOL,
        "datasets": {
            "sst2": {
                "summary": {"best_lelp": "lelp S=8 beta=2 tau=4", "n_lelp": 18},
                "rows": [
                    {
                        "setting": "lelp S=2 beta=1 tau=1",
                        "n_subclasses": 2,
                        "beta": 1.0,
                        "tau": 1.0,
                        "acc_mean": 70.0,
                        "acc_std": 1.0,
                        "sel_mean": 69.0,
                        "seeds": [0],
                    },
                    {
                        "setting": "lelp S=8 beta=2 tau=4",
                        "n_subclasses": 8,
                        "beta": 2.0,
                        "tau": 4.0,
                        "acc_mean": 77.0,
                        "acc_std": 0.5,
                        "sel_mean": 76.0,
                        "seeds": [0, 1, 2],
                    },
                ],
            }
        },
    }
    got = bq.best_lelp_setting(q, "sst2")
    assert (got["n_subclasses"], got["beta"], got["tau"], got["quality_acc"]) == (8, 2.0, 4.0, 77)
    assert (got["n_tried"], got["quality_sel"]) == (18, 76.0)
    assert "best of 18 on dev" in got["source"]
    miss = bq.best_lelp_setting(q, "trec")
    assert {k: miss[k] for k in bq.DEFAULT_LELP} == bq.DEFAULT_LELP
    assert "no lelp row for trec" in miss["source"] and miss["n_tried"] == 1
    assert "no quality.json" in bq.best_lelp_setting(None, "trec")["source"]
    kd = bq.best_setting(q, "sst2", "kd")  # no KD row: KD's default
    assert (kd["tau"], kd["alpha"], kd["n_tried"]) == (4.0, 0.0, 1)
    # A quality.json from before issue 13 picked on test: its best rows are not reused.
    old = bq.best_lelp_setting({"datasets": q["datasets"]}, "sst2")
    assert "picked on test" in old["source"] and old["n_subclasses"] == 4


@pytest.mark.parametrize("cpu_text", [True, False])
def test_method_settings_apply_the_recommended_overrides(cpu_text: bool) -> None:
    lelp = {"n_subclasses": 2, "beta": 0.5, "tau": 4.0, "n_tried": 18}
    kd = {"tau": 2.0, "alpha": 0.25, "n_tried": 18}
    made = bq.method_settings(False, [5, 5], lelp, cpu_text, kd)
    st = {s.key: s for s in made}
    assert list(st) == [
        "hard",
        "kd tau=4 alpha=0",
        "kd tau=2 alpha=0.25",
        "fitnet+kd",
        "fitnet alone",
        "sea",
        "sea diverse",
        "compress two",
        "compress one",
        "reaugkd",
        "subclass-distill",
        "lelp S=4 beta=1 tau=1",
        "lelp S=2 beta=0.5 tau=4",
        "kmeans",
        "oracle",
        "disk",
    ]
    # Defaults at N = 1, the best of 18 labelled with its N and split.
    assert (st["kd tau=4 alpha=0"].n_tried, st["kd tau=2 alpha=0.25"].n_tried) == (1, 18)
    assert st["lelp S=2 beta=0.5 tau=4"].label == "LELP (S=2, beta=0.5, tau=4; best of 18 on dev)"
    assert st["kd tau=2 alpha=0.25"].train_spec(bq.TrainSpec()).alpha == 0.25
    # When the best is the default, one row says both.
    same = bq.method_settings(False, None, bq.DEFAULT_LELP | {"n_tried": 18}, cpu_text)
    lelp_rows = [s for s in same if s.family == "lelp"]
    assert len(lelp_rows) == 1 and "default, also best of 18 on dev" in str(lelp_rows[0].label)
    base = bq.TrainSpec()
    alone = st["fitnet alone"].train_spec(base)
    assert (alone.objective, alone.alpha, alone.fitnet.kd_weight) == ("fitnet", 1.0, 0.0)
    one = st["compress one"].train_spec(base)
    assert (one.objective, one.tau, one.compress.queues) == ("compress", 4.0, "one")
    assert one.compress.queue_size == (bq.CPU_QUEUE if cpu_text else None)
    assert st["sea diverse"].train_spec(base).sea.sampling == "diverse"
    disk = st["disk"].train_spec(base)
    assert (disk.objective, disk.tau, disk.alpha) == ("disk", 4.0, 1.0)
    assert st["lelp S=2 beta=0.5 tau=4"].subclass_spec(None).beta == 0.5
    assert st["kmeans"].n_subclasses == [5, 5]


# --------------------------------------------------------------------------- DWT table


@pytest.fixture(scope="module")
def dwt_quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench_dwt")
    ws = tmp_path_factory.mktemp("ws_dwt")
    bq.main(["--table", "dwt", "--quick", "--out", str(out), "--workspace", str(ws)])
    return json.loads((out / "dwt.json").read_text()), out


def test_dwt_quick_rows_and_invariants(dwt_quick: tuple[dict[str, Any], Path]) -> None:
    res, out = dwt_quick
    d = res["datasets"]["digits-bin"]
    assert [r["setting"] for r in d["rows"]] == [
        "hard",
        "kd alpha=1",
        "dwt constant 1",
        "dwt constant 4",
        "dwt linear",
        "dwt linear remap",
    ]
    assert d["config"]["teacher"]["hidden"] == bq.DWT_TEACHER_HIDDEN
    assert d["config"]["student"]["hidden"] == 128 and d["config"]["student"]["layers"] == 3
    rows = {r["setting"]: r for r in d["rows"]}
    # KD + hard at alpha 1 and DWT at a constant soft weight 1 are the same loss, same seed.
    for key in ("acc_mean", "agree_mean", "kl_mean"):
        assert rows["kd alpha=1"][key] == pytest.approx(rows["dwt constant 1"][key], abs=1e-6)
    assert rows["dwt linear remap"]["method_info"]["dwt_remap"] == {"values": [True]}
    assert len(d["findings"]) == 5
    assert res["protocol"] == bq.PROTOCOL and all("sel_mean" in r for r in d["rows"])
    md = (out / "dwt.md").read_text()
    assert "## The paper's findings, checked here" in md and "Text datasets: not run" in md
    assert "picked on the selection split (dev:" in md and "| N tried | selection accuracy |" in md


def test_dwt_findings_on_hand_made_rows() -> None:
    def r(key: str, acc: float, std: float, sel: float = 0.0) -> dict[str, Any]:
        return {"setting": key, "label": key, "acc_mean": acc, "acc_std": std, "sel_mean": sel}

    rows = [
        r("hard", 90.0, 0.5),
        r("dwt constant 4", 92.0, 0.3),
        r("dwt constant 1", 91.9, 0.3),
        r("dwt linear", 92.1, 0.2, sel=95.0),  # the best soft row on the selection split
        r("dwt linear remap", 93.0, 0.2),
    ]
    f = {x["claim"]: x for x in bq.dwt_findings(rows)}
    helps = f["DWT (4 -> 1) from a weaker teacher beats hard labels"]
    assert helps["diff"] == pytest.approx(2.1) and helps["same_direction"] and helps["beyond_std"]
    decay = f["decaying the soft weight 4 -> 1 beats keeping it at 4"]
    assert decay["same_direction"] and not decay["beyond_std"]
    best = f["the best soft-label row beats hard labels"]
    assert best["a"] == "dwt linear" and best["diff"] == pytest.approx(2.1)
    assert best["n_tried"] == 3
    rows[1]["sel_mean"] = 96.0  # constant 4 is now best on selection, though worse on test
    best = {x["claim"]: x for x in bq.dwt_findings(rows)}[
        "the best soft-label row beats hard labels"
    ]
    assert best["a"] == "dwt constant 4" and best["diff"] == pytest.approx(2.0)
    remap = f["parameter remapping hurts"]
    assert not remap["same_direction"] and remap["beyond_std"]


# --------------------------------------------------------------------------- AMAD table


def test_amad_quick_runs_a_transformer_student_on_the_text_demo(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    out = tmp_path_factory.mktemp("bench_amad")
    ws = tmp_path_factory.mktemp("ws_amad")
    argv = ["--table", "amad", "--quick", "--out", str(out), "--workspace", str(ws)]
    res = bq.main([*argv, "--quality-json", str(out / "absent.json")])
    d = res["datasets"]["text-demo"]
    assert list(res["datasets"]) == ["text-demo"]  # --quick needs no shared data
    assert d["config"]["student"]["kind"] == "transformer"
    assert [r["setting"] for r in d["rows"]] == ["hard", "kd tau=4 alpha=0", "amad w=1"]
    amad = d["rows"][-1]["method_info"]
    assert amad["amad_teacher_heads"]["mean"] == 12 and amad["amad_student_heads"]["mean"] == 4
    md = (out / "amad.md").read_text()
    assert "| AMAD (kl, weight 1, tau=4) |" in md and "## AMAD against KD" in md
    assert "one seed: no spread" in md


def test_amad_settings_cover_kd_lelp_and_two_weights() -> None:
    lelp = {"n_subclasses": 8, "beta": 0.5, "tau": 4.0}
    rows = {r.key: r for r in bq.amad_settings(False, lelp)}
    assert set(rows) == {"hard", "kd tau=4 alpha=0", "lelp S=4 beta=1 tau=1",
                         "lelp S=8 beta=0.5 tau=4", "amad w=1", "amad w=0.1"}  # fmt: skip
    spec = rows["amad w=0.1"].train_spec(bq.TrainSpec())
    assert spec.objective == "amad" and spec.amad.weight == 0.1 and spec.tau == 4.0
