"""Teachers: the hook reads the final layer's input, extraction keeps row order, each source
validates its inputs, and the fingerprint tracks exactly the fields that change outputs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lelp_studio import teachers
from lelp_studio.config import TeacherSpec
from lelp_studio.teachers import (
    TeacherError,
    compute_teacher_outputs,
    extract,
    fit_linear_head,
    load_teacher_encoder,
    load_tokenizer,
    teacher_fingerprint,
)
from lelp_studio.teachers import hf as teachers_hf
from lelp_studio.teachers import minilm as teachers_minilm
from lelp_studio.types import Dataset, Split

transformers = pytest.importorskip("transformers")

POS = ["great", "wonderful", "excellent", "lovely", "superb"]
NEG = ["awful", "terrible", "horrible", "dreadful", "poor"]
NEU = ["table", "window", "paper", "river", "stone"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _texts(n: int, seed: int, n_classes: int) -> tuple[list[str], np.ndarray]:
    """Short texts of varying length whose class is given by its sentiment words."""
    rng = np.random.default_rng(seed)
    words = [POS, NEG, NEU][:n_classes]
    y = np.arange(n) % n_classes
    texts = []
    for c in y:
        k = int(rng.integers(1, 8))
        body = " ".join(rng.choice(words[c], size=k))
        texts.append(f"this was {body}" + " really" * int(rng.integers(0, 4)))
    return texts, y.astype(np.int64)


def _text_dataset(n_train: int, n_test: int, n_classes: int = 2) -> Dataset:
    xs, ys = _texts(n_train, 0, n_classes)
    xt, yt = _texts(n_test, 1, n_classes)
    return Dataset(
        name="tiny-text",
        label_names=[f"c{i}" for i in range(n_classes)],
        splits={"train": Split(y=ys, texts=xs), "test": Split(y=yt, texts=xt)},
    )


@pytest.fixture(scope="module")
def minilm_tok():
    return transformers.AutoTokenizer.from_pretrained(teachers.minilm_path())


def _tiny_config(arch: str, num_labels: int):
    common = dict(vocab_size=30522, num_labels=num_labels, max_position_embeddings=72)
    if arch == "bert":
        cfg = transformers.BertConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            **common,
        )  # fmt: skip
        return cfg, transformers.BertForSequenceClassification
    if arch == "distilbert":
        cfg = transformers.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, **common)
        return cfg, transformers.DistilBertForSequenceClassification
    # RoBERTa derives positions from pad_token_id; the BERT tokenizer pads with 0.
    cfg = transformers.RobertaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        pad_token_id=0, bos_token_id=101, eos_token_id=102, **common,
    )  # fmt: skip
    return cfg, transformers.RobertaForSequenceClassification


def _save_tiny(folder: Path, arch: str, tok, num_labels: int = 3, id2label=None) -> Path:
    torch.manual_seed(0)
    cfg, cls = _tiny_config(arch, num_labels)
    if id2label is not None:
        cfg.id2label = id2label
        cfg.label2id = {v: k for k, v in id2label.items()}
    model = cls(cfg)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


HEADS = {"bert": "classifier", "distilbert": "classifier", "roberta": "classifier.out_proj"}


@pytest.mark.parametrize("arch", sorted(HEADS))
def test_hf_hook_captures_final_layer_input(arch, tmp_path, minilm_tok):
    folder = _save_tiny(tmp_path / arch, arch, minilm_tok)
    ds = _text_dataset(10, 7, n_classes=3)
    calls: list[tuple[int, int, str]] = []
    out = compute_teacher_outputs(
        ds, TeacherSpec(kind="hf", path=str(folder), batch_size=4, max_length=32),
        progress=lambda d, t, s: calls.append((d, t, s)),
    )  # fmt: skip
    assert out.W.shape == (3, 32) and out.b.shape == (3,)
    for split, n in (("train", 10), ("test", 7)):
        assert out.H[split].shape == (n, 32) and out.H[split].dtype == np.float32
        assert out.Z[split].shape == (n, 3)
        # Z is the model's own logits; equality with H W^T + b proves H is the layer's input.
        np.testing.assert_allclose(out.Z[split], out.H[split] @ out.W.T + out.b, atol=1e-5)
    assert out.meta["layer"] == HEADS[arch]
    h = out.H["train"]
    if arch == "distilbert":
        assert h.min() >= 0  # after pre_classifier + ReLU, not the raw [CLS] state
    else:
        assert np.abs(h).max() <= 1.0  # after the tanh of the pooler / classification dense
    assert set(out.meta["accuracy"]) == {"train", "test"}
    assert calls[-1] == (7, 7, "embed test")


def test_extract_restores_original_order(tmp_path, minilm_tok):
    folder = _save_tiny(tmp_path / "bert", "bert", minilm_tok)
    model = transformers.BertForSequenceClassification.from_pretrained(folder).eval()
    fn, handle = teachers_hf._hf_model_fn(model, model.classifier)
    texts, _ = _texts(11, 3, 2)
    assert len({len(t.split()) for t in texts}) > 3  # lengths differ, so sorting reorders
    batched = extract(fn, minilm_tok, texts, 32, 4, lambda *a: None)
    singles = [extract(fn, minilm_tok, [t], 32, 1, lambda *a: None) for t in texts]
    handle.remove()
    for j in range(2):
        one_by_one = np.concatenate([s[j] for s in singles])
        np.testing.assert_allclose(batched[j], one_by_one, atol=1e-5)


def test_hf_label_names_reorder_rows(tmp_path, minilm_tok):
    folder = _save_tiny(tmp_path / "b", "bert", minilm_tok, 2, id2label={0: "pos", 1: "neg"})
    xs, ys = _texts(6, 0, 2)
    ds = Dataset("t", ["neg", "pos"], {"train": Split(y=ys, texts=xs)})
    out = compute_teacher_outputs(ds, TeacherSpec(kind="hf", path=str(folder)))
    model = transformers.BertForSequenceClassification.from_pretrained(folder)
    np.testing.assert_allclose(out.W, model.classifier.weight.detach().numpy()[[1, 0]])
    assert out.meta["label_permutation"] == [1, 0]
    np.testing.assert_allclose(out.Z["train"], out.H["train"] @ out.W.T + out.b, atol=1e-5)


def test_hf_base_encoder_folder_is_refused(tmp_path, minilm_tok):
    torch.manual_seed(0)
    cfg, _ = _tiny_config("bert", 2)
    transformers.BertModel(cfg).save_pretrained(tmp_path / "base")
    spec = TeacherSpec(kind="hf", path=str(tmp_path / "base"))
    with pytest.raises(TeacherError, match=r"base.*ForSequenceClassification"):
        compute_teacher_outputs(_text_dataset(4, 2), spec)


def test_hf_folder_without_config_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    spec = TeacherSpec(kind="hf", path=str(tmp_path / "empty"))
    with pytest.raises(TeacherError, match=r"empty: no config\.json.*AutoModelForSequence"):
        compute_teacher_outputs(_text_dataset(4, 2), spec)


def test_hf_offline_hub_id_is_refused():
    spec = TeacherSpec(kind="hf", path="some-org/not-cached-model-xyz")
    with pytest.raises(TeacherError, match=r"cannot be fetched offline.*local folder"):
        compute_teacher_outputs(_text_dataset(4, 2), spec)


def test_hf_class_count_mismatch(tmp_path, minilm_tok):
    folder = _save_tiny(tmp_path / "b", "bert", minilm_tok, num_labels=3)
    with pytest.raises(TeacherError, match=r"3 classes but dataset 'tiny-text' has 2"):
        compute_teacher_outputs(_text_dataset(4, 2), TeacherSpec(kind="hf", path=str(folder)))


def test_hf_tokenizer_and_encoder(tmp_path, minilm_tok):
    folder = _save_tiny(tmp_path / "b", "bert", minilm_tok)
    spec = TeacherSpec(kind="hf", path=str(folder))
    assert load_tokenizer(spec).vocab_size == minilm_tok.vocab_size
    enc = load_teacher_encoder(spec)
    assert type(enc).__name__ == "BertModel" and enc.config.hidden_size == 32


def test_minilm_frozen_mean_pooling_and_head(minilm_tok):
    ds = _text_dataset(40, 10)
    spec = TeacherSpec(kind="minilm", batch_size=16, max_length=32, precision="float32")
    out = compute_teacher_outputs(ds, spec)
    assert out.H["train"].shape == (40, 384) and out.W.shape == (2, 384)
    assert out.meta["precision"] == "float32"
    np.testing.assert_allclose(out.Z["test"], out.H["test"] @ out.W.T + out.b, atol=1e-4)
    # Manual mean pooling of one text, without batching or padding.
    model = transformers.AutoModel.from_pretrained(teachers.minilm_path()).eval()
    text = ds.splits["train"].texts[5]
    enc = minilm_tok(text, return_tensors="pt", truncation=True, max_length=32)
    with torch.no_grad():
        manual = model(**enc).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(out.H["train"][5], manual, atol=1e-4)
    assert out.meta["accuracy"]["train"] == 1.0  # sentiment words are linearly separable
    assert out.meta["pooling"] == "mean"


@pytest.mark.parametrize("n_classes", [2, 3])
def test_fit_linear_head_matches_sklearn_predictions(n_classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    y = np.arange(90) % n_classes
    H = rng.normal(size=(90, 6)) * [1, 5, 0.1, 2, 3, 1] + y[:, None] * 0.7 + 4
    W, b = fit_linear_head(H, y, n_classes, C=1.0)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(H, y)
    Z = H @ W.T + b
    np.testing.assert_array_equal(Z.argmax(1), ref.predict(H))
    softmax = np.exp(Z - Z.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    np.testing.assert_allclose(softmax, ref.predict_proba(H), atol=1e-4)


def test_minilm_finetune_changes_weights(tmp_path):
    ds = _text_dataset(8, 4)
    spec = TeacherSpec(
        kind="minilm", mode="finetune", batch_size=4, max_length=16, lr=1e-3, precision="float32"
    )
    model, _ = teachers.finetune_minilm(ds, spec, progress=lambda *a: None, max_steps=2)
    pre = transformers.AutoModel.from_pretrained(teachers.minilm_path())
    name = "encoder.layer.0.attention.self.query.weight"
    after = dict(model.encoder.named_parameters())[name].detach()
    assert not torch.allclose(after, dict(pre.named_parameters())[name])
    out = compute_teacher_outputs(
        ds, spec, progress=lambda *a: None, max_steps=1, encoder_dir=tmp_path / "enc"
    )
    assert out.H["test"].shape == (4, 384) and out.meta["mode"] == "finetune"
    np.testing.assert_allclose(out.Z["train"], out.H["train"] @ out.W.T + out.b, atol=1e-4)
    # The saved fine-tuned encoder reproduces H (mean pooling of its last layer).
    enc = load_teacher_encoder(spec, encoder_dir=tmp_path / "enc").eval()
    batch = teachers_minilm._load_minilm()[1](ds.splits["test"].texts[:1], return_tensors="pt")
    with torch.no_grad():
        h = enc(**batch).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(h, out.H["test"][0], atol=1e-4)


# ------------------------------------------------------------------------------ arrays


def _arrays(d: int = 5, C: int = 3, n: tuple[int, int] = (12, 6)):
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(C, d)), rng.normal(size=C)
    H = {s: rng.normal(size=(k, d)) for s, k in zip(("train", "test"), n, strict=True)}
    Z = {s: h @ W.T + b for s, h in H.items()}
    ds = Dataset(
        "arr", ["a", "b", "c"][:C],
        {s: Split(y=np.arange(len(h)) % C) for s, h in H.items()},
    )  # fmt: skip
    return ds, H, Z, W, b


def _save_npz(path: Path, H, Z, W, b=None, **extra) -> Path:
    arrs = {f"H_{s}": h for s, h in H.items()} | {f"Z_{s}": z for s, z in Z.items()}
    arrs["W"] = W
    if b is not None:
        arrs["b"] = b
    np.savez(path, **(arrs | extra))
    return path


@pytest.mark.parametrize("with_b", [True, False])
def test_arrays_npz_round_trip(tmp_path, with_b):
    ds, H, Z, W, b = _arrays()
    path = _save_npz(tmp_path / "t.npz", H, Z, W, b if with_b else None)
    out = compute_teacher_outputs(ds, TeacherSpec(kind="arrays", path=str(path)))
    np.testing.assert_allclose(out.W, W, rtol=1e-6)
    np.testing.assert_allclose(out.b, b, rtol=1e-5, atol=1e-6)  # estimated exactly when absent
    for s in H:
        np.testing.assert_allclose(out.H[s], H[s], rtol=1e-6)
        assert out.Z[s].dtype == np.float32
    assert out.meta.get("b_estimated", False) is (not with_b)


def test_arrays_parquet_round_trip(tmp_path):
    ds, H, Z, W, b = _arrays()
    rows = []
    for s in ("test", "train"):  # split order in the file does not matter
        df = pd.DataFrame(H[s], columns=[f"emb_{i}" for i in range(5)])
        df[[f"logit_{c}" for c in range(3)]] = Z[s]
        df.insert(0, "split", s)
        rows.append(df)
    path = tmp_path / "teacher.parquet"
    pd.concat(rows).to_parquet(path)
    np.save(tmp_path / "teacher.W.npy", W)
    np.save(tmp_path / "teacher.b.npy", b)
    out = compute_teacher_outputs(ds, TeacherSpec(kind="arrays", path=str(path)))
    for s in H:
        np.testing.assert_allclose(out.H[s], H[s], rtol=1e-6)
        np.testing.assert_allclose(out.Z[s], Z[s], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.b, b, rtol=1e-6)


def test_arrays_parquet_without_sidecar(tmp_path):
    ds, H, Z, W, b = _arrays()
    df = pd.DataFrame({"split": ["train"] * 12, "emb_0": 0.0, "logit_0": 0.0})
    df.to_parquet(tmp_path / "x.parquet")
    spec = TeacherSpec(kind="arrays", path=str(tmp_path / "x.parquet"))
    with pytest.raises(TeacherError, match=r"x\.W\.npy"):
        compute_teacher_outputs(ds, spec)


def _nan(H, Z, W, b):
    H["train"][[0, 3], 1] = np.nan
    Z["test"][0, 0] = np.inf
    return H, Z, W, b


def _wide(H, Z, W, b):
    H["test"] = np.hstack([H["test"], H["test"][:, :2]])
    return H, Z, W, b


def _missing(H, Z, W, b):
    del Z["test"]
    return H, Z, W, b


def _rows(H, Z, W, b):
    H["train"], Z["train"] = H["train"][:-1], Z["train"][:-1]
    return H, Z, W, b


def _classes(H, Z, W, b):
    return H, {s: z[:, :2] for s, z in Z.items()}, W[:2], b[:2]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (_nan, r"H_train has 2 non-finite values"),
        (_wide, r"H_test has width 7 but W has width 5"),
        (_missing, r"missing key\(s\) \['Z_test'\]"),
        (_rows, r"H_train has 11 rows but split 'train' of the dataset has 12"),
        (_classes, r"W has 2 classes .* dataset 'arr' has 3"),
    ],
)
def test_arrays_validation(tmp_path, corrupt, message):
    ds, *arrs = _arrays()
    path = _save_npz(tmp_path / "bad.npz", *corrupt(*arrs))
    with pytest.raises(TeacherError, match=message):
        compute_teacher_outputs(ds, TeacherSpec(kind="arrays", path=str(path)))


def test_arrays_refuses_object_arrays(tmp_path):
    ds, H, Z, W, b = _arrays()
    path = _save_npz(tmp_path / "obj.npz", H, Z, W, b, junk=np.array([{"a": 1}], dtype=object))
    with pytest.raises(TeacherError, match="without unpickling"):
        compute_teacher_outputs(ds, TeacherSpec(kind="arrays", path=str(path)))


# ------------------------------------------------------------------------------ digits


def _digits_bin() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, digit = load_digits(return_X_y=True)
    y = (digit >= 5).astype(np.int64)
    Xtr, Xte, ytr, yte, dtr, dte = train_test_split(X, y, digit, test_size=0.2, random_state=0)
    return Dataset(
        "digits-bin", ["0-4", "5-9"],
        {
            "train": Split(y=ytr, features=Xtr, latent={"digit": dtr}),
            "test": Split(y=yte, features=Xte, latent={"digit": dte}),
        },
    )  # fmt: skip


def test_digits_mlp_learns_and_is_linear_in_h():
    ds = _digits_bin()
    out = compute_teacher_outputs(ds, TeacherSpec(kind="digits-mlp", hidden=64))
    assert out.meta["accuracy"]["test"] > 0.9
    assert out.H["train"].shape == (len(ds.splits["train"]), 64)
    assert out.H["test"].min() >= 0  # ReLU output feeds the last layer
    np.testing.assert_allclose(out.Z["test"], out.H["test"] @ out.W.T + out.b, atol=1e-4)
    assert load_tokenizer(TeacherSpec(kind="digits-mlp")) is None
    with pytest.raises(TeacherError, match="needs a text dataset"):
        compute_teacher_outputs(ds, TeacherSpec(kind="minilm"))


# ------------------------------------------------------------------------------ fingerprint


@pytest.mark.parametrize(
    ("base", "change", "changes"),
    [
        ({"kind": "minilm"}, {"mode": "finetune"}, True),
        ({"kind": "minilm"}, {"max_length": 64}, True),
        ({"kind": "minilm"}, {"seed": 1}, True),
        ({"kind": "minilm"}, {"batch_size": 8}, False),  # frozen embeddings do not depend on it
        ({"kind": "minilm", "mode": "finetune"}, {"lr": 1e-4}, True),
        ({"kind": "minilm", "mode": "finetune"}, {"epochs": 1}, True),
        ({"kind": "digits-mlp"}, {"hidden": 32}, True),
        ({"kind": "digits-mlp"}, {"lr": 1.0}, False),
        ({"kind": "hf", "path": "a/b"}, {"path": "a/c"}, True),
        ({"kind": "hf", "path": "a/b"}, {"trust_remote_code": True}, True),
        ({"kind": "minilm", "precision": "float32"}, {"precision": "bf16"}, True),
        ({"kind": "hf", "path": "a/b", "precision": "bf16"}, {"precision": "float32"}, True),
        ({"kind": "digits-mlp"}, {"precision": "bf16"}, False),  # no embedding pass to change
    ],
)
def test_fingerprint_tracks_relevant_fields(base, change, changes):
    fp = teacher_fingerprint(TeacherSpec(**base))
    assert fp == teacher_fingerprint(TeacherSpec(**base))
    assert (teacher_fingerprint(TeacherSpec(**(base | change))) != fp) is changes


def test_fingerprint_follows_checkpoint_files(tmp_path):
    ds, H, Z, W, b = _arrays()
    path = _save_npz(tmp_path / "t.npz", H, Z, W, b)
    spec = TeacherSpec(kind="arrays", path=str(path))
    fp = teacher_fingerprint(spec)
    assert teacher_fingerprint(spec) == fp
    _save_npz(path, H, Z, W * 2, b, extra=np.zeros(3))  # re-saved: size changes
    assert teacher_fingerprint(spec) != fp


def test_hf_pickle_only_folder_loads_weights_only(tmp_path, minilm_tok):
    """A pytorch_model.bin-only folder loads through torch's weights_only unpickler."""
    src = _save_tiny(tmp_path / "src", "bert", minilm_tok, num_labels=2)
    dst = tmp_path / "bin"
    dst.mkdir()
    model = transformers.BertForSequenceClassification.from_pretrained(src)
    torch.save(model.state_dict(), dst / "pytorch_model.bin")
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            (dst / f.name).write_bytes(f.read_bytes())
    ds = _text_dataset(4, 2)
    out = compute_teacher_outputs(ds, TeacherSpec(kind="hf", path=str(dst)))
    ref = compute_teacher_outputs(ds, TeacherSpec(kind="hf", path=str(src)))
    np.testing.assert_allclose(out.Z["test"], ref.Z["test"], atol=1e-6)


