"""Nearest training rows of a test example: the teacher's embeddings, or a saved ReAugKD
run's own retrieval (Compare page)."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from lelp_studio import analysis, plots, replay
from lelp_studio import metrics as M
from lelp_studio.errors import user_errors
from lelp_studio.replay import load_reaugkd, method_state_path
from lelp_studio.types import Dataset

from .cache import Z32, float_H
from .state import workspace, workspace_at

_ERRORS = (*user_errors(), ValueError)


@st.cache_resource(show_spinner="Indexing the teacher's training embeddings…", max_entries=4)
def teacher_index(ws_root: str, key: str) -> Any:
    """``analysis.teacher_index`` over the teacher's train embeddings, once per key."""
    # the index keeps its own float32 copy of the train embeddings (brute-force cosine)
    return analysis.teacher_index(np.asarray(float_H(ws_root, key, "train"), dtype=np.float32))


def teacher_neighbours(
    key: str, split: str, rows: np.ndarray | list[int], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` training rows whose teacher embeddings are nearest (cosine) to those of
    ``rows`` of ``split`` (see ``analysis.nearest_rows``)."""
    ws_root = str(workspace().root)
    q = np.asarray(float_H(ws_root, key, split)[np.asarray(rows, dtype=int)], dtype=np.float32)
    return analysis.nearest_rows(teacher_index(ws_root, key), q, k)


def has_reaugkd_state(run: dict[str, Any]) -> bool:
    """True when the run saved ReAugKD's learned maps (runs from before that show a fallback)."""

    return method_state_path(workspace(), run) is not None


@st.cache_resource(show_spinner="Rebuilding the run's ReAugKD knowledge base…", max_entries=4)
def reaugkd_model(ws_root: str, run_id: str, state_path: str) -> tuple[Any, Any]:
    """``replay.load_reaugkd`` once per run (``state_path`` keys the cache to the file)."""

    ws = workspace_at(ws_root)
    return load_reaugkd(ws, ws.load_run(run_id))


def reaugkd_neighbours(
    run: dict[str, Any], ds: Dataset, split: str, rows: np.ndarray | list[int], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The run's own retrieval for ``rows`` of ``split``: ``(train indices (m, k), cosine
    similarities (m, k))`` of its query ``normalize(B h_s)`` to the keys ``normalize(P h_t)``."""

    ws = workspace()
    loaded = reaugkd_model(str(ws.root), run["run_id"], str(method_state_path(ws, run)))
    return replay.reaugkd_neighbours(ws, run, rows, split, dataset=ds, loaded=loaded, k=k)


def show_reaugkd(
    reaug: list[str],
    usable: dict[str, dict[str, Any]],
    by_id: dict[str, dict[str, Any]],
    label: dict[str, str],
) -> None:
    """Compare's ReAugKD section: the knowledge-base entries a picked ReAugKD run retrieves
    for one evaluation example (its own retrieval when saved, else the teacher's nearest)."""
    ss = st.session_state
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
    texts_r = analysis.display_texts(dr["ds"], split_r)
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
    real = has_reaugkd_state(run_r)
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
            ind, sim = reaugkd_neighbours(run_r, dr["ds"], split_r, [row], k)
        else:
            ind, sim = teacher_neighbours(dr["teacher_key"], split_r, [row], k)
        z_train = Z32(dr["teacher_key"], "train")
    except (*_ERRORS, FileNotFoundError) as err:
        st.info(f"The neighbours are not available for this run ({err}).")
    else:
        ind, sim = ind[0], sim[0]
        train_texts = analysis.display_texts(dr["ds"], "train")
        y_train = np.asarray(dr["ds"].splits["train"].y)
        nb = analysis.neighbour_table(ind, sim, y_train, z_train, lab_r, train_texts)
        probs = M.softmax(z_train[ind])
        st.dataframe(nb, hide_index=True, key="cmp_reaug_neighbours")
        st.plotly_chart(
            plots.neighbour_probs(probs, lab_r, sim, ind, texts=[train_texts[i] for i in ind]),
            key="cmp_reaug_bars",
        )
