"""Unlabeled transfer data (issue 15, items 1 and 4): reading, dropping repeats, the teacher's
outputs, training on labeled + transfer rows, the run record, the CLI and the Data page.

Tiny CSVs in tmp_path and a precomputed ("arrays") teacher keep every test to seconds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from lelp_studio import analysis, objectives, pipeline
from lelp_studio.cli import app
from lelp_studio.config import DatasetSpec, RunConfig, load_config
from lelp_studio.data import DataError, load_dataset
from lelp_studio.objectives import Batch, TeacherData
from lelp_studio.store import Workspace
from lelp_studio.types import TRANSFER, RowStack

ROOT = Path(__file__).resolve().parents[1]
WORDS = {"pos": ["great", "lovely", "superb"], "neg": ["awful", "broken", "dull"]}


def _train_csv(folder: Path, n: int = 60, unlabeled: int = 0) -> Path:
    """``n`` labeled reviews (pos/neg, latent topic) and ``unlabeled`` rows with no label."""
    rows = ["text,label,topic"]
    for i in range(n):
        label, topic = ("neg", "pos")[i % 2], ("food", "tech")[(i // 2) % 2]
        rows.append(f"the {topic} was {WORDS[label][i % 3]} {i},{label},{topic}")
    rows += [f"an unlabeled {('food', 'tech')[i % 2]} note {i},,food" for i in range(unlabeled)]
    path = folder / "train.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _transfer_lines(k: int) -> list[str]:
    return [f"a transfer review, {WORDS[('neg', 'pos')[i % 2]][i % 3]} {i}" for i in range(k)]


def _write_transfer(folder: Path, texts: list[str], fmt: str, **cols: list[Any]) -> Path:
    path = folder / f"transfer.{fmt}"
    if fmt == "txt":
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
        return path
    df = pd.DataFrame({"text": texts, **cols})
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "tsv":
        df.to_csv(path, index=False, sep="\t")
    elif fmt == "parquet":
        df.to_parquet(path)
    else:
        df.to_json(path, orient="records", lines=True)
    return path


def _spec(tmp_path: Path, k: int = 40, unlabeled: int = 6) -> DatasetSpec:
    train = _train_csv(tmp_path, unlabeled=unlabeled)
    transfer = _write_transfer(tmp_path, _transfer_lines(k), "txt") if k else None
    return DatasetSpec(
        source=str(train),
        latent_cols=["topic"],
        transfer=None if transfer is None else str(transfer),
    )


def _arrays_teacher(tmp_path: Path, spec: DatasetSpec, d: int = 12) -> list[str]:
    """A precomputed teacher for ``spec``'s splits (random H, Z = H W^T + b), as overrides."""
    ds = load_dataset(spec)
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(2, d)).astype(np.float32), np.zeros(2, np.float32)
    arrays: dict[str, np.ndarray] = {"W": W, "b": b}
    for name, split in ds.splits.items():
        H = rng.normal(size=(len(split), d)).astype(np.float32)
        arrays[f"H_{name}"], arrays[f"Z_{name}"] = H, H @ W.T + b
    path = tmp_path / "teacher.npz"
    np.savez(path, **arrays)
    return ["teacher.kind=arrays", f"teacher.path={path}", "teacher.tokenizer=minilm"]


def _config(tmp_path: Path, spec: DatasetSpec, *extra: str) -> RunConfig:
    data = [f"dataset.{k}={v}" for k, v in spec.model_dump(mode="json").items() if v is not None]
    base = ["student.kind=bag", "student.embed_dim=16", "student.hidden=16", "train.epochs=1"]
    base += ["train.batch_size=16", "train.device=cpu", "subclasses.n_subclasses=2"]
    return load_config(None, [*data, *_arrays_teacher(tmp_path, spec), *base, *extra])


# ---------------------------------------------------------------------------------- data


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "jsonl", "txt"])
def test_a_transfer_file_in_every_format(tmp_path: Path, fmt: str) -> None:
    train = _train_csv(tmp_path, unlabeled=3)
    path = _write_transfer(tmp_path, _transfer_lines(10), fmt)
    ds = load_dataset(DatasetSpec(source=str(train), transfer=str(path)))
    assert ds.n_transfer == 13  # 10 from the file, 3 with an empty label in train.csv
    assert ds.transfer_info["from_file"] == 10 and ds.transfer_info["from_train_file"] == 3
    assert (ds.splits[TRANSFER].y == -1).all()
    assert "13 unlabeled transfer rows (10 from the transfer file and 3 with an empty label" in (
        ds.split_note
    )


