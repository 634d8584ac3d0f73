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
