"""The Ray executor runs the same job function on a local Ray instance (needs the ray extra).

The workspace is a local folder, which every task of a local Ray instance reaches at the same
path: the shared-filesystem setup the executor documents.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from jobkinds import plug_in

from lelp_studio import jobs
from lelp_studio.store import Workspace

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("sleep_jobs")]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as mp:
        plug_in(mp)  # before ray.init: Ray's workers inherit the environment
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()


def _drain(ex: jobs.RayExecutor, ws: Workspace, ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ex.run_once()
        if all(jobs.get_job(ws, i).state in jobs.FINAL_STATES for i in ids) and not ex.in_flight:
            return
        time.sleep(0.2)
    pytest.fail(f"Ray jobs did not finish within {timeout} s")


def test_ray_executor_runs_sleep_jobs(local_ray: Any, workspace: Workspace) -> None:
    ids = [
        jobs.submit(workspace, "sleep", {"steps": 6, "steps_per_epoch": 3, "delay": 0.02})
        for _ in range(3)
    ]
    ex = jobs.RayExecutor(workspace)
    _drain(ex, workspace, ids, 120)
    ex.stop()
    done = [jobs.get_job(workspace, i) for i in ids]
    assert [j.state for j in done] == ["succeeded"] * 3, [j.error for j in done]
    assert all(j.device == "ray" and [m["epoch"] for m in j.metrics] == [1, 2] for j in done)
    assert {r["run_id"] for r in workspace.list_runs()} == {f"job-{i}" for i in ids}


def test_ray_executor_runs_digits_distill(
    local_ray: Any, workspace: Workspace, tiny_digits_config: Any
) -> None:
    cfg = tiny_digits_config(epochs=2)
    job_id = jobs.submit(workspace, "distill", cfg)
    ex = jobs.RayExecutor(workspace)
    _drain(ex, workspace, [job_id], 180)
    ex.stop()
    job = jobs.get_job(workspace, job_id)
    assert job.state == "succeeded", job.error
    run = workspace.load_run(job.result)
    assert 50.0 < run["metrics"]["student"]["accuracy"] <= 100.0  # percent
    assert len(job.metrics) == 2
