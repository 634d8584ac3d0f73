"""bench/quality.py --quick on digits-bin: the rows, keys and files the committed table needs."""

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
    assert set(res) >= {"date", "machine", "datasets", "wall_s", "teacher"}
    assert res["machine"]["torch"] and res["machine"]["cpu"]
    assert list(res["datasets"]) == ["digits-bin"]
    md = (out / "quality.md").read_text()
    assert "## digits-bin" in md and "Best LELP" in md and "| kd tau=4 |" in md


def test_quick_has_every_family_once_per_setting(quick: tuple[dict[str, Any], Path]) -> None:
    d = quick[0]["datasets"]["digits-bin"]
    settings = [r["setting"] for r in d["rows"]]
    assert settings == [
        "hard",
        "kd tau=1",
        "kd tau=4",
        "lelp S=2 beta=1 tau=1",
        "lelp S=4 beta=1 tau=1",
        "kmeans",
        "oracle",
    ]
    assert d["latent_col"] == "digit"
    # Each class (even / odd) holds five digits: the oracle's subclass counts.
    assert d["latent_sizes"] == [5, 5]
    assert d["timings"]["runs"] == len(settings)  # --quick: one seed each


def test_quick_rows_hold_scores_in_range(quick: tuple[dict[str, Any], Path]) -> None:
    d = quick[0]["datasets"]["digits-bin"]
    assert d["teacher"]["accuracy"] > 90
    for r in d["rows"]:
        assert set(r) >= {"acc_mean", "acc_std", "agree_mean", "agree_std", "ari", "nmi", "seeds"}
        assert 50 < r["acc_mean"] <= 100 and 50 < r["agree_mean"] <= 100
        assert r["acc_std"] == 0.0 and r["seeds"] == [0]
        has_subclasses = r["family"] in ("lelp", "kmeans", "oracle")
        assert (r["ari"] is not None) == has_subclasses
    oracle = next(r for r in d["rows"] if r["family"] == "oracle")
    assert oracle["ari"] == pytest.approx(1.0)  # the oracle's subclasses are the digits


def test_summary_compares_best_lelp_with_best_kd(quick: tuple[dict[str, Any], Path]) -> None:
    d = quick[0]["datasets"]["digits-bin"]
    s = d["summary"]
    rows = {r["setting"]: r["acc_mean"] for r in d["rows"]}
    assert s["best_kd_acc"] == max(rows["kd tau=1"], rows["kd tau=4"])
    lelp = [v for k, v in rows.items() if k.startswith("lelp")]
    assert s["best_lelp_acc"] == max(lelp)
    assert s["diff"] == pytest.approx(s["best_lelp_acc"] - s["best_kd_acc"])
    assert s["clears_margin"] == (s["diff"] >= bq.MARGIN)


def test_summary_on_hand_made_rows() -> None:
    rows = [
        {"family": "hard", "setting": "hard", "acc_mean": 70.0, "acc_std": 0.0, "seeds": [0]},
        {"family": "kd", "setting": "kd tau=1", "acc_mean": 75.0, "acc_std": 0.1, "seeds": [0]},
        {"family": "kd", "setting": "kd tau=4", "acc_mean": 76.0, "acc_std": 0.2, "seeds": [0]},
        {"family": "lelp", "setting": "a", "acc_mean": 76.5, "acc_std": 0.3, "seeds": [0]},
        {"family": "lelp", "setting": "b", "acc_mean": 76.9, "acc_std": 0.4, "seeds": [0]},
        {"family": "oracle", "setting": "oracle", "acc_mean": 99.0, "acc_std": 0.0, "seeds": [0]},
    ]
    s = bq.summarize(rows)
    assert (s["best_kd"], s["best_lelp"], s["hard"]) == ("kd tau=4", "b", 70.0)
    assert s["diff"] == pytest.approx(0.9) and s["clears_margin"]  # the oracle is not LELP


def test_full_grid_is_the_issue_grid() -> None:
    st = bq.make_settings(quick=False, sizes_latent=[4, 4], ablations=False)
    lelp = [s for s in st if s.family == "lelp"]
    assert len(lelp) == 3 * 3 * 2
    assert {(s.n_subclasses, s.beta, s.tau) for s in lelp} == {
        (S, b, t) for S in (2, 4, 8) for b in (0.5, 1.0, 2.0) for t in (1.0, 4.0)
    }
    km = next(s for s in st if s.family == "kmeans")
    assert (km.n_subclasses, km.tau) == ([4, 4], 1.0)
    no_latent = bq.make_settings(quick=False, sizes_latent=None, ablations=False)
    assert "oracle" not in {s.family for s in no_latent}
    assert next(s for s in no_latent if s.family == "kmeans").n_subclasses == 4


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
    "kd tau=4",
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
    md = (out / "methods.md").read_text()
    assert "## digits-bin" in md and "## Where LELP ranks" in md and "frozen" in md
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


def _row(label: str, family: str, acc: float, std: float, tau: float = 1.0) -> dict[str, Any]:
    return {"label": label, "family": family, "acc_mean": acc, "acc_std": std, "tau": tau}


