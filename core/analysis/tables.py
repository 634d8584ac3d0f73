"""The tables the Subspaces and Compare pages show, as DataFrames (pure functions).

Why here: a page only reads widgets and renders; what a table holds is tested without a
browser or AppTest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..plots import truncate
from ..subclasses import recovery_scores
from .data_view import data_text

#: Pseudo-subclasses with fewer training rows than this get a warning on the Subspaces page.
TINY_SUBCLASS = 5


def subclass_table(
    names: Sequence[str],
    assign: np.ndarray,
    entropy: np.ndarray,
    coords: Sequence[np.ndarray],
    y: np.ndarray,
    texts: Sequence[str],
    *,
    top: int = 3,
    chars: int = 80,
) -> pd.DataFrame:
    """One row per pseudo-subclass: its name, training rows, mean target entropy and the
    ``top`` rows of its class furthest along its direction (texts cut to ``chars``).

    ``assign`` (n,) global pseudo-subclass ids, ``entropy`` (n,) target entropies,
    ``coords`` LELP coordinates (one (n, S_c) array per class), ``y`` (n,) classes.
    Counts come from ``bincount``: no pass over the rows per pseudo-subclass.
    """
    G = len(names)
    assign = np.asarray(assign)
    counts = np.bincount(assign, minlength=G)
    mean_entropy = np.bincount(assign, weights=entropy, minlength=G) / np.maximum(counts, 1)
    offsets = np.concatenate([[0], np.cumsum([z.shape[1] for z in coords])])
    class_rows = [np.flatnonzero(np.asarray(y) == c) for c in range(len(coords))]
    rows = []
    for g, name in enumerate(names):
        c = int(np.searchsorted(offsets, g, side="right") - 1)
        best = class_rows[c][np.argsort(-coords[c][class_rows[c], g - offsets[c]])[:top]]
        rows.append(
            {
                "pseudo-subclass": name,
                "size": int(counts[g]),
                "mean target entropy": float(mean_entropy[g]),
                "furthest along its direction": " | ".join(truncate(texts[i], chars) for i in best),
            }
        )
    return pd.DataFrame(rows)


def tiny_subclasses(table: pd.DataFrame, at_least: int = TINY_SUBCLASS) -> int:
    """How many pseudo-subclasses of a ``subclass_table`` hold fewer than ``at_least`` rows."""
    return int((table["size"] < at_least).sum())


def recovery_table(
    methods: Mapping[str, np.ndarray], y: np.ndarray, latent: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per method (name -> pseudo-subclass id per training row): how many
    pseudo-subclasses it made, the smallest's size and, given a ``latent`` column, ARI and
    NMI (within each class, rounded to 3 places) against it."""
    rows = []
    for name, a in methods.items():
        a = np.asarray(a)
        row: dict[str, object] = {"method": name, "pseudo-subclasses": int(len(np.unique(a)))}
        row["smallest"] = int(np.bincount(a).min()) if len(a) else 0
        if latent is not None:
            sc = recovery_scores(a, y, latent)
            row["ARI"], row["NMI"] = round(sc["ari"], 3), round(sc["nmi"], 3)
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(v: Any) -> Any:
    return round(float(v), 4) if isinstance(v, (int, float)) and v is not None else v


