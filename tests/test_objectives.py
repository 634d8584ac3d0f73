"""core/objectives: every registered objective honours the one interface the loop uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from lelp_studio import objectives
from lelp_studio.config import ConfigError, load_config
from lelp_studio.objectives import Batch, Objective, TeacherData
from lelp_studio.students import MLPStudent, TransformerStudent
from lelp_studio.train import TrainConfig, TrainData, train

N, D, C, S = 48, 8, 3, 2
FAST = [
    "train.sea.sample_size=40",
    "train.reaugkd.proj_epochs=1",
    "train.subclass_distill.head_epochs=2",
    "train.alpha=0.5",
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _teacher() -> TeacherData:
    """Separable clusters; LELP targets: each class's mass split evenly over its S outputs."""
    r = np.random.default_rng(0)
    y = np.arange(N) % C
    H = (r.normal(size=(N, D)) * 0.3).astype(np.float32)
    H[np.arange(N), y] += 2.0
    Z = (H[:, :C] * 3).astype(np.float32)
    targets = np.repeat(torch.softmax(torch.as_tensor(Z), -1).numpy() / S, S, axis=1)
    return TeacherData(Z=Z, y=y, H=H, targets=targets, sizes=[S] * C, H_eval=H, Z_eval=Z, y_eval=y)


def _tokens() -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 50, (N, 6), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _ready(name: str) -> tuple[Objective, torch.nn.Module, dict[str, Tensor], TeacherData]:
    """``make``, ``setup``, build the student with ``n_outputs``, ``attach``: the pipeline's
    order. AMAD gets a tiny 4-head BERT teacher and a 2-head transformer student."""
    td = _teacher()
    spec = load_config(None, [f"train.objective={name}", *FAST]).train
    obj = objectives.make(name, spec).setup(td)
    n_out = obj.n_outputs(td.n_classes)
    torch.manual_seed(0)
    if isinstance(obj, objectives.AMAD):
        from transformers import BertConfig, BertModel

        bert = BertModel(
            BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                       num_attention_heads=4, intermediate_size=32),
            add_pooling_layer=False,
        )  # fmt: skip
        inputs = _tokens()
        obj.set_teacher_attention(bert, inputs)
        student: torch.nn.Module = TransformerStudent(50, n_out, hidden=8, layers=1, heads=2,
                                                      max_length=6)  # fmt: skip
    else:
        inputs = {"x": torch.as_tensor(td.H)}
        student = MLPStudent(D, 4, n_out)
    obj.attach(student)
    return obj, student, inputs, td


def _step(obj: Objective, student: torch.nn.Module, inputs: dict[str, Tensor], td: TeacherData):
    idx = torch.arange(12)
    batch_in = {k: v[idx] for k, v in inputs.items()}
    emb = None
    if obj.needs_embedding:
        emb = student.embed(batch_in)
        out = student.head(emb)
    else:
        out = student(batch_in)
    batch = Batch(idx, torch.as_tensor(td.y)[idx], emb, 0.3)
    return out, batch, obj.loss(out, batch)


@pytest.mark.parametrize("name", objectives.names())
def test_n_outputs_loss_and_class_logits(name: str) -> None:
    obj, student, inputs, td = _ready(name)
    n_out = obj.n_outputs(C)
    assert n_out == {"lelp": C * S, "subclass-distill": C * 4}.get(name, C)
    obj.check_outputs(n_out)
    out, batch, loss = _step(obj, student, inputs, td)
    assert out.shape == (12, n_out)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    lp = obj.class_logits(out.detach())
    assert lp.shape == (12, C)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(12))


@pytest.mark.parametrize("name", objectives.names())
def test_state_dict_round_trip(name: str) -> None:
    """What a checkpoint keeps of an objective loads into a freshly set-up one unchanged."""
    obj, student, inputs, td = _ready(name)
    out, batch, loss = _step(obj, student, inputs, td)
    loss.backward()
    obj.after_step(out.detach(), batch)  # queues, DiSK's gate and dual change here
    state = {k: v.detach().clone() for k, v in obj.state_dict().items()}
    fresh, *_ = _ready(name)
    fresh.load_state_dict(state)
    again = fresh.state_dict()
    assert again.keys() == state.keys()
    for k, v in state.items():
        torch.testing.assert_close(again[k], v, msg=k)


