"""\"Does distillation pay here?\": the headroom check on the Data and Compare pages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

from lelp_studio import headroom, pipeline
from lelp_studio.config import RunConfig, StudentSpec, TrainSpec

from .cache import dataset
from .state import _KEPT, dataset_spec, spec_json, teacher_spec, workspace


def show_headroom(cfg: Any, teacher_key: str, widget_key: str) -> dict[str, Any] | None:
    """The teacher vs a hard-label student of ``cfg``'s kind and budget on the selection
    split: read from the workspace, or computed (3 seeds) on request and cached there.
    Returns the verdict's record, None while it is not measured."""

    ws = workspace()
    seeds = headroom.DEFAULT_SEEDS
    rec = ws.load_headroom(headroom.headroom_key(teacher_key, cfg, seeds))
    if rec is None:
        st.caption(
            f"Not measured yet for a {cfg.student.kind} student trained {cfg.train.epochs} "
            f"epochs: {len(seeds)} hard-label students are trained once and the answer is "
            "kept in the workspace."
        )
        if not st.button("Does distillation pay here?", key=widget_key):
            return None
        bar = st.progress(0.0, text="Training hard-label students")

        def on_seed(i: int, n: int) -> None:
            bar.progress(i / n, text=f"Training hard-label student {i + 1} of {n}")

        try:
            prep = pipeline.prepare(cfg, ws)
            rec = headroom.compute_headroom(ws, prep, cfg, seeds, on_seed=on_seed)
        finally:
            bar.empty()
    c1, c2, c3 = st.columns(3)
    c1.metric("Teacher (selection split)", f"{rec['teacher_accuracy']:.1f}%")
    c2.metric(
        f"Hard-label {rec['student_kind']} student",
        f"{rec['hard_mean']:.1f}%",
        help=f"Mean of {rec['n_seeds']} seeds, ± {rec['hard_std']:.2f} (std).",
    )
    c3.metric("Gap", f"{rec['gap']:+.1f} points")
    (st.success if rec["pays"] else st.warning)(rec["message"])
    return rec


def headroom_config() -> Any:
    """The run the Distill page would queue (student kind and budget as chosen there, or
    their defaults), for the Data page's headroom check."""

    ss = st.session_state
    kept = ss.get(_KEPT, {})
    ds = dataset()
    kinds = ["bag", "transformer"] if ds.is_text else ["mlp"]
    kind = kept.get("distill_kind", kinds[0])
    t = TrainSpec()
    train = TrainSpec(
        objective="hard",
        epochs=int(kept.get("distill_epochs", t.epochs if ds.is_text else 4)),
        lr=float(kept.get("distill_lr", t.lr)),
        batch_size=int(kept.get("distill_batch", t.batch_size)),
    )
    kind = kind if kind in kinds else kinds[0]
    s = StudentSpec()
    student = StudentSpec(  # as the Distill page builds it
        kind=kind,
        hidden=int(kept.get("distill_hidden", s.hidden)),
        embed_dim=int(kept.get("distill_embed", s.embed_dim)),
        layers=int(kept.get("distill_layers", s.layers)),
        init=kept.get("distill_init", s.init) if kind == "transformer" else "random",
    )
    return RunConfig(dataset=dataset_spec(), teacher=teacher_spec(), student=student, train=train)


def show_compare_headroom(runs: Sequence[Mapping[str, Any]]) -> None:
    """The headroom of each (teacher, student, budget) among ``runs`` (Compare page)."""

    groups: dict[str, tuple[Any, str, str]] = {}
    for r in runs:
        key = (r.get("artifacts") or {}).get("teacher_key")
        if not key:
            continue
        cfg = RunConfig.model_validate(r["config"])
        t = cfg.train
        gid = spec_json(cfg.student) + f"{key}{t.epochs}{t.lr}{t.batch_size}{t.weight_decay}"
        groups.setdefault(gid, (cfg, key, r.get("name") or r["run_id"]))
    if not groups:
        st.caption("The picked runs record no teacher outputs to measure against.")
    for i, (cfg, key, name) in enumerate(groups.values()):
        if len(groups) > 1:
            st.markdown(f"**{cfg.dataset.source}, {cfg.student.kind} student** (as {name})")
        show_headroom(cfg, key, f"cmp_headroom_{i}")
