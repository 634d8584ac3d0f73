"""The teacher's fine-tune (issue 15 item 3): a background job with step reports, cancel and
resume from a checkpoint, a damaged checkpoint said and never used, its outputs a cache hit
afterwards, ``lelp finetune``, and the offer with its expected time when the frozen teacher
leaves no room. Kept cheap: a few rows, a few steps of MiniLM."""

from __future__ import annotations

import json
import re
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from test_teachers import _text_dataset
from typer.testing import CliRunner

from lelp_studio import headroom, jobs
from lelp_studio.checkpoint import save_state
from lelp_studio.cli import app
from lelp_studio.config import DatasetSpec, TeacherSpec, load_config
from lelp_studio.jobs import read_checkpoint
from lelp_studio.pipeline import get_dataset, get_teacher_outputs
from lelp_studio.store import Workspace
from lelp_studio.teachers import (
    FinetuneCancelled,
    FinetuneControl,
    finetune_minilm,
    finetune_steps,
)
from lelp_studio.teachers import finetune as ft

pytest.importorskip("transformers")
runner = CliRunner()
SPEC = TeacherSpec(
    kind="minilm", mode="finetune", batch_size=4, max_length=16, lr=1e-3, precision="float32",
    epochs=2,
)  # fmt: skip


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sb = b.state_dict()
    return all(torch.allclose(v, sb[k], atol=1e-6) for k, v in a.state_dict().items())


# -- the loop: a resumed fine-tune takes the same steps; a damaged checkpoint is said ----------
def test_resumed_finetune_takes_the_steps_an_uninterrupted_one_takes(tmp_path: Path) -> None:
    ds = _text_dataset(8, 4)  # 2 steps an epoch, 4 in all
    plain, _ = finetune_minilm(ds, SPEC, lambda *a: None)
    assert plain.facts["steps_run"] == 4 and plain.facts["resumed_from_step"] == 0
    assert [h["epoch"] for h in plain.facts["history"]] == [1, 2]

    seen: list[int] = []

    def stop_at_3(info: dict[str, Any]) -> bool:
        seen.append(info["step"])
        return info["step"] == 3

    every_step = FinetuneControl(on_step=stop_at_3, checkpoint_dir=tmp_path, checkpoint_every_s=0)
    with pytest.raises(FinetuneCancelled, match="at step 3; the checkpoint holds step 3"):
        finetune_minilm(ds, SPEC, control=every_step)
    assert seen == [1, 2, 3]  # a report per step; the second one ends epoch 1
    point = read_checkpoint(tmp_path, Path("ck"), by_step=True)
    assert (point.step, point.epoch, point.note) == (3, 1, None)

    # Mid-epoch 2: the run picks up at step 4, with epoch 2's order and step 4's dropout.
    seen.clear()
    go_on = FinetuneControl(on_step=lambda i: seen.append(i["step"]), checkpoint_dir=tmp_path)
    resumed, _ = finetune_minilm(ds, SPEC, control=go_on)
    assert seen == [4] and resumed.facts["resumed_from_step"] == 3
    assert _same(plain, resumed)
    assert [h["epoch"] for h in resumed.facts["history"]] == [1, 2]

    # The newest checkpoint (step 4) truncated: the previous one (step 3) is used, and said.
    w = tmp_path / "last.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    point = read_checkpoint(tmp_path, Path("ck"), by_step=True)
    assert point.step == 3 and "last.safetensors is damaged" in (point.note or "")
    assert "it resumes from step 3 from the previous checkpoint" in (point.note or "")
    seen.clear()
    with pytest.warns(RuntimeWarning, match=r"last.safetensors is damaged.*previous.*step 3"):
        again, _ = finetune_minilm(ds, SPEC, control=go_on)
    assert seen == [4] and _same(plain, again)
    assert "damaged" in (again.facts["resume_note"] or "")


def test_unreadable_or_foreign_checkpoint_restarts_with_a_note(tmp_path: Path) -> None:
    ds = _text_dataset(8, 4)
    run_id = ft._run_id(ds, SPEC, 4)
    setup = ft._Setup(ds, SPEC)
    tensors = {f"model.{k}": v for k, v in setup.model.state_dict().items()}
    optim, optim_meta = ft.optimizer_state(setup.opt)
    save_state(tmp_path, tensors | optim, {"epoch": 1, "step": 2, "run": run_id, **optim_meta})
    assert ft._resume(setup, tmp_path, run_id)[0]["step"] == 2  # sound: used, no note
    meta, note = ft._resume(setup, tmp_path, ft._run_id(ds, SPEC, 6))
    assert meta is None and "belongs to another fine-tune" in note and "step 0" in note
    (tmp_path / "last.safetensors").write_bytes(b"\x00" * 10)
    meta, note = ft._resume(setup, tmp_path, run_id)
    assert meta is None
    assert note == (
        f"{tmp_path}: last.safetensors is damaged (truncated or not safetensors); the "
        "fine-tune restarts from step 0"
    )
    point = read_checkpoint(tmp_path, Path("ck"), by_step=True)
    assert point.step == 0 and point.note is not None
    assert point.note.endswith("; it restarts from step 0")