def test_transfer_rows_repeating_labeled_texts_or_empty_are_dropped_and_counted(
    tmp_path: Path,
) -> None:
    spec = DatasetSpec(source=str(_train_csv(tmp_path)))
    plain = load_dataset(spec)
    test, dev, train = (plain.splits[s].texts or [] for s in ("test", "dev", "train"))
    lines = [*_transfer_lines(5), f"  {test[0]} ", test[1], dev[0], train[0], train[1], train[2]]
    path = _write_transfer(tmp_path, [*lines, "", "   "], "txt")
    ds = load_dataset(spec.model_copy(update={"transfer": str(path)}))
    info = ds.transfer_info
    assert (info["dropped_eval"], info["dropped_train"], info["dropped_empty"]) == (3, 3, 2)
    assert info["kept"] == ds.n_transfer == 5
    assert ds.splits[TRANSFER].texts == _transfer_lines(5)
    assert "dropped 3 equal to a dev/test text, 3 equal to a labeled training text, 2 empty" in (
        ds.split_note
    )
    # the labeled splits are untouched
    assert [len(ds.splits[s]) for s in ("train", "dev", "test")] == [
        len(plain.splits[s]) for s in ("train", "dev", "test")
    ]


def test_a_transfer_set_of_only_repeats_is_refused(tmp_path: Path) -> None:
    spec = DatasetSpec(source=str(_train_csv(tmp_path)))
    texts = [t for s in load_dataset(spec).splits.values() for t in s.texts or []]
    path = _write_transfer(tmp_path, texts, "txt")
    with pytest.raises(DataError, match=r"all 60 transfer rows were dropped .*remove dataset"):
        load_dataset(spec.model_copy(update={"transfer": str(path)}))


