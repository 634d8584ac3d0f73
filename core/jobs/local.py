"""The local executor: :class:`LocalWorker` runs each job in its own
``python -m lelp_studio.jobs run`` process, one per GPU and ``max_cpu_jobs`` on CPU (by default
one per core, up to four, on a machine without GPUs: see :func:`default_cpu_jobs`).

Job processes are started in their own session: stopping or killing the worker does not kill
running jobs, which finish and record their result themselves (a new worker leaves them alone
while their heartbeat is fresh). One worker per workspace, held by a ``flock``;
``ensure_worker`` starts a detached one for the app.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..store import Workspace
from .liveness import _pid_alive
from .queue import claim, finish, get_job, recover_stale
from .table import Job, JobError, _db


def detect_gpus() -> list[str]:
    """GPU indices this machine offers: ``CUDA_VISIBLE_DEVICES`` if set, else torch's count."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch or a broken driver means no GPU
        return []


CPU_JOBS_ENV = "LELP_CPU_JOBS"
#: CPU slots a worker takes by itself at most: each job process holds its own torch and data.
AUTO_CPU_JOBS_MAX = 4


def default_cpu_jobs(gpus: list[str]) -> int:
    """How many CPU jobs a local worker runs at once unless told (``--max-cpu-jobs``).

    ``LELP_CPU_JOBS`` when set; else, without GPUs, one per core up to ``AUTO_CPU_JOBS_MAX``;
    with GPUs, one (CPU slots there take only jobs that asked for ``train.device: cpu``).
    Why one per core: the students trained here are small, and a step is too short to share
    among threads. Four 60-epoch digits-kd jobs on a loaded 2-core machine took 400-430 s in
    one slot of 2 threads (the old default), 100 s in one slot of 1 thread, and 57-74 s in two
    slots of 1 thread each (2026-12-02).
    """
    text = os.environ.get(CPU_JOBS_ENV, "").strip()
    if text:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise JobError(
                f"{CPU_JOBS_ENV}={text!r} is not a whole number of at least 1; set it to how "
                f"many CPU jobs may run at once, or unset it to use one per core (this machine "
                f"has {os.cpu_count() or 1})"
            )
        return n
    if gpus:
        return 1
    return max(1, min(os.cpu_count() or 1, AUTO_CPU_JOBS_MAX))


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"exit status {rc}"


def _register_worker(
    ws: Workspace,
    worker_id: str,
    executor: str,
    cpu_jobs: int | None = None,
    job_threads: int | None = None,
) -> None:
    now = time.time()
    with _db(ws) as con:
        con.execute(
            "INSERT OR REPLACE INTO workers (id, pid, host, executor, started, heartbeat, "
            "cpu_jobs, job_threads) VALUES (?,?,?,?,COALESCE((SELECT started FROM workers "
            "WHERE id=?), ?),?,?,?)",
            (
                worker_id,
                os.getpid(),
                socket.gethostname(),
                executor,
                worker_id,
                now,
                now,
                cpu_jobs,
                job_threads,
            ),
        )


def _unregister_worker(ws: Workspace, worker_id: str) -> None:
    with _db(ws) as con:
        con.execute("DELETE FROM workers WHERE id=?", (worker_id,))


def list_workers(ws: Workspace, fresh_within: float = 10.0) -> list[dict[str, Any]]:
    """Workers whose heartbeat is younger than ``fresh_within`` seconds (for the app)."""
    with _db(ws, immediate=False) as con:
        rows = con.execute(
            "SELECT * FROM workers WHERE heartbeat > ? ORDER BY started",
            (time.time() - fresh_within,),
        ).fetchall()
    return [dict(r) for r in rows]


def capacity_line(ws: Workspace) -> str | None:
    """What the live local worker of ``ws`` runs at once, in words for the app; None when no
    local worker is alive (or it predates the ``cpu_jobs`` column)."""
    rows = [w for w in list_workers(ws) if w.get("executor") == "local" and w.get("cpu_jobs")]
    if not rows:
        return None
    n, t = int(rows[-1]["cpu_jobs"]), int(rows[-1]["job_threads"] or 1)
    return (
        f"The worker runs up to {n} CPU job{'s' * (n != 1)} at once, {t} torch "
        f"thread{'s' * (t != 1)} each ({CPU_JOBS_ENV} sets it when the worker starts)."
    )


