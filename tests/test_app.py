"""AppTest smoke and interaction tests for every page of the Streamlit app.

One session-scoped workspace holds the teacher outputs of the default demo (the text demo with
the bundled MiniLM, about 30 s once on a CPU; digits-bin when MiniLM is unavailable) and one
tiny digits-bin run for the Compare page. Every test starts with a first run (the default
page) and then switches page; each AppTest run of a page goes through app.py, as in a browser
(ui/navigation.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
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


@pytest.fixture(autouse=True)
def _no_remembered_choice(app_ws: Path) -> None:
    """Each test starts on its own dataset and teacher, not on the ones an earlier test chose
    in the shared workspace (the app remembers them: test_remembered_choice_*)."""
    from lelp_studio.store import CHOICES_FILE

    (app_ws / CHOICES_FILE).unlink(missing_ok=True)


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


def test_data_page_precision_choice_reaches_the_teacher_spec(at: AppTest):
    _open(at, "1_data.py")
    if at.session_state["teacher_spec"]["kind"] != "minilm":
        pytest.skip("the default teacher is not MiniLM here")
    from lelp_studio.teachers import pick_device, resolve_precision

    here = resolve_precision("auto", pick_device())
    radio = at.radio(key="data_teacher_precision")
    assert radio.value == "auto"
    assert radio.options == [f"auto ({here} here)", "float32", "bf16"]

    # The metric says what the cached embeddings ran at: "auto" resolved on this machine.
    assert _metric(at, "Precision") == here
    radio.set_value("float32").run()
    assert not at.exception
    assert at.session_state["teacher_spec"]["precision"] == "float32"


def _n_points(trace: dict[str, Any]) -> int:
    """Points of a trace in a figure's JSON, whose arrays are base64 typed arrays."""
    import base64

    import numpy as np

    x = trace["x"]
    return len(np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]))


def test_map_colour_by_changes_trace_count(at: AppTest):
    _open(at, "2_map.py")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert len(spec["data"]) == 2  # one trace per class
    assert all(t["type"] == "scattergl" for t in spec["data"])
    # row ids as an int32 typed array; a small split also carries each point's hover text
    assert all(t["customdata"]["dtype"] == "i4" for t in spec["data"])
    assert all(len(t["text"]) == _n_points(t) for t in spec["data"])
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
def digits_run(app_ws: Path, digits_config: Any) -> dict:
    from lelp_studio.pipeline import run_distill
    from lelp_studio.store import Workspace

    cfg = digits_config("digits tiny lelp", "lelp", 16, 2)
    return run_distill(cfg, Workspace(app_ws))


def test_compare_shows_run_metrics(app_ws: Path, monkeypatch, digits_run):
    # Compare picks runs of the current dataset and teacher: digits-bin with its MLP.
    at = _first_run(app_ws, monkeypatch)
    _open(at, "5_compare.py")
    assert at.dataframe, ([i.value for i in at.info], [w.value for w in at.warning])
    table = at.dataframe[0].value
    assert "digits tiny lelp" in table["run"].tolist()
    row = table[table["run"] == "digits tiny lelp"].iloc[0]
    assert row["accuracy"] == pytest.approx(digits_run["metrics"]["student"]["accuracy"], abs=1e-3)
    assert len(at.get("plotly_chart")) >= 3  # reliability, curves, confusion matrices
    assert at.get("download_button")


# -- the seed papers' other methods on the Distill and Compare pages ---------------------------
@pytest.fixture
def at_digits(app_ws: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The app on digits-bin (no MiniLM needed): the Distill page needs no teacher outputs."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LELP_WORKSPACE", str(app_ws))
    monkeypatch.setenv("LELP_APP_DEMO", "digits-bin")
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    app.session_state["dataset_spec"] = {"source": "digits-bin"}
    app.session_state["teacher_spec"] = {"kind": "digits-mlp"}
    app.run()
    assert not app.exception, app.exception
    return app


def test_distill_says_how_many_cpu_jobs_the_worker_runs_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleep_jobs: None
):
    """Issue 18: the worker ran CPU jobs one at a time; now it runs several, and says so."""
    import threading

    from lelp_studio import jobs
    from lelp_studio.store import Workspace

    ws = Workspace(tmp_path)
    jobs.submit(ws, "sleep", {"steps": 1, "delay": 0})
    worker = jobs.LocalWorker(ws, max_cpu_jobs=2, gpus=[], poll=0.2, lock=False)
    loop = threading.Thread(target=worker.run_forever, daemon=True)
    loop.start()
    try:
        at = _first_run(tmp_path, monkeypatch)
        _open(at, "4_distill.py")
        said = [c.value for c in at.caption if "CPU jobs at once" in c.value]
        assert said and said[0].startswith("The worker runs up to 2 CPU jobs at once"), said
    finally:
        worker.stop()
        loop.join(30)


def test_distill_lists_every_objective(at_digits: AppTest):
    from lelp_studio import objectives

    _open(at_digits, "4_distill.py")
    options = list(at_digits.multiselect(key="distill_objectives").options)
    assert options == objectives.names() and len(options) == 11


def test_distill_reaugkd_shows_its_parameters_and_citation(at_digits: AppTest):
    from lelp_studio.config import ReAugKDSpec

    _open(at_digits, "4_distill.py")
    assert "distill_reaugkd_k" not in at_digits.session_state  # not drawn before selection
    at_digits.multiselect(key="distill_objectives").set_value(["reaugkd"]).run()
    assert not at_digits.exception and not at_digits.error
    defaults = ReAugKDSpec()
    for name in ReAugKDSpec.model_fields:
        w = at_digits.number_input(key=f"distill_reaugkd_{name}")
        assert w.value == pytest.approx(getattr(defaults, name)), name
        assert w.help, f"{name} has no help text"
    assert at_digits.number_input(key="distill_reaugkd_lam").max == 1.0  # le=1 bound
    assert at_digits.number_input(key="distill_reaugkd_k").min == 1  # ge=1 bound
    exp = next(e for e in at_digits.expander if e.label == "What is reaugkd?")
    assert "Retrieval-Augmented Knowledge Distillation" in exp.markdown[0].value


def test_distill_queues_fitnet_with_its_parameters(at_digits: AppTest, app_ws: Path):
    from lelp_studio import jobs
    from lelp_studio.config import RunConfig
    from lelp_studio.store import Workspace

    _open(at_digits, "4_distill.py")
    at_digits.multiselect(key="distill_objectives").set_value(["fitnet"]).run()
    at_digits.number_input(key="distill_fitnet_weight").set_value(0.25)
    at_digits.checkbox(key="distill_fitnet_normalize").check()
    at_digits.number_input(key="distill_epochs").set_value(3).run()
    at_digits.button(key="distill_queue").click().run()
    assert not at_digits.exception and not at_digits.error
    msg = at_digits.success[0].value
    job_id = int(msg.split("#")[1].rstrip("."))
    cfg = RunConfig.model_validate(jobs.get_job(Workspace(app_ws), job_id).config)
    assert cfg.train.objective == "fitnet"
    assert cfg.train.fitnet.weight == 0.25 and cfg.train.fitnet.normalize is True
    assert cfg.train.fitnet.kd_weight == 1.0  # untouched fields keep their defaults
    assert cfg.train.epochs == 3
    assert cfg.dataset.source == "digits-bin" and cfg.student.kind == "mlp"


