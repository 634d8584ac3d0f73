"""Soak: 50 short jobs queued at once while the app keeps reading the catalogue.

Bounded (well under 2 minutes): a real ``lelp worker --once`` process runs every job in its own
process, two at a time, while the Distill page is re-rendered with AppTest in this process.
Every job must end in a final state with its result recorded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lelp_studio import jobs
from lelp_studio.store import Workspace

pytestmark = pytest.mark.usefixtures("sleep_jobs")

N_JOBS = 50
FINAL = {"succeeded", "failed", "cancelled"}
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(180)
def test_fifty_jobs_while_the_app_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace(tmp_path / "ws")
    monkeypatch.setenv("LELP_WORKSPACE", str(ws.root))
    monkeypatch.setenv("LELP_APP_DEMO", "digits-bin")
    monkeypatch.setenv("LELP_APP_AUTOSTART_WORKER", "0")
    ids = [
        jobs.submit(ws, "sleep", {"steps": 4, "steps_per_epoch": 2, "delay": 0.01, "i": i})
        for i in range(N_JOBS)
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lelp_studio.jobs",
            "worker",
            "--workspace",
            str(ws.root),
            "--max-cpu-jobs",
            "2",
            "--once",
            "--poll",
            "0.1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    renders = 0
    deadline = time.monotonic() + 150
    try:
        while worker.poll() is None and time.monotonic() < deadline:
            at = AppTest.from_file(str(ROOT / "pages" / "4_distill.py"), default_timeout=60)
            at.run()
            assert not at.exception, at.exception
            renders += 1
    finally:
        if worker.poll() is None:
            worker.kill()
        out = worker.communicate()[0].decode(errors="replace")
    assert worker.returncode == 0, out[-2000:]
    states = {j.id: j.state for j in jobs.list_jobs(ws)}
    assert set(states) == set(ids)
    assert all(s in FINAL for s in states.values()), states
    assert all(s == "succeeded" for s in states.values()), states
    runs = {r["run_id"] for r in ws.list_runs()}
    assert runs == {f"job-{i}" for i in ids}  # every result present
    assert renders >= 2  # the app really was reading while the jobs ran