def test_no_tqdm_output_when_stderr_is_not_a_tty(capfd):
    texts, _ = _texts(5, 0, 2)
    tok = transformers.AutoTokenizer.from_pretrained(teachers.minilm_path())
    (lengths,) = extract(
        lambda batch: batch["attention_mask"].sum(1, keepdim=True), tok, texts, 16, 2, None
    )
    np.testing.assert_array_equal(lengths[:, 0], [len(tok(t)["input_ids"]) for t in texts])
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("with_dev", [True, False])
def test_frozen_head_picks_c_on_held_out_rows(with_dev):
    rng = np.random.default_rng(0)
    n, d = 300, 40
    y = (np.arange(n) % 2).astype(np.int64)
    H = {s: rng.normal(size=(n, d)) + 0.3 * y[:, None] * (np.arange(d) < 3) for s in ("train",)}
    splits = {"train": Split(y=y, features=H["train"])}
    if with_dev:
        H["dev"] = rng.normal(size=(n, d)) + 0.3 * y[:, None] * (np.arange(d) < 3)
        splits["dev"] = Split(y=y, features=H["dev"])
    ds = Dataset("h", ["a", "b"], splits)
    W, b, c = teachers_minilm._frozen_head(ds, H, seed=0)
    grid = teachers_minilm._HEAD_C_GRID
    assert c in grid
    W_ref, b_ref = fit_linear_head(H["train"], y, 2, C=c)  # refitted on all of train
    np.testing.assert_allclose(W, W_ref)
    if with_dev:
        accs = [
            np.mean((H["dev"] @ w.T + bb).argmax(1) == y)
            for w, bb in (fit_linear_head(H["train"], y, 2, C=g) for g in grid)
        ]
        assert accs[grid.index(c)] == max(accs)


