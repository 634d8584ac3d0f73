"""bench/subspaces.py at toy size: both levels run, agree with the naive answer (the bench
asserts that itself), and the report names the sizes it ran at."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import subspaces  # noqa: E402


def test_toy_run_writes_named_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bench sets both for its AppTest; monkeypatch restores them afterwards.
    monkeypatch.delenv("LELP_WORKSPACE", raising=False)
    monkeypatch.setenv("LELP_APP_AUTOSTART_WORKER", "0")
    res = subspaces.main(["--rows", "3000", "--repeat", "1", "--out", str(tmp_path),
                          "--name", "toy"])  # fmt: skip
    assert res["core"]["points"] == 3000 and res["page"]["train_points"] == 3000
    for k in ("S_change_s", "beta_change_s"):
        c = res["core"][k]
        assert c["ratio"] == pytest.approx(c["naive"] / c["tuned"])
    assert res["page"]["table_rows_after_changes"] > 0
    md = (tmp_path / "toy.md").read_text()
    assert "3,000 points" in md and "3,000 training points" in md
    assert (tmp_path / "toy.json").is_file()


def test_amazon_measure_skips_cleanly_without_the_dataset(tmp_path, monkeypatch):
    """``--amazon`` without amazon_multidomain says why in one line and writes nothing."""
    monkeypatch.setenv("LELP_SHARED_DATA", str(tmp_path / "no_data"))
    (tmp_path / "no_data").mkdir()
    res = subspaces.main(["--amazon", "--out", str(tmp_path / "out")])
    assert res["amazon"] == {"skipped": "no amazon_multidomain folder (set LELP_SHARED_DATA)"}
    assert not (tmp_path / "out").exists()


def test_page_first_renders_at_toy_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--pages``: a page opened as a fresh process's first request on a copy of a workspace
    holding the cached teacher; the report names the size and the page (no baseline here)."""
    monkeypatch.delenv("LELP_WORKSPACE", raising=False)
    res = subspaces.main(["--pages", "--rows", "1500", "--only", "map", "--baseline-rev", "",
                          "--cache", str(tmp_path / "cache"), "--out", str(tmp_path),
                          "--name", "pages"])  # fmt: skip
    page = res["pages"]["pages"]["map"]["now"]
    assert page["first_s"] > 0 and page["title"] == ["Embedding map"], page
    assert page["charts"] == 1 and not page["exceptions"] and not page["errors"], page
    assert page["webgl_points"] == 1500  # every training row of a small set is drawn
    assert "distill_s" not in res["pages"]["setup"]  # no run is made when Compare is not timed
    md = (tmp_path / "pages.md").read_text()
    assert "1,500 training rows" in md and "| map |" in md
