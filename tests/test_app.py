"""AppTest smoke and interaction tests for every page of the Streamlit app.

One session-scoped workspace holds the teacher outputs of the default demo (the text demo with
the bundled MiniLM, about 30 s once on a CPU; digits-bin when MiniLM is unavailable) and one
tiny digits-bin run for the Compare page. AppTest runs app.py on the first run only and the
page script afterwards, so every test starts with a first run and then switches page.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240


@pytest.fixture(scope="session")
def app_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("app_ws")
    saved = {k: os.environ.get(k) for k in ("LELP_WORKSPACE", "LELP_APP_AUTOSTART_WORKER")}
    os.environ["LELP_WORKSPACE"] = str(root)
    os.environ["LELP_APP_AUTOSTART_WORKER"] = "0"  # no detached worker from tests
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def at(app_ws: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LELP_WORKSPACE", str(app_ws))  # over conftest's per-test workspace
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    app.run()
    assert not app.exception, app.exception
    return app


def _open(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"pages/{page}").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_data_page_default_demo_and_switch_to_digits(at: AppTest):
    _open(at, "1_data.py")
    demo = at.session_state["dataset_spec"]["source"]
    assert demo in ("text-demo", "digits-bin")
    assert _metric(at, "Classes") == "2"
    before = _metric(at, "train rows")
    assert any(m.label.startswith("Teacher accuracy") for m in at.metric)
    other = "digits-bin" if demo == "text-demo" else "text-demo"
    at.selectbox(key="data_demo").set_value(other).run()
    assert not at.exception
    assert at.session_state["dataset_spec"]["source"] == other
    assert _metric(at, "train rows") != before
    assert _metric(at, "Input") == ("features" if other == "digits-bin" else "text")


def test_map_colour_by_changes_trace_count(at: AppTest):
    _open(at, "2_map.py")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert len(spec["data"]) == 2  # one trace per class
    assert all(t["type"] == "scattergl" for t in spec["data"])
    assert all(len(t["customdata"][0]) == 3 for t in spec["data"])  # row id, label, text
    latent = [o for o in at.selectbox(key="map_color").options if o.startswith("latent: ")]
    assert latent, "the default demo has latent columns"
    at.selectbox(key="map_color").set_value(latent[0]).run()
    assert not at.exception
    spec2 = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert len(spec2["data"]) > 2
    at.selectbox(key="map_color").set_value("teacher confidence").run()
    assert len(json.loads(at.get("plotly_chart")[0].proto.spec)["data"]) == 1


def test_subspaces_S_changes_pseudo_subclasses(at: AppTest):
    _open(at, "3_subspaces.py")
    table = next(d.value for d in at.dataframe if "pseudo-subclass" in d.value.columns)
    assert len(table) == 2 * 4  # default S = 4 for both classes
    n_rows = int(table["size"].sum())
    at.number_input(key="sub_S").set_value(2).run()
    assert not at.exception and not at.error
    table = next(d.value for d in at.dataframe if "pseudo-subclass" in d.value.columns)
    assert len(table) == 2 * 2
    assert int(table["size"].sum()) == n_rows  # every training row has one pseudo-subclass
    assert at.session_state["subclass_spec"]["n_subclasses"] == 2
    # beta changes targets (entropy) but not the assignment sizes
    sizes = table["size"].tolist()
    ent = table["mean target entropy"].tolist()
    at.select_slider(key="sub_beta").set_value(4.0).run()
    table2 = next(d.value for d in at.dataframe if "pseudo-subclass" in d.value.columns)
    assert table2["size"].tolist() == sizes
    assert all(b > a for a, b in zip(ent, table2["mean target entropy"], strict=True))


def test_compare_empty_state_says_what_to_do(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LELP_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("LELP_APP_DEMO", "digits-bin")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["ws_root"] = str(tmp_path)
    at.run()
    _open(at, "5_compare.py")
    assert any("No runs yet" in i.value for i in at.info)


def test_distill_queue_adds_a_job(at: AppTest):
    _open(at, "4_distill.py")

    def rows() -> list[str]:
        return [m.value for m in at.markdown if m.value.startswith("**#")]

    n0 = len(rows())
    at.button(key="distill_queue").click().run()
    assert not at.exception and not at.error
    assert len(rows()) == n0 + 1
    assert "`queued`" in rows()[0]


@pytest.fixture(scope="session")
def digits_run(app_ws: Path) -> dict:
    from core.config import (
        DatasetSpec,
        RunConfig,
        StudentSpec,
        SubclassSpec,
        TeacherSpec,
        TrainSpec,
    )
    from core.pipeline import run_distill
    from core.store import Workspace

    cfg = RunConfig(
        name="digits tiny lelp",
        dataset=DatasetSpec(source="digits-bin"),
        teacher=TeacherSpec(kind="digits-mlp"),
        subclasses=SubclassSpec(n_subclasses=2),
        student=StudentSpec(kind="mlp", hidden=16),
        train=TrainSpec(epochs=1, objective="lelp", device="cpu"),
    )
    return run_distill(cfg, Workspace(app_ws))


def test_compare_shows_run_metrics(app_ws: Path, monkeypatch, digits_run):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LELP_WORKSPACE", str(app_ws))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    _open(at, "5_compare.py")
    assert at.dataframe, ([i.value for i in at.info], [w.value for w in at.warning])
    table = at.dataframe[0].value
    assert "digits tiny lelp" in table["run"].tolist()
    row = table[table["run"] == "digits tiny lelp"].iloc[0]
    assert row["accuracy"] == pytest.approx(digits_run["metrics"]["student"]["accuracy"], abs=1e-3)
    assert len(at.get("plotly_chart")) >= 3  # reliability, curves, confusion matrices
    assert at.get("download_button")
