"""Background jobs: the queue in the catalogue, job processes, faults, cancel, concurrency.

Most tests use the dependency-free ``sleep`` kind (steps with a delay, an evaluation and a
counter-file checkpoint per epoch; tests/jobkinds.py, plugged in by the ``sleep_jobs``
fixture) so they exercise the machinery in seconds.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lelp_studio import jobs
from lelp_studio.config import ConfigError, RunConfig
from lelp_studio.store import Workspace

pytestmark = pytest.mark.usefixtures("sleep_jobs")


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny CPU models run ~10x faster single-threaded on a shared, loaded machine."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _wait(pred: Any, timeout: float, every: float = 0.05) -> float:
    """Poll ``pred`` until true; return the seconds it took (fail the test on timeout)."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(every)
    return time.monotonic() - t0


def _spawn_run(ws: Workspace, job_id: int) -> subprocess.Popen:
    """Start ``python -m lelp_studio.jobs run`` for one job, as the local worker does."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lelp_studio.jobs",
            "run",
            "--workspace",
            str(ws.root),
            "--job",
            str(job_id),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _snapshot(ws: Workspace, skip_job: int) -> dict[str, list[tuple]]:
    """Every row of every catalogue table except one job (and the workers' heartbeats)."""
    con = sqlite3.connect(ws.db_path)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {}
        for t in tables:
            if t in ("workers", "sqlite_sequence"):
                continue
            sql = f"SELECT * FROM {t}" + (" WHERE id != ?" if t == "jobs" else "")
            out[t] = sorted(
                con.execute(sql, (skip_job,) if t == "jobs" else ()).fetchall(), key=repr
            )
        return out
    finally:
        con.close()


def test_job_runs_in_its_own_process_with_live_progress(workspace: Workspace) -> None:
    job_id = jobs.submit(workspace, "sleep", {"steps": 30, "steps_per_epoch": 10, "delay": 0.08})
    worker = jobs.LocalWorker(workspace, gpus=[], poll=0.1, lock=False)
    seen: list[int] = []
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        worker.run_once()
        job = jobs.get_job(workspace, job_id)
        if job.pid:
            pids.add(job.pid)
        if job.progress.get("step") is not None:
            seen.append(job.progress["step"])
        if job.state in jobs.FINAL_STATES:
            break
        time.sleep(0.1)
    worker.stop()
    assert job.state == "succeeded", job.error
    assert pids and os.getpid() not in pids  # ran in another process
    assert len(set(seen)) >= 3 and seen == sorted(seen)  # progress moved forward while polled
    assert [m["epoch"] for m in job.metrics] == [1, 2, 3]  # one metrics row per evaluation
    assert job.result == f"job-{job_id}"
    assert workspace.load_run(job.result)["metrics"]["steps"] == 30
    assert "succeeded" in job.log_tail


@pytest.mark.parametrize("supervised", [True, False], ids=["under-worker", "heartbeat-only"])
def test_sigkill_fails_job_and_retry_resumes_from_checkpoint(
    workspace: Workspace, supervised: bool
) -> None:
    # Unrelated catalogue content that must survive untouched.
    workspace.save_spec("keep-me", {"a": 1})
    workspace.save_run({"run_id": "other-run", "config": {}, "metrics": {"x": 1}})
    other = jobs.submit(workspace, "sleep", {"steps": 1, "delay": 0})
    jobs.finish(workspace, jobs.claim(workspace, "w", "cpu").id, "succeeded", result="r")
    cfg = {"steps": 60, "steps_per_epoch": 5, "delay": 0.05}
    job_id = jobs.submit(workspace, "sleep", cfg)
    assert other < job_id

    worker = jobs.LocalWorker(workspace, gpus=[], poll=0.1, lock=False, stale_after=60)
    if supervised:
        worker.run_once()
        proc = None
    else:
        proc = _spawn_run(workspace, job_id)
    _wait(lambda: jobs.get_job(workspace, job_id).progress.get("epoch", 0) >= 3, 30)
    # A live job is left alone by recovery, even with a short threshold.
    assert jobs.recover_stale(workspace, stale_after=2.0) == []
    before = _snapshot(workspace, job_id)
    os.kill(jobs.get_job(workspace, job_id).pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(timeout=10)
    counter = jobs.ckpt_dir(workspace, job_id) / "counter.json"
    last_epoch = json.loads(counter.read_text())["epoch"]
    assert last_epoch >= 2

    def noticed() -> bool:
        if supervised:
            worker.run_once()
        else:
            jobs.recover_stale(workspace, stale_after=2.0)
        return jobs.get_job(workspace, job_id).state == "failed"

    assert _wait(noticed, 30, every=0.2) < 30
    failed = jobs.get_job(workspace, job_id)
    assert ("SIGKILL" if supervised else "no heartbeat") in failed.error
    assert "retry resumes from the last checkpoint" in failed.error
    assert _snapshot(workspace, job_id) == before  # nothing else changed

    jobs.retry(workspace, job_id)
    assert jobs.get_job(workspace, job_id).state == "queued"
    done = jobs.run_job(workspace, job_id)
    worker.stop()
    assert done.state == "succeeded", done.error
    assert done.attempts == 2
    assert workspace.load_run(done.result)["metrics"]["resumed_from_epoch"] == last_epoch
    # The resumed attempt's first evaluation is the epoch after the checkpoint.
    first_new = [m for m in done.metrics if m["time"] > failed.finished][0]
    assert first_new["epoch"] == last_epoch + 1


def test_cancel_stops_process_quickly_and_keeps_partial_metrics(workspace: Workspace) -> None:
    job_id = jobs.submit(workspace, "sleep", {"steps": 400, "steps_per_epoch": 5, "delay": 0.05})
    proc = _spawn_run(workspace, job_id)
    _wait(lambda: len(jobs.get_job(workspace, job_id).metrics) >= 2, 30)
    assert jobs.request_cancel(workspace, job_id) == "running"
    t0 = time.monotonic()
    proc.wait(timeout=10)
    assert time.monotonic() - t0 < 5
    job = jobs.get_job(workspace, job_id)
    assert job.state == "cancelled"
    assert len(job.metrics) >= 2 and job.progress["step"] < 400
    assert workspace.list_runs() == []  # a cancelled sleep job records no run


def test_cancel_stops_a_job_stuck_between_checks(workspace: Workspace) -> None:
    # One 20 s step: no on_step call comes in time, so the heartbeat thread ends the process.
    job_id = jobs.submit(workspace, "sleep", {"steps": 2, "steps_per_epoch": 1, "delay": 20})
    proc = _spawn_run(workspace, job_id)
    _wait(lambda: jobs.get_job(workspace, job_id).pid is not None, 30)
    jobs.request_cancel(workspace, job_id)
    t0 = time.monotonic()
    proc.wait(timeout=10)
    assert time.monotonic() - t0 < 5
    job = jobs.get_job(workspace, job_id)
    assert job.state == "cancelled" and "stopped forcibly" in job.error


def test_cancel_queued_job_is_immediate_and_retry_requeues(workspace: Workspace) -> None:
    job_id = jobs.submit(workspace, "sleep", {"steps": 3})
    assert jobs.request_cancel(workspace, job_id) == "cancelled"
    assert jobs.claim(workspace, "w", "cpu") is None
    assert jobs.retry(workspace, job_id).state == "queued"
    done = jobs.run_job(workspace, job_id)
    assert done.state == "succeeded"
    with pytest.raises(jobs.JobError, match="only failed or cancelled"):
        jobs.retry(workspace, job_id)
    with pytest.raises(jobs.JobError, match="no job with id 999"):
        jobs.get_job(workspace, 999)


def test_exception_fails_job_with_clear_error_and_log(workspace: Workspace) -> None:
    job_id = jobs.submit(workspace, "sleep", {"steps": 10, "delay": 0, "fail_at": 7})
    job = jobs.run_job(workspace, job_id)
    assert job.state == "failed"
    assert job.error == "RuntimeError: sleep job: planned failure at step 7"
    assert "Traceback" in job.log_tail and "planned failure" in job.log_tail


@pytest.mark.parametrize(
    ("oom_above", "state", "override"), [(64, "succeeded", 64), (10, "failed", 64)]
)
def test_cuda_oom_retries_once_with_half_batch(
    workspace: Workspace, oom_above: int, state: str, override: int
) -> None:
    pytest.importorskip("torch")
    cfg = {"steps": 4, "delay": 0, "batch_size": 128, "oom_above": oom_above}
    job = jobs.run_job(workspace, jobs.submit(workspace, "sleep", cfg))
    assert job.state == state
    assert job.batch_size_override == override  # halved once, never twice
    if state == "failed":
        assert "CUDA out of memory at train.batch_size=64 (started at 128" in job.error
        assert "lower train.batch_size" in job.error


def test_recover_stale_only_touches_stale_rows(workspace: Workspace) -> None:
    ids = [jobs.submit(workspace, "sleep", {}) for _ in range(3)]
    claimed = [jobs.claim(workspace, "w1", "cpu") for _ in ids]
    assert [c.id for c in claimed] == ids
    with sqlite3.connect(workspace.db_path) as con:  # job 0 last beat 100 s ago
        con.execute("UPDATE jobs SET heartbeat=? WHERE id=?", (time.time() - 100, ids[0]))
    jobs.heartbeat(workspace, ids[1])
    assert jobs.recover_stale(workspace, stale_after=15) == [ids[0]]
    states = {j.id: j.state for j in jobs.list_jobs(workspace)}
    assert states == {ids[0]: "failed", ids[1]: "running", ids[2]: "running"}
    assert "no heartbeat for 100 s" in jobs.get_job(workspace, ids[0]).error


def _claimer(root: str, worker: str, out: str) -> None:
    ws = Workspace(root)
    got = []
    while (job := jobs.claim(ws, worker, "cpu")) is not None:
        got.append(job.id)
        jobs.finish(ws, job.id, "succeeded", result=worker, attempt=job.attempts)
    Path(out).write_text(json.dumps(got))


def test_claim_is_atomic_across_processes(workspace: Workspace, tmp_path: Path) -> None:
    ids = [jobs.submit(workspace, "sleep", {"i": i}) for i in range(120)]
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_claimer, args=(str(workspace.root), f"w{i}", str(tmp_path / f"{i}")))
        for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    got = [json.loads((tmp_path / f"{i}").read_text()) for i in range(2)]
    assert not set(got[0]) & set(got[1])  # never the same job twice
    assert sorted(got[0] + got[1]) == ids  # and none lost
    rows = jobs.list_jobs(workspace)
    assert {j.attempts for j in rows} == {1}
    assert all(j.result == f"w{0 if j.id in got[0] else 1}" for j in rows)


def _hammer_worker(root: str, name: str, n_jobs: int) -> None:
    ws = Workspace(root)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = jobs.claim(ws, name, "cpu")
        if job is None:
            if sum(j.state == "succeeded" for j in jobs.list_jobs(ws)) >= n_jobs:
                return
            time.sleep(0.01)
            continue
        final = jobs.run_job(ws, job.id, throttle=0.0, heartbeat_interval=0.05)
        assert final.state == "succeeded", final.error
    raise TimeoutError("hammer worker did not finish")


def _hammer_cli(root: str, sentinel: int, n_jobs: int, n_writes: int) -> None:
    ws = Workspace(root)
    for i in range(n_jobs):
        jobs.submit(ws, "sleep", {"steps": 6, "steps_per_epoch": 2, "delay": 0, "i": i})
    for i in range(n_writes):
        jobs.update_progress(ws, sentinel, {"step": i + 1, "total": n_writes})
        jobs.append_metrics(ws, sentinel, {"i": i})


def test_two_workers_and_cli_hammer_without_lost_updates(workspace: Workspace) -> None:
    n_jobs, n_writes = 40, 150
    sentinel = jobs.submit(workspace, "sleep", {"device": "cuda"})  # never claimed by cpu slots
    ctx = mp.get_context("spawn")
    root = str(workspace.root)
    procs = [
        ctx.Process(target=_hammer_cli, args=(root, sentinel, n_jobs, n_writes)),
        ctx.Process(target=_hammer_worker, args=(root, "w1", n_jobs)),
        ctx.Process(target=_hammer_worker, args=(root, "w2", n_jobs)),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    assert [p.exitcode for p in procs] == [0, 0, 0]  # no "database is locked" anywhere
    rows = [j for j in jobs.list_jobs(workspace) if j.id != sentinel]
    assert len(rows) == n_jobs
    assert all(j.state == "succeeded" and j.attempts == 1 for j in rows)
    # 3 evaluations per job, every one recorded; progress reached the end.
    assert all([m["step"] for m in j.metrics] == [2, 4, 6] for j in rows)
    assert all(j.progress["step"] == 6 for j in rows)
    assert {j.worker_id for j in rows} == {"w1", "w2"}
    s = jobs.get_job(workspace, sentinel)
    assert [m["i"] for m in s.metrics] == list(range(n_writes))
    assert s.progress == {"step": n_writes, "total": n_writes}
    assert len(workspace.list_runs()) == n_jobs


def test_sweep_expands_grid_into_validated_jobs(workspace: Workspace) -> None:
    base = RunConfig(name="base", dataset={"source": "digits-bin"}, teacher={"kind": "digits-mlp"})
    grid = {
        "subclasses.n_subclasses": [2, 4],
        "train.objective": ["kd", "lelp"],
        "train.seed": [0, 1, 2],
    }
    sweep_id, ids = jobs.submit_sweep(workspace, base, grid)
    assert len(ids) == 9  # lelp: 2 S x 3 seeds; kd ignores S: 3 seeds, queued once each
    members = jobs.list_jobs(workspace, sweep_id=sweep_id)
    assert sorted(j.id for j in members) == ids
    combos = {
        (
            j.config["subclasses"]["n_subclasses"],
            j.config["train"]["objective"],
            j.config["train"]["seed"],
        )
        for j in members
    }
    assert len(combos) == 9
    assert all(j.kind == "sweep-member" and j.state == "queued" for j in members)
    assert all(j.config["dataset"]["source"] == "digits-bin" for j in members)
    assert all(RunConfig.model_validate(j.config) for j in members)
    assert any(j.name == "base n_subclasses=4 objective=lelp seed=2" for j in members)
    assert not any(j.name == "base n_subclasses=4 objective=kd seed=2" for j in members)


@pytest.mark.parametrize(
    ("grid", "match"),
    [
        ({"train.tau": [1.0, -1.0]}, "train.tau"),
        ({"train.bogus": [1]}, "unknown key 'train.bogus'"),
        ({"train.seed": []}, "non-empty list"),
    ],
)
def test_sweep_rejects_bad_grid_and_queues_nothing(
    workspace: Workspace, grid: dict, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        jobs.submit_sweep(workspace, RunConfig(), grid)
    assert jobs.list_jobs(workspace) == []


def test_submit_validates_distill_config(workspace: Workspace) -> None:
    with pytest.raises(ConfigError, match="unknown key 'train.epochz'"):
        jobs.submit(workspace, "distill", {"train": {"epochz": 3}})
    with pytest.raises(jobs.JobError, match="kind 'dance' is not known"):
        jobs.submit(workspace, "dance", {})
    job = jobs.get_job(workspace, jobs.submit(workspace, "distill", {"train": {"device": "cuda"}}))
    assert job.resources == "gpu" and job.config["train"]["epochs"] == RunConfig().train.epochs
    assert jobs.claim(workspace, "w", "cpu") is None  # a GPU job never lands on a CPU slot
    assert jobs.claim(workspace, "w", "cuda:0").id == job.id


def test_sleep_is_a_plugged_in_kind_not_a_library_one(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "sleep" in jobs.known_kinds() and "sleep" not in jobs.KINDS
    monkeypatch.delenv(jobs.PLUGINS_ENV)
    assert jobs.known_kinds() == jobs.KINDS
    with pytest.raises(jobs.JobError, match="kind 'sleep' is not known"):
        jobs.submit(workspace, "sleep", {})


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("no_such_module_xyz:KINDS", "cannot import 'no_such_module_xyz'"),
        ("jobkinds:NOPE", "has no attribute 'NOPE'"),
        ("jobkinds", "give module:ATTR"),
        ("jobkinds:_run_sleep", "must be a dict of kind name -> JobKind"),
    ],
)
def test_a_bad_plugin_spec_is_one_clear_line(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, spec: str, match: str
) -> None:
    job_id = jobs.submit(workspace, "sleep", {"steps": 1, "delay": 0})
    monkeypatch.setenv(jobs.PLUGINS_ENV, spec)
    with pytest.raises(jobs.JobError, match=match) as err:
        jobs.submit(workspace, "sleep", {})
    assert "\n" not in str(err.value) and jobs.PLUGINS_ENV in str(err.value)
    # The job process fails the job with that line instead of dying with a traceback.
    done = jobs.run_job(workspace, job_id)
    assert done.state == "failed" and match in (done.error or "")
    # A worker refuses to start: one line, exit status 2.
    cmd = [sys.executable, "-m", "lelp_studio.jobs", "worker", "--workspace", str(workspace.root)]
    r = subprocess.run([*cmd, "--once"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith("error: ") and match in r.stderr


def test_cli_list_show_cancel_retry_sweep(workspace: Workspace, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lelp_studio.cli.jobs import jobs_app, parse_grid

    assert parse_grid(["train.seed=0,1", "subclasses.n_subclasses=[2,3],4"]) == {
        "train.seed": [0, 1],
        "subclasses.n_subclasses": [[2, 3], 4],
    }
    w = ["--workspace", str(workspace.root)]
    cli = CliRunner()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset:\n  source: digits-bin\n")
    r = cli.invoke(jobs_app, ["sweep", str(cfg), "--grid", "train.seed=0,1,2", *w])
    assert r.exit_code == 0 and "queued 3 jobs" in r.output
    r = cli.invoke(jobs_app, ["cancel", "2", *w])
    assert r.exit_code == 0 and "job 2 is cancelled" in r.output
    r = cli.invoke(jobs_app, ["list", *w])
    assert r.exit_code == 0 and r.output.count("queued") == 2 and "cancelled" in r.output
    r = cli.invoke(jobs_app, ["retry", "2", *w])
    assert r.exit_code == 0 and jobs.get_job(workspace, 2).state == "queued"
    r = cli.invoke(jobs_app, ["show", "2", "--json", *w])
    assert r.exit_code == 0 and json.loads(r.output)["config"]["train"]["seed"] == 1
    r = cli.invoke(jobs_app, ["retry", "2", *w])
    assert r.exit_code == 2 and "only failed or cancelled" in r.output


def test_ensure_worker_starts_one_detached_worker(workspace: Workspace) -> None:
    assert not jobs.worker_alive(workspace)
    job_id = jobs.submit(workspace, "sleep", {"steps": 4, "delay": 0.01})
    assert jobs.ensure_worker(workspace) is True
    try:
        assert jobs.ensure_worker(workspace) is False  # one worker per workspace
        assert jobs.worker_alive(workspace)
        _wait(lambda: jobs.get_job(workspace, job_id).state == "succeeded", 30)
        pid = int((workspace.root / "worker.lock").read_text())
        assert [w["pid"] for w in jobs.list_workers(workspace)] == [pid]
    finally:
        pid = int((workspace.root / "worker.lock").read_text())
        os.kill(pid, signal.SIGTERM)
    _wait(lambda: not jobs.worker_alive(workspace), 10)
    assert jobs.list_workers(workspace) == []


def test_real_distill_job_cancel_then_retry_resumes(
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    one_torch_thread: None,
    tiny_digits_config: Any,
) -> None:
    cfg = tiny_digits_config(epochs=3)
    real = jobs.RUNNERS["distill"]

    def cancel_after_epoch_1(ws, job, on_step, ckpt, resume, progress):  # noqa: ANN001, ANN202
        # The first attempt behaves as if the user pressed cancel right after epoch 1.
        def wrapped(info: dict) -> bool:
            stop = on_step(info)
            return bool(stop) or (not resume and "eval_accuracy" in info and info["epoch"] == 1)

        return real(ws, job, wrapped, ckpt, resume, progress)

    monkeypatch.setitem(jobs.RUNNERS, "distill", cancel_after_epoch_1)
    job_id = jobs.submit(workspace, "distill", cfg)
    first = jobs.run_job(workspace, job_id)
    assert first.state == "cancelled", first.error
    assert [m["epoch"] for m in first.metrics] == [1]  # partial metrics stay
    assert (jobs.ckpt_dir(workspace, job_id) / "last.json").exists()

    jobs.retry(workspace, job_id)
    job = jobs.run_job(workspace, job_id)
    assert job.state == "succeeded", job.error
    assert [m["epoch"] for m in job.metrics] == [1, 2, 3]
    assert all(0.0 <= m["eval_accuracy"] <= 100.0 for m in job.metrics)
    run = workspace.load_run(job.result)
    assert run["run_id"] == f"job-{job_id}"
    assert run["metrics"]["resumed_from_epoch"] == 1


def test_worker_once_exits_when_only_unrunnable_jobs_remain(workspace: Workspace) -> None:
    gpu_job = jobs.submit(workspace, "sleep", {"device": "cuda"})
    worker = jobs.LocalWorker(workspace, gpus=[], poll=0.05, lock=False)
    t0 = time.monotonic()
    worker.run_forever(until_idle=True)
    assert time.monotonic() - t0 < 5
    assert jobs.get_job(workspace, gpu_job).state == "queued"  # waits for a GPU worker


def test_active_twin_finds_the_same_queued_config_only(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    cfg = RunConfig.model_validate(
        {"dataset": {"source": "digits-bin"}, "teacher": {"kind": "digits-mlp"}}
    )
    assert jobs.active_twin(ws, "distill", cfg) is None
    jid = jobs.submit(ws, "distill", cfg)
    assert jobs.active_twin(ws, "distill", cfg) == jid
    other = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": 1})})
    assert jobs.active_twin(ws, "distill", other) is None  # another seed is another run
    jobs.request_cancel(ws, jid)  # a queued job is cancelled at once
    assert jobs.active_twin(ws, "distill", cfg) is None  # a finished twin does not count


# -- the Distill page's job cards (issue 18: epoch x/y, elapsed, ETA, final score) ------------
def _job(state: str, **fields: Any) -> jobs.Job:
    row: dict[str, Any] = {
        "id": 7,
        "kind": "distill",
        "config": {"name": "text-demo kd", "train": {"epochs": 200}},
        "state": state,
        "resources": "any",
        "device": "cpu",
        "created": 1000.0,
        "started": None,
        "finished": None,
        "heartbeat": None,
        "pid": None,
        "worker_id": None,
        "progress": {},
        "metrics": [],
        "log_tail": "",
        "error": None,
        "result": None,
        "attempts": 0,
        "cancel_requested": False,
        "sweep_id": None,
        "batch_size_override": None,
    }
    return jobs.Job(**(row | fields))


def test_job_card_of_a_running_job_gives_epoch_elapsed_and_eta():
    running = _job(
        "running",
        started=1000.0,
        progress={"step": 240, "total": 1000, "epoch": 24, "epochs": 200},
        # epoch ends at 1100 s and 1330 s: 10 s per epoch, 176 epochs left, 5 s into the next
        metrics=[{"epoch": 1, "time": 1100.0}, {"epoch": 24, "time": 1330.0}],
    )
    card = jobs.job_card(running, now=1335.0)
    assert card.title == "#7 text-demo kd" and card.fraction == 0.24
    assert card.facts == ("epoch 24/200", "elapsed 5 min 35 s", "ETA 29 min 15 s")
    assert card.bar_text == "training: epoch 24/200"


def test_job_card_before_two_epochs_takes_the_eta_from_the_progress():
    stage = _job("running", started=1000.0, progress={"stage": "embedding", "step": 1, "total": 4})
    card = jobs.job_card(stage, now=1030.0)
    assert card.facts == ("elapsed 30 s", "ETA 1 min 30 s") and card.bar_text == "embedding"


def test_job_card_of_a_finished_job_gives_the_test_score_and_no_eta():
    done = _job(
        "succeeded",
        started=1000.0,
        finished=1000.0 + 2 * 3600 + 7 * 60,
        result="run-1",
        progress={"epoch": 200, "epochs": 200},
    )
    run = {"metrics": {"student": {"accuracy": 85.8333}}}
    card = jobs.job_card(done, run, now=99999.0)
    assert card.fraction == 1.0
    assert card.facts == ("epoch 200/200", "elapsed 2 h 07 min", "test accuracy 85.8%")
    # A cancelled job keeps its epoch and time, with no ETA and no score.
    cancelled = _job("cancelled", started=1000.0, finished=1240.0, progress={"epoch": 24})
    assert jobs.job_card(cancelled, run).facts == ("epoch 24/200", "elapsed 4 min 00 s")
    queued = _job("queued")
    assert jobs.job_card(queued, now=1065.0).facts == ("queued 1 min 05 s ago",)


# -- CPU slots (issue 18: with two cores, the worker ran CPU jobs one at a time) -------------
def test_two_cpu_jobs_run_at_the_same_time(workspace: Workspace) -> None:
    """Each sleep job waits until both have their own process running (``together``), so
    both succeed only when the worker runs them at once; their running intervals, read from
    the job table, overlap."""
    spec = {"steps": 2, "delay": 0.01, "together": 2, "together_s": 60}
    ids = [jobs.submit(workspace, "sleep", spec) for _ in range(2)]
    worker = jobs.LocalWorker(workspace, max_cpu_jobs=2, gpus=[], poll=0.05, lock=False)
    assert worker.run_forever(until_idle=True) == "idle"
    a, b = (jobs.get_job(workspace, i) for i in ids)
    assert a.state == b.state == "succeeded", (a.error, b.error)
    assert a.started is not None and b.started is not None
    assert a.finished is not None and b.finished is not None
    assert a.started < b.finished and b.started < a.finished
    assert {a.device, b.device} == {"cpu:0", "cpu:1"} and a.pid != b.pid


@pytest.mark.parametrize(("cores", "gpus", "env", "want"), [
    (2, [], None, 2),  # one per core
    (1, [], None, 1),
    (64, [], None, jobs.local.AUTO_CPU_JOBS_MAX),  # each job holds its own torch and data
    (8, ["0"], None, 1),  # with a GPU, CPU slots take only jobs that asked for the CPU
    (2, [], "3", 3),
    (8, ["0"], " 2 ", 2),
])  # fmt: skip
def test_cpu_slots_default_to_the_cores_and_the_environment_overrides(
    monkeypatch: pytest.MonkeyPatch, cores: int, gpus: list[str], env: str | None, want: int
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    if env is None:
        monkeypatch.delenv(jobs.CPU_JOBS_ENV, raising=False)
    else:
        monkeypatch.setenv(jobs.CPU_JOBS_ENV, env)
    assert jobs.default_cpu_jobs(gpus) == want


def test_each_cpu_job_gets_its_share_of_the_cores_as_threads(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    worker = jobs.LocalWorker(workspace, max_cpu_jobs=4, gpus=[], lock=False)
    env = worker.job_env("cpu:3")
    assert (
        env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"
        and env["CUDA_VISIBLE_DEVICES"] == ""
    )
    assert "4 CPU job(s) at once, 2 torch thread(s) each" in worker.describe()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # set by the user: kept, and said
    assert worker.job_env("cpu:0")["OMP_NUM_THREADS"] == "1" and worker.job_threads == 1


@pytest.mark.parametrize("bad", ["0", "two", "-1", "1.5"])
def test_a_bad_cpu_jobs_setting_is_one_line_where_the_worker_starts(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv(jobs.CPU_JOBS_ENV, bad)
    with pytest.raises(jobs.JobError) as err:
        jobs.ensure_worker(workspace)  # the app asks for a worker: said there, none started
    msg = str(err.value)
    assert "\n" not in msg and f"{jobs.CPU_JOBS_ENV}={bad!r}" in msg and "at least 1" in msg
    assert not jobs.worker_alive(workspace)


def test_the_worker_says_what_it_runs_at_once(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(jobs.CPU_JOBS_ENV, "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    cmd = [sys.executable, "-m", "lelp_studio.jobs", "worker", "--workspace", str(workspace.root)]
    r = subprocess.run([*cmd, "--once"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "2 CPU job(s) at once" in r.stdout and jobs.CPU_JOBS_ENV in r.stdout
    r = subprocess.run(
        [*cmd, "--once", "--max-cpu-jobs", "3"], capture_output=True, text=True, timeout=60
    )
    assert "3 CPU job(s) at once" in r.stdout, r.stdout
    worker = jobs.LocalWorker(workspace, gpus=[], lock=False)  # the app reads it from the table
    worker.start()
    try:
        line = jobs.capacity_line(workspace)
        assert line is not None and line.startswith("The worker runs up to 2 CPU jobs at once")
    finally:
        worker.stop()
    assert jobs.capacity_line(workspace) is None
