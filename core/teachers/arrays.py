"""Teacher kind ``arrays``: H, Z and W computed elsewhere, read from ``.npz`` or Parquet
(W and b as ``.npy`` sidecars) without unpickling, and validated."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import TeacherSpec
from ..types import Dataset, TeacherOutputs
from .common import TeacherError, _outputs


def _sidecar(path: Path, what: str) -> Path:
    return path.with_name(f"{path.stem}.{what}.npy")


def _check_finite(name: str, a: np.ndarray) -> None:
    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise TeacherError(
            f"{name} has {bad} non-finite values (NaN or inf); recompute the teacher outputs "
            "or drop those rows from the dataset and the file"
        )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: np.asarray(f[k]) for k in f.files}
    except ValueError as err:
        raise TeacherError(
            f"{path}: cannot read without unpickling ({err}); save plain numeric arrays with "
            "np.savez"
        ) from None
    except (OSError, EOFError) as err:
        raise TeacherError(f"{path}: not a readable .npz file ({err})") from None


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise TeacherError(f"{path}: not a readable numeric .npy file ({err})") from None


def _read_parquet(path: Path, splits: Sequence[str]) -> dict[str, np.ndarray]:
    import pandas as pd

    try:
        df = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several unrelated types
        raise TeacherError(f"{path}: not a readable Parquet file ({err})") from None
    emb = sorted((c for c in df.columns if str(c).startswith("emb_")), key=lambda c: int(c[4:]))
    logit = sorted((c for c in df.columns if str(c).startswith("logit_")), key=lambda c: int(c[6:]))
    missing = [
        c for c, ok in (("split", "split" in df), ("emb_0", emb), ("logit_0", logit)) if not ok
    ]
    if missing:
        raise TeacherError(
            f"{path}: missing columns {missing}; expected 'split', 'emb_0..emb_{{d-1}}' and "
            f"'logit_0..logit_{{C-1}}' (columns are {list(df.columns)[:12]})"
        )
    w_path = _sidecar(path, "W")
    if not w_path.is_file():
        raise TeacherError(
            f"{path}: missing key 'W': the last-layer weights must sit next to it as "
            f"{w_path.name} (a (C, d) array saved with np.save)"
        )
    out: dict[str, np.ndarray] = {"W": _load_npy(w_path)}
    b_path = _sidecar(path, "b")
    if b_path.is_file():
        out["b"] = _load_npy(b_path)
    split_col = df["split"].astype(str)
    for s in splits:
        rows = df[split_col == s]
        if len(rows):
            out[f"H_{s}"] = rows[emb].to_numpy(dtype=np.float64)
            out[f"Z_{s}"] = rows[logit].to_numpy(dtype=np.float64)
    return out


def _split_holdout_arrays(arrs: dict[str, np.ndarray], dataset: Dataset) -> dict[str, np.ndarray]:
    """Arrays given for the train split as loaded, cut like the selection holdout cut train.

    Why: a file made before (or without knowing of) the selection split has H_train for every
    training row; the holdout's row indices map it onto the new train and dev splits.
    """
    rows = dataset.holdout_rows
    if rows is None or "H_dev" in arrs or "H_train" not in arrs or "Z_train" not in arrs:
        return arrs
    keep, sel = rows
    n = len(keep) + len(sel)
    if len(arrs["H_train"]) != n or len(arrs["Z_train"]) != n:
        return arrs  # the row-count check below names the problem
    out = dict(arrs)
    for a in ("H", "Z"):
        full = arrs[f"{a}_train"]
        out[f"{a}_train"], out[f"{a}_dev"] = full[keep], full[sel]
    return out


def _compute_arrays(dataset: Dataset, spec: TeacherSpec) -> TeacherOutputs:
    if not spec.path:
        raise TeacherError("teacher kind 'arrays' needs teacher.path: a .npz or .parquet file")
    path = Path(spec.path).expanduser()
    if not path.is_file():
        raise TeacherError(f"{path}: no such file; pass a .npz or .parquet with H, Z and W")
    t0 = time.perf_counter()
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrs = _read_npz(path)
    elif suffix in (".parquet", ".pq"):
        arrs = _read_parquet(path, list(dataset.splits))
    else:
        raise TeacherError(f"{path}: unknown suffix '{path.suffix}'; use .npz or .parquet")
    arrs = _split_holdout_arrays(arrs, dataset)
    need = ["W"] + [f"{a}_{s}" for s in dataset.splits for a in ("H", "Z")]
    absent = [k for k in need if k not in arrs]
    if absent:
        raise TeacherError(
            f"{path}: missing key(s) {absent}; the file has {sorted(arrs)}. Expected H_<split> "
            f"and Z_<split> for every split of the dataset ({list(dataset.splits)}) plus W"
        )
    for k, a in arrs.items():
        if not np.issubdtype(a.dtype, np.number):
            raise TeacherError(f"{path}: array '{k}' has dtype {a.dtype}; expected numbers")
        _check_finite(k, a)
    W = arrs["W"].astype(np.float64)
    if W.ndim != 2:
        raise TeacherError(f"{path}: W must be 2-D (C, d), got shape {W.shape}")
    C, d = W.shape
    if dataset.n_classes != C:
        raise TeacherError(
            f"{path}: W has {C} classes (rows) but dataset '{dataset.name}' has "
            f"{dataset.n_classes}; W must be (C, d) = ({dataset.n_classes}, d)"
        )
    H: dict[str, np.ndarray] = {}
    Z: dict[str, np.ndarray] = {}
    for s, split in dataset.splits.items():
        h, z = arrs[f"H_{s}"], arrs[f"Z_{s}"]
        if h.ndim != 2 or h.shape[1] != d:
            raise TeacherError(
                f"{path}: H_{s} has width {h.shape[1] if h.ndim == 2 else h.shape} but W has "
                f"width {d}; H must be (n, d) with the d of W (C, d)"
            )
        if z.ndim != 2 or z.shape[1] != C:
            raise TeacherError(
                f"{path}: Z_{s} has width {z.shape[1] if z.ndim == 2 else z.shape} but W has "
                f"{C} classes; Z must be (n, C)"
            )
        for name, a in ((f"H_{s}", h), (f"Z_{s}", z)):
            if a.shape[0] != len(split):
                raise TeacherError(
                    f"{path}: {name} has {a.shape[0]} rows but split '{s}' of the dataset has "
                    f"{len(split)}; rows must match the dataset's rows in order"
                )
        H[s], Z[s] = h, z
    meta: dict[str, object] = {
        "teacher": path.name,
        "kind": "arrays",
        "pooling": "given",
        "device": "none",
    }
    if "b" in arrs:
        b = arrs["b"].reshape(-1).astype(np.float64)
        if b.shape[0] != C:
            raise TeacherError(f"{path}: b has {b.shape[0]} values but W has {C} classes")
    else:
        # Best intercept for Z ~ H W^T + b: exact when Z was made that way.
        b = (Z["train"] - H["train"] @ W.T).mean(0)
        meta["b_estimated"] = True
    resid = max(float(np.abs(Z[s] - (H[s] @ W.T + b)).max(initial=0.0)) for s in Z)
    meta["z_residual_max"] = resid
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    return _outputs(dataset, H, Z, W, b, meta)