def test_distill_refuses_amad_for_an_mlp_student_before_queueing(at_digits: AppTest, app_ws: Path):
    """A combination that cannot run is named on the page; nothing is queued."""
    from lelp_studio import jobs
    from lelp_studio.store import Workspace

    before = len(jobs.list_jobs(Workspace(app_ws)))
    _open(at_digits, "4_distill.py")
    at_digits.multiselect(key="distill_objectives").set_value(["amad"]).run()
    assert at_digits.number_input(key="distill_amad_max_cache_mb").value == 2048
    at_digits.button(key="distill_queue").click().run()
    assert not at_digits.exception
    assert any("needs student.kind 'transformer'" in e.value for e in at_digits.error)
    assert len(jobs.list_jobs(Workspace(app_ws))) == before


def test_distill_queues_a_run_on_the_manual_groups(at_digits: AppTest, app_ws: Path):
    from lelp_studio import jobs
    from lelp_studio.config import RunConfig
    from lelp_studio.store import Workspace

    _open(at_digits, "4_distill.py")
    at_digits.selectbox(key="distill_base").set_value("(manual groups saved on the map)")
    at_digits.multiselect(key="distill_objectives").set_value(["lelp"]).run()
    at_digits.button(key="distill_queue").click().run()
    assert not at_digits.exception and not at_digits.error
    job_id = int(at_digits.success[0].value.split("#")[1].rstrip("."))
    cfg = RunConfig.model_validate(jobs.get_job(Workspace(app_ws), job_id).config)
    assert cfg.subclasses.method == "manual" and cfg.train.objective == "lelp"
    assert cfg.name == "digits-bin lelp manual groups"  # not the name of a default LELP run


def test_distill_optional_field_is_an_empty_number_input(at_digits: AppTest):
    _open(at_digits, "4_distill.py")
    at_digits.multiselect(key="distill_objectives").set_value(["compress", "disk"]).run()
    assert not at_digits.exception and not at_digits.error
    assert at_digits.number_input(key="distill_compress_queue_size").value is None
    assert at_digits.selectbox(key="distill_compress_queues").options == ["two", "one"]
    assert at_digits.number_input(key="distill_disk_top_k").value is None


@pytest.fixture(scope="session")
def reaugkd_run(app_ws: Path, digits_config: Any) -> dict:
    from lelp_studio.pipeline import run_distill
    from lelp_studio.store import Workspace

    cfg = digits_config("digits tiny reaugkd", "reaugkd", reaugkd={"k": 5, "proj_epochs": 1})
    return run_distill(cfg, Workspace(app_ws))


@pytest.fixture
def compare_both(app_ws: Path, monkeypatch, digits_run, reaugkd_run) -> AppTest:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LELP_WORKSPACE", str(app_ws))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["cmp_runs"] = [digits_run["run_id"], reaugkd_run["run_id"]]
    at.run()
    return _open(at, "5_compare.py")


def test_compare_shows_train_fidelity_and_method_facts(compare_both, digits_run, reaugkd_run):
    # two tables, each narrow enough for a 1,400 px screen: main scores, then the rest
    table = compare_both.dataframe[0].value.set_index("run")
    more = next(d.value for d in compare_both.dataframe if "train agreement" in d.value.columns)
    more = more.set_index("run")
    assert "train agreement" not in table.columns and "agreement" not in more.columns
    for run in (digits_run, reaugkd_run):
        row, train = more.loc[run["name"]], run["metrics"]["student_train"]
        assert row["train agreement"] == pytest.approx(train["agreement"], abs=1e-4)
        assert row["train KL"] == pytest.approx(train["kl"], abs=1e-4)
        assert row["train accuracy"] == pytest.approx(train["accuracy"], abs=1e-4)
        agreement = table.loc[run["name"], "agreement"]
        assert agreement == pytest.approx(run["metrics"]["student"]["agreement"], abs=1e-4)
    overhead = reaugkd_run["metrics"]["method"]["retrieval_overhead_pct"]
    assert more.loc[reaugkd_run["name"], "retrieval overhead %"] == pytest.approx(
        overhead, abs=1e-3
    )
    assert pd.isna(more.loc[digits_run["name"], "retrieval overhead %"])


def _neighbour_table(at: AppTest):
    return next(d.value for d in at.dataframe if "similarity" in d.value.columns)


def _captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def test_compare_reaugkd_shows_the_runs_own_retrieval(compare_both, reaugkd_run, app_ws):
    import numpy as np

    from lelp_studio import replay
    from lelp_studio.store import Workspace

    assert not compare_both.exception and not compare_both.error
    text = _captions(compare_both)
    assert "The run's own retrieval" in text and "Fallback view" not in text
    nb = _neighbour_table(compare_both)
    assert len(nb) == 5  # train.reaugkd.k of the run
    sims = nb["similarity"].to_numpy()
    assert np.all(np.diff(sims) <= 1e-9)  # nearest first
    p_cols = [c for c in nb.columns if c.startswith("p(")]
    assert p_cols == ["p(even)", "p(odd)"]
    assert np.allclose(nb[p_cols].sum(axis=1), 1.0, atol=2e-3)
    # the rows the reloaded method retrieves (checked against brute force in test_methods.py)
    ws = Workspace(app_ws)
    ind, sim = replay.reaugkd_neighbours(ws, reaugkd_run, [0, 1], "test")
    assert nb["train row"].tolist() == ind[0].tolist()
    assert sims == pytest.approx(sim[0], abs=1e-3)
    compare_both.number_input(key="cmp_reaug_row").set_value(1).run()
    assert _neighbour_table(compare_both)["train row"].tolist() == ind[1].tolist()


@pytest.fixture
def compare_old_reaugkd(app_ws: Path, monkeypatch, reaugkd_run) -> AppTest:
    """A run recorded before method state was saved: the same record without it."""
    from lelp_studio.store import Workspace

    old = {
        **reaugkd_run,
        "run_id": reaugkd_run["run_id"] + "-old",
        "name": "digits tiny reaugkd (old)",
        "artifacts": {k: v for k, v in reaugkd_run["artifacts"].items() if k != "method_state"},
    }
    Workspace(app_ws).save_run(old)
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LELP_WORKSPACE", str(app_ws))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["cmp_runs"] = [old["run_id"]]
    at.run()
    return _open(at, "5_compare.py")


