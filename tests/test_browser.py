"""What a person sees: the real app in headless Chromium (Debian's package, never a download).

Starts ``streamlit run app.py`` on a free localhost port, walks every page, makes a box
selection on the embedding map, and saves a screenshot of each page under
``test-artifacts/screenshots/`` (``LELP_SCREENSHOT_DIR`` overrides it; the README's pictures in
``docs/screenshots/`` come from this test). Skipped cleanly where Chromium is absent.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
]
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Every page and screenshot at 1,400 px wide (issue 18: the README's pictures at that width).
VIEWPORT = {"width": 1400, "height": 900}
PAGES = ["Data & teacher", "Embedding map", "Subspaces", "Distill", "Compare"]


def _stop_workers(ws_root: str) -> None:
    """The Distill page starts a detached worker; stop it with the app."""
    import signal

    from lelp_studio import jobs
    from lelp_studio.store import Workspace

    for w in jobs.list_workers(Workspace(ws_root), fresh_within=1e9):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(w["pid"]), signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: The app's workspace, for tests that add records the app then shows.
WORKSPACE: dict[str, str] = {}


@contextlib.contextmanager
def _serve(port: int, env: dict[str, str], log: Path) -> Iterator[str]:
    """``streamlit run app.py`` on ``port`` until the block ends; yields its URL once its
    health check answers."""
    with open(log, "a") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.headless",
                "true",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(120):
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.5)
            else:
                pytest.fail("streamlit did not answer its health check within 60 s")
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _app_env(ws_root: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env |= {
        "LELP_WORKSPACE": ws_root,
        "LELP_APP_AUTOSTART_WORKER": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    return env | extra


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ws_root = str(tmp_path_factory.mktemp("browser_ws"))
    WORKSPACE["root"] = ws_root
    log = tmp_path_factory.mktemp("browser_log") / "streamlit.log"
    try:
        with _serve(_free_port(), _app_env(ws_root), log) as url:
            yield url
    finally:
        _stop_workers(ws_root)


#: Every URL the browser asked for while the tests ran (see the last test).
REQUESTED: list[str] = []


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium for the module (Playwright's sync API allows one at a time)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(app_url: str, browser) -> Iterator[object]:  # type: ignore[no-untyped-def]
    pg = browser.new_page(viewport=VIEWPORT)
    pg.set_default_timeout(180_000)
    pg.on("request", lambda r: REQUESTED.append(r.url))
    pg.goto(app_url)
    yield pg
    pg.close()


def _shot_dir() -> Path:
    d = Path(os.environ.get("LELP_SCREENSHOT_DIR", ROOT / "test-artifacts" / "screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _idle(pg) -> None:  # type: ignore[no-untyped-def]
    """Wait until Streamlit has finished the current run (no 'Running...' status widget)."""
    pg.wait_for_timeout(500)
    pg.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=240_000
    )
    pg.wait_for_timeout(300)


def _enter(pg, field, value: str) -> None:  # type: ignore[no-untyped-def]
    """Type ``value`` into ``field``, commit it with Enter and wait for the rerun it starts."""
    field.fill(value)
    field.press("Enter")
    _idle(pg)


def _goto(pg, title: str) -> None:  # type: ignore[no-untyped-def]
    pg.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    pg.get_by_role("heading", name=title).first.wait_for()
    _idle(pg)


def _shoot(pg, name: str) -> Path:  # type: ignore[no-untyped-def]
    path = _shot_dir() / f"{name}.png"
    pg.screenshot(path=str(path))
    assert path.stat().st_size > 10_000  # a real rendering, not a blank page
    return path


def _no_exception(pg) -> None:  # type: ignore[no-untyped-def]
    assert pg.get_by_test_id("stException").count() == 0, pg.get_by_test_id(
        "stException"
    ).first.inner_text()


def _choose(pg, box: str, option: str, page: str, tries: int = 4) -> None:  # type: ignore[no-untyped-def]
    """On ``page``, open the selectbox labelled ``box`` and click its option containing
    ``option``.

    Twice on a loaded machine (CI, and a fresh clone under a CPU burner, 2026-12-02) the
    sweep's option was not there within 3 minutes of a single click, while idle runs passed;
    the cause is not pinned down. So each try after the first draws the page afresh, opens
    the dropdown again and waits for the option, and a failure names what was offered."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    seen: list[str] = []
    for attempt in range(tries):
        if attempt:
            pg.keyboard.press("Escape")
            _goto(pg, page)
        pg.get_by_test_id("stSelectbox").filter(has_text=box).first.click()
        wanted = pg.get_by_role("option").filter(has_text=option).first
        try:
            wanted.wait_for(timeout=30_000)
            wanted.click(timeout=30_000)
            return
        except PlaywrightTimeout:
            seen = pg.get_by_role("option").all_inner_texts()
    pytest.fail(f"{box!r} never offered {option!r}; its options: {seen}")


