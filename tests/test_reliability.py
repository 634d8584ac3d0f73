"""Reliability (issue 8): every bad input gets one clear answer, and faults lose nothing.

Each bad input is tried where a user meets it: through the ``lelp`` CLI (exit status 2, one
``error:`` line that names the problem and the fix, no traceback) against a workspace that
already holds a saved spec, a run and arrays, which must come out unchanged. Faults (a writer
killed with SIGKILL, a full disk, a workspace under a file) must leave the previous state
readable and raise :class:`store.WorkspaceError` with a fix. docs/reliability.md maps each
promise of the issue to its test here or elsewhere.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lelp_studio.cli import app
from lelp_studio.config import ConfigError, TeacherSpec, load_config
from lelp_studio.data import (
    DataError,
    check_subclass_counts,
    check_upload_size,
    dataset_from_frame,
    load_file,
    read_table,
    upload_limit_mb,
)
from lelp_studio.store import Workspace, WorkspaceError, atomic_write_bytes
from lelp_studio.store import files as store_files
from lelp_studio.store import workspace as store_ws
from lelp_studio.subclasses import LELPSubclasses, SubclassError
from lelp_studio.types import Dataset, Split

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
DIGITS = ["--set", "dataset.source=digits-bin", "--set", "teacher.kind=digits-mlp"]


# --------------------------------------------------------------------------- helpers


def _file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every artifact file (arrays, runs); the SQLite files are compared by rows."""
    out = {}
    for sub in ("arrays", "runs", "uploads"):
        for p in sorted((root / sub).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _rows(root: Path) -> dict[str, set[tuple[Any, ...]]]:
    con = sqlite3.connect(root / "catalog.sqlite")
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: set(con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables}
    finally:
        con.close()


def _snapshot(root: Path) -> tuple[dict[str, set[tuple[Any, ...]]], dict[str, str]]:
    return _rows(root), _file_hashes(root)


def _assert_nothing_lost(before: tuple, after: tuple) -> None:
    """Every row and every file present before is still there, byte for byte.

    New rows are allowed (a failing call may have cached the teacher outputs it computed
    before the error); losing or changing an old one is not.
    """
    rows_b, files_b = before
    rows_a, files_a = after
    for table, rows in rows_b.items():
        assert rows <= rows_a.get(table, set()), f"rows lost or changed in table {table}"
    for path, digest in files_b.items():
        assert files_a.get(path) == digest, f"{path} lost or changed"


@pytest.fixture
def saved_ws(tmp_path: Path) -> Workspace:
    """A workspace with a saved spec, a finished run (with files) and a manual group."""
    ws = Workspace(tmp_path / "ws")
    ws.save_spec("keep", {"subclasses": {"n_subclasses": 3}})
    logits = ws.put_array(np.arange(12, dtype=np.float32).reshape(6, 2))
    ws.save_run(
        {
            "run_id": "r1",
            "name": "kept run",
            "config": {"train": {"tau": 2.0}},
            "metrics": {"student": {"accuracy": 91.5}},
            "artifacts": {"eval_logits": logits},
        }
    )
    student = ws.run_dir("r1") / "student"
    student.mkdir(parents=True)
    (student / "student.json").write_text('{"kind": "mlp"}', encoding="utf-8")
    ws.save_manual_group("fp", "sarcasm", np.array([4, 1, 2]))
    return ws


def _one_error_line(output: str) -> str:
    """The CLI's answer to a bad input: exactly one ``error:`` line and no traceback."""
    assert "Traceback" not in output, output
    errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


# --------------------------------------------------------------------------- bad input files


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _csv_rows(n: int = 8, label: Callable[[int], Any] = lambda i: ("neg", "pos")[i % 2]) -> str:
    return "text,label\n" + "".join(f"text {i},{label(i)}\n" for i in range(n))


def _embed_file(d: Path, name: str, content: str | bytes) -> list[str]:
    """``lelp embed`` on a data file written with ``content``."""
    return ["embed", "--set", f"dataset.source={_write(d / name, content)}"]


def _with_transfer(d: Path, name: str, content: str) -> list[str]:
    """``lelp embed`` on a good data file with the transfer file ``name`` beside it."""
    data = _embed_file(d, "data.csv", _csv_rows(20))
    return [*data, "--set", f"dataset.transfer={_write(d / name, content)}"]


def _parquet_really_csv(d: Path) -> Path:
    return _write(d / "fake.parquet", _csv_rows())


def _arrays_npz(d: Path, kind: str) -> Path:
    """A teacher-arrays file for digits-bin (d=5): valid (``ok``) or with NaN, inf, bad width."""
    r = np.random.default_rng(0)
    W = r.normal(size=(2, 5))
    H = {s: r.normal(size=(n, 5)) for s, n in (("train", 1437), ("test", 360))}
    if kind == "nan":
        H["train"][[0, 7], 1] = np.nan
    elif kind == "inf":
        H["test"][3, 0] = np.inf
    elif kind == "wide":
        H["test"] = np.hstack([H["test"], H["test"][:, :2]])
    Z = {s: h[:, :5] @ W.T for s, h in H.items()}
    arrs = {f"H_{s}": h for s, h in H.items()} | {f"Z_{s}": z for s, z in Z.items()}
    np.savez(d / f"{kind}.npz", W=W, **arrs)
    return d / f"{kind}.npz"


def _arrays_teacher(d: Path, kind: str) -> list[str]:
    """CLI options for digits-bin with an arrays teacher read from a file made here."""
    path = _arrays_npz(d, kind)
    return [*DIGITS[:2], "--set", "teacher.kind=arrays", "--set", f"teacher.path={path}"]


def _base_encoder_folder(d: Path) -> Path:
    """A saved BertModel (no classifier head): not a sequence-classification checkpoint."""
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=64, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=16,
    )  # fmt: skip
    transformers.BertModel(cfg).save_pretrained(d / "base-encoder")
    return d / "base-encoder"


