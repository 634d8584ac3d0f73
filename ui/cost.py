"""Compare's Cost section: measured on request, cached in the workspace."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

from lelp_studio import cost, plots
from lelp_studio.analysis.cost_view import cost_records
from lelp_studio.config import DatasetSpec
from lelp_studio.errors import user_errors

from .cache import dataset_from_json
from .state import spec_json, workspace


def measure_costs(runs: Sequence[Mapping[str, Any]], *, force: bool = False) -> list[str]:
    """Measure (and cache) the cost of each run's teacher and student; returns one line per
    run that could not be measured, naming the run and why."""

    ws = workspace()
    problems: list[str] = []
    for r in runs:
        try:
            ds = dataset_from_json(spec_json(DatasetSpec.model_validate(r["config"]["dataset"])))
            cost.run_cost(ws, r, ds, force=force)
        except (*user_errors(), cost.CostError, OSError) as err:
            problems.append(f"{r.get('name') or r['run_id']}: {err}")
    return problems


def show_compare_cost(runs: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> None:
    """Compare's Cost section: parameters, size and latency of the teacher and each picked
    run, measured on request and cached, with accuracy against latency and its Pareto front.

    Why on request: timing a transformer teacher takes seconds, and a page must not block
    on it each visit; once measured, the numbers come from the workspace."""

    ws = workspace()
    recs, acc = cost_records(ws, runs, labels)
    missing = [r for r in runs if not cost.is_cached(ws, r)]
    if missing:
        st.caption(
            f"{len(missing)} of {len(runs)} picked run(s) not measured yet: timing runs each "
            "model's forward pass on this machine (a few seconds per transformer), once; the "
            "numbers are then kept in the workspace."
        )
    again = not missing and st.button(
        "Measure again",
        key="cmp_cost_remeasure",
        help="Time every model again (e.g. on another machine or after a driver update).",
    )
    if (
        missing
        and st.button(
            "Measure cost",
            key="cmp_cost_measure",
            type="primary",
            help="Parameters, weights size and latency at batch 1 and 64, CPU (and CUDA when "
            "present), on rows of each run's test split.",
        )
    ) or again:
        with st.spinner("Timing the teacher and the students…"):
            problems = measure_costs(runs if again else missing, force=bool(again))
        # Drawn again from the cache, so the buttons and captions above say what now holds.
        st.session_state["cmp_cost_problems"] = problems
        st.rerun()
    for p in st.session_state.pop("cmp_cost_problems", []):
        st.warning(p)
    if not any(recs.values()):
        return
    st.dataframe(
        cost.cost_table(recs),
        hide_index=True,
        key="cmp_cost_table",
        column_config={
            "parameters": st.column_config.NumberColumn(format="localized"),
            "size MB": st.column_config.NumberColumn(
                format="%.3f", help="Bytes of the weights files on disk (tokenizer excluded)."
            ),
            "ms (batch 1)": st.column_config.NumberColumn(
                format="%.3f", help="Median forward pass, one example at a time."
            ),
            "ms (batch 64)": st.column_config.NumberColumn(
                format="%.3f", help="Median forward pass of a batch of 64 examples."
            ),
        },
    )
    measured = [r for r in recs.values() if r and r.get("latency_ms")]
    options = [
        (dev, b)
        for dev in dict.fromkeys(d for r in measured for d in r["latency_ms"])
        for b in ("1", "64")
    ]
    if options:
        names = {f"{cost.device_name(d)}, batch {b}": (d, b) for d, b in options}
        c1, _ = st.columns([1, 2])
        ss = st.session_state
        if ss.get("cmp_cost_latency") not in names:
            ss["cmp_cost_latency"] = next(iter(names))
        pick = c1.selectbox(
            "Latency", list(names), key="cmp_cost_latency", help="Which timing the chart uses."
        )
        dev, b = names[pick]
        models = list(recs)
        lat = [((recs[m] or {}).get("latency_ms") or {}).get(dev, {}).get(b) for m in models]
        colors = plots.run_colors([labels[r["run_id"]] for r in runs])
        st.plotly_chart(
            plots.cost_pareto(
                models,
                lat,
                [acc.get(m) for m in models],
                teacher=[m for m in models if m.startswith("teacher")],
                colors=colors,
                params=[(recs[m] or {}).get("params") for m in models],
                latency_title=f"latency (ms, {pick}; log scale)",
            ),
            key="cmp_cost_chart",
        )
    notes = sorted({f"{m}: {r['note']}" for m, r in recs.items() if r and r.get("note")})
    machines = sorted({r["machine"] for r in measured if r.get("machine")})
    st.caption(
        "Median forward pass after warm-up on the same rows of each run's test split "
        "(tokenisation not included); the dashed line joins the Pareto front (no model is both "
        "faster and more accurate), models off it are dimmed, the teacher is near-black. "
        + (f"Measured on {', '.join(machines)}. " if machines else "")
        + " ".join(f"{n}." for n in notes)
    )