def test_transfer_labels_are_checked_against_the_file_values_and_names(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    rows = "".join(f"review {i},{i % 2}\n" for i in range(20))
    (folder / "train.csv").write_text("text,label\n" + rows, encoding="utf-8")
    (folder / "test.csv").write_text("text,label\nt0,0\nt1,1\n", encoding="utf-8")
    (folder / "labels.json").write_text('{"0": "negative", "1": "positive"}', encoding="utf-8")
    ok = _write_transfer(tmp_path, ["u1", "u2", "u3"], "csv", label=["1", "positive", ""])
    ds = load_dataset(DatasetSpec(source=str(folder), transfer=str(ok)))
    assert ds.n_transfer == 3  # "1" (the file's value), "positive" (its name) and no label
    bad = _write_transfer(tmp_path, ["u1", "u2", "u3"], "jsonl", label=["1", "2", "maybe"])
    with pytest.raises(
        DataError,
        match=r"transfer\.jsonl: 2 rows have labels outside the dataset's classes .*"
        r"\['2', 'maybe'\] \(data rows 2, 3,",
    ):
        load_dataset(DatasetSpec(source=str(folder), transfer=str(bad)))


def test_a_transfer_file_without_the_text_column_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("review\nsome input\n", encoding="utf-8")
    with pytest.raises(
        DataError,
        match=r"t\.csv: no text column 'text' \(columns are \['review'\]\).*rename its text column"
        r" to 'text'",
    ):
        load_dataset(DatasetSpec(source=str(_train_csv(tmp_path)), transfer=str(path)))


def test_transfer_needs_a_text_dataset(tmp_path: Path) -> None:
    path = _write_transfer(tmp_path, ["x"], "txt")
    with pytest.raises(DataError, match=r"digits-bin has numeric features, and transfer rows"):
        load_dataset(DatasetSpec(source="digits-bin", transfer=str(path)))


def test_the_fingerprint_covers_the_transfer_rows_and_the_labeled_part_does_not(
    tmp_path: Path,
) -> None:
    with_t = load_dataset(_spec(tmp_path, k=10, unlabeled=0))
    without = load_dataset(DatasetSpec(source=str(tmp_path / "train.csv"), latent_cols=["topic"]))
    assert with_t.fingerprint() != without.fingerprint()
    assert with_t.labeled().fingerprint() == without.fingerprint()
    assert without.labeled() is without


def test_row_stack_reads_rows_of_both_parts_without_copying_them() -> None:
    a = np.arange(12, dtype=np.float16).reshape(4, 3)
    b = np.arange(100, 109, dtype=np.float16).reshape(3, 3)
    stack, full = RowStack([a, b]), np.concatenate([a, b])
    for key in (
        slice(None),
        slice(2, 6),
        slice(0, 7, 2),
        5,
        -1,
        np.array([6, 0, 4, 4]),
        full[:, 0] > 50,
    ):
        np.testing.assert_array_equal(stack[key], full[key])
    assert stack.shape == (7, 3) and stack.parts[0] is a
    np.testing.assert_array_equal(np.asarray(stack, dtype=np.float32), full.astype(np.float32))


# ---------------------------------------------------------------------------------- teacher


def test_teacher_outputs_cover_the_transfer_rows_and_score_only_labeled_ones(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path)
    cfg = _config(tmp_path, spec)
    ds = load_dataset(spec)
    out, _, _ = pipeline.get_teacher_outputs(Workspace(tmp_path / "ws"), ds, cfg.teacher)
    assert out.H[TRANSFER].shape[0] == out.Z[TRANSFER].shape[0] == ds.n_transfer == 46
    assert TRANSFER not in out.meta["accuracy"] and "test" in out.meta["accuracy"]
    # A transfer row's class is the teacher's, whatever class_source says.
    for source in ("label", "teacher"):
        sub = cfg.subclasses.model_copy(update={"class_source": source})
        y = pipeline.class_labels(sub, out, ds, TRANSFER)
        np.testing.assert_array_equal(y, np.asarray(out.Z[TRANSFER]).argmax(1))


# ---------------------------------------------------------------------------------- training


@pytest.mark.parametrize(
    "objective, uses", [("hard", False), ("kd", True), ("lelp", True), ("reaugkd", True)]
)
def test_distillation_trains_on_labeled_plus_transfer_rows_and_hard_on_labeled_only(
    tmp_path: Path, objective: str, uses: bool
) -> None:
    spec = _spec(tmp_path)
    cfg = _config(tmp_path, spec, f"train.objective={objective}", "train.alpha=0.5")
    prep = pipeline.prepare(cfg, Workspace(tmp_path / "ws"))
    n_lab, n_tr = len(prep.dataset.splits["train"]), prep.dataset.n_transfer
    n = n_lab + n_tr if uses else n_lab
    obj = objectives.make(objective, cfg.train)
    teacher, _ = pipeline.teacher_data(prep, cfg, obj)
    assert len(teacher) == n and teacher.n_labeled == n_lab
    assert (np.asarray(teacher.y)[n_lab:] == -1).all()
    if objective == "lelp":
        assert teacher.targets.shape[0] == n
    run = pipeline.train_student(prep, cfg)
    assert run.data == {
        "labeled": n_lab,
        "transfer": n_tr if uses else 0,
        "transfer_info": prep.dataset.transfer_info,
    }
    assert run.result.steps == math.ceil(n / 16)  # one epoch over exactly those rows


@pytest.mark.parametrize("objective", ["kd", "lelp", "dwt", "subclass-distill", "disk"])
def test_the_hard_term_skips_transfer_rows(objective: str) -> None:
    """With alpha (or a hard weight) > 0, a batch of transfer rows gets the soft term only."""
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(6, 2)).astype(np.float32)
    y = np.array([0, 1, 0, -1, -1, -1])
    targets = np.full((6, 4), 0.25, dtype=np.float32)
    spec = RunConfig().train.model_copy(update={"alpha": 1.0, "tau": 2.0})
    obj = objectives.make(objective, spec)
    teacher = TeacherData(
        Z=Z, y=y, H=rng.normal(size=(6, 5)).astype(np.float32), targets=targets, sizes=[2, 2]
    )
    obj.setup(teacher)
    # a transfer row's class (ReAugKD's projection, Subclass Distillation's head) is the
    # teacher's argmax; a labeled row keeps its label
    np.testing.assert_array_equal(teacher.classes, np.r_[y[:3], Z[3:].argmax(1)])
    assert teacher.n_labeled == 3
    out = torch.as_tensor(rng.normal(size=(6, obj.n_outputs(2))), dtype=torch.float32)
    idx = torch.arange(3, 6)
    loss = obj.loss(out[idx], Batch(idx=idx, y=torch.as_tensor(y)[idx]))
    # the same rows given some label: the hard term now counts, so the loss changes
    labeled = obj.loss(out[idx], Batch(idx=idx, y=torch.tensor([0, 0, 0])))
    assert torch.isfinite(loss) and not torch.isclose(loss, labeled)
    # and the loss of transfer rows equals the loss with the hard term switched off
    off = objectives.make(objective, spec.model_copy(update={"alpha": 0.0}))
    if objective == "dwt":
        off = objectives.make(
            objective,
            spec.model_copy(update={"dwt": spec.dwt.model_copy(update={"hard_weight": 0})}),
        )
    if objective == "subclass-distill":
        return  # its alpha splits soft and hard: checked through losses.masked_nll above
    off.setup(teacher)
    torch.testing.assert_close(loss, off.loss(out[idx], Batch(idx=idx, y=torch.as_tensor(y)[idx])))


