"""The Subspaces page's comparison baselines (issue 18 item 1): each fitted once per setting,
the heavy ones off the rerun path with a status at the top of the page, and choices that do
not carry over to another dataset.

Runs the page on digits-bin with an ``arrays`` teacher written here (pixels and class means:
no training, so no torch threads fighting a loaded machine). The baseline store is one per
process, so each test picks a seed no other test uses: its keys are new, and what it counts
is its own work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "3_subspaces.py")
DIGITS = {"source": "digits-bin"}
SMALLER = {"source": "digits-bin", "max_train": 600}


def _arrays_teacher(ds_spec: dict[str, Any], path: Path) -> dict[str, Any]:
    """A teacher for a feature dataset in an instant: H = standardised pixels, logits from
    the class means."""
    from lelp_studio.config import DatasetSpec
    from lelp_studio.data import load_dataset

    ds = load_dataset(DatasetSpec(**ds_spec))
    X = np.asarray(ds.splits["train"].features, dtype=np.float32)
    mean, std = X.mean(0), X.std(0) + 1e-3
    y = np.asarray(ds.splits["train"].y)
    W = np.stack([((X[y == c] - mean) / std).mean(0) for c in range(ds.n_classes)])
    arrays = {"W": W, "b": np.zeros(ds.n_classes, np.float32)}
    for name, split in ds.splits.items():
        H = ((np.asarray(split.features, dtype=np.float32) - mean) / std).astype(np.float32)
        arrays[f"H_{name}"], arrays[f"Z_{name}"] = H, H @ W.T
    np.savez(path, **arrays)
    return {"kind": "arrays", "path": str(path)}


@pytest.fixture(scope="module")
def sub_ws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("subspaces_ws")
    return {
        "root": str(root / "ws"),
        "teacher": _arrays_teacher(DIGITS, root / "digits.npz"),
        "smaller_teacher": _arrays_teacher(SMALLER, root / "smaller.npz"),
    }


def _page(ws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, seed: int, **state: Any) -> AppTest:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LELP_WORKSPACE", ws["root"])
    monkeypatch.setenv("LELP_APP_AUTOSTART_WORKER", "0")
    at = AppTest.from_file(PAGE, default_timeout=240)
    at.session_state["ws_root"] = ws["root"]
    at.session_state["dataset_spec"] = dict(DIGITS)
    at.session_state["teacher_spec"] = ws["teacher"]
    at.session_state["sub_seed"] = seed
    for k, v in state.items():
        at.session_state[k] = v
    return at


def _count_fits(
    monkeypatch: pytest.MonkeyPatch, also: Callable[..., None] | None = None
) -> list[str]:
    """Record the method of every baseline fit the page makes, optionally running ``also``
    inside it first. UMAP + k-means is fitted as k-means: no test waits for numba."""
    import ui.baselines

    real, calls = ui.baselines.fit_subclasser, []

    def counted(spec: Any, *args: Any, **kw: Any) -> Any:
        calls.append(spec.method)
        if also is not None:
            also(spec)
        if spec.method == "umap-kmeans":
            spec = spec.model_copy(update={"method": "kmeans"})
        return real(spec, *args, **kw)

    monkeypatch.setattr(ui.baselines, "fit_subclasser", counted)
    return calls


def _methods(at: AppTest) -> list[str]:
    return next(d.value for d in at.dataframe if "method" in d.value.columns)["method"].tolist()


def _wait_background(timeout: float = 120.0) -> None:
    import ui.baselines

    end = time.monotonic() + timeout
    while ui.baselines.store().pending():
        assert time.monotonic() < end, "the background baselines did not finish"
        time.sleep(0.05)


def test_a_rerun_with_equal_inputs_refits_no_baseline(sub_ws, monkeypatch):
    import sklearn.cluster

    calls = _count_fits(monkeypatch)
    trees: list[int] = []
    real_tree = sklearn.cluster.ward_tree
    monkeypatch.setattr(
        sklearn.cluster, "ward_tree", lambda *a, **k: trees.append(1) or real_tree(*a, **k)
    )
    at = _page(sub_ws, monkeypatch, 9101, sub_compare=["kmeans", "agglomerative", "oracle"])
    at.run()
    assert not at.exception and not at.error
    assert sorted(calls) == ["agglomerative", "kmeans", "oracle"] and len(trees) == 2
    assert _methods(at) == ["LELP", "k-means", "agglomerative", "oracle (latent column)"]

    at.run()  # same inputs
    at.select_slider(key="sub_beta").set_value(4.0).run()  # beta does not enter a baseline
    assert len(calls) == 3, calls
    at.number_input(key="sub_S").set_value(2).run()
    # a new S refits k-means and cuts Ward's kept tree; the oracle does not depend on S
    assert sorted(calls[3:]) == ["agglomerative", "kmeans"] and len(trees) == 2
    at.number_input(key="sub_S").set_value(4).run()  # back to a setting already seen
    assert len(calls) == 5 and not at.exception
    assert _methods(at) == ["LELP", "k-means", "agglomerative", "oracle (latent column)"]


def test_heavy_baselines_compute_in_the_background_under_a_status_at_the_top(sub_ws, monkeypatch):
    release, threads = threading.Event(), []

    def hold(spec: Any) -> None:
        if spec.method == "umap-kmeans":
            threads.append(threading.current_thread().name)
            assert release.wait(120)

    calls = _count_fits(monkeypatch, also=hold)
    at = _page(sub_ws, monkeypatch, 9102, sub_compare=["kmeans", "umap-kmeans"])
    try:
        at.run(timeout=120)  # returns although UMAP + k-means is held
        assert not at.exception
        assert _methods(at) == ["LELP", "k-means"]
        assert any("computing in the background" in c.value for c in at.caption)
        top = at.main.children[1]  # right under the title, above the spectra and map
        assert at.main.children[0].value == "Subspaces"
        assert [s.label for s in top.status][0].startswith(
            "Computing in the background: UMAP + k-means at S = 4"
        )
        assert len(at.status) == 1
        at.run(timeout=120)  # a rerun neither waits for it nor queues it again
        assert calls.count("umap-kmeans") == 1 and _methods(at) == ["LELP", "k-means"]
    finally:
        release.set()
    _wait_background()
    at.run()
    assert threads == ["lelp-baselines"]
    worker = next(t for t in threading.enumerate() if t.name == "lelp-baselines")
    assert worker.daemon  # stopping the server does not wait for a heavy fit
    assert _methods(at) == ["LELP", "k-means", "UMAP + k-means"]
    assert not at.status and calls.count("umap-kmeans") == 1


def test_light_fits_show_their_progress_at_the_top(sub_ws, monkeypatch):
    """Whatever a fit draws (a cached loader's spinner, a progress bar) lands in the
    container under the title: the page computes inside it."""
    import streamlit as st

    _count_fits(monkeypatch, also=lambda spec: st.caption(f"fitting {spec.method}"))
    at = _page(sub_ws, monkeypatch, 9103, sub_compare=["kmeans"])
    at.run()
    assert not at.exception
    top = at.main.children[1]
    assert [c.value for c in top.caption] == ["fitting kmeans"]
    assert [c.value for c in at.caption].count("fitting kmeans") == 1


def test_choices_start_from_the_default_on_another_dataset(sub_ws, monkeypatch):
    import ui.baselines

    at = _page(sub_ws, monkeypatch, 9104)
    at.run()
    assert at.multiselect(key="sub_compare").value == ui.baselines.DEFAULT
    assert not any(ui.baselines.is_heavy(m, 10**7) for m in ui.baselines.DEFAULT)
    at.multiselect(key="sub_compare").set_value(["kmeans", "agglomerative"]).run()
    at.multiselect(key="sub_dirs_0").set_value([1, 0]).run()
    assert not at.exception
    at.run()  # the same dataset keeps them
    assert at.multiselect(key="sub_compare").value == ["kmeans", "agglomerative"]

    at.session_state["dataset_spec"] = dict(SMALLER)
    at.session_state["teacher_spec"] = sub_ws["smaller_teacher"]
    at.run()
    assert not at.exception
    assert at.multiselect(key="sub_compare").value == ui.baselines.DEFAULT
    assert at.multiselect(key="sub_dirs_0").value == []


def test_heavy_means_umap_and_ward_above_ten_thousand_rows():
    from ui.baselines import HEAVY_ROWS, is_heavy

    assert is_heavy("umap-kmeans", 100)
    assert not is_heavy("agglomerative", HEAVY_ROWS) and is_heavy("agglomerative", HEAVY_ROWS + 1)
    assert not any(is_heavy(m, 10**7) for m in ("kmeans", "oracle", "manual"))


def test_store_computes_each_key_once_and_keeps_failures():
    from ui.baselines import Store

    s, runs = Store(max_kept=2), []

    def job(v: int) -> Callable[[], int]:
        return lambda: runs.append(v) or v

    assert s.now("a", job(1)).result() == 1 and s.now("a", job(2)).result() == 1
    bad = s.now("bad", lambda: 1 / 0)
    assert isinstance(bad.exception(), ZeroDivisionError)
    assert s.now("bad", job(3)).exception() is bad.exception()  # not computed again
    assert s.later("b", job(4)).result(timeout=10) == 4 and s.later("b", job(5)).result() == 4
    assert runs == [1, 4]
    assert s.get("a") is None  # the oldest finished entry left (max_kept=2)
