"""Whole tiny pipelines from TOML with an unlabelled JSONL file: train, evaluate, repeat."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import augreg

CONFIG = """
name = "tiny-consistency"
[model]
name = "{model}"
max_length = 32
[data]
train = "data/train.jsonl"
test = "data/test.jsonl"
unlabelled = "data/unlabelled.jsonl"
unlabelled_ratio = 2
[[objectives]]
name = "consistency.tsa"
schedule = "exp"
{regularizer}
[train]
epochs = 2
batch_size = 4
learning_rate = 1e-3
seed = {seed}
logging_steps = 1
eval_strategy = "no"
progress = false
save_model = false
output_dir = "runs"
"""

UDA = """[[regularize]]
name = "consistency.uda"
augmenter = "eda.random_swap"
threshold = 0.0
warmup_steps = 4
"""

SELF_TRAINING = """[[regularize]]
name = "consistency.self_training"
augmenter = "eda.random_deletion"
augmenter_options = { alpha = 0.2 }
threshold = 0.5
teacher = "ema"
"""


def _config(folder: Path, model: Path, regularizer: str, seed: int = 3) -> Path:
    path = folder / f"pipeline-{seed}.toml"
    path.write_text(CONFIG.format(model=model, regularizer=regularizer, seed=seed))
    return path


def _parts(run_dir: Path, name: str) -> list[float]:
    history = json.loads((run_dir / "log_history.json").read_text())
    return [h[f"loss/{name}"] for h in history if f"loss/{name}" in h]


@pytest.mark.parametrize(
    ("regularizer", "name"),
    [(UDA, "consistency.uda"), (SELF_TRAINING, "consistency.self_training")],
    ids=["uda", "self_training"],
)
def test_trains_and_evaluates_from_a_toml_config(
    regularizer: str, name: str, tiny_folder: Path, data_files: dict[str, Path]
) -> None:
    folder = data_files["train"].parent.parent
    pipe = augreg.Pipeline.from_config(_config(folder, tiny_folder, regularizer))
    result = pipe.run()
    assert 0.0 <= result.metrics["test"]["accuracy"] <= 1.0
    assert result.train["unlabelled_examples"] == 24 and result.train["unlabelled_ratio"] == 2
    assert result.train["steps"] == 8  # 16 labelled examples, batches of 4, 2 epochs
    assert result.train["extra_passes"] == pytest.approx(2 * 1.33)  # per unlabelled batch x ratio
    parts = _parts(result.run_dir, name)
    assert len(parts) == 8 and all(math.isfinite(p) for p in parts)
    assert all(math.isfinite(p) for p in _parts(result.run_dir, "consistency.tsa"))
    if name == "consistency.uda":
        assert any(p > 0 for p in parts)


def test_same_seed_same_run_other_seed_differs(
    tiny_folder: Path, data_files: dict[str, Path]
) -> None:
    folder = data_files["train"].parent.parent
    runs = []
    for seed, tag in ((3, "a"), (3, "b"), (4, "c")):
        path = _config(folder, tiny_folder, UDA, seed)
        pipe = augreg.Pipeline.from_config(path, overrides={"train.run_name": tag})
        runs.append(pipe.run())
    first, again, other = (_parts(r.run_dir, "consistency.uda") for r in runs)
    assert first == again
    for key in ("loss", "accuracy"):
        assert runs[0].metrics["test"][key] == runs[1].metrics["test"][key]
    assert first != other


def test_config_without_unlabelled_data_fails_before_the_model_loads(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    text = CONFIG.format(model=tmp_path / "no-model", regularizer=UDA, seed=1)
    path.write_text(text.replace('unlabelled = "data/unlabelled.jsonl"\n', ""))
    with pytest.raises(augreg.ConfigError) as info:
        augreg.Pipeline.from_config(path)
    assert "regularize[0] consistency.uda" in str(info.value)
    assert "add data.unlabelled" in str(info.value)


def test_token_classification_pipeline_trains_with_per_word_pseudo_labels(
    tmp_path: Path,
) -> None:
    from augreg.testing import save_tiny_model

    rows = [
        {"tokens": ["John", "lives", "in", "Paris"], "tags": ["B-PER", "O", "O", "B-LOC"]},
        {"tokens": ["Mary", "met", "Anna"], "tags": ["B-PER", "O", "B-PER"]},
    ]
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 4))
    texts = [{"tokens": ["Anna", "lives", "in", "Rome"]}, {"tokens": ["Paul", "met", "John"]}]
    (data / "unlabelled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in texts * 3))
    model = save_tiny_model(tmp_path / "tok", "token_classification", 5)
    pipe = augreg.Pipeline(
        model={"name": str(model), "max_length": 32},
        task="token_classification",
        data={
            "train": str(data / "train.jsonl"),
            "test": str(data / "train.jsonl"),
            "unlabelled": str(data / "unlabelled.jsonl"),
        },
        regularize=[
            {"name": "consistency.self_training", "augmenter": "eda.keyboard", "threshold": 0.0}
        ],
        train={
            "epochs": 1,
            "batch_size": 4,
            "seed": 3,
            "logging_steps": 1,
            "output_dir": str(tmp_path / "runs"),
            "progress": False,
            "eval_strategy": "no",
            "save_model": False,
        },
    )
    result = pipe.run()
    assert "f1" in result.metrics["test"]
    parts = _parts(result.run_dir, "consistency.self_training")
    assert len(parts) == 2 and all(p > 0 and math.isfinite(p) for p in parts)


@pytest.mark.parametrize(
    ("content", "fix"),
    [("", "consistency components train on this text"), ('{"text": "   "}\n', "empty_rows")],
    ids=["empty-file", "empty-text"],
)
def test_an_empty_unlabelled_set_is_an_error_not_a_no_op(
    content: str, fix: str, tiny_folder: Path, data_files: dict[str, Path]
) -> None:
    data_files["unlabelled"].write_text(content)
    folder = data_files["train"].parent.parent
    pipe = augreg.Pipeline.from_config(_config(folder, tiny_folder, UDA))
    with pytest.raises(augreg.DataError) as info:
        pipe.run()
    assert "data.unlabelled" in str(info.value)
    assert fix in str(info.value)
    assert not list((folder / "runs").rglob("metrics.json"))  # nothing was trained
