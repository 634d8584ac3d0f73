"""Compare's last sections: download a run's student as a zip, or export it (ONNX, HF) as
``lelp export`` does."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import streamlit as st

from lelp_studio import analysis
from lelp_studio.errors import user_errors
from lelp_studio.store import Workspace

_ERRORS = (*user_errors(), ValueError)


@st.cache_data(show_spinner=False, max_entries=8)
def _zip_dir(path: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(Path(path).rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(path))
    return buf.getvalue()


def show_student_files(ws: Workspace, run: dict[str, Any], label: str | None = None) -> None:
    """The download button (never a zip without the weights) and the export form of ``run``,
    named by ``label`` (``analysis.run_labels``: the settings that tell it apart)."""
    ss = st.session_state
    focus = run["run_id"]
    label = label or str(run["name"])
    st.subheader("Download the student")
    sdir = ws.artifact_path(run, "student_dir")
    missing = analysis.student_files_missing(sdir)
    if not missing:
        st.download_button(
            f"Download {label} (safetensors + config)",
            _zip_dir(sdir),
            file_name=f"{focus}-student.zip",
            mime="application/zip",
            key="cmp_download",
            help="The student's safetensors weights and its JSON config; load with "
            "lelp_studio.students.load_student.",
        )
    else:  # never a zip without the weights
        st.warning(
            f"No download: {missing}. Re-run it from the Distill page (or `lelp distill`); "
            "`lelp doctor` lists every run in this state."
        )

    # A folder other tools load (lelp_studio.export, the same as `lelp export`).
    st.subheader("Export the student")
    kind = run["config"].get("student", {}).get("kind")
    formats = ["onnx", "hf"] if kind == "transformer" else ["onnx"]
    if ss.get("cmp_export_format") not in formats:
        ss["cmp_export_format"] = formats[0]
    e1, e2 = st.columns([1, 3])
    fmt = e1.selectbox(
        "Format",
        formats,
        key="cmp_export_format",
        help="onnx: any student, class logits out, dynamic batch (and sequence) axes. hf: a "
        "transformers folder (config, safetensors, tokenizer), for transformer students only.",
    )
    # The folder follows the run and format until the user types their own.
    default_dir = str(ws.root / "exports" / f"{focus}-{fmt}")
    if ss.get("cmp_export_dir") in (None, "", ss.get("cmp_export_dir_default")):
        ss["cmp_export_dir"] = default_dir
    ss["cmp_export_dir_default"] = default_dir
    out_dir = e2.text_input(
        "Folder",
        key="cmp_export_dir",
        help="Where the export is written (with a README.md model card); it must not exist or be "
        "empty unless you tick Replace.",
    ).strip()
    force = st.checkbox(
        "Replace a non-empty folder", key="cmp_export_force", help="Same as `lelp export --force`."
    )
    if st.button(
        f"Export {label} as {fmt}",
        key="cmp_export",
        help=f"Same as `lelp export {focus} --format {fmt} --out <folder>`.",
    ):
        try:
            if not out_dir:
                raise ValueError("no export folder given; type the folder to write the export to")
            from lelp_studio.export import export_run

            where = export_run(ws, run, fmt, Path(out_dir).expanduser(), force)
        except (*_ERRORS, ImportError, OSError) as err:
            st.error(str(err))
        else:
            st.success(f"Exported to `{where}` (model card: `{Path(where) / 'README.md'}`).")
