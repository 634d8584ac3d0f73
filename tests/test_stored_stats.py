"""Per-class statistics stored with the teacher outputs: computed once, read back equal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lelp_studio import pipeline, stored_stats
from lelp_studio.config import TeacherSpec
from lelp_studio.subclasses import ClassStats, LELPSubclasses, class_statistics


def _same(a: ClassStats, b: ClassStats) -> None:
    np.testing.assert_array_equal(a.counts, b.counts)
    for x, y in zip(a.means + a.scatters, b.means + b.scatters, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.n_features == b.n_features


def test_class_stats_round_trip_through_one_array(rng: np.random.Generator) -> None:
    H, y = rng.normal(size=(90, 7)).astype(np.float32), np.repeat([0, 1, 2], 30)
    stats = class_statistics(H, y)
    back = ClassStats.from_array(stats.to_array())
    _same(stats, back)
    W = rng.normal(size=(3, 7))
    fitted = [LELPSubclasses(n_subclasses=2).fit(H, y, W, class_stats=s) for s in (stats, back)]
    np.testing.assert_array_equal(fitted[0].coordinates(H)[1], fitted[1].coordinates(H)[1])


def test_the_teacher_pass_stores_them_and_a_restart_reads_them(
    workspace: Any, tiny_text_dataset: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Subspaces page's first render read all of H for them (5 s at 1.6M rows): now the
    teacher's computation stores them, and every later reader finds them."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(2, 6)).astype(np.float32)
    arrays: dict[str, np.ndarray] = {"W": W}
    for split, sp in tiny_text_dataset.splits.items():
        arrays[f"H_{split}"] = rng.normal(size=(len(sp), 6)).astype(np.float32)
        arrays[f"Z_{split}"] = arrays[f"H_{split}"] @ W.T
    np.savez(tmp_path / "teacher.npz", **arrays)
    spec = TeacherSpec(kind="arrays", path=str(tmp_path / "teacher.npz"))
    out, key, hit = pipeline.get_teacher_outputs(workspace, tiny_text_dataset, spec)
    assert not hit
    computed: list[int] = []
    real = stored_stats.class_statistics
    monkeypatch.setattr(
        stored_stats, "class_statistics", lambda H, y: computed.append(1) or real(H, y)
    )
    H, y = out.H["train"], tiny_text_dataset.splits["train"].y
    got = stored_stats.stored_class_stats(workspace, key, H, y, "label")
    assert computed == []  # stored with the teacher outputs
    _same(got, class_statistics(H, y))  # float64, bit for bit
    teacher_y = np.asarray(out.Z["train"]).argmax(1)
    stored_stats.stored_class_stats(workspace, key, H, teacher_y, "teacher")
    stored_stats.stored_class_stats(workspace, key, H, teacher_y, "teacher")
    assert computed == [1]  # the other class source: once, on first use
