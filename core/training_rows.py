"""The rows a student trains on, and what the teacher gives for them.

Two sets: the labeled training rows, which every objective trains on, and, for an objective
that ``uses_transfer`` (every distillation objective), the transfer rows after them, with
y = -1 (``types.TRANSFER``). Why here and not in ``pipeline``: the CLI's ``lelp subclasses``,
the app's previews and training all read pseudo-subclasses and classes through these
functions, so each row has one class and one target wherever it is shown.

Choices (see also ``data/transfer.py``):

- Pseudo-subclasses are fitted on the labeled training rows only (class per
  ``subclasses.class_source``), so the app's preview (the Subspaces page) shows exactly the
  fit training uses and the fit costs the same however large the transfer set; transfer
  rows get targets from that fit, and their class, where one is needed (assignment,
  clustering methods' own class, ReAugKD's projection, Subclass Distillation's head), is the
  teacher's argmax (../shared/LELP.md, Inputs). The LELP targets of a row do not depend on
  its class (step 5), so this choice changes only which rows estimate the directions.
- H of labeled and transfer rows is stacked as a ``types.RowStack``: no copy of the
  float16 memmaps; Z, y and the targets are small ((n, C) and (n, sum S_c)) and are copied.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import ConfigError, SubclassSpec
from .objectives import Objective, TeacherData
from .store import Workspace
from .subclasses import (
    class_ids,
    fit_subclasser,
    new_row_targets,
    recovery_scores,
    spec_targets,
    spec_targets_and_assignment,
)
from .types import TRANSFER, UNLABELED, Dataset, RowStack, Split, TeacherOutputs


def class_labels(
    spec: SubclassSpec, out: TeacherOutputs, dataset: Dataset, split: str
) -> np.ndarray:
    """The class that defines each class-conditional set: ground truth or teacher argmax
    (``spec.class_source``); an unlabeled (transfer) row always takes the teacher's argmax."""
    return class_ids(np.asarray(dataset.splits[split].y), out.Z[split], spec.class_source)


def manual_groups(ws: Workspace, dataset: Dataset) -> dict[str, np.ndarray]:
    """The lasso groups saved for ``dataset``: its own, plus groups saved before the
    selection split existed (keyed by the dataset without its holdout), their training-row
    ids mapped to the new train split (rows that moved to the holdout dropped). Keyed by
    the labeled dataset (``Dataset.labeled``): a transfer set added later keeps them."""
    groups = ws.list_manual_groups(dataset.labeled().fingerprint())
    old, rows = dataset.before_holdout, dataset.holdout_rows
    if old is None or rows is None:
        return groups
    keep = rows[0]
    for name, ids in ws.list_manual_groups(old.labeled().fingerprint()).items():
        if name in groups:
            continue
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(keep, ids)
        ok = (pos < len(keep)) & (keep[np.minimum(pos, len(keep) - 1)] == ids)
        groups[name] = pos[ok]
    return groups


def dataset_fps(dataset: Dataset) -> set[str]:
    """Fingerprints a run of this dataset may carry: its own, its labeled part's (a run made
    with another transfer set, or none, scores on the same labeled splits) and, for runs
    from before the selection split, the dataset without its holdout (same test split)."""
    fps = {dataset.fingerprint(), dataset.labeled().fingerprint()}
    if dataset.before_holdout is not None:
        fps |= {
            dataset.before_holdout.fingerprint(),
            dataset.before_holdout.labeled().fingerprint(),
        }
    return fps


def same_data(run: dict[str, Any], dataset: Dataset) -> bool:
    """Whether ``run`` was scored on ``dataset``'s labeled splits (whatever transfer set)."""
    arts = run.get("artifacts") or {}
    fps = dataset_fps(dataset)
    return arts.get("dataset_fp") in fps or arts.get("labeled_fp") in fps