def _corrupt_weights_folder(d: Path) -> Path:
    """A sequence-classification config next to a model.safetensors of random bytes."""
    folder = d / "corrupt"
    folder.mkdir()
    config = {
        "model_type": "bert",
        "architectures": ["BertForSequenceClassification"],
        "num_labels": 2,
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 16,
    }
    _write(folder / "config.json", json.dumps(config))
    _write(folder / "model.safetensors", np.random.default_rng(0).bytes(512))
    return folder


DIGITS_SET = [
    "--set", "dataset.source=digits-bin", "--set", "teacher.kind=digits-mlp", "--set",
    "student.kind=mlp", "--set", "train.epochs=1",
]  # fmt: skip

# Each case: (id, CLI args from a tmp folder, regex the error line must match: problem + fix).
CLI_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    (
        "empty file",
        lambda d: _embed_file(d, "empty.csv", ""),
        r"empty\.csv: the file is empty \(0 bytes\); it needs a header and rows",
    ),
    (
        "wrong delimiter",
        lambda d: _embed_file(d, "s.csv", "text;label\na;x\n"),
        r"s\.csv: only one column .*looks ';'-separated.*re-save it with ','",
    ),
    (
        "misnamed label column",
        lambda d: _embed_file(d, "c.csv", _csv_rows().replace("label", "Label", 1)),
        r"column 'label' not found; columns are \['text', 'Label'\]; "
        r"choose one: --set dataset\.label_col",
    ),
    (
        "text and label the same column",
        lambda d: [*_embed_file(d, "c.csv", _csv_rows()), "--set", "dataset.label_col=text"],
        r"the text column and the label column are both 'text'; map the label to the column "
        r"that holds the classes",
    ),
    (
        "missing text column",
        lambda d: [*_embed_file(d, "c.csv", _csv_rows()), "--set", "dataset.text_col=review"],
        r"column 'review' not found; columns are \['text', 'label'\]; "
        r"choose one: --set dataset\.text_col",
    ),
    (
        "no labels at all",
        lambda d: _embed_file(d, "n.csv", "text,label\nx,NaN\ny,\n"),
        r"n\.csv: none of the 2 rows has a label in column 'label'.*fill in labels",
    ),
    (
        "transfer labels outside the label set",
        lambda d: _with_transfer(d, "t.csv", "text,label\nan input,pos\nanother,maybe\n"),
        r"t\.csv: 1 rows have labels outside the dataset's classes \['neg', 'pos'\]: "
        r"\['maybe'\] \(data rows 2,.*fix or blank those labels",
    ),
    (
        "transfer without the text column",
        lambda d: _with_transfer(d, "t.jsonl", '{"review": "an input"}\n'),
        r"t\.jsonl: no text column 'text' \(columns are \['review'\]\).*rename its text "
        r"column to 'text', or save the inputs as a \.txt file",
    ),
    (
        "transfer that repeats the training rows",
        lambda d: _with_transfer(d, "t.txt", "".join(f"text {i}\n" for i in range(8))),
        r"all 8 transfer rows were dropped \(\d+ equal to a dev/test text, \d+ equal to a "
        r"labeled training text, 0 empty\).*remove dataset\.transfer",
    ),
    (
        "one class",
        lambda d: _embed_file(d, "o.csv", _csv_rows(label=lambda i: "pos")),
        r"o\.csv: only one class \('pos'\).*add examples of another class",
    ),
    (
        "10,000 distinct labels",
        lambda d: _embed_file(d, "ids.csv", _csv_rows(10_000, label=lambda i: f"id{i}")),
        r"ids\.csv: column 'label' has 10000 distinct values .*class labels: "
        r"--set dataset\.label_col",
    ),
    (
        "empty texts",
        lambda d: _embed_file(d, "t.csv", _csv_rows() + ',pos\n"  ",neg\n'),
        r"t\.csv: 2 of 10 rows have an empty text .*remove those rows",
    ),
    (
        "non-UTF-8",
        lambda d: _embed_file(d, "l.csv", "text,label\ncafé,pos\n".encode("latin-1")),
        r"l\.csv: not valid UTF-8: byte 0xe9 .*re-save the file as UTF-8",
    ),
    (
        "duplicate header",
        lambda d: _embed_file(d, "h.csv", "text,label,text\na,x,b\n"),
        r"h\.csv: duplicate column names \['text'\] in the header; rename",
    ),
    (
        "parquet that is CSV",
        lambda d: ["embed", "--set", f"dataset.source={_parquet_really_csv(d)}"],
        r"fake\.parquet: not a Parquet file .*probably a CSV.*rename it",
    ),
    (
        "embeddings with NaN",
        lambda d: ["embed", *_arrays_teacher(d, "nan")],
        r"H_train has 2 non-finite values",
    ),
    (
        "embeddings with inf",
        lambda d: ["embed", *_arrays_teacher(d, "inf")],
        r"H_test has 1 non-finite values",
    ),
    (
        "embedding width != W",
        lambda d: ["embed", *_arrays_teacher(d, "wide")],
        r"H_test has width 7 but W has width 5; H must be \(n, d\)",
    ),
    (
        "S above the embedding width",
        lambda d: [
            "subclasses",
            *_arrays_teacher(d, "ok"),
            "--set",
            "subclasses.null_space=false",
            "--set",
            "subclasses.n_subclasses=6",
        ],
        r"class 0 has \d+ examples and d=5, so at most 5 .*requested S=6: lower n_subclasses",
    ),
    (
        "S above the null-space rank",
        lambda d: ["subclasses", *_arrays_teacher(d, "ok"), "--set", "subclasses.n_subclasses=4"],
        r"class 0: its \d+ embeddings after the null-space projection span only 3 directions",
    ),
    (
        "beta zero",
        lambda _d: ["distill", "--set", "subclasses.beta=0"],
        r"subclasses\.beta: Input should be greater than 0 \(got 0\)",
    ),
    (
        "beta negative",
        lambda _d: ["subclasses", "--set", "subclasses.beta=-0.5"],
        r"subclasses\.beta: Input should be greater than 0 \(got -0\.5\)",
    ),
    (
        "tau zero",
        lambda _d: ["distill", "--set", "train.tau=0"],
        r"train\.tau: Input should be greater than 0 \(got 0\)",
    ),
    (
        "tau negative",
        lambda _d: ["distill", "--set", "train.tau=-2"],
        r"train\.tau: Input should be greater than 0 \(got -2\)",
    ),
    (
        "checkpoint is a base encoder",
        lambda d: [
            "embed",
            "--set",
            "teacher.kind=hf",
            "--set",
            f"teacher.path={_base_encoder_folder(d)}",
        ],
        r"declares architectures \['BertModel'\], not a \*ForSequenceClassification.*"
        r"use teacher kind 'minilm'",
    ),
    (
        "checkpoint with corrupt weights",
        lambda d: [
            "embed",
            "--set",
            "teacher.kind=hf",
            "--set",
            f"teacher.path={_corrupt_weights_folder(d)}",
        ],
        r"corrupt: weights could not be loaded .*re-save the checkpoint",
    ),
    (
        "hub id while offline",
        lambda _d: ["embed", "--set", "teacher.kind=hf", "--set", "teacher.path=org/absent-xyz"],
        r"hub id 'org/absent-xyz' cannot be fetched offline .*pass the local folder",
    ),
    (
        "YAML unknown key",
        lambda d: ["distill", str(_write(d / "u.yaml", "train:\n  temperature: 4\n"))],
        r"unknown key 'train\.temperature': remove it or check its spelling",
    ),
    (
        "YAML wrong type",
        lambda d: ["distill", str(_write(d / "w.yaml", "train:\n  epochs: many\n"))],
        r"train\.epochs: Input should be a valid integer.*\(got 'many'\)",
    ),
    (
        "YAML syntax",
        lambda d: ["distill", str(_write(d / "y.yaml", "train: {tau: 1\n"))],
        r"y\.yaml: not readable as YAML \(line 2, column 1: .*\); check its syntax",
    ),
    (
        "YAML not UTF-8",
        lambda d: ["distill", str(_write(d / "b.yaml", b"name: caf\xe9\n"))],
        r"b\.yaml: not valid UTF-8 \(byte 0xe9 at offset 9\); re-save the file as UTF-8",
    ),
    (
        "teacher without its path",
        lambda _d: ["distill", *DIGITS_SET, "--set", "teacher.kind=arrays"],
        r"teacher kind 'arrays' needs teacher\.path: a \.npz or \.parquet file",
    ),
    (
        "method the student cannot run",
        lambda _d: ["distill", *DIGITS_SET, "--set", "train.objective=amad"],
        r"amad aligns attention maps: it needs student\.kind 'transformer' \(got 'mlp'\)",
    ),
    (
        "method with nothing to train the head",
        lambda _d: [
            "distill",
            *DIGITS_SET,
            "--set",
            "train.objective=fitnet",
            "--set",
            "train.fitnet.kd_weight=0",
        ],  # fmt: skip
        r"fitnet: with train\.fitnet\.kd_weight=0 and train\.alpha=0 nothing trains the "
        r"student's head; set train\.alpha > 0",
    ),
    (
        "missing saved spec",
        lambda _d: ["distill", "--spec", "nope"],
        r"no saved spec named 'nope'; saved specs: \['keep'\]",
    ),
]