def _touch_pending(ws: Workspace, job_ids: list[int]) -> None:
    """Keep the heartbeat of claimed jobs whose process has not started yet (pid unset)."""
    if job_ids:
        marks = ",".join("?" * len(job_ids))
        with _db(ws) as con:
            con.execute(
                "UPDATE jobs SET heartbeat=? WHERE state='running' AND pid IS NULL AND id IN "  # noqa: S608 - "?" marks only
                f"({marks})",
                (time.time(), *job_ids),
            )


class _WorkerLock:
    """An exclusive ``flock`` on ``<workspace>/worker.lock`` held for a worker's lifetime: the
    kernel drops it when the process dies, so it is a liveness check that never goes stale."""

    def __init__(self, ws: Workspace, name: str = "worker.lock") -> None:
        self.path = ws.root / name
        self.fd: int | None = None

    def acquire(self, record_pid: bool = True) -> bool:
        """Take the lock if free; ``record_pid`` writes this process's id into the file (a
        liveness probe passes False, so the file keeps naming the worker)."""
        try:
            import fcntl
        except ImportError:  # Windows: no lock; ensure_worker falls back to the workers table
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        if record_pid:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return True

    def acquire_for_worker(self, wait: float = 1.0) -> bool:
        """``acquire``, retried for up to ``wait`` s: a liveness probe (``worker_alive``,
        ``ensure_worker``) holds the lock for an instant, and a worker starting in that
        instant must not give up as if another worker ran."""
        deadline = time.monotonic() + wait
        while not self.acquire():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _repo_root() -> str:
    """The checkout holding ``core/`` (put on a child's PYTHONPATH, as before the package)."""
    return str(Path(__file__).resolve().parents[2])


class _PollingExecutor:
    """The polling loop shared by ``LocalWorker`` and ``RayExecutor``: they differ in how
    they start, take jobs (``run_once`` returns how many of theirs are active) and stop."""

    _stop: threading.Event
    poll: float

    def start(self) -> None:  # pragma: no cover - both subclasses define it
        raise NotImplementedError

    def run_once(self) -> int:  # pragma: no cover
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def _queued_runnable(self) -> bool:  # pragma: no cover
        raise NotImplementedError

    def run_forever(self, until_idle: bool = False, parent_pid: int | None = None) -> str:
        """Loop until ``stop()`` (or SIGTERM/Ctrl-C); ``until_idle`` returns once the queue
        holds nothing this executor could run and its own jobs have ended; ``parent_pid``
        returns once that process is gone (the app's worker must not outlive the app). Job
        processes already started finish and record their outcome on their own. Returns why
        it stopped: ``"stopped"``, ``"idle"`` or ``"parent gone"``."""
        self.start()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        why = "stopped"
        try:
            while not self._stop.is_set():
                if parent_pid is not None and not _pid_alive(parent_pid):
                    why = "parent gone"
                    break
                active = self.run_once()
                if until_idle and active == 0 and not self._queued_runnable():
                    why = "idle"
                    break
                self._stop.wait(self.poll)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
        return why


