"""Compare: finished runs side by side against their teacher, and where they disagree.

Everything here is read from the workspace (run records, stored evaluation logits, cached
teacher outputs), so it works for runs made by the app, the CLI or a job worker alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

import ui
from lelp_studio import analysis, jobs, plots
from lelp_studio import metrics as M
from lelp_studio.config import DatasetSpec
from lelp_studio.errors import user_errors
from lelp_studio.maps import FIT_SAMPLE

ui.init_session()
ss = st.session_state
ERRORS = (*user_errors(), ValueError)
PER_RUN, SWEEP = "Per run", "Sweep view"

st.title("Compare")
ws = ui.workspace()
runs = ws.list_runs()
if not runs:
    st.info(
        f"No runs yet in workspace `{ws.root}`: queue one on the **Distill** page (or run "
        "`lelp distill`)."
    )
    st.page_link("pages/4_distill.py", label="Open Distill", icon=":material/arrow_forward:")
    st.stop()

by_id = {r["run_id"]: r for r in runs}
# The selector names each run among all of them; legends and tables among those picked.
listed = analysis.run_labels(runs)
unfinished = {r["run_id"]: analysis.run_unfinished(r) for r in runs}
# First visit (or another dataset or teacher): the newest finished runs of the current
# dataset and teacher; later visits keep the pick and add runs finished since.
context = ui.spec_json(ui.dataset_spec()) + ui.spec_json(ui.teacher_spec())
picked_before = ui.remember("cmp_runs", [])
ss["cmp_runs"] = analysis.default_pick(
    runs,
    ui.dataset_spec(),
    ui.teacher_spec(),
    picked_before if ss.get("cmp_context", context) == context else None,
    ss.get("cmp_seen_runs"),
)
ss["cmp_seen_runs"], ss["cmp_context"] = set(by_id), context
by_sweep = analysis.sweep_runs(jobs.sweep_run_ids(ws), set(by_id))
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
    format_func=lambda rid: listed[rid] + (f" · {unfinished[rid]}" if unfinished[rid] else ""),
    help="Runs recorded in this workspace, newest first. First shown: the newest finished "
    "runs of the current dataset and teacher; a cancelled or partial run says so.",
)
ui.remember("cmp_view", PER_RUN)
view = st.radio(
    "View",
    [PER_RUN, SWEEP],
    key="cmp_view",
    horizontal=True,
    help="Per run: one row and one curve per run. Sweep view: runs that differ only by seed "
    "folded into one row (mean ± std, n), ranked on the selection split, with a grid chart.",
)
if not picked:
    none = not analysis.default_pick(runs, ui.dataset_spec(), ui.teacher_spec())
    st.info(
        "Pick at least one run above."
        + (f" No run on {ui.dataset_spec().source} with this teacher has finished." if none else "")
    )
    st.stop()
sel = [by_id[r] for r in picked]
label = analysis.run_labels(sel)
for rid in picked:
    if unfinished[rid]:
        st.warning(f"{label[rid]} is not a finished run ({unfinished[rid]}).")


if view == SWEEP:
    ui.show_sweep_view(sel)
    st.stop()


table = analysis.run_table(sel, label)
# What every picked run shares goes in the caption, not in a column; the rest is split in
# two tables (main scores here, the training split and method facts below), each narrow
# enough for a 1,400 px screen: all 15 columns in one scrolled sideways.
shared = analysis.shared_columns(table, ("dataset", "student", "data", "teacher accuracy"))
main, more = analysis.split_run_table(table.drop(columns=list(shared)).dropna(axis=1, how="all"))
PERCENT = {"accuracy", "selection acc.", "teacher accuracy", "agreement", "worst latent acc."}
PERCENT |= {"train accuracy", "train agreement"}  # read like the other pages: 85.8
HELP = {
    "data": "The rows the student trained on: labeled training rows, plus the unlabeled "
    "transfer rows the teacher labelled (distillation objectives only; hard labels use the "
    "labeled rows alone).",
    "selection acc.": "Accuracy on the selection split, the one every choice is made on (the "
    "test columns choose nothing).",
    "agreement": "Share of evaluation examples where student and teacher predict the same class.",
    "KL": "KL(teacher || student) on the evaluation split, at temperature 1.",
    "ECE": "Expected calibration error of the student on the evaluation split.",
    "worst latent acc.": "Accuracy on the latent subclass the student does worst on.",
    "train agreement": "Agreement on the training split (Stanton et al. 2021: students often "
    "fail to match the teacher even there).",
    "train KL": "KL(teacher || student) on the training split.",
    "subclass teacher acc.": "Subclass Distillation: accuracy of the retrained C x S teacher "
    "head on the evaluation split (the student learns from it, not from the original teacher).",
    "retrieval overhead %": "ReAugKD: time of the k-NN retrieval at inference as % of the "
    "student's forward pass on the evaluation split.",
}


def _column_config(columns: list[str]) -> dict[str, Any]:
    """Narrow columns: the run's name medium, every score small, with its help."""
    cfg: dict[str, Any] = {"run": st.column_config.TextColumn(width="medium")}
    for c in columns:
        if c in ("dataset", "objective", "student", "data"):
            cfg[c] = st.column_config.TextColumn(width="small", help=HELP.get(c))
        elif c != "run":
            fmt = "%.1f" if c in PERCENT else None
            cfg[c] = st.column_config.NumberColumn(format=fmt, help=HELP.get(c), width="small")
    return cfg