@pytest.mark.parametrize(("case", "make_args", "message"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_input_one_line_exit_2_and_nothing_lost(
    case: str,
    make_args: Callable[[Path], list[str]],
    message: str,
    saved_ws: Workspace,
    tmp_path: Path,
) -> None:
    before = _snapshot(saved_ws.root)
    (tmp_path / "in").mkdir()
    res = runner.invoke(app, [*make_args(tmp_path / "in"), "-w", str(saved_ws.root)])
    assert res.exit_code == 2, res.output
    line = _one_error_line(res.output)
    assert re.search(message, line), line
    _assert_nothing_lost(before, _snapshot(saved_ws.root))
    # The workspace is still fully usable after the failure.
    assert Workspace(saved_ws.root).load_spec("keep") == {"subclasses": {"n_subclasses": 3}}
    assert Workspace(saved_ws.root).load_run("r1")["metrics"]["student"]["accuracy"] == 91.5


# --------------------------------------------------------------------------- texts, sizes


@pytest.fixture(scope="module")
def minilm_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from lelp_studio.teachers import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path())


MEGABYTE_TEXT = "a very long review " * (2**20 // 19 + 1)


def test_megabyte_text_loads_intact(tmp_path: Path) -> None:
    body = _csv_rows(6) + f'"{MEGABYTE_TEXT}",pos\n'
    ds = load_file(_write(tmp_path / "big.csv", body), test_size=0.3)
    texts = [t for s in ds.splits.values() for t in (s.texts or [])]
    assert max(len(t) for t in texts) == len(MEGABYTE_TEXT) >= 2**20


def test_teacher_truncates_megabyte_text_to_max_length(minilm_tokenizer: Any) -> None:
    """extract() hands the model at most max_length tokens, whatever the text length."""
    import torch

    from lelp_studio.teachers import extract

    max_length = 16
    seen: list[tuple[int, ...]] = []

    def model_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        seen.append(tuple(batch["input_ids"].shape))
        return batch["attention_mask"].sum(1, keepdim=True).float()

    (n_tokens,) = extract(model_fn, minilm_tokenizer, ["short", MEGABYTE_TEXT], max_length, 2)
    assert max(shape[1] for shape in seen) == max_length
    assert n_tokens[:, 0].tolist() == [3.0, float(max_length)]  # [CLS] short [SEP]; truncated


def test_minilm_teacher_handles_megabyte_text() -> None:
    """The whole teacher (tokenise, encode, fit the head) on a dataset holding a 1 MB text."""
    from lelp_studio.teachers import compute_teacher_outputs

    texts = [f"good fine {i}" for i in range(4)] + [f"bad awful {i}" for i in range(4)]
    texts[0] = MEGABYTE_TEXT
    y = np.array([0] * 4 + [1] * 4)
    ds = Dataset(
        "mb",
        ["pos", "neg"],
        {"train": Split(y=y, texts=texts), "test": Split(y=y[1::2], texts=texts[1::2])},
    )
    spec = TeacherSpec(kind="minilm", max_length=32, batch_size=4)
    t0 = time.perf_counter()
    out = compute_teacher_outputs(ds, spec)
    assert time.perf_counter() - t0 < 30
    assert out.H["train"].shape == (8, 384) and out.H["test"].shape == (4, 384)
    assert np.all(np.isfinite(out.H["train"])) and np.all(np.isfinite(out.Z["train"]))


def test_ten_thousand_labels_in_a_frame_is_a_data_error() -> None:
    df = pd.DataFrame({"text": [f"t{i}" for i in range(10_000)], "label": np.arange(10_000)})
    with pytest.raises(DataError, match=r"10000 distinct values .*regression target or an id"):
        dataset_from_frame(df, "ids", test_df=df)


@pytest.mark.parametrize(
    ("n_bytes", "limit_mb", "ok"),
    [(0, 1, True), (2**20, 1, True), (2**20 + 1, 1, False), (5 * 2**20, 4.5, False)],
)
def test_check_upload_size(n_bytes: int, limit_mb: float, ok: bool) -> None:
    if ok:
        check_upload_size(n_bytes, limit_mb)
        return
    with pytest.raises(
        DataError, match=rf"big\.csv: .* MB is over the upload limit of {limit_mb:g}"
    ):
        check_upload_size(n_bytes, limit_mb, name="big.csv")
    with pytest.raises(DataError, match=r"give the file's path .* instead of uploading"):
        check_upload_size(n_bytes, limit_mb)


def test_upload_limit_follows_streamlit_config(tmp_path: Path) -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    conf = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert upload_limit_mb() == conf["server"]["maxUploadSize"]
    check_upload_size(upload_limit_mb() * 2**20)
    with pytest.raises(DataError, match="over the upload limit"):
        check_upload_size(upload_limit_mb() * 2**20 + 1)
    own = _write(tmp_path / "c.toml", "[server]\nmaxUploadSize = 3\n")
    assert upload_limit_mb(own) == 3
    assert upload_limit_mb(tmp_path / "absent.toml") == 200  # Streamlit's default


# --------------------------------------------------------------------------- subclass settings


def _two_classes(n0: int, n1: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    return r.normal(size=(n0 + n1, d)), np.array([0] * n0 + [1] * n1)


@pytest.mark.parametrize(
    ("n0", "d", "S", "message"),
    [
        (3, 10, 5, r"class 0 has 3 examples and d=10, so at most 2 .*requested S=5"),
        (40, 6, 7, r"class 0 has 40 examples and d=6, so at most 6 .*requested S=7"),
    ],
    ids=["S above class count", "S above embedding width"],
)
def test_too_many_subclasses(n0: int, d: int, S: int, message: str) -> None:
    H, y = _two_classes(n0, 40, d)
    with pytest.raises(SubclassError, match=message + r": lower n_subclasses"):
        LELPSubclasses(n_subclasses=S, null_space=False).fit(H, y)
    if n0 < S:
        with pytest.raises(DataError, match=rf"class 0 has {n0} examples but {S} subclasses"):
            check_subclass_counts(y, S)


@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf])
@pytest.mark.parametrize("where", ["beta at fit", "beta at targets", "tau"])
def test_non_positive_beta_and_tau_rejected(where: str, value: float) -> None:
    H, y = _two_classes(20, 20, 5)
    Z = np.random.default_rng(1).normal(size=(40, 2))
    if where == "beta at fit":
        with pytest.raises(SubclassError, match=r"beta must be > 0; got"):
            LELPSubclasses(n_subclasses=2, beta=value, null_space=False).fit(H, y)
        return
    sub = LELPSubclasses(n_subclasses=2, null_space=False).fit(H, y)
    kw = {"beta": value} if where == "beta at targets" else {"tau": value}
    name = "beta" if where == "beta at targets" else "tau"
    with pytest.raises(SubclassError, match=rf"{name} must be > 0; got"):
        sub.targets(H, Z, **kw)


@pytest.mark.parametrize("item", ["subclasses.beta=-1", "train.tau=0", "train.tau=-0.1"])
def test_config_rejects_non_positive_beta_tau(item: str) -> None:
    with pytest.raises(ConfigError, match=r"Input should be greater than 0"):
        load_config(None, [item])


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 6), min_size=2, max_size=4),
    S=st.integers(1, 6),
)
def test_property_check_subclass_counts_iff_a_class_is_short(counts: list[int], S: int) -> None:
    y = np.repeat(np.arange(len(counts)), counts)
    n_cls = len(counts)
    short = any(c < S for c in counts)
    if short:
        with pytest.raises(DataError, match="too few examples"):
            check_subclass_counts(Dataset("p", [f"c{i}" for i in range(n_cls)], {
                "train": Split(y=y, features=np.zeros((len(y), 1)))
            }), S)  # fmt: skip
    else:
        check_subclass_counts(y, S)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(6, 40),
    d=st.integers(2, 6),
    S=st.integers(1, 8),
    seed=st.integers(0, 1000),
)
def test_property_lelp_fit_either_works_or_says_why(n: int, d: int, S: int, seed: int) -> None:
    """Any S: fit succeeds with sizes == S, or raises SubclassError (never another error)."""
    r = np.random.default_rng(seed)
    H = r.normal(size=(n, d))
    y = r.permutation(np.arange(n) % 2)
    try:
        sub = LELPSubclasses(n_subclasses=S, null_space=False, random_state=seed).fit(H, y)
    except SubclassError as err:
        assert "lower n_subclasses" in str(err)
        assert min(d, int(np.bincount(y).min()) - 1) < S
        return
    assert sub.sizes_ == [S, S]
    assign = sub.assign(H, y)
    assert np.all((assign >= y * S) & (assign < (y + 1) * S))


