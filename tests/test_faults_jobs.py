"""Faults in the job machinery lose nothing and say what to do (issue 16, items 5, 6, 12, 13).

Damaged checkpoints fall back or restart with a note, dead jobs are failed by any reader,
the Ray executor locks and guards its attempt, the app's worker stops with the app; then a
seeded loop SIGKILLs job processes and workers at random points and checks that every job
still completes with each epoch once and that nothing saved before is lost.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lelp_studio import jobs
from lelp_studio.jobs import liveness, ray_executor
from lelp_studio.store import Workspace

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("sleep_jobs")
REPO = Path(__file__).resolve().parent.parent
ONE_LINE = ("\n", "Traceback")


def _wait(pred: Any, timeout: float, every: float = 0.05) -> None:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(every)


def _one_line(msg: str | None) -> str:
    assert msg and not any(bad in msg for bad in ONE_LINE), msg
    return msg


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from lelp_studio.cli.jobs import jobs_app

    return CliRunner().invoke(jobs_app, list(args))


@pytest.fixture
def fast_dead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers in this process judge a job dead after 0.3 s without a heartbeat (not 10 s)."""
    monkeypatch.setattr(liveness, "DEAD_AFTER_S", 0.3)


# -- item 5: damaged checkpoints ----------------------------------------------------------
def _digits_train(epochs: int, ckpt: Path, resume: bool) -> Any:
    from sklearn.datasets import load_digits

    from lelp_studio.students import MLPStudent
    from lelp_studio.train import TrainConfig, TrainData, train

    X, y = load_digits(return_X_y=True)
    x = torch.tensor(X[:600] / 16.0, dtype=torch.float32)
    data = TrainData(train_inputs={"x": x}, y=torch.tensor(y[:600] % 2))
    torch.manual_seed(0)
    cfg = TrainConfig(
        objective="hard", epochs=epochs, batch_size=100, device="cpu", checkpoint_dir=str(ckpt),
        resume=resume,
    )  # fmt: skip
    return train(MLPStudent(64, 16, 2), data, cfg)


