"""Distill: choose a student and objective(s), queue runs as background jobs, watch them.

Runs go through lelp_studio.jobs (submit + ensure_worker), so they outlive a page rerun or an app
restart; the job list is a fragment that re-reads the jobs table every 2 seconds.
``LELP_APP_AUTOSTART_WORKER=0`` stops the page from starting a local worker (tests, or when a
worker is run by hand with ``lelp jobs worker``).
"""

from __future__ import annotations

import os
from typing import Any

import streamlit as st

import ui
from lelp_studio import analysis, plots, sweeps
from lelp_studio.config import (
    RunConfig,
    StudentSpec,
    SubclassSpec,
    TrainSpec,
    config_from_dict,
)
from lelp_studio.errors import user_errors
from lelp_studio.objectives import doc as objective_doc
from lelp_studio.objectives import names as objective_names
from lelp_studio.params import section_model, train_section
from lelp_studio.pipeline import check_run

ui.init_session()
ss = st.session_state
ERRORS = (*user_errors(), ValueError)
CURRENT = "(current Subspaces setting)"
MANUAL = "(manual groups saved on the map)"

st.title("Distill")
st.caption(
    "Train a small student from the teacher. Each objective becomes one background job; "
    "results appear on the **Compare** page."
)
ws = ui.workspace()
try:
    from lelp_studio import jobs
except ImportError:  # pragma: no cover - only while lelp_studio.jobs is missing
    jobs = None  # type: ignore[assignment]

try:
    ds = ui.dataset()
except ERRORS as err:
    st.error(f"{err}\n\nFix the dataset on the **Data & teacher** page.")
    st.stop()

if ds.n_transfer:
    st.info(
        f"This dataset has {len(ds.splits['train']):,} labeled training rows and "
        f"{ds.n_transfer:,} unlabeled transfer rows: distillation objectives train on both "
        "(the teacher labels the transfer rows); hard labels use the labeled rows only."
    )
specs = ws.list_specs()
ui.remember("distill_base", CURRENT)
if ss["distill_base"] not in [CURRENT, MANUAL, *specs]:
    ss["distill_base"] = CURRENT
kinds = ["bag", "transformer"] if ds.is_text else ["mlp"]
ui.remember("distill_kind", kinds[0])
if ss["distill_kind"] not in kinds:
    ss["distill_kind"] = kinds[0]
defaults_s, defaults_t = StudentSpec(), TrainSpec()
for k, v in {
    "distill_objectives": ["lelp"],
    "distill_hidden": defaults_s.hidden,
    "distill_embed": defaults_s.embed_dim,
    "distill_layers": defaults_s.layers,
    "distill_init": defaults_s.init,
    "distill_epochs": 4 if not ds.is_text else defaults_t.epochs,
    "distill_lr": defaults_t.lr,
    "distill_batch": defaults_t.batch_size,
    "distill_alpha": defaults_t.alpha,
    "distill_seed": 0,
    "distill_name": "",
}.items():
    ui.remember(k, v)
ui.remember("distill_tau", float(ss.get("tau", 1.0)))

c1, c2, c3 = st.columns(3)
with c1:
    st.subheader("Setting")
    base = st.selectbox(
        "Pseudo-subclass setting",
        [CURRENT, MANUAL, *specs],
        key="distill_base",
        help="The LELP setting shaped on the Subspaces page, the lasso groups saved on the "
        "Embedding map as hand-made pseudo-subclasses (objective lelp), or a spec saved by name.",
    )
    objectives = st.multiselect(
        "Objectives",
        objective_names(),
        key="distill_objectives",
        help="hard: labels only. kd: the teacher's class probabilities (Hinton). lelp: the "
        "C x S pseudo-subclass targets. fitnet, sea, compress, reaugkd, subclass-distill, dwt, "
        "disk: the seed papers' other methods (parameters and explanation below). One job per "
        "objective, so they compare directly.",
    )
    name = st.text_input(
        "Run name (optional)",
        key="distill_name",
        help="A label for the Compare page; the objective is appended.",
    )