def test_compare_old_reaugkd_run_falls_back_to_nearest_teacher_rows(
    compare_old_reaugkd, reaugkd_run, app_ws
):
    import numpy as np

    from lelp_studio.store import Workspace

    assert not compare_old_reaugkd.exception and not compare_old_reaugkd.error
    assert "Fallback view" in _captions(compare_old_reaugkd)
    nb = _neighbour_table(compare_old_reaugkd)
    sims = nb["similarity"].to_numpy()
    # the same rows by brute force on the cached teacher embeddings (cosine similarity)
    out = Workspace(app_ws).load_teacher_outputs(reaugkd_run["artifacts"]["teacher_key"])
    H = np.asarray(out.H["train"], dtype=np.float64)
    q = np.asarray(out.H["test"], dtype=np.float64)[0]
    cos = H @ q / (np.linalg.norm(H, axis=1) * np.linalg.norm(q))
    assert nb["train row"].tolist() == np.argsort(-cos, kind="stable")[:5].tolist()
    assert sims == pytest.approx(np.sort(cos)[::-1][:5], abs=1e-3)


def test_compare_reaugkd_search_picks_the_example(compare_both):
    compare_both.text_input(key="cmp_reaug_search").input("digit=3").run()
    assert not compare_both.exception and not compare_both.error
    row = compare_both.selectbox(key="cmp_reaug_match").value
    shown = next(m.value for m in compare_both.markdown if m.value.startswith("**test row"))
    assert shown.startswith(f"**test row {row}**") and "digit=3" in shown


@pytest.mark.parametrize(
    "objective", ["fitnet", "sea", "compress", "reaugkd", "subclass-distill", "dwt", "disk", "amad"]
)
def test_param_fields_cover_every_field_with_bounds_and_help(objective: str):
    from lelp_studio import params

    model = params.section_model(objective)
    assert model is not None
    fields = params.param_fields(model)
    assert [f.name for f in fields] == list(model.model_fields)
    for f in fields:
        assert f.help and f.kind in ("int", "float", "choice", "bool")
        if f.kind in ("int", "float") and f.low is not None and not f.optional:
            model(**{f.name: f.low})  # the widget's inclusive minimum is a valid value
            if f.low > 0 and f.kind == "float":
                with pytest.raises(ValueError):
                    model(**{f.name: f.low - 2e-6 * max(1.0, f.low)})
        if f.kind == "choice":
            assert f.default in f.options


@pytest.mark.parametrize("objective", ["hard", "kd", "lelp", "objective", "tau"])
def test_objectives_without_a_section_have_no_widgets(objective: str):
    from lelp_studio import params

    assert params.section_model(objective) is None
    assert params.train_section(objective) is None


def test_compare_picks_all_runs_of_a_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Sweeps are grouped on Compare: choosing one selects every finished member run."""
    from lelp_studio import jobs
    from lelp_studio.config import RunConfig
    from lelp_studio.store import Workspace

    ws = Workspace(tmp_path)
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LELP_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("LELP_APP_DEMO", "digits-bin")
    sweep_id, ids = jobs.submit_sweep(
        ws, RunConfig(dataset={"source": "digits-bin"}), {"train.seed": [0, 1]}
    )
    for i in ids:  # stand-in finished runs: Compare reads the catalogue only
        ws.save_run({"run_id": f"job-{i}", "name": f"member {i}", "config": {}, "metrics": {}})
    ws.save_run({"run_id": "other", "name": "not in the sweep", "config": {}, "metrics": {}})
    at = AppTest.from_file(str(ROOT / "pages" / "5_compare.py"), default_timeout=TIMEOUT)
    at.run()
    at.selectbox(key="cmp_sweep").set_value(sweep_id).run()
    assert sorted(at.multiselect(key="cmp_runs").value) == sorted(f"job-{i}" for i in ids)


# --------------------------------------------------------------------------- page state


def test_distill_settings_survive_a_visit_to_another_page(at_digits: AppTest):
    """Streamlit drops a widget's value when a run does not draw it; the page must not."""
    _open(at_digits, "4_distill.py")
    at_digits.number_input(key="distill_epochs").set_value(3)
    at_digits.text_input(key="distill_name").set_value("my first run").run()
    _open(at_digits, "1_data.py")
    _open(at_digits, "4_distill.py")
    assert at_digits.number_input(key="distill_epochs").value == 3
    assert at_digits.text_input(key="distill_name").value == "my first run"
    # The line above the button reads back what will run.
    assert any("epochs 3," in c.value for c in at_digits.caption)


def test_data_page_guesses_columns_and_keeps_the_file_after_navigation(
    at_digits: AppTest, tmp_path: Path
):
    rows = [f"review number {i} is rather long text,{1 + i % 5},{'ab'[i % 2]}" for i in range(40)]
    path = tmp_path / "reviews.csv"
    path.write_text("review,stars,domain\n" + "\n".join(rows) + "\n")
    _open(at_digits, "1_data.py")
    at_digits.radio(key="data_source_type").set_value("File (upload or path)").run()
    at_digits.text_input(key="data_path").set_value(str(path)).run()
    assert not at_digits.exception
    assert at_digits.selectbox(key="data_text_col").value == "review"
    assert at_digits.selectbox(key="data_label_col").value == "domain"  # fewest distinct values
    at_digits.selectbox(key="data_label_col").set_value("stars").run()
    assert at_digits.session_state["dataset_spec"]["label_col"] == "stars"
    _open(at_digits, "4_distill.py")
    at_digits.switch_page("pages/1_data.py").run()
    assert not at_digits.exception
    assert at_digits.text_input(key="data_path").value == str(path)
    assert at_digits.selectbox(key="data_label_col").value == "stars"
    assert at_digits.session_state["dataset_spec"]["label_col"] == "stars"  # not re-guessed


def test_data_page_maps_the_columns_of_a_folder_source(at_digits: AppTest, tmp_path: Path):
    """A folder of split files (what ``lelp`` reads too) was read as one file: "cannot tell
    the format from the suffix ''" on the Data page of any folder dataset."""
    folder = tmp_path / "split_reviews"
    folder.mkdir()
    for split, n in (("train", 40), ("test", 10)):
        rows = [f"review {i} of the {split} split,{'ab'[i % 2]}" for i in range(n)]
        (folder / f"{split}.csv").write_text("review,label\n" + "\n".join(rows) + "\n")
    _open(at_digits, "1_data.py")
    at_digits.radio(key="data_source_type").set_value("File (upload or path)").run()
    at_digits.text_input(key="data_path").set_value(str(folder)).run()
    assert not at_digits.exception and not at_digits.error, [e.value for e in at_digits.error]
    assert at_digits.selectbox(key="data_text_col").value == "review"
    assert at_digits.session_state["dataset_spec"]["source"] == str(folder)
    assert _metric(at_digits, "test rows") == "10"


def test_run_labels_tell_same_named_runs_apart():
    from lelp_studio import analysis

    runs = [
        {"run_id": "a1", "name": "demo hard"},
        {"run_id": "b2", "name": "demo hard"},
        {"run_id": "c3", "name": "demo kd"},
    ]
    assert analysis.run_labels(runs) == {
        "a1": "demo hard (a1)",
        "b2": "demo hard (b2)",
        "c3": "demo kd",
    }


def test_subclass_label_names_manual_and_baseline_settings():
    from lelp_studio import analysis
    from lelp_studio.config import SubclassSpec

    assert analysis.subclass_label(SubclassSpec(n_subclasses=4, beta=1.0)) == "S=4 beta=1.0"
    assert analysis.subclass_label(SubclassSpec(method="manual")) == "manual groups"
    assert analysis.subclass_label(SubclassSpec(method="kmeans", n_subclasses=3)) == "kmeans S=3"


