"""The Compare page's sweep view: runs that differ only by seed folded into one row, a grid
chart, objectives side by side, and the next run (saved as a spec or queued with new seeds)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from lelp_studio import analysis, plots, sweeps
from lelp_studio.config import RunConfig
from lelp_studio.errors import user_errors

from .state import remember, workspace

_ERRORS = (*user_errors(), ValueError)


def _report(action: Callable[[], str]) -> None:
    """Run a button's action: its message as a success, or the user error it raised."""
    try:
        message = action()
    except _ERRORS as err:
        st.error(str(err))
    else:
        st.success(message)


def _pick(label: str, choices: list[str], key: str, default: str, **kw: Any) -> str:
    """A selectbox over ``choices`` whose kept value is reset when it is no longer offered."""
    ss = st.session_state
    if ss.get(key) not in choices:
        ss[key] = default if default in choices else choices[0]
    return st.selectbox(label, choices, key=key, **kw)


def show_sweep_view(records: list[dict[str, Any]]) -> None:
    """The aggregated table, a grid chart, objectives side by side and the next run."""
    ss = st.session_state
    ws = workspace()
    st.subheader("Sweep view")
    usable_recs = analysis.sweep_records(records)
    if not usable_recs:
        st.info(
            "None of the picked runs records a full run config, so there is nothing to fold: "
            "pick runs made by the Distill page, `lelp distill` or a sweep."
        )
        return
    ss.setdefault("cmp_sweep_metric", "accuracy")
    metric = st.columns([1, 3])[0].selectbox(
        "Score",
        ["accuracy", "agreement"],
        key="cmp_sweep_metric",
        help="accuracy: against the labels; agreement: share of examples where the student "
        "predicts the teacher's class. Both measured on the selection split to rank.",
    )
    df = sweeps.aggregate(usable_recs, metric=metric)
    settings = analysis.sweep_setting_columns(df)
    st.dataframe(
        analysis.sweep_table(df),
        hide_index=True,
        key="cmp_sweep_table",
        column_config={
            "n": st.column_config.NumberColumn(help="Runs folded into this row (one per seed)."),
            "missing seeds": st.column_config.TextColumn(
                help="Seeds other rows ran and this one lacks."
            ),
            "selection (ranks)": st.column_config.TextColumn(
                help=f"Mean ± std over seeds of {metric} on the selection split (dev)."
            ),
            "test (shown only)": st.column_config.TextColumn(
                help=f"Mean ± std over seeds of {metric} on test: shown, never used to rank."
            ),
        },
    )
    left_out = len(records) - len(usable_recs)
    st.caption(
        f"{len(usable_recs)} runs folded into {len(df)} settings: runs that differ only by "
        "seed are one row (n runs, mean ± std). Ranked on the selection split (dev); the "
        "test score is shown beside it and never ranks."
        + (f" {left_out} picked run(s) without a full config are left out." if left_out else "")
    )
    scored = df.dropna(subset=["sel_mean"])
    best = scored.iloc[0] if not scored.empty else df.iloc[0]
    vary = analysis.sweep_varying(df)
    if len(vary) >= 2:
        st.markdown(f"**Selection-split {metric} over two settings** (std and n on hover)")
        axes = st.columns(2 + len(vary) - 2)
        with axes[0]:
            x = _pick("x axis", vary, "cmp_sweep_x", vary[0], help="Setting across the map.")
        ys = [v for v in vary if v != x]
        with axes[1]:
            y = _pick("y axis", ys, "cmp_sweep_y", ys[0], help="Setting down the map.")
        fixed = {}
        for i, c in enumerate(v for v in vary if v not in (x, y)):
            choices = analysis.setting_choices(df, c)
            with axes[2 + i]:
                chosen = _pick(
                    f"{c} fixed at",
                    list(choices),
                    f"cmp_sweep_fix_{c}",
                    analysis.setting_text(best[c]),
                    help=f"The heat map shows the runs with this {c} (default: the best "
                    "setting's).",
                )
            fixed[c] = choices[chosen]
        g = sweeps.grid(df, x, y, fixed)
        if not np.isfinite(np.asarray(g["mean"], dtype=float)).any():
            st.info(f"No scored run has {x} and {y} at these fixed values; change them.")
        else:
            st.plotly_chart(plots.sweep_heatmap(g, metric=metric), key="cmp_sweep_heatmap")
    elif vary and vary != ["objective"]:
        st.markdown(f"**Selection-split {metric} against {vary[0]}** (mean ± std over seeds)")
        st.plotly_chart(plots.sweep_line(df, vary[0], metric=metric), key="cmp_sweep_line")
    if "objective" in vary and not scored.empty:
        st.markdown("**Objectives side by side** (each one's best setting, KD at each tau)")
        st.plotly_chart(
            plots.objective_bars(sweeps.objective_rows(scored), metric=metric),
            key="cmp_sweep_objectives",
        )
        verdict = sweeps.lelp_vs_kd(df)
        if verdict:
            st.markdown(f"**Verdict:** {verdict}")

    st.markdown("**From here to the next run**")
    if scored.empty:
        st.info("No picked run has a selection-split score (they predate it): re-run them.")
        return
    label_best = analysis.sweep_row_label(best, settings)
    st.caption(
        f"Best on the selection split: **{label_best}**, {metric} "
        f"{analysis.mean_std(best['sel_mean'], best['sel_std'])} over {best['n']} seed(s)."
    )
    try:
        best_cfg = sweeps.best_config(ws, df)
    except (*_ERRORS, KeyError) as err:
        st.info(f"The best run's config cannot be read back ({err}).")
        return
    n1, n2 = st.columns(2)
    with n1:
        remember("cmp_sweep_spec_name", "sweep-best")
        spec_name = st.text_input(
            "Spec name",
            key="cmp_sweep_spec_name",
            help="Letters, digits, spaces or . _ - + = , @",
        )
        if st.button(
            "Save best setting as spec",
            key="cmp_sweep_save",
            help="Its pseudo-subclass setting and train config, saved in the workspace.",
        ):

            def save() -> str:
                saved = ws.save_spec(spec_name.strip(), best_cfg)
                return (
                    f"Saved spec `{saved}`: pick it as the **Pseudo-subclass setting** on the "
                    f"Distill page, or run `lelp distill --spec {saved}`."
                )

            _report(save)
    with n2:
        remember("cmp_sweep_new_seeds", 3)
        k = int(
            st.number_input(
                "New seeds",
                1,
                20,
                key="cmp_sweep_new_seeds",
                help="How many seeds no picked run used yet.",
            )
        )
        seeds = sweeps.new_seeds({s for ss_ in df["seeds"] for s in ss_}, k)
        if st.button(
            "Queue the best setting with new seeds",
            key="cmp_sweep_requeue",
            help=f"One job per new seed ({', '.join(map(str, seeds))}), as one sweep.",
        ):
            from lelp_studio import jobs

            def queue() -> str:
                cfg = RunConfig.model_validate({**best_cfg, "name": f"{label_best} (best)"})
                sweep_id, ids = jobs.submit_sweep(ws, cfg, {"train.seed": seeds})
                if os.environ.get("LELP_APP_AUTOSTART_WORKER", "1") != "0":
                    jobs.ensure_worker(ws)
                return (
                    f"Queued sweep `{sweep_id}`: {len(ids)} job(s) #{ids[0]}–#{ids[-1]}, seeds "
                    f"{', '.join(map(str, seeds))}. The Distill page shows their progress; pick "
                    "the sweep above once they finish."
                )

            _report(queue)
