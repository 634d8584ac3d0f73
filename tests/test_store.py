"""The workspace: content addressing, the teacher-output cache, names, atomic writes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lelp_studio.config import DatasetSpec, TeacherSpec
from lelp_studio.store import (
    CHOICES_FILE,
    Choices,
    Workspace,
    WorkspaceError,
    load_choices,
    safe_name,
    save_choices,
)
from lelp_studio.types import TeacherOutputs


def _outputs(rng: np.random.Generator) -> TeacherOutputs:
    H = {s: rng.normal(size=(n, 6)).astype(np.float32) for s, n in [("train", 20), ("test", 5)]}
    W = rng.normal(size=(2, 6)).astype(np.float32)
    b = np.zeros(2, np.float32)
    return TeacherOutputs(H=H, Z={s: h @ W.T + b for s, h in H.items()}, W=W, b=b, meta={"t": 1})


def test_arrays_are_content_addressed(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    h1, h2 = ws.put_array(a), ws.put_array(a.copy())
    assert h1 == h2
    assert ws.put_array(a.astype(np.float64)) != h1  # dtype is part of the content
    loaded = ws.get_array(h1)
    assert isinstance(loaded, np.memmap)
    np.testing.assert_array_equal(loaded, a)


def test_teacher_outputs_round_trip_as_float16(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    out = _outputs(np.random.default_rng(0))
    key = ws.teacher_key("d", "t", "mean")
    assert ws.load_teacher_outputs(key) is None
    ws.save_teacher_outputs(key, out, dataset_fp="d", teacher_fp="t", pooling="mean")
    back = ws.load_teacher_outputs(key)
    assert back is not None
    assert back.H["train"].dtype == np.float16
    np.testing.assert_allclose(back.H["train"], out.H["train"], atol=1e-2)
    np.testing.assert_array_equal(back.Z["test"], out.Z["test"])
    np.testing.assert_array_equal(back.W, out.W)
    assert back.meta["t"] == 1 and back.meta["cache_key"] == key
    assert ws.teacher_key("d", "t", "cls") != key


def test_catalogue_survives_reopen(tmp_path: Path) -> None:
    Workspace(tmp_path).save_spec("my spec", {"subclasses": {"n_subclasses": 3}})
    ws2 = Workspace(tmp_path)
    assert ws2.list_specs() == ["my spec"]
    assert ws2.load_spec("my spec") == {"subclasses": {"n_subclasses": 3}}
    with pytest.raises(WorkspaceError, match="no saved spec named 'nope'"):
        ws2.load_spec("nope")


def test_runs_and_groups_and_projections(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    ws.save_run({"run_id": "r1", "name": "x", "config": {"a": 1}, "metrics": {"acc": 0.5}})
    assert [r["run_id"] for r in ws.list_runs()] == ["r1"]
    assert ws.load_run("r1")["metrics"] == {"acc": 0.5}
    ws.save_manual_group("fp", "sarcasm", np.array([5, 3, 3]))
    np.testing.assert_array_equal(ws.list_manual_groups("fp")["sarcasm"], [3, 5])
    ws.save_projection("k", np.ones((4, 2)))
    assert ws.load_projection("k").shape == (4, 2)
    assert ws.load_projection("other") is None


@pytest.mark.parametrize(
    "bad",
    [
        "../escape",
        "/etc/passwd",
        "a/b",
        "..",
        ".hidden",
        "",
        "x" * 101,
        "caf\u0065\u0301",
        "a\x00b",
    ],
)
def test_unsafe_names_rejected(bad: str, tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="not allowed"):
        safe_name(bad)
    ws = Workspace(tmp_path)
    with pytest.raises(WorkspaceError):
        ws.save_spec(bad, {})
    assert not (tmp_path.parent / "escape").exists()


def test_fullwidth_lookalikes_rejected() -> None:
    with pytest.raises(WorkspaceError):
        safe_name("\uff0e\uff0e\uff0fx")  # fullwidth "../x" normalises to a traversal


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_workspace_is_a_clear_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(WorkspaceError, match="LELP_WORKSPACE"):
        Workspace(ro / "ws")


def test_killed_writer_leaves_previous_version(tmp_path: Path) -> None:
    """A writer killed mid-way through an array write leaves no partial file under the name."""
    target = tmp_path / "arr.npy"
    from lelp_studio.store import atomic_save_npy

    atomic_save_npy(target, np.zeros(10))
    script = textwrap.dedent(
        f"""
        import os, signal, numpy as np
        import lelp_studio.store.files as s
        real = np.save
        def slow_save(f, a, allow_pickle=False):
            f.write(b"partial")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        s.np.save = slow_save
        s.atomic_save_npy(__import__("pathlib").Path({str(target)!r}), np.ones(10))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parent.parent)
    assert proc.returncode == -9
    np.testing.assert_array_equal(np.load(target), np.zeros(10))


