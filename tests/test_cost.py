"""Cost beside accuracy: parameters, weights size and measured latency of the teacher and each
student, cached once per run; the Pareto front; the Compare page's Cost section and Export.

The runs are seconds-long digits-bin runs on CPU; one slow test times a MiniLM teacher.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lelp_studio import cost, plots
from lelp_studio.config import DatasetSpec, RunConfig, StudentSpec, TeacherSpec, TrainSpec

ROOT = Path(__file__).resolve().parents[1]


# -- the Pareto front, by hand ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("points", "front"),
    [
        ([[1, 80], [2, 90], [3, 85]], [True, True, False]),  # slower and worse: off
        ([[1, 90], [2, 80]], [True, False]),  # one point beats the other on both
        ([[1, 80], [1, 90]], [False, True]),  # same latency: the more accurate wins
        ([[1, 90], [2, 90]], [True, False]),  # same accuracy: the faster wins
        ([[1, 80], [1, 80], [5, 95]], [True, True, True]),  # equal points are both on it
        ([[3, 70], [2, 75], [1, 80]], [False, False, True]),  # one model beats them all
        ([[1, np.nan], [2, 90], [np.nan, 99]], [False, True, False]),  # NaN is never on it
        ([[0.5, 50]], [True]),
        (np.empty((0, 2)), []),
    ],
)
def test_pareto_front_by_hand(points: Any, front: list[bool]) -> None:
    assert cost.pareto_front(points).tolist() == front


# -- the figure ---------------------------------------------------------------------------------
def test_cost_pareto_figure_marks_the_front_and_dims_the_rest() -> None:
    names = ["teacher", "fast", "slow-bad", "unmeasured"]
    fig = plots.cost_pareto(
        names,
        [20.0, 0.05, 1.0, None],
        [95.0, 90.0, 85.0, 99.0],
        colors=plots.run_colors(names[1:]),
        params=[22_000_000, 1_000, 50_000, 5],
    )
    assert [t.name for t in fig.data] == ["Pareto front", "teacher", "fast", "slow-bad"]
    line = fig.data[0]
    assert line.mode == "lines" and list(line.x) == [0.05, 20.0]  # sorted by latency
    by = {t.name: t for t in fig.data[1:]}
    assert by["teacher"].marker.color == "#222222"
    assert by["fast"].marker.color == plots.run_colors(names[1:])["fast"]
    assert by["teacher"].opacity == 1.0 and by["fast"].opacity == 1.0
    assert by["slow-bad"].opacity < 0.5
    beaten = plots.cost_pareto(["teacher", "s"], [20.0, 1.0], [80.0, 90.0])
    assert beaten.data[1].opacity == 1.0  # a dominated teacher is still drawn in full
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.dtick == 1  # 0.05 to 20 ms
    assert fig.layout.xaxis.title.text.startswith("latency (ms")
    assert fig.layout.yaxis.title.text == "test accuracy (%)"
    hover = by["fast"].hovertemplate
    assert "latency" in hover and "accuracy" in hover and "parameters" in hover
    assert by["teacher"].customdata[0][1] == "22,000,000"


def test_cost_pareto_refuses_lists_of_different_lengths() -> None:
    with pytest.raises(ValueError, match=r"3 names but 2 latencies, 3 accuracies; give one"):
        plots.cost_pareto(["a", "b", "c"], [1.0, 2.0], [1.0, 2.0, 3.0])


def test_cost_table_has_a_row_per_model_and_device() -> None:
    rec = {
        "params": 10,
        "size_bytes": 2_000_000,
        "latency_ms": {"cpu": {"1": 0.5, "64": 3.0}, "cuda": {"1": 0.1, "64": 0.2}},
    }
    df = cost.cost_table({"teacher": rec, "run a": None})
    assert list(df.columns) == [
        "model",
        "device",
        "parameters",
        "size MB",
        "ms (batch 1)",
        "ms (batch 64)",
    ]
    assert df["model"].tolist() == ["teacher", "teacher", "run a"]
    assert df["device"].tolist()[:2] == ["CPU", "CUDA"]
    assert df.loc[0, "size MB"] == 2.0 and df.loc[1, "ms (batch 64)"] == 0.2
    assert pd.isna(df.loc[2, "parameters"])  # not measured yet: listed, empty


# -- measuring and caching on quick digits runs -------------------------------------------------
@pytest.fixture(scope="module")
def digits_ws(
    tmp_path_factory: pytest.TempPathFactory, digits_config: Any
) -> tuple[Any, list[dict]]:
    from lelp_studio.pipeline import run_distill
    from lelp_studio.store import Workspace

    ws = Workspace(tmp_path_factory.mktemp("cost_ws"))
    runs = [
        run_distill(digits_config("digits small", "lelp", 16, 2), ws),
        run_distill(digits_config("digits wide kd", "kd", 64, 2), ws),
    ]
    return ws, runs


def test_run_cost_measures_teacher_and_student_once(digits_ws, monkeypatch) -> None:
    ws, runs = digits_ws
    run = runs[0]
    c = cost.run_cost(ws, run, force=True)
    t, s = c["teacher"], c["student"]
    assert t["params"] == 64 * 128 + 128 + 128 * 128 + 128 + 128 * 2 + 2  # 64-128-128-2 MLP
    assert t["size_bytes"] == 4 * t["params"] and "float32" in t["note"]
    assert s["params"] > 0 and s["kind"] == "mlp"
    sdir = ws.artifact_path(run, "student_dir")
    assert s["size_bytes"] == (sdir / "student.safetensors").stat().st_size
    for rec in (t, s):
        assert rec["latency_ms"]["cpu"].keys() == {"1", "64"}
        assert all(v > 0 for v in rec["latency_ms"]["cpu"].values())
        assert rec["inputs"] == "64 test rows of digits-bin"
    # Cached: beside the student folder, and per teacher key.
    assert (sdir.parent / "cost.json").is_file()
    key = run["artifacts"]["teacher_key"]
    assert (ws.root / "costs" / f"{key}.json").is_file()
    assert cost.is_cached(ws, run)

    def boom(*_a: Any, **_k: Any) -> None:
        raise AssertionError("measured again although cached")

    monkeypatch.setattr(cost, "measure_latency", boom)
    assert cost.run_cost(ws, run) == c  # read back, not measured
    assert cost.cached_cost(ws, run) == c


def test_second_run_of_a_teacher_reuses_its_measurement(digits_ws, monkeypatch) -> None:
    ws, runs = digits_ws
    first = cost.run_cost(ws, runs[0])
    calls: list[str] = []
    real = cost.measure_latency

    def counted(model: Any, *a: Any, **k: Any) -> Any:
        calls.append(type(model).__name__)
        return real(model, *a, **k)

    monkeypatch.setattr(cost, "measure_latency", counted)
    (ws.artifact_path(runs[1], "student_dir").parent / "cost.json").unlink(missing_ok=True)
    second = cost.run_cost(ws, runs[1])
    assert calls == ["MLPStudent"]  # the teacher's cost is shared by its runs
    assert second["teacher"] == first["teacher"]


def test_damaged_or_old_cache_is_measured_again(digits_ws) -> None:
    ws, runs = digits_ws
    path = cost.student_cost_path(ws, runs[0])
    cost.run_cost(ws, runs[0])
    path.write_text("{not json")
    assert cost.cached_cost(ws, runs[0])["student"] is None
    path.write_text(json.dumps({"version": 0, "params": 1}))
    assert not cost.is_cached(ws, runs[0])
    assert cost.run_cost(ws, runs[0])["student"]["version"] == cost.COST_VERSION


def test_missing_weights_are_refused_with_the_fix(digits_ws, tmp_path: Path) -> None:
    ws, runs = digits_ws
    run = {**runs[0], "run_id": "gone", "artifacts": {**runs[0]["artifacts"]}}
    run["artifacts"]["student_dir"] = "runs/gone/student"
    with pytest.raises(
        cost.CostError,
        match=r"run gone: the student's student.safetensors or student.json is missing from "
        r".*; re-run it",
    ):
        cost.student_cost(ws, run)


def test_damaged_weights_are_refused_with_the_fix(digits_ws, tmp_path: Path) -> None:
    import shutil

    ws, runs = digits_ws
    src = ws.artifact_path(runs[0], "student_dir")
    dst = ws.run_dir("damaged") / "student"
    shutil.copytree(src, dst)
    (dst / "student.safetensors").write_bytes(b"\x00" * 16)
    run = {**runs[0], "run_id": "damaged", "artifacts": {**runs[0]["artifacts"]}}
    run["artifacts"]["student_dir"] = "runs/damaged/student"
    with pytest.raises(cost.CostError, match=r"run damaged: the student cannot be loaded .*re-run"):
        cost.student_cost(ws, run)


def test_arrays_teacher_has_a_record_that_says_why_no_numbers(digits_ws) -> None:
    ws, runs = digits_ws
    cfg = {**runs[0]["config"], "teacher": {"kind": "arrays", "path": "h.npz"}}
    rec = cost.teacher_cost(ws, {**runs[0], "config": cfg})
    assert rec["params"] is None and rec["latency_ms"] == {}
    assert rec["note"] == "outputs given as arrays: no model here to time"


@pytest.mark.slow
def test_minilm_teacher_cost_is_the_encoder_plus_head(tmp_path: Path, make_text_frame) -> None:
    """A frozen MiniLM teacher: the encoder's forward pass plus the linear head; a bag
    student of the same run is smaller and faster."""
    from lelp_studio.pipeline import run_distill
    from lelp_studio.store import Workspace

    path = tmp_path / "tiny.csv"
    make_text_frame(80).to_csv(path, index=False)
    ws = Workspace(tmp_path / "ws")
    cfg = RunConfig(
        name="bag",
        dataset=DatasetSpec(source=str(path)),
        teacher=TeacherSpec(kind="minilm"),
        student=StudentSpec(kind="bag"),
        train=TrainSpec(epochs=1, objective="kd", device="cpu"),
    )
    c = cost.run_cost(ws, run_distill(cfg, ws), where=["cpu"])
    t, s = c["teacher"], c["student"]
    assert 22_000_000 < t["params"] < 23_000_000  # all-MiniLM-L6-v2 + a 2-class head
    assert 80e6 < t["size_bytes"] < 100e6
    assert s["params"] < t["params"] / 5 and s["size_bytes"] < t["size_bytes"] / 5
    assert s["latency_ms"]["cpu"]["64"] < t["latency_ms"]["cpu"]["64"]


# -- the Compare page: Cost section and Export --------------------------------------------------
@pytest.fixture
def compare_at(digits_ws, monkeypatch: pytest.MonkeyPatch) -> Any:
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    ws, runs = digits_ws
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LELP_WORKSPACE", str(ws.root))
    monkeypatch.setenv("LELP_APP_AUTOSTART_WORKER", "0")
    monkeypatch.setenv("LELP_APP_DEMO", "digits-bin")

    def make(clear: bool = True) -> Any:
        """A new session on Compare; ``clear`` first removes every cached cost."""
        if clear:
            for r in runs:
                cost.student_cost_path(ws, r).unlink(missing_ok=True)
            for f in (ws.root / "costs").glob("*.json"):
                f.unlink()
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
        at.session_state["ws_root"] = str(ws.root)
        at.run()
        at.switch_page("pages/5_compare.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return make


def _cost_table(at: Any) -> pd.DataFrame | None:
    return next((d.value for d in at.dataframe if "ms (batch 1)" in d.value.columns), None)


def test_compare_cost_section_measures_on_request_then_reads_the_cache(compare_at, digits_ws):
    ws, runs = digits_ws
    at = compare_at()
    assert _cost_table(at) is None  # nothing measured, nothing timed on page load
    assert not cost.is_cached(ws, runs[0])
    at.button(key="cmp_cost_measure").click().run()
    assert not at.exception and not at.error and not at.warning, [w.value for w in at.warning]
    table = _cost_table(at)
    assert table is not None
    # each run by its name plus the settings that tell the shown runs apart (analysis.run_labels)
    labels = ["teacher", "digits wide kd hidden=64", "digits small hidden=16 objective=lelp"]
    assert table["model"].tolist() == labels
    assert (table["device"] == "CPU").all() and table["ms (batch 64)"].notna().all()
    chart = at.get("plotly_chart")
    assert any("Pareto front" in c.proto.spec for c in chart)
    assert all(cost.is_cached(ws, r) for r in runs)
    assert at.button(key="cmp_cost_remeasure")  # the page was drawn again from the cache
    assert "Measured on" in " ".join(c.value for c in at.caption)
    # A new session shows the cached numbers at once, and offers to measure again.
    fresh = compare_at(clear=False)
    assert _cost_table(fresh) is not None
    assert fresh.button(key="cmp_cost_remeasure")
    assert [b for b in fresh.button if b.key == "cmp_cost_measure"] == []
    fresh.selectbox(key="cmp_cost_latency").set_value("CPU, batch 64").run()
    assert not fresh.exception
    spec = next(c.proto.spec for c in fresh.get("plotly_chart") if "Pareto front" in c.proto.spec)
    assert "CPU, batch 64" in spec


def test_compare_cost_names_a_run_that_cannot_be_measured(compare_at, monkeypatch) -> None:
    at = compare_at()

    def refuse(ws: Any, run: Any, *a: Any, **k: Any) -> Any:
        raise cost.CostError(f"run {run['run_id']}: the student's student.safetensors is missing")

    monkeypatch.setattr(cost, "student_cost", refuse)
    at.button(key="cmp_cost_measure").click().run()
    assert not at.exception
    lines = [w.value for w in at.warning]
    assert len(lines) == 2 and all("student.safetensors is missing" in w for w in lines)
    assert lines[0].startswith("digits wide kd: run ")
    assert at.button(key="cmp_cost_measure")  # still on offer


def test_compare_export_offers_onnx_only_and_shows_errors_in_one_line(
    compare_at, tmp_path: Path
) -> None:
    at = compare_at()
    assert list(at.selectbox(key="cmp_export_format").options) == ["onnx"]  # mlp students
    assert at.text_input(key="cmp_export_dir").value.endswith("-onnx")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    at.text_input(key="cmp_export_dir").set_value(str(busy)).run()
    at.button(key="cmp_export").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "\n" not in at.error[0].value
    assert (busy / "keep.txt").read_text() == "mine"  # nothing written over


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no Debian chromium")
@pytest.mark.browser
@pytest.mark.slow
def test_cost_chart_in_the_browser(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The real app in headless Chromium: Compare's Cost section measures on request and
    draws the Pareto chart (saved as 7_cost.png under LELP_SCREENSHOT_DIR, else
    test-artifacts/screenshots/). Runs on the text demo: a MiniLM teacher and three students."""
    pytest.importorskip("playwright.sync_api")
    from tests.test_browser import ARGS, CHROMIUM, _no_exception, _shoot

    ws_root = tmp_path_factory.mktemp("cost_browser_ws")
    _text_demo_runs(ws_root)
    with _serve(ws_root) as url, _browser() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(240_000)
        page.goto(url)
        page.get_by_test_id("stSidebarNav").get_by_text("Compare", exact=True).click()
        heading = page.get_by_role("heading", name="Cost on this machine")
        heading.wait_for()
        page.get_by_role("button", name="Measure cost").click()
        chart = page.locator(".js-plotly-plot").filter(has_text="Pareto front").first
        chart.wait_for()
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
        text = page.locator("[data-testid='stMain']").first.inner_text()
        assert "Measured on" in text and "joins the Pareto front" in text
        assert "Measure again" in text  # every model measured
        assert page.get_by_test_id("stDataFrame").count() >= 2  # the runs and their cost
        _no_exception(page)
        heading.evaluate("e => e.scrollIntoView({block: 'start'})")
        chart.wait_for()
        _shoot(page, "7_cost")
        browser.close()