#: Per job id, the state its card's header shows ("#12 name · succeeded"), or null.
_CARD_STATES = (
    "ids => { const cards = [...document.querySelectorAll('[data-testid=\"stMain\"] p')]"
    ".map(p => p.innerText); return ids.map(id => { const c = cards.find("
    "t => t.startsWith('#' + id + ' ')); return c ? c.split(' · ').pop().trim() : null; }); }"
)


def _wait_for_jobs(pg, ids: list[int], timeout: int = 600_000) -> list[str]:  # type: ignore[no-untyped-def]
    """Wait until the cards of jobs ``ids`` all say succeeded (or one says failed); returns
    their states. By id, so a card of an earlier job never stands in for them."""
    pg.wait_for_function(
        f"ids => {{ const s = ({_CARD_STATES})(ids); return s.includes('failed') || "
        "s.every(t => t === 'succeeded'); }",
        arg=ids,
        timeout=timeout,
    )
    return list(pg.evaluate(_CARD_STATES, ids))


def test_data_page_shows_the_demo_and_teacher(page) -> None:  # type: ignore[no-untyped-def]
    _goto(page, "Data & teacher")
    body = page.locator("section.main, [data-testid='stMain']").first
    body.get_by_test_id("stMetric").filter(has_text="Teacher accuracy").first.wait_for()
    text = body.inner_text()
    assert "text-demo" in text or "Text demo" in text or "text demo" in text
    assert any(ch.isdigit() for ch in text)
    _no_exception(page)
    _shoot(page, "1_data")


def test_map_box_selection_lists_rows(page) -> None:  # type: ignore[no-untyped-def]
    _goto(page, "Embedding map")
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    assert page.locator("canvas").count() > 0  # Scattergl draws into WebGL canvases
    _shoot(page, "2_map")
    # Box-select the middle of the plot area with plotly's own modebar tool.
    plot.hover()
    page.locator(".modebar-btn[data-val='select']").first.click()
    box = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    assert box is not None
    x0, y0 = box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2
    x1, y1 = box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.8
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()
    heading = page.get_by_role("heading", name="Selected examples")
    page.wait_for_function(
        "() => /Selected examples \\(([1-9][0-9,]*)\\)/.test(document.body.innerText)",
        timeout=60_000,
    )
    _idle(page)
    assert heading.count() == 1
    assert page.get_by_test_id("stDataFrame").count() >= 1
    _no_exception(page)
    _shoot(page, "2_map_selection")


def test_subspaces_page_shows_spectra_and_table(page) -> None:  # type: ignore[no-untyped-def]
    """Issue 18: this asserted the table as soon as the first plot appeared, and failed on a
    busy machine; it waits for each thing it asserts."""
    _goto(page, "Subspaces")
    page.locator(".js-plotly-plot").nth(1).wait_for()  # spectra + map at least
    page.get_by_test_id("stDataFrame").first.wait_for()  # the pseudo-subclass table
    _idle(page)
    assert page.locator(".js-plotly-plot").count() >= 2
    assert page.get_by_test_id("stDataFrame").count() >= 2  # and the methods' summary
    _no_exception(page)
    _shoot(page, "3_subspaces")