def test_bf16_precision_matches_float32_minilm(tiny_text_dataset):
    """teacher.precision=bf16 (the fast CPU choice) stays within cosine 0.999 of float32."""
    f32 = compute_teacher_outputs(
        tiny_text_dataset, TeacherSpec(kind="minilm", precision="float32")
    )
    b16 = compute_teacher_outputs(tiny_text_dataset, TeacherSpec(kind="minilm", precision="bf16"))
    a, b = f32.H["train"], b16.H["train"]
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() > 0.999
    assert not np.array_equal(a, b)  # bf16 really ran


# ------------------------------------------------------------------------------ float16 H files


def _same_outputs_in_files(ds: Dataset, spec: TeacherSpec, h_dir: Path) -> None:
    """``h_dir`` changes only where H lives: float16 memmaps equal to the float32 H cast."""
    mem = compute_teacher_outputs(ds, spec)
    disk = compute_teacher_outputs(ds, spec, h_dir=h_dir)
    for s in ds.splits:
        assert isinstance(disk.H[s], np.memmap) and disk.H[s].dtype == np.float16
        assert Path(disk.H[s].filename) == (h_dir / f"H_{s}.npy").resolve()
        assert not disk.H[s].flags.writeable
        np.testing.assert_array_equal(disk.H[s], mem.H[s].astype(np.float16))
        np.testing.assert_array_equal(disk.Z[s], mem.Z[s])
    np.testing.assert_array_equal(disk.W, mem.W)
    np.testing.assert_array_equal(disk.b, mem.b)