def test_number_fields_state_their_range_in_the_help():
    from lelp_studio import params
    from lelp_studio.config import ReAugKDSpec

    fields = {f.name: f for f in params.param_fields(ReAugKDSpec)}
    assert params.range_help(fields["lam"]).endswith("Allowed: from 0 to 1.")
    assert params.range_help(fields["k"]).endswith("Allowed: at least 1.")


def _first_run(app_ws: Path, monkeypatch: pytest.MonkeyPatch, **state: Any) -> AppTest:
    """app.py's first run (the Data & teacher page) with ``state`` preset."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LELP_WORKSPACE", str(app_ws))
    monkeypatch.setenv("LELP_APP_DEMO", "digits-bin")
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for k, v in state.items():
        app.session_state[k] = v
    return app.run()


def test_sidebar_names_the_dataset_the_page_just_chose(app_ws: Path, monkeypatch):
    at = _first_run(
        app_ws,
        monkeypatch,
        dataset_spec={"source": "text-demo"},
        teacher_spec={"kind": "digits-mlp"},
        data_source_type="Built-in demo",
        data_demo="digits-bin",  # the Data page commits this in the same run
    )
    assert not at.exception
    assert at.session_state["dataset_spec"]["source"] == "digits-bin"
    assert "**Dataset:** digits-bin" in " ".join(c.value for c in at.sidebar.caption)


def test_a_page_run_without_app_py_goes_back_through_it(tmp_path: Path, monkeypatch):
    """Issue 18: until some session calls st.navigation, Streamlit routes by the pages/ folder
    (its own flag, set on a fresh server) and runs a deep-linked page without app.py. The page
    hands the run to app.py: the sidebar's workspace field and caption are drawn, on the page
    asked for. AppTest resets the flag before each run, as a fresh server has it; a real
    restart is the browser test in test_browser.py."""
    from streamlit.runtime.pages_manager import PagesManager

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LELP_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("LELP_APP_DEMO", "digits-bin")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/4_distill.py").run()  # the first request is /distill
    assert not at.exception, at.exception
    assert PagesManager.uses_pages_directory is False
    assert [t.value for t in at.title] == ["Distill"]
    assert [w.label for w in at.sidebar.text_input] == ["Workspace folder"]
    assert "**Dataset:** digits-bin" in " ".join(c.value for c in at.sidebar.caption)


def test_sidebar_names_the_new_dataset_while_its_teacher_is_computed(tmp_path: Path, monkeypatch):
    """Issue 18: the sidebar named the old dataset until the new one's teacher was computed.
    The teacher computation here fails and stops the page, so the sidebar holds only what
    was drawn before it: the new dataset."""
    from lelp_studio.teachers import TeacherError
    from ui import cache

    def no_teacher(*args: Any, **kwargs: Any) -> Any:
        raise TeacherError("stub teacher: not computed in this test")

    monkeypatch.setattr(cache, "get_teacher_outputs", no_teacher)
    at = _first_run(
        tmp_path,
        monkeypatch,
        dataset_spec={"source": "text-demo"},
        teacher_spec={"kind": "digits-mlp"},
        data_source_type="Built-in demo",
        data_demo="digits-bin",
    )
    assert not at.exception
    assert any("stub teacher" in e.value for e in at.error)  # stopped while computing
    assert "**Dataset:** digits-bin" in " ".join(c.value for c in at.sidebar.caption)


def test_remembered_choice_opens_the_next_session_on_it(tmp_path: Path, monkeypatch):
    """Issue 18: the dataset and teacher chosen are remembered in the workspace; a new session
    (as after a server restart) opens on them, not on the demo."""
    from lelp_studio.store import load_choices

    at = _first_run(tmp_path, monkeypatch, data_max_train=300)  # digits-bin, 300 train rows
    assert not at.exception and at.session_state["dataset_spec"]["max_train"] == 300
    remembered = load_choices(tmp_path)
    assert remembered is not None and remembered.dataset.max_train == 300
    fresh = _first_run(tmp_path, monkeypatch)  # a new session on the same workspace
    assert not fresh.exception
    assert fresh.session_state["dataset_spec"]["max_train"] == 300
    assert fresh.session_state["teacher_spec"]["kind"] == "digits-mlp"
    assert fresh.number_input(key="data_max_train").value == 300
    assert not fresh.sidebar.warning


def test_remembered_choice_damaged_is_one_line_and_ignored(tmp_path: Path, monkeypatch):
    from lelp_studio.store import CHOICES_FILE

    (tmp_path / CHOICES_FILE).write_text('{"dataset": {"source": "digits-bin"}, "teach')
    at = _first_run(tmp_path, monkeypatch)
    assert not at.exception
    assert at.session_state["dataset_spec"]["max_train"] is None  # the demo, as without it
    notes = [w.value for w in at.sidebar.warning]
    assert len(notes) == 1 and "choices.json is damaged" in notes[0] and "\n" not in notes[0]
    at.number_input(key="data_max_train").set_value(200).run()  # the next choice rewrites it
    assert not at.sidebar.warning
    assert json.loads((tmp_path / CHOICES_FILE).read_text())["dataset"]["max_train"] == 200


def test_map_shows_one_progress_bar_while_a_slow_projection_runs(tmp_path: Path, monkeypatch):
    """Issue 18: a UMAP of a large set took minutes under stacked spinners over the previous
    map. The fit (a stand-in that waits for the test) runs in the background: the page shows
    one bar with the stage the library reported and stops there, so nothing of the previous
    map stays below; when the fit is done the next run draws the map."""
    import threading

    from ui import background, maps

    gate, real = threading.Event(), maps.fit_projection

    def slow_fit(H: Any, method: str, **kw: Any) -> Any:
        kw["progress"](0, 2, "UMAP: fitting on 1,437 points")
        assert gate.wait(120)
        return real(H, "pca", **kw)

    monkeypatch.setattr(maps, "fit_projection", slow_fit)
    monkeypatch.setattr(background, "GRACE_S", 0.0)
    at = _first_run(tmp_path, monkeypatch, map_method="umap")
    at.switch_page("pages/2_map.py").run()
    assert not at.exception, at.exception
    bars = [b.proto.text for b in at.get("progress")]
    assert len(bars) == 1, bars
    assert bars[0].startswith("Map of ") and "fitting on 1,437 points · step 1 of 2" in bars[0]
    assert not at.get("plotly_chart") and not at.get("spinner")
    gate.set()
    for task in list(background._registry().tasks.values()):
        task.future.result(timeout=120)
    at.run()
    assert not at.exception and not at.get("progress")
    assert len(at.get("plotly_chart")) == 1


def test_bad_workspace_folder_is_reported_where_it_is_typed(app_ws: Path, monkeypatch):
    at = _first_run(app_ws, monkeypatch, ws_root="/proc/lelp-ws")
    assert not at.exception
    assert "cannot create it" in at.sidebar.error[0].value
    main = [e.value for e in at.error if "Fix the **Workspace folder**" in e.value]
    assert len(main) == 1 and len(at.error) == 2  # and the page did not add its own


def test_teacher_without_its_path_asks_for_it_instead_of_failing(at_digits: AppTest):
    _open(at_digits, "1_data.py")
    at_digits.selectbox(key="data_teacher_kind").set_value("arrays").run()
    assert not at_digits.exception and not at_digits.error  # no error before anything is typed
    assert any("Type the arrays file above" in i.value for i in at_digits.info)


def test_bad_file_path_says_which_dataset_is_still_in_use(at_digits: AppTest, tmp_path: Path):
    _open(at_digits, "1_data.py")
    at_digits.radio(key="data_source_type").set_value("File (upload or path)").run()
    at_digits.text_input(key="data_path").set_value(str(tmp_path / "missing.csv")).run()
    assert not at_digits.exception
    assert at_digits.error and "missing.csv" in at_digits.error[0].value
    assert any("still **digits-bin**" in c.value for c in at_digits.caption)
    assert at_digits.session_state["dataset_spec"]["source"] == "digits-bin"
    assert at_digits.number_input(key="data_max_train")  # still drawn under the error


def test_subspaces_names_baseline_subclasses_and_warns_about_tiny_ones(at: AppTest):
    _open(at, "3_subspaces.py")
    if at.session_state["dataset_spec"]["source"] != "text-demo":
        pytest.skip("needs the text demo's latent columns")
    at.multiselect(key="sub_compare").set_value(["kmeans"]).run()
    assert not at.exception
    heat = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    heat = [h for h in heat if h["data"] and h["data"][0]["type"] == "heatmap"]
    assert len(heat) == 2  # LELP and k-means
    for h in heat:  # both name their rows class/subclass, not 0..7
        names = {str(v) for t in h["data"] for ax in ("x", "y") for v in t.get(ax, [])}
        assert "negative/0" in names and "positive/3" in names
    assert not any("fewer than" in w.value for w in at.warning)
    at.number_input(key="sub_S").set_value(64).run()
    assert not at.exception
    assert any("training rows: too few" in w.value for w in at.warning)


def test_distill_does_not_queue_the_same_run_twice(at_digits: AppTest, app_ws: Path):
    from lelp_studio import jobs
    from lelp_studio.store import Workspace

    _open(at_digits, "4_distill.py")
    at_digits.multiselect(key="distill_objectives").set_value(["kd"])
    at_digits.number_input(key="distill_seed").set_value(777).run()
    at_digits.button(key="distill_queue").click().run()
    assert at_digits.success and not at_digits.info
    n = len(jobs.list_jobs(Workspace(app_ws)))
    at_digits.button(key="distill_queue").click().run()
    assert not at_digits.exception and not at_digits.success
    assert any("Not queued again" in i.value and "kd (job #" in i.value for i in at_digits.info)
    assert len(jobs.list_jobs(Workspace(app_ws))) == n


def test_distill_refuses_a_teacher_without_its_path_before_queueing(
    app_ws: Path, monkeypatch: pytest.MonkeyPatch
):
    from lelp_studio import jobs
    from lelp_studio.store import Workspace

    at = _first_run(app_ws, monkeypatch, teacher_spec={"kind": "arrays"})
    before = len(jobs.list_jobs(Workspace(app_ws)))
    _open(at, "4_distill.py")
    at.button(key="distill_queue").click().run()
    assert not at.exception
    assert any("needs teacher.path" in e.value for e in at.error)
    assert len(jobs.list_jobs(Workspace(app_ws))) == before


def test_sidebar_names_dataset_and_teacher_when_the_page_stops_early(app_ws: Path, monkeypatch):
    at = _first_run(app_ws, monkeypatch, teacher_spec={"kind": "arrays"})
    assert any("Type the arrays file above" in i.value for i in at.info)  # the page stopped
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "**Dataset:** digits-bin" in captions and "**Teacher:** arrays" in captions


def test_compare_keeps_the_picked_runs_and_adds_new_ones(
    tmp_path: Path, monkeypatch, digits_config: Any
):
    from lelp_studio.pipeline import run_distill
    from lelp_studio.store import Workspace

    def run(name: str) -> str:
        return run_distill(digits_config(name, "hard", 8), Workspace(tmp_path))["run_id"]

    first, second = run("one"), run("two")
    at = _first_run(tmp_path, monkeypatch, ws_root=str(tmp_path))
    _open(at, "5_compare.py")
    assert set(at.multiselect(key="cmp_runs").value) == {first, second}  # the newest ones
    # what both runs share is said once, not repeated in a column
    assert "dataset" not in at.dataframe[0].value.columns
    assert any("All picked runs: dataset **digits-bin**" in c.value for c in at.caption)
    at.multiselect(key="cmp_runs").set_value([first]).run()
    _open(at, "1_data.py")
    _open(at, "5_compare.py")
    assert at.multiselect(key="cmp_runs").value == [first]  # the pick is kept
    third = run("three")
    at.run()
    assert at.multiselect(key="cmp_runs").value == [third, first]  # and a new run joins it


def test_compare_picks_the_newest_finished_runs_of_this_dataset_and_teacher(
    tmp_path: Path, monkeypatch
):
    """Issue 18: not the three newest overall, no other dataset mixed in on a later visit, and
    a cancelled run (epoch 1 of 3) is marked and never picked by default."""
    from lelp_studio.config import DatasetSpec, RunConfig, StudentSpec, TeacherSpec, TrainSpec
    from lelp_studio.pipeline import run_distill
    from lelp_studio.store import Workspace

    ws = Workspace(tmp_path)

    def run(seed: int) -> dict[str, Any]:
        cfg = RunConfig(
            name="digits-bin hard",
            dataset=DatasetSpec(source="digits-bin"),
            teacher=TeacherSpec(kind="digits-mlp"),
            student=StudentSpec(kind="mlp", hidden=8),
            train=TrainSpec(epochs=1, objective="hard", device="cpu", seed=seed),
        )
        return run_distill(cfg, ws)

    def copy(rec: dict[str, Any], run_id: str, source: str = "", **metrics: Any) -> str:
        """A newer record of another dataset, or cancelled at epoch 1 of 3."""
        new = json.loads(json.dumps(rec))
        new["run_id"] = run_id
        new.pop("created", None)
        if source:
            new["name"], new["config"]["dataset"]["source"] = f"{source} hard", source
        if metrics:
            new["metrics"].update(metrics)
            new["config"]["train"]["epochs"] = 3
        ws.save_run(new)
        return run_id

    a, b = run(0)["run_id"], (rec := run(1))["run_id"]
    cancelled = copy(rec, "cancelled-run", cancelled=True)
    other = copy(rec, "other-data", source="text-demo")  # the newest run of all
    at = _first_run(tmp_path, monkeypatch, ws_root=str(tmp_path))
    _open(at, "5_compare.py")
    box = at.multiselect(key="cmp_runs")
    assert box.value == [b, a]  # not the cancelled run, not the other dataset's
    # Runs are told apart by what differs (the seed); the cancelled one says so.
    assert "digits-bin hard seed=1 epochs=3 · cancelled at epoch 1 of 3" in box.options
    assert set(at.dataframe[0].value["run"]) == {"digits-bin hard seed=0", "digits-bin hard seed=1"}
    # Picked by hand, a cancelled run is shown with a warning.
    box.set_value([cancelled, a]).run()
    assert any("not a finished run (cancelled at epoch 1 of 3)" in w.value for w in at.warning)
    # A later visit adds only the new finished runs of this dataset and teacher.
    at.multiselect(key="cmp_runs").set_value([a]).run()
    c = run(3)["run_id"]
    copy(rec, "other-again", source="text-demo")
    _open(at, "1_data.py")
    _open(at, "5_compare.py")
    assert at.multiselect(key="cmp_runs").value == [c, a]
    assert other not in at.multiselect(key="cmp_runs").value


# -- honest numbers: the selection split and "does distillation pay here?" -------------------
def test_data_page_names_the_selection_split_and_answers_whether_distillation_pays(
    at_digits: AppTest,
):
    _open(at_digits, "1_data.py")
    assert _metric(at_digits, "dev rows") == "144"
    captions = " ".join(c.value for c in at_digits.caption)
    assert "Selection split: **dev**, 144 rows, a stratified 10% holdout of train" in captions
    assert "scored once per finished run and chooses nothing" in captions
    at_digits.button(key="data_headroom").click().run()
    assert not at_digits.exception, at_digits.exception
    gap = _metric(at_digits, "Gap")
    teacher = float(_metric(at_digits, "Teacher (selection split)").rstrip("%"))
    hard = float(_metric(at_digits, "Hard-label mlp student").rstrip("%"))
    assert (
        gap == f"{teacher - hard:+.1f} points"
        or abs(float(gap.split()[0]) - (teacher - hard)) < 0.11
    )
    said = [m.value for m in (*at_digits.success, *at_digits.warning)]
    assert any("on the selection split (dev)" in m for m in said), said
    # Cached: the next visit shows the answer without the button.
    _open(at_digits, "1_data.py")
    assert _metric(at_digits, "Gap") == gap
    assert not [b for b in at_digits.button if b.key == "data_headroom"]


def test_compare_says_which_split_chose_and_shows_the_runs_headroom(
    app_ws: Path, monkeypatch, digits_run
):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LELP_WORKSPACE", str(app_ws))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    _open(at, "5_compare.py")
    at.multiselect(key="cmp_runs").set_value([digits_run["run_id"]]).run()
    table = at.dataframe[0].value
    row = table[table["run"] == "digits tiny lelp"].iloc[0]
    sel_acc = digits_run["metrics"]["student_select"]["accuracy"]
    assert row["selection acc."] == pytest.approx(sel_acc, abs=1e-3)
    captions = " ".join(c.value for c in at.caption)
    assert "Selection split (dev) of these runs: a stratified 10% holdout" in captions
    assert "temperature 1" in captions
    at.button(key="cmp_headroom_0").click().run()
    assert not at.exception, at.exception
    assert _metric(at, "Hard-label mlp student").endswith("%")


# -- sweeps you can read by eye: Compare's sweep view, the Distill page's grid builder ---------
@pytest.fixture(scope="module")
def kd_sweep(tmp_path_factory: pytest.TempPathFactory, digits_config: Any) -> dict[str, Any]:
    """A real sweep in a fresh workspace: kd at tau 1 and 4, seeds 0 and 1, one epoch of a
    tiny digits student each, run in this process (``lelp_studio.jobs.run_job``)."""
    from lelp_studio import jobs
    from lelp_studio.store import Workspace

    root = tmp_path_factory.mktemp("sweep_ws")
    ws = Workspace(root)
    base = digits_config("digits kd", "kd", 8)
    sweep_id, ids = jobs.submit_sweep(ws, base, {"train.tau": [1.0, 4.0], "train.seed": [0, 1]})
    for i in ids:
        assert jobs.run_job(ws, i).state == "succeeded"
    return {"root": root, "sweep_id": sweep_id, "ids": ids}


def _figure(chart: Any) -> Any:
    """The plotly Figure an AppTest chart element carries."""
    import plotly.io as pio

    return pio.from_json(chart.proto.spec)


def _array(v: Any) -> Any:
    """A figure array as numbers (plotly 6+ writes numpy arrays as base64 ``bdata``)."""
    import base64

    import numpy as np

    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return a.reshape([int(n) for n in str(v.get("shape", len(a))).split(",")])
    return np.asarray(v)


def _sweep_compare(root: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("LELP_APP_AUTOSTART_WORKER", "0")  # queued jobs stay queued
    at = _first_run(root, monkeypatch, ws_root=str(root))
    return _open(at, "5_compare.py")


def test_compare_sweep_view_folds_seeds_and_draws_the_line(kd_sweep, monkeypatch):
    at = _sweep_compare(kd_sweep["root"], monkeypatch)
    assert at.radio(key="cmp_view").value == "Per run"
    at.selectbox(key="cmp_sweep").set_value(kd_sweep["sweep_id"]).run()
    assert not at.exception, at.exception
    assert at.radio(key="cmp_view").value == "Sweep view"  # a picked sweep reads aggregated
    table = next(d.value for d in at.dataframe if "selection (ranks)" in d.value.columns)
    assert len(table) == 2 and table["n"].tolist() == [2, 2]
    assert sorted(table["tau"]) == ["1", "4"] and set(table["seeds"]) == {"0, 1"}
    assert table["missing seeds"].tolist() == ["-", "-"]
    assert all(" ± " in v for v in table["selection (ranks)"])
    assert any(
        "Ranked on the selection split (dev)" in c.value and "never ranks" in c.value
        for c in at.caption
    )
    charts = at.get("plotly_chart")
    assert len(charts) == 1  # one setting varies: the line, no heat map, no bars
    fig = _figure(charts[0])
    assert fig.layout.xaxis.title.text == "tau"
    assert list(fig.data[0].x) == ["1", "4"] and len(_array(fig.data[0].error_y.array)) == 2
    # Back to the per-run view: one row per run.
    at.radio(key="cmp_view").set_value("Per run").run()
    assert len(at.dataframe[0].value) == 4


def test_compare_sweep_view_saves_the_best_setting_and_queues_new_seeds(kd_sweep, monkeypatch):
    from lelp_studio import jobs, sweeps
    from lelp_studio.store import Workspace

    ws = Workspace(kd_sweep["root"])
    at = _sweep_compare(kd_sweep["root"], monkeypatch)
    at.selectbox(key="cmp_sweep").set_value(kd_sweep["sweep_id"]).run()
    at.text_input(key="cmp_sweep_spec_name").set_value("kd best").run()
    at.button(key="cmp_sweep_save").click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    assert any("lelp distill --spec kd best" in s.value for s in at.success)
    df = sweeps.aggregate(r for r in ws.list_runs())
    best_tau = sweeps.best_setting(df)["tau"]
    spec = ws.load_spec("kd best")
    assert spec["train"]["tau"] == best_tau and "seed" not in spec["train"]
    assert spec["train"]["objective"] == "kd"

    at.number_input(key="cmp_sweep_new_seeds").set_value(2).run()
    at.button(key="cmp_sweep_requeue").click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    said = next(s.value for s in at.success if "Queued sweep" in s.value)
    new_id = said.split("`")[1]
    queued = jobs.list_jobs(ws, sweep_id=new_id)
    assert sorted(j.config["train"]["seed"] for j in queued) == [2, 3]  # seeds not used yet
    assert {j.config["train"]["tau"] for j in queued} == {best_tau}
    assert all(j.state == "queued" for j in queued)


def test_compare_sweep_view_heat_map_objective_bars_and_verdict(tmp_path: Path, monkeypatch):
    """Hand-made records: lelp over S x tau and kd over tau, two seeds each."""
    from lelp_studio.config import RunConfig
    from lelp_studio.store import Workspace

    ws = Workspace(tmp_path)
    monkeypatch.setenv("LELP_APP_AUTOSTART_WORKER", "0")
    for obj, S, tau, seed in [
        (o, s, t, seed)
        for o, ss in (("lelp", (2, 4)), ("kd", (4,)))
        for s in ss
        for t in (1.0, 4.0)
        for seed in (0, 1)
    ]:
        cfg = RunConfig(name="hand").model_dump(mode="json")
        cfg["train"].update(objective=obj, tau=tau, seed=seed)
        cfg["subclasses"]["n_subclasses"] = S
        sel = (80.0 if obj == "lelp" else 70.0) + S + tau + seed
        ws.save_run(
            {
                "run_id": f"{obj}-{S}-{tau:g}-{seed}",
                "name": f"{obj} S={S} tau={tau} seed={seed}",
                "config": cfg,
                "metrics": {"student": {"accuracy": sel - 5}, "student_select": {"accuracy": sel}},
            }
        )
    at = _first_run(tmp_path, monkeypatch, ws_root=str(tmp_path), cmp_view="Sweep view")
    _open(at, "5_compare.py")
    at.multiselect(key="cmp_runs").set_value([r["run_id"] for r in ws.list_runs()]).run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "selection (ranks)" in d.value.columns)
    assert len(table) == 6 and table["n"].tolist() == [2] * 6
    assert table.iloc[0][["objective", "S", "tau"]].tolist() == ["lelp", "4", "4"]
    # only what was swept: a kd run's ignored subclass options do not count as varying
    assert list(table.columns[:4]) == ["rank", "objective", "tau", "S"]
    assert at.selectbox(key="cmp_sweep_x").options == ["objective", "tau", "S"]
    at.selectbox(key="cmp_sweep_x").set_value("S").run()
    at.selectbox(key="cmp_sweep_y").set_value("tau").run()
    # objective is fixed at the best row's value
    assert at.selectbox(key="cmp_sweep_fix_objective").value == "lelp"
    heat = _figure(at.get("plotly_chart")[0]).data[0]
    assert heat.type == "heatmap" and list(heat.x) == ["2", "4"] and list(heat.y) == ["1", "4"]
    assert _array(heat.z)[1, 1] == pytest.approx(80 + 4 + 4 + 0.5)
    bars = _figure(at.get("plotly_chart")[1]).data[0]
    assert list(bars.x) == ["lelp (best of 4)", "kd tau=1", "kd tau=4"]
    verdict = next(m.value for m in at.markdown if m.value.startswith("**Verdict:**"))
    assert "LELP beats KD beyond the noise" in verdict
    # fixed at kd, the S x tau map has no S values to draw: said, not drawn empty
    at.selectbox(key="cmp_sweep_fix_objective").set_value("kd").run()
    assert not at.exception
    assert any("No scored run has S and tau" in i.value for i in at.info)


def test_distill_grid_builder_counts_and_queues_the_sweep(tmp_path: Path, monkeypatch):
    from lelp_studio import jobs
    from lelp_studio.store import Workspace

    monkeypatch.setenv("LELP_APP_AUTOSTART_WORKER", "0")  # queued jobs stay queued
    at = _first_run(tmp_path, monkeypatch, ws_root=str(tmp_path))
    _open(at, "4_distill.py")
    assert at.multiselect(key="sweep_objectives").value == []  # the objective picked above
    assert at.button(key="sweep_queue").disabled
    assert any("Enter values for at least one setting" in c.value for c in at.caption)
    at.text_input(key="sweep_S").set_value("2, 4").run()
    at.text_input(key="sweep_tau").set_value("1 4").run()
    at.text_input(key="sweep_seeds").set_value("0,1").run()
    at.multiselect(key="sweep_objectives").set_value(["kd", "lelp"]).run()
    said = [m.value for m in at.markdown if m.value.startswith("This will queue")]
    assert said == [
        "This will queue **12 jobs** (2 objective × 2 n_subclasses × 2 tau × 2 seed; 4 would "
        "repeat a student (a setting its objective ignores))."
    ]  # kd ignores S: its 2 x S points are one student each
    assert any(
        "--grid train.objective=kd,lelp --grid subclasses.n_subclasses=2,4" in c.value
        for c in at.caption
    )
    at.text_input(key="sweep_beta").set_value("1, x").run()
    assert any("beta (subclasses.beta): 'x' is not a number" in e.value for e in at.error)
    assert at.button(key="sweep_queue").disabled
    at.text_input(key="sweep_beta").set_value("").run()
    at.button(key="sweep_queue").click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    msg = next(s.value for s in at.success if "Queued sweep" in s.value)
    queued = jobs.list_jobs(Workspace(tmp_path), sweep_id=msg.split("`")[1])
    assert len(queued) == 12 and {j.kind for j in queued} == {"sweep-member"}
    combos = {
        (
            j.config["train"]["objective"],
            j.config["subclasses"]["n_subclasses"],
            j.config["train"]["tau"],
            j.config["train"]["seed"],
        )
        for j in queued
    }
    assert len(combos) == 12
    assert {j.config["train"]["epochs"] for j in queued} == {4}  # the page's own fields
    assert any(j.name.endswith("objective=kd n_subclasses=2 tau=1.0 seed=0") for j in queued)
    # The fields survive a visit to another page.
    _open(at, "1_data.py")
    _open(at, "4_distill.py")
    assert at.text_input(key="sweep_tau").value == "1 4"
    assert at.multiselect(key="sweep_objectives").value == ["kd", "lelp"]


def test_distill_job_card_says_epoch_elapsed_and_test_score(tmp_path: Path, monkeypatch):
    """Issue 18: a card said only "running"; its bar stopped at two thirds of the card."""
    from lelp_studio import jobs
    from lelp_studio.config import DatasetSpec, RunConfig, StudentSpec, TeacherSpec, TrainSpec
    from lelp_studio.store import Workspace

    ws = Workspace(tmp_path)
    cfg = RunConfig(
        name="digits-bin hard",
        dataset=DatasetSpec(source="digits-bin"),
        teacher=TeacherSpec(kind="digits-mlp"),
        student=StudentSpec(kind="mlp", hidden=8),
        train=TrainSpec(epochs=2, objective="hard", device="cpu"),
    )
    job_id = jobs.submit(ws, "distill", cfg)
    assert jobs.run_job(ws, job_id).state == "succeeded"
    score = ws.load_run(jobs.get_job(ws, job_id).result)["metrics"]["student"]["accuracy"]
    at = _first_run(tmp_path, monkeypatch, ws_root=str(tmp_path))
    _open(at, "4_distill.py")
    facts = [c.value for c in at.caption if c.value.startswith("epoch ")]
    assert len(facts) == 1, [c.value for c in at.caption]
    assert facts[0].startswith("epoch 2/2 · elapsed ")
    assert facts[0].endswith(f" · test accuracy {score:.1f}%")
    bar = at.get("progress")[0]
    assert bar.proto.value == 100
    # The bar sits in the card itself, not in the title's (two-thirds wide) column.
    assert at.columns and not any(col.get("progress") for col in at.columns)


# -- issue 15: the teacher's fine-tune, one click away on the Data page -----------------------
def _finetune_jobs(app_ws: Path) -> list[Any]:
    from lelp_studio import jobs
    from lelp_studio.store import Workspace

    return [j for j in jobs.list_jobs(Workspace(app_ws)) if j.kind == "teacher-finetune"]


def _cancel_all(app_ws: Path) -> None:
    """Nothing this test queued may wait for another test's worker."""
    from lelp_studio import jobs
    from lelp_studio.store import Workspace

    for job in _finetune_jobs(app_ws):
        if job.state in ("queued", "running"):
            jobs.request_cancel(Workspace(app_ws), job.id)


