"""Tests for core/data.py: formats, label mapping, folders, demos, subsampling, bad inputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lelp_studio.config import DatasetSpec
from lelp_studio.data import (
    DEMOS,
    MISSING,
    DataError,
    check_subclass_counts,
    dataset_from_frame,
    load_dataset,
    load_demo,
    load_file,
    load_folder,
    load_shared,
    read_table,
    sample_dir,
    shared_data_root,
    with_selection_split,
)
from lelp_studio.types import Dataset, Split


def write_table(df: pd.DataFrame, path: Path) -> Path:
    fmt = path.suffix
    if fmt == ".csv":
        df.to_csv(path, index=False)
    elif fmt == ".tsv":
        df.to_csv(path, sep="\t", index=False)
    elif fmt == ".parquet":
        df.to_parquet(path, index=False)
    elif fmt == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        raise AssertionError(fmt)
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def all_texts(ds: Dataset) -> list[str]:
    return [t for s in ds.splits.values() for t in (s.texts or [])]


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_each_format_loads_the_same(
    tmp_path: Path, suffix: str, make_text_frame: Callable[..., pd.DataFrame]
) -> None:
    df = make_text_frame()
    path = write_table(df, tmp_path / f"tiny{suffix}")
    ds = load_file(path, latent_cols=["topic"], test_size=0.25, seed=0)
    assert ds.name == "tiny"
    assert ds.label_names == ["negative", "positive"]
    assert set(ds.splits) == {"train", "test"}
    assert len(ds.splits["train"]) == 45 and len(ds.splits["test"]) == 15
    assert sorted(all_texts(ds)) == sorted(df["text"])
    # every row keeps its own label and topic
    orig = df.set_index("text")
    for split in ds.splits.values():
        assert split.y.dtype == np.int64
        for t, y, topic in zip(split.texts, split.y, split.latent["topic"], strict=True):
            assert ds.label_names[y] == orig.loc[t, "label"]
            assert topic == orig.loc[t, "topic"]


def test_formats_give_identical_datasets(
    tmp_path: Path, make_text_frame: Callable[..., pd.DataFrame]
) -> None:
    df = make_text_frame()
    fps = {
        sfx: load_file(write_table(df, tmp_path / f"t{sfx}"), latent_cols=["topic"]).fingerprint()
        for sfx in (".csv", ".tsv", ".parquet", ".jsonl")
    }
    assert len(set(fps.values())) == 1


def test_fmt_overrides_suffix(tmp_path: Path) -> None:
    path = write_text(tmp_path / "data.txt", "text,label\na,x\nb,y\n")
    df = read_table(path, fmt="csv")
    assert list(df.columns) == ["text", "label"] and df["label"].tolist() == ["x", "y"]


def test_csv_keeps_na_like_texts_and_strips_bom(tmp_path: Path) -> None:
    path = tmp_path / "na.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\nNA,pos\nnull,neg\nNaN,pos\nok,neg\n")
    df = read_table(path)
    assert list(df.columns) == ["text", "label"]
    assert df["text"].tolist() == ["NA", "null", "NaN", "ok"]


def test_split_is_stratified_and_seeded(make_text_frame: Callable[..., pd.DataFrame]) -> None:
    df = make_text_frame(80)
    a = dataset_from_frame(df, "x", test_size=0.25, seed=3)
    b = dataset_from_frame(df, "x", test_size=0.25, seed=3)
    c = dataset_from_frame(df, "x", test_size=0.25, seed=4)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert np.bincount(a.splits["test"].y).tolist() == [10, 10]
    assert not set(a.splits["train"].texts) & set(a.splits["test"].texts)


# --------------------------------------------------------------------------- labels


def test_string_labels_sorted_and_stripped() -> None:
    df = pd.DataFrame(
        {"text": list("abcdef"), "label": ["zeta", "alpha ", "mid", "alpha"] + ["zeta", "mid"]}
    )
    ds = dataset_from_frame(df, "s", test_df=df)
    assert ds.label_names == ["alpha", "mid", "zeta"]
    assert ds.splits["train"].y.tolist() == [2, 0, 1, 0, 2, 1]


def test_int_labels_in_numeric_order() -> None:
    df = pd.DataFrame({"text": list("abcdef"), "label": [10, 2, 1, 10, 2, 1]})
    ds = dataset_from_frame(df, "i", test_df=df)
    assert ds.label_names == ["1", "2", "10"]  # numeric, not string, order
    assert ds.splits["train"].y.tolist() == [2, 1, 0, 2, 1, 0]
    assert ds.splits["train"].y.dtype == np.int64


def test_integral_float_labels_become_ints() -> None:
    df = pd.DataFrame({"text": list("abcd"), "label": [1.0, 0.0, 1.0, 0.0]})
    assert dataset_from_frame(df, "f", test_df=df).label_names == ["0", "1"]


def test_test_and_dev_frames_are_mapped_with_train_classes() -> None:
    tr = pd.DataFrame({"text": list("abcd"), "label": ["b", "a", "b", "a"]})
    te = pd.DataFrame({"text": list("ef"), "label": ["b", "b"]})
    dv = pd.DataFrame({"text": ["g"], "label": ["a"]})
    ds = dataset_from_frame(tr, "t", test_df=te, dev_df=dv)
    assert list(ds.splits) == ["train", "test", "dev"]
    assert ds.splits["test"].y.tolist() == [1, 1] and ds.splits["dev"].y.tolist() == [0]


def test_latent_missing_values_filled(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "lat.csv", "text,label,topic,n\na,x,food,1\nb,y,,2\nc,x,tech,\nd,y,food,4\n"
    )
    ds = dataset_from_frame(
        read_table(path), "lat", latent_cols=["topic", "n"], test_df=read_table(path)
    )
    lat = ds.splits["train"].latent
    assert lat["topic"].tolist() == ["food", MISSING, "tech", "food"]
    assert lat["n"].tolist() == ["1", "2", MISSING, "4"]


def test_latent_nan_in_parquet_filled(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {"text": list("abcd"), "label": [0, 1, 0, 1], "score": [1.0, np.nan, 3.0, 4.5]}
    )
    ds = dataset_from_frame(df, "p", latent_cols=["score"], test_df=df)
    assert ds.splits["train"].latent["score"].tolist() == ["1", MISSING, "3", "4.5"]


def test_latent_without_gaps_keeps_dtype() -> None:
    df = pd.DataFrame({"text": list("abcd"), "label": [0, 1, 0, 1], "k": [3, 1, 2, 1]})
    lat = dataset_from_frame(df, "k", latent_cols=["k"], test_df=df).splits["test"].latent
    assert lat["k"].dtype == np.int64 and lat["k"].tolist() == [3, 1, 2, 1]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.text(alphabet="abcXYZ_-é0", min_size=1, max_size=6), min_size=2, max_size=5, unique=True
    ),
    st.lists(st.integers(0, 4), min_size=0, max_size=25),
)
def test_property_labels_round_trip(names: list[str], extra: list[int]) -> None:
    labels = names + [names[i % len(names)] for i in extra]
    df = pd.DataFrame({"text": [f"t{i}" for i in range(len(labels))], "label": labels})
    ds = dataset_from_frame(df, "h", test_df=df)
    y = ds.splits["train"].y
    assert ds.label_names == sorted(set(labels))
    assert y.min() == 0 and y.max() == len(set(labels)) - 1
    assert [ds.label_names[i] for i in y] == labels


# --------------------------------------------------------------------------- shared folders


def make_folder(root: Path, name: str = "toy", dev: bool = True) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "labels.json").write_text(json.dumps({"0": "neg", "1": "pos"}), encoding="utf-8")
    write_text(folder / "train.csv", "text,label,domain\nNA,0,books\nb,1,\nc,0,dvd\nd,1,dvd\n")
    write_text(folder / "test.csv", "text,label,domain\ne,1,books\nf,0,dvd\n")
    if dev:
        write_text(folder / "dev.csv", "text,label,domain\ng,0,books\n")
    return root


def test_load_shared_folder_format(tmp_path: Path) -> None:
    ds = load_shared("toy", root=make_folder(tmp_path), latent_cols=["domain"])
    assert ds.name == "toy" and ds.label_names == ["neg", "pos"]
    assert list(ds.splits) == ["train", "test", "dev"]
    tr = ds.splits["train"]
    assert tr.texts == ["NA", "b", "c", "d"]  # "NA" is a text, not a missing value
    assert tr.y.tolist() == [0, 1, 0, 1]
    assert tr.latent["domain"].tolist() == ["books", MISSING, "dvd", "dvd"]
    assert ds.splits["dev"].latent["domain"].tolist() == ["books"]


def test_load_shared_without_dev(tmp_path: Path) -> None:
    assert list(load_shared("toy", root=make_folder(tmp_path, dev=False)).splits) == [
        "train",
        "test",
    ]


def test_load_shared_unknown_name_lists_available(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no folder .*available: \['toy'\]"):
        load_shared("nope", root=make_folder(tmp_path))


def test_load_shared_label_not_in_labels_json(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    write_text(root / "toy" / "test.csv", "text,label,domain\ne,7,books\n")
    with pytest.raises(
        DataError, match=r"toy/test.csv: label values \['7'\] do not occur in labels.json"
    ):
        load_shared("toy", root=root)


def test_shared_data_root_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LELP_SHARED_DATA", str(tmp_path))
    assert shared_data_root() == tmp_path
    monkeypatch.setenv("LELP_SHARED_DATA", str(tmp_path / "absent"))
    assert shared_data_root() is None


def test_load_shared_real_trec() -> None:
    root = shared_data_root()
    if root is None or not (root / "trec").is_dir():
        pytest.skip("shared data (../shared/data/trec) not present")
    ds = load_shared("trec")
    names = json.loads((root / "trec" / "labels.json").read_text())
    assert ds.label_names == [names[str(i)] for i in range(len(names))]
    assert ds.latent_columns == ["fine_label"]
    raw = pd.read_csv(root / "trec" / "test.csv", keep_default_na=False)
    assert ds.splits["test"].y.tolist() == raw["label"].tolist()
    assert ds.splits["test"].texts == raw["text"].astype(str).tolist()


# --------------------------------------------------------------------------- demos


def test_text_demo() -> None:
    ds = load_demo("text-demo")
    tr, te = ds.splits["train"], ds.splits["test"]
    assert ds.label_names == ["negative", "positive"] and ds.is_text
    assert len(tr) >= 1200 and len(te) >= 300
    assert set(ds.latent_columns) >= {"topic"}
    assert set(tr.latent["topic"]) == {"food", "electronics", "media", "travel"}
    # the label does not reveal the topic: exactly balanced labels within each topic
    for split in (tr, te):
        for topic in set(split.latent["topic"]):
            counts = np.bincount(split.y[split.latent["topic"] == topic], minlength=2)
            assert counts[0] == counts[1]
    assert len(set(tr.texts)) == len(tr) and len(set(te.texts)) == len(te)
    assert not set(tr.texts) & set(te.texts)


def test_text_demo_files_are_small() -> None:
    folder = Path(__file__).resolve().parents[1] / "sample_data" / "text_demo"
    assert sum(p.stat().st_size for p in folder.glob("*.csv")) < 300_000


def test_digits_demo(digits_dataset: Dataset) -> None:
    ds = digits_dataset
    tr, te = ds.splits["train"], ds.splits["test"]
    assert ds.label_names == ["even", "odd"] and not ds.is_text
    assert len(tr) + len(te) == 1797 and len(te) == 360
    assert tr.features.shape == (len(tr), 64) and tr.features.dtype == np.float32
    assert tr.features.min() >= 0.0 and tr.features.max() <= 1.0
    assert np.array_equal(tr.y, tr.latent["digit"] % 2)
    assert set(tr.latent["digit"].tolist()) == set(range(10))
    assert abs(tr.y.mean() - te.y.mean()) < 0.01  # stratified
    assert ds.fingerprint() == load_demo("digits-bin").fingerprint()


def test_demos_listed_and_unknown_demo() -> None:
    assert DEMOS == ("text-demo", "digits-bin")
    with pytest.raises(
        DataError, match=r"unknown demo 'nope'; the demos are \['text-demo', 'digits-bin'\]"
    ):
        load_demo("nope")


def test_tiny_fixture(tiny_text_dataset: Dataset) -> None:
    ds = tiny_text_dataset
    assert ds.n_classes == 2 and ds.latent_columns == ["topic"]
    assert len(ds.splits["train"]) + len(ds.splits["test"]) == 60


# --------------------------------------------------------------------------- load_dataset


def test_load_dataset_dispatch(
    tmp_path: Path, make_text_frame: Callable[..., pd.DataFrame]
) -> None:
    assert load_dataset(DatasetSpec(source="text-demo")).name == "text-demo"
    path = write_table(make_text_frame(), tmp_path / "mine.csv")
    ds = load_dataset(DatasetSpec(source=str(path), latent_cols=["topic"], test_size=0.25))
    assert ds.name == "mine" and len(ds.splits["test"]) == 15


def test_load_dataset_shared_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LELP_SHARED_DATA", str(make_folder(tmp_path)))
    assert load_dataset(DatasetSpec(source="shared:toy")).label_names == ["neg", "pos"]


def test_load_dataset_bad_source() -> None:
    with pytest.raises(DataError, match=r"'no/such.csv' is not a demo .*no such file"):
        load_dataset(DatasetSpec(source="no/such.csv"))


def test_load_dataset_unknown_latent() -> None:
    with pytest.raises(
        DataError,
        match=r"latent columns \['genre'\] not found; latent columns are \['topic', 'aspect'\]",
    ):
        load_dataset(DatasetSpec(source="text-demo", latent_cols=["genre"]))


def test_max_train_stratified_and_seeded() -> None:
    full = load_demo("text-demo")
    spec = DatasetSpec(source="text-demo", max_train=200, seed=1)
    a, b = load_dataset(spec), load_dataset(spec)
    c = load_dataset(DatasetSpec(source="text-demo", max_train=200, seed=2))
    tr = a.splits["train"]
    assert len(tr) == 200
    assert np.bincount(tr.y).tolist() == [100, 100]  # full train is balanced
    assert tr.texts == b.splits["train"].texts  # seeded
    assert tr.texts != c.splits["train"].texts
    assert set(tr.texts) <= set(full.splits["train"].texts)
    assert a.splits["test"].texts == full.splits["test"].texts  # test untouched
    pos = {t: i for i, t in enumerate(full.splits["train"].texts)}
    assert [pos[t] for t in tr.texts] == sorted(pos[t] for t in tr.texts)  # order kept


def test_max_train_keeps_class_ratio(digits_dataset: Dataset) -> None:
    ds = load_dataset(DatasetSpec(source="digits-bin", max_train=100))
    full = np.bincount(digits_dataset.splits["train"].y) / len(digits_dataset.splits["train"])
    sub = np.bincount(ds.splits["train"].y)
    assert np.abs(sub - 100 * full).max() <= 1
    assert ds.splits["train"].features.shape == (100, 64)


def test_max_train_above_size_is_noop() -> None:
    ds = load_dataset(DatasetSpec(source="text-demo", max_train=10**6))
    assert len(ds.splits["train"]) == 1440 - 144  # all of train but the selection holdout


# --------------------------------------------------------------------------- selection split
def test_selection_split_is_a_seeded_stratified_holdout_of_train() -> None:
    full = load_demo("text-demo").splits["train"]
    ds = load_dataset(DatasetSpec(source="text-demo"))
    tr, sel = ds.splits["train"], ds.splits["dev"]
    assert (len(tr), len(sel)) == (len(full) - 144, 144)
    # Disjoint, together the whole train split, test untouched.
    assert sorted(tr.texts + sel.texts) == sorted(full.texts)
    assert not set(tr.texts) & set(sel.texts)
    assert ds.splits["test"].texts == load_demo("text-demo").splits["test"].texts
    # Stratified: each class's share within one row of train's.
    for c in (0, 1):
        assert abs(np.sum(sel.y == c) - 144 * np.mean(full.y == c)) <= 1
    # Seeded: the same seed gives the same rows, another seed other rows.
    again = load_dataset(DatasetSpec(source="text-demo")).splits["dev"]
    other = load_dataset(DatasetSpec(source="text-demo", seed=1)).splits["dev"]
    assert again.texts == sel.texts and other.texts != sel.texts
    assert "10% holdout of train (seed 0" in ds.selection
    keep, held = ds.holdout_rows
    assert [full.texts[i] for i in held] == sel.texts


def test_selection_fraction_is_a_config_value_and_a_dev_split_is_used_as_is() -> None:
    ds = load_dataset(DatasetSpec(source="text-demo", selection_fraction=0.25))
    assert len(ds.splits["dev"]) == 360
    with pytest.raises(ValueError, match="selection_fraction"):
        DatasetSpec(selection_fraction=0.0)
    own = with_selection_split(ds, 0.1)  # a dataset that has a dev split keeps it
    assert own.splits["dev"] is ds.splits["dev"] and "own dev split" in own.selection


def test_selection_split_on_a_tiny_train_split_is_refused_clearly() -> None:
    tiny = Dataset(
        "tiny", ["a", "b"], {"train": Split(y=np.array([0])), "test": Split(y=np.array([1]))}
    )
    with pytest.raises(DataError, match="too few to hold out a selection split"):
        with_selection_split(tiny, 0.1)


def test_max_train_below_class_count() -> None:
    with pytest.raises(DataError, match=r"max_train=1 is below the number of classes \(2\)"):
        load_dataset(DatasetSpec(source="text-demo", max_train=1))


# --------------------------------------------------------------------------- subclass counts


@pytest.mark.parametrize("n_sub", [3, [3, 2], [1, 3]])
def test_check_subclass_counts_ok(n_sub: int | list[int]) -> None:
    check_subclass_counts(np.array([0, 0, 0, 1, 1, 1]), n_sub)


@pytest.mark.parametrize(
    ("n_sub", "msg"),
    [
        (4, r"class 0 has 3 examples but 4 subclasses were requested"),
        ([1, 5], r"class 1 has 3 examples but 5 subclasses"),
    ],
)
def test_check_subclass_counts_too_few(n_sub: int | list[int], msg: str) -> None:
    with pytest.raises(DataError, match=msg + r".*lower n_subclasses"):
        check_subclass_counts(np.array([0, 0, 0, 1, 1, 1]), n_sub)


def test_check_subclass_counts_dataset_names_class(tiny_text_dataset: Dataset) -> None:
    n = int(np.bincount(tiny_text_dataset.splits["train"].y)[0])
    check_subclass_counts(tiny_text_dataset, n)
    with pytest.raises(DataError, match=rf"class 'negative' has {n} examples but {n + 1}"):
        check_subclass_counts(tiny_text_dataset, [n + 1, 1])


def test_check_subclass_counts_wrong_list_length(tiny_text_dataset: Dataset) -> None:
    with pytest.raises(DataError, match=r"n_subclasses has 3 entries but there are 2 classes"):
        check_subclass_counts(tiny_text_dataset, [1, 1, 1])


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        (
            {"text_col": "review"},
            r"column 'review' not found; columns are \['text', 'label', 'topic'\]; "
            r"choose one: --set dataset\.text_col",
        ),
        (
            {"label_col": "y"},
            r"column 'y' not found; columns are \['text', 'label', 'topic'\]; "
            r"choose one: --set dataset\.label_col",
        ),
        (
            {"latent_cols": ["genre"]},
            r"column 'genre' not found; columns are \['text', 'label', 'topic'\]; "
            r"choose one: a fixed dataset.latent_cols",
        ),
    ],
    ids=["text", "label", "latent"],
)
def test_missing_column(
    tmp_path: Path, kwargs: dict, msg: str, make_text_frame: Callable[..., pd.DataFrame]
) -> None:
    path = write_table(make_text_frame(), tmp_path / "cols.csv")
    with pytest.raises(DataError, match=r"cols\.csv: " + msg):
        load_file(path, **kwargs)


def test_empty_file(tmp_path: Path) -> None:
    path = write_text(tmp_path / "empty.csv", "")
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty \(0 bytes\)"):
        load_file(path)


def test_header_only_no_rows(tmp_path: Path) -> None:
    path = write_text(tmp_path / "hdr.csv", "text,label\n")
    with pytest.raises(DataError, match=r"hdr\.csv: no rows \(only a header\); add examples"):
        load_file(path)


def test_only_one_class(tmp_path: Path) -> None:
    path = write_text(tmp_path / "one.csv", "text,label\na,pos\nb,pos\nc,pos\n")
    with pytest.raises(DataError, match=r"one\.csv: only one class \('pos'\).*at least two"):
        load_file(path)


def test_empty_labels_make_transfer_rows(tmp_path: Path) -> None:
    """An empty label in the training file marks an unlabeled (transfer) row, counted."""
    rows = "".join(f"t{i},{('pos', 'neg')[i % 2]}\n" for i in range(8))
    path = write_text(tmp_path / "lab.csv", f"text,label\n{rows}b,\nd,  \n")
    ds = load_file(path)
    assert ds.transfer_info["from_train_file"] == 2 and ds.n_transfer == 2
    assert ds.splits["transfer"].texts == ["b", "d"]
    assert (ds.splits["transfer"].y == -1).all() and ds.label_names == ["neg", "pos"]
    assert "2 with an empty label in the training file" in ds.split_note


def test_empty_labels_in_test_file_are_an_error(tmp_path: Path) -> None:
    rows = "".join(f"t{i},{('pos', 'neg')[i % 2]}\n" for i in range(8))
    write_text(tmp_path / "train.csv", f"text,label\n{rows}")
    write_text(tmp_path / "test.csv", "text,label\na,pos\nb,\nc,neg\nd,  \n")
    with pytest.raises(
        DataError,
        match=r"test\.csv: 2 of 4 rows have an empty or missing label .*rows 2, 4.*every test "
        r"row needs a label",
    ):
        load_folder(tmp_path)


def test_na_strings_as_labels_are_missing(tmp_path: Path) -> None:
    rows = "".join(f"t{i},{('pos', 'neg')[i % 2]}\n" for i in range(8))
    path = write_text(tmp_path / "na.csv", f"text,label\n{rows}b,NaN\nd,NA\ne,null\n")
    assert load_file(path).transfer_info["from_train_file"] == 3


def test_nan_labels_counted_parquet(tmp_path: Path) -> None:
    df = pd.DataFrame({"text": list("abcdefghijkl"), "label": [1.0, np.nan, 0.0] * 4})
    ds = load_file(write_table(df, tmp_path / "nan.parquet"))
    assert ds.splits["transfer"].texts == ["b", "e", "h", "k"]


def test_no_label_at_all(tmp_path: Path) -> None:
    path = write_text(tmp_path / "none.csv", "text,label\na,\nb,\n")
    with pytest.raises(DataError, match=r"none\.csv: none of the 2 rows has a label in column"):
        load_file(path)


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncaf\xe9 ok,pos\n".encode("latin-1"))
    with pytest.raises(
        DataError,
        match=r"latin\.csv: not valid UTF-8: byte 0xe9 at byte offset 14 \(line 2\); "
        r"re-save the file as UTF-8",
    ):
        load_file(path)


def test_parquet_that_is_csv(tmp_path: Path, make_text_frame: Callable[..., pd.DataFrame]) -> None:
    path = write_table(make_text_frame(), tmp_path / "fake.csv").rename(tmp_path / "fake.parquet")
    with pytest.raises(
        DataError, match=r"fake\.parquet: not a Parquet file .*probably a CSV.*rename it"
    ):
        load_file(path)


def test_csv_that_is_parquet(tmp_path: Path, make_text_frame: Callable[..., pd.DataFrame]) -> None:
    path = write_table(make_text_frame(), tmp_path / "real.parquet").rename(tmp_path / "real.csv")
    with pytest.raises(
        DataError, match=r"real\.csv: this is a Parquet file, not CSV; rename it to \.parquet"
    ):
        load_file(path)


@pytest.mark.parametrize(
    ("name", "body", "msg"),
    [
        (
            "semi.csv",
            "text;label\na;x\nb;y\n",
            r"looks ';'-separated, not ','-separated; re-save it with ','",
        ),
        (
            "tabs.csv",
            "text\tlabel\na\tx\nb\ty\n",
            r"looks tab-separated, not ','-separated; rename it to \.tsv",
        ),
        (
            "commas.tsv",
            "text,label\na,x\nb,y\n",
            r"looks ','-separated, not tab-separated; rename it to \.csv",
        ),
    ],
)
def test_wrong_delimiter(tmp_path: Path, name: str, body: str, msg: str) -> None:
    path = write_text(tmp_path / name, body)
    with pytest.raises(DataError, match=r"only one column was found .*" + msg):
        load_file(path)


def test_duplicate_header_csv(tmp_path: Path) -> None:
    path = write_text(tmp_path / "dup.csv", "text,label,text\na,x,b\nc,y,d\n")
    with pytest.raises(
        DataError, match=r"dup\.csv: duplicate column names \['text'\] in the header; rename"
    ):
        load_file(path)


def test_duplicate_columns_in_frame() -> None:
    df = pd.DataFrame([["a", "x", "b"], ["c", "y", "d"]], columns=["text", "label", "label"])
    with pytest.raises(DataError, match=r"duplicate column names \['label'\]"):
        dataset_from_frame(df, "d", test_df=df)


def test_empty_texts_counted(tmp_path: Path) -> None:
    path = write_text(tmp_path / "txt.csv", 'text,label\na,x\n,y\n"   ",x\nd,y\n,x\n')
    with pytest.raises(
        DataError,
        match=r"txt\.csv: 3 of 5 rows have an empty text .*rows 2, 3, 5.*remove those rows",
    ):
        load_file(path)


def test_too_many_distinct_labels(tmp_path: Path) -> None:
    n = 1001
    df = pd.DataFrame({"text": [f"t{i}" for i in range(n)], "label": np.arange(n) * 0.5})
    path = write_table(df, tmp_path / "reg.parquet")
    with pytest.raises(
        DataError,
        match=r"reg\.parquet: column 'label' has 1001 distinct values .*"
        r"looks like a regression target or an id",
    ):
        load_file(path)


def test_class_with_single_example_cannot_split() -> None:
    df = pd.DataFrame({"text": list("abcde"), "label": ["x", "x", "y", "y", "z"]})
    with pytest.raises(DataError, match=r"classes \['z'\] have only 1 example; a stratified"):
        dataset_from_frame(df, "s")


def test_min_per_class() -> None:
    df = pd.DataFrame({"text": list("abcde"), "label": ["x", "x", "x", "y", "y"]})
    with pytest.raises(DataError, match=r"fewer than 3 examples \('y': 2\)"):
        dataset_from_frame(df, "m", test_df=df, min_per_class=3)


def test_test_label_unseen_in_train() -> None:
    tr = pd.DataFrame({"text": list("abcd"), "label": ["x", "y", "x", "y"]})
    te = pd.DataFrame({"text": ["e"], "label": ["w"]})
    with pytest.raises(
        DataError, match=r"u \(test\): label values \['w'\] do not occur in the training data"
    ):
        dataset_from_frame(tr, "u", test_df=te)


def test_unknown_suffix(tmp_path: Path) -> None:
    path = write_text(tmp_path / "data.xlsx", "x")
    with pytest.raises(
        DataError, match=r"data\.xlsx: cannot tell the format from the suffix '\.xlsx'"
    ):
        read_table(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"absent\.csv: no such file"):
        read_table(tmp_path / "absent.csv")


def test_bad_jsonl_line(tmp_path: Path) -> None:
    path = write_text(tmp_path / "bad.jsonl", '{"text": "a", "label": 1}\n{"text": oops}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl: line 2 is not valid JSON"):
        read_table(path)


def test_ragged_csv(tmp_path: Path) -> None:
    path = write_text(tmp_path / "rag.csv", "text,label\na,x\nb,y,z,w\n")
    with pytest.raises(
        DataError, match=r"rag\.csv: not readable as CSV .*same number of ','-separated fields"
    ):
        read_table(path)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"text": ["a b", "c d"], "label": [0, 1], "x": [1, 2]}, ("text", "label")),
        ({"review": ["long review one", "long review two", "x y"], "stars": [1, 5, 3],
          "domain": ["a", "b", "a"]}, ("review", "domain")),  # fewest distinct values
        ({"body": ["long sentence here", "and another one"], "id": ["a", "b"],
          "Sentiment": ["pos", "neg"]}, ("body", "Sentiment")),  # named like a label
        ({"only": ["x", "y"]}, ("only", "only")),
    ],
)  # fmt: skip
def test_guess_columns(frame: dict, expected: tuple[str, str]) -> None:
    from lelp_studio.data import guess_columns

    assert guess_columns(pd.DataFrame(frame)) == expected


def test_same_text_and_label_column_is_named(tmp_path: Path) -> None:
    from lelp_studio.data import DataError, load_file

    path = tmp_path / "r.csv"
    path.write_text("review,stars\n" + "\n".join(f"text {i},{i % 2}" for i in range(20)) + "\n")
    with pytest.raises(DataError, match="text column and the label column are both 'review'"):
        load_file(path, text_col="review", label_col="review")


def test_latent_columns_keep_the_file_order() -> None:
    """Pages pick the first latent column by default: the demo's first is ``topic``."""
    from lelp_studio.data import load_demo

    assert load_demo("text-demo").latent_columns == ["topic", "aspect"]