@pytest.mark.parametrize("compressed", [False, True])
def test_arrays_h_dir_writes_float16_files(tmp_path, compressed):
    ds, H, Z, W, b = _arrays(d=7, n=(70_000, 30))  # more rows than one copy block
    arrs = {f"H_{s}": h.astype(np.float32) for s, h in H.items()}
    arrs |= {f"Z_{s}": z for s, z in Z.items()} | {"W": W}
    (np.savez_compressed if compressed else np.savez)(tmp_path / "t.npz", **arrs)
    spec = TeacherSpec(kind="arrays", path=str(tmp_path / "t.npz"))
    _same_outputs_in_files(ds, spec, tmp_path / "h")


def test_arrays_npz_members_are_memory_mapped(tmp_path):
    from lelp_studio.teachers.arrays import _read_npz

    ds, H, Z, W, b = _arrays()
    _save_npz(tmp_path / "t.npz", H, Z, W, b)
    np.savez_compressed(tmp_path / "c.npz", H_train=H["train"])
    arrs = _read_npz(tmp_path / "t.npz")
    assert all(isinstance(a, np.memmap) for a in arrs.values())
    np.testing.assert_array_equal(arrs["H_train"], H["train"])
    assert not isinstance(_read_npz(tmp_path / "c.npz")["H_train"], np.memmap)  # loaded


