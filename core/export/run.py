"""``export_run``: one finished run to a folder, built aside and moved into place whole."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..data import DataError, load_dataset
from ..store import Workspace
from ..students import WEIGHTS_FILE, unwrap
from .card import measured_cost, model_card, teacher_line
from .hf import save_tokenizer, write_hf
from .model import (
    FORMATS,
    MARKER,
    ONNX_FILE,
    ExportError,
    class_head,
    classifier,
    load_run_student,
    student_args,
)
from .onnx import check_onnx, example_inputs, export_onnx

#: Where the folder is chosen, in the CLI and the app (messages name both).
_WHERE = "--out in the CLI, the Folder field on Compare"


def _check_out(out: Path, force: bool) -> None:
    """Refuse a destination that exists and is not empty unless ``force`` and it holds a
    previous export: --force never deletes a folder this module did not write."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; choose a new or empty folder ({_WHERE})")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise ExportError(
            f"export folder {out} exists and is not empty; choose a new folder, or replace the "
            f"export in it ({_WHERE}; replacing: --force, or Compare's Replace box)"
        )
    if not (out / MARKER).is_file():
        raise ExportError(
            f"export folder {out} holds files that are not a lelp export (no {MARKER}); "
            f"only a previous export is ever replaced: choose a new folder ({_WHERE})"
        )


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished folder into place; a previous export there is replaced whole."""
    if out.is_dir():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _labels(cfg: RunConfig, n_classes: int) -> tuple[list[str], str]:
    """The dataset's class names (loaded from the run's source), or ``LABEL_i`` with a note
    when the source cannot be read any more."""
    try:
        names = [str(x) for x in load_dataset(cfg.dataset).label_names]
    except (DataError, OSError) as err:
        return [f"LABEL_{i}" for i in range(n_classes)], f"class names unavailable ({err})"
    if len(names) != n_classes:
        return [f"LABEL_{i}" for i in range(n_classes)], "the dataset changed since the run"
    return names, ""


def export_run(
    ws: Workspace,
    run: dict[str, Any],
    fmt: str,
    out_dir: str | os.PathLike[str],
    force: bool = False,
) -> Path:
    """Export ``run``'s student as ``fmt`` (``hf`` or ``onnx``) into ``out_dir``; returns it.

    The folder is built beside ``out_dir`` and moved into place only when complete (an ONNX
    graph that disagrees with PyTorch never lands). ``force`` replaces a previous export in
    ``out_dir``; a non-empty folder of anything else is always refused. Raises
    :class:`ExportError` for an unknown format, a run without usable weights, an hf export
    of a non-transformer student, or an occupied destination.
    """
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r} is not supported; choose one of: {', '.join(FORMATS)}")
    out = Path(out_dir).expanduser().resolve()
    _check_out(out, force)
    try:
        cfg = RunConfig.model_validate(run["config"])
    except ValueError as err:  # pydantic's ValidationError: a record from an older schema
        why = " ".join(str(err).split())[:160]
        raise ExportError(
            f"run {run.get('run_id')}: its recorded config no longer validates ({why}); "
            "re-run it with this version"
        ) from None
    kind = cfg.student.kind
    if fmt == "hf" and kind != "transformer":
        raise ExportError(
            f"run {run.get('run_id')} has a {kind!r} student; the hf format holds transformer "
            "students only. Supported formats for it: onnx"
        )
    student, meta = load_run_student(ws, run)
    student = unwrap(student).eval()
    if getattr(student, "kind", kind) != kind:
        raise ExportError(
            f"run {run.get('run_id')}: its config names a {kind} student but the saved weights "
            f"are a {student.kind} student; the run folder mixes runs: re-run it"
        )
    head = class_head(cfg, meta, int(student_args(student)["n_out"]))
    labels, label_note = _labels(cfg, head.n_classes)
    module = classifier(student, head)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        info: dict[str, Any] = {
            "format": fmt,
            "name": run.get("name") or run.get("run_id"),
            "run_id": run.get("run_id"),
            "student_kind": kind,
            "labels": labels,
            "head": asdict(head),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "teacher": teacher_line(ws, cfg, (run.get("artifacts") or {}).get("teacher_key")),
            "output": "logits: class log-probabilities at T = 1 (batch, C)",
            "folder": out.name,
        }
        if label_note:
            info["labels_note"] = label_note
        cost = measured_cost(ws, run)
        if cost:
            info["cost"] = cost
        names = ["x"] if kind == "mlp" else ["input_ids", "attention_mask"]
        info["inputs"] = (
            {"x": int(student_args(student)["in_dim"])}
            if kind == "mlp"
            else {"input_ids": "int64 (batch, sequence)", "attention_mask": "int64"}
        )
        if fmt == "onnx":
            export_onnx(module, example_inputs(student), tmp / ONNX_FILE, names)
            info["onnx_max_abs_diff"] = check_onnx(module, tmp / ONNX_FILE, student, names)
            files = [ONNX_FILE]
        else:
            files = write_hf(student, head, labels, tmp)
        if kind != "mlp":
            files += save_tokenizer(cfg, tmp)
        params = sum(int(p.numel()) for p in student.parameters())
        file_bytes = {f: (tmp / f).stat().st_size for f in files if (tmp / f).is_file()}
        student_file = ws.artifact_path(run, "student_dir")
        info["size"] = {
            "parameters": params,
            "file_bytes": file_bytes,
            "files_bytes": sum(file_bytes.values()),
            "student_safetensors_bytes": (student_file / WEIGHTS_FILE).stat().st_size
            if student_file is not None
            else None,
        }
        (tmp / "README.md").write_text(model_card(info, run, cfg, head), encoding="utf-8")
        (tmp / MARKER).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
        _check_out(out, force)  # again: another export may have landed meanwhile
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