with c2:
    st.subheader("Student")
    kind = st.selectbox(
        "Architecture",
        kinds,
        key="distill_kind",
        help="bag: mean of token embeddings over the teacher's tokenizer, then an MLP. "
        "transformer: a small BERT. mlp: for numeric features.",
    )
    hidden = st.number_input(
        "Hidden units", 8, 2048, key="distill_hidden", help="Width of the MLP layers."
    )
    embed = st.number_input(
        "Embedding dim",
        8,
        1024,
        key="distill_embed",
        help="Token embedding size (bag and transformer students).",
        disabled=kind == "mlp",
    )
    layers = st.number_input(
        "Layers", 1, 12, key="distill_layers", help="MLP layers or transformer blocks."
    )
    init = st.selectbox(
        "Initialisation",
        ["random", "teacher"],
        key="distill_init",
        help="teacher: copy the teacher encoder's first layers (transformer student only).",
        disabled=kind != "transformer",
    )
with c3:
    st.subheader("Training")
    tau = st.number_input(
        "tau",
        0.1,
        20.0,
        step=0.5,
        key="distill_tau",
        help="Temperature for kd and lelp, and of the KD term the other methods add "
        "(subclass-distill has its own below).",
    )
    alpha = st.number_input(
        "alpha",
        0.0,
        10.0,
        step=0.1,
        key="distill_alpha",
        help="Weight of the hard-label loss added to kd/lelp (the paper uses 0).",
    )
    epochs = st.number_input("Epochs", 1, 200, key="distill_epochs", help="Passes over train.")
    lr = st.number_input(
        "Learning rate",
        1e-6,
        1.0,
        format="%.5f",
        key="distill_lr",
        help="Adam learning rate, from 1e-6 to 1.",
    )
    batch = st.number_input("Batch size", 1, 4096, key="distill_batch", help="Examples per step.")
    seed = st.number_input("Seed", 0, 10_000, key="distill_seed", help="Student seed.")


st.subheader("Objective parameters")
method_params: dict[str, dict[str, Any]] = {}
for obj in objectives:
    with st.container(border=True):
        st.markdown(f"**{obj}**")
        with st.expander(f"What is {obj}?", expanded=False):
            st.markdown(objective_doc(obj))
        model = section_model(obj)
        if model is None:
            st.caption("Uses the Training settings above (tau, alpha) and nothing else.")
        else:
            method_params[obj] = ui.param_widgets(model, f"distill_{train_section(obj)}_")


def _config(obj: str, sections: dict[str, dict[str, Any]] | None = None) -> RunConfig:
    """The run the fields above describe, for objective ``obj``; ``sections`` are the method
    parameters to include (default: ``obj``'s own)."""
    if base in (CURRENT, MANUAL):
        sub = ui.subclass_spec()
        if base == MANUAL:
            sub = SubclassSpec(method="manual", class_source=sub.class_source)
        bcfg = RunConfig(dataset=ui.dataset_spec(), teacher=ui.teacher_spec(), subclasses=sub)
    else:
        bcfg = config_from_dict(ws.load_spec(base), f"spec {base!r}")
    student = StudentSpec(
        kind=kind,
        hidden=int(hidden),
        embed_dim=int(embed),
        layers=int(layers),
        init=init if kind == "transformer" else "random",
    )
    if sections is None:
        section = train_section(obj)
        sections = {section: method_params[obj]} if section else {}
    train = TrainSpec.model_validate(
        {
            "objective": obj,
            "tau": float(tau),
            "alpha": float(alpha),
            "epochs": int(epochs),
            "lr": float(lr),
            "batch_size": int(batch),
            "seed": int(seed),
            **sections,
        }
    )
    label = f"{name.strip() or ds.name} {obj}"
    if obj == "lelp":
        label += " " + analysis.subclass_label(bcfg.subclasses)
    cfg = bcfg.model_copy(update={"student": student, "train": train, "name": label})
    check_run(cfg)
    return cfg


def _configs() -> list[RunConfig]:
    return [_config(obj) for obj in objectives]