def test_arrays_holdout_rows_in_h_files(tmp_path):
    """A file with H for the whole train split as loaded is cut by the holdout rows."""
    ds, H, Z, W, b = _arrays(n=(40, 6))
    rng = np.random.default_rng(1)
    perm = rng.permutation(40)
    keep, sel = perm[:30], perm[30:]
    splits = dict(ds.splits)
    splits["train"], splits["dev"] = Split(y=np.arange(30) % 3), Split(y=np.arange(10) % 3)
    ds2 = Dataset("arr", ds.label_names, splits, holdout_rows=(keep, sel))
    _save_npz(tmp_path / "t.npz", H, Z, W, b)
    spec = TeacherSpec(kind="arrays", path=str(tmp_path / "t.npz"))
    _same_outputs_in_files(ds2, spec, tmp_path / "h")
    out = compute_teacher_outputs(ds2, spec, h_dir=tmp_path / "h2")
    np.testing.assert_array_equal(
        out.H["dev"], H["train"][sel].astype(np.float32).astype(np.float16)
    )


def test_digits_h_dir_writes_float16_files(tmp_path):
    _same_outputs_in_files(_digits_bin(), TeacherSpec(kind="digits-mlp"), tmp_path / "h")


def test_arrays_h_dir_holds_no_float32_copy_of_h(tmp_path):
    """Peak traced memory stays far below one float32 copy of H (numpy reports to
    tracemalloc): H goes from the file to the float16 file a block at a time."""
    import tracemalloc

    ds, H, Z, W, b = _arrays(d=128, C=2, n=(200_000, 10))
    _save_npz(tmp_path / "t.npz", {s: h.astype(np.float32) for s, h in H.items()}, Z, W)
    spec = TeacherSpec(kind="arrays", path=str(tmp_path / "t.npz"))
    del H
    tracemalloc.start()
    compute_teacher_outputs(ds, spec, h_dir=tmp_path / "h")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.5 * 200_000 * 128 * 4, peak