def test_demo_files_come_from_the_sample_data_package() -> None:
    """The demo is read where the package data lives, never relative to the working folder;
    every file the package-data globs in pyproject.toml ship is one the loader needs."""
    folder = sample_dir() / "text_demo"
    assert {"train.csv", "test.csv", "labels.json"} <= {p.name for p in folder.iterdir()}
    assert folder.resolve() == (Path(__file__).resolve().parents[1] / "sample_data" / "text_demo")


def test_shared_data_outside_a_checkout_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package has no ../shared/data; only LELP_SHARED_DATA can point at it."""
    from lelp_studio.data import paths

    monkeypatch.delenv("LELP_SHARED_DATA", raising=False)
    monkeypatch.setattr(paths, "checkout_root", lambda: None)
    assert shared_data_root() is None
    with pytest.raises(DataError, match=r"not running from a checkout.*set LELP_SHARED_DATA"):
        load_shared("sst2")


def test_upload_limit_outside_a_checkout_reads_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streamlit reads .streamlit/config.toml in the folder it is started from."""
    from lelp_studio.data import paths, upload_limit_mb

    monkeypatch.setattr(paths, "checkout_root", lambda: None)
    monkeypatch.chdir(tmp_path)
    assert upload_limit_mb() == 200
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "config.toml").write_text("[server]\nmaxUploadSize = 7\n")
    assert upload_limit_mb() == 7