def test_data_page_queues_the_teacher_finetune_as_a_background_job(at: AppTest, app_ws: Path):
    _open(at, "1_data.py")
    if at.session_state["teacher_spec"]["kind"] != "minilm":
        pytest.skip("the default teacher is not MiniLM here")
    before = len(_finetune_jobs(app_ws))
    at.radio(key="data_teacher_mode").set_value("finetune").run()
    assert not at.exception and not at.error
    # Not computed in the page: the panel says what happens and how long it should take.
    assert not any(m.label.startswith("Teacher accuracy") for m in at.metric)
    expected = [c.value for c in at.caption if c.value.startswith("Expected time: about ")]
    assert len(expected) == 1 and "s a step, timed here" in expected[0], expected
    at.button(key="data_finetune").click().run()
    assert not at.exception
    mine = _finetune_jobs(app_ws)
    assert len(mine) == before + 1
    job = mine[0]
    assert job.state == "queued" and job.config["dataset"]["source"] == "text-demo"
    assert job.config["teacher"] == at.session_state["teacher_spec"]  # the page's teacher
    assert f"Queued fine-tune job #{job.id}." in [s.value for s in at.success]
    cards = [m.value for m in at.markdown if m.value.startswith(f"**#{job.id} ")]
    assert cards == [f"**#{job.id} fine-tune MiniLM on text-demo** · `queued`"]
    at.button(key="data_finetune").click().run()  # the same settings again: not twice
    assert len(_finetune_jobs(app_ws)) == before + 1
    assert any("already queued or running" in s.value for s in at.success)
    _cancel_all(app_ws)


