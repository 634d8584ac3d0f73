"""The pages' tables as library functions (no AppTest), and the app's subclass preview
against training: both go through ``subclasses.fit_subclasser``, so their targets agree."""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any, get_args

import numpy as np
import pandas as pd
import pytest

from lelp_studio import analysis
from lelp_studio.config import RunConfig, SubclassSpec
from lelp_studio.subclasses import (
    LELPSubclasses,
    ManualSubclasses,
    fit_subclasser,
    make_subclasser,
    spec_directions,
)


# -- Subspaces page ---------------------------------------------------------------------------
def test_subclass_table_counts_entropy_and_furthest_rows():
    y = np.array([0, 0, 0, 1, 1, 1])
    coords = [
        np.array([[3.0, 0], [1, 2], [2, 5], [0, 0], [0, 0], [0, 0]]),
        np.array([[0.0], [0], [0], [4], [9], [1]]),
    ]
    assign = np.array([0, 1, 1, 2, 2, 2])
    entropy = np.array([0.1, 0.2, 0.4, 1.0, 2.0, 3.0])
    texts = [f"text {i}" for i in range(6)]
    t = analysis.subclass_table(["a/0", "a/1", "b/0"], assign, entropy, coords, y, texts, top=2)
    assert list(t.columns) == [
        "pseudo-subclass",
        "size",
        "mean target entropy",
        "furthest along its direction",
    ]
    assert t["size"].tolist() == [1, 2, 3]
    assert t["mean target entropy"].tolist() == pytest.approx([0.1, 0.3, 2.0])
    # Furthest along a/0 are rows 0 (3.0) then 2 (2.0); along b/0, rows 4 (9) then 3 (4).
    assert t["furthest along its direction"].tolist() == [
        "text 0 | text 2",
        "text 2 | text 1",
        "text 4 | text 3",
    ]
    assert analysis.tiny_subclasses(t, at_least=2) == 1


def test_subclass_table_truncates_texts():
    coords = [np.array([[1.0]])]
    t = analysis.subclass_table(["a/0"], np.array([0]), np.zeros(1), coords, [0], ["x" * 200])
    assert len(t["furthest along its direction"][0]) == 80


def test_recovery_table_with_and_without_latent():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    latent = np.array(["p", "p", "q", "q", "r", "r", "s", "s"])
    perfect = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    merged = np.array([0, 0, 0, 0, 1, 1, 2, 3])
    t = analysis.recovery_table({"LELP": perfect, "k-means": merged}, y, latent)
    assert t["method"].tolist() == ["LELP", "k-means"]
    assert t["pseudo-subclasses"].tolist() == [4, 4]
    assert t["smallest"].tolist() == [2, 1]
    assert t["ARI"][0] == 1.0 and t["ARI"][1] < 1.0
    assert "ARI" not in analysis.recovery_table({"LELP": perfect}, y).columns


def test_pseudo_subclass_names_of_each_kind():
    H = np.eye(4)
    y = np.array([0, 0, 1, 1])
    lelp_like = type("Fitted", (), {"sizes_": [2, 1]})()
    assert analysis.pseudo_subclass_names(lelp_like, ["neg", "pos"]) == ["neg/0", "neg/1", "pos/0"]
    manual = ManualSubclasses(assignment=np.array([0, -1, 1, 1])).fit(H, y)
    assert analysis.pseudo_subclass_names(manual, ["neg", "pos"], ["books", "tech"]) == [
        "neg/books",
        "neg/rest",
        "pos/tech",
    ]


# -- Compare page -----------------------------------------------------------------------------
def _run(rid: str, name: str, acc: float, **metrics: Any) -> dict[str, Any]:
    return {
        "run_id": rid,
        "name": name,
        "config": {
            "dataset": {"source": "digits-bin"},
            "student": {"kind": "mlp"},
            "train": {"objective": "kd"},
        },
        "metrics": {"student": {"accuracy": acc, "agreement": 91.23456}, **metrics},
    }


