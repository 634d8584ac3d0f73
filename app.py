"""lelp-studio: the Streamlit entry point.

Declares the pages, draws the shared sidebar (workspace, current dataset and teacher) so its
values survive page switches, then runs the chosen page. Pages are thin scripts in pages/;
all data, math and storage live in core/.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

import ui
from lelp_studio.store import WorkspaceError

# A local icon: a Material icon as page_icon makes the browser fetch it from Google's font CDN.
ICON = Path(__file__).resolve().parent / "assets" / "icon.png"
st.set_page_config(layout="wide", page_title="lelp-studio", page_icon=str(ICON))
# Declared before anything else runs: this call is also what makes Streamlit stop routing by
# the pages/ folder (see ui/navigation.py for what happens when a page runs first).
pg = st.navigation(ui.app_pages())
ui.init_session()


def _current(box: DeltaGenerator) -> None:
    """Write the dataset and teacher in use into the sidebar ``box`` (an st.empty)."""
    ds, t = ui.dataset_spec(), ui.teacher_spec()
    teacher_desc = t.kind + (f" ({t.mode})" if t.kind == "minilm" else "")
    if t.path:
        teacher_desc += f": {t.path}"
    with box.container():
        st.caption(f"**Dataset:** {ds.source}  \n**Teacher:** {teacher_desc}")
        if note := st.session_state.get(ui.CHOICES_NOTE):  # the remembered choice was unusable
            st.warning(note)


with st.sidebar:
    st.text_input(
        "Workspace folder",
        key="ws_root",
        help="Folder holding the catalogue, cached embeddings, specs and runs. The CLI and "
        "job workers use the same folder (env LELP_WORKSPACE).",
    )
    current = st.empty()
    st.caption("Change them on the *Data & teacher* page.")

try:
    ui.workspace().check_catalogue()  # also damage that happens while the app runs
except WorkspaceError as err:  # said here, where the folder is typed, not on some page below
    st.sidebar.error(str(err))
    if not ui.offer_repair(err):
        st.error(
            f"{err}\n\nFix the **Workspace folder** in the sidebar, or clear it for the default."
        )
    st.stop()

# Written before the page (a page that stops early draws nothing after st.stop()) and again
# after it, since the Data & teacher page may have just changed them.
_current(current)
pg.run()
_current(current)