def test_distill_queues_a_job_and_shows_progress(page) -> None:  # type: ignore[no-untyped-def]
    _goto(page, "Distill")
    page.get_by_role("button", name="Queue run").click()
    page.get_by_text("Queued job(s)", exact=False).first.wait_for()
    # The job list is a fragment re-reading the jobs table: the state moves on by itself.
    page.get_by_text("running", exact=True).or_(
        page.get_by_text("succeeded", exact=True)
    ).first.wait_for(timeout=120_000)
    # The card's bar is drawn with its header; wait for it too (the CI run on 2026-12-02 read
    # the count while the fragment was still replacing the previous list).
    page.get_by_test_id("stProgress").first.wait_for(timeout=120_000)
    assert page.get_by_test_id("stProgress").count() >= 1
    page.get_by_text("succeeded", exact=True).first.wait_for(timeout=300_000)
    # The finished card has no Cancel button; the screenshot waits for that redraw too.
    page.get_by_role("button", name="Cancel").wait_for(state="detached", timeout=60_000)
    _no_exception(page)
    # No tooltip over the picture: the clicked button keeps focus (and its tooltip) until blurred.
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.mouse.move(0, 0)
    page.get_by_role("tooltip").wait_for(state="detached", timeout=30_000)
    _shoot(page, "4_distill")


def test_distill_job_card_says_epoch_elapsed_and_score_across_the_card(page) -> None:  # type: ignore[no-untyped-def]
    """Issue 18: a card said only "running", and its bar stopped at two thirds of the card."""
    _goto(page, "Distill")
    facts = page.get_by_text("test accuracy", exact=False).first
    facts.wait_for(timeout=120_000)  # the job list refreshes itself every 2 s
    text = facts.inner_text()
    assert "epoch " in text and "elapsed " in text, text
    # the card: the innermost block holding both the facts and a bar
    card = (
        page.get_by_test_id("stVerticalBlock")
        .filter(has=page.get_by_text("test accuracy", exact=False))
        .filter(has=page.get_by_test_id("stProgress"))
        .last
    )
    bar = card.get_by_test_id("stProgress").first
    bar.wait_for()
    cbox, bbox = card.bounding_box(), bar.bounding_box()
    assert cbox is not None and bbox is not None
    assert bbox["width"] >= 0.9 * cbox["width"] - 40, (bbox, cbox)  # padding aside, full width
    _no_exception(page)


def _add_records() -> dict[str, str]:
    """Beside the run the Distill test made: the same setting with another seed (newer), a
    copy cancelled at epoch 1 of 3, and a run of another dataset (the newest of all)."""
    import json

    from lelp_studio.store import Workspace

    ws = Workspace(WORKSPACE["root"])
    first = ws.list_runs()[-1]

    def copy(run_id: str, change: dict[str, object], metrics: dict[str, object]) -> str:
        rec = json.loads(json.dumps(first))
        rec.pop("created", None)
        rec["run_id"] = run_id
        for path, value in change.items():
            section, key = path.split(".")
            rec["config"][section][key] = value
        rec["metrics"].update(metrics)
        if "dataset.source" in change:
            rec["name"] = f"{change['dataset.source']} lelp"
        ws.save_run(rec)
        return run_id

    other = "text-demo" if first["config"]["dataset"]["source"] == "digits-bin" else "digits-bin"
    return {
        "first": first["run_id"],
        "seed": copy("seed-one-run", {"train.seed": 1}, {}),
        "cancelled": copy("cancel-run", {"train.seed": 2, "train.epochs": 3}, {"cancelled": True}),
        "other": copy("other-data-run", {"dataset.source": other}, {}),
        "other_source": other,
    }


def test_compare_picks_finished_runs_of_this_dataset_told_apart(page) -> None:  # type: ignore[no-untyped-def]
    """Issue 18: Compare's first pick is the newest finished runs of the current dataset and
    teacher (no cancelled run, no other dataset), and runs differing by seed say so (the
    cancelled run's mark in the selector is checked in test_app.py)."""
    ids = _add_records()
    page.reload()
    _idle(page)
    _goto(page, "Compare")
    runs = page.get_by_test_id("stMultiSelect").filter(has_text="Runs").first
    runs.wait_for()
    # the picked runs show as chips labelled by what differs: their seeds
    page.wait_for_function(
        "() => document.body.innerText.includes('seed=1') && "
        "document.body.innerText.includes('seed=0')"
    )
    chips = runs.inner_text()
    assert "seed=0" in chips and "seed=1" in chips, chips
    assert "cancelled" not in chips and ids["other_source"] not in chips, chips
    table = page.get_by_test_id("stDataFrame").first
    table.wait_for()
    _no_exception(page)


