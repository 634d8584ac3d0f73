"""Datasets the way users hold them: a folder of split files, a single file that says how it
was split, and Hugging Face ``datasets`` sources (built and saved here; nothing downloads)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lelp_studio.config import DatasetSpec
from lelp_studio.data import DataError, load_dataset, load_folder, load_hf, source_table

try:  # the optional hf extra; its tests are skipped without it
    import datasets as hfd
except ImportError:  # pragma: no cover - the dev environment installs the extra
    hfd = None
needs_hf = pytest.mark.skipif(hfd is None, reason="the optional 'hf' extra is not installed")


def _frame(n: int, start: int = 0) -> pd.DataFrame:
    rows = [
        {
            "text": f"the item {i} was {'great' if i % 2 else 'awful'}",
            "label": ["neg", "pos"][i % 2],
        }
        for i in range(start, start + n)
    ]
    return pd.DataFrame(rows)


def _load(source: Any, **kw: Any) -> Any:
    return load_dataset(DatasetSpec(source=str(source), **kw))


@pytest.fixture
def split_folder(tmp_path: Path) -> Path:
    """train.csv (60), test.parquet (20), dev.jsonl (20): three formats in one folder."""
    d = tmp_path / "reviews"
    d.mkdir()
    _frame(60).to_csv(d / "train.csv", index=False)
    _frame(20, 60).to_parquet(d / "test.parquet")
    _frame(20, 80).to_json(d / "dev.jsonl", orient="records", lines=True)
    return d


# -- a folder path of split files ---------------------------------------------------------------
def test_folder_of_split_files_is_a_source(split_folder: Path) -> None:
    ds = _load(split_folder)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 60, "test": 20, "dev": 20}
    assert ds.name == "reviews" and ds.label_names == ["neg", "pos"]
    assert ds.selection == "the dataset's own dev split"
    assert ds.split_note == ""  # the user made every split: nothing to say


def test_folder_without_dev_gets_a_selection_holdout(split_folder: Path) -> None:
    (split_folder / "dev.jsonl").unlink()
    ds = _load(split_folder)
    assert len(ds.splits["test"]) == 20 and len(ds.splits["dev"]) == 6  # 10% of train
    assert "holdout" in ds.selection


def test_folder_labels_json_names_and_orders_the_classes(tmp_path: Path) -> None:
    d = tmp_path / "ids"
    d.mkdir()
    for name, n, start in (("train", 40, 0), ("test", 10, 40)):
        df = _frame(n, start).assign(label=lambda f: (f["label"] == "pos").astype(int))
        df.to_csv(d / f"{name}.tsv", sep="\t", index=False)
    (d / "labels.json").write_text(json.dumps({"1": "positive", "0": "negative"}))
    ds = _load(d)
    assert ds.label_names == ["negative", "positive"]


def test_folder_validation_counts_as_dev(split_folder: Path) -> None:
    (split_folder / "dev.jsonl").rename(split_folder / "validation.jsonl")
    assert len(_load(split_folder).splits["dev"]) == 20


def test_folder_with_only_train_is_split_and_says_so(tmp_path: Path) -> None:
    d = tmp_path / "one"
    d.mkdir()
    _frame(100).to_csv(d / "train.csv", index=False)
    ds = _load(d)
    n = {k: len(v) for k, v in ds.splits.items()}
    assert ds.split_note == (
        "one/train.csv (no test file) was split stratified 80/20 (seed 0) into train and test: "
        f"{n['train']} train, {n['dev']} dev (held out of train), {n['test']} test rows"
    )


def test_folder_without_train_file_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    _frame(10).to_csv(d / "training.csv", index=False)
    with pytest.raises(DataError, match=r"bad: no train file \(found \['training.csv'\]\); .*"):
        _load(d)


def test_folder_with_two_train_files_is_refused(split_folder: Path) -> None:
    _frame(60).to_parquet(split_folder / "train.parquet")
    with pytest.raises(
        DataError,
        match=r"2 files for the train split \(\['train.csv', 'train.parquet'\]\); keep one",
    ):
        _load(split_folder)


def test_folder_with_dev_and_validation_is_refused(split_folder: Path) -> None:
    _frame(5).to_csv(split_folder / "validation.csv", index=False)
    with pytest.raises(DataError, match=r"2 files for the dev split"):
        _load(split_folder)


def test_folder_bad_labels_json_has_the_shared_message(split_folder: Path) -> None:
    (split_folder / "labels.json").write_text("{not json")
    with pytest.raises(DataError, match=r'labels.json: not valid JSON .*write e.g. \{"0": "neg"\}'):
        _load(split_folder)


def test_folder_column_mapping_has_the_file_messages(split_folder: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"reviews/train.csv: column 'body' not found; columns are \['text', 'label'\]; "
        r"choose one: --set dataset.text_col=<column>",
    ):
        _load(split_folder, text_col="body")


def test_folder_bad_file_names_the_file(split_folder: Path) -> None:
    (split_folder / "test.parquet").write_text("text,label\na,pos\n")
    with pytest.raises(DataError, match=r"test.parquet: not a Parquet file"):
        _load(split_folder)


def test_folder_test_label_unseen_in_train_is_named(split_folder: Path) -> None:
    _frame(20, 60).assign(label="meh").to_parquet(split_folder / "test.parquet")
    with pytest.raises(
        DataError, match=r"reviews/test.parquet: label values \['meh'\] do not occur in the train"
    ):
        _load(split_folder)


def test_load_folder_is_the_public_entry(split_folder: Path) -> None:
    assert len(load_folder(split_folder).splits["train"]) == 60


def test_source_table_reads_the_train_table_of_any_path_source(split_folder: Path) -> None:
    assert source_table(split_folder).shape == (60, 2)
    assert source_table(split_folder / "test.parquet").shape == (20, 2)
    (split_folder / "train.csv").rename(split_folder / "other.csv")
    with pytest.raises(DataError, match=r"reviews: no train file \(found \["):
        source_table(split_folder)


def test_train_file_beside_a_confused_folder_names_the_problem(split_folder: Path) -> None:
    _frame(20).to_csv(split_folder / "test.csv", index=False)  # beside test.parquet
    ds = _load(split_folder / "train.csv")  # the named file still loads, as it always did
    assert "was split" in ds.split_note and "2 files for the test split" in ds.split_note
    with pytest.raises(DataError, match=r"2 files for the test split"):
        _load(split_folder)  # the folder itself is ambiguous: refused


# -- a single file: split here, and says so in one line -----------------------------------------
def test_single_file_split_names_the_sizes(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    _frame(100).to_csv(path, index=False)
    ds = _load(path, test_size=0.25, seed=3)
    n = {k: len(v) for k, v in ds.splits.items()}
    assert n == {"train": 67, "test": 25, "dev": 8}
    assert ds.split_note == (
        "reviews.csv was split stratified 75/25 (seed 3) into train and test: "
        "67 train, 8 dev (held out of train), 25 test rows"
    )
    assert "\n" not in ds.split_note


def test_train_file_with_test_beside_it_reads_the_folder(split_folder: Path) -> None:
    ds = _load(split_folder / "train.csv")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 60, "test": 20, "dev": 20}
    assert ds.split_note.startswith(
        f"train.csv: the split files beside it are used as they are (the folder {split_folder})"
    )


def test_other_file_with_test_beside_it_mentions_it(split_folder: Path) -> None:
    _frame(100).to_csv(split_folder / "all.csv", index=False)
    ds = _load(split_folder / "all.csv")
    assert ds.split_note.startswith("all.csv was split stratified 80/20 (seed 0)")
    assert ds.split_note.endswith(
        f"; dev.jsonl and test.parquet beside it are not read; give the folder {split_folder} "
        "as the source (with train, test and optional dev files) to use them"
    )


def test_missing_path_names_every_kind_of_source(tmp_path: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"is not a demo .*not shared:<name> or hf:<name>, and no such file or folder",
    ):
        _load(tmp_path / "nope")


def test_embed_prints_the_split_note(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lelp_studio.cli import app

    path = tmp_path / "tiny.csv"
    _frame(40).to_csv(path, index=False)
    res = CliRunner().invoke(
        app,
        ["embed", "--set", f"dataset.source={path}", "--set", "teacher.kind=minilm", "-w",
         str(tmp_path / "ws")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "note: tiny.csv was split stratified 80/20 (seed 0) into train and test: 29 train, " \
        "3 dev (held out of train), 8 test rows" in res.output  # fmt: skip


# -- Hugging Face datasets: saved here with save_to_disk, never downloaded ----------------------
def _hf_split(n: int, start: int = 0, label: Callable[[int], int] | None = None) -> Any:
    feats = hfd.Features(
        {"sentence": hfd.Value("string"), "label": hfd.ClassLabel(names=["neg", "pos"])}
    )
    texts = [f"the item {i} was {'great' if i % 2 else 'awful'}" for i in range(start, start + n)]
    labels = [(label or (lambda i: i % 2))(i) for i in range(start, start + n)]
    return hfd.Dataset.from_dict({"sentence": texts, "label": labels}, features=feats)


@pytest.fixture
def hf_folder(tmp_path: Path) -> Path:
    d = tmp_path / "sst-mini"
    hfd.DatasetDict(
        {"train": _hf_split(60), "validation": _hf_split(20, 60), "test": _hf_split(20, 80)}
    ).save_to_disk(str(d))
    return d


@needs_hf
def test_hf_saved_folder_is_a_source(hf_folder: Path) -> None:
    ds = _load(hf_folder, text_col="sentence")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 60, "test": 20, "dev": 20}
    assert ds.label_names == ["neg", "pos"]  # from the ClassLabel feature
    assert ds.selection == "the dataset's own dev split" and ds.split_note == ""
    assert _load(f"hf:{hf_folder}", text_col="sentence").fingerprint() == ds.fingerprint()


@needs_hf
def test_hf_saved_folder_columns_for_the_mapping(hf_folder: Path) -> None:
    assert list(source_table(hf_folder).columns) == ["sentence", "label"]


@needs_hf
def test_hf_saved_folder_loads_while_offline(hf_folder: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert len(load_hf(str(hf_folder), text_col="sentence").splits["train"]) == 60


@needs_hf
def test_hf_hidden_test_labels_use_validation_as_test(tmp_path: Path) -> None:
    d = tmp_path / "glue-like"
    hfd.DatasetDict(
        {
            "train": _hf_split(60),
            "validation": _hf_split(20, 60),
            "test": _hf_split(20, 80, label=lambda i: -1),
        }
    ).save_to_disk(str(d))
    ds = _load(d, text_col="sentence")
    assert [len(ds.splits[s]) for s in ("train", "dev", "test")] == [54, 6, 20]
    assert ds.split_note == (
        "glue-like: its test split has no labels (all -1), so validation is the test split: "
        "54 train, 6 dev (held out of train), 20 test rows"
    )


@needs_hf
def test_hf_single_dataset_is_split_and_says_so(tmp_path: Path) -> None:
    d = tmp_path / "flat"
    _hf_split(100).save_to_disk(str(d))
    ds = _load(d, text_col="sentence")
    assert ds.split_note == (
        "flat: train was split stratified 80/20 (seed 0) into train and test: "
        "72 train, 8 dev (held out of train), 20 test rows"
    )


@needs_hf
def test_hf_extra_splits_are_named_not_dropped_silently(tmp_path: Path) -> None:
    d = tmp_path / "imdb-like"
    hfd.DatasetDict(
        {"train": _hf_split(60), "test": _hf_split(20, 60), "unsupervised": _hf_split(5)}
    ).save_to_disk(str(d))
    assert "splits ['unsupervised'] are not used" in _load(d, text_col="sentence").split_note


@needs_hf
def test_hf_column_mapping_has_the_file_messages(hf_folder: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"sst-mini \(train\): column 'text' not found; columns are \['sentence', 'label'\]; "
        r"choose one: --set dataset.text_col=<column>",
    ):
        _load(hf_folder)


@needs_hf
def test_hf_label_outside_the_class_names_is_named(tmp_path: Path) -> None:
    d = tmp_path / "partial"
    half = _hf_split(20, 60, label=lambda i: -1 if i % 3 == 0 else i % 2)
    hfd.DatasetDict({"train": _hf_split(60), "test": half}).save_to_disk(str(d))
    with pytest.raises(
        DataError,
        match=r"partial \(test\): label values \['-1'\] do not occur in the dataset's ClassLabel "
        r"names \['neg', 'pos'\]",
    ):
        _load(d, text_col="sentence")


@needs_hf
def test_hf_without_train_split_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "notrain"
    hfd.DatasetDict({"test": _hf_split(20)}).save_to_disk(str(d))
    with pytest.raises(DataError, match=r"notrain: no train split \(splits: \['test'\]\)"):
        _load(d, text_col="sentence")


@needs_hf
def test_hf_damaged_saved_folder_is_refused(hf_folder: Path) -> None:
    for f in (hf_folder / "train").glob("*.arrow"):
        f.write_bytes(b"not arrow")
    with pytest.raises(
        DataError, match=r"cannot be read as a saved datasets folder .*save it again"
    ):
        load_hf(str(hf_folder), text_col="sentence")


@needs_hf
def test_hf_plain_folder_is_not_a_saved_dataset(split_folder: Path) -> None:
    with pytest.raises(DataError, match=r"not a folder written by datasets' save_to_disk"):
        _load(f"hf:{split_folder}")


@pytest.mark.parametrize("var", ["HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"])
def test_hf_hub_source_while_offline_is_refused(monkeypatch, var: str) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv(var, "1")
    with pytest.raises(DataError) as err:
        _load("hf:glue:sst2")
    msg = str(err.value)
    assert msg == (
        f"hf:glue:sst2 needs the Hugging Face hub but {var} is set (offline); unset it, or "
        "where you are online save the data with load_dataset(...).save_to_disk(folder) and "
        "give that folder as the source"
    )
    assert "\n" not in msg


@needs_hf
def test_hf_hub_source_online_goes_through_the_same_checks(monkeypatch) -> None:
    """``datasets.load_dataset`` is replaced: the test checks the call, never the network."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    calls: list[tuple] = []

    def fake(name: str, config: str | None = None) -> Any:
        calls.append((name, config))
        return hfd.DatasetDict({"train": _hf_split(60), "validation": _hf_split(20, 60)})

    monkeypatch.setattr(hfd, "load_dataset", fake)
    ds = _load("hf:someone/reviews:mini", text_col="sentence")
    assert calls == [("someone/reviews", "mini")]
    assert ds.name == "reviews-mini" and ds.label_names == ["neg", "pos"]
    # No test split: validation stays dev, and train is split with a note naming the sizes.
    assert ds.split_note.startswith("reviews-mini: train was split stratified 80/20 (seed 0)")
    with pytest.raises(DataError, match=r"reviews-mini \(train\): column 'text' not found"):
        _load("hf:someone/reviews:mini")


@needs_hf
def test_hf_hub_source_that_fails_to_load_says_why(monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)

    def fake(name: str, config: str | None = None) -> Any:
        raise FileNotFoundError(f"Dataset '{name}' doesn't exist on the Hub")

    monkeypatch.setattr(hfd, "load_dataset", fake)
    with pytest.raises(
        DataError,
        match=r"hf:nope: cannot be loaded \(Dataset 'nope' doesn't exist on the Hub\); check the "
        r"name and config",
    ):
        _load("hf:nope")


def test_hf_source_without_a_name_is_refused() -> None:
    with pytest.raises(DataError, match=r"hf: needs a dataset name, e.g. hf:imdb or hf:glue:sst2"):
        _load("hf:")


def test_hf_source_without_the_extra_names_it(monkeypatch, hf_folder: Path) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(
        DataError, match=r"need the optional 'hf' extra; install it with pip install"
    ):
        _load(hf_folder, text_col="sentence")
