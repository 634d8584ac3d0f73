"""The dataset and teacher last chosen in the app, remembered in the workspace.

Why: the app used to open on the demo after every restart, although the workspace had the
user's dataset and teacher cached. The choice is one small JSON file beside the catalogue
(``choices.json``), written atomically, so a crash leaves the previous choice. It is a
convenience: a damaged file is never fatal, it is reported in one line and ignored, and the
next choice rewrites it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..config import DatasetSpec, TeacherSpec
from .files import WorkspaceError, atomic_write_bytes

CHOICES_FILE = "choices.json"


@dataclass(frozen=True)
class Choices:
    """What the app works on: the dataset and the teacher."""

    dataset: DatasetSpec
    teacher: TeacherSpec


def save_choices(root: str | Path, choices: Choices) -> None:
    """Write ``choices`` to ``root/choices.json`` (complete or not at all)."""
    doc = {
        "dataset": choices.dataset.model_dump(mode="json"),
        "teacher": choices.teacher.model_dump(mode="json"),
    }
    try:
        atomic_write_bytes(Path(root) / CHOICES_FILE, json.dumps(doc, indent=1).encode())
    except OSError as err:
        raise WorkspaceError(
            f"workspace {root}: cannot remember the chosen dataset and teacher "
            f"({err.strerror or err}); the choice holds until the app stops"
        ) from None


def load_choices(root: str | Path) -> Choices | None:
    """The remembered choice, or None when nothing was remembered yet.

    Raises WorkspaceError, in one line, when the file cannot be read or holds no valid choice.

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> load_choices(root) is None
    True
    >>> chosen = Choices(DatasetSpec(source="digits-bin"), TeacherSpec(kind="digits-mlp"))
    >>> save_choices(root, chosen)
    >>> load_choices(root).dataset.source
    'digits-bin'
    """
    path = Path(root) / CHOICES_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise WorkspaceError(
            f"{path} cannot be read ({err.strerror or err}): the remembered dataset and teacher "
            "are ignored"
        ) from None
    try:
        doc = json.loads(raw)
    except ValueError as err:  # JSON syntax, bad UTF-8
        raise _damaged(path, " ".join(str(err).split())) from None
    if not isinstance(doc, dict):
        raise _damaged(path, f"a JSON object was expected, got {type(doc).__name__}")
    try:
        dataset = DatasetSpec.model_validate(doc.get("dataset"))
        teacher = TeacherSpec.model_validate(doc.get("teacher"))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join([err.title.removesuffix("Spec").lower(), *map(str, first["loc"])])
        raise _damaged(path, f"{where}: {first['msg']}") from None
    return Choices(dataset, teacher)


def _damaged(path: Path, why: str) -> WorkspaceError:
    return WorkspaceError(
        f"{path} is damaged ({why}): it is ignored, and the next choice of dataset or teacher "
        "rewrites it"
    )
