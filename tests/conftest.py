"""Shared seeded fixtures: small datasets, a throwaway workspace, an offline environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from jobkinds import plug_in


def _share_the_cores() -> None:
    """Under pytest-xdist (scripts/test.sh runs two workers) each worker gets its share of the
    cores as torch and BLAS threads, before torch is imported: two workers with every core
    each oversubscribe the machine, and oversubscribed torch runs several times slower. Set
    here, the job processes and servers a test starts inherit it."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        share = str(max(1, (os.cpu_count() or 1) // workers))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, share)


_share_the_cores()

# The app's ui/ package sits beside pages/ at the repo root (``streamlit run app.py`` puts
# that folder on sys.path; tests that import ui or run AppTest in-process need it too).
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from lelp_studio.data import dataset_from_frame, load_demo  # noqa: E402
from lelp_studio.types import Dataset  # noqa: E402

_TOPIC_WORDS = {
    "food": ["pasta", "soup", "burger", "salad", "curry"],
    "tech": ["laptop", "phone", "charger", "camera", "speaker"],
}
_SENTIMENT = {
    "positive": ["was great", "was lovely", "worked well"],
    "negative": ["was awful", "was broken", "was terrible"],
}


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test may reach the hub or write into the user's ./workspace."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("LELP_WORKSPACE", str(tmp_path_factory.mktemp("lelp_workspace")))


@pytest.fixture(autouse=True)
def _restore_main_module() -> Any:
    """Streamlit's AppTest can leave a page script registered as ``__main__``; a process
    started with the ``spawn`` method (the job tests) would then re-run that page and die.
    Put the real ``__main__`` back after every test."""
    import sys

    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture
def sleep_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plug in the test-only ``sleep`` job kind (tests/jobkinds.py) through the jobs'
    documented extension point, for this process and the workers and job processes it
    starts (they inherit the environment)."""
    plug_in(monkeypatch)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def tiny_text_frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """n short texts: 2 labels x 2 topics, balanced; texts unique (index suffix)."""
    r = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        topic = ("food", "tech")[i % 2]
        label = ("negative", "positive")[(i // 2) % 2]
        noun = r.choice(_TOPIC_WORDS[topic])
        phrase = r.choice(_SENTIMENT[label])
        rows.append({"text": f"the {noun} {phrase} #{i}", "label": label, "topic": topic})
    return pd.DataFrame(rows)


@pytest.fixture
def make_text_frame() -> Any:
    """The builder behind ``tiny_text_dataset``, for tests that write it to files."""
    return tiny_text_frame


@pytest.fixture
def tiny_text_dataset() -> Dataset:
    """~60 texts, classes negative/positive, latent 'topic' (food/tech), 45 train / 15 test."""
    return dataset_from_frame(
        tiny_text_frame(), "tiny-text", latent_cols=["topic"], test_size=0.25, seed=0
    )


@pytest.fixture
def digits_dataset() -> Dataset:
    return load_demo("digits-bin")


@pytest.fixture
def workspace(tmp_path: Path) -> Any:
    from lelp_studio.store import Workspace  # lazy: lelp_studio.store is written in parallel

    return Workspace(tmp_path)


@pytest.fixture(scope="session")
def shared_workspace(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One workspace for the whole session, so the MiniLM embeddings of the text demo are
    computed once (about 30 s on a 2-core CPU) and every later request is a cache hit."""
    from lelp_studio.store import Workspace

    return Workspace(tmp_path_factory.mktemp("shared_workspace"))


@pytest.fixture
def tiny_digits_config() -> Any:
    """A factory of seconds-long digits-bin LELP run configs on CPU (jobs and executors)."""
    from lelp_studio.config import RunConfig

    return lambda epochs=2: RunConfig(
        dataset={"source": "digits-bin"},
        teacher={"kind": "digits-mlp", "epochs": 3},
        subclasses={"n_subclasses": 2},
        student={"kind": "mlp", "hidden": 16},
        train={"epochs": epochs, "device": "cpu", "batch_size": 64},
    )


@pytest.fixture(scope="session")
def digits_config() -> Any:
    """A factory of one-epoch digits-bin runs on CPU (teacher digits-mlp, an MLP student):
    ``digits_config(name, objective, hidden=16, n_subclasses=None, **train)``."""
    from lelp_studio.config import RunConfig

    def make(
        name: str, objective: str, hidden: int = 16, n_subclasses: int | None = None, **train: Any
    ) -> RunConfig:
        return RunConfig(
            name=name,
            dataset={"source": "digits-bin"},
            teacher={"kind": "digits-mlp"},
            subclasses={} if n_subclasses is None else {"n_subclasses": n_subclasses},
            student={"kind": "mlp", "hidden": hidden},
            train={"epochs": 1, "objective": objective, "device": "cpu", **train},
        )

    return make


@pytest.fixture
def app_for(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``app_for(ws_root, digits=False, autostart=False)``: the app (``AppTest``, not yet
    run) on the workspace ``ws_root``, from the repository root, with the worker autostart
    off unless asked; ``digits`` starts it on digits-bin (no MiniLM needed)."""
    from streamlit.testing.v1 import AppTest

    root = Path(__file__).resolve().parents[1]

    def make(ws_root: Any, *, digits: bool = False, autostart: bool = False) -> AppTest:
        monkeypatch.chdir(root)
        monkeypatch.setenv("LELP_WORKSPACE", str(ws_root))
        monkeypatch.setenv("LELP_APP_AUTOSTART_WORKER", "1" if autostart else "0")
        at = AppTest.from_file(str(root / "app.py"), default_timeout=240)
        if digits:
            at.session_state["dataset_spec"] = {"source": "digits-bin"}
            at.session_state["teacher_spec"] = {"kind": "digits-mlp"}
        return at

    return make
