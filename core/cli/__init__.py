"""The ``lelp`` command: a thin Typer shell over the library (spaCy's ``cli/`` shape).

Each command parses arguments, calls the same core function the app calls, and prints what it
produced with the artifact ids in the workspace. Expected failures (bad data, bad config, a
missing checkpoint) print one clear line and exit with status 2, never a traceback.
"""

from .main import app

__all__ = ["app"]