@pytest.mark.parametrize("method", ["lelp", "kmeans", "oracle", "manual"])
def test_transfer_rows_get_targets_from_the_labeled_fit(tmp_path: Path, method: str) -> None:
    spec = _spec(tmp_path)
    cfg = _config(tmp_path, spec, f"subclasses.method={method}")
    ws = Workspace(tmp_path / "ws")
    if method == "manual":  # a group of labeled rows, saved before the transfer set existed
        ws.save_manual_group(load_dataset(spec).labeled().fingerprint(), "g", np.arange(0, 40, 3))
    prep = pipeline.prepare(cfg, ws)
    sc = cfg.subclasses
    targets, sizes, _, sub = pipeline.subclass_targets(prep, sc, 2.0, transfer=True)
    n_lab = len(prep.dataset.splits["train"])
    assert targets.shape == (n_lab + prep.dataset.n_transfer, sum(sizes))
    z = np.asarray(prep.out.Z[TRANSFER], dtype=np.float64) / 2.0
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert targets.dtype == np.float16  # with transfer rows (training_rows.TRANSFER_TARGETS)
    per_class = np.add.reduceat(
        targets[n_lab:].astype(np.float64), np.cumsum([0, *sizes[:-1]]), axis=1
    )
    # each class keeps the teacher's mass, to float16's precision
    np.testing.assert_allclose(per_class, p, atol=1e-3)
    alone, *_ = pipeline.subclass_targets(prep, sc, 2.0, sub)
    assert alone.dtype != np.float16  # no transfer rows: as computed, as before
    np.testing.assert_array_equal(targets[:n_lab], alone.astype(np.float16))  # labeled unchanged


