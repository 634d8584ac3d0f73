"""The Ray executor: the same ``run_job`` as a local job process, sent to a Ray cluster."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from ..store import Workspace
from .local import (
    _PollingExecutor,
    _register_worker,
    _touch_pending,
    _unregister_worker,
    _WorkerLock,
)
from .queue import claim, finish, get_job, list_jobs, recover_stale
from .runner import CANCEL_GRACE_S, run_job
from .table import JobError


def _ray_task(root: str, job_id: int) -> str:
    """What a Ray worker runs: the same ``run_job`` as a local job process."""
    return run_job(Workspace(root), job_id).state


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise JobError(
            "the Ray executor needs Ray: pip install 'lelp-studio[ray]' (or use --executor local)"
        ) from None
    return ray


class RayExecutor(_PollingExecutor):
    """Sends queued jobs to a Ray cluster as tasks running :func:`run_job`.

    Artifacts travel through a SHARED FILESYSTEM, not Ray's object store: each task opens the
    workspace at the same path as this process (``ws.root``) and writes the catalogue, arrays
    and checkpoints there, so the workspace folder must be reachable at that path from every
    Ray node (NFS or similar; for a local Ray instance it is). A job that needs a GPU
    (``train.device: cuda``, or ``auto`` when the cluster has GPUs) asks for ``num_gpus=1``.
    In-flight tasks are capped at the cluster's CPU count so claimed jobs start promptly and
    their heartbeat stays fresh; a task that dies is marked failed with Ray's error. With
    ``lock`` (the default) it holds the local worker's lock, so it never runs beside another
    executor of this workspace.
    """

    def __init__(
        self,
        ws: Workspace,
        address: str | None = None,
        num_cpus: int | None = None,
        poll: float = 0.5,
        stale_after: float = 15.0,
        max_in_flight: int | None = None,
        lock: bool = True,
    ) -> None:
        self.ws, self.address, self.num_cpus, self.poll = ws, address, num_cpus, poll
        self.stale_after, self.max_in_flight = stale_after, max_in_flight
        self.worker_id = f"ray-{socket.gethostname()}-{os.getpid()}"
        self.in_flight: dict[Any, tuple[int, int, bool]] = {}
        self._cancel_seen: dict[int, float] = {}
        self._ray: Any = None
        self._task: Any = None
        self._stop = threading.Event()
        # The local worker's lock: one executor of either kind per workspace, since both
        # recover stale jobs and claim from the same queue.
        self._lock = _WorkerLock(ws) if lock else None
        self._locked = False

    def start(self) -> None:
        if self._ray is not None:
            return
        if self._lock is not None and not self._locked:
            if not self._lock.acquire_for_worker():
                raise JobError(
                    f"another worker already runs for workspace {self.ws.root} (see "
                    f"{self._lock.path}); stop it first or use it"
                )
            self._locked = True
        try:
            ray = _import_ray()
            if not ray.is_initialized():
                kwargs: dict[str, Any] = {"include_dashboard": False, "ignore_reinit_error": True}
                if self.address:
                    kwargs["address"] = self.address
                elif self.num_cpus is not None:
                    kwargs["num_cpus"] = self.num_cpus
                ray.init(**kwargs)
        except BaseException:
            self._release()
            raise
        self._ray = ray
        _register_worker(self.ws, self.worker_id, "ray")
        recover_stale(self.ws, self.stale_after)

    def _capacity(self) -> tuple[int, int]:
        res = self._ray.cluster_resources()
        cpus = self.max_in_flight or max(1, int(res.get("CPU", 1)))
        return cpus, int(res.get("GPU", 0))

    def _collect(self) -> None:
        if not self.in_flight:
            return
        refs = list(self.in_flight)
        done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in done:
            job_id, attempt, _gpu = self.in_flight.pop(ref)
            self._cancel_seen.pop(job_id, None)
            try:
                self._ray.get(ref)
            except Exception as err:  # noqa: BLE001 - a dead task must reach the catalogue
                finish(
                    self.ws,
                    job_id,
                    "failed",
                    error=f"Ray task failed ({type(err).__name__}: {str(err)[:500]}) — retry "
                    "resumes from the last checkpoint",
                    attempt=attempt,
                )

    def _force_cancel(self) -> None:
        """Cancel tasks whose job ignores a cancel request beyond the grace period."""
        for ref, (job_id, attempt, _) in list(self.in_flight.items()):
            job = get_job(self.ws, job_id)
            if not job.cancel_requested:
                continue
            seen = self._cancel_seen.setdefault(job_id, time.monotonic())
            if time.monotonic() - seen > CANCEL_GRACE_S * 2:
                self._ray.cancel(ref, force=True)
                finish(
                    self.ws,
                    job_id,
                    "cancelled",
                    error="cancelled (task stopped by Ray)",
                    attempt=attempt,  # never over a newer attempt of the same job
                )

    def run_once(self) -> int:
        self.start()
        _register_worker(self.ws, self.worker_id, "ray")
        recover_stale(self.ws, self.stale_after)
        self._collect()
        self._force_cancel()
        cpus, gpus = self._capacity()
        if self._task is None:
            self._task = self._ray.remote(_ray_task)
        task = self._task
        while len(self.in_flight) < cpus:
            gpu_busy = sum(g for _, _, g in self.in_flight.values())
            accept = (
                ("cpu", "any", "gpu") if gpu_busy < gpus else ("cpu",) + (() if gpus else ("any",))
            )
            job = claim(self.ws, self.worker_id, "ray", accept)
            if job is None:
                break
            use_gpu = job.resources == "gpu" or (job.resources == "any" and gpu_busy < gpus)
            ref = task.options(num_gpus=1 if use_gpu else 0, num_cpus=1, max_retries=0).remote(
                str(self.ws.root.resolve()), job.id
            )
            self.in_flight[ref] = (job.id, job.attempts, use_gpu)
        _touch_pending(self.ws, [j for j, _, _ in self.in_flight.values()])
        return len(self.in_flight)

    def _queued_runnable(self) -> bool:
        """Any queued job: Ray places GPU jobs on whichever node has a GPU."""
        return bool(list_jobs(self.ws, states=("queued",)))

    def stop(self) -> None:
        self._stop.set()
        if self._ray is not None:
            _unregister_worker(self.ws, self.worker_id)
            self._ray = None
        self._release()

    def _release(self) -> None:
        if self._lock is not None and self._locked:
            self._lock.release()
            self._locked = False