class LocalWorker(_PollingExecutor):
    """Runs queued jobs on this machine, each in its own process.

    At most one job per GPU (``CUDA_VISIBLE_DEVICES`` set to that GPU) and ``max_cpu_jobs`` on
    CPU (``CUDA_VISIBLE_DEVICES=""``; None: :func:`default_cpu_jobs`). Each job gets its share
    of the cores as torch threads (``job_threads``; an ``OMP_NUM_THREADS`` already set wins).
    On a machine with GPUs, CPU slots take only jobs that asked for ``train.device: cpu``. A
    job process that dies without recording its outcome (killed, out of host memory) is
    marked failed with its exit signal; jobs of other, vanished processes are failed by
    ``recover_stale`` once their heartbeat is older than ``stale_after``. With ``lock`` (the
    default) only one such worker runs per workspace.
    """

    def __init__(
        self,
        ws: Workspace,
        max_cpu_jobs: int | None = None,
        gpus: list[str] | None = None,
        poll: float = 0.5,
        stale_after: float = 15.0,
        lock: bool = True,
        worker_id: str | None = None,
    ) -> None:
        self.ws = ws
        self.gpus = detect_gpus() if gpus is None else [str(g) for g in gpus]
        if max_cpu_jobs is None:
            max_cpu_jobs = default_cpu_jobs(self.gpus)
        elif max_cpu_jobs < 1:
            raise JobError(f"max_cpu_jobs={max_cpu_jobs}: a worker needs at least 1 CPU slot")
        self.max_cpu_jobs = max_cpu_jobs
        self.poll = poll
        self.stale_after = stale_after
        self.worker_id = worker_id or f"local-{socket.gethostname()}-{os.getpid()}"
        self.slots: dict[str, tuple[int, int, subprocess.Popen] | None] = {
            **{f"cuda:{g}": None for g in self.gpus},
            **{f"cpu:{i}": None for i in range(max_cpu_jobs)},
        }
        self._lock = _WorkerLock(ws) if lock else None
        self._started = False
        self._stop = threading.Event()

    def start(self) -> None:
        if self._started:
            return
        if self._lock is not None and not self._lock.acquire_for_worker():
            raise JobError(
                f"another worker already runs for workspace {self.ws.root} (see "
                f"{self._lock.path}); stop it first or use it"
            )
        self._started = True
        self._register()
        recover_stale(self.ws, self.stale_after)

    def stop(self) -> None:
        """Stop claiming; running job processes carry on and record their own outcome."""
        self._stop.set()
        if self._started:
            _unregister_worker(self.ws, self.worker_id)
            if self._lock is not None:
                self._lock.release()
            self._started = False

    def _register(self) -> None:
        _register_worker(self.ws, self.worker_id, "local", self.max_cpu_jobs, self.job_threads)

    @property
    def running(self) -> list[int]:
        return [s[0] for s in self.slots.values() if s is not None]

    @property
    def job_threads(self) -> int:
        """Torch threads a job process gets: its share of the cores (oversubscribed threads
        slow CPU jobs ~10x), unless ``OMP_NUM_THREADS`` is set already."""
        share = max(1, (os.cpu_count() or 1) // max(1, len(self.slots)))
        try:
            return max(1, int(os.environ["OMP_NUM_THREADS"]))
        except (KeyError, ValueError):
            return share

    def job_env(self, slot: str) -> dict[str, str]:
        """The environment of the job process started in ``slot`` (``cpu:0``, ``cuda:1``)."""
        env = dict(os.environ)
        env["CUDA_VISIBLE_DEVICES"] = slot.split(":", 1)[1] if slot.startswith("cuda") else ""
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("OMP_NUM_THREADS", str(self.job_threads))
        env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_repo_root(), env.get("PYTHONPATH")]))
        return env

    def describe(self) -> str:
        """What this worker runs at once, for its start line."""
        gpus = ", ".join(self.gpus) or "none"
        return (
            f"GPUs {gpus}; {self.max_cpu_jobs} CPU job(s) at once, {self.job_threads} torch "
            f"thread(s) each (--max-cpu-jobs or {CPU_JOBS_ENV} sets it)"
        )

    def _spawn(self, slot: str, job: Job) -> subprocess.Popen:
        env = self.job_env(slot)
        log_path = self.ws.run_dir(f"job-{job.id}") / "job.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            return subprocess.Popen(  # noqa: S603 - this interpreter runs our own module
                [
                    sys.executable,
                    "-m",
                    "lelp_studio.jobs",
                    "run",
                    "--workspace",
                    str(self.ws.root.resolve()),
                    "--job",
                    str(job.id),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C or killing the worker leaves jobs running
            )

    def _reap(self) -> None:
        for slot, entry in self.slots.items():
            if entry is None:
                continue
            job_id, attempt, proc = entry
            rc = proc.poll()
            if rc is None:
                continue
            self.slots[slot] = None
            job = get_job(self.ws, job_id)
            if job.state == "running" and job.attempts == attempt:
                finish(
                    self.ws,
                    job_id,
                    "failed",
                    error=f"job process {proc.pid} ended with {_describe_exit(rc)} before "
                    "recording a result (killed or out of memory?) — retry resumes from the "
                    "last checkpoint",
                    attempt=attempt,
                )

    def run_once(self) -> int:
        """One scheduling pass: recover stale jobs, reap finished processes, fill free slots.
        Returns the number of job processes still running."""
        self.start()
        self._register()
        recover_stale(self.ws, self.stale_after)
        self._reap()
        for slot, entry in self.slots.items():
            if entry is not None:
                continue
            accept: tuple[str, ...]
            if slot.startswith("cuda"):
                accept = ("gpu", "any")
            else:
                accept = ("cpu",) if self.gpus else ("cpu", "any")
            job = claim(self.ws, self.worker_id, slot, accept)
            if job is None:
                continue
            self.slots[slot] = (job.id, job.attempts, self._spawn(slot, job))
        _touch_pending(self.ws, self.running)
        return len(self.running)

    def _queued_runnable(self) -> bool:
        """Whether a queued job exists that one of this worker's slots could take (a GPU job
        on a machine without GPUs is not: it waits for a GPU worker)."""
        accept = {"cpu"} | ({"gpu", "any"} if self.gpus else {"any"})
        marks = ",".join("?" * len(accept))
        with _db(self.ws, immediate=False) as con:
            row = con.execute(
                f"SELECT 1 FROM jobs WHERE state='queued' AND resources IN ({marks}) LIMIT 1",  # noqa: S608 - "?" marks only
                sorted(accept),
            ).fetchone()
        return row is not None


