"""``python -m lelp_studio.cli``: the ``lelp`` command without its script."""

from .main import app

app()