def test_run_table_rows_rounding_and_shared_columns():
    runs = [
        _run("a", "x", 85.83333333),
        _run("b", "x", 80.0, method={"gate": 0.123456}),
    ]
    labels = analysis.run_labels(runs)
    t = analysis.run_table(runs, labels)
    assert t["run"].tolist() == ["x (a)", "x (b)"]
    assert t["accuracy"].tolist() == [85.8333, 80.0]
    assert t["agreement"].tolist() == [91.2346, 91.2346]
    assert t["objective"].tolist() == ["kd", "kd"]
    assert analysis.shared_columns(t) == {"dataset": "digits-bin", "student": "mlp"}
    main, more = analysis.split_run_table(t)
    assert list(main.columns) == [c for c in analysis.RUN_TABLE_MAIN if c in t.columns]
    assert more.columns[0] == "run" and {"train agreement", "train KL"} <= set(more.columns)
    assert set(main.columns) | set(more.columns) == set(t.columns)
    assert len(main.columns) <= 11 and not set(main.columns) & set(more.columns) - {"run"}
    facts = analysis.method_facts_table(runs, labels)
    assert facts.index.tolist() == ["x (b)"] and facts.loc["x (b)", "gate"] == 0.1235


def test_latent_accuracy_table_pivots_runs_into_columns():
    a = _run("a", "A", 80.0)
    a["metrics"]["student"]["per_subclass"] = {"digit": {"3": 91.26, "8": 70.0}}
    b = _run("b", "B", 82.0)
    b["metrics"]["student"]["per_subclass"] = {"digit": {"3": 88.0}}
    t = analysis.latent_accuracy_table([a, b], {"a": "A", "b": "B"})
    assert t.index.tolist() == ["digit = 3", "digit = 8"]
    assert t["A"].tolist() == [91.3, 70.0]
    assert t.loc["digit = 3", "B"] == 88.0 and np.isnan(t.loc["digit = 8", "B"])
    assert analysis.latent_accuracy_table([_run("c", "C", 1.0)], {"c": "C"}).empty


def test_disagreement_table_lists_only_disagreements():
    t = analysis.disagreement_table(
        np.array([0, 1, 1]), np.array([0, 1, 0]), np.array([0, 0, 0]), ["neg", "pos"], list("abc")
    )
    assert t.to_dict("list") == {
        "row": [1],
        "label": ["pos"],
        "teacher": ["pos"],
        "student": ["neg"],
        "text": ["b"],
    }


def test_nearest_rows_and_neighbour_table():
    rng = np.random.default_rng(0)
    H = rng.normal(size=(20, 5))
    index = analysis.teacher_index(H)
    ind, sim = analysis.nearest_rows(index, H[[3]], 4)
    assert ind.shape == (1, 4) and ind[0, 0] == 3  # a train row's nearest neighbour is itself
    assert sim[0, 0] == pytest.approx(1.0) and np.all(np.diff(sim[0]) <= 1e-12)
    assert analysis.nearest_rows(index, H[:2], 50)[0].shape == (2, 20)  # k capped at n
    Z = rng.normal(size=(20, 2))
    y = rng.integers(0, 2, 20)
    t = analysis.neighbour_table(ind[0], sim[0], y, Z, ["neg", "pos"], [f"r{i}" for i in range(20)])
    assert t.columns.tolist() == [
        "rank",
        "train row",
        "similarity",
        "label",
        "teacher label",
        "p(neg)",
        "p(pos)",
        "text",
    ]
    assert t["rank"].tolist() == [1, 2, 3, 4] and t["train row"].tolist() == ind[0].tolist()
    np.testing.assert_allclose(t["p(neg)"] + t["p(pos)"], 1.0, atol=2e-3)
    assert t["teacher label"].tolist() == [["neg", "pos"][int(Z[i].argmax())] for i in ind[0]]
    assert isinstance(t, pd.DataFrame)