# -- the expected time and the offer ---------------------------------------------------------
def test_expected_time_is_steps_times_the_timed_step_plus_the_embedding_pass() -> None:
    est = headroom.estimate_finetune(1296, 3, 64, 2.0, 1800, 60.0, device="cpu")
    assert est.steps == 63  # ceil(1296 / 64) = 21 steps an epoch
    assert (est.train_seconds, est.embed_seconds, est.seconds) == (126.0, 30.0, 156.0)
    assert est.text() == (
        "about 3 min on this machine (cpu): 63 steps (1,296 rows x 3 epochs in batches of 64) "
        "at 2.00 s a step, timed here, then 1,800 rows embedded at 60 rows/s"
    )
    assert headroom.estimate_finetune(10, 1, 64, 0.5, 10, 100.0).text().startswith("about 1 s")
    assert finetune_steps(100, 3, 32) == 12 and finetune_steps(100, 3, 32, max_steps=5) == 5
    with pytest.raises(ValueError, match="measured rates must be positive"):
        headroom.estimate_finetune(10, 1, 4, 0.0, 10, 1.0)


@pytest.mark.parametrize(
    ("pays", "teacher", "offered"),
    [
        (False, TeacherSpec(kind="minilm"), True),
        (True, TeacherSpec(kind="minilm"), False),
        (None, TeacherSpec(kind="minilm"), False),  # not measured yet
        (False, TeacherSpec(kind="minilm", mode="finetune"), False),  # already fine-tuned
        (False, TeacherSpec(kind="hf", path="ckpt"), False),  # a checkpoint is used as it is
    ],
)
def test_finetune_is_offered_only_when_the_frozen_teacher_leaves_no_room(
    pays: bool | None, teacher: TeacherSpec, offered: bool
) -> None:
    rec = None if pays is None else {"pays": pays}
    assert headroom.offers_finetune(rec, teacher) is offered


# -- the job: CLI, cancel, retry resumes, via the worker, a cache hit afterwards ---------------
@pytest.fixture
def tiny_csv(tmp_path: Path, make_text_frame: Any) -> str:
    path = tmp_path / "tiny.csv"
    make_text_frame(40).to_csv(path, index=False)  # 29 train, 3 dev (selection), 8 test
    return str(path)


