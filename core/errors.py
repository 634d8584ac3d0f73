"""The errors that carry a message meant for the user.

Each names the problem and the fix. The CLI prints them as one line (exit status 2) and the
app shows them with ``st.error``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from .config import ConfigError
from .store import WorkspaceError


def user_errors() -> tuple[type[BaseException], ...]:
    """The user-facing error classes (those of data, subclasses and teachers imported late:
    their modules pull in pandas, scikit-learn and torch)."""
    from .data import DataError
    from .subclasses import SubclassError
    from .teachers import TeacherError

    return (ConfigError, DataError, SubclassError, TeacherError, WorkspaceError)