def test_compare_page_shows_the_finished_run(page) -> None:  # type: ignore[no-untyped-def]
    _goto(page, "Compare")
    # The first figure sits in a collapsed expander: wait for a visible one.
    page.locator(".js-plotly-plot:visible").first.wait_for()
    assert page.get_by_text("Reliability diagram").count() >= 1
    text = page.locator("[data-testid='stMain']").first.inner_text()
    assert "No runs yet" not in text
    assert page.get_by_test_id("stDataFrame").count() >= 1
    _no_exception(page)
    _shoot(page, "5_compare")


def test_compare_table_fits_a_1400_px_screen(page) -> None:  # type: ignore[no-untyped-def]
    """Issue 18 item 8: the Compare table scrolled sideways at 1,400 px (15 columns)."""
    page.set_viewport_size({"width": 1400, "height": 900})
    try:
        _goto(page, "Compare")
        table = page.get_by_test_id("stDataFrame").first
        table.wait_for()
        # the grid's scroll box, once laid out: its content against its visible width
        widths = (
            "el => { const s = el.querySelector('.dvn-scroller'); "
            "return s && s.clientWidth > 0 ? [s.scrollWidth, s.clientWidth] : null; }"
        )
        table.locator(".dvn-scroller").wait_for()
        page.wait_for_function(f"el => ({widths})(el) !== null", arg=table.element_handle())
        scroll, visible = table.evaluate(widths)
        assert 300 < scroll <= visible, (scroll, visible)  # several columns, none hidden
        _no_exception(page)
    finally:
        page.set_viewport_size(VIEWPORT)


def test_distill_settings_survive_the_job_list_refresh_and_a_page_visit(page) -> None:  # type: ignore[no-untyped-def]
    """The job list re-runs every 2 s as a fragment; those runs dropped the page's remembered
    widget values, so epochs went back to its default after a visit to another page."""
    _goto(page, "Distill")
    epochs = page.get_by_role("spinbutton", name="Epochs")
    _enter(page, epochs, "3")
    page.wait_for_timeout(4500)  # two refreshes of the job list
    _goto(page, "Data & teacher")
    _goto(page, "Distill")
    assert page.get_by_role("spinbutton", name="Epochs").input_value() == "3"


def test_the_browser_fetched_nothing_from_the_internet(page) -> None:  # type: ignore[no-untyped-def]
    """Offline by default: no font, icon or script from a CDN (a Material page icon used to
    make the browser fetch the favicon from fonts.gstatic.com)."""
    page.reload()
    _idle(page)
    icon = "() => [...document.querySelectorAll('link[rel*=icon]')].map(l => l.href).join(' ')"
    page.wait_for_function(f"() => !({icon})().endsWith('favicon.png')")  # the app's own icon
    page.wait_for_timeout(1000)
    assert urllib.parse.urlsplit(page.evaluate(icon)).hostname == "127.0.0.1"
    hosts = {urllib.parse.urlsplit(u).hostname for u in REQUESTED if u.startswith("http")}
    assert REQUESTED and hosts == {"127.0.0.1"}, sorted(h or "" for h in hosts)


