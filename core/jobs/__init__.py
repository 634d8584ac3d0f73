"""Background jobs: one ``jobs`` table in the workspace catalogue, claimed then finished.

Distillation must outlive a Streamlit rerun and survive a restart of the app or the worker,
so the catalogue (SQLite, WAL) is the single source of truth (litequeue's shape, see
STYLE.md). ``table`` holds the schema and row type, ``queue`` the transactions on it
(submit, claim, finish, cancel, retry, recover), ``runner`` executes one job in this process,
``local`` and ``ray_executor`` are the executors, ``kinds`` the job kinds (built-in and
plugged in with ``LELP_JOB_PLUGINS``), ``teacher`` queues the teacher's fine-tune,
``__main__`` the job process's command line.
"""

from .card import JobCard, duration_text, job_card, job_run
from .checkpoints import ResumePoint, ckpt_dir, read_checkpoint, resume_text
from .kinds import (
    CONFIG_KINDS,
    KINDS,
    PLUGINS_ENV,
    STEP_KINDS,
    JobKind,
    Runner,
    checkpoints_each_epoch,
    effective_config,
    known_kinds,
    plugin_kinds,
)
from .local import (
    CPU_JOBS_ENV,
    LocalWorker,
    capacity_line,
    default_cpu_jobs,
    detect_gpus,
    ensure_worker,
    list_workers,
    worker_alive,
)
from .queue import (
    active_twin,
    append_metrics,
    claim,
    expand_grid,
    finish,
    get_job,
    heartbeat,
    list_jobs,
    recover_stale,
    request_cancel,
    retry,
    submit,
    submit_sweep,
    sweep_run_ids,
    update_progress,
)
from .ray_executor import RayExecutor
from .runner import RUNNERS, is_oom, resume_point, run_job, runner_for
from .serve import serve
from .table import FINAL_STATES, STATES, Job, JobError
from .teacher import Submitted, finetune_config, finetuned_teachers, submit_finetune

__all__ = [
    "CONFIG_KINDS",
    "CPU_JOBS_ENV",
    "FINAL_STATES",
    "KINDS",
    "PLUGINS_ENV",
    "RUNNERS",
    "STATES",
    "STEP_KINDS",
    "Job",
    "JobCard",
    "JobError",
    "JobKind",
    "LocalWorker",
    "RayExecutor",
    "ResumePoint",
    "Runner",
    "Submitted",
    "active_twin",
    "duration_text",
    "job_card",
    "job_run",
    "append_metrics",
    "capacity_line",
    "checkpoints_each_epoch",
    "ckpt_dir",
    "claim",
    "default_cpu_jobs",
    "detect_gpus",
    "effective_config",
    "ensure_worker",
    "expand_grid",
    "finetune_config",
    "finetuned_teachers",
    "finish",
    "get_job",
    "heartbeat",
    "is_oom",
    "known_kinds",
    "list_jobs",
    "list_workers",
    "plugin_kinds",
    "read_checkpoint",
    "recover_stale",
    "request_cancel",
    "resume_point",
    "resume_text",
    "retry",
    "run_job",
    "runner_for",
    "serve",
    "submit",
    "submit_finetune",
    "submit_sweep",
    "sweep_run_ids",
    "update_progress",
    "worker_alive",
]
