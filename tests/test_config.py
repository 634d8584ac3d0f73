"""The run config schema: YAML in, validated config out, round trip, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lelp_studio.config import ConfigError, RunConfig, dump_config, load_config, parse_overrides

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_validate_and_round_trip(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path)
    out = tmp_path / "again.yaml"
    out.write_text(dump_config(cfg))
    assert load_config(out) == cfg


def test_overrides_are_typed_and_nested() -> None:
    cfg = load_config(None, ["train.tau=4", "subclasses.n_subclasses=[2, 8]", "student.kind=mlp"])
    assert cfg.train.tau == 4.0
    assert cfg.subclasses.n_subclasses == [2, 8]
    assert cfg.student.kind == "mlp"
    assert parse_overrides(["a.b.c=true"]) == {"a": {"b": {"c": True}}}


def test_defaults_are_the_reference_setting() -> None:
    cfg = RunConfig()
    assert (cfg.dataset.source, cfg.teacher.kind, cfg.train.objective) == (
        "text-demo",
        "minilm",
        "lelp",
    )
    assert cfg.subclasses.null_space and cfg.subclasses.rotate and cfg.subclasses.standardize


def test_unknown_key_is_named(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  temperature: 4\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train.temperature'"):
        load_config(p)


def test_wrong_type_is_named(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"train.epochs: .*'many'"):
        load_config(p)


@pytest.mark.parametrize(
    "override, where",
    [("subclasses.beta=0", "subclasses.beta"), ("train.tau=-1", "train.tau")],
)
def test_non_positive_temperatures_rejected(override: str, where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        load_config(None, [override])


def test_zero_subclasses_rejected() -> None:
    with pytest.raises(ConfigError, match="n_subclasses must be >= 1"):
        load_config(None, ["subclasses.n_subclasses=[4, 0]"])


def test_yaml_tags_that_run_code_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not readable as YAML"):
        load_config(p)


def test_missing_file_and_bad_override() -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config("/nonexistent/run.yaml")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["train.tau"])


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)


def test_teacher_tokenizer_is_an_arrays_option() -> None:
    """An arrays teacher may name the text student's tokenizer; other kinds have their own."""
    cfg = load_config(
        None, ["teacher.kind=arrays", "teacher.path=t.npz", "teacher.tokenizer=minilm"]
    )
    assert cfg.teacher.tokenizer == "minilm"
    assert load_config(None).teacher.tokenizer is None
    with pytest.raises(ConfigError, match=r"teacher.tokenizer is for kind 'arrays'"):
        load_config(None, ["teacher.tokenizer=minilm"])


def test_dump_setting_keeps_only_the_chosen_objectives_section(tmp_path: Path) -> None:
    """Issue 18: Export YAML wrote every method's section and ``latent_cols: []``."""
    import yaml

    from lelp_studio.config import dump_setting

    cfg = load_config(None, ["train.objective=fitnet", "train.fitnet.weight=2"])
    d = yaml.safe_load(dump_setting(cfg))
    sections = [k for k, v in d["train"].items() if isinstance(v, dict)]
    assert sections == ["fitnet"] and d["train"]["fitnet"]["weight"] == 2.0
    assert "latent_cols" not in d["dataset"]
    out = tmp_path / "setting.yaml"
    out.write_text(dump_setting(cfg))
    assert load_config(out) == cfg  # the defaults come back
    lelp = yaml.safe_load(dump_setting(load_config(None, ["dataset.latent_cols=[topic]"])))
    assert lelp["dataset"]["latent_cols"] == ["topic"]
    assert not [k for k, v in lelp["train"].items() if isinstance(v, dict)]
    # `lelp show-config` still prints every section (defaults filled in).
    assert "reaugkd" in yaml.safe_load(dump_config(cfg))["train"]