def test_projection_meta_round_trip(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    ws.save_projection("k", np.ones((3, 2)), {"titles": ["PC1", "PC2"], "method": "pca"})
    assert ws.projection_meta("k") == {"titles": ["PC1", "PC2"], "method": "pca"}
    assert ws.projection_meta("missing") is None


# -- the app's remembered dataset and teacher (issue 18) -----------------------------------
def _choice(max_train: int | None = 300) -> Choices:
    return Choices(
        DatasetSpec(source="digits-bin", max_train=max_train), TeacherSpec(kind="digits-mlp")
    )


def test_remembered_choice_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    assert load_choices(tmp_path) is None  # nothing remembered yet
    save_choices(tmp_path, _choice(300))
    save_choices(tmp_path, _choice(500))  # replaced whole
    assert load_choices(tmp_path) == _choice(500)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHOICES_FILE]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"dataset": {"source": "digits-bin"', "Expecting"),
        (b"[1, 2]", "a JSON object was expected, got list"),
        (b'{"dataset": {"source": "digits-bin"}, "teacher": {"kind": "gpt"}}', "teacher.kind"),
        (b'{"teacher": {"kind": "digits-mlp"}}', "dataset: "),
        (b'{"dataset": {"source": "x", "sauce": 1}, "teacher": {"kind": "minilm"}}', "sauce"),
        (b"{\xc3\x28}", "can't decode"),
    ],
)
def test_damaged_remembered_choice_is_one_line_naming_the_file(
    tmp_path: Path, content: bytes, why: str
) -> None:
    (tmp_path / CHOICES_FILE).write_bytes(content)
    with pytest.raises(WorkspaceError) as err:
        load_choices(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / CHOICES_FILE) in msg and "damaged" in msg and why in msg, msg
    assert "\n" not in msg and "ignored" in msg


def test_remembered_choice_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "a-file"
    root.write_text("not a folder")
    with pytest.raises(WorkspaceError, match="cannot remember the chosen dataset and teacher"):
        save_choices(root, _choice())


def test_a_checked_array_is_not_hashed_again_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every app restart hashed the 1.2 GB H again (2-3 s of each first page at 1.6M rows);
    the check is remembered beside the file, and forgotten when the file changes."""
    from lelp_studio.store import files
    from lelp_studio.store import workspace as wsmod

    ws = Workspace(tmp_path)
    sha = ws.put_array(np.arange(600, dtype=np.float32).reshape(60, 10))
    hashed: list[int] = []
    real = wsmod.array_digest
    monkeypatch.setattr(wsmod, "array_digest", lambda a: hashed.append(1) or real(a))
    monkeypatch.setattr(files, "_VERIFIED", {})  # a new process
    np.testing.assert_array_equal(Workspace(tmp_path).get_array(sha)[1], np.arange(10, 20))
    assert hashed == []
    path = ws._array_path(sha)
    np.save(path, np.load(path)[::-1].copy())  # same size, new content
    monkeypatch.setattr(files, "_VERIFIED", {})
    with pytest.raises(wsmod.ArrayDamaged, match="no longer matches its hash"):
        Workspace(tmp_path).get_array(sha)
    assert hashed == [1]