def test_workspace_adopts_h_files(tmp_path):
    """save_teacher_outputs moves extraction's float16 files into arrays/ under the hash a
    copy would get, and reads them back memory-mapped."""
    from lelp_studio.store import Workspace, claim_staging

    ds, H, Z, W, b = _arrays()
    _save_npz(tmp_path / "t.npz", H, Z, W, b)
    spec = TeacherSpec(kind="arrays", path=str(tmp_path / "t.npz"))
    ws_a, ws_b = Workspace(tmp_path / "a"), Workspace(tmp_path / "b")
    ws_a.save_teacher_outputs("k", compute_teacher_outputs(ds, spec))
    with claim_staging(ws_b.root, "k") as staging:  # where the pipeline's extraction writes
        h_dir = staging.path
        ws_b.save_teacher_outputs("k", compute_teacher_outputs(ds, spec, h_dir=h_dir))
        assert not list(h_dir.glob("*.npy"))  # moved, not copied
    a, b_ = ws_a.load_teacher_outputs("k"), ws_b.load_teacher_outputs("k")
    assert a is not None and b_ is not None
    for s in H:
        assert isinstance(b_.H[s], np.memmap) and b_.H[s].dtype == np.float16
        np.testing.assert_array_equal(a.H[s], b_.H[s])
    with pytest.raises(Exception, match="only files inside"):
        ws_b.adopt_array(tmp_path / "t.npz")


