"""Nearest training rows by teacher embedding (Compare page, ReAugKD fallback view)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from ..metrics import softmax


def teacher_index(H_train: np.ndarray) -> NearestNeighbors:
    """A cosine ``NearestNeighbors`` over the teacher's train embeddings (n, d)."""
    return NearestNeighbors(metric="cosine", algorithm="brute").fit(H_train)


def nearest_rows(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` indexed rows nearest (cosine) to each query row: ``(indices (m, k), cosine
    similarities (m, k))``, nearest first; ``k`` is capped at the rows indexed. A stand-in
    for ReAugKD's own retrieval (learned projection + query map), which old runs lack; a
    train row's nearest neighbour is itself."""
    k = int(min(k, index.n_samples_fit_))
    dist, ind = index.kneighbors(np.asarray(queries), n_neighbors=k)
    return ind, 1.0 - dist


def neighbour_table(
    ind: np.ndarray,
    sim: np.ndarray,
    y_train: np.ndarray,
    z_train: np.ndarray,
    label_names: Sequence[str],
    texts: Sequence[str],
) -> pd.DataFrame:
    """One row per retrieved training row of one example: rank, row id, similarity (4
    places), its label, the teacher's label and soft labels ``softmax(z)`` (3 places, what
    the knowledge base holds) and its text."""
    ind = np.asarray(ind)
    probs = softmax(np.asarray(z_train)[ind])
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(ind) + 1),
            "train row": ind,
            "similarity": np.round(sim, 4),
            "label": [label_names[int(y_train[i])] for i in ind],
            "teacher label": [label_names[int(c)] for c in probs.argmax(1)],
            **{f"p({c})": np.round(probs[:, j], 3) for j, c in enumerate(label_names)},
            "text": [texts[i] for i in ind],
        }
    )
