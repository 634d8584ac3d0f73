"""Teacher kind ``arrays``: H, Z and W computed elsewhere, read from ``.npz`` or Parquet
(W and b as ``.npy`` sidecars) without unpickling, and validated."""

from __future__ import annotations

import struct
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TeacherSpec
from ..types import Dataset, TeacherOutputs
from .common import ROW_BLOCK, HSink, TeacherError, _outputs


def _sidecar(path: Path, what: str) -> Path:
    return path.with_name(f"{path.stem}.{what}.npy")


def _check_finite(name: str, a: Any) -> None:
    """Count NaN and inf in blocks of rows, so a memory-mapped H is never copied whole."""
    bad = 0
    for i in range(0, max(1, a.shape[0]) if a.ndim else 1, ROW_BLOCK):
        block = np.asarray(a[i : i + ROW_BLOCK] if a.ndim else a)
        bad += int(block.size - np.count_nonzero(np.isfinite(block)))
    if bad:
        raise TeacherError(
            f"{name} has {bad} non-finite values (NaN or inf); recompute the teacher outputs "
            "or drop those rows from the dataset and the file"
        )


class _Rows:
    """Rows ``idx`` of ``a``, gathered a block at a time when read (a holdout's share of a
    memory-mapped H without a copy of all of it)."""

    def __init__(self, a: Any, idx: np.ndarray) -> None:
        self.a, self.idx = a, np.asarray(idx)
        self.shape = (len(self.idx), *a.shape[1:])
        self.ndim, self.dtype = len(self.shape), a.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        return np.asarray(self.a[self.idx[rows]])


def _times_wt(h: Any, W: np.ndarray) -> np.ndarray:
    """``h @ W.T`` (n, C) in blocks of rows: the product is small, a float64 copy of h is not."""
    if h.shape[0] <= ROW_BLOCK and isinstance(h, np.ndarray):
        return h @ W.T
    blocks = [np.asarray(h[i : i + ROW_BLOCK]) @ W.T for i in range(0, h.shape[0], ROW_BLOCK)]
    return np.concatenate(blocks) if blocks else np.zeros((0, W.shape[0]))


def _npz_member(zf: zipfile.ZipFile, path: Path, member: str) -> np.ndarray | None:
    """An uncompressed ``.npy`` member of an ``.npz`` as a read-only memmap, or None when it
    cannot be mapped (compressed, Fortran order, objects, empty), and np.load reads it.

    Why: ``np.savez`` stores members uncompressed, so a 1.6M x 384 H can be read in blocks
    from the file instead of loaded whole.
    """
    info = zf.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            return None
        n_name, n_extra = struct.unpack("<HH", local[26:30])
        fh.seek(info.header_offset + 30 + n_name + n_extra)
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                return None
        except ValueError:
            return None
        offset = fh.tell()
    if fortran or dtype.hasobject or int(np.prod(shape)) == 0:
        return None
    if offset + int(np.prod(shape)) * dtype.itemsize > path.stat().st_size:
        return None
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset)


def _read_npz(path: Path) -> dict[str, Any]:
    """Every array of the file: uncompressed members memory-mapped, the rest loaded."""
    mapped: dict[str, Any] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                key = member.removesuffix(".npy")
                mapped[key] = _npz_member(zf, path, member) if member.endswith(".npy") else None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        mapped = {}  # np.load below says what is wrong
    try:
        with np.load(path, allow_pickle=False) as f:
            return {
                k: mapped[k] if mapped.get(k) is not None else np.asarray(f[k]) for k in f.files
            }
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


def _split_holdout_arrays(arrs: dict[str, Any], dataset: Dataset) -> dict[str, Any]:
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
    full = arrs["Z_train"]
    out["Z_train"], out["Z_dev"] = full[keep], full[sel]
    out["H_train"], out["H_dev"] = _Rows(arrs["H_train"], keep), _Rows(arrs["H_train"], sel)
    return out


def _compute_arrays(dataset: Dataset, spec: TeacherSpec, sink: HSink) -> TeacherOutputs:
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
    H: dict[str, Any] = {}  # memmaps or row views, copied in blocks by the sink
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
        b = (Z["train"] - _times_wt(H["train"], W)).mean(0)
        meta["b_estimated"] = True
    resid = max(float(np.abs(Z[s] - (_times_wt(H[s], W) + b)).max(initial=0.0)) for s in Z)
    meta["z_residual_max"] = resid
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    return _outputs(dataset, H, Z, W, b, meta, sink)
