"""Compare: finished runs side by side against their teacher, and where they disagree.

Everything here is read from the workspace (run records, stored evaluation logits, cached
teacher outputs), so it works for runs made by the app, the CLI or a job worker alike.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from lelp_studio import app_state, plots, sweeps
from lelp_studio import metrics as M
from lelp_studio.config import DatasetSpec, RunConfig

app_state.init_session()
ss = st.session_state
ERRORS = (*app_state.user_errors(), ValueError)
PER_RUN, SWEEP = "Per run", "Sweep view"

st.title("Compare")
ws = app_state.workspace()
runs = ws.list_runs()
if not runs:
    st.info(
        f"No runs yet in workspace `{ws.root}`: queue one on the **Distill** page (or run "
        "`lelp distill`)."
    )
    st.page_link("pages/4_distill.py", label="Open Distill", icon=":material/arrow_forward:")
    st.stop()

by_id = {r["run_id"]: r for r in runs}
label = app_state.run_labels(runs)
# The picked runs are kept across page visits, and runs finished since the last visit are
# added to them (first visit: the three newest), so a run just made is always on show.
seen = ss.get("cmp_seen_runs")
new_runs = [r["run_id"] for r in runs[:3]] if seen is None else [r for r in by_id if r not in seen]
ss["cmp_seen_runs"] = set(by_id)
picked_before = app_state.remember("cmp_runs", [])
ss["cmp_runs"] = [*new_runs, *(r for r in picked_before if r in by_id and r not in new_runs)]
by_sweep = app_state.sweep_runs(ws, set(by_id))
if by_sweep:
    ss.setdefault("cmp_sweep", "")
    chosen = st.selectbox(
        "Sweep",
        ["", *by_sweep],
        key="cmp_sweep",
        format_func=lambda s: "(pick runs by hand)" if not s else f"{s} ({len(by_sweep[s])} runs)",
        help="A sweep queued from `lelp jobs sweep` (or the Distill page): picking it selects "
        "all its finished runs below and opens the Sweep view.",
    )
    if chosen and ss.get("cmp_sweep_applied") != chosen:
        ss["cmp_runs"] = by_sweep[chosen]
        ss["cmp_sweep_applied"] = chosen
        ss["cmp_view"] = SWEEP  # a sweep is read aggregated first
picked = st.multiselect(
    "Runs",
    list(by_id),
    key="cmp_runs",
    format_func=lambda rid: f"{by_id[rid]['name']} ({rid})",
    help="Runs recorded in this workspace, newest first.",
)
app_state.remember("cmp_view", PER_RUN)
view = st.radio(
    "View",
    [PER_RUN, SWEEP],
    key="cmp_view",
    horizontal=True,
    help="Per run: one row and one curve per run. Sweep view: runs that differ only by seed "
    "folded into one row (mean ± std, n), ranked on the selection split, with a grid chart.",
)
if not picked:
    st.info("Pick at least one run above.")
    st.stop()
sel = [by_id[r] for r in picked]


# -- sweep view: runs that differ only by seed folded into one row -----------------------------
def _pick(label: str, choices: list[str], key: str, default: str, **kw: Any) -> str:
    """A selectbox over ``choices`` whose kept value is reset when it is no longer offered."""
    if ss.get(key) not in choices:
        ss[key] = default if default in choices else choices[0]
    return st.selectbox(label, choices, key=key, **kw)


def sweep_view(records: list[dict[str, Any]]) -> None:
    """The aggregated table, a grid chart, objectives side by side and the next run."""
    st.subheader("Sweep view")
    usable_recs = app_state.sweep_records(records)
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
    settings = app_state.sweep_setting_columns(df)
    st.dataframe(
        app_state.sweep_table(df),
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
    vary = app_state.sweep_varying(df)
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
            choices = app_state.setting_choices(df, c)
            with axes[2 + i]:
                chosen = _pick(
                    f"{c} fixed at",
                    list(choices),
                    f"cmp_sweep_fix_{c}",
                    app_state.setting_text(best[c]),
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
    label_best = app_state.sweep_row_label(best, settings)
    st.caption(
        f"Best on the selection split: **{label_best}**, {metric} "
        f"{app_state.mean_std(best['sel_mean'], best['sel_std'])} over {best['n']} seed(s)."
    )
    try:
        best_cfg = sweeps.best_config(ws, df)
    except (*ERRORS, KeyError) as err:
        st.info(f"The best run's config cannot be read back ({err}).")
        return
    n1, n2 = st.columns(2)
    with n1:
        app_state.remember("cmp_sweep_spec_name", "sweep-best")
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
            try:
                saved = ws.save_spec(spec_name.strip(), best_cfg)
            except ERRORS as err:
                st.error(str(err))
            else:
                st.success(
                    f"Saved spec `{saved}`: pick it as the **Pseudo-subclass setting** on the "
                    f"Distill page, or run `lelp distill --spec {saved}`."
                )
    with n2:
        app_state.remember("cmp_sweep_new_seeds", 3)
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

            try:
                cfg = RunConfig.model_validate({**best_cfg, "name": f"{label_best} (best)"})
                sweep_id, ids = jobs.submit_sweep(ws, cfg, {"train.seed": seeds})
                if os.environ.get("LELP_APP_AUTOSTART_WORKER", "1") != "0":
                    jobs.ensure_worker(ws)
            except ERRORS as err:
                st.error(str(err))
            else:
                st.success(
                    f"Queued sweep `{sweep_id}`: {len(ids)} job(s) #{ids[0]}–#{ids[-1]}, seeds "
                    f"{', '.join(map(str, seeds))}. The Distill page shows their progress; pick "
                    "the sweep above once they finish."
                )


if view == SWEEP:
    sweep_view(sel)
    st.stop()


def _fmt(v: Any) -> Any:
    return round(float(v), 4) if isinstance(v, (int, float)) and v is not None else v


rows = []
for r in sel:
    m, cfg = r["metrics"], r["config"]
    s, t = m.get("student", {}), m.get("teacher", {})
    tr, meth = m.get("student_train") or {}, m.get("method") or {}
    rows.append(
        {
            "run": label[r["run_id"]],
            "dataset": cfg.get("dataset", {}).get("source"),
            "objective": cfg.get("train", {}).get("objective"),
            "student": cfg.get("student", {}).get("kind"),
            "accuracy": _fmt(s.get("accuracy")),
            "selection acc.": _fmt((m.get("student_select") or {}).get("accuracy")),
            "teacher accuracy": _fmt(s.get("teacher_accuracy", t.get("accuracy"))),
            "agreement": _fmt(s.get("agreement")),
            "KL(teacher||student)": _fmt(s.get("kl")),
            "train accuracy": _fmt(tr.get("accuracy")),
            "train agreement": _fmt(tr.get("agreement")),
            "train KL(teacher||student)": _fmt(tr.get("kl")),
            "ECE": _fmt(s.get("ece")),
            "teacher ECE": _fmt(t.get("ece")),
            "worst latent acc.": _fmt(s.get("worst_subclass_accuracy")),
            "subclass teacher acc.": _fmt(meth.get("subclass_teacher_accuracy")),
            "retrieval overhead %": _fmt(meth.get("retrieval_overhead_pct")),
        }
    )
table = pd.DataFrame(rows)
# What every picked run shares goes in the caption, not in a column: the table is wide.
shared = {c: table[c].iloc[0] for c in ("dataset", "student") if table[c].nunique() == 1}
st.dataframe(
    table.drop(columns=list(shared)).dropna(axis=1, how="all"),
    hide_index=True,
    key="cmp_table",
    column_config={
        **{  # percentages read like the other pages (85.8, not 85.8333)
            c: st.column_config.NumberColumn(format="%.1f")
            for c in ("accuracy", "teacher accuracy", "train accuracy", "worst latent acc.")
        },
        "selection acc.": st.column_config.NumberColumn(
            format="%.1f",
            help="Accuracy on the selection split, the one every choice is made on (the test "
            "columns choose nothing).",
        ),
        "agreement": st.column_config.NumberColumn(
            format="%.1f",
            help="Share of evaluation examples where student and teacher predict the same class.",
        ),
        "train agreement": st.column_config.NumberColumn(
            format="%.1f",
            help="The same on the training split (Stanton et al. 2021: students often fail to "
            "match the teacher even there).",
        ),
        "subclass teacher acc.": st.column_config.NumberColumn(
            help="Subclass Distillation: accuracy of the retrained C x S teacher head on the "
            "evaluation split (the student learns from it, not from the original teacher)."
        ),
        "retrieval overhead %": st.column_config.NumberColumn(
            help="ReAugKD: time of the k-NN retrieval at inference as % of the student's "
            "forward pass on the evaluation split."
        ),
    },
)
st.caption(
    "".join(f"All picked runs: {c} **{v}**. " for c, v in shared.items())
    + "Fidelity (agreement, predictive KL) is measured on the evaluation AND training splits; "
    "KL, ECE and the reliability diagram compare class distributions at temperature 1 (a "
    "student trained at tau is mapped back). Columns with no value for any picked run are "
    "hidden."
)
for src in sorted({(r["metrics"].get("selection") or {}).get("source", "") for r in sel}):
    chose = (
        f"Selection split (dev) of these runs: {src}; it chose the per-epoch curves and any "
        "best setting. Accuracy, agreement, KL and ECE are on test, scored once per run."
        if src
        else "Some picked runs predate the selection split: their per-epoch curves were "
        "measured on test. Re-run them to compare on equal terms."
    )
    st.caption(chose)

with st.expander("Does distillation pay here?", expanded=True):
    app_state.show_compare_headroom(sel)

fid = {
    label[r["run_id"]]: {
        "test": r["metrics"].get("student", {}).get("agreement"),
        "train": (r["metrics"].get("student_train") or {}).get("agreement"),
    }
    for r in sel
}
with st.expander("Fidelity on test vs train, and method facts", expanded=False):
    st.plotly_chart(plots.fidelity_bars(fid, measure="agreement"), key="cmp_fidelity")
    facts = {
        label[r["run_id"]]: {k: _fmt(v) for k, v in (r["metrics"].get("method") or {}).items()}
        for r in sel
        if r["metrics"].get("method")
    }
    if facts:
        st.dataframe(pd.DataFrame.from_dict(facts, orient="index"), key="cmp_method_facts")
    else:
        st.caption("The picked runs use hard, kd or lelp: no method-specific facts.")

# -- cost beside accuracy -------------------------------------------------------------------
st.subheader("Cost on this machine")
app_state.show_compare_cost(sel, label)


@st.cache_resource(show_spinner=False, max_entries=16)
def _eval_data(ws_root: str, run_id: str) -> dict[str, Any] | None:
    """Evaluation labels, texts and teacher/student logits of one run (None if missing)."""
    r = ws.load_run(run_id)
    art = r.get("artifacts", {})
    if "eval_logits" not in art or "teacher_key" not in art:
        return None
    ds = app_state.dataset_from_json(
        app_state.spec_json(DatasetSpec.model_validate(r["config"]["dataset"]))
    )
    out = ws.load_teacher_outputs(art["teacher_key"])
    split = art.get("eval_split", "test")
    if out is None or split not in ds.splits:
        return None
    return {
        "ds": ds,
        "split": split,
        "y": np.asarray(ds.splits[split].y),
        "teacher": np.asarray(out.Z[split], dtype=np.float64),
        "student": np.asarray(ws.get_array(art["eval_logits"]), dtype=np.float64),
        "teacher_key": art["teacher_key"],
    }


try:
    data = {r["run_id"]: _eval_data(str(ws.root), r["run_id"]) for r in sel}
except ERRORS as err:
    st.error(f"{err}")
    st.stop()
usable = {k: v for k, v in data.items() if v is not None}
if not usable:
    st.warning(
        "The selected runs have no stored evaluation logits (or their teacher outputs are gone "
        "from this workspace): re-run them from the Distill page."
    )
    st.stop()

# A run has one colour on every plot; the teacher is drawn in near-black.
colors = {"teacher": "#222222", **plots.run_colors([label[r["run_id"]] for r in sel])}
g1, g2 = st.columns(2)
with g1:
    st.markdown("**Reliability diagram**")
    curves: dict[str, Any] = {}
    first = next(iter(usable.values()))
    curves["teacher"] = M.reliability_curve(M.softmax(first["teacher"]), first["y"])
    for rid, d in usable.items():
        curves[label[rid]] = M.reliability_curve(M.softmax(d["student"]), d["y"])
    st.plotly_chart(plots.reliability_diagram(curves, colors=colors), key="cmp_reliability")
with g2:
    st.markdown("**Learning curves**")
    hist = {label[r["run_id"]]: r["metrics"].get("history", []) for r in sel}
    if any(hist.values()):
        st.plotly_chart(plots.learning_curves(hist, colors=colors), key="cmp_curves")
    else:
        st.info("These runs recorded no training history.")

st.markdown("**Confusion matrices** (evaluation split)")
cm_cols = st.columns(min(len(usable) + 1, 4))
names = first["ds"].label_names
cm_cols[0].plotly_chart(
    plots.confusion_heatmap(
        M.confusion(first["teacher"].argmax(1), first["y"], len(names)), names, title="teacher"
    ),
    key="cmp_cm_teacher",
)
for i, (rid, d) in enumerate(usable.items(), start=1):
    cm_cols[i % len(cm_cols)].plotly_chart(
        plots.confusion_heatmap(
            M.confusion(d["student"].argmax(1), d["y"], len(d["ds"].label_names)),
            d["ds"].label_names,
            title=label[rid],
        ),
        key=f"cmp_cm_{i}",
    )

per = {}
for r in sel:
    for col, vals in (r["metrics"].get("student", {}).get("per_subclass") or {}).items():
        for v, acc in vals.items():
            per.setdefault((col, v), {})[label[r["run_id"]]] = round(float(acc), 1)
if per:
    st.markdown("**Accuracy per latent subclass** (%)")
    df = pd.DataFrame.from_dict(per, orient="index")
    df.index = [f"{c} = {v}" for c, v in df.index]
    st.dataframe(df, key="cmp_latent")

# -- disagreements ------------------------------------------------------------------------
st.divider()
st.subheader("Where student and teacher disagree")
ss.setdefault("cmp_focus", next(iter(usable)))
if ss["cmp_focus"] not in usable:
    ss["cmp_focus"] = next(iter(usable))
focus = st.selectbox(
    "Run",
    list(usable),
    key="cmp_focus",
    format_func=label.__getitem__,
    help="Which run's disagreements to list and map.",
)
d = usable[focus]
ds_f, split = d["ds"], d["split"]
sp, tp = d["student"].argmax(1), d["teacher"].argmax(1)
dis = np.flatnonzero(sp != tp)
texts = app_state.display_texts(ds_f, split)
lab = ds_f.label_names
st.caption(
    f"{len(dis):,} of {len(sp):,} {split} examples ({100 * len(dis) / max(1, len(sp)):.1f}%)"
)
if len(dis):
    st.dataframe(
        pd.DataFrame(
            {
                "row": dis,
                "label": [lab[int(d["y"][i])] for i in dis],
                "teacher": [lab[int(tp[i])] for i in dis],
                "student": [lab[int(sp[i])] for i in dis],
                "text": [texts[i] for i in dis],
            }
        ),
        hide_index=True,
        height=240,
        key="cmp_dis",
    )
    try:
        xy, titles = app_state.map_xy(d["teacher_key"], split, "pca", 50_000)
        colour = np.where(sp != tp, "disagrees", "agrees").astype(object)
        st.plotly_chart(
            plots.embedding_scatter(
                xy,
                colour,
                hover_text=texts,
                labels=[lab[int(v)] for v in d["y"]],
                color_title="student vs teacher",
                axis_titles=titles,
            ),
            key="cmp_map",
            theme=None,
        )
    except ERRORS as err:
        st.info(f"The map is not available for this run ({err}).")

# -- ReAugKD retrieval ----------------------------------------------------------------------
st.divider()
st.subheader("ReAugKD: what a test example retrieves")
reaug = [
    rid
    for rid in picked
    if rid in usable and by_id[rid]["config"].get("train", {}).get("objective") == "reaugkd"
]
if not reaug:
    st.info(
        "None of the picked runs uses ReAugKD: pick one above, or queue one on the **Distill** "
        "page with the objective `reaugkd`, to see the knowledge-base entries it retrieves."
    )
else:
    ss.setdefault("cmp_reaug_run", reaug[0])
    if ss["cmp_reaug_run"] not in reaug:
        ss["cmp_reaug_run"] = reaug[0]
    ss.setdefault("cmp_reaug_row", 0)
    ss.setdefault("cmp_reaug_search", "")
    r1, r2, r3 = st.columns([2, 1, 2])
    rid = r1.selectbox(
        "ReAugKD run",
        reaug,
        key="cmp_reaug_run",
        format_func=label.__getitem__,
        help="A picked run trained with the reaugkd objective.",
    )
    dr = usable[rid]
    split_r, lab_r = dr["split"], dr["ds"].label_names
    texts_r = app_state.display_texts(dr["ds"], split_r)
    n_r = len(dr["y"])
    ss["cmp_reaug_row"] = min(int(ss["cmp_reaug_row"]), n_r - 1)
    row = int(
        r2.number_input(
            f"{split_r} example (row)",
            0,
            n_r - 1,
            key="cmp_reaug_row",
            help=f"Row number in the {split_r} split (0 to {n_r - 1}).",
        )
    )
    query = r3.text_input(
        "…or search its texts",
        key="cmp_reaug_search",
        help="Case-insensitive substring; pick one of the matches to inspect it.",
    ).strip()
    if query:
        matches = [i for i, t in enumerate(texts_r) if query.lower() in t.lower()][:200]
        if matches:
            row = int(
                r3.selectbox(
                    f"{len(matches)} match(es)" + (" (first 200)" if len(matches) == 200 else ""),
                    matches,
                    key="cmp_reaug_match",
                    format_func=lambda i: f"{i}: {plots.truncate(texts_r[i], 70)}",
                    help="The example shown below; clear the search to use the row number.",
                )
            )
        else:
            r3.caption(f"No {split_r} text contains {query!r}; showing row {row}.")
    k = int(by_id[rid]["config"].get("train", {}).get("reaugkd", {}).get("k", 8))
    p_t = M.softmax(dr["teacher"][row : row + 1])[0]
    p_s = M.softmax(dr["student"][row : row + 1])[0]
    st.markdown(
        f"**{split_r} row {row}** · label **{lab_r[int(dr['y'][row])]}** · teacher "
        f"**{lab_r[int(p_t.argmax())]}** ({p_t.max():.2f}) · student (with retrieval) "
        f"**{lab_r[int(p_s.argmax())]}** ({p_s.max():.2f})\n\n> {plots.truncate(texts_r[row], 400)}"
    )
    run_r = by_id[rid]
    real = app_state.has_reaugkd_state(run_r)
    if real:
        st.caption(
            f"**The run's own retrieval.** The k = {k} knowledge-base entries (training rows) "
            "this example retrieves: cosine similarity of the student's query normalize(B h_s) "
            "to the keys normalize(P h_t), with the learned projection P and query map B saved "
            "with the run, and the teacher's soft labels softmax(z) that the knowledge base "
            "holds for them."
        )
    else:
        st.caption(
            "**Fallback view.** This run was saved before ReAugKD's learned teacher projection "
            "and student query map were kept, so the retrieval the student actually made cannot "
            f"be replayed (re-run it to see that). Shown instead: the k = {k} training rows (the "
            "knowledge base's entries) whose TEACHER embeddings are nearest to this example's "
            "by cosine similarity, with the teacher's soft labels softmax(z) that the knowledge "
            "base holds for them."
        )
    try:
        if real:
            ind, sim = app_state.reaugkd_neighbours(run_r, dr["ds"], split_r, [row], k)
        else:
            ind, sim = app_state.teacher_neighbours(dr["teacher_key"], split_r, [row], k)
        z_train = app_state.Z32(dr["teacher_key"], "train")
    except (*ERRORS, FileNotFoundError) as err:
        st.info(f"The neighbours are not available for this run ({err}).")
    else:
        ind, sim = ind[0], sim[0]
        probs = M.softmax(z_train[ind])
        train_texts = app_state.display_texts(dr["ds"], "train")
        y_train = np.asarray(dr["ds"].splits["train"].y)
        nb = pd.DataFrame(
            {
                "rank": np.arange(1, len(ind) + 1),
                "train row": ind,
                "similarity": np.round(sim, 4),
                "label": [lab_r[int(y_train[i])] for i in ind],
                "teacher label": [lab_r[int(c)] for c in probs.argmax(1)],
                **{f"p({c})": np.round(probs[:, j], 3) for j, c in enumerate(lab_r)},
                "text": [train_texts[i] for i in ind],
            }
        )
        st.dataframe(nb, hide_index=True, key="cmp_reaug_neighbours")
        st.plotly_chart(
            plots.neighbour_probs(probs, lab_r, sim, ind, texts=[train_texts[i] for i in ind]),
            key="cmp_reaug_bars",
        )

# -- download -----------------------------------------------------------------------------
st.divider()
st.subheader("Download the student")


@st.cache_data(show_spinner=False, max_entries=8)
def _zip_dir(path: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(Path(path).rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(path))
    return buf.getvalue()


sdir = ws.artifact_path(by_id[focus], "student_dir")
missing = app_state.student_files_missing(sdir)
if not missing:
    st.download_button(
        f"Download {by_id[focus]['name']} (safetensors + config)",
        _zip_dir(sdir),
        file_name=f"{focus}-student.zip",
        mime="application/zip",
        key="cmp_download",
        help="The student's safetensors weights and its JSON config; load with "
        "lelp_studio.students.load_student.",
    )
else:  # never a zip without the weights
    st.warning(
        f"No download: {missing}. Re-run it from the Distill page (or `lelp distill`); "
        "`lelp doctor` lists every run in this state."
    )

# -- export: a folder other tools load (lelp_studio.export, the same as `lelp export`) -------------
st.subheader("Export the student")
kind = by_id[focus]["config"].get("student", {}).get("kind")
formats = ["onnx", "hf"] if kind == "transformer" else ["onnx"]
if ss.get("cmp_export_format") not in formats:
    ss["cmp_export_format"] = formats[0]
e1, e2 = st.columns([1, 3])
fmt = e1.selectbox(
    "Format",
    formats,
    key="cmp_export_format",
    help="onnx: any student, class logits out, dynamic batch (and sequence) axes. hf: a "
    "transformers folder (config, safetensors, tokenizer), for transformer students only.",
)
# The folder follows the run and format until the user types their own.
default_dir = str(ws.root / "exports" / f"{focus}-{fmt}")
if ss.get("cmp_export_dir") in (None, "", ss.get("cmp_export_dir_default")):
    ss["cmp_export_dir"] = default_dir
ss["cmp_export_dir_default"] = default_dir
out_dir = e2.text_input(
    "Folder",
    key="cmp_export_dir",
    help="Where the export is written (with a README.md model card); it must not exist or be "
    "empty unless you tick Replace.",
).strip()
force = st.checkbox(
    "Replace a non-empty folder", key="cmp_export_force", help="Same as `lelp export --force`."
)
if st.button(
    f"Export {by_id[focus]['name']} as {fmt}",
    key="cmp_export",
    help=f"Same as `lelp export {focus} --format {fmt} --out <folder>`.",
):
    try:
        if not out_dir:
            raise ValueError("no export folder given; type the folder to write the export to")
        from lelp_studio.export import export_run

        where = export_run(ws, by_id[focus], fmt, Path(out_dir).expanduser(), force)
    except (*ERRORS, ImportError, OSError) as err:
        st.error(str(err))
    else:
        st.success(f"Exported to `{where}` (model card: `{Path(where) / 'README.md'}`).")
