"""Pipeline config validation: every problem at once, in the documented format."""

from __future__ import annotations

from pathlib import Path

import pytest

import augreg
from augreg.config import PipelineConfig, load_config, validate
from augreg.host import PluginHost
from augreg.testing import isolated_host


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return isolated_host(entry_points=False)


@pytest.fixture
def train_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "good", "label": 1}\n', encoding="utf-8")
    return path


def _errors(raw: dict[str, object], host: PluginHost) -> augreg.ConfigError:
    with pytest.raises(augreg.ConfigError) as excinfo:
        validate(raw, source="pipeline.toml", host=host)
    return excinfo.value


def test_all_errors_are_reported_together_in_the_documented_format(
    host: PluginHost, train_file: Path
) -> None:
    raw = {
        "model": {"name": "m"},
        "data": {"train": str(train_file)},
        "objectives": [{"name": "core.label_smoothing", "epsilon": 1.5}],
        "regularize": [{"name": "core.rdorp"}, {"name": "core.l2sp", "weight": -1}],
    }
    error = _errors(raw, host)
    assert str(error) == "\n".join([
        "augreg: pipeline.toml is invalid (3 errors)",
        "  objectives[0] core.label_smoothing (augreg 0.1.0): epsilon must be < 1.0, got 1.5",
        "  regularize[0] core.rdorp: unknown regularizer. Did you mean 'core.rdrop'?",
        "    Installed: core.embedding_noise, core.l2sp, core.rdrop",
        "  regularize[1] core.l2sp (augreg 0.1.0): weight must be >= 0.0, got -1",
    ])  # fmt: skip
    assert [p.where for p in error.problems] == ["objectives[0]", "regularize[0]", "regularize[1]"]


def test_unknown_component_of_a_known_plugin_says_what_to_install(
    host: PluginHost, train_file: Path
) -> None:
    raw = {"model": {"name": "m"}, "data": {"train": str(train_file)},
           "augment": ["eda.random_swap"]}  # fmt: skip
    (problem,) = _errors(raw, host).problems
    assert problem.message.endswith("It is provided by augreg-eda: pip install augreg-eda")


def test_component_in_the_wrong_section(host: PluginHost, train_file: Path) -> None:
    raw = {"model": {"name": "m"}, "data": {"train": str(train_file)}, "augment": ["core.rdrop"]}
    (problem,) = _errors(raw, host).problems
    assert (
        problem.message == "is a regularizer, not an augmenter; move it to the regularize section."
    )


def test_conflicts_are_reported_once_per_pair(host: PluginHost, train_file: Path) -> None:
    raw = {"model": {"name": "m"}, "data": {"train": str(train_file)},
           "objectives": ["core.cross_entropy", "core.label_smoothing"]}  # fmt: skip
    (problem,) = _errors(raw, host).problems
    assert problem.render() == (
        "  objectives[0] core.cross_entropy (augreg 0.1.0): conflicts with "
        "core.label_smoothing (objectives[1]); remove one of them"
    )


def test_missing_data_file_is_reported(host: PluginHost, tmp_path: Path) -> None:
    raw = {"model": {"name": "m"}, "data": {"train": "nope.jsonl"}, "base_dir": str(tmp_path)}
    (problem,) = _errors(raw, host).problems
    assert problem.where == "data.train"
    assert f"file not found: {tmp_path / 'nope.jsonl'}" in problem.message


def test_structural_errors_name_the_section(host: PluginHost, train_file: Path) -> None:
    raw = {"model": {"name": "m"}, "data": {"train": str(train_file)},
           "train": {"epochs": 0, "batch_szie": 8}}  # fmt: skip
    rendered = str(_errors(raw, host))
    assert "(2 errors)" in rendered
    assert "  train: epochs must be > 0.0, got 0" in rendered
    assert "batch_szie is not an option. Did you mean 'batch_size'?" in rendered


TOML = """
name = "demo"
[model]
name = "tiny"
[data]
train = "train.jsonl"
[[objectives]]
name = "core.label_smoothing"
epsilon = 0.2
[[regularize]]
name = "core.rdrop"
weight = 0.5
[train]
epochs = 2
seed = 7
"""

YAML = """
name: demo
model: {name: tiny}
data: {train: train.jsonl}
objectives:
  - {name: core.label_smoothing, epsilon: 0.2}
regularize:
  - name: core.rdrop
    weight: 0.5
train: {epochs: 2, seed: 7}
"""


def test_toml_and_yaml_give_the_same_config(
    host: PluginHost, train_file: Path, tmp_path: Path
) -> None:
    (tmp_path / "p.toml").write_text(TOML, encoding="utf-8")
    (tmp_path / "p.yaml").write_text(YAML, encoding="utf-8")
    from_toml = load_config(tmp_path / "p.toml", host=host)
    from_yaml = load_config(tmp_path / "p.yaml", host=host)
    assert isinstance(from_toml, PipelineConfig)
    assert from_toml == from_yaml
    assert from_toml.regularize[0].options == {"weight": 0.5}
    assert from_toml.resolve_path("train.jsonl") == train_file


def test_overrides_are_validated_too(host: PluginHost, train_file: Path, tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(TOML, encoding="utf-8")
    assert load_config(tmp_path / "p.toml", host=host, overrides={"train.seed": 3}).train.seed == 3
    with pytest.raises(augreg.ConfigError, match="seed must be >= 0, got -1"):
        load_config(tmp_path / "p.toml", host=host, overrides={"train.seed": -1})


def test_unreadable_or_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(augreg.ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    (tmp_path / "bad.yaml").write_text("a: [1,\n", encoding="utf-8")
    with pytest.raises(augreg.ConfigError, match="cannot be parsed"):
        load_config(tmp_path / "bad.yaml")
