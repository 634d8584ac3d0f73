"""How rows, runs and settings are named on the pages (pure functions)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import RunConfig, SubclassSpec, TrainSpec
from ..data import SELECT
from ..params import section_model, train_section
from ..types import Dataset, hash_arrays


def display_texts(ds: Dataset, split: str) -> list[str]:
    """Text shown for each row (hover, tables): the text, or latent values for feature data."""
    s = ds.splits[split]
    if s.texts is not None:
        return list(s.texts)
    if s.latent:
        cols = sorted(s.latent)
        return [", ".join(f"{c}={s.latent[c][i]}" for c in cols) for i in range(len(s))]
    return [f"row {i}" for i in range(len(s))]


def hash_key(obj: Any) -> str:
    """A short stable id for a cache-key tuple (used to name stored projections)."""

    return hash_arrays(json.dumps(obj, default=str))[:16]


#: Settings as a label names them, in the order they are appended (others follow, sorted).
SHORT_NAMES = {
    "dataset.source": "data",
    "dataset.transfer": "transfer",
    "teacher": "teacher",
    "train.seed": "seed",
    "subclasses.n_subclasses": "S",
    "subclasses.beta": "beta",
    "train.tau": "tau",
    "train.alpha": "alpha",
    "student.kind": "student",
    "train.epochs": "epochs",
    "train.lr": "lr",
    "train.batch_size": "batch",
    "subclasses.method": "subclasses",
    "subclasses.seed": "subclass seed",
    "dataset.seed": "data seed",
}


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _teacher_text(t: Mapping[str, Any]) -> str:
    """A teacher in a few words: ``minilm frozen``, ``hf my-checkpoint``, ``digits-mlp``."""
    kind = str(t.get("kind", "minilm"))
    if t.get("path"):
        return f"{kind} {Path(str(t['path'])).name}"
    return f"{kind} {t.get('mode', 'frozen')}" if kind == "minilm" else kind


#: Objectives that read ``subclasses`` (``needs_subclass_targets``; a test keeps them in step).
SUBCLASS_OBJECTIVES = ("lelp",)


def run_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's settings as ``{path: value}`` (``train.tau``, ``teacher`` as one text), with
    the schema's defaults filled in so a config written before a setting existed compares
    equal to one that states the default."""
    raw = {k: v for k, v in config.items() if k != "name"}
    try:
        full: Mapping[str, Any] = RunConfig.model_validate(raw).model_dump(mode="json")
    except ValueError:  # an older or partial record: compare what it has
        full = raw
    objective = str((full.get("train") or {}).get("objective", ""))
    own = train_section(objective) if objective else None
    sections = {f"train.{n}." for n in TrainSpec.model_fields if section_model(n)}
    flat = {
        k: v
        for k, v in _flat(full).items()
        if not k.startswith("teacher.")
        # settings the run's objective does not read say nothing about it
        and not (k.startswith("subclasses.") and objective not in SUBCLASS_OBJECTIVES)
        and not (any(k.startswith(s) for s in sections) and not k.startswith(f"train.{own}."))
    }
    flat["teacher"] = _teacher_text(full.get("teacher") or {})
    if isinstance(flat.get("dataset.source"), str):
        flat["dataset.source"] = flat["dataset.source"].removeprefix("shared:")
    if isinstance(flat.get("dataset.transfer"), str):  # a file's name says which set
        flat["dataset.transfer"] = Path(flat["dataset.transfer"]).name
    return {k: v for k, v in flat.items() if k != "name"}


#: Settings a run's name usually states by value alone.
_IN_NAME = ("dataset.source", "train.objective", "subclasses.method")


def _value_text(v: Any) -> str:
    if isinstance(v, float):
        return str(v)  # as subclass_label writes it (beta=1.0), so a name's token is found
    if isinstance(v, list):
        return ",".join(_value_text(x) for x in v)
    return str(v)


def _short(path: str) -> str:
    return SHORT_NAMES.get(path) or path.split(".", 1)[-1]