# What will run, read back from the applied values: a number typed outside a field's range
# is not applied by Streamlit (the field turns red), and this line shows it was not.
st.caption(
    f"Queue will run **{', '.join(objectives) or 'nothing'}** with epochs {int(epochs)}, "
    f"learning rate {float(lr):g}, batch {int(batch)}, tau {float(tau):g}, alpha "
    f"{float(alpha):g}, seed {int(seed)} on a {kind} student."
)
if st.button(
    "Queue run",
    type="primary",
    key="distill_queue",
    disabled=not objectives,
    help="Submit one background job per objective; a local worker is started if none runs.",
):
    try:
        if jobs is None:
            raise RuntimeError("lelp_studio.jobs is not available; run `lelp distill` from a shell")
        ids, twins = [], []
        for cfg in _configs():
            twin = jobs.active_twin(ws, "distill", cfg)
            if twin is None:
                ids.append(jobs.submit(ws, "distill", cfg))
            else:
                twins.append(f"{cfg.train.objective} (job #{twin})")
        if ids and os.environ.get("LELP_APP_AUTOSTART_WORKER", "1") != "0":
            jobs.ensure_worker(ws)
        if ids:
            st.success(f"Queued job(s) {', '.join(f'#{i}' for i in ids)}.")
        if twins:
            st.info(
                f"Not queued again, already queued or running with the same settings: "
                f"{', '.join(twins)}. Change a setting (e.g. the seed) to run it twice."
            )
    except ERRORS as err:
        st.error(str(err))
if not objectives:
    st.info("Pick at least one objective to queue a run.")

with st.expander("Sweep over a grid", expanded=False):
    st.caption(
        "One job per point of the grid (every combination of the values below), all under one "
        "sweep id, as `lelp jobs sweep --grid KEY=V1,V2` does. Values are separated by commas; "
        "a field left empty is not swept and takes the value set above. Read the result on "
        "**Compare**, Sweep view."
    )
    for k in ("sweep_S", "sweep_beta", "sweep_tau", "sweep_seeds"):
        ui.remember(k, "")
    ui.remember("sweep_objectives", [])
    # (short name, widget key, example, help) for each grid field, in SWEEP_FIELDS' order.
    fields = [
        ("S", "sweep_S", "2, 4, 8", "Pseudo-subclasses per class (lelp only)."),
        (
            "beta",
            "sweep_beta",
            "0.5, 1, 2",
            "Temperature of the pseudo-subclass split (lelp only).",
        ),
        ("tau", "sweep_tau", "1, 4", "Distillation temperature (not used by hard)."),
        (
            "seed",
            "sweep_seeds",
            "0, 1, 2",
            "Student seeds; the sweep view folds them into mean ± std.",
        ),
    ]
    sweep_text = {
        short: col.text_input(
            f"{'seeds' if short == 'seed' else short} ({analysis.SWEEP_FIELDS[short][0]})",
            key=key,
            placeholder=f"e.g. {example}",
            help=text,
        )
        for col, (short, key, example, text) in zip(st.columns(4), fields, strict=True)
    }
    sweep_objs = st.multiselect(
        "objective (train.objective)",
        objective_names(),
        key="sweep_objectives",
        help="Objectives to sweep; their parameters are those set above (defaults for one not "
        "picked there). Empty: the objectives picked above.",
    )
    # The objectives picked above are swept too when there are several, as Queue run does.
    grid_objs = sweep_objs or (objectives if len(objectives) > 1 else [])
    try:
        grid = analysis.sweep_grid(sweep_text, grid_objs)
    except ERRORS as err:
        st.error(str(err))
        grid = {}
    sweep_base = (sweep_objs or objectives or [None])[0]
    n_grid = analysis.sweep_size(grid) if sweep_base else 0
    n_jobs = len(sweeps.distinct_combos(grid, sweep_base)) if grid and sweep_base else 0
    if grid and sweep_base:
        sizes = " × ".join(f"{len(v)} {k.rsplit('.', 1)[-1]}" for k, v in grid.items())
        same = n_grid - n_jobs
        dropped = f"; {same} would repeat a student (a setting its objective ignores)" * bool(same)
        st.markdown(f"This will queue **{n_jobs} jobs** ({sizes}{dropped}).")
        st.caption(f"Same as `lelp jobs sweep CONFIG {analysis.sweep_cli(grid)}`.")
    elif not sweep_base:
        st.caption("Pick an objective (here or above) to sweep.")
    else:
        st.caption("Enter values for at least one setting to sweep.")
    if st.button(
        "Queue sweep",
        key="sweep_queue",
        disabled=not n_jobs,
        help="Submit the whole grid as background jobs; a local worker is started if none runs.",
    ):
        try:
            if jobs is None:
                raise RuntimeError("lelp_studio.jobs is not available; run `lelp jobs sweep`")
            params = {}
            for o in dict.fromkeys([*objectives, *grid_objs]):
                sec = train_section(o)
                if sec:
                    params[sec] = method_params.get(o, {})
            base_cfg = _config(sweep_base, params)
            # Members are named by their grid values (the objective too, when swept).
            base_name = (name.strip() or ds.name) + ("" if grid_objs else f" {sweep_base}")
            base_cfg = base_cfg.model_copy(update={"name": base_name})
            for member in jobs.expand_grid(base_cfg, grid):
                check_run(member)
            sweep_id, ids = jobs.submit_sweep(ws, base_cfg, grid)
            if os.environ.get("LELP_APP_AUTOSTART_WORKER", "1") != "0":
                jobs.ensure_worker(ws)
            st.success(
                f"Queued sweep `{sweep_id}`: {len(ids)} jobs #{ids[0]}–#{ids[-1]}. Once they "
                "finish, pick the sweep on **Compare** to read it aggregated."
            )
        except ERRORS as err:
            st.error(str(err))