def test_transformers_first_import_is_thread_safe() -> None:
    """Streamlit runs two script threads at once; both may reach a teacher first. Through
    hf_import.load_transformers every thread gets the names (transformers' lazy module alone
    can fail with "cannot import name 'AutoModel'" when two threads resolve names at once)."""
    code = (
        "import threading\n"
        "from lelp_studio.hf_import import load_transformers\n"
        "barrier, errors = threading.Barrier(8), []\n"
        "def work():\n"
        "    barrier.wait()\n"
        "    try:\n"
        "        load_transformers()\n"
        "        from transformers import AutoModel, AutoTokenizer, BertModel  # noqa: F401\n"
        "    except Exception as err:\n"
        "        errors.append(repr(err))\n"
        "threads = [threading.Thread(target=work) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(errors)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_every_transformers_name_the_library_imports_is_resolved_under_the_lock() -> None:
    """hf_import.NAMES lists every name a library module takes from transformers (outside
    type-checking blocks and code templates), so none is left to the lazy module's race."""
    import ast

    from lelp_studio import hf_import

    core = Path(__file__).resolve().parents[1] / "core"
    used = set()
    for path in core.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "transformers":
                used |= {a.name for a in node.names}
    assert used and used <= set(hf_import.NAMES)


# ------------------------------------------------------------ an arrays teacher's tokenizer


def test_arrays_teacher_names_a_tokenizer(tmp_path):
    """``teacher.tokenizer``: "minilm" is the bundled MiniLM's tokenizer, a folder is read
    offline; a bad one is one line naming the option; other kinds refuse the option."""
    from pydantic import ValidationError

    path = str(tmp_path / "t.npz")
    bundled = load_tokenizer(TeacherSpec(kind="minilm"))
    tok = load_tokenizer(TeacherSpec(kind="arrays", path=path, tokenizer="minilm"))
    assert tok is not None and tok.get_vocab() == bundled.get_vocab()
    bundled.save_pretrained(tmp_path / "tok")
    tok = load_tokenizer(TeacherSpec(kind="arrays", path=path, tokenizer=str(tmp_path / "tok")))
    assert tok("a film")["input_ids"] == bundled("a film")["input_ids"]
    assert load_tokenizer(TeacherSpec(kind="arrays", path=path)) is None
    with pytest.raises(TeacherError, match=r"teacher.tokenizer '.*nowhere'.*'minilm' or a local"):
        load_tokenizer(TeacherSpec(kind="arrays", path=path, tokenizer=str(tmp_path / "nowhere")))
    with pytest.raises(ValidationError, match="teacher.tokenizer is for kind 'arrays'"):
        TeacherSpec(kind="minilm", tokenizer="minilm")


def _text_arrays_config(tmp_path: Path, tokenizer: str | None) -> Path:
    """A text dataset folder (Parquet splits) and an arrays teacher for it, as a run config."""
    import yaml

    rng = np.random.default_rng(0)
    words = np.array(["good", "bad", "fine", "poor", "great", "awful", "plot", "cast"])
    d, C = 8, 2
    W = rng.normal(size=(C, d))
    arrays: dict[str, np.ndarray] = {"W": W, "b": np.zeros(C)}
    for split, n in (("train", 48), ("dev", 16), ("test", 16)):
        y = np.arange(n) % C
        texts = [" ".join(rng.choice(words, 5)) for _ in range(n)]
        pd.DataFrame({"text": texts, "label": y}).to_parquet(tmp_path / f"{split}.parquet")
        H = rng.normal(size=(n, d)) + y[:, None]
        arrays[f"H_{split}"], arrays[f"Z_{split}"] = H, H @ W.T
    np.savez(tmp_path / "teacher.npz", **arrays)
    teacher = {"kind": "arrays", "path": str(tmp_path / "teacher.npz")}
    if tokenizer:
        teacher["tokenizer"] = tokenizer
    cfg = {
        "dataset": {"source": str(tmp_path)},
        "teacher": teacher,
        "subclasses": {"method": "lelp", "n_subclasses": 2},
        "student": {"kind": "bag"},
        "train": {"objective": "lelp", "epochs": 1},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("tokenizer", [None, "minilm"])
def test_lelp_distill_with_an_arrays_teacher_on_text(tmp_path, tokenizer):
    """``lelp distill`` of a text student from an arrays teacher: with teacher.tokenizer it
    trains; without it the error is one line that names the option."""
    from typer.testing import CliRunner

    from lelp_studio.cli import app

    (tmp_path / "data").mkdir()
    cfg = _text_arrays_config(tmp_path / "data", tokenizer)
    argv = ["distill", str(cfg), "-w", str(tmp_path / "ws"), "--headroom-seeds", "0"]
    res = CliRunner().invoke(app, argv)
    if tokenizer is None:
        assert res.exit_code != 0
        assert "has no tokenizer for a text student; set teacher.tokenizer: minilm" in res.output
        assert "Traceback" not in res.output
    else:
        assert res.exit_code == 0, res.output
        assert "student  accuracy" in res.output
