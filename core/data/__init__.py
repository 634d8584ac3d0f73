"""Loading labelled text (or digit) data into :class:`lelp_studio.types.Dataset`.

Why strict checks: a bad file discovered halfway through an hour of teacher inference wastes
the hour, and a silently mangled one (a ';'-separated CSV read as one column, labels "pos "
and "pos" counted as two classes, "NA" tweets turned into NaN) gives wrong results without
any error. Every problem raises :class:`DataError` naming the file, the problem and the fix,
before anything expensive runs.

Sources (see docs/ARCHITECTURE.md): a single CSV/TSV/Parquet/JSONL file (split here into
train/test, and :attr:`Dataset.split_note` says so with the sizes), a folder path holding
``train``/``test`` (optional ``dev``) files in any of those formats and an optional
``labels.json``, a folder in the ``../shared/data/<name>/`` format (``shared:<name>``), Hugging
Face ``datasets`` sources with the optional ``hf`` extra (``hf:NAME[:CONFIG]`` online, a folder
written by ``save_to_disk`` offline), and two built-in demos (:data:`DEMOS`).
"""

from .frames import (
    LABEL_NAMES,
    MAX_CLASSES,
    MISSING,
    dataset_from_frame,
    few_values,
    guess_columns,
    latent_candidates,
)
from .hf import hf_offline, load_hf, load_hf_raw
from .paths import sample_dir, shared_data_root
from .readers import SPLIT_FILES, DataError, read_table, split_files
from .selection import SELECT, check_subclass_counts, with_selection_split
from .sources import (
    DEMOS,
    load_dataset,
    load_demo,
    load_file,
    load_folder,
    load_shared,
    source_table,
)
from .transfer import read_transfer, transfer_note, with_transfer
from .upload import DEFAULT_UPLOAD_MB, check_upload_size, store_upload, upload_limit_mb

__all__ = [
    "DEFAULT_UPLOAD_MB",
    "DEMOS",
    "LABEL_NAMES",
    "MAX_CLASSES",
    "MISSING",
    "SELECT",
    "SPLIT_FILES",
    "DataError",
    "check_subclass_counts",
    "check_upload_size",
    "dataset_from_frame",
    "few_values",
    "guess_columns",
    "latent_candidates",
    "hf_offline",
    "load_dataset",
    "load_demo",
    "load_file",
    "load_folder",
    "load_hf",
    "load_hf_raw",
    "load_shared",
    "read_table",
    "read_transfer",
    "sample_dir",
    "shared_data_root",
    "source_table",
    "split_files",
    "store_upload",
    "transfer_note",
    "upload_limit_mb",
    "with_selection_split",
    "with_transfer",
]