@pytest.mark.parametrize("pays", [False, True])
def test_data_page_offers_the_finetune_only_when_the_frozen_teacher_leaves_no_room(
    at: AppTest, app_ws: Path, monkeypatch: pytest.MonkeyPatch, pays: bool
):
    from lelp_studio.store import Workspace

    _open(at, "1_data.py")
    if at.session_state["teacher_spec"]["kind"] != "minilm":
        pytest.skip("the default teacher is not MiniLM here")
    verdict = {
        "teacher_accuracy": 81.0, "hard_mean": 80.7 if not pays else 70.0, "hard_std": 0.3,
        "n_seeds": 3, "gap": 0.3 if not pays else 11.0, "student_kind": "bag", "pays": pays,
        "message": "measured",
    }  # fmt: skip
    monkeypatch.setattr(Workspace, "load_headroom", lambda self, key: verdict)
    at.run()
    assert not at.exception and _metric(at, "Gap") == f"{verdict['gap']:+.1f} points"
    offer = [i.value for i in at.info if "Fine-tuning MiniLM here" in i.value]
    buttons = [b for b in at.button if b.key == "data_offer_finetune"]
    if pays:
        assert not offer and not buttons
        return
    assert len(offer) == 1 and "(3 epochs) takes about " in offer[0], offer
    assert "on this machine" in offer[0] and "s a step, timed here" in offer[0]
    before = len(_finetune_jobs(app_ws))
    buttons[0].click().run()
    assert not at.exception
    assert len(_finetune_jobs(app_ws)) == before + 1
    # One click: the job is queued and the page now shows the fine-tuned teacher's panel.
    assert at.session_state["teacher_spec"]["mode"] == "finetune"
    assert at.radio(key="data_teacher_mode").value == "finetune"
    assert any(c.value.startswith("Expected time: about ") for c in at.caption)
    _cancel_all(app_ws)


