"""bench/transfer.py (issue 15 item 5): the choices and the verdict it reports, on hand-made
rows (the run itself takes an hour; its quick mode is run by hand, see bench/README.md)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_transfer", REPO / "bench" / "transfer.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_transfer"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


T = _bench()


def _row(family: str, setting: str, sel: float, test: float, std: float = 0.5) -> dict[str, Any]:
    return {
        "family": family,
        "setting": setting,
        "seeds": [0, 1, 2],
        "sel_mean": sel,
        "test_mean": test,
        "test_std": std,
        "sel_std": std,
        "official_mean": None,
        "agree_mean": 90.0,
        "agree_std": 0.1,
        "s_mean": 1.0,
        "rows_used": {"labeled": 100, "transfer": 900},
    }


def test_every_method_gets_the_same_tuning_budget() -> None:
    for quick in (False, True):
        sizes = {fam: len(arms) for fam, arms in T.grids(quick).items()}
        assert set(sizes) == {"hard", "kd", "lelp"}
        assert len(set(sizes.values())) == 1, sizes


def test_the_pick_is_made_on_the_selection_split_never_on_test() -> None:
    rows = [_row("kd", "a", sel=80.0, test=70.0), _row("kd", "b", sel=79.0, test=90.0)]
    assert T.pick(rows, "kd")["setting"] == "a"


def test_gap_closed_by_hand() -> None:
    hard = _row("hard", "h", 0, test=70.0)
    assert T.gap_closed(_row("kd", "k", 0, test=75.0), hard, 80.0, "test") == pytest.approx(0.5)
    assert T.gap_closed(_row("kd", "k", 0, test=68.0), hard, 80.0, "test") == pytest.approx(-0.2)
    assert math.isnan(T.gap_closed(_row("kd", "k", 0, test=75.0), hard, 70.0, "test"))
    assert math.isnan(T.gap_closed(_row("kd", "k", 0, test=75.0), hard, 65.0, "test"))


def test_verdict_says_yes_only_when_both_targets_hold() -> None:
    hard = _row("hard", "h", 0, test=70.0)
    good = T.verdict(
        {"hard": hard, "kd": _row("kd", "k", 0, 76.0), "lelp": _row("lelp", "l", 0, 78.0)}, 80.0
    )
    assert good["half_closed"] and good["lelp_beats_kd_by_std"]
    assert good["kd_closed"] == pytest.approx(0.6) and good["lelp_closed"] == pytest.approx(0.8)
    # LELP ahead by less than a standard deviation, and KD short of half the gap.
    bad = T.verdict(
        {
            "hard": hard,
            "kd": _row("kd", "k", 0, 74.0, std=1.0),
            "lelp": _row("lelp", "l", 0, 74.5, std=1.0),
        },
        80.0,
    )
    assert not bad["half_closed"] and not bad["lelp_beats_kd_by_std"]


def test_report_names_machine_protocol_and_verdict() -> None:
    picked = {
        "hard": _row("hard", "hard epochs=8", 0, 70.0),
        "kd": _row("kd", "kd tau=4 alpha=0", 0, 74.0, std=1.0),
        "lelp": _row("lelp", "lelp S=4 beta=1", 0, 74.5, std=1.0),
    }
    res = {
        "generated": "2026-12-02T06:00:00+00:00",
        "wall_s": 120.0,
        "machine": {"cpu": "Test CPU", "cpu_count": 2, "torch": "2.13.0", "torch_threads": 2},
        "n_labeled": 4500,
        "n_select": 500,
        "n_test": 9932,
        "n_official": 359,
        "transfer_info": {"kept": 84000, "dropped": {}},
        "teacher": {
            "select": 81.0,
            "test": 80.0,
            "official": 82.0,
            "cache_hit": False,
            "prepare_s": 120.0,
        },
        "students": {
            "bag": {
                "rows": list(picked.values()),
                "picked": picked,
                "verdict": T.verdict(picked, 80.0),
            }
        },
    }
    md = T.render_md(res)
    assert "Test CPU" in md and "2026-12-02" in md
    assert "never chooses" in md
    assert "Half the gap closed by both KD and LELP: **no**" in md
    assert "LELP beats KD by more than one std on test: **no**" in md
    assert "| KD (labeled + transfer) | kd tau=4 alpha=0 |" in md
    assert "Fine-tune plus the pass over all rows: 2.0 min." in md


def test_a_cached_teacher_reports_what_it_first_cost() -> None:
    t = {"cache_hit": True, "compute_s": 1355.0, "prepare_s": 6.0}
    assert T.teacher_cost(t) == (
        "Teacher outputs from the workspace cache (0.1 min here; fine-tune plus pass: "
        "22.6 min when first computed)."
    )


def test_with_picks_the_baseline_is_still_tuned_and_distillation_runs_its_pick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The transformer reuses the bag's KD/LELP picks but tunes its own hard baseline: a
    baseline tuned for another student would flatter distillation."""
    ran: list[str] = []
    sel = {"hard epochs=4": 60.0, "hard epochs=8": 65.0, "hard epochs=16": 62.0,
           "hard epochs=32": 61.0}  # fmt: skip

    def fake_run_arm(prep: Any, base: Any, arm: Any, seeds: Any, off: Any, log: Any) -> Any:
        ran.append(arm.label)
        return _row(arm.family, arm.label, sel.get(arm.label, 70.0), 70.0)

    monkeypatch.setattr(T, "run_arm", fake_run_arm)
    grid = T.grids(quick=False)
    picks = {fam: arms[-1] for fam, arms in grid.items()}  # hard's pick ignored
    out = T.bench_student(None, None, grid, [0], None, print, picks)
    assert ran == [a.label for a in grid["hard"]] + [picks["kd"].label, picks["lelp"].label]
    assert out["picked"]["hard"]["setting"] == "hard epochs=8"  # its own selection pick
    assert out["picked"]["kd"]["setting"] == picks["kd"].label