def test_lelp_rank_on_hand_made_rows() -> None:
    rows = [
        _row("hard", "hard", 80.0, 0.5),
        _row("kd1", "kd", 81.0, 0.2, 1.0),
        _row("kd4", "kd", 82.0, 0.2, 4.0),
        _row("lelp", "lelp", 83.0, 0.4),
        _row("sd", "subclass-distill", 83.3, 0.5),
        _row("disk", "disk", 85.0, 0.1),
    ]
    shown = bq.table_rows(rows)
    assert [r["label"] for r in shown] == [
        "hard",
        "KD (tau=4; best of tau 1/4)",
        "lelp",
        "sd",
        "disk",
    ]
    k = bq.lelp_rank(rows)
    assert (k["rank"], k["n_rows"], k["winner"]) == (3, 5, "disk")
    assert k["vs_best_other"] == pytest.approx(-2.0) and k["vs_best_other_beyond_std"]
    assert k["vs_kd"] == pytest.approx(1.0) and k["vs_hard"] == pytest.approx(3.0)
    # sd is 0.3 above with std 0.5: within one std; disk 2.0 above: beyond.
    assert k["above_by_more_than_std"] == ["disk"]
    assert k["below_by_more_than_std"] == ["KD (tau=4; best of tau 1/4)", "hard"]
    text = bq.rank_sentence("toy", k)
    assert "ranks **3 of 5**" in text and "disk wins" in text and "(more than one std)" in text


def test_best_lelp_setting_reads_quality_json() -> None:
    q = {
        "datasets": {
            "sst2": {
                "summary": {"best_lelp": "lelp S=8 beta=2 tau=4"},
                "rows": [
                    {
                        "setting": "lelp S=2 beta=1 tau=1",
                        "n_subclasses": 2,
                        "beta": 1.0,
                        "tau": 1.0,
                        "acc_mean": 70.0,
                        "acc_std": 1.0,
                        "seeds": [0],
                    },
                    {
                        "setting": "lelp S=8 beta=2 tau=4",
                        "n_subclasses": 8,
                        "beta": 2.0,
                        "tau": 4.0,
                        "acc_mean": 77.0,
                        "acc_std": 0.5,
                        "seeds": [0, 1, 2],
                    },
                ],
            }
        }
    }
    got = bq.best_lelp_setting(q, "sst2")
    assert (got["n_subclasses"], got["beta"], got["tau"], got["quality_acc"]) == (8, 2.0, 4.0, 77)
    miss = bq.best_lelp_setting(q, "trec")
    assert {k: miss[k] for k in bq.DEFAULT_LELP} == bq.DEFAULT_LELP
    assert "no LELP row for trec" in miss["source"]
    assert "no quality.json" in bq.best_lelp_setting(None, "trec")["source"]


@pytest.mark.parametrize("cpu_text", [True, False])
def test_method_settings_apply_the_recommended_overrides(cpu_text: bool) -> None:
    lelp = {"n_subclasses": 2, "beta": 0.5, "tau": 4.0}
    st = {s.key: s for s in bq.method_settings(False, [5, 5], lelp, cpu_text)}
    assert list(st) == [
        "hard",
        "kd tau=1",
        "kd tau=4",
        "fitnet+kd",
        "fitnet alone",
        "sea",
        "sea diverse",
        "compress two",
        "compress one",
        "reaugkd",
        "subclass-distill",
        "lelp S=2 beta=0.5 tau=4",
        "kmeans",
        "oracle",
        "disk",
    ]
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
    md = (out / "dwt.md").read_text()
    assert "## The paper's findings, checked here" in md and "Text datasets: not run" in md


def test_dwt_findings_on_hand_made_rows() -> None:
    def r(key: str, acc: float, std: float) -> dict[str, Any]:
        return {"setting": key, "label": key, "acc_mean": acc, "acc_std": std}

    rows = [
        r("hard", 90.0, 0.5),
        r("dwt constant 4", 92.0, 0.3),
        r("dwt constant 1", 91.9, 0.3),
        r("dwt linear", 92.1, 0.2),
        r("dwt linear remap", 93.0, 0.2),
    ]
    f = {x["claim"]: x for x in bq.dwt_findings(rows)}
    helps = f["DWT (4 -> 1) from a weaker teacher beats hard labels"]
    assert helps["diff"] == pytest.approx(2.1) and helps["same_direction"] and helps["beyond_std"]
    decay = f["decaying the soft weight 4 -> 1 beats keeping it at 4"]
    assert decay["same_direction"] and not decay["beyond_std"]
    best = f["the best soft-label row beats hard labels"]
    assert best["a"] == "dwt linear" and best["diff"] == pytest.approx(2.1)
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
    assert [r["setting"] for r in d["rows"]] == ["hard", "kd tau=4", "amad w=1"]
    amad = d["rows"][-1]["method_info"]
    assert amad["amad_teacher_heads"]["mean"] == 12 and amad["amad_student_heads"]["mean"] == 4
    md = (out / "amad.md").read_text()
    assert "| AMAD (kl, weight 1, tau=4) |" in md and "## AMAD against KD" in md
    assert "one seed: no spread" in md


def test_amad_settings_cover_kd_lelp_and_two_weights() -> None:
    lelp = {"n_subclasses": 8, "beta": 0.5, "tau": 4.0}
    rows = {r.key: r for r in bq.amad_settings(False, lelp)}
    assert set(rows) == {"hard", "kd tau=1", "kd tau=4", "lelp S=8 beta=0.5 tau=4", "amad w=1",
                         "amad w=0.1"}  # fmt: skip
    spec = rows["amad w=0.1"].train_spec(bq.TrainSpec())
    assert spec.objective == "amad" and spec.amad.weight == 0.1 and spec.tau == 4.0
