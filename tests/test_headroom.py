"""Does distillation pay here? The verdict, its wording, its cache."""

from __future__ import annotations

from typing import Any

import pytest

from lelp_studio import headroom, pipeline
from lelp_studio.config import load_config
from lelp_studio.store import Workspace


def test_verdict_by_hand() -> None:
    v = headroom.verdict(90.0, [80.0, 82.0, 84.0])
    assert v["hard_mean"] == 82.0 and v["gap"] == 8.0 and v["hard_spread"] == 4.0
    assert v["hard_std"] == pytest.approx(2.0) and v["pays"]
    # Within one point: no room, whatever the spread.
    assert not headroom.verdict(80.96, [80.75])["pays"]
    # Above one point but within the seeds' spread: no room either.
    assert not headroom.verdict(83.0, [80.0, 81.0, 84.0])["pays"]
    assert headroom.verdict(83.0, [82.1, 82.2])["pays"] is False
    assert headroom.verdict(83.5, [82.0, 82.2])["pays"] is True
    with pytest.raises(ValueError):
        headroom.verdict(90.0, [])


def test_message_says_plainly_when_distillation_cannot_help() -> None:
    no = headroom.message(
        headroom.verdict(80.96, [80.75, 80.4, 81.1]),
        "bag",
        teacher=headroom.stronger_teacher("minilm", "frozen"),
    )
    assert "not meaningfully better" in no and "no distillation objective can help much" in no
    assert "teacher.mode: finetune" in no
    yes = headroom.message(headroom.verdict(90.0, [80.0, 81.0]), "bag")
    assert "distillation has room to help" in yes and "cannot" not in yes


def test_computed_once_then_cached(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(
        None,
        [
            "dataset.source=digits-bin",
            "teacher.kind=digits-mlp",
            "student.kind=mlp",
            "train.epochs=3",
        ],
    )
    prep = pipeline.prepare(cfg, workspace)
    calls: list[str] = []
    real = pipeline.train_student

    def counting(prep: Any, c: Any, *a: Any, **k: Any) -> Any:
        calls.append(c.train.objective)
        return real(prep, c, *a, **k)

    monkeypatch.setattr(pipeline, "train_student", counting)
    first = headroom.compute_headroom(workspace, prep, cfg, seeds=(0, 1))
    assert calls == ["hard", "hard"] and not first["cache_hit"]
    assert first["n_seeds"] == 2 and len(first["hard_accuracies"]) == 2
    assert first["selection"]["split"] == "dev"
    second = headroom.compute_headroom(workspace, prep, cfg, seeds=(0, 1))
    assert calls == ["hard", "hard"] and second["cache_hit"]
    assert second["gap"] == first["gap"]
    latest = workspace.latest_headroom(prep.teacher_key, "mlp")
    assert latest is not None and latest["key"] == first["key"]
    # Another budget is another question: it trains again.
    longer = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 4})})
    headroom.compute_headroom(workspace, prep, longer, seeds=(0,))
    assert calls == ["hard", "hard", "hard"]
