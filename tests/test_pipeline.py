"""The pipeline end to end: dataset -> teacher outputs (cached) -> subclasses -> student."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from lelp_studio import pipeline
from lelp_studio.config import ConfigError, load_config
from lelp_studio.store import Workspace
from lelp_studio.teachers import HSink

DIGITS = ["dataset.source=digits-bin", "teacher.kind=digits-mlp", "student.kind=mlp"]


def _cfg(*extra: str) -> Any:
    return load_config(None, [*DIGITS, "train.epochs=6", *extra])


@pytest.mark.parametrize(
    "objective, extra",
    [
        ("hard", []),
        ("kd", ["train.tau=4"]),
        ("lelp", ["subclasses.n_subclasses=3"]),
        ("lelp", ["subclasses.method=kmeans", "subclasses.n_subclasses=2"]),
        ("lelp", ["subclasses.method=oracle", "subclasses.n_subclasses=5"]),
    ],
)
def test_run_distill_on_digits(objective: str, extra: list[str], workspace: Workspace) -> None:
    rec = pipeline.run_distill(_cfg(f"train.objective={objective}", *extra), workspace)
    s, t = rec["metrics"]["student"], rec["metrics"]["teacher"]
    assert t["accuracy"] > 90
    assert s["accuracy"] > 80 and s["agreement"] > 80
    assert 0 <= s["ece"] <= 1 and s["kl"] >= 0
    assert (workspace.run_dir(rec["run_id"]) / "student" / "student.safetensors").is_file()
    assert workspace.load_run(rec["run_id"])["metrics"]["student"] == s
    logits = workspace.get_array(rec["artifacts"]["eval_logits"])
    assert logits.shape == (360, 2)  # class logits, whatever the subclass layout


def test_training_monitors_the_selection_split_and_scores_test_once(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lelp_studio.metrics

    cfg = _cfg("train.objective=kd", "train.tau=2")
    prep = pipeline.prepare(cfg, workspace)
    test_y = np.asarray(prep.dataset.splits["test"].y)
    scored: list[int] = []
    real = lelp_studio.metrics.summarize

    def spy(s: Any, t: Any, y: Any, latent: Any = None) -> Any:
        scored.append(int(len(y) == len(test_y) and np.array_equal(y, test_y)))
        return real(s, t, y, latent)

    monkeypatch.setattr(lelp_studio.metrics, "summarize", spy)
    run = pipeline.train_student(prep, cfg)
    assert scored.count(1) == 1  # test summarised exactly once, after training
    # The per-epoch accuracy is the selection split's: the last epoch's equals its score.
    last = run.result.history[-1]["eval_accuracy"]
    assert 100 * last == pytest.approx(run.select_scores["accuracy"])
    assert len(prep.dataset.splits["dev"]) == 144
    rec = pipeline.run_distill(cfg, workspace, prep=prep)
    sel = rec["metrics"]["selection"]
    assert sel["split"] == "dev" and sel["n"] == 144 and "holdout" in sel["source"]
    assert rec["metrics"]["student_select"]["accuracy"] >= 0


def test_lelp_records_recovery_of_the_latent_digit(workspace: Workspace) -> None:
    rec = pipeline.run_distill(_cfg("train.objective=lelp", "subclasses.n_subclasses=5"), workspace)
    rec_digit = rec["metrics"]["recovery"]["digit"]
    assert 0.0 < rec_digit["ari"] <= 1.0  # pseudo-subclasses carry digit information


def test_teacher_outputs_second_request_is_a_cache_hit(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg()
    ds = pipeline.get_dataset(cfg.dataset)
    out1, key1, hit1 = pipeline.get_teacher_outputs(workspace, ds, cfg.teacher)
    assert not hit1

    def boom(*a: Any, **k: Any) -> None:
        raise AssertionError("teacher recomputed despite the cache")

    monkeypatch.setattr(pipeline, "compute_teacher_outputs", boom)
    out2, key2, hit2 = pipeline.get_teacher_outputs(Workspace(workspace.root), ds, cfg.teacher)
    assert hit2 and key1 == key2
    np.testing.assert_array_equal(out1.Z["test"], out2.Z["test"])
    np.testing.assert_array_equal(out1.H["train"], out2.H["train"])
    # A different teacher setting is a different key.
    other = load_config(None, [*DIGITS, "teacher.hidden=64"]).teacher
    monkeypatch.undo()
    _, key3, hit3 = pipeline.get_teacher_outputs(workspace, ds, other)
    assert key3 != key1 and not hit3


def test_two_writers_of_one_teacher_key_do_not_touch_each_others_files(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two browser tabs (or two Streamlit script threads) computing the same teacher: the
    first writer pauses after writing its first H file while the second runs start to end;
    both then succeed with the same stored outputs (the second used to delete the first's
    staging folder)."""
    cfg = _cfg()
    ds = pipeline.get_dataset(cfg.dataset)
    real_new = HSink.new
    first_written, second_done = threading.Event(), threading.Event()

    def new(self: HSink, split: str, n: int, dim: int) -> Any:
        out = real_new(self, split, n, dim)
        in_first = threading.current_thread() is not threading.main_thread()
        if in_first and not first_written.is_set():
            first_written.set()
            assert second_done.wait(120)
        return out

    monkeypatch.setattr(HSink, "new", new)
    results: dict[str, Any] = {}

    def first() -> None:
        try:
            results["first"] = pipeline.get_teacher_outputs(workspace, ds, cfg.teacher)
        except Exception as err:  # noqa: BLE001 - reported by the assert below
            results["first"] = err

    t = threading.Thread(target=first)
    t.start()
    assert first_written.wait(120)
    second = pipeline.get_teacher_outputs(workspace, ds, cfg.teacher)
    second_done.set()
    t.join(120)
    assert not isinstance(results["first"], Exception), results["first"]
    out1, key1, _ = results["first"]
    assert key1 == second[1]
    np.testing.assert_array_equal(out1.H["train"], second[0].H["train"])
    assert not list((workspace.root / "staging").glob("*")), "staging files left behind"


