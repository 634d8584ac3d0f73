"""Exports (issue 17): ONNX and Hugging Face folders give the project's class predictions,
carry a model card, and bad input is refused with one line.

Students are seconds-long: digits-bin MLPs and text-demo (200 training rows) bag and one-layer
transformer students, trained once for the module in one workspace (the MiniLM teacher's
outputs are computed once there).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lelp_studio import objectives, pipeline
from lelp_studio.cli import app
from lelp_studio.config import load_config
from lelp_studio.export import ExportError, export_run, onnx_session, run_onnx
from lelp_studio.predict import predict
from lelp_studio.store import Workspace
from lelp_studio.students import encode_inputs, load_student
from lelp_studio.teachers import load_tokenizer

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()
DIGITS = ["dataset.source=digits-bin", "teacher.kind=digits-mlp", "student.kind=mlp",
          "student.hidden=16", "train.epochs=2"]  # fmt: skip
TEXT = ["dataset.source=text-demo", "dataset.max_train=200", "student.max_length=32",
        "train.epochs=4", "train.batch_size=32", "train.lr=0.01"]  # fmt: skip
SMALL = ["student.embed_dim=16", "student.hidden=16", "student.heads=2", "student.layers=1"]
RUNS = {
    "mlp-hard": [*DIGITS, "train.objective=hard"],
    "mlp-lelp": [*DIGITS, "train.objective=lelp", "subclasses.n_subclasses=3", "train.tau=2"],
    "bag-kd": [*TEXT, *SMALL, "student.kind=bag", "train.objective=kd", "train.tau=2"],
    "bag-lelp": [
        *TEXT,
        *SMALL,
        "student.kind=bag",
        "train.objective=lelp",
        "subclasses.n_subclasses=2",
        "train.tau=2",
    ],  # fmt: skip
    "tr-kd": [*TEXT, *SMALL, "student.kind=transformer", "train.objective=kd", "train.tau=2"],
    "tr-lelp": [
        *TEXT,
        *SMALL,
        "student.kind=transformer",
        "train.objective=lelp",
        "subclasses.n_subclasses=2",
        "train.tau=3",
    ],  # fmt: skip
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, dict[str, Any]]:
    """(workspace, {name: run record}) for every student of RUNS, trained once."""
    with pytest.MonkeyPatch.context() as mp:  # the autouse offline env is per test
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        ws = Workspace(tmp_path_factory.mktemp("export_ws"))
        recs, preps = {}, {}
        for name, overrides in RUNS.items():
            cfg = load_config(None, [*overrides, f"name={name}"])
            kind = cfg.student.kind
            if kind not in preps:
                preps[kind] = pipeline.prepare(cfg, ws)
            recs[name] = pipeline.run_distill(cfg, ws, run_id=name, prep=preps[kind])
    return ws, recs


def _eval_inputs(ws: Workspace, rec: dict[str, Any]) -> tuple[dict[str, torch.Tensor], Any]:
    """The run's evaluation split encoded as the project encodes it, and the config."""
    cfg = load_config(None, RUNS[rec["run_id"]])
    ds = pipeline.get_dataset(cfg.dataset)
    split = ds.splits[rec["artifacts"]["eval_split"]]
    tok = load_tokenizer(cfg.teacher) if ds.is_text else None
    return encode_inputs(split, tok, cfg.student.max_length), cfg


def _project_log_probs(ws: Workspace, rec: dict[str, Any], inputs: dict) -> np.ndarray:
    """How lelp-studio predicts: the saved student's forward, then ``class_logits``."""
    cfg = load_config(None, RUNS[rec["run_id"]])
    student, meta = load_student(ws.artifact_path(rec, "student_dir"))
    raw = predict(student, inputs)
    objective = objectives.make(cfg.train.objective, cfg.train)
    return objective.restore(raw.shape[1], meta.get("sizes")).class_logits(raw).numpy()


# -- onnx: every student kind, hard/kd and lelp ---------------------------------------------


@pytest.mark.parametrize("name", list(RUNS))
def test_onnx_gives_the_project_predictions(trained: Any, name: str, tmp_path: Path) -> None:
    ws, recs = trained
    rec = recs[name]
    out = export_run(ws, rec, "onnx", tmp_path / "onnx")
    inputs, cfg = _eval_inputs(ws, rec)
    want = _project_log_probs(ws, rec, inputs)
    # the stored eval logits are the same numbers: the export matches what the run scored
    np.testing.assert_allclose(want, ws.get_array(rec["artifacts"]["eval_logits"]), atol=1e-5)
    session = onnx_session(out / "model.onnx")
    got = run_onnx(session, {k: v.numpy() for k, v in inputs.items()})
    assert got.shape == (len(want), 2)  # C class outputs, whatever the head's width
    assert (got.argmax(1) == want.argmax(1)).all()
    assert np.abs(got - want).max() < 1e-4
    assert len(set(want.argmax(1))) == 2  # a student that predicts one class proves little
    # dynamic axes: one row at its own (shorter) length, and an odd batch
    one = {k: v[:1] for k, v in inputs.items()}
    if "attention_mask" in one:
        n = int(one["attention_mask"].sum())
        one = {k: v[:, :n] for k, v in one.items()}
    np.testing.assert_allclose(run_onnx(session, one), want[:1], atol=1e-4)
    np.testing.assert_allclose(
        run_onnx(session, {k: v[:7].numpy() for k, v in inputs.items()}), want[:7], atol=1e-4
    )
    files = {p.name for p in out.iterdir()}
    assert {"model.onnx", "README.md", "export.json"} <= files
    assert ("tokenizer.json" in files) == (cfg.student.kind != "mlp")