# -- one function from a spec to a fitted estimator ------------------------------------------
@pytest.mark.parametrize("directions", [[], [[], []]])
def test_empty_directions_mean_the_top_S(directions):
    """An empty list (for every class, or for one) asks for no particular direction: the
    class's top S_c, as the Subspaces page's "leave empty for the top S" says."""
    rng = np.random.default_rng(0)
    H, y = rng.normal(size=(60, 6)), np.repeat([0, 1], 30)
    W = rng.normal(size=(2, 6))
    spec = SubclassSpec(n_subclasses=2, directions=directions)
    assert spec_directions(spec) is None
    base = fit_subclasser(SubclassSpec(n_subclasses=2), H, y, W=W)
    got = fit_subclasser(spec, H, y, W=W)
    np.testing.assert_array_equal(got.targets(H, H @ W.T), base.targets(H, H @ W.T))


def test_an_empty_class_in_directions_keeps_that_class_top_S():
    spec = SubclassSpec(n_subclasses=3, directions=[[], [2, 0]])
    assert spec_directions(spec) == [None, [2, 0]]
    sub = make_subclasser(spec)
    assert isinstance(sub, LELPSubclasses) and sub.directions == [None, [2, 0]]
    rng = np.random.default_rng(1)
    H, y = rng.normal(size=(60, 6)), np.repeat([0, 1], 30)
    assert fit_subclasser(spec, H, y, W=rng.normal(size=(2, 6))).sizes_ == [3, 2]


METHODS = list(get_args(SubclassSpec.model_fields["method"].annotation))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A digits-bin teacher in a workspace (seconds), with one saved manual group."""
    from lelp_studio import pipeline
    from lelp_studio.store import Workspace

    ws = Workspace(tmp_path_factory.mktemp("preview_ws"))
    cfg = RunConfig(
        dataset={"source": "digits-bin"},
        teacher={"kind": "digits-mlp", "epochs": 3},
        student={"kind": "mlp", "hidden": 8},
        train={"device": "cpu"},
    )
    prep = pipeline.prepare(cfg, ws)
    n = len(prep.dataset.splits["train"])
    ws.save_manual_group(prep.dataset.fingerprint(), "first third", np.arange(n // 3))
    return ws, prep


@pytest.mark.parametrize("method", METHODS)
def test_preview_targets_equal_training_targets(prepared, method):
    """The Subspaces preview (ui.cache) and training (pipeline.subclass_targets) give the same
    targets for every subclass method, through ``subclasses.fit_subclasser``."""
    if method == "umap-kmeans" and importlib.util.find_spec("umap") is None:
        pytest.skip("umap-learn is not installed")
    pytest.importorskip("streamlit")
    from lelp_studio import pipeline
    from ui import cache, spec_json

    ws, prep = prepared
    spec = SubclassSpec(
        method=method,
        n_subclasses=2,
        beta=0.5,
        seed=3,
        directions=[[], [1, 0]] if method in ("lelp", "pca") else None,
        latent_col=prep.dataset.latent_columns[0] if method == "oracle" else None,
    )
    manual = None
    if method == "manual":
        manual = pipeline.manual_assignment(ws, prep.dataset, spec.manual_groups)
    train_prep = dataclasses.replace(prep, manual=manual)
    expected, sizes, _, sub = pipeline.subclass_targets(train_prep, spec, tau=2.0)

    args = cache.fit_args_at(
        str(ws.root), prep.teacher_key, spec_json(prep.cfg.dataset), spec, prep.dataset.n_classes
    )
    got = cache.preview_targets(args, tau=2.0, beta=spec.beta)
    assert got.shape == expected.shape == (len(prep.dataset.splits["train"]), sum(sizes))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    preview_sub = cache.fitted_subclasser(*args)
    assert type(preview_sub) is type(sub) and list(preview_sub.sizes_) == list(sub.sizes_)


def test_the_library_imports_no_streamlit():
    """Streamlit lives in ui/: importing every library module loads none of it."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys, lelp_studio\n"
        "for m in pkgutil.walk_packages(lelp_studio.__path__, 'lelp_studio.'):\n"
        "    if m.name.endswith('__main__'):\n"
        "        continue\n"
        "    try:\n"
        "        importlib.import_module(m.name)\n"
        "    except ImportError as err:\n"
        "        if 'streamlit' in str(err):\n"
        "            raise\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] == 'streamlit'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