def test_data_page_says_a_finetuned_teacher_is_ready_and_uses_it(at: AppTest, app_ws: Path):
    """A fine-tuned teacher cached for this dataset (here the frozen arrays stored under a
    fine-tune's key, as a finished job leaves them) is named, and one click makes it the
    teacher: a cache hit, nothing recomputed."""
    from lelp_studio.config import DatasetSpec, TeacherSpec
    from lelp_studio.pipeline import get_dataset, get_teacher_outputs, pooling_name
    from lelp_studio.store import Workspace
    from lelp_studio.teachers import teacher_fingerprint

    _open(at, "1_data.py")
    if at.session_state["teacher_spec"]["kind"] != "minilm":
        pytest.skip("the default teacher is not MiniLM here")
    ws, ds = Workspace(app_ws), get_dataset(DatasetSpec(source="text-demo"))
    frozen, _, _ = get_teacher_outputs(ws, ds, TeacherSpec(kind="minilm"))
    tuned = TeacherSpec(kind="minilm", mode="finetune", epochs=7)  # no other test asks for it
    key = ws.teacher_key(ds.fingerprint(), teacher_fingerprint(tuned), pooling_name(tuned))
    facts = {"steps": 147, "resumed_from_step": 40, "resume_note": None}
    frozen.meta.update(mode="finetune", spec=tuned.model_dump(mode="json"), finetune=facts)
    ws.save_teacher_outputs(key, frozen, dataset_fp=ds.fingerprint())
    at.run()
    ready = [s.value for s in at.success if "fine-tuned teacher is ready" in s.value]
    assert ready == [
        "A fine-tuned teacher is ready for this dataset (7 epochs, lr 5e-05, batch 64, "
        "precision auto)."
    ]
    next(b for b in at.button if b.key.startswith("data_use_finetuned_")).click().run()
    assert not at.exception and not at.error
    assert at.session_state["teacher_spec"] == tuned.model_dump(mode="json")
    assert any(m.label.startswith("Teacher accuracy") for m in at.metric)  # its outputs
    said = " ".join(s.value for s in at.success)
    assert "Fine-tuned teacher ready for this dataset: 147 steps, resumed from step 40." in said
