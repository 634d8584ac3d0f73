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
    if pipeline.same_data(r, ds) and r.get("artifacts", {}).get("eval_logits")
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
show_transfer = False
if split == "train" and "transfer" in out.Z:
    ui.remember("map_show_transfer", True)
    show_transfer = st.toggle(
        f"Show the {len(ds.splits['transfer']):,} transfer rows",
        key="map_show_transfer",
        help="Unlabeled rows, drawn as open symbols and coloured by the teacher's class "
        "(legend: '(unlabeled)'); they are placed with the projection fitted on train.",
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

try:  # UMAP on a large set runs in the background: one bar with its stage, nothing stale
    xy, axis_titles = ui.map_xy(
        key,
        split,
        method,
        FIT_SAMPLE,
        0,
        int(lelp_class),
        lelp_model=lelp_model,
        lelp_id=analysis.hash_key(lelp_args) if lelp_args else "",
        in_background=True,
    )
except (*ERRORS, ValueError) as err:
    st.error(f"The projection failed: {err}. Try PCA.")
    st.stop()

names = ds.label_names
if method == "lelp":  # the class's name, not its index
    axis_titles = tuple(t.replace(f"class {lelp_class}", names[lelp_class], 1) for t in axis_titles)

# -- colours ------------------------------------------------------------------------------


def colours(split: str) -> tuple[np.ndarray, str, bool]:
    """``(colour per row, legend title, continuous)`` of ``split``'s rows; a transfer row's
    class is the teacher's (its "(unlabeled)" mark is the symbol, not the colour)."""
    sp = ds.splits[split]
    Z = np.asarray(out.Z[split])
    if color_by == "class":
        plain = analysis.display_classes(ds, split, Z)
        return (
            np.array(
                [str(v).removesuffix(f" {analysis.UNLABELED_MARK}") for v in plain], dtype=object
            ),
            "class",
            False,
        )
    if color_by == "teacher prediction":
        return np.array([names[int(v)] for v in Z.argmax(1)], dtype=object), "teacher pred.", False
    if color_by == "teacher confidence":
        return softmax(Z).max(1), "confidence", True
    if color_by.startswith("pseudo-subclass"):
        assert lelp_args is not None
        coords = ui.lelp_coordinates(lelp_args, split)
        yc = ui.split_labels(ds, out, split, ui.subclass_spec().class_source)
        assign = assign_from_coordinates(coords, yc)
        sub_names = analysis.subclass_names(names, [z.shape[1] for z in coords])
        return np.array([sub_names[a] for a in assign], dtype=object), "pseudo-subclass", False
    if color_by.startswith("latent: "):
        col = color_by.removeprefix("latent: ")
        return np.asarray(sp.latent[col]).astype(str).astype(object), col, False
    run = runs[[f"disagreement: {run_label[r['run_id']]}" for r in runs].index(color_by)]
    ev = run["artifacts"].get("eval_split", "test")
    if split != ev:
        st.info(f"This run was evaluated on the '{ev}' split: switch *Split* to '{ev}'.")
        st.stop()
    s_logits = np.asarray(ws.get_array(run["artifacts"]["eval_logits"]))
    dis = s_logits.argmax(1) != Z.argmax(1)
    return np.where(dis, "disagrees", "agrees").astype(object), "student vs teacher", False


# The rows drawn: the split's, then (toggle on train) the transfer rows, whose row ids
# continue after the training rows'.
shown = [split, "transfer"] if show_transfer else [split]
if show_transfer:
    xy_t, _ = ui.map_xy(
        key, "transfer", method, FIT_SAMPLE, 0, int(lelp_class),
        lelp_model=lelp_model, lelp_id=analysis.hash_key(lelp_args) if lelp_args else "",
    )  # fmt: skip
    xy = np.concatenate(  # linear maps give coordinates on demand: asked for every row here
        [np.asarray(a[np.arange(len(a))], dtype=np.float32) for a in (xy, xy_t)]
    )
parts = [colours(s) for s in shown]
color, title, continuous = np.concatenate([c for c, _, _ in parts]), parts[0][1], parts[0][2]
Z = np.concatenate([np.asarray(out.Z[s]) for s in shown])
probs = softmax(Z)
y_names = np.concatenate([analysis.display_classes(ds, s, out.Z[s]) for s in shown])
y_all = np.concatenate([np.asarray(ds.splits[s].y) for s in shown])
unlabeled = y_all < 0
texts = [t for s in shown for t in analysis.display_texts(ds, s)]
n_split = len(ds.splits[split])

fig = plots.embedding_map(
    xy,
    color,
    y_all,
    max_points=int(sample),
    texts=texts,
    label_names=names,
    color_title=title,
    continuous=continuous,
    axis_titles=axis_titles,
    unlabeled=unlabeled,
)
n_rows = len(y_all)
n_drawn = min(int(sample), n_rows)
st.caption(
    f"Showing {n_drawn:,} of {n_rows:,} {' and '.join(shown)} points"
    + (" (stratified sample)" if n_drawn < n_rows else "")
    + ("" if continuous else f" · {len(fig.data)} colour groups")
    + (
        " · open symbols: unlabeled transfer rows, coloured by the teacher's class"
        if unlabeled.any()
        else ""
    )
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
    help="Only labeled training rows can form a group (switch Split to train; selected "
    "transfer rows are left out).",
):
    rows = sel[sel < n_split]  # labeled training rows only: groups are keyed by them
    if not group_name.strip():
        st.error("Give the group a name first.")
    elif not len(rows):
        st.error("The selection holds no labeled training row: select some on the train split.")
    else:
        try:
            saved = ws.save_manual_group(ds.labeled().fingerprint(), group_name.strip(), rows)
            left = len(sel) - len(rows)
            st.success(
                f"Saved group '{saved}' with {len(rows):,} rows"
                + (f" ({left:,} transfer rows left out)." if left else ".")
            )
        except ERRORS as err:
            st.error(str(err))
if g3.button(
    "Inspect first row",
    key="map_inspect",
    disabled=split != "train",
    help="Open this example in the target inspector of the Subspaces page.",
):
    if sel[0] >= n_split:
        st.error("The first selected row is a transfer row; the inspector shows training rows.")
        st.stop()
    ss["inspect_row"] = int(sel[0])
    st.switch_page("pages/3_subspaces.py")
groups = pipeline.manual_groups(ws, ds)
if groups:
    st.caption("Saved groups: " + ", ".join(f"{k} ({len(v):,} rows)" for k, v in groups.items()))