def test_a_sweep_queued_on_distill_reads_as_a_heat_map_on_compare(page) -> None:  # type: ignore[no-untyped-def]
    """The grid builder queues S x tau (2 x 2, one epoch each) on the text demo, the app's
    worker runs it, and Compare's sweep view draws the selection-split heat map."""
    _goto(page, "Distill")
    epochs = page.get_by_role("spinbutton", name="Epochs")
    _enter(page, epochs, "1")
    page.get_by_test_id("stExpander").filter(has_text="Sweep over a grid").locator(
        "summary"
    ).click()
    for label, values in (("S (subclasses.n_subclasses)", "2, 4"), ("tau (train.tau)", "1, 4")):
        box = page.get_by_role("textbox", name=label)
        _enter(page, box, values)
    page.get_by_text("This will queue 4 jobs", exact=False).wait_for()
    page.get_by_role("button", name="Queue sweep").click()
    queued = page.get_by_text("Queued sweep", exact=False).first
    queued.wait_for()
    # Wait for the sweep's own cards, by the ids the message names: counting every state on
    # the page passed on the previous list while the fragment was still redrawing it (CI,
    # 2026-12-02), before the sweep had run.
    found = re.search(r"#(\d+)\D+#(\d+)", queued.inner_text())
    assert found, queued.inner_text()
    ids = list(range(int(found[1]), int(found[2]) + 1))
    assert len(ids) == 4, ids
    assert _wait_for_jobs(page, ids) == ["succeeded"] * 4
    _goto(page, "Compare")
    _choose(page, "Sweep", "(4 runs)", "Compare")
    heading = page.get_by_role("heading", name="Sweep view")
    heading.wait_for()
    _idle(page)
    page.locator(".js-plotly-plot .heatmaplayer").first.wait_for()
    text = page.locator("[data-testid='stMain']").first.inner_text()
    assert "Ranked on the selection split (dev)" in text and "never ranks" in text
    assert page.get_by_test_id("stDataFrame").count() >= 1
    _no_exception(page)
    page.set_viewport_size({"width": 1400, "height": 1000})  # table and heat map in one shot
    heading.evaluate("e => e.scrollIntoView({block: 'start'})")
    _shoot(page, "6_sweep")
    page.set_viewport_size(VIEWPORT)


def _expect_whole_app(pg, heading: str) -> None:  # type: ignore[no-untyped-def]
    """What app.py draws around a page: the titled navigation (not the pages/ file names),
    the workspace field, the dataset caption and the wide layout, with ``heading``'s page."""
    from playwright.sync_api import expect

    wait = 120_000  # the first run after a start imports the library: seconds on a busy machine
    nav = pg.get_by_test_id("stSidebarNav")
    for title in PAGES:
        expect(nav.get_by_text(title, exact=True)).to_be_visible(timeout=wait)
    expect(nav.get_by_text("app", exact=True)).to_have_count(0, timeout=wait)
    sidebar = pg.get_by_test_id("stSidebar")
    expect(sidebar.get_by_role("textbox", name="Workspace folder")).to_be_visible(timeout=wait)
    expect(sidebar.get_by_text("Dataset:", exact=False)).to_be_visible(timeout=wait)
    expect(pg.get_by_role("heading", name=heading).first).to_be_visible(timeout=wait)
    _idle(pg)
    block = pg.get_by_test_id("stMainBlockContainer").bounding_box()
    assert block is not None and block["width"] > 800, block  # "wide" (centered is ~730 px)
    _no_exception(pg)