def test_finetune_job_cancelled_then_retried_resumes_and_is_then_a_cache_hit(
    workspace: Workspace, tiny_csv: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sets = [
        f"dataset.source={tiny_csv}", "teacher.epochs=2", "teacher.batch_size=16",
        "teacher.max_length=16", "teacher.precision=float32",
    ]  # fmt: skip
    r = runner.invoke(
        app, ["finetune", *sum((["--set", s] for s in sets), []), "-w", str(workspace.root)]
    )
    assert r.exit_code == 0, r.output
    job_id = int(re.search(r"job #(\d+)", r.output).group(1))  # type: ignore[union-attr]
    job = jobs.get_job(workspace, job_id)
    assert job.kind == "teacher-finetune" and job.state == "queued"
    assert job.config["teacher"]["mode"] == "finetune"  # set by the command

    real = jobs.RUNNERS["teacher-finetune"]

    def cancel_at_step_3(ws, job, on_step, ckpt, resume, progress):  # noqa: ANN001, ANN202
        def stop(info: dict[str, Any]) -> bool:
            return bool(on_step(info)) or info["step"] == 3

        return real(ws, job, stop, ckpt, resume, progress)

    monkeypatch.setitem(jobs.RUNNERS, "teacher-finetune", cancel_at_step_3)
    job = jobs.run_job(workspace, job_id, throttle=0)
    assert job.state == "cancelled", job.error
    assert job.progress["step"] == 3 and job.progress["total"] == 4
    assert [m["epoch"] for m in job.metrics] == [1]  # epoch 1 ended at step 2, with its score
    assert "train_accuracy" in job.metrics[0]
    assert jobs.resume_point(workspace, job_id).step == 2  # epoch 1's end was saved

    # The same request again resumes this job rather than starting another from step 0.
    cfg = load_config(None, sets)
    again = jobs.submit_finetune(workspace, cfg.dataset, cfg.teacher)
    assert again == jobs.Submitted(job_id, "resumed")
    monkeypatch.setitem(jobs.RUNNERS, "teacher-finetune", real)
    worker = jobs.LocalWorker(workspace, gpus=[], poll=0.1, lock=False)  # its own process
    worker.start()
    worker.run_forever(until_idle=True)
    job = jobs.get_job(workspace, job_id)
    assert job.state == "succeeded", (job.error, job.log_tail)
    assert "resuming from step 2" in job.log_tail
    assert [m["epoch"] for m in job.metrics] == [1, 2]
    assert not jobs.ckpt_dir(workspace, job_id).exists()  # cached: the checkpoint is gone

    # Afterwards the teacher is a cache hit for every caller, under the job's key.
    tuned = cfg.teacher.model_copy(update={"mode": "finetune"})
    out, key, hit = get_teacher_outputs(workspace, get_dataset(cfg.dataset), tuned)
    assert hit and key == job.result
    assert out.meta["finetune"]["resumed_from_step"] == 2  # where the worker's attempt began
    assert out.meta["finetune"]["steps_run"] == 2
    assert out.meta["spec"] == tuned.model_dump(mode="json")
    assert jobs.finetuned_teachers(workspace, get_dataset(cfg.dataset).fingerprint()) == [
        (tuned, key)
    ]
    card = jobs.job_card(job, jobs.job_run(workspace, job))
    assert card.facts[0] == "epoch 2/2" and card.facts[-1].startswith("teacher test accuracy")


def test_finetune_command_bad_input_is_one_line(tmp_path: Path) -> None:
    assert "finetune" in runner.invoke(app, ["--help"]).output
    hf_teacher = ["--set", "teacher.kind=hf", "--set", "teacher.path=x"]
    hf = runner.invoke(app, ["finetune", *hf_teacher, "-w", str(tmp_path)])
    assert hf.exit_code == 2 and len(hf.output.strip().splitlines()) == 1, hf.output
    assert "only the bundled MiniLM teacher is fine-tuned here" in hf.output
    frozen = runner.invoke(
        app, ["jobs", "submit", "--kind", "teacher-finetune", "-w", str(tmp_path)]
    )
    assert frozen.exit_code == 2 and "set teacher.kind=minilm and teacher.mode=finetune" in (
        frozen.output
    )
    assert not jobs.list_jobs(Workspace(tmp_path))  # nothing queued by either
    first = runner.invoke(app, ["finetune", "-w", str(tmp_path)])
    again = runner.invoke(app, ["finetune", "--wait", "-w", str(tmp_path)])
    assert first.exit_code == 0 and "Queued fine-tune job #1." in first.output
    assert "already queued or running" in again.output and "not running it twice" in again.output
    assert len(jobs.list_jobs(Workspace(tmp_path))) == 1


def test_a_finetune_checkpoint_left_by_a_kill_is_named_by_step(tmp_path: Path) -> None:
    """What ``lelp jobs retry`` and the job's note say, read without torch."""
    ws = Workspace(tmp_path)
    cfg = jobs.finetune_config(DatasetSpec(), TeacherSpec())
    job_id = jobs.submit(ws, "teacher-finetune", cfg)
    ck = jobs.ckpt_dir(ws, job_id)
    x = {"model.w": torch.zeros(2)}
    for step in (5, 7):
        save_state(ck, x, {"epoch": 1, "step": step, "optim_param_groups": []})
    with sqlite3.connect(ws.db_path) as con:  # as a killed job process leaves it
        con.execute("UPDATE jobs SET state='failed', error='killed' WHERE id=?", (job_id,))
    r = runner.invoke(app, ["jobs", "retry", str(job_id), "-w", str(tmp_path)])
    assert r.exit_code == 0 and "it resumes from step 7" in r.output, r.output
    (ck / "last.json").write_text("{")
    assert jobs.resume_point(ws, job_id).note == (
        f"checkpoint {ck.relative_to(tmp_path)}: last.json is unreadable; it resumes from step "
        "5 from the previous checkpoint"
    )
    assert json.loads((ck / "prev.json").read_text())["step"] == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reader never warns; the note is the message
        jobs.resume_point(ws, job_id)
