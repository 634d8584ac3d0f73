"""Session state shared by the pages: workspace, dataset and teacher choices, and widget
values that survive a page switch.

Session keys shared by pages (no page prefix): ``ws_root``, ``dataset_spec``,
``teacher_spec``, ``subclass_spec``, ``tau``, ``inspect_row``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from lelp_studio import doctor
from lelp_studio.config import DatasetSpec, SubclassSpec, TeacherSpec
from lelp_studio.store import (
    Choices,
    Workspace,
    WorkspaceError,
    default_root,
    load_choices,
    save_choices,
)

from .navigation import keep_app_in_charge

Progress = Callable[[int, int, str], None]


def minilm_available() -> bool:
    """True when the bundled MiniLM encoder can be loaded offline."""
    try:
        # Imported here: teachers loads torch, which the app's first paint need not wait for.
        from lelp_studio.teachers import minilm_path

        return os.path.isdir(minilm_path())
    except Exception:  # noqa: BLE001 - any failure means "fall back to digits-bin"
        return False


def default_specs() -> tuple[DatasetSpec, TeacherSpec]:
    """The demo the app opens on: text-demo + frozen MiniLM, else digits-bin + its MLP.

    ``LELP_APP_DEMO=digits-bin`` forces the light demo (used by quick tests and slow CPUs).
    """
    forced = os.environ.get("LELP_APP_DEMO", "")
    if forced != "digits-bin" and minilm_available():
        return DatasetSpec(source="text-demo"), TeacherSpec(kind="minilm", mode="frozen")
    return DatasetSpec(source="digits-bin"), TeacherSpec(kind="digits-mlp")


def default_teacher_for(ds: DatasetSpec, is_text: bool) -> TeacherSpec:
    if is_text and minilm_available():
        return TeacherSpec(kind="minilm", mode="frozen")
    return TeacherSpec(kind="digits-mlp" if not is_text else "minilm")


def init_session() -> None:
    """Initialise the shared keys once per session (setdefault keeps user choices).

    Called by app.py and again by every page (a page run by itself, as AppTest does with a
    page file, still has its keys). First of all it hands a page that Streamlit ran without
    app.py to app.py (ui/navigation.py)."""
    keep_app_in_charge()
    ss = st.session_state
    ss.setdefault("ws_root", os.environ.get("LELP_WORKSPACE", "workspace"))
    if "dataset_spec" not in ss or "teacher_spec" not in ss:  # a new session
        start = _start_choices()
        ss.setdefault("dataset_spec", start.dataset.model_dump(mode="json"))
        ss.setdefault("teacher_spec", start.teacher.model_dump(mode="json"))
    ss.setdefault("subclass_spec", SubclassSpec().model_dump(mode="json"))
    ss.setdefault("tau", 1.0)
    ss.setdefault("inspect_row", 0)
    kept = ss.setdefault(_KEPT, {})
    for key in kept:  # see remember()
        if key in ss:
            kept[key] = ss[key]
        ss[key] = kept[key]


_KEPT = "_kept_widget_values"
#: One line about the remembered choice that could not be used (the sidebar shows it).
CHOICES_NOTE = "_choices_note"


def _ws_root() -> Path:
    return Path(st.session_state.get("ws_root") or default_root())


def _start_choices() -> Choices:
    """A new session opens on the dataset and teacher last chosen in its workspace (after a
    restart too), else on the demo. A remembered choice that cannot be read is ignored with a
    one-line note."""
    try:
        got = load_choices(_ws_root())
    except WorkspaceError as err:
        st.session_state[CHOICES_NOTE] = str(err)
        got = None
    return got if got is not None else Choices(*default_specs())


def commit_choices(dataset: DatasetSpec | None = None, teacher: TeacherSpec | None = None) -> bool:
    """Make ``dataset`` / ``teacher`` the ones every page uses, and remember them in the
    workspace for the next session. True when either changed (the caller reruns, so the
    sidebar names the new choice at once, not after the teacher is computed)."""
    ss = st.session_state
    changed = False
    if dataset is not None and spec_json(dataset) != spec_json(dataset_spec()):
        ss["dataset_spec"] = dataset.model_dump(mode="json")
        changed = True
    if teacher is not None and spec_json(teacher) != spec_json(teacher_spec()):
        ss["teacher_spec"] = teacher.model_dump(mode="json")
        changed = True
    if changed:
        try:
            save_choices(_ws_root(), Choices(dataset_spec(), teacher_spec()))
            ss.pop(CHOICES_NOTE, None)
        except WorkspaceError as err:
            ss[CHOICES_NOTE] = str(err)
    return changed


def remember(key: str, default: Any) -> Any:
    """``setdefault`` for a widget key whose value must survive a visit to another page.

    Streamlit deletes a widget's value at the end of a run that does not draw it, and the
    Distill page's self-refreshing job list (a fragment) drops them too, so pages forgot their
    settings (epochs, run name, file path, column mapping) when the user opened another page.
    Remembered keys keep a copy of their last value in a plain session key; ``init_session``,
    at the top of every page, refreshes that copy and writes it back, which both re-saves the
    key (Streamlit's documented way to keep it) and restores one that was dropped. Only value
    widgets may be remembered: buttons, uploads and charts cannot be set through state.
    """
    ss = st.session_state
    kept = ss.setdefault(_KEPT, {})
    if key not in ss:
        ss[key] = kept.get(key, default)
    kept[key] = ss[key]
    return ss[key]


def forget_on_dataset_change(page: str, keys: Sequence[str], prefixes: Sequence[str] = ()) -> None:
    """Drop a page's per-dataset choices when the dataset changed since the page last ran,
    so its widgets start from their defaults (``remember`` sets them again).

    Why: "Methods to compare" chosen on the demo carried over to amazon_multidomain and
    refitted UMAP there on every change (issue 18). ``keys`` are dropped by name and
    ``prefixes`` by start (per-class widgets such as ``sub_dirs_0``); the first visit drops
    nothing, so values preset before it (tests, the bench) stand."""
    ss = st.session_state
    marker, now = f"_{page}_dataset", spec_json(dataset_spec())
    before = ss.get(marker)
    ss[marker] = now
    if before is None or before == now:
        return
    kept = ss.setdefault(_KEPT, {})
    gone = [k for k in list(ss.keys()) + list(kept) if k in keys or k.startswith(tuple(prefixes))]
    for k in set(gone):
        kept.pop(k, None)
        if k in ss:
            del ss[k]


def dataset_spec() -> DatasetSpec:
    return DatasetSpec.model_validate(st.session_state["dataset_spec"])


def teacher_spec() -> TeacherSpec:
    return TeacherSpec.model_validate(st.session_state["teacher_spec"])


def subclass_spec() -> SubclassSpec:
    return SubclassSpec.model_validate(st.session_state["subclass_spec"])


def spec_json(spec: Any) -> str:
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True)


@st.cache_resource(show_spinner=False)
def workspace_at(root: str) -> Workspace:
    return Workspace(root)


def workspace() -> Workspace:
    return workspace_at(str(st.session_state.get("ws_root") or default_root()))


def offer_repair(err: Exception) -> bool:
    """For a damaged workspace, show ``lelp doctor``'s findings and how to repair it; False
    when ``err`` is not damage (an unwritable folder, say). The repair stays a command: it
    moves files and must not race the app's own reads."""

    root = str(st.session_state.get("ws_root") or default_root())
    if "damaged" not in str(err) and "doctor" not in str(err):
        return False
    findings, _ = doctor.safe_check(root)
    st.error(f"Workspace `{root}`: {doctor.summary(findings)}.")
    for f in findings:
        st.markdown(f"- {f.line()}")
    st.info(
        f"Repair it with `lelp doctor --repair -w {root}` (damaged files are moved to "
        "quarantine/, the catalogue is rebuilt from the saved run, spec and teacher files), "
        "then reload this page."
    )
    return True