st.dataframe(
    main, hide_index=True, key="cmp_table", column_config=_column_config(list(main.columns))
)
st.caption(
    "".join(f"All picked runs: {c} **{v}**. " for c, v in shared.items())
    + "Fidelity (agreement, predictive KL) is measured on the evaluation AND training splits "
    "(the training split's under *More scores* below); KL, ECE and the reliability diagram "
    "compare class distributions at temperature 1 (a student trained at tau is mapped back). "
    "Columns with no value for any picked run are hidden."
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
    ui.show_compare_headroom(sel)

fid = {
    label[r["run_id"]]: {
        "test": r["metrics"].get("student", {}).get("agreement"),
        "train": (r["metrics"].get("student_train") or {}).get("agreement"),
    }
    for r in sel
}
with st.expander("More scores: the training split, fidelity, method facts", expanded=False):
    if len(more):
        st.dataframe(
            more,
            hide_index=True,
            key="cmp_table_more",
            column_config=_column_config(list(more.columns)),
        )
    st.plotly_chart(plots.fidelity_bars(fid, measure="agreement"), key="cmp_fidelity")
    facts = analysis.method_facts_table(sel, label)
    if len(facts):
        st.dataframe(facts, key="cmp_method_facts")
    else:
        st.caption("The picked runs use hard, kd or lelp: no method-specific facts.")

# -- cost beside accuracy -------------------------------------------------------------------
st.subheader("Cost on this machine")
ui.show_compare_cost(sel, label)


@st.cache_resource(show_spinner=False, max_entries=16)
def _eval_data(ws_root: str, run_id: str) -> dict[str, Any] | None:
    """Evaluation labels, texts and teacher/student logits of one run (None if missing)."""
    r = ws.load_run(run_id)
    art = r.get("artifacts", {})
    if "eval_logits" not in art or "teacher_key" not in art:
        return None
    ds = ui.dataset_from_json(ui.spec_json(DatasetSpec.model_validate(r["config"]["dataset"])))
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

per = analysis.latent_accuracy_table(sel, label)
if len(per):
    st.markdown("**Accuracy per latent subclass** (%)")
    st.dataframe(per, key="cmp_latent")

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
texts = analysis.display_texts(ds_f, split)
lab = ds_f.label_names
st.caption(
    f"{len(dis):,} of {len(sp):,} {split} examples ({100 * len(dis) / max(1, len(sp)):.1f}%)"
)
if len(dis):
    st.dataframe(
        analysis.disagreement_table(d["y"], tp, sp, lab, texts),
        hide_index=True,
        height=240,
        key="cmp_dis",
    )
    try:
        xy, titles = ui.map_xy(d["teacher_key"], split, "pca", FIT_SAMPLE)
        colour = np.where(sp != tp, "disagrees", "agrees").astype(object)
        st.plotly_chart(
            plots.embedding_map(
                xy,
                colour,
                d["y"],
                texts=texts,
                label_names=lab,
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
    ui.show_reaugkd(reaug, usable, by_id, label)

# -- download and export -----------------------------------------------------------------
st.divider()
ui.show_student_files(ws, by_id[focus], label[focus])
