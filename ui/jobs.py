"""A background job's card (Distill and Data pages): title, facts, a full-width bar, cancel,
retry, the note a resumed job carries and its learning curves."""

from __future__ import annotations

import os
from typing import Any

import streamlit as st

from lelp_studio import plots
from lelp_studio.store import Workspace


def autostart() -> bool:
    """Whether the app starts a local worker for queued jobs (``LELP_APP_AUTOSTART_WORKER=0``
    stops it: tests, or a worker run by hand with ``lelp worker``)."""
    return os.environ.get("LELP_APP_AUTOSTART_WORKER", "1") != "0"


def start_worker(ws: Workspace) -> bool:
    """Start a local worker if none runs (and autostart is on); True when one was started.
    A setting the worker refuses (a bad LELP_CPU_JOBS) is said in one line, not a traceback."""
    from lelp_studio import jobs

    try:
        return autostart() and bool(jobs.ensure_worker(ws))
    except jobs.JobError as err:
        st.error(str(err))
        return False


def show_job_card(ws: Workspace, job: Any, prefix: str) -> None:
    """One job's card; widget keys carry the page's ``prefix``. A note (a damaged checkpoint
    the job restarted or fell back from) is shown, never passed over."""
    from lelp_studio import jobs

    card = jobs.job_card(job, jobs.job_run(ws, job))
    with st.container(border=True):
        h1, h2, h3 = st.columns([4, 1, 1])
        h1.markdown(f"**{card.title}** · `{card.state}`")
        if card.facts:
            h1.caption(" · ".join(card.facts))
        # Below the buttons' row, so the bar spans the card's full width.
        st.progress(card.fraction, text=card.bar_text)
        if job.state in ("queued", "running") and h2.button(
            "Cancel", key=f"{prefix}_cancel_{job.id}", help="Stop this job (within seconds)."
        ):
            jobs.request_cancel(ws, job.id)
            st.rerun(scope="fragment")
        if job.state in ("failed", "cancelled") and h3.button(
            "Retry",
            key=f"{prefix}_retry_{job.id}",
            help="Re-queue; resumes from its checkpoint.",
        ):
            jobs.retry(ws, job.id)
            start_worker(ws)
            st.rerun(scope="fragment")
        if job.progress.get("note"):
            st.info(f"Note: {job.progress['note']}")
        if job.error:
            st.error(job.error)
        if job.metrics:
            with st.expander("Loss and accuracy", expanded=job.state == "running"):
                st.plotly_chart(
                    plots.learning_curves({job.name: job.metrics}),
                    key=f"{prefix}_curve_{job.id}_{len(job.metrics)}",
                )