# --------------------------------------------------------------------------- loaders, property


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".parquet"]),
    data=st.one_of(
        st.binary(min_size=0, max_size=300),
        st.binary(max_size=200).map(lambda b: b"PAR1" + b + b"PAR1"),
        st.text(alphabet='ab,;\t"\n\r{}[]:1 \\é\x00', max_size=120).map(str.encode),
    ),
)
def test_property_loaders_raise_only_data_error(tmp_path: Path, suffix: str, data: bytes) -> None:
    """Random bytes under any supported suffix: a table, a Dataset, or a DataError, never a
    traceback from pandas, pyarrow or json."""
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)
    for load in (read_table, load_file):
        try:
            load(path)
        except DataError as err:
            assert "random" in str(err)  # the message names the file


# --------------------------------------------------------------------------- killed writers


def _run_killed(script: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return proc


def test_killed_atomic_write_bytes_keeps_previous_version(tmp_path: Path) -> None:
    target = tmp_path / "counter.json"
    atomic_write_bytes(target, b'{"epoch": 1}')
    _run_killed(
        f"""
        import os, signal
        import lelp_studio.store.files as s
        real_fsync = os.fsync
        def die(fd):
            os.kill(os.getpid(), signal.SIGKILL)
        s.os.fsync = die
        s.atomic_write_bytes(__import__("pathlib").Path({str(target)!r}), b'{{"epoch": 2, "half')
        """
    )
    assert json.loads(target.read_bytes()) == {"epoch": 1}


def test_catalogue_survives_sigkill_inside_a_transaction(saved_ws: Workspace) -> None:
    """A process killed between its writes and its COMMIT leaves no trace of them."""
    before = _snapshot(saved_ws.root)
    _run_killed(
        f"""
        import os, signal, json, time
        from lelp_studio.store import Workspace
        ws = Workspace({str(saved_ws.root)!r})
        with ws.connect() as con:
            con.execute("DELETE FROM specs")
            con.execute("DELETE FROM runs")
            for i in range(200):
                con.execute("INSERT INTO specs VALUES (?,?,?)", (f"half{{i}}", "{{}}", time.time()))
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    ws = Workspace(saved_ws.root)
    with ws.connect() as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert _snapshot(saved_ws.root)[0] == before[0]
    assert ws.list_specs() == ["keep"]
    assert [r["run_id"] for r in ws.list_runs()] == ["r1"]


def test_catalogue_survives_sigkill_while_committing(saved_ws: Workspace) -> None:
    """Killed at a random point of a stream of two-row transactions: each is all or nothing."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from lelp_studio.store import Workspace
                ws = Workspace({str(saved_ws.root)!r})
                i = 0
                while True:
                    with ws.connect() as con:
                        con.execute("INSERT INTO specs VALUES (?,?,?)", (f"a{{i}}", "{{}}", 0.0))
                        con.execute("INSERT INTO specs VALUES (?,?,?)", (f"b{{i}}", "{{}}", 0.0))
                    if i == 20:
                        print("going", flush=True)
                    i += 1
                """
            ),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "going"
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    ws = Workspace(saved_ws.root)
    with ws.connect() as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    names = set(ws.list_specs())
    a = {n[1:] for n in names if n.startswith("a")}
    b = {n[1:] for n in names if n.startswith("b")}
    assert len(a) > 20 and a == b  # no transaction half-applied
    assert "keep" in names and ws.load_run("r1")["name"] == "kept run"


# --------------------------------------------------------------------------- disk full, unwritable


def _enospc(*_a: Any, **_k: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("fails", ["os.replace", "np.save", "os.fsync"])
def test_disk_full_on_array_write_is_a_clear_error_and_recoverable(
    saved_ws: Workspace, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    before = _snapshot(saved_ws.root)
    mod, name = fails.split(".")
    with monkeypatch.context() as m:
        m.setattr(store_files.os if mod == "os" else store_files.np, name, _enospc)
        with pytest.raises(
            WorkspaceError, match=r"cannot write an array \(No space left on device\); free disk"
        ):
            saved_ws.put_array(np.linspace(0, 1, 50))
    assert not list((saved_ws.root / "arrays").rglob("*.tmp")), "temporary file left behind"
    _assert_nothing_lost(before, _snapshot(saved_ws.root))
    # Space is back: the same Workspace object carries on.
    sha = saved_ws.put_array(np.linspace(0, 1, 50))
    np.testing.assert_array_equal(saved_ws.get_array(sha), np.linspace(0, 1, 50))


def test_disk_full_in_catalogue_is_a_clear_error(
    saved_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLITE_FULL (the database cannot grow) maps to WorkspaceError; old rows stay."""
    before = _snapshot(saved_ws.root)
    real_connect = sqlite3.connect

    def full_connect(*a: Any, **k: Any) -> sqlite3.Connection:
        con = real_connect(*a, **k)
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        con.execute(f"PRAGMA max_page_count = {pages}")
        return con

    with monkeypatch.context() as m:
        m.setattr(store_ws.sqlite3, "connect", full_connect)
        with pytest.raises(WorkspaceError, match=r"database or disk is full; free disk space"):
            saved_ws.save_spec("big", {"blob": "x" * 200_000})
    assert _snapshot(saved_ws.root) == before
    assert saved_ws.save_spec("big", {"blob": "x"}) == "big"


def test_workspace_under_a_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unwritable even for root: a workspace path whose parent is a regular file."""
    afile = _write(tmp_path / "afile", "not a folder")
    monkeypatch.setenv("LELP_WORKSPACE", str(afile / "ws"))
    with pytest.raises(
        WorkspaceError, match=r"cannot create it \(Not a directory\); set LELP_WORK"
    ):
        Workspace()
    res = runner.invoke(app, ["embed", *DIGITS])
    assert res.exit_code == 2
    assert "set LELP_WORKSPACE to a writable folder" in _one_error_line(res.output)
    res = runner.invoke(app, ["distill", *DIGITS, "-w", str(afile / "ws2")])
    assert res.exit_code == 2 and "ws2: cannot create it" in _one_error_line(res.output)
    assert afile.read_text() == "not a folder"
    # The same process carries on with a good workspace.
    ok = Workspace(tmp_path / "good")
    assert ok.save_spec("s", {}) == "s"