def test_teacher_argmax_as_class_source(workspace: Workspace) -> None:
    cfg = _cfg("subclasses.class_source=teacher")
    ds = pipeline.get_dataset(cfg.dataset)
    out, _, _ = pipeline.get_teacher_outputs(workspace, ds, cfg.teacher)
    y = pipeline.class_labels(cfg.subclasses, out, ds, "train")
    np.testing.assert_array_equal(y, np.asarray(out.Z["train"]).argmax(1))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["student.kind=bag"], "student.kind 'bag' needs text"),
        (
            ["subclasses.method=oracle", "dataset.source=digits-bin", "subclasses.latent_col=nope"],
            "needs a latent column",
        ),
    ],
)
def test_mismatched_settings_are_clear_errors(
    overrides: list[str], message: str, workspace: Workspace
) -> None:
    base = [o for o in DIGITS if not o.startswith("student") or "student.kind" not in overrides[0]]
    cfg = load_config(None, [*base, *overrides])
    with pytest.raises(ConfigError, match=message):
        pipeline.run_distill(cfg, workspace)
    assert workspace.list_runs() == []  # nothing half-recorded


def test_text_demo_lelp_beats_nothing_and_records(shared_workspace: Workspace) -> None:
    """The documented text-demo config, shortened to 2 epochs, on the real MiniLM teacher."""
    cfg = load_config(
        "examples/text-demo-lelp.yaml", ["train.epochs=2", "subclasses.n_subclasses=2"]
    )
    rec = pipeline.run_distill(cfg, shared_workspace)
    assert rec["metrics"]["teacher"]["accuracy"] > 80
    assert rec["metrics"]["student"]["accuracy"] > 60
    assert set(rec["metrics"]["recovery"]) == {"topic", "aspect"}


def test_manual_groups_from_the_workspace_train_a_student(workspace: Workspace) -> None:
    """Lasso groups saved on the map become a 'manual' pseudo-subclass spec end to end."""
    cfg = _cfg("train.objective=lelp", "subclasses.method=manual")
    ds = pipeline.get_dataset(cfg.dataset)
    y = ds.splits["train"].y
    with pytest.raises(ConfigError, match="no saved group"):
        pipeline.run_distill(cfg, workspace)
    workspace.save_manual_group(ds.fingerprint(), "first evens", np.flatnonzero(y == 0)[:40])
    workspace.save_manual_group(ds.fingerprint(), "first odds", np.flatnonzero(y == 1)[:40])
    a = pipeline.manual_assignment(workspace, ds)
    assert (a == 0).sum() == 40 and (a == 1).sum() == 40 and (a == -1).sum() == len(y) - 80
    rec = pipeline.run_distill(cfg, workspace)
    assert rec["metrics"]["student"]["accuracy"] > 80
    only = load_config(
        None,
        [
            *DIGITS,
            "train.epochs=1",
            "subclasses.method=manual",
            "subclasses.manual_groups=[first odds]",
        ],
    )
    assert (
        pipeline.manual_assignment(workspace, ds, only.subclasses.manual_groups) == 0
    ).sum() == 40
    bad = load_config(
        None, [*DIGITS, "subclasses.method=manual", "subclasses.manual_groups=[nope]"]
    )
    with pytest.raises(ConfigError, match="no saved group named \\['nope'\\]"):
        pipeline.run_distill(bad, workspace)


def test_finetuned_teacher_encoder_is_kept_and_used_for_student_init(
    workspace: Workspace,
) -> None:
    """A fine-tuned MiniLM's encoder is saved whole beside its outputs, and a student
    initialised from the teacher starts from it, not from the pretrained MiniLM."""
    import torch

    from lelp_studio.teachers.minilm import _load_minilm

    cfg = load_config(
        None,
        [
            "dataset.source=text-demo", "dataset.max_train=40", "teacher.mode=finetune",
            "teacher.epochs=1", "teacher.batch_size=16", "teacher.max_length=32",
            "teacher.lr=1e-3", "student.kind=transformer", "student.init=teacher",
            "student.layers=1", "student.max_length=32",
        ],
    )  # fmt: skip
    prep = pipeline.prepare(cfg, workspace)
    folder = workspace.encoder_dir(prep.teacher_key)
    assert prep.encoder_dir == str(folder) and (folder / "model.safetensors").is_file()
    assert not list(folder.parent.glob("*.tmp"))
    name = "encoder.layer.0.attention.self.query.weight"
    used = dict(prep.teacher_model.named_parameters())[name]
    pretrained = dict(_load_minilm()[0].named_parameters())[name]
    assert not torch.allclose(used, pretrained)  # the fine-tuned weights, not MiniLM's own
    again = pipeline.prepare(cfg, workspace)  # a cache hit reuses the kept encoder
    assert again.cache_hit
    torch.testing.assert_close(dict(again.teacher_model.named_parameters())[name], used)