def run_table(runs: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> pd.DataFrame:
    """One row per run: its setting and its scores (4 places), as the Compare page lists
    them; ``labels`` maps run id to the name shown (``analysis.run_labels``)."""
    rows = []
    for r in runs:
        m, cfg = r["metrics"], r["config"]
        s, t = m.get("student", {}), m.get("teacher", {})
        tr, meth = m.get("student_train") or {}, m.get("method") or {}
        rows.append(
            {
                "run": labels[r["run_id"]],
                "dataset": cfg.get("dataset", {}).get("source"),
                "objective": cfg.get("train", {}).get("objective"),
                "student": cfg.get("student", {}).get("kind"),
                "data": data_text(m.get("data")),  # labeled and transfer rows trained on
                "accuracy": _fmt(s.get("accuracy")),
                "selection acc.": _fmt((m.get("student_select") or {}).get("accuracy")),
                "teacher accuracy": _fmt(s.get("teacher_accuracy", t.get("accuracy"))),
                "agreement": _fmt(s.get("agreement")),
                "KL": _fmt(s.get("kl")),
                "train accuracy": _fmt(tr.get("accuracy")),
                "train agreement": _fmt(tr.get("agreement")),
                "train KL": _fmt(tr.get("kl")),
                "ECE": _fmt(s.get("ece")),
                "teacher ECE": _fmt(t.get("ece")),
                "worst latent acc.": _fmt(s.get("worst_subclass_accuracy")),
                "subclass teacher acc.": _fmt(meth.get("subclass_teacher_accuracy")),
                "retrieval overhead %": _fmt(meth.get("retrieval_overhead_pct")),
            }
        )
    return pd.DataFrame(rows)


def shared_columns(table: pd.DataFrame, columns: Sequence[str] = ("dataset", "student")) -> dict:
    """``{column: value}`` of the ``columns`` every row shares (the page puts them in the
    caption instead of a column: the table is wide)."""
    return {c: table[c].iloc[0] for c in columns if c in table and table[c].nunique() == 1}


#: The columns of Compare's first table, in order; the rest (the training split, the teacher's
#: calibration, method facts) go to a second one: with all 15 side by side the table scrolled
#: sideways on a 1,400 px screen.
RUN_TABLE_MAIN = (
    "run",
    "dataset",
    "objective",
    "student",
    "accuracy",
    "agreement",
    "KL",
    "ECE",
    "selection acc.",
    "teacher accuracy",
    "worst latent acc.",
)


def split_run_table(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``run_table``'s columns as (main, more): the main ones in ``RUN_TABLE_MAIN`` order,
    the others after the run's name (an empty frame when there are none)."""
    main = [c for c in RUN_TABLE_MAIN if c in table.columns]
    rest = [c for c in table.columns if c not in RUN_TABLE_MAIN]
    return table[main], table[["run", *rest]] if rest else pd.DataFrame()


def method_facts_table(
    runs: Sequence[Mapping[str, Any]], labels: Mapping[str, str]
) -> pd.DataFrame:
    """Method-specific facts a run recorded (``metrics["method"]``), one row per run that has
    any (empty for hard, kd and lelp runs)."""
    facts = {
        labels[r["run_id"]]: {k: _fmt(v) for k, v in (r["metrics"].get("method") or {}).items()}
        for r in runs
        if r["metrics"].get("method")
    }
    return pd.DataFrame.from_dict(facts, orient="index")


def latent_accuracy_table(
    runs: Sequence[Mapping[str, Any]], labels: Mapping[str, str]
) -> pd.DataFrame:
    """Test accuracy (%, 1 place) per latent subclass: one row per ``column = value``, one
    column per run (empty when no run recorded per-subclass accuracy)."""
    per: dict[tuple[str, str], dict[str, float]] = {}
    for r in runs:
        for col, vals in (r["metrics"].get("student", {}).get("per_subclass") or {}).items():
            for v, acc in vals.items():
                per.setdefault((col, v), {})[labels[r["run_id"]]] = round(float(acc), 1)
    df = pd.DataFrame.from_dict(per, orient="index")
    df.index = [f"{c} = {v}" for c, v in per]
    return df


def disagreement_table(
    y: np.ndarray,
    teacher_pred: np.ndarray,
    student_pred: np.ndarray,
    label_names: Sequence[str],
    texts: Sequence[str],
) -> pd.DataFrame:
    """The rows where student and teacher predict different classes: row id, label, both
    predictions and the row's text."""
    dis = np.flatnonzero(np.asarray(student_pred) != np.asarray(teacher_pred))
    return pd.DataFrame(
        {
            "row": dis,
            "label": [label_names[int(y[i])] for i in dis],
            "teacher": [label_names[int(teacher_pred[i])] for i in dis],
            "student": [label_names[int(student_pred[i])] for i in dis],
            "text": [texts[int(i)] for i in dis],
        }
    )