def ensure_worker(ws: Workspace, wait: float = 15.0, *, outlive_caller: bool = False) -> bool:
    """Start a detached local worker for ``ws`` unless one is alive; True if one was started.

    Liveness is the worker's ``flock`` on ``worker.lock`` (released by the kernel when the
    worker dies), so a crashed worker never blocks a new one. Raises JobError, in one line,
    for a ``LELP_CPU_JOBS`` the worker would refuse. Waits up to ``wait`` seconds for
    the new worker to take the lock, so two quick calls never start two workers. The worker
    gets ``--parent-pid`` (this process) and exits once this process is gone, so the app's
    worker stops with the app; jobs already running still finish. ``outlive_caller`` leaves
    it running instead.
    """
    default_cpu_jobs([])  # a bad LELP_CPU_JOBS is said here, not only in worker.log
    spawn_lock = _WorkerLock(ws, "worker.spawn.lock")
    deadline = time.monotonic() + wait
    while not spawn_lock.acquire():  # another caller is starting one right now
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    try:
        if worker_alive(ws):
            return False
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_repo_root(), env.get("PYTHONPATH")]))
        with open(ws.root / "worker.log", "ab") as out:
            subprocess.Popen(  # noqa: S603 - this interpreter runs our own module
                [
                    sys.executable,
                    "-m",
                    "lelp_studio.jobs",
                    "worker",
                    "--workspace",
                    str(ws.root.resolve()),
                    *([] if outlive_caller else ["--parent-pid", str(os.getpid())]),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        while time.monotonic() < deadline and _has_fcntl():
            check = _WorkerLock(ws)
            if not check.acquire(record_pid=False):
                break
            check.release()
            time.sleep(0.05)
        return True
    finally:
        spawn_lock.release()


def _has_fcntl() -> bool:
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True


def worker_alive(ws: Workspace) -> bool:
    """Whether a local worker holds this workspace's lock (or, without flock, has a fresh
    heartbeat in the ``workers`` table)."""
    if not _has_fcntl():
        return bool(list_workers(ws))
    # A worker holds the lock for its lifetime, another probe only for an instant: retry
    # briefly, so two probes at once never take each other for a worker.
    probe = _WorkerLock(ws)
    deadline = time.monotonic() + 0.25
    while not probe.acquire(record_pid=False):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.01)
    probe.release()
    return False
