"""The app's pages, and the guard that keeps ``app.py`` in charge of them after a restart.

Streamlit treats a ``pages/`` folder beside the entrypoint as a legacy (v1) multipage app
until some session calls ``st.navigation``; from then on it ignores the folder for every
session ("As soon as any session of your app executes the st.navigation command, your app
will ignore the pages/ directory", st.navigation's reference). So when a freshly started
server's first request is a deep link (``/distill``, or a refresh of a tab left open on it),
Streamlit's v1 router runs ``pages/4_distill.py`` by itself: no ``app.py``, hence no wide
layout, no workspace field, no dataset caption, and a sidebar of raw file names
("app / data / map / ..."). The design card keeps the folder named ``pages/``, so instead
every page checks, first thing, whether it runs in that legacy mode and if so runs ``app.py``
in its place, whose ``st.navigation`` switches the legacy mode off for all sessions and lands
on the same page (both routers name a page by its URL path). AppTest resets that flag before
each of its runs, so there every run of a page goes through this, and app.py runs each time,
as in a browser.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import streamlit as st
from streamlit.navigation.page import StreamlitPage

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app.py"
#: (script under pages/, title, Material icon); the first is the default page.
PAGES = (
    ("1_data.py", "Data & teacher", "database"),
    ("2_map.py", "Embedding map", "scatter_plot"),
    ("3_subspaces.py", "Subspaces", "stacked_line_chart"),
    ("4_distill.py", "Distill", "model_training"),
    ("5_compare.py", "Compare", "compare_arrows"),
)


def app_pages() -> list[StreamlitPage]:
    """The pages ``app.py`` hands to ``st.navigation``."""
    return [
        st.Page(ROOT / "pages" / script, title=title, icon=f":material/{icon}:", default=i == 0)
        for i, (script, title, icon) in enumerate(PAGES)
    ]


def legacy_pages_mode() -> bool:
    """True while Streamlit still routes by the ``pages/`` folder (no ``st.navigation`` call
    yet in this server process). The flag is Streamlit's own (not public API);
    tests/test_browser.py's restart test and a unit test pin it."""
    from streamlit.runtime.pages_manager import PagesManager

    return bool(getattr(PagesManager, "uses_pages_directory", False))


def keep_app_in_charge() -> None:
    """Called first by every page: in the legacy mode, run ``app.py`` here, in this same run
    (its ``st.navigation`` call ends the legacy mode for every session and runs this page
    again, inside the app), then stop. The same run, not a rerun, so a button press that
    came with it is not lost. Does nothing otherwise, as when AppTest runs a page file as its
    own entrypoint (no ``pages/`` folder beside it)."""
    if legacy_pages_mode() and APP.is_file():
        runpy.run_path(str(APP), run_name="__main__")
        st.stop()
