"""Embedding map: a 2-D view of the teacher's embedding space, coloured by any field.

The projection is fitted once on the teacher's train embeddings (UMAP's coordinates are stored
in the workspace) and other splits are placed with its ``transform``, so every view shares
coordinates. The map draws up to 200,000 WebGL points (a class-stratified sample of larger
splits; PCA and LELP coordinates are computed for those rows only); lasso or box
selections read row ids from ``customdata`` and can be saved as a manual pseudo-subclass.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import ui
from lelp_studio import analysis, pipeline, plots
from lelp_studio.errors import user_errors
from lelp_studio.maps import FIT_SAMPLE
from lelp_studio.metrics import softmax
from lelp_studio.subclasses import assign_from_coordinates

ui.init_session()
ss = st.session_state
ERRORS = user_errors()

st.title("Embedding map")
ds, out, key = ui.require_teacher()
ws = ui.workspace()

splits = list(out.Z)
ui.remember("map_method", "pca")
ui.remember("map_split", "train")
ui.remember("map_color", "class")
ui.remember("map_sample", plots.MAP_POINTS)
ui.remember("map_lelp_class", 0)

runs = [
    r
    for r in ws.list_runs()
    if r.get("artifacts", {}).get("dataset_fp") in pipeline.dataset_fps(ds)
    and r.get("artifacts", {}).get("eval_logits")
]
color_options = ["class", "teacher prediction", "teacher confidence", "pseudo-subclass (LELP)"]
color_options += [f"latent: {c}" for c in ds.latent_columns]
run_label = analysis.run_labels(runs)
color_options += [f"disagreement: {run_label[r['run_id']]}" for r in runs]
if ss["map_color"] not in color_options:
    ss["map_color"] = "class"

c1, c2, c3, c4 = st.columns([1, 1, 2, 1])
method = c1.selectbox(
    "Projection",
    ["pca", "umap", "lelp"],
    key="map_method",
    format_func={"pca": "PCA", "umap": "UMAP", "lelp": "LELP directions"}.get,
    help="PCA is instant. UMAP shows local structure but its first call compiles for ~30 s "
    f"and large sets take about a minute (it is fitted on {FIT_SAMPLE:,} points and places "
    "the others). LELP directions: the two "
    "leading directions of one class's subspace (set on the Subspaces page).",
)
split = c2.selectbox(
    "Split",
    splits,
    key="map_split",
    help="Which rows to draw. The projection is always fitted on train; other splits are "
    "placed with the same transform.",
)
color_by = c3.selectbox(
    "Colour by",
    color_options,
    key="map_color",
    help="Class, the teacher's prediction or confidence, the LELP pseudo-subclass (as set on "
    "the Subspaces page), a latent column, or where a student disagrees with the teacher "
    "(evaluation split only).",
)
sample = c4.number_input(
    "Max points",
    min_value=200,
    max_value=500_000,
    step=50_000,
    key="map_sample",
    help="The map draws a class-stratified sample of at most this many points (WebGL; the "
    "hover shows texts up to 20,000 points, the selection table always does). The projection "
    f"does not depend on it: it is fitted on {FIT_SAMPLE:,} points.",
)
lelp_class = 0
if method == "lelp":
    lelp_class = st.selectbox(
        "Class whose subspace to show",
        list(range(ds.n_classes)),
        format_func=lambda c: ds.label_names[c],
        key="map_lelp_class",
        help="The map's axes are this class's first two LELP directions.",
    )

# -- LELP model (for the 'lelp' projection and pseudo-subclass colours) ------------------------
lelp_model = None
lelp_args: tuple | None = None
if method == "lelp" or color_by.startswith("pseudo-subclass"):
    try:
        lelp_args = ui.subclass_fit_args(ui.subclass_spec(), key, ds.n_classes)
        lelp_model = ui.fitted_subclasser(*lelp_args)
    except (*ERRORS, ValueError) as err:
        st.error(f"LELP could not be fitted: {err}. Adjust it on the **Subspaces** page.")
        st.stop()

try:
    with st.spinner(
        "Computing the projection (UMAP: about a minute on large sets; cached afterwards)…"
    ):
        xy, axis_titles = ui.map_xy(
            key,
            split,
            method,
            FIT_SAMPLE,
            0,
            int(lelp_class),
            lelp_model=lelp_model,
            lelp_id=analysis.hash_key(lelp_args) if lelp_args else "",
        )
except (*ERRORS, ValueError) as err:
    st.error(f"The projection failed: {err}. Try PCA.")
    st.stop()

names = ds.label_names
if method == "lelp":  # the class's name, not its index
    axis_titles = tuple(t.replace(f"class {lelp_class}", names[lelp_class], 1) for t in axis_titles)

# -- colours ------------------------------------------------------------------------------
sp = ds.splits[split]
Z = np.asarray(out.Z[split])
probs = softmax(Z)
name_of = np.asarray(names, dtype=object)  # indexed by class ids: no per-row Python
y_names = name_of[sp.y]
continuous = False
if color_by == "class":
    color, title = y_names, "class"
elif color_by == "teacher prediction":
    color, title = name_of[Z.argmax(1)], "teacher pred."
elif color_by == "teacher confidence":
    color, title, continuous = probs.max(1), "confidence", True
elif color_by.startswith("pseudo-subclass"):
    assert lelp_args is not None
    coords = ui.lelp_coordinates(lelp_args, split)
    yc = ui.split_labels(ds, out, split, ui.subclass_spec().class_source)
    assign = assign_from_coordinates(coords, yc)
    sub_names = analysis.subclass_names(names, [z.shape[1] for z in coords])
    color, title = np.asarray(sub_names, dtype=object)[assign], "pseudo-subclass"
elif color_by.startswith("latent: "):
    col = color_by.removeprefix("latent: ")
    color, title = np.asarray(sp.latent[col], dtype=object), col
else:
    run = runs[[f"disagreement: {run_label[r['run_id']]}" for r in runs].index(color_by)]
    ev = run["artifacts"].get("eval_split", "test")
    if split != ev:
        st.info(f"This run was evaluated on the '{ev}' split: switch *Split* to '{ev}'.")
        st.stop()
    s_logits = np.asarray(ws.get_array(run["artifacts"]["eval_logits"]))
    dis = s_logits.argmax(1) != Z.argmax(1)
    color = np.where(dis, "disagrees", "agrees").astype(object)
    title = "student vs teacher"

texts = analysis.display_texts(ds, split)
fig = plots.embedding_map(
    xy,
    color,
    sp.y,
    max_points=int(sample),
    texts=texts,
    label_names=names,
    color_title=title,
    continuous=continuous,
    axis_titles=axis_titles,
)
shown = min(int(sample), len(sp))
st.caption(
    f"Showing {shown:,} of {len(sp):,} {split} points"
    + (" (stratified sample)" if shown < len(sp) else "")
    + ("" if continuous else f" · {len(fig.data)} colour groups")
    + " · drag a lasso or box to select."
)
event = st.plotly_chart(
    fig, key="map_chart", on_select="rerun", selection_mode=("lasso", "box"), theme=None
)

# -- selection ----------------------------------------------------------------------------
sel = plots.selected_row_ids(event)
st.subheader(f"Selected examples ({len(sel):,})")
if len(sel) == 0:
    st.info("Nothing selected: draw a lasso or a box on the map to list examples here.")
    st.stop()
table = pd.DataFrame(
    {
        "row": sel,
        "label": y_names[sel],
        "teacher": [names[int(v)] for v in Z[sel].argmax(1)],
        "confidence": probs[sel].max(1).round(3),
        "text": [texts[i] for i in sel],
    }
)
st.dataframe(table, hide_index=True, height=260)
g1, g2, g3 = st.columns([2, 1, 1])
group_name = g1.text_input(
    "Group name",
    key="map_group_name",
    placeholder="e.g. electronics complaints",
    help="Saved as a manual pseudo-subclass of the dataset's training rows; compare it with "
    "LELP on the Subspaces page and train on it with subclasses.method 'manual'.",
)
if g2.button(
    "Save as manual group",
    key="map_save_group",
    disabled=split != "train",
    help="Only training rows can form a group (switch Split to train).",
):
    if not group_name.strip():
        st.error("Give the group a name first.")
    else:
        try:
            saved = ws.save_manual_group(ds.fingerprint(), group_name.strip(), sel)
            st.success(f"Saved group '{saved}' with {len(sel):,} rows.")
        except ERRORS as err:
            st.error(str(err))
if g3.button(
    "Inspect first row",
    key="map_inspect",
    disabled=split != "train",
    help="Open this example in the target inspector of the Subspaces page.",
):
    ss["inspect_row"] = int(sel[0])
    st.switch_page("pages/3_subspaces.py")
groups = pipeline.manual_groups(ws, ds)
if groups:
    st.caption("Saved groups: " + ", ".join(f"{k} ({len(v):,} rows)" for k, v in groups.items()))