# -- hf: transformer students through the Auto classes ----------------------------------------


@pytest.mark.parametrize("name", ["tr-kd", "tr-lelp"])
def test_hf_export_loads_with_auto_classes(trained: Any, name: str, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    ws, recs = trained
    rec = recs[name]
    out = export_run(ws, rec, "hf", tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "lelp_student"
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()

    inputs, cfg = _eval_inputs(ws, rec)
    want = _project_log_probs(ws, rec, inputs)
    texts = pipeline.get_dataset(cfg.dataset).splits[rec["artifacts"]["eval_split"]].texts
    tok = AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)
    batch = tok(list(texts), padding=True, truncation=True, max_length=32, return_tensors="pt")
    assert torch.equal(batch["input_ids"], inputs["input_ids"])  # the project's token ids
    with torch.no_grad():
        got = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert (got.argmax(1).numpy() == want.argmax(1)).all()
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_hf_encoder_loads_without_remote_code_and_the_card_head_agrees(
    trained: Any, tmp_path: Path
) -> None:
    """The documented no-remote-code route (BertModel + mean + linear head) gives the same
    predictions; the Auto class without trust_remote_code fails loudly, never silently
    building a [CLS] classifier with random layers."""
    from transformers import AutoModelForSequenceClassification

    ws, recs = trained
    rec = recs["tr-kd"]
    out = export_run(ws, rec, "hf", tmp_path / "hf")
    inputs, _ = _eval_inputs(ws, rec)
    want = _project_log_probs(ws, rec, inputs)
    ns: dict[str, Any] = {}
    code = re.findall(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S)
    assert len(code) == 2
    code = [c.replace(f'folder = "{out.name}"', f'folder = "{out}"') for c in code]
    exec(code[0], ns)  # the card's Auto-class snippet runs as written
    ns["batch"] = inputs
    exec(code[1].replace("print(", "result = ("), ns)
    assert (ns["result"].argmax(1).numpy() == want.argmax(1)).all()
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModelForSequenceClassification.from_pretrained(out)


# -- the model card ------------------------------------------------------------------------


def test_model_card_says_what_how_good_how_big_and_how_to_load(
    trained: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, recs = trained
    rec = recs["mlp-lelp"]
    out = export_run(ws, rec, "onnx", tmp_path / "card")
    card = (out / "README.md").read_text()
    s = rec["metrics"]["student"]
    for needle in (
        "digits-mlp",  # teacher
        "`digits-bin`",  # data
        "objective: `lelp` (tau 2.0",  # objective and its settings
        "S = 3 per class",
        f"{s['accuracy']:.2f}",  # test accuracy
        f"{s['agreement']:.2f}",  # fidelity: agreement
        f"{s['kl']:.4f}",  # fidelity: KL
        "selection split: `dev` (144 rows",
        "parameters:",
        "bytes",
        "Latency",
        "## How to load it",
    ):
        assert needle in card, needle
    info = json.loads((out / "export.json").read_text())
    assert info["labels"] == ["even", "odd"] and info["head"]["sizes"] == [3, 3]
    (snippet,) = re.findall(r"```python\n(.*?)```", card, re.S)
    exec(snippet.replace(f'folder = "{out.name}"', f'folder = "{out}"'), {})
    printed = capsys.readouterr().out
    assert "['even']" in printed or "['odd']" in printed


def test_model_card_shows_latency_compare_measured(
    trained: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The card reads the cost Compare cached for the run (lelp_studio.cost), never measures."""
    import lelp_studio.cost

    ws, recs = trained
    measured = {
        "teacher": {"params": 25090, "latency_ms": {"cpu": {"1": 0.5, "64": 2.0}}, "machine": "m"},
        "student": {"params": 8450, "latency_ms": {"cpu": {"1": 0.1, "64": 0.5}}, "machine": "m"},
    }
    monkeypatch.setattr(lelp_studio.cost, "cached_cost", lambda ws, run: measured)
    card = (export_run(ws, recs["mlp-hard"], "onnx", tmp_path / "c") / "README.md").read_text()
    assert "| student | cpu | 0.100 | 0.500 | 5.0x / 4.0x |" in card
    assert "measured by lelp-studio on m" in card


# -- the command and its bad input ------------------------------------------------------------


def _copy_run(ws: Workspace, rec: dict[str, Any], new_id: str, **config: Any) -> dict[str, Any]:
    """A copy of ``rec`` under ``new_id`` with its own student folder (to damage safely)."""
    src = ws.artifact_path(rec, "student_dir")
    dst = ws.run_dir(new_id) / "student"
    shutil.copytree(src, dst, dirs_exist_ok=True)
    copy = json.loads(json.dumps(rec))
    copy["run_id"] = new_id
    copy["artifacts"]["student_dir"] = dst.relative_to(ws.root).as_posix()
    for section, values in config.items():
        copy["config"][section].update(values)
    ws.save_run(copy)
    return copy


def _refused(args: list[str], ws: Workspace, message: str) -> None:
    res = runner.invoke(app, ["export", *args, "-w", str(ws.root)])
    assert res.exit_code == 2, res.output
    assert message in res.output, res.output
    assert "Traceback" not in res.output
    assert res.output.strip().count("\n") == 0  # one line


def test_cli_exports_and_refuses_an_occupied_folder(trained: Any, tmp_path: Path) -> None:
    ws, _ = trained
    out = tmp_path / "cli"
    res = runner.invoke(app, ["export", "bag-kd", "--format", "onnx", "--out", str(out),
                              "-w", str(ws.root)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"exported run bag-kd (bag student, 2 classes) as onnx to {out}" in res.output
    first = (out / "export.json").read_text()
    _refused(["bag-kd", "--out", str(out)], ws, "exists and is not empty")
    again = runner.invoke(app, ["export", "bag-lelp", "--out", str(out), "--force",
                                "-w", str(ws.root)])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert (out / "export.json").read_text() != first
    assert "bag-lelp" in (out / "README.md").read_text()
    assert not list(tmp_path.glob(".cli*"))  # no half-built or old folder left behind
    # --force never deletes a folder that is not an export
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    _refused(["bag-kd", "--out", str(mine), "--force"], ws, "not a lelp export")
    assert (mine / "notes.txt").read_text() == "keep me"


def test_unknown_run_and_unknown_format_are_refused(trained: Any, tmp_path: Path) -> None:
    ws, _ = trained
    _refused(["nope", "--out", str(tmp_path / "x")], ws, "no run with id 'nope'")
    _refused(["bag-kd", "--format", "tflite", "--out", str(tmp_path / "x")], ws, "hf, onnx")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["mlp-hard", "bag-kd"])
def test_hf_of_a_non_transformer_names_the_supported_format(
    trained: Any, name: str, tmp_path: Path
) -> None:
    ws, _ = trained
    _refused([name, "--format", "hf", "--out", str(tmp_path / "hf")], ws,
             "Supported formats for it: onnx")  # fmt: skip


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "student.safetensors").unlink(), "student weights are missing"),
        (lambda d: (d / "student.safetensors").write_bytes(b"\x00garbage"), "are damaged"),
        (lambda d: (d / "student.json").write_text("{not json"), "are damaged"),
        (lambda d: shutil.rmtree(d), "student weights are missing"),
    ],
    ids=["weights-gone", "weights-garbage", "json-garbage", "folder-gone"],
)
def test_missing_or_damaged_weights_are_refused(
    trained: Any, damage: Any, message: str, tmp_path: Path
) -> None:
    ws, recs = trained
    rid = f"damaged-{tmp_path.name}"
    copy = _copy_run(ws, recs["mlp-hard"], rid)
    damage(ws.artifact_path(copy, "student_dir"))
    _refused([rid, "--out", str(tmp_path / "x")], ws, message)
    with pytest.raises(ExportError, match=message):
        export_run(ws, copy, "onnx", tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_retrieval_objective_is_refused(trained: Any, tmp_path: Path) -> None:
    """ReAugKD predicts with a retrieval over the teacher's training set: not exportable."""
    ws, recs = trained
    copy = _copy_run(ws, recs["mlp-hard"], "as-reaugkd", train={"objective": "reaugkd"})
    with pytest.raises(ExportError, match="retrieval"):
        export_run(ws, copy, "onnx", tmp_path / "r")


# -- the latency benchmark at toy size ----------------------------------------------------------


def test_latency_bench_toy_run_writes_ratios(tmp_path: Path) -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from bench import latency

    res = latency.main(["--only", "digits", "--rounds", "1", "--texts", "4", "--batches", "1",
                        "--out", str(tmp_path), "--name", "toy"])  # fmt: skip
    rows = res["rows"]
    assert {(r["backend"], r["batch"]) for r in rows} == {
        (b, n) for b in ("pytorch", "onnxruntime") for n in (1, 64)
    }
    for r in rows:
        if r["role"] == "teacher":
            assert r["speedup_vs_teacher"] == 1.0
        assert r["ms"] > 0 and r["speedup_vs_teacher"] > 0
    md = (tmp_path / "toy.md").read_text()
    assert "x teacher" in md and "mlp 64-64-64, LELP head" in md and res["machine"]["cpu"] in md
    assert (tmp_path / "toy.json").is_file()
