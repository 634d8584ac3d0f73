"""The teacher's fine-tune on the Data page: queue it as a background job, watch its card,
see its expected time, and use a fine-tuned teacher once it is cached.

Why here and not in the page: the page shows it in three places (the fine-tune mode's panel,
the offer under "Does distillation pay here?", the ready notice), all from the same calls.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import streamlit as st

from lelp_studio import headroom
from lelp_studio.config import TeacherSpec
from lelp_studio.types import Dataset

from .cache import dataset_from_json, teacher_cache_key
from .jobs import show_job_card, start_worker
from .state import dataset_spec, spec_json, workspace

#: Session key of the line the last queue press left (shown on the next run).
_SAID = "data_finetune_said"


@st.cache_data(show_spinner=False, max_entries=8)
def _timing(ds_json: str, t_json: str) -> tuple[float, float]:
    from lelp_studio.teachers import time_finetune_steps

    return time_finetune_steps(dataset_from_json(ds_json), TeacherSpec.model_validate_json(t_json))


def finetune_estimate(
    ds: Dataset, t: TeacherSpec, embed_rows_per_s: float | None = None
) -> headroom.FinetuneEstimate:
    """The expected time of fine-tuning ``t`` on ``ds`` here: two steps are timed once per
    session and setting (batch size, length, precision); the embedding speed is the frozen
    teacher's measured one when given, else that of a timed pass over a sample."""
    from lelp_studio.teachers import pick_device

    timed = t.model_copy(update={"mode": "finetune", "epochs": 1, "lr": TeacherSpec().lr})
    with st.spinner("Timing two fine-tuning steps on this machine (once per session)…"):
        per_step, forward_rate = _timing(spec_json(dataset_spec()), spec_json(timed))
    rows = int(np.sum(np.asarray(ds.splits["train"].y) >= 0))  # unlabelled rows are not fitted
    embed_rows = sum(len(s) for s in ds.splits.values())
    return headroom.estimate_finetune(
        rows, t.epochs, t.batch_size, per_step, embed_rows, embed_rows_per_s or forward_rate,
        device=str(pick_device()),
    )  # fmt: skip


def _frozen_rate(t: TeacherSpec) -> float | None:
    """The embedding speed the frozen MiniLM teacher measured on this dataset, when it is
    cached: the very pass a fine-tune ends with, so the best estimate of its cost."""
    ws = workspace()
    frozen = t.model_copy(update={"mode": "frozen"})
    key = teacher_cache_key(str(ws.root), spec_json(dataset_spec()), spec_json(frozen))
    for entry in ws.list_teacher_outputs():
        if entry["key"] == key and entry["meta"].get("embed_rows_per_s"):
            return float(entry["meta"]["embed_rows_per_s"])
    return None


def queue_finetune(t: TeacherSpec) -> None:
    """Queue (or resume) the fine-tune of ``t`` on the current dataset and start a worker;
    the line saying what happened is kept for the next run. Used as a button callback, so it
    may also switch the page's teacher to the fine-tuned one before the widgets are drawn."""
    from lelp_studio import jobs

    ss = st.session_state
    try:
        done = jobs.submit_finetune(workspace(), dataset_spec(), t)
    except ValueError as err:  # JobError, ConfigError: one line naming the fix
        ss[_SAID] = ("error", str(err))
        return
    start_worker(workspace())
    ss[_SAID] = ("success", done.message())
    ss["data_teacher_mode"] = "finetune"
    ss["data_teacher_epochs"], ss["data_teacher_lr"] = t.epochs, t.lr
    ss["data_teacher_batch"] = t.batch_size


def _say() -> None:
    said = st.session_state.pop(_SAID, None)
    if said is not None:
        (st.success if said[0] == "success" else st.error)(said[1])


@st.fragment(run_every=2)
def _finetune_jobs(cfg_json: str, key: str) -> None:
    """The fine-tune jobs of this very setting, re-read every 2 s; once the outputs are in
    the cache the whole page reruns and shows them."""
    from lelp_studio import jobs

    ws = workspace()
    mine = [
        j
        for j in jobs.list_jobs(ws)
        if j.kind == "teacher-finetune" and json.dumps(j.config, sort_keys=True) == cfg_json
    ][:3]
    if any(j.state == "queued" for j in mine):
        start_worker(ws)
    for job in mine:
        show_job_card(ws, job, "data_ft")
    if any(j.state == "succeeded" for j in mine) and ws.load_teacher_outputs(key) is not None:
        st.rerun()