def test_truncated_checkpoint_falls_back_to_the_previous_generation(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    _digits_train(3, ck, resume=False)
    assert json.loads((ck / "prev.json").read_text())["epoch"] == 2  # one generation kept
    w = ck / "last.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])  # a kill or a full disk
    with pytest.warns(RuntimeWarning, match="last.safetensors is damaged.*previous.*epoch 2"):
        res = _digits_train(4, ck, resume=True)
    assert res.resumed_from_epoch == 2
    assert [h["epoch"] for h in res.history] == [1, 2, 3, 4]  # epoch 3 redone, not doubled
    # Both files damaged: a restart from epoch 1, said so, not a SafetensorError every time.
    for name in ("last.safetensors", "prev.safetensors"):
        (ck / name).write_bytes(b"\x00" * 10)
    with pytest.warns(RuntimeWarning, match="restarting from epoch 1"):
        res = _digits_train(2, ck, resume=True)
    assert res.resumed_from_epoch is None and [h["epoch"] for h in res.history] == [1, 2]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert _digits_train(3, ck, resume=True).resumed_from_epoch == 2
    assert not [w for w in seen if "checkpoint" in str(w.message)]  # sound: no note


def test_the_job_runner_and_the_loop_agree_on_the_generation_and_read_it_without_torch(
    tmp_path: Path,
) -> None:
    """One rule finds the readable generation (``checkpoint_files.scan``): the retry's note
    and the loop's resume name the same epoch, and the runner's reader does not load torch."""
    from lelp_studio.checkpoint import load_state
    from lelp_studio.jobs.checkpoints import read_checkpoint

    ck = tmp_path / "ck"
    _digits_train(3, ck, resume=False)
    w = ck / "last.safetensors"
    w.write_bytes(w.read_bytes()[:-7])  # truncated by a few bytes: the header still parses
    point, loaded = read_checkpoint(ck, Path("ck")), load_state(ck)
    assert loaded.meta is not None and loaded.fell_back
    assert point.epoch == loaded.meta["epoch"] == 2 and "after epoch 2" in (point.note or "")
    code = (
        "import sys; from pathlib import Path; from lelp_studio.checkpoint_files import scan; "
        f"print(scan(Path({str(ck)!r})).candidates()[0][0]['epoch'], 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "False"]


def test_kill_between_rotation_renames_still_finds_a_pair(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    _digits_train(3, ck, resume=False)
    # The state a kill leaves after the first rename of the next save: last.json is gone.
    (ck / "last.json").replace(ck / "prev.json")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        res = _digits_train(4, ck, resume=True)
    assert not [w for w in seen if "checkpoint" in str(w.message)]
    assert res.resumed_from_epoch == 3 and [h["epoch"] for h in res.history] == [1, 2, 3, 4]


def test_damaged_job_checkpoint_resumes_from_previous_and_says_so(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, tiny_digits_config: Any
) -> None:
    torch.set_num_threads(1)
    real = jobs.RUNNERS["distill"]

    def cancel_after_epoch_2(ws, job, on_step, ckpt, resume, progress):  # noqa: ANN001, ANN202
        def wrapped(info: dict) -> bool:
            stop = on_step(info)
            return bool(stop) or (not resume and info["epoch"] == 2 and "eval_accuracy" in info)

        return real(ws, job, wrapped, ckpt, resume, progress)

    monkeypatch.setitem(jobs.RUNNERS, "distill", cancel_after_epoch_2)
    job_id = jobs.submit(workspace, "distill", tiny_digits_config(epochs=4))
    assert jobs.run_job(workspace, job_id).state == "cancelled"
    ck = jobs.ckpt_dir(workspace, job_id)
    w = ck / "last.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    r = _cli("retry", str(job_id), "--workspace", str(workspace.root))
    assert r.exit_code == 0, r.output
    out = _one_line(r.output.strip())
    assert f"job {job_id} re-queued" in out and "last.safetensors is damaged" in out
    assert "resumes after epoch 1" in out
    with pytest.warns(RuntimeWarning, match="damaged"):
        job = jobs.run_job(workspace, job_id)
    assert job.state == "succeeded", job.error
    assert [m["epoch"] for m in job.metrics] == [1, 2, 3, 4]  # epoch 2 redone, once
    assert "last.safetensors is damaged" in job.progress["note"]
    run = workspace.load_run(job.result)
    assert run["metrics"]["resumed_from_epoch"] == 1
    assert "damaged" in run["metrics"]["resume_note"]
    assert [h["epoch"] for h in run["metrics"]["history"]] == [1, 2, 3, 4]
    r = _cli("show", str(job_id), "--workspace", str(workspace.root))
    assert "note: checkpoint" in r.output


def _set_config(ws: Workspace, job_id: int, config: dict[str, Any]) -> None:
    with sqlite3.connect(ws.db_path) as con:
        con.execute("UPDATE jobs SET config=? WHERE id=?", (json.dumps(config), job_id))


def test_missing_checkpoint_restarts_and_is_not_called_a_resume(workspace: Workspace) -> None:
    cfg = {"steps": 9, "steps_per_epoch": 3, "delay": 0}
    job_id = jobs.submit(workspace, "sleep", {**cfg, "fail_at": 8})  # fails in epoch 3
    assert jobs.run_job(workspace, job_id).state == "failed"
    assert [m["epoch"] for m in jobs.get_job(workspace, job_id).metrics] == [1, 2]
    (jobs.ckpt_dir(workspace, job_id) / "counter.json").unlink()  # the checkpoint vanished
    _set_config(workspace, job_id, cfg)  # the next attempt does not fail
    r = _cli("retry", str(job_id), "--workspace", str(workspace.root))
    assert r.exit_code == 0 and "resumes" not in r.output, r.output
    assert "starts from epoch 1" in _one_line(r.output.strip())
    job = jobs.run_job(workspace, job_id)
    assert job.state == "succeeded"
    assert [m["epoch"] for m in job.metrics] == [1, 2, 3]  # never 1, 2, 1, 2, 3
    assert workspace.load_run(job.result)["metrics"]["resumed_from_epoch"] == 0
    # A damaged (not missing) counter restarts too, with a note instead of a JSONDecodeError.
    with sqlite3.connect(workspace.db_path) as con:
        con.execute("UPDATE jobs SET state='failed' WHERE id=?", (job_id,))
    (jobs.ckpt_dir(workspace, job_id) / "counter.json").write_text("{")
    r = _cli("retry", str(job_id), "--workspace", str(workspace.root))
    assert "counter.json is unreadable; it restarts from epoch 1" in r.output
    assert jobs.run_job(workspace, job_id).state == "succeeded"


# -- item 6: dead jobs ----------------------------------------------------------------------
def _spawn_run(ws: Workspace, job_id: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lelp_studio.jobs", "run", "--workspace", str(ws.root)]
    return subprocess.Popen(
        [*cmd, "--job", str(job_id)], env=_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_dead_job_is_failed_by_any_reader_then_retry_and_cancel_work(
    workspace: Workspace, fast_dead: None
) -> None:
    slow = {"steps": 60, "steps_per_epoch": 5, "delay": 0.05}
    a, b = jobs.submit(workspace, "sleep", slow), jobs.submit(workspace, "sleep", slow)
    procs = [_spawn_run(workspace, a), _spawn_run(workspace, b)]
    _wait(lambda: all(len(jobs.get_job(workspace, i).metrics) >= 2 for i in (a, b)), 60)
    for i, proc in zip((a, b), procs, strict=True):
        os.kill(jobs.get_job(workspace, i).pid, signal.SIGKILL)
        proc.wait(timeout=10)
    time.sleep(0.5)
    ws = ["--workspace", str(workspace.root)]
    # No worker runs. Cancel ends a dead job at once (nothing would read the flag)...
    r = _cli("cancel", str(b), *ws)
    assert r.exit_code == 0 and f"job {b} is cancelled" in r.output, r.output
    assert _one_line(jobs.get_job(workspace, b).error).startswith("cancelled; the job's process")
    # `lelp doctor` alone (no job list read first) finds it, with the way out.
    from lelp_studio import doctor

    lines = [f.line() for f in doctor.check(workspace.root)]
    assert any(ln.startswith(f"job: job {a}: the job's process died") for ln in lines), lines
    # ...and `lelp jobs list` (any reader) fails the other one, with the way out.
    r = _cli("list", *ws)
    assert r.exit_code == 0 and "running" not in r.output, r.output
    err = _one_line(jobs.get_job(workspace, a).error)
    assert err.startswith("the job's process died (no heartbeat since ")
    assert err.endswith(f"); retry it with `lelp jobs retry {a}`")
    r = _cli("retry", str(a), *ws)  # no worker needed; it resumes from its checkpoint
    assert r.exit_code == 0 and "resumes after epoch" in r.output, r.output
    done = jobs.run_job(workspace, a)
    assert done.state == "succeeded" and done.attempts == 2
    assert [m["epoch"] for m in done.metrics] == list(range(1, 13))


def test_reader_never_fails_a_job_whose_process_may_live(
    workspace: Workspace, fast_dead: None
) -> None:
    host = socket.gethostname()
    dead = 2**22 + 12345  # above the usual pid_max: no such process
    owners = {  # (worker id, job pid)
        "worker-alive": (f"local-{host}-{os.getpid()}", None),  # not started yet
        "job-alive": (f"local-{host}-{dead}", os.getpid()),  # the worker died, the job runs
        "starting": (f"local-{host}-{dead}", None),  # the worker died just after spawning it
        "other-host": ("local-elsewhere-1", dead),  # not judged from here
        "ray": (f"ray-{host}-{dead}", dead),  # Ray tasks may run on other nodes
        "unknown": ("w1", dead),
    }
    ids = {}
    for name, (owner, pid) in owners.items():
        ids[name] = jobs.submit(workspace, "sleep", {"name": name})
        jobs.claim(workspace, owner, "cpu")
        with sqlite3.connect(workspace.db_path) as con:
            con.execute(
                "UPDATE jobs SET heartbeat=?, pid=? WHERE id=?",
                (time.time() - 3600, pid, ids[name]),
            )
    starting = subprocess.Popen(  # what the worker started: `python -m lelp_studio.jobs run`
        [sys.executable, "-c", "import time; time.sleep(60)", "lelp_studio.jobs", "run",
         "--workspace",
         str(workspace.root.resolve()), "--job", str(ids["starting"])],
    )  # fmt: skip
    try:
        time.sleep(0.2)
        assert {j.state for j in jobs.list_jobs(workspace)} == {"running"}
    finally:
        starting.kill()
        starting.wait()
    assert jobs.get_job(workspace, ids["starting"]).state == "failed"  # now it is gone
    assert jobs.request_cancel(workspace, ids["job-alive"]) == "running"  # a flag, as before


# -- item 12: the Ray executor (unit level, Ray is not started) -------------------------------
class _FakeRay:
    def __init__(self) -> None:
        self.cancelled: list[Any] = []

    def is_initialized(self) -> bool:
        return True

    def cancel(self, ref: Any, force: bool = False) -> None:
        self.cancelled.append(ref)


def test_ray_executor_takes_the_worker_lock(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ray_executor, "_import_ray", _FakeRay)
    local = jobs.LocalWorker(workspace, gpus=[])
    local.start()
    try:
        with pytest.raises(jobs.JobError, match="another worker already runs"):
            jobs.RayExecutor(workspace).start()
    finally:
        local.stop()
    ray_ex = jobs.RayExecutor(workspace)
    ray_ex.start()
    assert jobs.worker_alive(workspace)
    with pytest.raises(jobs.JobError, match="another worker already runs"):
        jobs.LocalWorker(workspace, gpus=[]).start()
    ray_ex.stop()
    assert not jobs.worker_alive(workspace)


def test_ray_force_cancel_never_finishes_a_newer_attempt(workspace: Workspace) -> None:
    job_id = jobs.submit(workspace, "sleep", {})
    old = jobs.claim(workspace, "ray-x-1", "ray")
    jobs.finish(workspace, job_id, "failed", error="lost", attempt=old.attempts)
    jobs.retry(workspace, job_id)
    new = jobs.claim(workspace, "ray-x-1", "ray")
    assert new.attempts == old.attempts + 1
    jobs.request_cancel(workspace, job_id)
    ex = jobs.RayExecutor(workspace)
    ex._ray = _FakeRay()
    ex.in_flight["stale-ref"] = (job_id, old.attempts, False)  # the old attempt's task
    ex._cancel_seen[job_id] = time.monotonic() - 60  # its grace period is long over
    ex._force_cancel()
    assert ex._ray.cancelled == ["stale-ref"]
    assert jobs.get_job(workspace, job_id).state == "running"  # the new attempt is untouched
    ex.in_flight["new-ref"] = (job_id, new.attempts, False)
    ex._force_cancel()
    assert jobs.get_job(workspace, job_id).state == "cancelled"


# -- item 13: the app's worker stops with the app ------------------------------------------
def test_app_started_worker_exits_when_the_app_is_gone(workspace: Workspace) -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "lelp_studio.jobs", "worker", "--help"],
        env=_env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "--parent-pid" in helped.stdout
    app = subprocess.Popen(  # stands in for the Streamlit process, which calls ensure_worker
        [sys.executable, "-c", "import sys, time\nfrom lelp_studio import jobs\n"
         "from lelp_studio.store import "
         "Workspace\nassert jobs.ensure_worker(Workspace(sys.argv[1]))\ntime.sleep(60)",
         str(workspace.root)],
        env=_env(), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    lock = workspace.root / "worker.lock"
    try:
        _wait(
            lambda: jobs.worker_alive(workspace) and _lock_pid(lock) not in (None, os.getpid()), 30
        )
        worker_pid = _lock_pid(lock)
        time.sleep(1.0)
        assert jobs.worker_alive(workspace)  # it lives while the app does
        app.kill()
        app.wait(timeout=10)
        _wait(lambda: not jobs.worker_alive(workspace), 10)  # and stops soon after
        log = (workspace.root / "worker.log").read_text()
        assert f"process {app.pid} (the app) has ended" in log
    finally:
        if app.poll() is None:
            app.kill()
        if jobs.worker_alive(workspace) and _lock_pid(lock):
            os.kill(_lock_pid(lock), signal.SIGKILL)
    _wait(lambda: not liveness._pid_alive(worker_pid), 10)  # the process itself has ended


def _lock_pid(lock: Path) -> int | None:
    """The pid a worker wrote into its lock file (None while it is being written)."""
    text = lock.read_text().strip() if lock.exists() else ""
    return int(text) if text.isdigit() else None


# -- fault injection: SIGKILL at seeded random points ------------------------------------------
ZYGOTE = r'''
"""Imports the training stack once, then forks one job process per request (fast attempts).
A request may arm a SIGKILL at the k-th on_step call or the n-th rename in the checkpoint."""
import json, os, signal, sys
import torch
torch.set_num_threads(1)
import lelp_studio.pipeline, lelp_studio.train  # noqa: F401 - warm imports
import lelp_studio.students, lelp_studio.objectives  # noqa: F401
torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])  # imports torch._dynamo (1-2 s)
from lelp_studio import jobs
from lelp_studio.store import Workspace

def kill():
    os.kill(os.getpid(), signal.SIGKILL)

def arm(cmd):
    if cmd.get("step"):
        real, n = jobs.RUNNERS["distill"], [0]
        def runner(ws, job, on_step, ckpt, resume, progress):
            def wrapped(info):
                n[0] += 1
                if n[0] == cmd["step"] and cmd["before"]:
                    kill()
                out = on_step(info)
                if n[0] == cmd["step"]:
                    kill()
                return out
            return real(ws, job, wrapped, ckpt, resume, progress)
        jobs.RUNNERS["distill"] = runner
    if cmd.get("rename"):
        real_replace, n = os.replace, [0]
        def replace(src, dst, *a, **k):
            mine = os.sep + "ckpt" + os.sep in str(dst)
            n[0] += mine
            if mine and n[0] == cmd["rename"] and cmd["before"]:
                kill()
            real_replace(src, dst, *a, **k)
            if mine and n[0] == cmd["rename"]:
                kill()
        os.replace = replace

ws = Workspace(sys.argv[1])
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            arm(cmd)
            jobs.run_job(ws, cmd["job"], hard_cancel=True)
        finally:
            os._exit(0)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    print(json.dumps({"exit": status, "signal": sig}), flush=True)
'''

EPOCHS = 5
MIN_FAULTS, MAX_TRIALS = 20, 60


def _kept(ws: Workspace, skip_job: int) -> dict[str, list[tuple]]:
    """Specs, runs and jobs saved so far, except the job under test (and its future run)."""
    con = sqlite3.connect(ws.db_path)
    try:
        return {
            "specs": sorted(con.execute("SELECT * FROM specs").fetchall()),
            "runs": sorted(
                con.execute("SELECT * FROM runs WHERE run_id != ?", (f"job-{skip_job}",))
            ),
            "jobs": sorted(con.execute("SELECT * FROM jobs WHERE id != ?", (skip_job,))),
        }
    finally:
        con.close()


class _Zygote:
    def __init__(self, ws: Workspace, log: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE, str(ws.root)], env=_env(), text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(log, "a"),  # noqa: SIM115
        )  # fmt: skip
        assert self._read() == {"ready": True}

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line, "the fault-injection helper died"
        return json.loads(line)

    def attempt(self, cmd: dict[str, Any], kill_after: float | None) -> int | None:
        """Run one attempt; returns the signal that ended it (None: it ended by itself)."""
        self.proc.stdin.write(json.dumps(cmd) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        pid = self._read()["pid"]
        if kill_after is not None:
            time.sleep(kill_after)
            with contextlib.suppress(ProcessLookupError):  # it may have ended already
                os.kill(pid, signal.SIGKILL)
        return self._read()["signal"]

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(timeout=30)


def _worker_attempt(ws: Workspace, job_id: int, rnd: random.Random, log: Path) -> tuple[bool, str]:
    """Run the queued job under a real ``lelp worker`` and SIGKILL the worker, the job
    process or both after a random delay; returns whether something was killed, and what."""
    cmd = [sys.executable, "-m", "lelp_studio.jobs", "worker", "--workspace", str(ws.root)]
    with open(log, "a") as out:
        worker = subprocess.Popen(
            [*cmd, "--once", "--poll", "0.1"], env=_env(), stdout=out, stderr=out,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    target = rnd.choice(["worker", "job", "both"])
    delay = rnd.uniform(0.2, 5.0)
    time.sleep(delay)
    killed = False
    job = jobs.get_job(ws, job_id)
    if target in ("job", "both") and job.state == "running" and job.pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(job.pid, signal.SIGKILL)
            killed = True
    if target in ("worker", "both") and worker.poll() is None:
        worker.kill()
        killed = True
    _wait(lambda: jobs.get_job(ws, job_id).state != "running", 60, every=0.1)
    if worker.poll() is None:  # --once: it leaves once the queue is empty
        worker.wait(timeout=30)
    return killed, f"worker trial: kill {target} after {delay:.1f} s"


@pytest.mark.skipif(sys.platform != "linux", reason="forks a warm job process (Linux)")
def test_sigkill_at_seeded_random_points_loses_nothing(
    workspace: Workspace, fast_dead: None, tiny_digits_config: Any, tmp_path: Path
) -> None:
    rnd = random.Random(16)
    ws = workspace
    ws.save_spec("keep-me", {"a": 1})
    ws.save_run({"run_id": "earlier-run", "config": {}, "metrics": {"x": 1}})
    log = tmp_path / "faults.log"
    zygote = _Zygote(ws, log)
    stats = {"trials": 0, "faults": 0, "survived": 0, "damaged": 0, "lost": 0, "jobs": 0}
    done: list[int] = []
    trials: list[str] = []
    damaged: set[int] = set()  # jobs whose checkpoint files this test damaged
    job_id = jobs.submit(ws, "distill", tiny_digits_config(epochs=EPOCHS))

    def finish_job(jid: int) -> None:
        job = jobs.get_job(ws, jid)
        assert job.state == "succeeded", job.error
        assert [m["epoch"] for m in job.metrics] == list(range(1, EPOCHS + 1))
        run = ws.load_run(job.result)
        assert [h["epoch"] for h in run["metrics"]["history"]] == list(range(1, EPOCHS + 1))
        assert 50.0 < run["metrics"]["student"]["accuracy"] <= 100.0
        done.append(jid)

    try:
        trial = -1
        while stats["faults"] < MIN_FAULTS and trial < MAX_TRIALS:
            trial += 1
            stats["trials"] += 1
            before = _kept(ws, job_id)
            t_start, saved = time.time(), jobs.resume_point(ws, job_id).epoch
            if trial % 6 == 5:
                killed, what = _worker_attempt(ws, job_id, rnd, log)
            else:
                how = rnd.choice(["step", "rename", "time"])
                cmd = {"job": job_id, "before": rnd.random() < 0.5}
                if how == "step":
                    cmd["step"] = rnd.randint(1, 9)
                elif how == "rename":
                    cmd["rename"] = rnd.randint(1, 4 * EPOCHS)
                after = rnd.uniform(0.05, 1.5) if how == "time" else None
                killed = zygote.attempt(cmd, after) == signal.SIGKILL
                when = f"after {after:.2f} s" if after else {k: cmd[k] for k in cmd if k != "job"}
                what = f"job process: kill {when}"
            stats["faults"] += killed
            jid = job_id
            _wait(lambda: jobs.get_job(ws, jid).state != "running", 30)  # noqa: B023
            job = jobs.get_job(ws, job_id)
            assert _kept(ws, job_id) == before  # nothing else in the catalogue changed
            if job.state == "queued":  # the worker was killed before it claimed the job
                trials.append(f"{trial}: {what} killed={killed} -> job {job_id} still queued")
                stats["survived"] += killed  # intact and still queued: nothing was lost
                continue
            if job.state == "succeeded":  # the fault came too late, or never
                trials.append(f"{trial}: {what} killed={killed} -> job {job_id} succeeded")
                finish_job(job_id)
                stats["survived"] += killed
                job_id = jobs.submit(ws, "distill", tiny_digits_config(epochs=EPOCHS))
                continue
            assert job.state == "failed", job.error
            _one_line(job.error)
            assert f"lelp jobs retry {job_id}" in job.error or "retry resumes" in job.error
            # Epochs this attempt reported were checkpointed first: none may be lost.
            saved = max([saved] + [m["epoch"] for m in job.metrics if m["time"] >= t_start])
            point = jobs.resume_point(ws, job_id)
            stats["lost"] += point.epoch < saved
            trials.append(
                f"{trial}: {what} killed={killed} saved={saved} resume={point.epoch} "
                f"({time.time() - t_start:.1f} s)"
            )
            if rnd.random() < 0.25 and point.exists:
                stats["damaged"] += 1
                damaged.add(job_id)
                ck = jobs.ckpt_dir(ws, job_id)
                what = rnd.choice(["truncate", "json", "missing"])
                if what == "truncate" and (ck / "last.safetensors").exists():
                    w = ck / "last.safetensors"
                    w.write_bytes(w.read_bytes()[: rnd.randint(0, w.stat().st_size - 1)])
                elif what == "json" and (ck / "last.json").exists():
                    (ck / "last.json").write_text('{"epoch": ')
                else:
                    for f in ck.iterdir():
                        f.unlink()
            r = _cli("retry", str(job_id), "--workspace", str(ws.root))
            assert r.exit_code == 0, r.output
            msg = _one_line(r.output.strip())
            assert msg.startswith(f"job {job_id} re-queued; ")
            if job_id not in damaged:  # kills alone never damage a checkpoint
                assert "damaged" not in msg and "unreadable" not in msg, (msg, trials)
            stats["survived"] += killed
        # The job under test completes on a clean attempt, each epoch once.
        assert zygote.attempt({"job": job_id}, None) is None
        finish_job(job_id)
    finally:
        zygote.close()
    stats["jobs"] = len(done)
    print(f"fault injection: {stats}", *trials, sep="\n")
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    assert stats["faults"] >= MIN_FAULTS and stats["survived"] == stats["faults"]
    assert stats["lost"] == 0
    assert ws.load_spec("keep-me") == {"a": 1}
    assert ws.load_run("earlier-run")["metrics"] == {"x": 1}
    for jid in done:  # every finished job's run is still there, with its student
        student = ws.artifact_path(ws.load_run(f"job-{jid}"), "student_dir")
        assert student is not None and (student / "student.safetensors").is_file()


# -- two writers at once ---------------------------------------------------------------------
def _writer(root: str, who: str, n: int, shared_job: int) -> None:
    ws = Workspace(root)
    for i in range(n):
        ws.save_spec(f"{who}-{i}", {"who": who, "i": i})
        ws.save_run({"run_id": f"{who}-{i}", "config": {}, "metrics": {"i": i}})
        jid = jobs.submit(ws, "sleep", {"who": who, "i": i})
        jobs.append_metrics(ws, shared_job, {"who": who, "i": i})
        if i % 3 == 0:
            jobs.request_cancel(ws, jid)
        jobs.list_jobs(ws)  # a reader among the writers


def test_two_writers_at_once_lose_nothing(workspace: Workspace) -> None:
    shared = jobs.submit(workspace, "sleep", {"device": "cuda"})
    n = 60
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_writer, args=(str(workspace.root), who, n, shared))
        for who in ("a", "b")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]  # no "database is locked", no traceback
    assert {f"{w}-{i}" for w in "ab" for i in range(n)} <= set(workspace.list_specs())
    runs = {r["run_id"] for r in workspace.list_runs()}
    assert {f"{w}-{i}" for w in "ab" for i in range(n)} <= runs
    rows = [j for j in jobs.list_jobs(workspace) if j.id != shared]
    assert len(rows) == 2 * n
    assert sum(j.state == "cancelled" for j in rows) == 2 * len(range(0, n, 3))
    got = jobs.get_job(workspace, shared).metrics
    for who in "ab":  # every append kept, in each writer's order
        assert [m["i"] for m in got if m["who"] == who] == list(range(n))


@pytest.fixture(autouse=True)
def _no_stray_workers(workspace: Workspace) -> Iterator[None]:
    yield
    pid = _lock_pid(workspace.root / "worker.lock")
    if jobs.worker_alive(workspace) and pid and pid != os.getpid():
        os.kill(pid, signal.SIGKILL)


def test_distill_page_starts_a_worker_for_jobs_left_queued_by_a_restart(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, app_for: Any
) -> None:
    """The app's worker exits with the app; when the app comes back, queued jobs must not
    wait for ever: the job list starts a worker and says so."""
    jobs.submit(workspace, "sleep", {"steps": 2, "steps_per_epoch": 1, "delay": 0.0})
    started: list[str] = []
    monkeypatch.setattr(
        jobs, "ensure_worker", lambda ws, *a, **k: started.append(str(ws.root)) or True
    )
    at = app_for(workspace.root, digits=True, autostart=True)
    at.run()
    at.switch_page("pages/4_distill.py").run()
    assert not at.exception, at.exception
    assert started == [str(workspace.root)]
    assert any("started one" in c.value for c in at.caption)