def run_labels(runs: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Run id -> the name a page shows for ``runs`` shown together: the run's name (dataset
    and objective) plus only the settings that differ among them (``seed=1 tau=4``); runs
    still named alike get the end of their id.

    Why: "text-demo hard" three times in a legend, a selector or a download button says
    nothing; and tables, legends and the dicts the plots take are keyed by name, so runs
    named alike were shown as one row, one curve, one matrix title.
    """
    settings = {r["run_id"]: run_settings(r.get("config") or {}) for r in runs}
    paths = sorted({p for s in settings.values() for p in s})
    # A setting differs when the runs that have it (their objective reads it) disagree on it.
    differ = [p for p in paths if len({repr(s[p]) for s in settings.values() if p in s}) > 1]
    order = list(SHORT_NAMES)
    differ.sort(key=lambda p: (order.index(p) if p in order else len(order), p))
    labels: dict[str, str] = {}
    for r in runs:
        name = str(r.get("name") or r["run_id"])
        extra = []
        for p in differ:
            if p not in settings[r["run_id"]]:
                continue
            text = _value_text(settings[r["run_id"]][p])
            if p in _IN_NAME and text in name.replace("/", " ").split():
                continue  # the name says it already (text-demo kd)
            token = f"{_short(p)}={text}"
            if token not in name.split():
                extra.append(token)
        labels[r["run_id"]] = " ".join([name, *extra])
    counts = Counter(labels.values())
    return {rid: f"{lab} ({rid[-6:]})" if counts[lab] > 1 else lab for rid, lab in labels.items()}


def subclass_label(spec: SubclassSpec) -> str:
    """How a run's pseudo-subclass setting reads in its name: ``S=4 beta=1.0`` for LELP,
    ``manual groups`` or ``kmeans S=4`` otherwise, so runs on different settings differ."""
    if spec.method == "manual":
        return "manual groups"
    head = "" if spec.method == "lelp" else f"{spec.method} "
    tail = f" beta={spec.beta}" if spec.method == "lelp" else ""
    return f"{head}S={spec.n_subclasses}{tail}"


def subclass_names(class_names: list[str], sizes: list[int]) -> list[str]:
    return [f"{c}/{s}" for c, n in zip(class_names, sizes, strict=True) for s in range(n)]


def selection_caption(ds: Dataset) -> str:
    """Which split chooses, and that test only scores (the Data and Compare pages)."""

    return (
        f"Selection split: **{SELECT}**, {len(ds.splits[SELECT]):,} rows, "
        f"{ds.selection or 'the dataset’s own'}. Every choice made from scores (the per-epoch "
        "curves, a sweep’s best setting, the teacher head’s regularisation) uses it; the test "
        "split is scored once per finished run and chooses nothing."
    )


def student_files_missing(student_dir: Any) -> str | None:
    """Why a run's student cannot be downloaded (folder or weights gone), or None."""
    if student_dir is None or not Path(student_dir).is_dir():
        return "this run's student folder is not in the workspace any more"
    for name in ("student.safetensors", "student.json"):
        if not (Path(student_dir) / name).is_file():
            return f"this run's {name} is missing from {student_dir}"
    return None


def sweep_runs(by_sweep: dict[str, list[str]], run_ids: set[str]) -> dict[str, list[str]]:
    """The sweeps (``jobs.sweep_run_ids``: ``{sweep_id: [run_id, ...]}``) restricted to the
    runs shown; sweeps with none of them are left out."""
    return {k: [r for r in v if r in run_ids] for k, v in by_sweep.items() if set(v) & run_ids}


def pseudo_subclass_names(
    sub: Any, label_names: Sequence[str], group_names: Sequence[str] | None = None
) -> list[str]:
    """The name of each pseudo-subclass of a fitted subclasser, as the pages show it:
    ``negative/2`` (LELP, clusters), ``negative/books`` (a latent column's values) or
    ``positive/electronics blob`` (manual ``group_names``; ``rest`` for rows in no group)."""
    values = getattr(sub, "values_", None)
    if values is None:
        return subclass_names(list(label_names), list(sub.sizes_))

    def value(v: Any) -> str:
        if group_names is None:
            return str(v)
        return "rest" if v < 0 else str(group_names[v])

    return [f"{label_names[c]}/{value(v)}" for c, vs in enumerate(values) for v in vs]