def test_unknown_name_lists_the_valid_ones() -> None:
    valid = ", ".join(sorted(objectives.REGISTRY))
    with pytest.raises(
        ConfigError, match=f"train.objective 'kl' is not known; choose one of: {valid}"
    ):
        objectives.make("kl")


def test_unknown_objective_is_refused_before_any_work_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lelp_studio.cli import app

    for argv in (["show-config"], ["distill", "-w", str(tmp_path)]):
        res = CliRunner().invoke(app, [*argv, "--set", "train.objective=kl"])
        assert res.exit_code == 2, res.output
        assert res.output.strip().splitlines()[-1].startswith("error: train.objective 'kl'")
        assert "Traceback" not in res.output


def test_registry_documents_every_objective() -> None:
    assert objectives.names()[:3] == ["hard", "kd", "lelp"] and len(objectives.names()) == 11
    for name in objectives.names():
        assert objectives.get(name).name == name
        doc = objectives.doc(name)
        assert len(doc) > 60 and "\n" not in doc, name


@pytest.mark.parametrize("name", objectives.names())
def test_each_objective_reads_only_its_own_section(name: str) -> None:
    """A change to another objective's section leaves this one's parameters untouched."""
    cls = objectives.get(name)
    spec = load_config(None, [f"train.objective={name}"]).train
    obj = objectives.make(name, spec)
    assert obj.params == (getattr(spec, cls.section) if cls.section else None)
    other = "amad" if cls.section != "amad" else "fitnet"
    changed = spec.model_copy(
        update={other: getattr(spec, other).model_copy(update={"weight": 9.0})}
    )
    assert objectives.make(name, changed).params == obj.params


class HalfHard(Objective):
    """A test objective: half the hard-label cross-entropy (the loop must need nothing more)."""

    name = "half-hard"

    def loss(self, out: Tensor, batch: Batch) -> Tensor:
        return 0.5 * F.cross_entropy(out, batch.y)


def test_a_new_objective_in_its_own_registry_trains(tmp_path: Any) -> None:
    registry = {**objectives.REGISTRY, "half-hard": HalfHard}
    y = torch.arange(64) % 2
    x = F.one_hot(y, 4).float() + 0.1 * torch.randn(
        64, 4, generator=torch.Generator().manual_seed(0)
    )
    obj = objectives.make("half-hard", registry=registry).setup(TeacherData(Z=None, y=y))
    torch.manual_seed(0)
    student = MLPStudent(4, 8, obj.n_outputs(2))
    cfg = TrainConfig(objective="half-hard", epochs=3, batch_size=16, lr=3e-2, device="cpu",
                      checkpoint_dir=str(tmp_path))  # fmt: skip
    res = train(student, TrainData({"x": x}, y, eval_inputs={"x": x}, eval_y=y), cfg, objective=obj)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert res.history[-1]["eval_accuracy"] == 1.0
    assert json.loads((tmp_path / "last.json").read_text())["config"]["objective"] == "half-hard"


def test_one_registry_line_makes_an_objective_runnable_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its module (HalfHard above) plus one registry line: the config accepts the name and
    ``lelp distill``'s own path (pipeline.run_distill) trains and scores a student with it."""
    from lelp_studio import pipeline
    from lelp_studio.store import Workspace

    monkeypatch.setitem(objectives.REGISTRY, "half-hard", HalfHard)  # the one registry line
    cfg = load_config(None, [
        "dataset.source=digits-bin", "teacher.kind=digits-mlp", "student.kind=mlp",
        "train.objective=half-hard", "train.epochs=2", "train.device=cpu",
    ])  # fmt: skip
    rec = pipeline.run_distill(cfg, Workspace(tmp_path / "ws"))
    assert rec["config"]["train"]["objective"] == "half-hard"
    assert rec["metrics"]["student"]["accuracy"] > 60.0


def test_train_makes_the_configured_objective_like_an_explicit_one() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 2
    x = torch.randn(64, 4, generator=g) + y[:, None]
    z = torch.stack([-x.sum(1), x.sum(1)], 1)
    data = TrainData({"x": x}, y, teacher_logits=z)
    cfg = TrainConfig(objective="kd", tau=2.0, alpha=0.3, epochs=2, batch_size=16, device="cpu")
    torch.manual_seed(0)
    a = train(MLPStudent(4, 8, 2), data, cfg)
    obj = objectives.make("kd", tau=2.0, alpha=0.3).setup(TeacherData(Z=z, y=y))
    torch.manual_seed(0)
    b = train(MLPStudent(4, 8, 2), data, cfg, objective=obj)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