def manual_assignment(
    ws: Workspace, dataset: Dataset, names: list[str] | None = None
) -> np.ndarray:
    """Group id per training row from the manual groups saved for this dataset (lasso
    selections on the Embedding map); -1 for rows in no group. ``names`` picks groups (all
    when None); a row in several groups belongs to the last one named."""
    groups = manual_groups(ws, dataset)
    chosen = list(groups) if names is None else list(names)
    missing = [n for n in chosen if n not in groups]
    if missing or not chosen:
        raise ConfigError(
            f"subclasses.method 'manual': no saved group named {missing or chosen!r} for "
            f"dataset {dataset.name}; saved groups: {sorted(groups) or 'none'} (lasso points "
            "on the Embedding map and save them, or fix subclasses.manual_groups)"
        )
    a = np.full(len(dataset.splits["train"]), -1, dtype=np.int64)
    for gi, name in enumerate(chosen):
        a[np.asarray(groups[name], dtype=np.int64)] = gi
    return a


def oracle_latent(spec: SubclassSpec, dataset: Dataset, split: str = "train") -> np.ndarray | None:
    """The ``split``'s values of the latent column the "oracle" method groups by (None for
    the other methods): ``spec.latent_col``, else the dataset's first latent column."""
    if spec.method != "oracle":
        return None
    rows = dataset.splits[split]
    col = spec.latent_col or (dataset.latent_columns[0] if dataset.latent_columns else None)
    if col is None or col not in rows.latent:
        raise ConfigError(
            f"subclasses.method 'oracle' needs a latent column; got latent_col={col!r}, "
            f"dataset has {dataset.latent_columns or 'none'}"
        )
    return rows.latent[col]


def fit_subclasses(
    spec: SubclassSpec,
    out: TeacherOutputs,
    dataset: Dataset,
    manual: np.ndarray | None = None,
) -> Any:
    """Fit the pseudo-subclass builder a spec describes on the labeled training rows (H as
    cached, a float16 memmap: the builders cast one block of rows at a time)."""
    y = class_labels(spec, out, dataset, "train")
    latent = oracle_latent(spec, dataset)
    return fit_subclasser(spec, out.H["train"], y, W=out.W, latent=latent, manual=manual)


#: Transfer rows per block of targets: each block's float32 temporaries are freed before
#: the next, so their memory does not grow with the transfer set.
TARGET_BLOCK = 65_536
#: The dtype of a run's targets once it has transfer rows. Why float16: at a million rows
#: the (n, sum S_c) targets are the one training array that grows with the data and its
#: width; float16 halves it (float32 is cast per batch in the loss, ``losses.lelp``). A
#: float16 probability is within 2^-11 (0.05%) of the float32 one relatively, and below
#: 6e-8 it is 0, a vanishing term of the cross-entropy either way.
TRANSFER_TARGETS = np.float16


def subclass_targets(
    out: TeacherOutputs,
    dataset: Dataset,
    spec: SubclassSpec,
    tau: float,
    sub: Any = None,
    *,
    manual: np.ndarray | None = None,
    transfer: bool = False,
) -> tuple[np.ndarray, list[int], dict[str, Any], Any]:
    """Training targets ``(n, sum S_c)`` for ``spec`` at teacher temperature ``tau``: the
    labeled training rows, then (``transfer``) the transfer rows.

    Returns ``(targets, sizes, recovery, fitted subclasser)``; pass the subclasser back as
    ``sub`` to reuse the fit for another tau or beta (the fit depends on neither). With
    transfer rows, the targets are float16 (``TRANSFER_TARGETS``) and the transfer rows'
    are computed in blocks of ``TARGET_BLOCK`` rows (no float32 (n, sum S_c) array is held
    beyond the labeled rows'); without, float32 as before.
    ``recovery`` holds ARI/NMI of the labeled rows' pseudo-subclasses against each latent
    column (transfer rows have no known latent values to score against).
    """
    if sub is None:
        sub = fit_subclasses(spec, out, dataset, manual=manual)
    H_train = out.H["train"]  # as cached: no float32 copy of H (cast per block)
    Z_train = np.asarray(out.Z["train"])
    recovery: dict[str, Any] = {}
    if not dataset.latent_columns:
        targets = spec_targets(sub, spec, H_train, Z_train, tau)
    else:
        train_split = dataset.splits["train"]
        y_cls = class_labels(spec, out, dataset, "train")
        targets, assign = spec_targets_and_assignment(sub, spec, H_train, Z_train, tau, y_cls)
        recovery = {
            col: recovery_scores(assign, y_cls, train_split.latent[col])
            for col in dataset.latent_columns
        }
    if transfer and dataset.n_transfer:
        n = len(targets)
        both = np.empty((n + dataset.n_transfer, targets.shape[1]), dtype=TRANSFER_TARGETS)
        both[:n] = targets
        del targets
        H_t, Z_t = out.H[TRANSFER], out.Z[TRANSFER]
        latent = oracle_latent(spec, dataset, TRANSFER)
        for start in range(0, dataset.n_transfer, TARGET_BLOCK):
            rows = slice(start, start + TARGET_BLOCK)
            both[n + start : n + start + TARGET_BLOCK] = new_row_targets(
                sub, spec, H_t[rows], np.asarray(Z_t[rows]), tau,
                latent=None if latent is None else latent[rows],
            )  # fmt: skip
        targets = both
    return targets, list(sub.sizes_), recovery, sub


