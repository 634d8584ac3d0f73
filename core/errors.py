"""The errors that carry a message meant for the user.

Each names the problem and the fix. The CLI prints them as one line (exit status 2) and the
app shows them with ``st.error``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


def user_errors() -> tuple[type[BaseException], ...]:
    """The user-facing error classes (imported lazily: some modules pull in torch)."""
    from .config import ConfigError
    from .data import DataError
    from .store import WorkspaceError
    from .subclasses import SubclassError
    from .teachers import TeacherError

    return (ConfigError, DataError, SubclassError, TeacherError, WorkspaceError)
