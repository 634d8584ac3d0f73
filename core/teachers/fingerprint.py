"""The teacher fingerprint: what changes a teacher's outputs for a given dataset (the
workspace cache key)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..config import TeacherSpec
from ..types import hash_arrays
from .arrays import _sidecar
from .device import pick_device, resolve_precision
from .finetune import FINETUNE_LOOP_VERSION
from .minilm import _minilm_version

# Bump when a change here alters the outputs of an unchanged spec, so cached outputs refresh.
_TEACHER_CODE_VERSION = 1

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")
_CONFIG_NAMES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")


def _files_signature(paths: Sequence[Path]) -> list[str]:
    """Names, sizes and mtimes: cheap, and changes when a checkpoint is re-saved."""
    out = []
    for p in sorted(paths):
        st = p.stat()
        out.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    return out


def _folder_files(folder: Path) -> list[Path]:
    return [
        p
        for p in folder.iterdir()
        if p.is_file()
        and (p.suffix in _WEIGHT_SUFFIXES or p.suffix == ".json" or p.name in _CONFIG_NAMES)
    ]


def _arrays_files(path: Path) -> list[Path]:
    files = [path]
    for extra in (_sidecar(path, "W"), _sidecar(path, "b")):
        if extra.is_file():
            files.append(extra)
    return files


def teacher_fingerprint(spec: TeacherSpec) -> str:
    """Hash of everything that changes a teacher's outputs for a given dataset.

    Only the spec fields the kind uses are included (a batch size change does not invalidate
    frozen embeddings), plus the checkpoint files' names, sizes and mtimes for local paths and
    the bundled package version for MiniLM.
    """
    fields: dict[str, object] = {"kind": spec.kind, "code": _TEACHER_CODE_VERSION}
    if spec.kind in ("minilm", "hf"):
        # The precision the pass really runs at here ("auto" resolved on this machine): a
        # bf16 cache is never served for a float32 request or the other way round. float32
        # adds no field, which keeps the keys of caches written before precision existed.
        precision = resolve_precision(spec.precision, pick_device())
        if precision != "float32":
            fields["precision"] = precision
    if spec.kind == "minilm":
        fields.update(mode=spec.mode, max_length=spec.max_length, minilm=_minilm_version())
        fields["seed"] = spec.seed
        if spec.mode == "finetune":
            fields.update(epochs=spec.epochs, lr=spec.lr, batch_size=spec.batch_size)
            fields["loop"] = FINETUNE_LOOP_VERSION  # only fine-tuned keys move when it changes
    elif spec.kind == "hf":
        fields.update(
            path=spec.path, max_length=spec.max_length, trust_remote_code=spec.trust_remote_code
        )
        p = Path(spec.path).expanduser() if spec.path else None
        if p is not None and p.is_dir():
            fields["files"] = _files_signature(_folder_files(p))
    elif spec.kind == "arrays":
        fields["path"] = spec.path
        p = Path(spec.path).expanduser() if spec.path else None
        if p is not None and p.is_file():
            fields["files"] = _files_signature(_arrays_files(p))
    else:  # digits-mlp
        fields.update(hidden=spec.hidden, seed=spec.seed)
    return hash_arrays(fields)