def uses_transfer(objective: Objective | type[Objective], dataset: Dataset) -> bool:
    """Whether a run of ``objective`` trains on ``dataset``'s transfer rows."""
    return bool(objective.uses_transfer and dataset.n_transfer)


def teacher_arrays(
    out: TeacherOutputs, dataset: Dataset, transfer: bool
) -> tuple[Any, np.ndarray, np.ndarray]:
    """``(H, Z, y)`` of the training rows: the labeled ones, then (``transfer``) the transfer
    rows with y = -1. H stays as cached (a ``RowStack`` of the two memmaps, no copy)."""
    H: Any = out.H["train"]
    Z = np.asarray(out.Z["train"], dtype=np.float32)
    y = np.asarray(dataset.splits["train"].y)
    if not (transfer and dataset.n_transfer):
        return H, Z, y
    n_t = dataset.n_transfer
    H = RowStack([H, out.H[TRANSFER]])
    Z = np.concatenate([Z, np.asarray(out.Z[TRANSFER], dtype=np.float32)])
    y = np.concatenate([y, np.full(n_t, UNLABELED, dtype=y.dtype)])
    return H, Z, y


def training_data(
    out: TeacherOutputs,
    dataset: Dataset,
    transfer: bool,
    *,
    targets: Any = None,
    sizes: list[int] | None = None,
    select: str = "dev",
) -> TeacherData:
    """The cached teacher arrays an objective sets up from (``teacher_arrays``' rows; the
    ``select`` split as its eval arrays), with pseudo-subclass targets of the same rows."""
    H, Z, y = teacher_arrays(out, dataset, transfer)
    return TeacherData(
        Z=Z,
        y=y,
        H=H,  # as cached (a memmap or a stack of them): objectives that need it convert it
        targets=targets,
        sizes=sizes,
        H_eval=out.H[select],
        Z_eval=np.asarray(out.Z[select], dtype=np.float32),
        y_eval=np.asarray(dataset.splits[select].y),
    )


def training_split(dataset: Dataset) -> Split:
    """The labeled training rows and then the transfer rows as one split (texts only: a
    transfer set needs a text dataset), for encoding the student's inputs once."""
    train, rest = dataset.splits["train"], dataset.splits.get(TRANSFER)
    if rest is None:
        return train
    return Split(
        y=np.concatenate([train.y, rest.y]),
        texts=list(train.texts or []) + list(rest.texts or []),
    )


def data_used(dataset: Dataset, transfer: bool) -> dict[str, Any]:
    """What a run trained on, for its record and Compare: ``labeled`` and ``transfer`` row
    counts, plus the dataset's transfer facts (``Dataset.transfer_info``) when it has any."""
    used: dict[str, Any] = {
        "labeled": len(dataset.splits["train"]),
        "transfer": dataset.n_transfer if transfer else 0,
    }
    if dataset.transfer_info:
        used["transfer_info"] = dict(dataset.transfer_info)
    return used
