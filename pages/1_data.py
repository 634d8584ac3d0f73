"""Data & teacher: choose the dataset and the teacher; see the data and the teacher's accuracy.

The chosen specs are committed to ``st.session_state["dataset_spec"/"teacher_spec"]`` (shared
by every page) and remembered in the workspace for the next session (``ui.commit_choices``);
a commit reruns the app, so the sidebar names the new choice at once. Widgets here carry the
``data_`` prefix and are re-initialised from the committed specs when the page is opened again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

import ui
from lelp_studio import analysis, headroom, plots
from lelp_studio.config import DatasetSpec, TeacherSpec
from lelp_studio.data import (
    DEMOS,
    guess_columns,
    read_table,
    shared_data_root,
    split_files,
    store_upload,
)
from lelp_studio.errors import user_errors

ui.init_session()
ss = st.session_state
ERRORS = user_errors()
SOURCE_TYPES = ["Built-in demo", "File (upload or path)", "Shared data folder"]
TEACHER_KINDS = {
    "minilm": "Bundled MiniLM encoder + linear head",
    "hf": "Local sequence-classification checkpoint",
    "arrays": "Precomputed arrays (.npz / .parquet)",
    "digits-mlp": "Small MLP on numeric features",
}

st.title("Data & teacher")
st.caption(
    "Pick the data and the teacher whose embedding space the other pages explore. Teacher "
    "outputs are computed once and cached in the workspace: coming back is instant."
)
with st.expander("New here? The five steps", expanded=False):
    st.markdown(
        "lelp-studio distils a few-class teacher into a small student with **LELP**: it "
        "splits each class of the teacher's embedding space into pseudo-subclasses along a "
        "few principal directions, and trains the student on those richer targets.\n\n"
        "1. **Data & teacher** (this page): a dataset and the teacher whose embeddings drive "
        "everything else.\n"
        "2. **Embedding map**: look at the teacher's space; lasso groups you want as "
        "hand-made pseudo-subclasses.\n"
        "3. **Subspaces**: choose how many pseudo-subclasses per class (S), the directions and "
        "the softness (beta); compare with clustering baselines.\n"
        "4. **Distill**: queue students (LELP, KD, hard labels and the other methods) as "
        "background jobs.\n"
        "5. **Compare**: accuracy and agreement with the teacher, calibration, curves."
    )

committed_ds = ui.dataset_spec()
committed_t = ui.teacher_spec()
src = committed_ds.source
if src in DEMOS:
    init_type = SOURCE_TYPES[0]
elif src.startswith("shared:"):
    init_type = SOURCE_TYPES[2]
else:
    init_type = SOURCE_TYPES[1]
ui.remember("data_source_type", init_type)
ui.remember("data_demo", src if src in DEMOS else DEMOS[0])
ui.remember("data_path", "" if init_type != SOURCE_TYPES[1] else src)
ui.remember("data_shared", src.split(":", 1)[1] if src.startswith("shared:") else "")
ui.remember("data_max_train", committed_ds.max_train or 0)
ui.remember("data_transfer", committed_ds.transfer or "")
ui.remember("data_test_size", float(committed_ds.test_size))


@st.cache_data(show_spinner=False, max_entries=8)
def _columns(path: str) -> tuple[list[str], tuple[str, str]]:
    """The file's columns and the first guess at its (text, label) columns; for a folder of
    split files (which ``lelp`` reads too), those of its train file."""
    p = Path(path)
    df = read_table(split_files(p).get("train", p) if p.is_dir() else p)
    return [str(c) for c in df.columns], guess_columns(df)


def _save_upload(upload: object) -> str:
    """Store an uploaded file in the workspace so jobs and the CLI can read it by path."""
    folder = ui.workspace().root / "uploads"
    return str(store_upload(folder, upload.name, upload.getvalue()))  # type: ignore[attr-defined]


# -- dataset choice -------------------------------------------------------------------------
left, right = st.columns([1, 1])
with left:
    st.subheader("Dataset")
    source_type = st.radio(
        "Source",
        SOURCE_TYPES,
        key="data_source_type",
        horizontal=True,
        help="A built-in demo needs nothing; a file is split into train/test here; a shared "
        "folder holds train.csv, test.csv and labels.json.",
    )
    new_ds: DatasetSpec | None = None
    try:
        if source_type == SOURCE_TYPES[0]:
            demo = st.selectbox(
                "Demo",
                list(DEMOS),
                key="data_demo",
                help="text-demo: 1,800 synthetic reviews (sentiment; topic and aspect are "
                "latent). digits-bin: sklearn digits as even/odd (the digit is latent).",
            )
            new_ds = DatasetSpec(source=demo)
        elif source_type == SOURCE_TYPES[1]:
            upload = st.file_uploader(
                "Upload a file",
                type=["csv", "tsv", "parquet", "jsonl"],
                key="data_upload",
                help="CSV, TSV, Parquet or JSONL with one example per row. Files above 200 MB: "
                "give their path below instead.",
            )
            if upload is not None:
                ss["data_path"] = _save_upload(upload)
            path = st.text_input(
                "…or a path on this machine",
                key="data_path",
                help="Path of a CSV/TSV/Parquet/JSONL file readable by the app.",
            ).strip()
            if not path:
                st.info("Upload a file or type its path to map its columns.")
            else:
                cols, guesses = _columns(path)
                in_use = path == committed_ds.source  # show the mapping in use, not a guess
                if in_use:
                    guesses = (committed_ds.text_col, committed_ds.label_col)
                for k, guess in zip(("data_text_col", "data_label_col"), guesses, strict=True):
                    if ui.remember(k, guess) not in cols:
                        ss[k] = guess if guess in cols else cols[0]
                ui.remember("data_latent_cols", committed_ds.latent_cols if in_use else [])
                ss["data_latent_cols"] = [c for c in ss["data_latent_cols"] if c in cols]
                c1, c2 = st.columns(2)
                text_col = c1.selectbox(
                    "Text column", cols, key="data_text_col", help="The input text."
                )
                label_col = c2.selectbox(
                    "Label column", cols, key="data_label_col", help="The class (string or int)."
                )
                latent = st.multiselect(
                    "Latent columns (optional)",
                    [c for c in cols if c not in (text_col, label_col)],
                    key="data_latent_cols",
                    help="Known sub-groups (e.g. domain). Used to score how well pseudo-"
                    "subclasses recover them (ARI/NMI) and for the oracle baseline.",
                )
                test_size = st.slider(
                    "Test fraction",
                    0.05,
                    0.5,
                    key="data_test_size",
                    help="Share of rows held out (stratified, seeded) for evaluation.",
                )
                new_ds = DatasetSpec(
                    source=path,
                    text_col=text_col,
                    label_col=label_col,
                    latent_cols=latent,
                    test_size=test_size,
                )
        else:
            root = shared_data_root()
            names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root else []
            if not names:
                st.info(
                    "No shared data folder was found (set LELP_SHARED_DATA to a folder of "
                    "datasets). Pick a demo or a file instead."
                )
            else:
                if ss.get("data_shared") not in names:
                    ss["data_shared"] = names[0]
                name = st.selectbox(
                    "Folder",
                    names,
                    key="data_shared",
                    help=f"Datasets under {root}.",
                )
                new_ds = DatasetSpec(source=f"shared:{name}")
    except ERRORS as err:
        st.error(str(err))
        st.caption(f"The dataset in use is still **{committed_ds.source}** until this is fixed.")
        new_ds = None
    st.number_input(
        "Max training rows (0 = all)",
        min_value=0,
        step=1000,
        key="data_max_train",
        help="A stratified, seeded subset of the training split: large sets embed slowly "
        "on a CPU, so start small.",
    )
    with st.expander("Unlabeled transfer data (optional)", expanded=bool(ss["data_transfer"])):
        st.caption(
            "Inputs without labels: the teacher labels them and distillation objectives (KD, "
            "LELP, ...) learn from them too; hard labels use the labeled rows only. Rows with "
            "an empty label in the training file count as transfer rows as well. Texts equal "
            "to a dev/test or labeled training text are dropped and counted."
        )
        t_upload = st.file_uploader(
            "Upload a transfer file",
            type=["csv", "tsv", "parquet", "jsonl", "txt"],
            key="data_transfer_upload",
            help="CSV/TSV/Parquet/JSONL with the dataset's text column (a label column, if any, "
            "must hold the dataset's classes), or a .txt file with one input per line.",
        )
        if t_upload is not None:
            ss["data_transfer"] = _save_upload(t_upload)
        st.text_input(
            "…or its path on this machine",
            key="data_transfer",
            help="Path of the transfer file (dataset.transfer in a run config); empty: none.",
        )

if new_ds is not None:
    mt = int(ss["data_max_train"]) or None
    transfer = str(ss["data_transfer"]).strip() or None
    new_ds = new_ds.model_copy(update={"max_train": mt, "transfer": transfer})
    if ui.spec_json(new_ds) != ui.spec_json(committed_ds):
        try:  # loaded before it replaces the dataset in use, so a bad one never breaks pages
            ui.dataset_from_json(ui.spec_json(new_ds))
        except ERRORS as err:
            st.error(str(err))
            st.caption(
                f"The dataset in use is still **{committed_ds.source}** until this is fixed."
            )
        else:
            if ui.commit_choices(dataset=new_ds):
                st.rerun()  # the sidebar names it now, not after the teacher is computed

# -- load the dataset -----------------------------------------------------------------------
try:
    ds = ui.dataset()
except ERRORS as err:
    st.error(f"{err}")
    st.info("Fix the column mapping or pick another source; a demo always works.")
    st.stop()

# -- teacher choice -------------------------------------------------------------------------
kinds = ["minilm", "hf", "arrays"] if ds.is_text else ["digits-mlp", "arrays"]
if committed_t.kind not in kinds:
    committed_t = ui.default_teacher_for(ui.dataset_spec(), ds.is_text)
    if committed_t.kind not in kinds:
        committed_t = TeacherSpec(kind=kinds[0])
    ss["data_teacher_kind"] = committed_t.kind
    if ui.commit_choices(teacher=committed_t):
        st.rerun()
if ui.remember("data_teacher_kind", committed_t.kind) not in kinds:
    ss["data_teacher_kind"] = committed_t.kind
ui.remember("data_teacher_mode", committed_t.mode)
ui.remember("data_teacher_path", committed_t.path or "")
ui.remember("data_teacher_precision", committed_t.precision)
ui.remember("data_teacher_trust", committed_t.trust_remote_code)
ui.remember("data_teacher_epochs", committed_t.epochs)
ui.remember("data_teacher_lr", committed_t.lr)
ui.remember("data_teacher_batch", committed_t.batch_size)

with right:
    st.subheader("Teacher")
    kind = st.selectbox(
        "Model",
        kinds,
        format_func=lambda k: TEACHER_KINDS[k],
        key="data_teacher_kind",
        help="The model whose last-layer embeddings H, logits Z and head W drive LELP.",
    )
    fields: dict[str, object] = {"kind": kind}
    if kind == "minilm":
        fields["mode"] = st.radio(
            "Head training",
            ["frozen", "finetune"],
            key="data_teacher_mode",
            horizontal=True,
            help="frozen: fit a linear head on fixed MiniLM embeddings (about 30 s on a CPU "
            "for the text demo). finetune: train the encoder end to end, as a background job "
            "(slow without a GPU; its expected time is shown below).",
        )
        if fields["mode"] == "finetune":
            f1, f2, f3 = st.columns(3)
            fields["epochs"] = f1.number_input(
                "Fine-tune epochs", min_value=1, max_value=50, step=1, key="data_teacher_epochs",
                help="Passes over the labelled training rows (1 to 50).",
            )  # fmt: skip
            fields["lr"] = f2.number_input(
                "Learning rate", min_value=1e-6, max_value=1e-2, step=1e-5, format="%.0e",
                key="data_teacher_lr", help="AdamW's peak rate (1e-6 to 1e-2), after a warm-up "
                "over the first tenth of the steps; 5e-5 suits MiniLM.",
            )  # fmt: skip
            fields["batch_size"] = f3.number_input(
                "Batch size", min_value=1, max_value=512, step=8, key="data_teacher_batch",
                help="Rows per step (1 to 512).",
            )  # fmt: skip
    elif kind in ("hf", "arrays"):
        fields["path"] = (
            st.text_input(
                "Checkpoint folder" if kind == "hf" else "Arrays file",
                key="data_teacher_path",
                help="hf: a local folder with config.json, safetensors weights and tokenizer. "
                "arrays: a .npz with H_<split>, Z_<split>, W, b (or .parquet with a sidecar).",
            ).strip()
            or None
        )
    if kind in ("minilm", "hf"):
        from lelp_studio.teachers import pick_device, resolve_precision

        here = resolve_precision("auto", pick_device())
        fields["precision"] = st.radio(
            "Precision",
            ["auto", "float32", "bf16"],
            key="data_teacher_precision",
            horizontal=True,
            format_func=lambda p: f"auto ({here} here)" if p == "auto" else p,
            help="auto: bf16 where the hardware has it natively (GPUs; CPUs with AVX512-BF16 "
            "or AMX: 2-3x faster, cosine > 0.9999 to float32), float32 elsewhere. float32: "
            "the same embeddings on every machine. Each precision is cached separately.",
        )
    if kind == "hf":
        fields["trust_remote_code"] = st.checkbox(
            "Trust remote code",
            key="data_teacher_trust",
            help="Lets the checkpoint run its own Python code when it loads. Only for "
            "checkpoints whose code you have read: it can do anything your user can.",
        )
        if fields["trust_remote_code"]:
            st.warning("Remote code is trusted: the checkpoint's own Python code will run.")
    new_t = TeacherSpec(**fields)  # type: ignore[arg-type]
    if ui.spec_json(new_t) != ui.spec_json(committed_t) and ui.commit_choices(teacher=new_t):
        st.rerun()

# -- dataset summary ------------------------------------------------------------------------
st.divider()
st.subheader(f"Dataset summary: {ds.name}")
labeled = analysis.labeled_splits(ds)
cols = st.columns(5 + len(labeled))
cols[0].metric("Classes", ds.n_classes, help="Number of classes C.")
for i, (split, y) in enumerate(labeled.items()):
    cols[1 + i].metric(
        f"{split} rows",
        f"{len(y):,}",
        help="Labeled training rows." if split == "train" else f"Labeled {split} rows.",
    )
cols[1 + len(labeled)].metric(
    "transfer rows",
    f"{ds.n_transfer:,}",
    help="Unlabeled rows the teacher labels for distillation (the transfer file and the "
    "training file's rows with an empty label), after dropping repeats of labeled texts.",
)
cols[2 + len(labeled)].metric("Input", "text" if ds.is_text else "features")
cols[3 + len(labeled)].metric("Latent columns", len(ds.latent_columns))
cols[4 + len(labeled)].metric(
    "Smallest class (train)", int(np.bincount(ds.splits["train"].y).min())
)
if ds.split_note:
    st.caption(ds.split_note)
st.caption(
    "Classes: "
    + ", ".join(ds.label_names)
    + (f" · latent columns: {', '.join(ds.latent_columns)}" if ds.latent_columns else "")
)

g1, g2 = st.columns(2)
with g1:
    st.markdown("**Class balance**")
    st.plotly_chart(
        plots.class_balance_bar(labeled, ds.label_names),
        key="data_balance",
    )
with g2:
    train = ds.splits["train"]
    if train.texts is not None:
        st.markdown("**Text length (train)**")
        st.plotly_chart(plots.length_histogram(train.texts), key="data_lengths")
    else:
        st.markdown("**Features**")
        st.write(f"{np.asarray(train.features).shape[1]} numeric features per example.")
with st.expander("First rows of the training split"):
    head = {"label": [ds.label_names[int(v)] for v in train.y[:20]]}
    if train.texts is not None:
        head["text"] = train.texts[:20]
    for k, v in train.latent.items():
        head[k] = [str(x) for x in v[:20]]
    st.dataframe(pd.DataFrame(head), hide_index=True)

# -- teacher outputs ------------------------------------------------------------------------
st.divider()
st.subheader("Teacher outputs")
t_now = ui.teacher_spec()
if t_now.kind in ("hf", "arrays") and not t_now.path:
    what = "checkpoint folder" if t_now.kind == "hf" else "arrays file"
    st.info(f"Type the {what} above to use this teacher.")
    st.stop()
finetuned = t_now.kind == "minilm" and t_now.mode == "finetune"
try:
    ui.show_finetuned_ready(ds, t_now)
    got = ui.teacher(compute=False)
    if got is None and finetuned:  # never in the page: minutes to hours, as a background job
        ui.show_finetune_panel(ds, t_now)
        st.stop()
    is_demo = ui.dataset_spec().source in DEMOS
    if got is None and (
        is_demo
        or st.button(
            "Compute teacher outputs",
            type="primary",
            key="data_compute",
            help="Runs the teacher over every split once and stores H, Z and W in the workspace.",
        )
    ):
        got = ui.compute_teacher("Computing teacher outputs")
except ERRORS as err:
    st.error(str(err))
    st.info("Pick another teacher, fix its path, or choose a demo.")
    st.stop()

if got is None:
    st.info(
        "Teacher outputs are not computed yet for this dataset and teacher: press "
        "**Compute teacher outputs** (or open any other page, which computes them; large "
        "sets: lower *Max training rows* first)."
    )
    st.stop()
out, key = got
scored = list(labeled)  # the transfer split has no labels to score
acc_cols = st.columns(len(scored) + 2 + ("precision" in out.meta))
for i, split in enumerate(scored):
    z = np.asarray(out.Z[split])
    acc = float((z.argmax(1) == ds.splits[split].y).mean())
    acc_cols[i].metric(f"Teacher accuracy ({split})", f"{100 * acc:.1f}%")
acc_cols[len(scored)].metric("Embedding dim d", out.dim)
acc_cols[len(scored) + 1].metric("Teacher", str(out.meta.get("kind", ui.teacher_spec().kind)))
if "precision" in out.meta:
    acc_cols[len(scored) + 2].metric(
        "Precision", str(out.meta["precision"]), help="What the embedding pass ran at."
    )
if ds.n_transfer:
    st.markdown("**How the teacher labels the transfer rows**")
    st.dataframe(
        analysis.transfer_class_table(ds, out.Z["transfer"]),
        hide_index=True,
        key="data_transfer_classes",
    )
st.caption(f"Cached in the workspace under key `{key[:12]}`. Next: explore the **Embedding map**.")
facts = out.meta.get("finetune") or {}
if finetuned and facts:
    resumed = facts.get("resumed_from_step")
    n = facts.get("steps")
    st.success(
        f"Fine-tuned teacher ready for this dataset: {n} step{'' if n == 1 else 's'}"
        + (f", resumed from step {resumed}" if resumed else "")
        + ". Every page and run naming this teacher uses these outputs."
    )
    if facts.get("resume_note"):
        st.info(f"Note: {facts['resume_note']}")

st.subheader("Does distillation pay here?")
st.caption(analysis.selection_caption(ds))
verdict = ui.show_headroom(ui.headroom_config(), key, "data_headroom")
if headroom.offers_finetune(verdict, t_now):
    ui.show_finetune_offer(ds, t_now, out.meta)
st.page_link("pages/2_map.py", label="Open the Embedding map", icon=":material/arrow_forward:")
