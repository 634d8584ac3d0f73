"""Subspaces: shape LELP pseudo-subclasses by eye and save the setting for distillation.

Speed: the LELP fit and its coordinates are cached per (teacher key, S, directions,
null_space, rotate, seed, standardize, class source); moving beta or tau only recomputes the
targets from the cached coordinates (lelp_studio.subclasses.targets_from_coordinates). The
compared baselines are computed once per key, the heavy ones in the background
(ui/baselines.py). Whatever computes shows its spinner or status in ``busy``, right under the
title, not where its result is drawn far below.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

import ui
from lelp_studio import analysis, plots
from lelp_studio.config import RunConfig, SubclassSpec, TrainSpec, dump_setting
from lelp_studio.errors import user_errors
from lelp_studio.maps import FIT_SAMPLE
from lelp_studio.metrics import softmax
from lelp_studio.subclasses import target_entropy

ui.init_session()
ss = st.session_state
ERRORS = (*user_errors(), ValueError)
BETAS = [0.05, 0.1, 0.2, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0]
TAUS = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0]
COMPARE = ui.baselines.LABELS

# per-dataset choices start from their defaults on another dataset
ui.forget_on_dataset_change(
    "sub", ["sub_compare", "sub_latent", "sub_search", "sub_hit"], ["sub_dirs_", "sub_S_"]
)
st.title("Subspaces")
busy = st.container()  # spinners and background status: the top of the page
with busy:
    ds, out, key = ui.require_teacher()
ws = ui.workspace()
names = ds.label_names
C = ds.n_classes

with st.expander("What am I looking at? (null space, rotation, beta, tau)"):
    st.markdown(
        "- **Pseudo-subclasses.** For each class, LELP finds principal directions of the "
        "teacher's embeddings of that class. Each direction is one pseudo-subclass; the "
        "student learns a C x S target instead of C class probabilities.\n"
        "- **Null space.** Directions along the rows of the teacher's last layer W already "
        "reach the student through its class probabilities, so LELP first removes them "
        "(projects onto the null space of W) and looks elsewhere.\n"
        "- **Rotation.** PCA variances are very unequal, so one subclass would dominate; a "
        "seeded random rotation inside the chosen subspace equalises them in expectation.\n"
        "- **beta** (subclass temperature): small beta makes each example belong sharply to "
        "one direction; large beta spreads it over all S.\n"
        "- **tau** (teacher temperature): softens the teacher's class probabilities that "
        "each class's subclasses share.\n"
        "- **Standardize**: each coordinate is divided by its spread within the class, which "
        "makes beta mean the same thing for every class and teacher."
    )

committed = ui.subclass_spec()
S0 = committed.n_subclasses if isinstance(committed.n_subclasses, int) else 4
ui.remember("sub_S", int(S0))
ui.remember("sub_per_class", isinstance(committed.n_subclasses, list))
ui.remember("sub_beta", min(BETAS, key=lambda b: abs(b - committed.beta)))
ui.remember("sub_tau", min(TAUS, key=lambda t: abs(t - float(ss["tau"]))))
ui.remember("sub_null", committed.null_space)
ui.remember("sub_rotate", committed.rotate)
ui.remember("sub_standardize", committed.standardize)
ui.remember("sub_seed", committed.seed)
ui.remember("sub_class_source", committed.class_source)

ctrl, main = st.columns([1, 3], gap="medium")
with ctrl:
    st.subheader("Setting")
    S = st.number_input(
        "S (pseudo-subclasses per class)",
        min_value=1,
        max_value=64,
        key="sub_S",
        help="Number of directions (= pseudo-subclasses) kept per class. The paper uses 4-8.",
    )
    per_class = st.checkbox(
        "Set S per class", key="sub_per_class", help="Give each class its own S."
    )
    sizes: list[int] = []
    for c in range(C):
        if per_class:
            ui.remember(f"sub_S_{c}", int(S))
            sizes.append(
                int(
                    st.number_input(
                        f"S for {names[c]}",
                        min_value=1,
                        max_value=64,
                        key=f"sub_S_{c}",
                        help=f"Pseudo-subclasses of class '{names[c]}'.",
                    )
                )
            )
        else:
            sizes.append(int(S))
    beta = st.select_slider(
        "beta (subclass temperature)",
        BETAS,
        key="sub_beta",
        help="Low: sharp, one direction per example. High: spread over all directions.",
    )
    tau = st.select_slider(
        "tau (teacher temperature)",
        TAUS,
        key="sub_tau",
        help="Temperature of the teacher's class probabilities in the targets.",
    )
    null_space = st.checkbox(
        "Null-space projection",
        key="sub_null",
        help="Remove the directions the teacher's head W already uses before the PCA.",
    )
    rotate = st.checkbox(
        "Random rotation",
        key="sub_rotate",
        help="Rotate the chosen directions (seeded) to equalise their variances.",
    )
    seed = st.number_input(
        "Seed", min_value=0, step=1, key="sub_seed", help="Seed of the random rotation."
    )
    standardize = st.checkbox(
        "Standardize coordinates",
        key="sub_standardize",
        help="Divide each coordinate by its standard deviation within the class, so beta is "
        "scale-free.",
    )
    class_source = st.radio(
        "Class sets from",
        ["label", "teacher"],
        key="sub_class_source",
        horizontal=True,
        help="label: ground truth. teacher: the teacher's prediction (for unlabeled data).",
    )
    max_dir = min(32, out.dim)
    directions: list[list[int] | None] = []
    with st.expander("Directions per class (default: top S)"):
        for c in range(C):
            picked = st.multiselect(
                f"{names[c]}",
                list(range(max_dir)),
                key=f"sub_dirs_{c}",
                help="Principal components (0-based) spanning this class's subspace; leave "
                "empty for the top S. Picking k directions sets S for this class to k.",
            )
            directions.append(sorted(picked) or None)
any_dirs = any(d is not None for d in directions)

try:
    spec = SubclassSpec(
        method="lelp",
        n_subclasses=sizes if per_class else int(S),
        directions=[d or list(range(s)) for d, s in zip(directions, sizes, strict=True)]
        if any_dirs
        else None,
        beta=float(beta),
        null_space=null_space,
        rotate=rotate,
        standardize=standardize,
        class_source=class_source,
        seed=int(seed),
    )
    ss["subclass_spec"] = spec.model_dump(mode="json")
    ss["tau"] = float(tau)
    args = ui.subclass_fit_args(spec, key, C)
    with busy, st.spinner("Computing the pseudo-subclasses…", show_time=True):
        model = ui.fitted_subclasser(*args)
        coords = ui.lelp_coordinates(args, "train")
        targets = ui.preview_targets(args, float(tau), float(beta))
        assign = ui.train_assign(args)
except ERRORS as err:
    main.error(f"{err}")
    main.info("Lower S or pick fewer directions: a class cannot have more than its rank.")
    st.stop()

Z = np.asarray(out.Z["train"])
y = ui.split_labels(ds, out, "train", class_source)
sizes_fit = [z.shape[1] for z in coords]
entropy = target_entropy(targets)
sub_names = analysis.subclass_names(names, sizes_fit)
texts = analysis.display_texts(ds, "train")

with main:
    st.caption(
        "S per class: "
        + ", ".join(f"{n} = {s}" for n, s in zip(names, sizes_fit, strict=True))
        + f" · {sum(sizes_fit)} pseudo-subclasses · {len(y):,} training rows"
    )
    st.markdown("**Explained variance per class**")
    spec_cols = st.columns(min(C, 3))
    for c in range(C):
        chosen = (spec.directions[c] if spec.directions else None) or list(range(sizes_fit[c]))
        raw = getattr(model, "explained_variance_ratio_raw_", None)
        spec_cols[c % len(spec_cols)].plotly_chart(
            plots.spectrum_plot(
                model.explained_variance_ratio_[c],
                None if raw is None else raw[c],
                names[c],
                chosen=chosen,
                projected=spec.null_space,
            ),
            key=f"sub_spectrum_{c}",
        )

    with busy:
        xy, titles = ui.map_xy(key, "train", "pca", FIT_SAMPLE)
    fig = plots.embedding_map(
        xy,
        np.asarray(sub_names, dtype=object)[assign],
        ds.splits["train"].y,
        max_points=50_000,  # a preview redrawn on every change; the Embedding map draws more
        texts=texts,
        label_names=names,
        color_title="pseudo-subclass",
        axis_titles=titles,
        highlight=np.array([int(ss["inspect_row"])]),
    )
    st.markdown("**Map coloured by pseudo-subclass** (PCA of the teacher's embeddings)")
    st.plotly_chart(fig, key="sub_map", theme=None)

    table = analysis.subclass_table(sub_names, assign, entropy, coords, y, texts)
    tiny = analysis.tiny_subclasses(table)
    G = len(sub_names)
    if tiny:
        st.warning(
            f"{tiny} of {G} pseudo-subclasses hold fewer than {analysis.TINY_SUBCLASS} "
            "training rows: too few for the student to learn them apart. Lower S, or raise "
            "beta so their targets blend with their neighbours'."
        )
    st.markdown("**Pseudo-subclasses**")
    st.dataframe(table, hide_index=True, key="sub_table")

# -- recovery of latent columns + comparison with baselines -----------------------------------
st.divider()
st.subheader("Compare with other pseudo-subclasses")
latent_col = None
if ds.latent_columns:
    ui.remember("sub_latent", ds.latent_columns[0])
    latent_col = st.selectbox(
        "Latent column to score against",
        ds.latent_columns,
        key="sub_latent",
        help="A known grouping; ARI/NMI (within each class) say how well each method recovers it.",
    )
else:
    st.caption("This dataset has no latent column, so ARI/NMI and the oracle are not available.")
ui.remember("sub_compare", list(ui.baselines.DEFAULT))
options = [m for m in COMPARE if m != "oracle" or latent_col]
compare = st.multiselect(
    "Methods to compare",
    options,
    key="sub_compare",
    format_func=COMPARE.get,
    help="Clustering baselines (hard pseudo-subclasses) fitted on the same embeddings and S, "
    "each once per setting. UMAP + k-means (and agglomerative above "
    f"{ui.baselines.HEAVY_ROWS:,} training rows) compute in the background: the page stays "
    "usable and shows them when ready. Manual groups come from lasso selections saved on the "
    "Embedding map.",
)
groups = ws.list_manual_groups(ds.labeled().fingerprint())  # groups of labeled rows
if "manual" in compare and not groups:
    st.info("No manual groups yet: lasso some points on the **Embedding map** and save them.")
with busy, st.spinner("Fitting the baselines to compare…", show_time=True):
    runs = ui.compare_baselines(
        [m for m in compare if m != "manual" or groups],
        key=key,
        sizes=sizes_fit,
        seed=int(seed),
        class_source=class_source,
        latent_col=latent_col,
        label_names=names,
        group_names=list(groups),
    )
with busy:
    ui.show_background(runs, sizes_fit)
methods = {"LELP": (assign, sub_names)}
for r in runs:
    if r.error is not None:
        st.error(f"{r.label}: {r.error}")
    elif r.pending:
        st.caption(f"{r.label}: computing in the background; it appears here when ready.")
    else:
        assert r.assign is not None
        methods[r.label] = (r.assign, r.names)

latent_vals = ds.splits["train"].latent[latent_col] if latent_col else None
summary = analysis.recovery_table({m: a for m, (a, _) in methods.items()}, y, latent_vals)
st.dataframe(summary, hide_index=True, key="sub_summary")
if latent_vals is not None:
    heat_cols = st.columns(min(len(methods), 3))
    for i, (mname, (a, a_names)) in enumerate(methods.items()):
        with heat_cols[i % len(heat_cols)]:
            st.markdown(f"**{mname}** vs {latent_col}")
            fig = plots.contingency_heatmap(
                a, latent_vals, latent_title=latent_col, assign_names=a_names
            )
            st.plotly_chart(fig, key=f"sub_heat_{i}")

# -- save / export ------------------------------------------------------------------------
st.divider()
st.subheader("Save this setting")
cfg = RunConfig(
    name=None,
    dataset=ui.dataset_spec(),
    teacher=ui.teacher_spec(),
    subclasses=spec,
    train=TrainSpec(objective="lelp", tau=float(tau)),
)
s1, s2, s3 = st.columns([2, 1, 1])
spec_name = s1.text_input(
    "Spec name",
    key="sub_spec_name",
    placeholder="e.g. amazon S8 beta0.5",
    help="Saved in the workspace; the Distill page and `lelp distill --spec NAME` can use it.",
)
if s2.button("Save spec", key="sub_save", type="primary", help="Store this setting by name."):
    try:
        if not spec_name.strip():
            raise ValueError("Give the spec a name first.")
        saved = ws.save_spec(
            spec_name.strip(),
            cfg.model_copy(update={"name": spec_name.strip()}).model_dump(mode="json"),
        )
        st.success(f"Saved spec '{saved}': pick it on the **Distill** page.")
    except ERRORS as err:
        st.error(str(err))
s3.download_button(
    "Export YAML",
    dump_setting(cfg),
    file_name="lelp-config.yaml",
    mime="application/x-yaml",
    key="sub_yaml",
    help="The config `lelp distill config.yaml` reads, reproducing this setting headless.",
)

# -- target inspector ---------------------------------------------------------------------
st.divider()
st.subheader("Target inspector")
n = len(y)
i1, i2 = st.columns([2, 1])
query = i1.text_input(
    "Search the training texts",
    key="sub_search",
    help="Type a few words; the first match is inspected (or pick a row id).",
)
if query.strip():
    q = query.strip().lower()
    hits = [i for i, t in enumerate(texts) if q in t.lower()][:50]
    if hits:
        row = st.selectbox(
            f"{len(hits)} matches",
            hits,
            format_func=lambda i: f"{i}: {plots.truncate(texts[i], 90)}",
            key="sub_hit",
            help="Pick one of the matching examples.",
        )
        ss["inspect_row"] = int(row)
    else:
        st.info("No training text contains that; try other words or a row id.")
ss["inspect_row"] = min(max(int(ss["inspect_row"]), 0), n - 1)
row = int(
    i2.number_input(
        "Row id",
        min_value=0,
        max_value=n - 1,
        value=int(ss["inspect_row"]),
        help="Training row to inspect (also set from the Embedding map).",
    )
)
ss["inspect_row"] = row
t_probs = softmax(Z[row : row + 1], T=float(tau))[0]
st.markdown(
    f"**Row {row}** · label **{names[int(ds.splits['train'].y[row])]}** · "
    f"pseudo-subclass **{sub_names[assign[row]]}** · target entropy {entropy[row]:.3f}"
)
st.write(texts[row])
st.caption(
    "Teacher probabilities (tau = "
    + f"{tau}): "
    + ", ".join(f"{n_} {p:.3f}" for n_, p in zip(names, t_probs, strict=True))
)
st.plotly_chart(
    plots.target_bars(targets[row], names, sizes_fit, teacher_probs=t_probs), key="sub_target"
)