def test_deep_link_after_a_restart_draws_the_whole_app(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 18: after a server restart, a first request to /distill (a refresh of a tab left
    open there, or a fresh deep link) ran pages/4_distill.py without app.py (Streamlit's legacy
    pages/ routing, on until the first st.navigation call of the process; ui/navigation.py)."""
    port, log = _free_port(), tmp_path / "streamlit.log"
    env = _app_env(str(tmp_path / "ws"), LELP_APP_DEMO="digits-bin", LELP_APP_AUTOSTART_WORKER="0")
    tab = browser.new_page(viewport=VIEWPORT)
    tab.set_default_timeout(120_000)
    with _serve(port, env, log) as url:  # started: a deep link comes first
        tab.goto(f"{url}/distill")
        _expect_whole_app(tab, "Distill")  # and the tab stays open on /distill
    with _serve(port, env, log):  # restarted: the open tab's refresh comes first
        tab.reload()
        assert tab.url.endswith("/distill"), tab.url
        _expect_whole_app(tab, "Distill")
        tab.close()
    with _serve(port, env, log) as url:  # restarted: a deep link comes first
        fresh = browser.new_page(viewport=VIEWPORT)
        fresh.set_default_timeout(120_000)
        fresh.goto(f"{url}/distill")
        _expect_whole_app(fresh, "Distill")
        assert fresh.url.endswith("/distill"), fresh.url
        fresh.close()


def test_data_page_finetunes_the_teacher_as_a_background_job(page) -> None:  # type: ignore[no-untyped-def]
    """Issue 15: the teacher's fine-tune is queued from the Data page, the app's worker runs
    it, and the page then shows the fine-tuned teacher (40 training rows, one step)."""
    _goto(page, "Data & teacher")
    rows = page.get_by_role("spinbutton", name="Max training rows (0 = all)")
    _enter(page, rows, "40")
    page.get_by_test_id("stMetric").filter(has_text="Teacher accuracy").first.wait_for()
    page.get_by_test_id("stRadio").filter(has_text="Head training").get_by_text(
        "finetune", exact=True
    ).click()
    _idle(page)
    epochs = page.get_by_role("spinbutton", name="Fine-tune epochs")
    _enter(page, epochs, "1")
    page.get_by_text("Expected time: about", exact=False).wait_for()
    page.get_by_role("button", name="Fine-tune the teacher (background job)").click()
    page.get_by_text("Queued fine-tune job #", exact=False).first.wait_for()
    # The card re-reads the job every 2 s; once the outputs are cached the page reruns.
    page.get_by_text("Fine-tuned teacher ready for this dataset: 1 step", exact=False).wait_for(
        timeout=600_000
    )
    page.get_by_test_id("stMetric").filter(has_text="Teacher accuracy").first.wait_for()
    _idle(page)
    # The panel (its button and job card) has given way to the cached teacher's outputs.
    page.get_by_role("button", name="Fine-tune the teacher (background job)").wait_for(
        state="detached"
    )
    _no_exception(page)
    page.mouse.move(0, 0)
    _shoot(page, "1_data_finetuned")
    # Back to the frozen teacher on all rows, for whatever runs next.
    page.get_by_test_id("stRadio").filter(has_text="Head training").get_by_text(
        "frozen", exact=True
    ).click()
    _idle(page)
    _enter(page, rows, "0")
    page.get_by_test_id("stMetric").filter(has_text="Teacher accuracy").first.wait_for()


def test_a_transfer_set_distillation_runs_from_the_browser(page) -> None:  # type: ignore[no-untyped-def]
    """Issue 15: a transfer file named on the Data page, the teacher labels its rows, and a
    distillation queued on Distill trains on labeled plus transfer rows and finishes."""
    from lelp_studio.store import Workspace

    transfer = ROOT / "sample_data" / "text_demo" / "transfer.txt"
    _goto(page, "Data & teacher")
    rows = page.get_by_role("spinbutton", name="Max training rows (0 = all)")
    _enter(page, rows, "200")
    page.get_by_test_id("stExpander").filter(has_text="Unlabeled transfer data").locator(
        "summary"
    ).click()
    box = page.get_by_role("textbox", name="…or its path on this machine")
    _enter(page, box, str(transfer))
    metric = page.get_by_test_id("stMetric").filter(has_text="transfer rows")
    metric.get_by_text("1,", exact=False).first.wait_for()  # 1,xxx rows kept of the 1,200
    page.get_by_text("How the teacher labels the transfer rows").wait_for()
    _no_exception(page)
    _goto(page, "Distill")
    page.get_by_text("unlabeled transfer rows: distillation objectives train on both").wait_for()
    epochs = page.get_by_role("spinbutton", name="Epochs")
    _enter(page, epochs, "1")
    page.get_by_role("button", name="Queue run").click()
    queued = page.get_by_text("Queued job(s)", exact=False).first
    queued.wait_for()
    found = re.search(r"#(\d+)", queued.inner_text())
    assert found, queued.inner_text()
    job_id = int(found[1])
    assert _wait_for_jobs(page, [job_id]) == ["succeeded"]
    _no_exception(page)
    from lelp_studio import jobs

    job = jobs.get_job(Workspace(WORKSPACE["root"]), job_id)
    run = Workspace(WORKSPACE["root"]).load_run(job.result)
    data = run["metrics"]["data"]
    assert data["labeled"] > 0 and data["transfer"] >= 1000, data
    # Back to no transfer file on all rows, for whatever runs next.
    _goto(page, "Data & teacher")
    box = page.get_by_role("textbox", name="…or its path on this machine")
    _enter(page, box, "")
    _enter(page, rows, "0")
    page.get_by_test_id("stMetric").filter(has_text="Teacher accuracy").first.wait_for()
