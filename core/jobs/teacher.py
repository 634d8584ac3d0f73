"""The teacher's fine-tune as a background job: one call for the Data page and ``lelp
finetune`` alike.

Why: a fine-tune of MiniLM on a CPU takes minutes to hours, so it must outlive a page rerun,
report its steps, stop on cancel and pick up where it stopped. Asking for the same fine-tune
again never starts a second one: a queued or running twin is reported, and a cancelled or
failed one is retried, which resumes it from its checkpoint.
"""

from __future__ import annotations

import dataclasses

from ..config import DatasetSpec, RunConfig, TeacherSpec
from ..store import Workspace
from .checkpoints import ckpt_dir
from .queue import list_jobs, retry, submit
from .table import JobError

KIND = "teacher-finetune"


def finetune_config(dataset: DatasetSpec, teacher: TeacherSpec) -> RunConfig:
    """The job's config: the dataset and the MiniLM teacher in mode ``finetune`` (the other
    sections at their defaults, so equal requests have equal configs). Only the bundled
    MiniLM is fine-tuned here; a checkpoint (kind ``hf``) is used as it is."""
    if teacher.kind != "minilm":
        raise JobError(
            f"only the bundled MiniLM teacher is fine-tuned here, but the teacher is kind "
            f"{teacher.kind!r}; set teacher.kind=minilm (a local checkpoint, kind hf, is used "
            "as it is: fine-tune it with your own training script)"
        )
    tuned = teacher.model_copy(update={"mode": "finetune"})
    return RunConfig(name=f"fine-tune MiniLM on {dataset.source}", dataset=dataset, teacher=tuned)


@dataclasses.dataclass(frozen=True)
class Submitted:
    """What :func:`submit_finetune` did: ``action`` is ``queued`` (a new job), ``resumed`` (a
    cancelled or failed twin re-queued; it resumes from its checkpoint) or ``already`` (a
    twin is queued or running)."""

    job_id: int
    action: str

    def message(self) -> str:
        """One line for the page and the command."""
        return {
            "queued": f"Queued fine-tune job #{self.job_id}.",
            "resumed": f"Re-queued fine-tune job #{self.job_id}: it resumes from its checkpoint.",
            "already": f"Fine-tune job #{self.job_id} with these settings is already queued or "
            "running.",
        }[self.action]


def submit_finetune(ws: Workspace, dataset: DatasetSpec, teacher: TeacherSpec) -> Submitted:
    """Queue the fine-tune of ``teacher`` on ``dataset`` (:func:`finetune_config`), unless a
    job with the same config is queued or running; a cancelled or failed one that left a
    checkpoint is retried instead, so no finished step is redone."""
    cfg = finetune_config(dataset, teacher).model_dump(mode="json")
    twins = [j for j in list_jobs(ws) if j.kind == KIND and j.config == cfg]
    for job in twins:  # newest first
        if job.state in ("queued", "running"):
            return Submitted(job.id, "already")
    for job in twins:
        ckpt = ckpt_dir(ws, job.id)
        if job.state in ("failed", "cancelled") and ckpt.is_dir() and any(ckpt.iterdir()):
            retry(ws, job.id)
            return Submitted(job.id, "resumed")
    return Submitted(submit(ws, KIND, cfg), "queued")


def finetuned_teachers(ws: Workspace, dataset_fp: str) -> list[tuple[TeacherSpec, str]]:
    """The fine-tuned MiniLM teachers cached for the dataset with fingerprint ``dataset_fp``,
    newest first, as (the spec that asks for them, cache key): what the Data page offers to
    use. Entries the spec would no longer find (another MiniLM version or precision here) are
    left out."""
    from ..pipeline import pooling_name
    from ..teachers import teacher_fingerprint  # torch: only where the cache is read

    found = []
    for entry in ws.list_teacher_outputs():
        meta = entry["meta"]
        if entry["dataset_fp"] != dataset_fp or meta.get("mode") != "finetune":
            continue
        try:
            spec = TeacherSpec.model_validate(meta.get("spec"))
        except ValueError:  # cached before the spec was recorded
            continue
        key = ws.teacher_key(dataset_fp, teacher_fingerprint(spec), pooling_name(spec))
        if key == entry["key"]:
            found.append((spec, key))
    return found
