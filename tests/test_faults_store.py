"""Faults in a saved workspace (issue 16, items 1-4 and 7): each is found, said in one line,
and repaired without losing anything sound."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lelp_studio import doctor, pipeline
from lelp_studio.cli import app
from lelp_studio.config import load_config
from lelp_studio.store import ArrayDamaged, Workspace, WorkspaceError, array_digest
from lelp_studio.types import hash_arrays

runner = CliRunner()
DIGITS = ["dataset.source=digits-bin", "teacher.kind=digits-mlp", "student.kind=mlp"]


def _cfg(*extra: str):
    return load_config(None, [*DIGITS, "train.epochs=2", *extra])


@pytest.fixture
def made(tmp_path: Path) -> tuple[Workspace, dict]:
    """A workspace with cached teacher outputs, a finished run, a spec and a manual group."""
    ws = Workspace(tmp_path / "ws")
    rec = pipeline.run_distill(_cfg(), ws)
    ws.save_spec("keep", {"train": {"tau": 2.0}})
    ws.save_manual_group("fp", "group", np.array([3, 1]))
    return ws, rec


def _one_line(output: str) -> str:
    assert "Traceback" not in output, output
    errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


def _teacher_arrays(ws: Workspace) -> dict[str, str]:
    with ws.connect() as con:
        return json.loads(con.execute("SELECT arrays FROM teacher_outputs").fetchone()[0])


def test_streamed_digest_equals_the_content_address() -> None:
    for a in (np.arange(7, dtype=np.float16), np.ones((5000, 384), np.float32), np.float32(3)):
        assert array_digest(a) == hash_arrays(np.asarray(a))


def test_damaged_catalogue_is_one_line_everywhere_and_repair_rebuilds_it(made) -> None:
    ws, rec = made
    db = ws.root / "catalog.sqlite"
    for p in (db.with_name("catalog.sqlite-wal"), db.with_name("catalog.sqlite-shm")):
        p.unlink(missing_ok=True)
    db.write_bytes(np.random.default_rng(0).bytes(8192))
    for args in (["runs"], ["embed", "--set", "dataset.source=digits-bin"], ["jobs", "list"]):
        res = runner.invoke(app, [*args, "-w", str(ws.root)])
        assert res.exit_code == 2, res.output
        line = _one_line(res.output)
        assert "catalog.sqlite is damaged" in line and "lelp doctor --repair" in line
    res = runner.invoke(app, ["doctor", "-w", str(ws.root)])
    assert res.exit_code == 1 and "catalogue: catalog.sqlite is damaged" in res.output
    res = runner.invoke(app, ["doctor", "-w", str(ws.root), "--repair"])
    assert res.exit_code == 0, res.output
    assert "rebuilt it from the saved files: 1 manual_groups, 1 runs, 1 specs" in res.output
    again = Workspace(ws.root)
    assert [r["run_id"] for r in again.list_runs()] == [rec["run_id"]]
    assert again.load_run(rec["run_id"])["metrics"] == json.loads(json.dumps(rec["metrics"]))
    assert again.list_specs() == ["keep"]
    assert list(again.list_manual_groups("fp")) == ["group"]
    assert len(list((ws.root / "quarantine").glob("catalog.sqlite.*"))) == 1  # kept aside


def test_zero_byte_catalogue_is_damage_not_a_new_workspace(made) -> None:
    ws, rec = made
    db = ws.root / "catalog.sqlite"
    with ws.connect() as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.write_bytes(b"")
    db.with_name("catalog.sqlite-wal").unlink(missing_ok=True)
    with pytest.raises(WorkspaceError, match=r"0 bytes.*lelp doctor --repair"):
        Workspace(ws.root)
    assert doctor.repair(ws.root)
    assert [r["run_id"] for r in Workspace(ws.root).list_runs()] == [rec["run_id"]]
    # A brand-new folder with an empty file and nothing saved is simply new.
    fresh = ws.root.parent / "fresh"
    fresh.mkdir()
    (fresh / "catalog.sqlite").write_bytes(b"")
    assert Workspace(fresh).list_runs() == []


@pytest.mark.parametrize("damage", ["truncate", "shuffle", "delete"])
def test_damaged_teacher_array_is_found_then_recomputed(made, damage: str) -> None:
    ws, _ = made
    sha = _teacher_arrays(ws)["H:train"]
    path = ws._array_path(sha)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "shuffle":
        a = np.load(path)
        np.save(path, a[np.random.default_rng(1).permutation(len(a))])
    else:
        path.unlink()
    fresh = Workspace(ws.root)  # a new process: nothing verified yet
    if damage != "delete":
        with pytest.raises(ArrayDamaged, match="damaged"):
            fresh.get_array(sha)
        findings = doctor.check(ws.root)
        assert [f.kind for f in findings] == ["array"], findings
    # `lelp embed` recomputes instead of failing for ever, and says so.
    res = runner.invoke(app, ["embed", "--set", "dataset.source=digits-bin", "--set",
                              "teacher.kind=digits-mlp", "-w", str(ws.root)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "(computed)" in res.output and "they are recomputed" in res.output
    assert np.asarray(Workspace(ws.root).get_array(sha)).shape[1] > 0  # whole again
    assert doctor.check(ws.root) == []


def test_doctor_repair_sets_aside_a_damaged_array_and_keeps_the_rest(made) -> None:
    ws, rec = made
    logits = rec["artifacts"]["eval_logits"]
    path = ws._array_path(logits)
    path.write_bytes(path.read_bytes()[:64])
    sound = {p.name: p.read_bytes() for p in (ws.root / "arrays").glob("*/*.npy") if p != path}
    import os
    import time

    old_tmp, fresh_tmp = ws.root / "runs" / ".x.tmp", ws.root / "runs" / ".busy.tmp"
    old_tmp.write_bytes(b"half")
    fresh_tmp.write_bytes(b"a writer at work")
    staged = ws.root / "exports" / ".staging.tmp"  # a killed export's staging folder
    staged.mkdir(parents=True)
    (staged / "model.onnx").write_bytes(b"x")
    hour_ago = time.time() - 3600
    for p in (old_tmp, staged):
        os.utime(p, (hour_ago, hour_ago))
    kinds = sorted(f.kind for f in doctor.check(ws.root))
    assert kinds == ["array", "orphan", "orphan"]  # the fresh temp file is left alone
    done = doctor.repair(ws.root)
    assert any("set aside damaged array" in d for d in done)
    assert any("stored evaluation logits were lost" in d for d in done)
    after = {p.name: p.read_bytes() for p in (ws.root / "arrays").glob("*/*.npy")}
    assert after == sound  # every sound array untouched
    assert fresh_tmp.is_file() and not old_tmp.exists() and not staged.exists()
    fresh_tmp.unlink()
    run = Workspace(ws.root).load_run(rec["run_id"])
    assert "eval_logits" not in run["artifacts"] and run["metrics"]["student"]
    assert doctor.check(ws.root) == []
    # A run row lost while its files stayed is an orphan folder; the repair re-adds it.
    with Workspace(ws.root).connect() as con:
        con.execute("DELETE FROM runs")
    assert [f.line() for f in doctor.check(ws.root)][0].startswith(
        f"orphan: run folder {rec['run_id']} has no catalogue row"
    )
    assert any("re-added the catalogue row" in d for d in doctor.repair(ws.root))
    assert [r["run_id"] for r in Workspace(ws.root).list_runs()] == [rec["run_id"]]


def test_moved_and_copied_workspaces_serve_their_own_files(made, tmp_path: Path) -> None:
    ws, rec = made
    assert not Path(rec["artifacts"]["student_dir"]).is_absolute()
    moved = tmp_path / "moved"
    shutil.move(str(ws.root), moved)
    mws = Workspace(moved)
    run = mws.load_run(rec["run_id"])
    assert mws.artifact_path(run, "student_dir") == moved / "runs" / rec["run_id"] / "student"
    assert (mws.artifact_path(run, "student_dir") / "student.safetensors").is_file()
    copy = tmp_path / "copy"
    shutil.copytree(moved, copy)
    cws = Workspace(copy)
    assert str(cws.artifact_path(run, "student_dir")).startswith(str(copy))
    # Runs written by older code stored absolute paths: they resolve inside this workspace.
    old = dict(run, artifacts=dict(run["artifacts"], student_dir=str(moved / "runs" /
               rec["run_id"] / "student")))  # fmt: skip
    assert str(cws.artifact_path(old, "student_dir")).startswith(str(copy))


def test_app_shows_the_doctors_findings_and_repairs(made, app_for) -> None:
    ws, rec = made
    db = ws.root / "catalog.sqlite"
    for p in (db.with_name("catalog.sqlite-wal"), db.with_name("catalog.sqlite-shm")):
        p.unlink(missing_ok=True)
    db.write_bytes(b"not a database" * 100)
    at = app_for(str(ws.root))
    at.run()
    assert not at.exception, at.exception
    shown = " ".join(e.value for e in at.error)
    assert "1 problem(s): 1 catalogue" in shown
    assert any("catalogue: catalog.sqlite is damaged" in m.value for m in at.markdown)
    assert any("lelp doctor --repair -w" in m.value for m in at.info)
    res = runner.invoke(app, ["doctor", "-w", str(ws.root), "--repair"])
    assert res.exit_code == 0, res.output
    at.run()  # reloaded: the app opens the repaired workspace
    assert not at.error, [e.value for e in at.error]
    assert [r["run_id"] for r in Workspace(ws.root).list_runs()] == [rec["run_id"]]


def test_upload_keeps_the_users_name_and_a_rejected_upload_is_not_kept(tmp_path: Path) -> None:
    from lelp_studio.data import DataError, store_upload

    good = store_upload(tmp_path / "uploads", "My Reviews.csv", b"text,label\na,0\nb,1\n")
    assert good.name == "My Reviews.csv" and good.is_file()
    with pytest.raises(DataError, match=r"^bad\.csv: "):  # the user's name, not a hash
        store_upload(tmp_path / "uploads", "bad.csv", b"\xff\xfe\x00garbage")
    kept = sorted(p.name for p in (tmp_path / "uploads").rglob("*"))
    assert kept == sorted([good.parent.name, good.name])  # bad.csv and its folder are gone


def test_a_file_with_a_content_error_keeps_the_dataset_in_use(tmp_path: Path, app_for) -> None:
    one_class = tmp_path / "one_class.csv"
    one_class.write_text("text,label\n" + "".join(f"row {i},pos\n" for i in range(30)))
    at = app_for(str(tmp_path / "ws"), digits=True)
    at.run()
    at.switch_page("pages/1_data.py").run()
    at.radio(key="data_source_type").set_value("File (upload or path)").run()
    at.text_input(key="data_path").set_value(str(one_class)).run()
    assert not at.exception, at.exception
    assert any("only one class" in e.value for e in at.error)
    assert any("still **digits-bin**" in c.value for c in at.caption)
    assert at.session_state["dataset_spec"]["source"] == "digits-bin"  # not replaced
    at.switch_page("pages/3_subspaces.py").run()  # the other pages still work
    assert not at.exception and not at.error, [e.value for e in at.error]


def test_compare_offers_no_zip_without_the_student_weights(made, app_for) -> None:
    ws, rec = made
    (ws.artifact_path(rec, "student_dir") / "student.safetensors").unlink()
    at = app_for(str(ws.root), digits=True)  # Compare picks the runs of the current dataset
    at.run()
    at.switch_page("pages/5_compare.py").run()
    assert not at.exception, at.exception
    assert not at.get("download_button")
    assert any("student.safetensors is missing" in w.value for w in at.warning)
    findings = [f.line() for f in doctor.check(ws.root)]
    assert any("the student weights are missing" in f for f in findings), findings


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs POSIX rlimits")
def test_a_full_disk_during_a_write_is_one_line_and_loses_nothing(made) -> None:
    """A real file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so writes fail with EFBIG)
    while an array and a run record are written: one clear error each, no half-written file,
    every earlier row and file intact."""
    import subprocess
    import sys
    import textwrap

    ws, rec = made
    before = {
        p: p.read_bytes() for p in ws.root.rglob("*") if p.is_file() and "catalog" not in p.name
    }
    code = textwrap.dedent(
        f"""
        import resource, signal, numpy as np
        from lelp_studio.store import Workspace, WorkspaceError
        ws = Workspace({str(ws.root)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
        for what, write in (
            ("array", lambda: ws.put_array(np.ones((4096, 64), np.float32))),
            ("run", lambda: ws.save_run({{"run_id": "big", "config": {{}},
                                          "metrics": {{"x": "y" * 200_000}}, "artifacts": {{}}}})),
        ):
            try:
                write()
                print(what, "WROTE")
            except WorkspaceError as err:
                print(what, "ERROR", str(err).splitlines()[0] if str(err) else "")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("array ERROR") and "free disk space" in lines[0], lines
    assert "(None)" not in lines[0]
    assert lines[1].startswith("run ERROR") or lines[1] == "run WROTE", lines
    again = Workspace(ws.root)
    assert [r["run_id"] for r in again.list_runs() if r["run_id"] != "big"] == [rec["run_id"]]
    for p, data in before.items():
        assert p.read_bytes() == data, f"{p} changed"
    assert not list(ws.root.rglob(".*.tmp"))
    assert [f for f in doctor.check(ws.root) if f.kind != "reference"] == []


def test_a_workspace_written_before_this_change_keeps_its_groups_runs_and_rebuilds(
    tmp_path: Path,
) -> None:
    """Rows saved before mirrors existed get their mirror files on first open, so a later
    repair rebuilds them; lasso groups keyed by the dataset without its selection holdout are
    found and mapped to the new train rows; its runs still show on the Map."""
    from lelp_studio.config import DatasetSpec
    from lelp_studio.data import load_dataset

    ws = Workspace(tmp_path / "old")
    ds = load_dataset(DatasetSpec(source="digits-bin"))
    before = ds.before_holdout
    assert before is not None and len(before.splits["train"]) == 1437
    keep, held = ds.holdout_rows
    ids = np.array([int(keep[0]), int(held[0]), int(keep[5])])  # one row went to the holdout
    values = (before.fingerprint(), "old group", ws.put_array(ids), 0.0)
    with ws.connect() as con:  # as the old code wrote them: no mirror files
        con.execute("INSERT INTO manual_groups VALUES (?,?,?,?)", values)
        con.execute("INSERT INTO specs VALUES (?,?,?)", ("old spec", "{}", 0.0))
        con.execute(
            "INSERT INTO runs VALUES (?,?,?,?,?,?)",
            ("old-run", "old", "{}", "{}", json.dumps({"dataset_fp": before.fingerprint()}), 0.0),
        )
    (ws.root / "mirror" / ".complete").unlink()
    groups = pipeline.manual_groups(Workspace(ws.root), ds)  # reopened: mirrors backfilled
    assert groups["old group"].tolist() == [0, 5]  # new train rows; the held-out one dropped
    assert (
        ds.splits["train"].features[5].tolist() == before.splits["train"].features[keep[5]].tolist()
    )
    assert before.fingerprint() in pipeline.dataset_fps(ds)
    db = ws.root / "catalog.sqlite"
    for p in (db.with_name("catalog.sqlite-wal"), db.with_name("catalog.sqlite-shm")):
        p.unlink(missing_ok=True)
    db.write_bytes(b"garbage" * 100)
    doctor.repair(ws.root)
    again = Workspace(ws.root)
    assert [r["run_id"] for r in again.list_runs()] == ["old-run"]
    assert again.list_specs() == ["old spec"]
    assert list(again.list_manual_groups(before.fingerprint())) == ["old group"]


def test_a_catalogue_damaged_while_the_app_runs_gets_the_same_findings(made, app_for) -> None:
    """The app keeps its Workspace between reruns; a catalogue damaged after that is still
    caught on the next rerun, with the doctor's findings, not a traceback on some page."""
    ws, _ = made
    at = app_for(str(ws.root), digits=True)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    db = ws.root / "catalog.sqlite"
    db.write_bytes(b"not a database" * 100)
    # A reload in the same server process: the cached Workspace object is reused.
    at = app_for(ws.root)
    at.run()
    assert not at.exception, at.exception
    assert any("catalogue: catalog.sqlite is damaged" in m.value for m in at.markdown)
    assert any("lelp doctor --repair -w" in m.value for m in at.info)