st.divider()
st.subheader("Jobs")


@st.fragment(run_every=2)
def job_list() -> None:
    """Live job status: re-reads the jobs table every 2 s without rerunning the page."""
    if jobs is None:
        st.info("Background jobs are not available in this build.")
        return
    all_jobs = jobs.list_jobs(ws)[:20]
    if not all_jobs:
        st.info("No jobs yet: set a student and objective above and press **Queue run**.")
        return
    autostart = os.environ.get("LELP_APP_AUTOSTART_WORKER", "1") != "0"
    if autostart and any(j.state == "queued" for j in all_jobs) and jobs.ensure_worker(ws):
        st.caption(  # the app's worker stops with the app: a restart leaves queued jobs
            "Queued jobs were waiting for a worker (the last one stopped with the app): "
            "started one."
        )
    for job in all_jobs:
        card = jobs.job_card(job, jobs.job_run(ws, job))
        with st.container(border=True):
            h1, h2, h3 = st.columns([4, 1, 1])
            h1.markdown(f"**{card.title}** · `{card.state}`")
            if card.facts:
                h1.caption(" · ".join(card.facts))
            # Below the buttons' row, so the bar spans the card's full width.
            st.progress(card.fraction, text=card.bar_text)
            if job.state in ("queued", "running") and h2.button(
                "Cancel", key=f"distill_cancel_{job.id}", help="Stop this job (within seconds)."
            ):
                jobs.request_cancel(ws, job.id)
                st.rerun(scope="fragment")
            if job.state in ("failed", "cancelled") and h3.button(
                "Retry",
                key=f"distill_retry_{job.id}",
                help="Re-queue; resumes from its checkpoint.",
            ):
                jobs.retry(ws, job.id)
                if os.environ.get("LELP_APP_AUTOSTART_WORKER", "1") != "0":
                    jobs.ensure_worker(ws)
                st.rerun(scope="fragment")
            if job.error:
                st.error(job.error)
            if job.metrics:
                with st.expander("Loss and accuracy", expanded=job.state == "running"):
                    st.plotly_chart(
                        plots.learning_curves({job.name: job.metrics}),
                        key=f"distill_curve_{job.id}_{len(job.metrics)}",
                    )


job_list()
