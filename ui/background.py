"""Long computations off the rerun path, shown as one progress bar with a stage and a clock.

Why: a UMAP of a large set takes minutes and umap-learn reports nothing while it fits. Run
inline, it kept the page's previous content (stale, greyed) under stacked spinners, and any
click restarted it. Here the work runs in a thread of the app process, keyed by what it
computes, so every session and every rerun asking for the same key shares one computation.
A page calls :func:`result_or_wait`: a result ready within a short grace is returned at once
(quick work never flashes a bar); otherwise the page draws one bar, stating the stage the
library last reported and the seconds since the work began (a fragment refreshes it each
second), and stops, which clears what the previous run drew below. When the work ends the
fragment reruns the page, which now gets the result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from .state import Progress

#: Seconds a page waits inline before it shows the bar and lets the work go on in the background.
GRACE_S = 3.0
#: Finished results kept for pages that have not collected them yet (each may hold a fitted
#: UMAP); the oldest go first.
KEEP_FINISHED = 8


@dataclass
class Task:
    """One computation: its result (``future``) and the last stage it reported."""

    key: str
    label: str
    future: Future[Any] = field(default_factory=Future)
    started: float = field(default_factory=time.monotonic)
    stage: str = "starting"
    done: int = 0
    total: int = 1

    def report(self, done: int, total: int, stage: str) -> None:
        """The library's ``progress(done, total, stage)`` callback (called from the worker)."""
        self.done, self.total, self.stage = done, max(1, total), stage

    def fraction(self) -> float:
        return min(1.0, max(0.0, self.done / self.total))

    def line(self) -> str:
        step = f"step {min(self.done + 1, self.total)} of {self.total}"
        elapsed = time.monotonic() - self.started
        return f"{self.label}: {self.stage} · {step} · {elapsed:,.0f} s"


class _Tasks:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tasks: dict[str, Task] = {}


@st.cache_resource(show_spinner=False)
def _registry() -> _Tasks:
    """The process's tasks, shared by every session."""
    return _Tasks()


def _run(task: Task, fn: Callable[[Progress], Any]) -> None:
    try:
        task.future.set_result(fn(task.report))
    except BaseException as err:  # noqa: BLE001 - handed to the page that collects it
        task.future.set_exception(err)


def submit(key: str, label: str, fn: Callable[[Progress], Any]) -> Task:
    """The task computing ``key``: the running or finished one, else ``fn(progress)`` started
    in a daemon thread (it must not call Streamlit; a server stop does not wait for it)."""
    reg = _registry()
    with reg.lock:
        task = reg.tasks.get(key)
        if task is not None:
            return task
        task = reg.tasks[key] = Task(key, label)
        finished = [k for k, t in reg.tasks.items() if t.future.done()]
        for k in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del reg.tasks[k]
    threading.Thread(target=_run, args=(task, fn), name=f"lelp {label}", daemon=True).start()
    return task


def forget(key: str) -> None:
    """Drop a collected (or failed) task, so a later request computes it afresh."""
    reg = _registry()
    with reg.lock:
        reg.tasks.pop(key, None)


def running(key: str) -> Task | None:
    task = _registry().tasks.get(key)
    return task if task is not None and not task.future.done() else None


def result_or_wait(task: Task, grace_s: float | None = None) -> Any:
    """``task``'s result if it is ready within ``grace_s`` seconds (default ``GRACE_S``); else
    draw its progress bar and stop the page (it reruns by itself when the task ends). A failed
    task is forgotten and its error raised, for the page to report."""
    try:
        return task.future.result(timeout=GRACE_S if grace_s is None else grace_s)
    except BaseException as err:
        if not isinstance(err, TimeoutError) or task.future.done():
            forget(task.key)
            raise
    _progress(task.key)
    st.stop()


@st.fragment(run_every=1.0)
def _progress(key: str) -> None:
    task = running(key)
    if task is None:  # finished (or failed): the page collects it
        st.rerun()
    st.progress(task.fraction(), text=task.line())
    st.caption(
        "Computed in the background: the page shows it when it is ready, and other pages stay "
        "usable meanwhile."
    )