# --------------------------------------------------------------------------- latent columns


def test_few_values_is_at_most_50_and_under_5_percent_of_rows() -> None:
    from lelp_studio.data import few_values

    assert few_values(pd.Series(["a", "b"] * 50))  # 2 values in 100 rows
    assert not few_values(pd.Series(["a", "b", "c", "d", "e"] * 20))  # 5 of 100: not under 5%
    assert few_values(pd.Series(np.arange(50).repeat(30)))  # 50 values in 1,500 rows
    assert not few_values(pd.Series(np.arange(51).repeat(30)))  # 51 values: too many
    assert not few_values(pd.Series([f"title {i}" for i in range(6000)]))  # free text


def amazon_like(root: Path, n: int = 400) -> Path:
    """A shared folder like amazon_multidomain: a few domains, ratings 1-5, a unique title."""
    folder = root / "amz"
    folder.mkdir(parents=True)
    (folder / "labels.json").write_text(json.dumps({"0": "neg", "1": "pos"}), encoding="utf-8")
    for split, rows in (("train", n), ("test", n // 4)):
        df = pd.DataFrame(
            {
                "text": [f"{split} review {i}" for i in range(rows)],
                "label": np.arange(rows) % 2,
                "domain": np.array(["books", "dvd", "kitchen"])[np.arange(rows) % 3],
                "rating": np.arange(rows) % 5 + 1,
                "title": [f"{split} title {i}" for i in range(rows)],
            }
        )
        df.to_csv(folder / f"{split}.csv", index=False)
    return root


def test_free_text_column_of_a_shared_folder_is_not_latent(tmp_path: Path) -> None:
    """Issue 18: Amazon's ``title`` became "latent: title" (6,056 map colours)."""
    root = amazon_like(tmp_path)
    ds = load_shared("amz", root=root)
    assert ds.latent_columns == ["domain", "rating"]
    assert "title" not in ds.splits["test"].latent


def test_a_named_free_text_column_stays_latent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LELP_SHARED_DATA", str(amazon_like(tmp_path)))
    ds = load_dataset(DatasetSpec(source="shared:amz", latent_cols=["title"]))
    assert ds.latent_columns == ["domain", "rating", "title"]
    assert load_dataset(DatasetSpec(source="shared:amz")).latent_columns == ["domain", "rating"]


def test_a_few_valued_column_only_in_test_stays_latent(tmp_path: Path) -> None:
    """Values are pooled over the splits that have the column."""
    root = amazon_like(tmp_path)
    test = pd.read_csv(root / "amz" / "test.csv")
    test.assign(site=np.arange(len(test)) % 2).to_csv(root / "amz" / "test.csv", index=False)
    assert load_shared("amz", root=root).latent_columns == ["domain", "rating", "site"]


def test_load_shared_real_amazon_drops_the_title() -> None:
    root = shared_data_root()
    if root is None or not (root / "amazon_multidomain").is_dir():
        pytest.skip("shared data (../shared/data/amazon_multidomain) not present")
    assert load_shared("amazon_multidomain").latent_columns == ["domain", "rating"]


@pytest.mark.parametrize(
    "latent",
    [
        np.array([3, 1, 3, 0]),
        np.array(["b", "a", "b", "(missing)"], dtype=object),
        np.array([0.0, -0.0, 1.5, np.nan]),
        np.array([1, "1", 1.0, True], dtype=object),
        np.array(["x", None, np.nan, "x"], dtype=object),
        np.array([True, False, True, True]),
    ],
)
def test_split_fingerprint_keeps_its_value(latent: np.ndarray) -> None:
    """The fingerprint keys every workspace's cached teacher outputs: its faster route must
    give the value of the formula it has always had."""
    from lelp_studio.types import Split, hash_arrays

    y, texts = np.array([0, 1, 1, 0]), ["a 'b'", 'c "d"\n', "é", ""]
    legacy = hash_arrays(
        y, "\n".join(texts), {"g": latent.astype(str), "h": np.arange(4).astype(str)}
    )
    split = Split(y=y, texts=texts, latent={"h": np.arange(4), "g": latent})
    assert split.fingerprint() == legacy


def test_blank_cells_are_found_alike_in_string_and_object_columns() -> None:
    from lelp_studio.data.frames import _NA_LABELS, _is_blank

    values = [" ", "NA", "x", None, "\t", "null ", "ok"]
    want = [True, True, False, True, True, True, False]
    for dtype in ("str", object):
        s = pd.Series(values, dtype=dtype)
        assert _is_blank(s, _NA_LABELS).tolist() == want, dtype
    assert _is_blank(pd.Series(values, dtype="str")).tolist()[1] is False  # "NA" is a text
