"""The run configuration: one pydantic schema shared by the CLI (YAML), the app and jobs.

A setting found by eye in the app is saved as this config, so ``lelp distill config.yaml``
re-runs it exactly. Unknown keys are errors (``extra="forbid"``) so a typo never silently
falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    """Where the data comes from.

    ``source``: a built-in demo name (``digits-bin``, ``text-demo``), ``shared:<name>`` for a
    folder of ``../shared/data``, or a path to a CSV/TSV/Parquet/JSONL file.

    ``transfer``: a file of unlabeled inputs the teacher labels and distillation objectives
    learn from (CSV/TSV/Parquet/JSONL with the ``text_col`` column, or a .txt file with one
    input per line); rows with an empty label in the training file join them. Transfer rows
    equal to a dev/test text or a labeled training text are dropped, and counted.
    """

    source: str = "text-demo"
    text_col: str = "text"
    label_col: str = "label"
    latent_cols: list[str] = Field(default_factory=list)
    test_size: float = Field(0.2, gt=0, lt=1)
    max_train: int | None = Field(None, gt=0)
    #: Share of train held out as the selection split when the dataset has no dev split.
    selection_fraction: float = Field(0.1, gt=0, lt=0.5)
    seed: int = 0
    transfer: str | None = None

    @field_validator("transfer")
    @classmethod
    def _no_blank_transfer(cls, v: str | None) -> str | None:
        return v.strip() or None if v is not None else None


class TeacherSpec(_Strict):
    """Which teacher produces H, Z and W.

    kind ``minilm``: the bundled MiniLM encoder + linear head, ``mode`` frozen (fit the head on
    frozen embeddings) or finetune (end to end). kind ``hf``: a sequence-classification
    checkpoint (``path`` is a folder or hub id). kind ``arrays``: ``path`` to .npz/.parquet.
    kind ``digits-mlp``: a small MLP on digit pixels. ``precision`` of the embedding pass:
    ``auto`` is bf16 autocast where the hardware has native bf16 (CUDA; CPUs with
    AVX512-BF16 or AMX, where it is about 2.5x faster) and float32 elsewhere; bf16 stays
    within cosine 0.9999 of float32 (bench/results/speed.md). ``float32`` gives the same
    embeddings on every machine. The resolved precision is part of the cache key.
    ``tokenizer`` (kind ``arrays`` only): what a text student reads its tokens with, since
    arrays carry none: ``minilm`` (the bundled MiniLM's, offline) or a local folder of
    tokenizer files (``tokenizer.save_pretrained(folder)``). minilm and hf use their own.
    """

    kind: Literal["minilm", "hf", "arrays", "digits-mlp"] = "minilm"
    path: str | None = None
    tokenizer: str | None = None
    mode: Literal["frozen", "finetune"] = "frozen"
    max_length: int = Field(128, gt=0)
    batch_size: int = Field(64, gt=0)
    epochs: int = Field(3, ge=0)
    lr: float = Field(5e-5, gt=0)
    hidden: int = Field(128, gt=0)
    trust_remote_code: bool = False
    precision: Literal["auto", "float32", "bf16"] = "auto"
    seed: int = 0

    @model_validator(mode="after")
    def _tokenizer_for_arrays(self) -> TeacherSpec:
        if self.tokenizer is not None and self.kind != "arrays":
            raise ValueError(
                f"teacher.tokenizer is for kind 'arrays' (a {self.kind!r} teacher has its own "
                "tokenizer); remove it"
            )
        return self


class SubclassSpec(_Strict):
    """How pseudo-subclasses are built (see core/subclasses.py and ../shared/LELP.md).

    ``n_subclasses`` is one S for all classes or a list with one S per class. ``directions``
    optionally lists, per class, the principal components (0-based) that span its subspace.
    """

    method: Literal[
        "lelp", "pca", "random", "kmeans", "agglomerative", "umap-kmeans", "oracle", "manual"
    ] = "lelp"
    n_subclasses: int | list[int] = 4
    directions: list[list[int]] | None = None
    beta: float = Field(1.0, gt=0)
    null_space: bool = True
    rotate: bool = True
    standardize: bool = True
    class_source: Literal["label", "teacher"] = "label"
    latent_col: str | None = None
    manual_groups: list[str] | None = None
    seed: int = 0

    @field_validator("n_subclasses")
    @classmethod
    def _positive(cls, v: int | list[int]) -> int | list[int]:
        vals = [v] if isinstance(v, int) else v
        if not vals or any(s < 1 for s in vals):
            raise ValueError(f"every n_subclasses must be >= 1, got {v!r}")
        return v


class StudentSpec(_Strict):
    """Student architecture: ``mlp`` over features, ``bag`` (mean of token embeddings over the
    teacher's tokenizer, then an MLP), or ``transformer`` (small BERT from a config)."""

    kind: Literal["mlp", "bag", "transformer"] = "bag"
    hidden: int = Field(64, gt=0)
    embed_dim: int = Field(64, gt=0)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    max_length: int = Field(64, gt=0)
    init: Literal["random", "teacher"] = "random"


class FitNetSpec(_Strict):
    """FitNet (Romero et al. 2015): ``weight * MSE(A h_s, h_t)`` with a learned linear map A,
    plus ``kd_weight`` times KD at ``train.tau`` and ``train.alpha`` times hard-label CE.
    "Alone" is ``kd_weight: 0`` with ``train.alpha > 0`` (the head needs some class signal)."""

    weight: float = Field(1.0, ge=0)
    kd_weight: float = Field(1.0, ge=0)
    normalize: bool = False


class SEASpec(_Strict):
    """SEA (Srivastava et al. 2021): regress the teacher embedding reduced by PCA to the
    student's width, PCA fitted on ``sample_size`` training rows picked at random or by
    k-means++ seeding (``sampling: diverse``, our stand-in for the paper's k-DPP)."""

    weight: float = Field(1.0, ge=0)
    kd_weight: float = Field(1.0, ge=0)
    sample_size: int = Field(1000, gt=1)
    sampling: Literal["random", "diverse"] = "random"


class CompRessSpec(_Strict):
    """CompRess (Abbasi Koohpayegani et al. 2020): KL between softmaxed similarities to queued
    anchors, T = ``temperature``; ``queues: one`` uses the teacher's queue for both (the
    student embedding mapped to the teacher's width). ``queue_size`` None: min(128000, n)."""

    weight: float = Field(1.0, ge=0)
    kd_weight: float = Field(1.0, ge=0)
    queues: Literal["two", "one"] = "two"
    queue_size: int | None = Field(None, gt=0)
    temperature: float = Field(0.04, gt=0)


class ReAugKDSpec(_Strict):
    """ReAugKD (Zhang et al. 2023): supervised-contrastive teacher projection, relational
    loss (weight, temperature) + KD, and retrieval at inference (k neighbours, lambda)."""

    weight: float = Field(1.0, ge=0)
    kd_weight: float = Field(1.0, ge=0)
    temperature: float = Field(0.1, gt=0)
    k: int = Field(8, ge=1)
    lam: float = Field(0.5, ge=0, le=1)
    retrieval_temperature: float = Field(0.1, gt=0)
    proj_epochs: int = Field(10, ge=1)
    proj_lr: float = Field(1e-3, gt=0)
    supcon_temperature: float = Field(0.1, gt=0)


class SubclassDistillSpec(_Strict):
    """Subclass Distillation (Müller, Kornblith & Hinton 2020): the teacher head is retrained
    on the cached embeddings with ``n_subclasses`` outputs per class and the auxiliary loss;
    the student then learns ``alpha * tau^2 * CE(soft) + (1 - alpha) * CE(y)`` (its own
    ``tau`` and ``alpha``, the paper's defaults; ``train.tau``/``train.alpha`` are unused)."""

    n_subclasses: int = Field(4, ge=1)
    tau: float = Field(4.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1)
    aux_weight: float = Field(1.0, ge=0)
    aux_temperature: float = Field(1.0, gt=0)
    head_epochs: int = Field(60, ge=1)
    head_lr: float = Field(1e-2, gt=0)


class DWTSpec(_Strict):
    """DWT (Lee et al. 2023), a student larger than its teacher:
    ``hard_weight * CE(y) + a_s * KD``; a_s is ``soft_start`` throughout (``schedule:
    constant``) or decays linearly from ``soft_start`` to ``soft_end`` (``linear``).
    ``remap``: initialise the student from the teacher's layers (the paper found it hurts)."""

    hard_weight: float = Field(1.0, ge=0)
    schedule: Literal["constant", "linear"] = "linear"
    soft_start: float = Field(4.0, ge=0)
    soft_end: float = Field(1.0, ge=0)
    remap: bool = False


class DiSKSpec(_Strict):
    """Scaffolding / DiSK (Kag et al. 2023): a gate g(x) in [0, 1] boosts the student's logits
    on the teacher's ``top_k`` classes and the true class by ``boost * g(x)`` during training,
    within a budget ``budget * (1 + cos(pi t)) / 2`` enforced by a dual variable."""

    top_k: int | None = Field(None, ge=1)
    boost: float = Field(4.0, gt=0)
    budget: float = Field(0.3, ge=0, le=1)
    gate_hidden: int = Field(32, gt=0)
    gate_lr: float = Field(1e-2, gt=0)
    dual_lr: float = Field(0.5, gt=0)


class AMADSpec(_Strict):
    """AMAD (Zhao et al. 2024): each teacher attention head of ``teacher_layer`` is matched by
    a softmax(cosine)-weighted mix of the student's heads of ``student_layer`` (``variant``
    kl, the paper's best, or l2, METHODS.md's formula), plus ``kd_weight`` times KD. Needs a
    transformer student and a minilm or hf teacher; the teacher's maps of the
    training rows are computed once and kept in memory, at most ``max_cache_mb``."""

    weight: float = Field(1.0, ge=0)
    kd_weight: float = Field(1.0, ge=0)
    variant: Literal["kl", "l2"] = "kl"
    teacher_layer: int = -1
    student_layer: int = -1
    max_cache_mb: int = Field(2048, gt=0)


class TrainSpec(_Strict):
    """Objective and optimisation. ``objective``: hard, kd, lelp (subclass targets from the
    ``subclasses`` section, whatever its method), or one of the other seed methods (fitnet,
    sea, compress, reaugkd, subclass-distill, dwt, disk, amad; see core/objectives/), whose own
    parameters live in the sub-section of the same name (``train.compress.queue_size``).
    The name is checked against the objectives' one registry (``objectives.REGISTRY``) when a
    run is checked (``pipeline.check_run``), not here: this schema sits below the objectives,
    so adding one touches only its module and its registry line."""

    objective: str = "lelp"
    tau: float = Field(1.0, gt=0)
    alpha: float = Field(0.0, ge=0)
    epochs: int = Field(8, ge=1)
    lr: float = Field(3e-3, gt=0)
    batch_size: int = Field(128, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    seed: int = 0
    compile: bool = False  # torch.compile the student's forward (long CUDA runs)
    fitnet: FitNetSpec = Field(default_factory=FitNetSpec)
    sea: SEASpec = Field(default_factory=SEASpec)
    compress: CompRessSpec = Field(default_factory=CompRessSpec)
    reaugkd: ReAugKDSpec = Field(default_factory=ReAugKDSpec)
    subclass_distill: SubclassDistillSpec = Field(default_factory=SubclassDistillSpec)
    dwt: DWTSpec = Field(default_factory=DWTSpec)
    disk: DiSKSpec = Field(default_factory=DiSKSpec)
    amad: AMADSpec = Field(default_factory=AMADSpec)


class RunConfig(_Strict):
    """Everything one distillation run needs; saved with the run so it can be repeated."""

    name: str | None = None
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    teacher: TeacherSpec = Field(default_factory=TeacherSpec)
    subclasses: SubclassSpec = Field(default_factory=SubclassSpec)
    student: StudentSpec = Field(default_factory=StudentSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says what and how to fix."""


def _format_validation(err: ValidationError, origin: str) -> str:
    """All problems on one line: the CLI promises one line per error, and logs stay greppable."""
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            problems.append(f"unknown key '{loc}': remove it or check its spelling")
        else:
            problems.append(f"{loc}: {e['msg']} (got {e.get('input')!r})")
    return f"{origin}: the config is not valid: " + "; ".join(problems)


def _yaml_problem(err: Exception) -> str:
    """A YAML error as one line with its position (PyYAML's own text spans several lines)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem}".split())


def set_dotted(d: dict[str, Any], dotted: str, value: Any, what: str = "--set") -> None:
    """Set ``d["a"]["b"] = value`` for ``dotted="a.b"`` (used by ``--set`` and sweep grids)."""
    keys = dotted.split(".")
    cur = d
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"{what} {dotted}: '{k}' is not a config section")
    cur[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["train.tau=4", "subclasses.beta=0.5"]`` into a nested dict (values as YAML)."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.tau=4")
        key, raw = item.split("=", 1)
        set_dotted(out, key.strip(), yaml.safe_load(raw))
    return out


def merge_dicts(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, section by section (``extra`` wins)."""
    merged = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = merge_dicts(merged[k], v)
        else:
            merged[k] = v
    return merged


def config_from_dict(data: dict[str, Any], origin: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation(err, origin)) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config (``yaml.safe_load``: no tags that run code) plus ``--set`` items."""
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        p = Path(path)
        origin = str(p)
        if not p.is_file():
            raise ConfigError(f"{p}: no such config file; pass the path of a YAML file")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"{p}: not valid UTF-8 (byte 0x{err.object[err.start]:02x} at offset "
                f"{err.start}); re-save the file as UTF-8"
            ) from None
        except yaml.YAMLError as err:
            raise ConfigError(
                f"{p}: not readable as YAML ({_yaml_problem(err)}); check its syntax"
            ) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of sections at the top level")
        data = loaded
    if overrides:
        data = merge_dicts(data, parse_overrides(overrides))
    return config_from_dict(data, origin)


def dump_config(cfg: RunConfig) -> str:
    """The YAML that ``load_config`` reads back to an equal config."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def dump_setting(cfg: RunConfig) -> str:
    """The YAML of a setting as a person shares it (the app's Export YAML): ``dump_config``
    without the sections of objectives the run does not use and without an empty
    ``latent_cols`` or ``transfer``; ``load_config`` fills those back in with their defaults."""
    d = cfg.model_dump(mode="json")
    own = cfg.train.objective.replace("-", "_")
    for key, field in TrainSpec.model_fields.items():
        ann = field.annotation
        if key != own and isinstance(ann, type) and issubclass(ann, BaseModel):
            d["train"].pop(key, None)
    if not d["dataset"].get("latent_cols"):
        d["dataset"].pop("latent_cols", None)
    if d["dataset"].get("transfer") is None:
        d["dataset"].pop("transfer", None)
    return yaml.safe_dump(d, sort_keys=False)