def show_finetune_panel(ds: Dataset, t: TeacherSpec) -> None:
    """Fine-tune mode without cached outputs: what it does, its expected time, the button
    that queues it and the cards of its jobs."""
    from lelp_studio import jobs

    ws = workspace()
    cfg = jobs.finetune_config(dataset_spec(), t)
    key = teacher_cache_key(str(ws.root), spec_json(dataset_spec()), spec_json(t))
    st.markdown(
        "This teacher is **MiniLM fine-tuned end to end** on the labelled training rows. It "
        "runs as a background job: it reports every step, stops within seconds when "
        "cancelled, and a retry resumes from its last checkpoint. Its outputs are then "
        "cached for this dataset, and every page and run uses them like any teacher."
    )
    st.caption(f"Expected time: {finetune_estimate(ds, t, _frozen_rate(t)).text()}.")
    st.button(
        "Fine-tune the teacher (background job)",
        type="primary",
        key="data_finetune",
        on_click=queue_finetune,
        args=(t,),
        help="Queues a teacher-finetune job (as `lelp finetune` does); a cancelled one with "
        "these settings is resumed instead of restarted.",
    )
    _say()
    _finetune_jobs(spec_json(cfg), key)


def show_finetune_offer(ds: Dataset, frozen: TeacherSpec, meta: dict[str, Any]) -> None:
    """Under a verdict that the frozen teacher leaves no room: the fine-tune, one click away,
    with its expected time (the frozen teacher's measured embedding speed included)."""
    tuned = frozen.model_copy(update={"mode": "finetune"})
    rate = meta.get("embed_rows_per_s")
    est = finetune_estimate(ds, tuned, float(rate) if rate else None)
    st.info(
        f"A fine-tuned teacher is usually several points stronger. Fine-tuning MiniLM here "
        f"({tuned.epochs} epochs) takes {est.text()}."
    )
    st.button(
        "Fine-tune the teacher (background job)",
        key="data_offer_finetune",
        on_click=queue_finetune,
        args=(tuned,),
        help="Queues the fine-tune and switches this page to the fine-tuned teacher, where "
        "its progress shows.",
    )


def _use(t_json: str) -> None:
    t = TeacherSpec.model_validate_json(t_json)
    ss = st.session_state
    ss["data_teacher_mode"] = "finetune"
    ss["data_teacher_epochs"], ss["data_teacher_lr"] = t.epochs, t.lr
    ss["data_teacher_batch"], ss["data_teacher_precision"] = t.batch_size, t.precision


def page_can_set(t: TeacherSpec) -> bool:
    """Whether the Data page's widgets can express ``t`` (other fields at their defaults)."""
    fields = ("kind", "mode", "epochs", "lr", "batch_size", "precision")
    return t == TeacherSpec(**{f: getattr(t, f) for f in fields})


def show_finetuned_ready(ds: Dataset, current: TeacherSpec) -> None:
    """The fine-tuned teachers already cached for this dataset, each with a button that
    makes it the teacher (a cache hit: nothing is recomputed)."""
    from lelp_studio import jobs

    ready = jobs.finetuned_teachers(workspace(), ds.fingerprint())
    for i, (t, _) in enumerate(ready[:3]):
        if t == current:
            continue
        what = f"{t.epochs} epochs, lr {t.lr:g}, batch {t.batch_size}, precision {t.precision}"
        st.success(f"A fine-tuned teacher is ready for this dataset ({what}).")
        if page_can_set(t):
            st.button(
                "Use the fine-tuned teacher", key=f"data_use_finetuned_{i}", on_click=_use,
                args=(spec_json(t),),
            )  # fmt: skip
        else:
            st.caption(f"Made with settings this page does not set ({spec_json(t)}): name it "
                       "in a run config to use it.")  # fmt: skip
