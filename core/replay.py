"""A finished run's learned objective state: saved beside the student, and replayed.

Why: ReAugKD's projection and query map are learned during the run; without them its
retrieval cannot be replayed later (Compare page). Safetensors only, never pickle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file
from torch import nn

from .config import RunConfig
from .data import load_dataset
from .objectives import Objective, ReAugKD, make
from .predict import embeddings
from .store import Workspace, atomic_path
from .students import encode_inputs, load_student, unwrap
from .teachers import load_tokenizer
from .types import Dataset, Split

METHOD_STATE_FILE = "method.safetensors"


def save_method_state(path_dir: str | os.PathLike[str], objective: Objective) -> Path | None:
    """Write ``objective.state_tensors()`` as ``path_dir/method.safetensors`` (atomic, like
    ``save_student``); returns the path, or None when the objective keeps no such state."""
    state = objective.state_tensors()
    if not state:
        return None
    out = Path(path_dir)
    out.mkdir(parents=True, exist_ok=True)
    dest = out / METHOD_STATE_FILE
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_path(dest) as tmp:
        save_file(tensors, str(tmp), metadata={"method": str(objective.name)})
    return dest


def load_method_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The tensors ``save_method_state`` wrote (on CPU). Never unpickles."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"load_method_state: {p} is missing; re-run the distillation to save the method's "
            "state (runs made before method state was saved have none)"
        )
    return load_file(str(p))


def method_state_path(ws: Workspace, run: dict[str, Any]) -> Path | None:
    """The run's saved method state file in ``ws``, or None (runs saved before it existed, or
    methods without learned state)."""
    path = ws.artifact_path(run, "method_state")
    return path if path is not None and path.is_file() else None


def load_reaugkd(ws: Workspace, run: dict[str, Any]) -> tuple[Any, ReAugKD]:
    """Rebuild a finished ReAugKD run: ``(student on CPU in eval mode, fitted ReAugKD)``.

    The student comes from its safetensors folder, P and B from ``method.safetensors``, and
    the knowledge base (keys ``normalize(P h_t)``, soft labels) from the CACHED teacher outputs
    of the run's ``teacher_key``, so the retrieval equals the one the run made.
    """
    cfg = RunConfig.model_validate(run["config"])
    rid = run.get("run_id", "?")
    if cfg.train.objective != "reaugkd":
        raise ValueError(
            f"load_reaugkd: run {rid} was trained with {cfg.train.objective!r}, not reaugkd"
        )
    state_path = method_state_path(ws, run)
    if state_path is None:
        raise FileNotFoundError(
            f"load_reaugkd: run {rid} has no saved method state ({METHOD_STATE_FILE}); it was "
            "made before ReAugKD's maps were saved: re-run it to replay its retrieval"
        )
    arts = run["artifacts"]
    student_dir = ws.artifact_path(run, "student_dir")
    if student_dir is None:
        raise FileNotFoundError(f"load_reaugkd: run {rid} has no saved student")
    student, _ = load_student(student_dir)
    method = make(cfg.train.objective, cfg.train)
    assert isinstance(method, ReAugKD)
    method.load_state_tensors(load_method_state(state_path))
    out = ws.load_teacher_outputs(arts["teacher_key"])
    if out is None:
        raise FileNotFoundError(
            f"load_reaugkd: the teacher outputs of run {rid} (key {arts['teacher_key']}) are not "
            "in the workspace any more; recompute them on the Teacher page (same dataset and "
            "teacher) to rebuild the knowledge base"
        )
    method.build_knowledge_base(out.H["train"], out.Z["train"])
    head = unwrap(student).head
    assert isinstance(head, nn.Linear)  # every student kind ends in a linear head
    h = int(head.in_features)
    if h != method.query.in_features:
        raise ValueError(
            f"load_reaugkd: the student's embedding has {h} dims but the saved query map takes "
            f"{method.query.in_features}; the run folder mixes files of different runs"
        )
    method.eval()
    return student, method


def reaugkd_neighbours(
    ws: Workspace,
    run: dict[str, Any],
    rows: Any,
    split: str,
    *,
    dataset: Dataset | None = None,
    loaded: tuple[Any, Any] | None = None,
    k: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """ReAugKD's real retrieval for ``rows`` of ``split``: ``(training-row indices (m, k),
    cosine similarities (m, k))``, nearest first, from ``method.neighbours`` on the student's
    embeddings of those rows. ``dataset``/``loaded`` (``load_reaugkd``'s result) skip
    reloading them; ``k`` defaults to the run's ``train.reaugkd.k``."""
    cfg = RunConfig.model_validate(run["config"])
    student, method = loaded if loaded is not None else load_reaugkd(ws, run)
    ds = dataset if dataset is not None else load_dataset(cfg.dataset)
    if split not in ds.splits:
        raise ValueError(f"reaugkd_neighbours: no split {split!r}; have {sorted(ds.splits)}")
    sp, idx = ds.splits[split], np.asarray(rows, dtype=int).reshape(-1)
    sub = Split(
        y=np.asarray(sp.y)[idx],
        texts=None if sp.texts is None else [sp.texts[i] for i in idx],
        features=None if sp.features is None else np.asarray(sp.features)[idx],
    )
    tokenizer = load_tokenizer(cfg.teacher) if ds.is_text else None
    inputs = encode_inputs(sub, tokenizer, cfg.student.max_length)
    emb = embeddings(student, inputs)
    return method.neighbours(emb, k or cfg.train.reaugkd.k)