# -- run labels (issue 18: runs that cannot be told apart) -------------------------------------
def _cfg_run(rid: str, name: str, **sections: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {"dataset": {"source": "text-demo"}, "train": {"objective": "hard"}}
    for sec, vals in sections.items():
        cfg[sec] = {**cfg.get(sec, {}), **vals}
    return {"run_id": rid, "name": name, "config": cfg}


def test_run_labels_add_only_the_settings_that_differ():
    runs = [
        _cfg_run("r1", "text-demo hard", train={"seed": 0}),
        _cfg_run("r2", "text-demo hard", train={"seed": 1, "epochs": 20}),
        _cfg_run("r3", "text-demo hard", train={"seed": 2}, student={"kind": "mlp"}),
    ]
    assert analysis.run_labels(runs) == {
        "r1": "text-demo hard seed=0 student=bag epochs=8",
        "r2": "text-demo hard seed=1 student=bag epochs=20",
        "r3": "text-demo hard seed=2 student=mlp epochs=8",
    }
    # Shown alone, a run needs none of them.
    assert analysis.run_labels(runs[:1]) == {"r1": "text-demo hard"}


def test_run_labels_name_the_teacher_tau_and_alpha():
    runs = [
        _cfg_run("a", "amazon kd", train={"objective": "kd", "tau": 4.0}),
        _cfg_run("b", "amazon kd", train={"objective": "kd", "alpha": 0.5}),
        _cfg_run(
            "c", "amazon kd", train={"objective": "kd"}, teacher={"kind": "hf", "path": "/m/ck"}
        ),
    ]
    assert analysis.run_labels(runs) == {
        "a": "amazon kd teacher=minilm frozen tau=4.0 alpha=0.0",
        "b": "amazon kd teacher=minilm frozen tau=1.0 alpha=0.5",
        "c": "amazon kd teacher=hf ck tau=1.0 alpha=0.0",
    }


def test_run_labels_skip_settings_a_run_does_not_read_or_its_name_states():
    """S and beta mean nothing to a kd run; a lelp run's name already says S=4 beta=1.0; the
    objective is in every name."""
    runs = [
        _cfg_run("a", "d lelp S=4 beta=1.0", train={"objective": "lelp"}),
        _cfg_run(
            "b", "d lelp S=8 beta=1.0", train={"objective": "lelp"}, subclasses={"n_subclasses": 8}
        ),
        _cfg_run("c", "d kd", train={"objective": "kd", "fitnet": {"weight": 3.0}}),
        _cfg_run("e", "d fitnet", train={"objective": "fitnet", "fitnet": {"weight": 2.0}}),
    ]
    assert analysis.run_labels(runs) == {
        "a": "d lelp S=4 beta=1.0",
        "b": "d lelp S=8 beta=1.0",
        "c": "d kd",
        "e": "d fitnet",
    }


def test_run_labels_fall_back_to_the_end_of_the_run_id():
    runs = [
        _cfg_run("20250101-120000-aaaaaa", "text-demo hard"),
        _cfg_run("20250101-120500-bbbbbb", "text-demo hard"),
        _cfg_run("20250101-121000-cccccc", "text-demo hard", train={"seed": 3}),
    ]
    labels = analysis.run_labels(runs)
    assert labels["20250101-120000-aaaaaa"] == "text-demo hard seed=0 (aaaaaa)"
    assert labels["20250101-120500-bbbbbb"] == "text-demo hard seed=0 (bbbbbb)"
    assert labels["20250101-121000-cccccc"] == "text-demo hard seed=3"
    assert len(set(labels.values())) == 3


def test_subclass_objectives_are_those_that_need_subclass_targets():
    from lelp_studio import objectives
    from lelp_studio.analysis.labels import SUBCLASS_OBJECTIVES

    needs = {n for n, cls in objectives.REGISTRY.items() if cls.needs_subclass_targets}
    assert set(SUBCLASS_OBJECTIVES) == needs


# -- Compare's default pick (issue 18: the newest finished runs of this dataset and teacher) -----
def _made(rid: str, source: str = "digits-bin", teacher: str = "digits-mlp", **metrics: Any):
    epochs = metrics.pop("epochs_done", 2)
    return {
        "run_id": rid,
        "name": rid,
        "config": {
            "dataset": {"source": source},
            "teacher": {"kind": teacher},
            "train": {"objective": "kd", "epochs": 2},
        },
        "metrics": {"history": [{"epoch": e + 1} for e in range(epochs)], **metrics},
    }


def test_run_unfinished_says_cancelled_or_partial():
    assert analysis.run_unfinished(_made("a")) == ""
    assert analysis.run_unfinished(_made("a", cancelled=True, epochs_done=1)) == (
        "cancelled at epoch 1 of 2"
    )
    assert analysis.run_unfinished(_made("a", epochs_done=1)) == "partial: stopped at epoch 1 of 2"
    assert analysis.run_unfinished({"run_id": "old", "config": {}, "metrics": {}}) == ""


def test_default_pick_is_the_newest_finished_runs_of_this_dataset_and_teacher():
    runs = [  # newest first, as Workspace.list_runs gives them
        _made("cancelled", cancelled=True, epochs_done=1),
        _made("other-data", source="text-demo"),
        _made("other-teacher", teacher="arrays"),
        _made("r4"),
        _made("r3"),
        _made("r2"),
        _made("r1"),
    ]
    here = ({"source": "digits-bin"}, {"kind": "digits-mlp"})
    assert analysis.default_pick(runs, *here) == ["r4", "r3", "r2"]
    assert analysis.default_pick(runs, *here, n=10) == ["r4", "r3", "r2", "r1"]
    assert analysis.default_pick(runs, {"source": "text-demo"}, {"kind": "digits-mlp"}) == [
        "other-data"
    ]
    # Specs compare with their defaults filled in, as pydantic objects or dicts.
    from lelp_studio.config import DatasetSpec, TeacherSpec

    assert analysis.default_pick(
        runs, DatasetSpec(source="digits-bin"), TeacherSpec(kind="digits-mlp", seed=0)
    ) == ["r4", "r3", "r2"]


def test_default_pick_on_a_later_visit_adds_only_new_finished_runs_of_this_dataset():
    older = [_made("r2"), _made("r1")]
    seen = {r["run_id"] for r in older}
    runs = [
        _made("late-cancel", cancelled=True, epochs_done=1),
        _made("late-text", source="text-demo"),
        _made("late"),
        *older,
    ]
    here = ({"source": "digits-bin"}, {"kind": "digits-mlp"})
    assert analysis.default_pick(runs, *here, before=["r1"], seen=seen) == ["late", "r1"]
    # A deleted run leaves the pick; another dataset or teacher starts over (before=None).
    assert analysis.default_pick(runs[:3], *here, before=["r1"], seen=seen) == ["late"]
    assert analysis.default_pick(runs, *here, before=None, seen=seen) == ["late", "r2", "r1"]
    # A first visit keeps a pick made elsewhere (a sweep, a preset), even of another dataset.
    assert analysis.default_pick(runs, *here, before=["late-text"]) == ["late-text"]