def _text_demo_runs(root: Path) -> None:
    """The text demo with a frozen MiniLM teacher and three one-epoch students."""
    from lelp_studio.pipeline import prepare, run_distill
    from lelp_studio.store import Workspace

    ws = Workspace(root)
    base = {"dataset": {"source": "text-demo"}, "teacher": {"kind": "minilm"}}
    specs = [
        ("bag kd", {"kind": "bag"}, "kd"),
        ("bag lelp", {"kind": "bag", "embed_dim": 32}, "lelp"),
        ("transformer kd", {"kind": "transformer"}, "kd"),
    ]
    prep = None
    for name, student, objective in specs:
        cfg = RunConfig.model_validate(
            {**base, "name": name, "student": student,
             "train": {"epochs": 2, "objective": objective, "device": "cpu"}}
        )  # fmt: skip
        if prep is None or prep.cfg.student.kind != cfg.student.kind:
            prep = prepare(cfg, ws)
        run_distill(cfg, ws, prep=prep)


def _serve(ws_root: Path) -> Any:
    import contextlib
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    @contextlib.contextmanager
    def serve() -> Any:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        env = dict(os.environ) | {
            "LELP_WORKSPACE": str(ws_root),
            "LELP_APP_AUTOSTART_WORKER": "0",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail("streamlit did not answer its health check within 90 s")
                    time.sleep(0.5)  # polling a server that is starting, not a fixed wait
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    return serve()


def _browser() -> Any:
    from playwright.sync_api import sync_playwright

    return sync_playwright()