def test_the_run_record_and_compare_say_which_data_each_run_used(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    ws = Workspace(tmp_path / "ws")
    recs = [
        pipeline.run_distill(_config(tmp_path, spec, f"train.objective={o}", f"name=r-{o}"), ws)
        for o in ("hard", "kd")
    ]
    n_lab = recs[0]["metrics"]["data"]["labeled"]
    assert recs[0]["metrics"]["data"]["transfer"] == 0
    assert recs[1]["metrics"]["data"]["transfer"] == 46
    assert recs[1]["metrics"]["data"]["transfer_info"]["from_train_file"] == 6
    ds = load_dataset(spec)
    assert all(pipeline.same_data(r, ds.labeled()) for r in ws.list_runs())
    table = analysis.run_table(ws.list_runs(), analysis.run_labels(ws.list_runs()))
    data = dict(zip(table["objective"], table["data"], strict=True))
    assert data == {
        "hard": f"{n_lab:,} labeled rows",
        "kd": f"{n_lab:,} labeled + 46 transfer rows",
    }
    assert analysis.data_text(None) == "labeled rows"  # a run recorded before transfer data


# ---------------------------------------------------------------------------------- lelp


def test_lelp_distill_with_dataset_transfer(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    cfg = _config(tmp_path, spec, "train.objective=lelp")
    ws = tmp_path / "ws"
    sets = [x for kv in _overrides(cfg) for x in ("--set", kv)]
    res = CliRunner().invoke(app, ["distill", *sets, "-w", str(ws), "--headroom-seeds", "0"])
    assert res.exit_code == 0, res.output
    n_lab = len(load_dataset(spec).splits["train"])
    assert f"data: {n_lab:,} labeled + 46 transfer rows" in res.output
    assert "46 unlabeled transfer rows (40 from the transfer file and 6 with an empty label" in (
        res.output
    )
    embed = CliRunner().invoke(app, ["embed", *sets, "-w", str(ws)])
    assert embed.exit_code == 0 and "transfer n=     46 d=12 unlabeled; teacher's classes" in (
        embed.output
    )


def _overrides(cfg: RunConfig) -> list[str]:
    d = cfg.model_dump(mode="json")
    keep = {
        "dataset": ["source", "transfer", "latent_cols"],
        "teacher": ["kind", "path", "tokenizer"],
        "student": ["kind", "embed_dim", "hidden"],
        "train": ["objective", "epochs", "batch_size", "device"],
        "subclasses": ["n_subclasses"],
    }
    return [f"{sec}.{k}={d[sec][k]}" for sec, ks in keep.items() for k in ks]


# ---------------------------------------------------------------------------------- the app


def test_the_data_page_shows_labeled_and_transfer_rows(tmp_path: Path, app_for: Any) -> None:
    spec = _spec(tmp_path)
    cfg = _config(tmp_path, spec)
    ws = tmp_path / "ws"
    ds = load_dataset(spec)
    pipeline.get_teacher_outputs(Workspace(ws), ds, cfg.teacher)  # cached: the page reads it
    at = app_for(ws)
    at.session_state["dataset_spec"] = spec.model_dump(mode="json")
    at.session_state["teacher_spec"] = cfg.teacher.model_dump(mode="json")
    at.run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["train rows"] == f"{len(ds.splits['train']):,}"
    assert metrics["transfer rows"] == "46"
    assert "Teacher accuracy (transfer)" not in metrics and "Teacher accuracy (test)" in metrics
    table = next(d.value for d in at.dataframe if "transfer rows" in d.value.columns)
    assert int(table["transfer rows"].sum()) == 46  # how the teacher labels them
    assert any("46 unlabeled transfer rows" in c.value for c in at.caption)
    # Clearing the transfer path commits the dataset without it.
    at.text_input(key="data_transfer").set_value("").run()
    assert not at.exception and at.session_state["dataset_spec"]["transfer"] is None
    assert {m.label: m.value for m in at.metric}["transfer rows"] == "6"  # the empty labels


def test_the_map_shows_transfer_rows_as_unlabeled_and_compare_names_the_data(
    tmp_path: Path, app_for: Any
) -> None:
    import json

    spec = _spec(tmp_path)
    ws = tmp_path / "ws"
    recs = [
        pipeline.run_distill(_config(tmp_path, spec, f"train.objective={o}"), Workspace(ws))
        for o in ("hard", "kd")
    ]
    cfg = RunConfig.model_validate(recs[0]["config"])
    at = app_for(ws)
    at.session_state["dataset_spec"] = spec.model_dump(mode="json")
    at.session_state["teacher_spec"] = cfg.teacher.model_dump(mode="json")
    at.run()
    at.switch_page("pages/2_map.py").run()
    assert not at.exception, at.exception
    import base64

    traces = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    names = sorted(t["name"] for t in traces)
    assert names == ["neg", "neg (unlabeled)", "pos", "pos (unlabeled)"]
    faint = [t for t in traces if t["name"].endswith("(unlabeled)")]
    assert all(t["marker"]["symbol"] == "circle-open" for t in faint)
    n_lab = len(load_dataset(spec).splits["train"])

    def ids_of(ts: list[dict[str, Any]]) -> np.ndarray:  # row ids: typed arrays ("bdata")
        return np.concatenate(
            [np.frombuffer(base64.b64decode(t["customdata"]["bdata"]), "<i4") for t in ts]
        )

    ids = ids_of(faint)
    assert len(ids) == 46  # every transfer row, by the teacher's class
    assert (ids >= n_lab).all()  # ids after train
    at.selectbox(key="map_color").set_value("pseudo-subclass (LELP)").run()
    assert not at.exception, at.exception  # transfer rows: the teacher's class's subclasses
    traces = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert len(ids_of([t for t in traces if "(unlabeled)" in t["name"]])) == 46
    at.selectbox(key="map_color").set_value("class").run()
    at.toggle(key="map_show_transfer").set_value(False).run()
    traces = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert sorted(t["name"] for t in traces) == ["neg", "pos"]
    at.selectbox(key="map_split").set_value(TRANSFER).run()  # the transfer rows alone
    assert not at.exception
    traces = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert {t["name"] for t in traces} <= {"neg (unlabeled)", "pos (unlabeled)"}
    at.switch_page("pages/5_compare.py").run()
    at.multiselect(key="cmp_runs").set_value([r["run_id"] for r in recs]).run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "data" in d.value.columns)  # "More scores"
    assert sorted(table["data"]) == [f"{n_lab} labeled + 46 transfer rows", f"{n_lab} labeled rows"]


def test_the_example_config_reads_the_demo_transfer_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    cfg = load_config(ROOT / "examples" / "text-demo-transfer.yaml")
    ds = load_dataset(cfg.dataset)
    assert ds.n_transfer == 1200 and ds.transfer_info["dropped_eval"] == 0
    assert len(ds.splits["train"]) == 1296  # the labeled rows are the demo's, unchanged
