"""Pipelines end to end on tiny local models: code and config, runs, run folders, failures."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import augreg
from augreg.host import PluginHost
from augreg.testing import short_train as _train


def test_code_and_config_give_the_same_pipeline(
    tiny_seq_model: Path,
    sentiment_files: dict[str, Path],
    tmp_path: Path,
    tiny_pipeline: Callable[..., augreg.Pipeline],
) -> None:
    code = tiny_pipeline(
        regularize=[{"name": "core.rdrop", "weight": 0.5}, "core.l2sp"],
        objectives=[augreg.create("core.label_smoothing", epsilon=0.2)],
    )
    toml = tmp_path / "p.toml"
    toml.write_text(f"""
name = "tiny"
[model]
name = "{tiny_seq_model}"
max_length = 32
[task]
type = "sequence_classification"
[data]
train = "{sentiment_files["train"]}"
test = "{sentiment_files["test"]}"
[data.eval]
ood = "{sentiment_files["ood"]}"
[[objectives]]
name = "core.label_smoothing"
epsilon = 0.2
[[regularize]]
name = "core.rdrop"
weight = 0.5
[[regularize]]
name = "core.l2sp"
[train]
epochs = 2
batch_size = 8
learning_rate = 1e-3
seed = 3
output_dir = "{tmp_path / "runs"}"
progress = false
eval_strategy = "no"
""")
    yaml_file = tmp_path / "p.yaml"
    import yaml

    yaml_file.write_text(yaml.safe_dump(code.config.to_dict()))
    from_toml = augreg.Pipeline.from_config(toml)
    from_yaml = augreg.Pipeline.from_config(yaml_file)

    def norm(p: augreg.Pipeline) -> dict[str, Any]:
        d = p.config.to_dict()
        d.pop("base_dir")
        return d

    assert norm(code) == norm(from_toml) == norm(from_yaml)
    assert [c.name for c in code.all_components()] == [c.name for c in from_toml.all_components()]
    assert code.objectives[0].options == from_toml.objectives[0].options


def test_objectives_default_to_cross_entropy(
    tiny_seq_model: Path,
    sentiment_files: dict[str, Path],
    tmp_path: Path,
    tiny_pipeline: Callable[..., augreg.Pipeline],
) -> None:
    pipe = tiny_pipeline()
    assert [o.name for o in pipe.objectives] == ["core.cross_entropy"]


def test_run_writes_a_complete_run_folder(
    tiny_seq_model: Path,
    sentiment_files: dict[str, Path],
    tmp_path: Path,
    tiny_pipeline: Callable[..., augreg.Pipeline],
) -> None:
    pipe = tiny_pipeline(regularize=["core.rdrop"])
    result = pipe.run()
    run = result.run_dir
    assert set(result.metrics) == {"test", "ood"}
    for name in ("test", "ood"):
        metrics = json.loads((run / "metrics" / f"{name}.json").read_text())
        assert 0.0 <= metrics["accuracy"] <= 1.0
        assert "macro_f1" in metrics
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["train"]["steps"] == 2 * math.ceil(40 / 8)
    assert summary["train"]["seconds_per_step"] > 0
    assert summary["train"]["train_examples"] == 40
    assert summary["train"]["extra_passes"] == 1.0
    lock = (run / "augreg.lock").read_text()
    assert "augreg==" in lock and "torch==" in lock
    assert (run / "model" / "config.json").exists()
    rerun = augreg.Pipeline.from_config(run / "config.yaml")  # the resolved config re-validates
    assert [c.name for c in rerun.regularizers] == ["core.rdrop"]
    history = json.loads((run / "log_history.json").read_text())
    logged = [h for h in history if "loss" in h]
    assert logged and "loss/core.rdrop" in logged[0] and "loss/core.cross_entropy" in logged[0]


def test_same_seed_same_result_other_seed_differs(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    def loss(seed: int, sub: str) -> float:
        pipe = augreg.Pipeline(
            model={"name": str(tiny_seq_model), "max_length": 32},
            data={"train": str(sentiment_files["train"]), "train_size": 10},
            train=_train(tmp_path / sub, seed=seed, epochs=1, save_model=False),
        )
        return float(pipe.run().train["train_loss"])

    assert loss(1, "a") == loss(1, "b")
    assert loss(1, "c") != loss(2, "d")


def test_learns_a_separable_task(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    pipe = augreg.Pipeline(
        model={"name": str(tiny_seq_model), "max_length": 32},
        data={"train": str(sentiment_files["train"]), "test": str(sentiment_files["test"])},
        train=_train(tmp_path, epochs=15, learning_rate=3e-3, warmup_ratio=0.0, save_model=False),
    )
    assert pipe.run().metrics["test"]["accuracy"] >= 0.9


def test_token_classification_run(
    tiny_tok_model: Path, ner_files: dict[str, Path], tmp_path: Path
) -> None:
    pipe = augreg.Pipeline(
        model={"name": str(tiny_tok_model), "max_length": 32},
        task={"type": "token_classification", "tag_scheme": "iob1"},
        data={"train": str(ner_files["train"]), "test": str(ner_files["test"])},
        regularize=["core.embedding_noise"],
        train=_train(tmp_path, epochs=1, save_model=False),
    )
    result = pipe.run()
    assert {"precision", "recall", "f1"} <= set(result.metrics["test"])
    model = pipe.trainer.model
    assert model.config.num_labels == 5  # O, B-LOC, I-LOC, B-PER, I-PER
    assert set(model.config.label2id) == {"O", "B-LOC", "I-LOC", "B-PER", "I-PER"}


def test_select_best_and_early_stopping(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    pipe = augreg.Pipeline(
        model={"name": str(tiny_seq_model), "max_length": 32},
        data={
            "train": str(sentiment_files["train"]),
            "validation": str(sentiment_files["validation"]),
        },
        train=_train(
            tmp_path,
            epochs=30,
            learning_rate=1e-7,
            eval_strategy="epoch",
            select_best=True,
            early_stopping_patience=2,
            save_model=False,
        ),
    )
    result = pipe.run()
    # An all-but-frozen model cannot improve: early stopping ends long before 30 epochs.
    assert result.train["steps"] < 30 * 5
    assert pipe.trainer.state.best_metric is not None
    assert "validation" in result.metrics


class _Plugin:
    """An in-code plugin with components that record what they see."""

    def __init__(self) -> None:
        self.epochs: list[int] = []
        plugin = self

        class NanAt(augreg.Objective):
            """Cross-entropy that turns NaN at a given step (for the divergence test)."""

            name = "test.nan_at"

            class Options(augreg.Objective.Options):
                step: int = 3

            def loss(self, ctx: augreg.StepContext, outputs: Any = None) -> torch.Tensor:
                out = ctx.outputs if outputs is None else outputs
                value = torch.nn.functional.cross_entropy(out.logits, ctx.labels)
                if ctx.model.training and ctx.step >= self.options.step:
                    return value * float("nan")
                return value

        class Tag(augreg.Augmenter):
            """Appends a word chosen by the rng; records the epochs it is called for."""

            name = "test.tag"

            def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
                plugin.epochs.append(int(str(example.get("augreg_id", "")).count("/")))
                return [{**example, "text": example["text"] + " " + rng.choice(["so", "very"])}]

        self.NanAt, self.Tag = NanAt, Tag

    @augreg.hookimpl
    def augreg_register_objectives(self, register: augreg.Register) -> None:
        register(self.NanAt)

    @augreg.hookimpl
    def augreg_register_augmenters(self, register: augreg.Register) -> None:
        register(self.Tag)


def test_nan_loss_stops_and_keeps_last_good_weights(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    host = PluginHost(entry_points=False, plugins={"test": _Plugin()})
    pipe = augreg.Pipeline(
        model={"name": str(tiny_seq_model), "max_length": 32},
        data={"train": str(sentiment_files["train"])},
        objectives=[{"name": "test.nan_at", "step": 3}],
        train=_train(tmp_path, run_name="nan"),
        host=host,
    )
    with pytest.raises(augreg.TrainingDivergedError) as info:
        pipe.run()
    assert info.value.step == 3
    assert "test.nan_at" in str(info.value)
    keep = Path(str(info.value.checkpoint))
    assert (keep / "config.json").exists()
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(keep)
    assert all(torch.isfinite(p).all() for p in reloaded.parameters())


def test_offline_augmentation_adds_rows_with_provenance(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    host = PluginHost(entry_points=False, plugins={"test": _Plugin()})
    pipe = augreg.Pipeline(
        model={"name": str(tiny_seq_model), "max_length": 32},
        data={"train": str(sentiment_files["train"]), "cache_dir": str(tmp_path / "cache")},
        augment=[{"name": "test.tag", "copies": 2}],
        train=_train(tmp_path, epochs=1, save_model=False),
        host=host,
    )
    augmented = pipe.augment()
    assert len(augmented) == 40 * 3
    sources = augmented["augreg_source"]
    assert sources.count("original") == 40 and sources.count("test.tag") == 80
    result = pipe.run()
    assert result.train["train_examples"] == 120


def test_per_epoch_augmentation_gives_fresh_views(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    plugin = _Plugin()
    host = PluginHost(entry_points=False, plugins={"test": plugin})
    pipe = augreg.Pipeline(
        model={"name": str(tiny_seq_model), "max_length": 32},
        data={"train": str(sentiment_files["train"]), "augmentation": "per_epoch"},
        augment=["test.tag"],
        train=_train(tmp_path, epochs=2, save_model=False),
        host=host,
    )
    result = pipe.run()
    assert result.train["train_examples"] == 80
    assert result.train["steps"] == 2 * 10


def test_invalid_pipeline_fails_before_any_model_loads(tmp_path: Path) -> None:
    with pytest.raises(augreg.ConfigError) as info:
        augreg.Pipeline(
            model="no/such-model",
            data={"train": str(tmp_path / "missing.jsonl")},
            regularize=[{"name": "core.rdorp"}, {"name": "core.l2sp", "weight": -1}],
            train={"epochs": 0},
        )
    text = str(info.value)
    assert "(3 errors)" in text or "(4 errors)" in text
    assert "Did you mean 'core.rdrop'?" in text
    assert "weight must be >= 0" in text
    assert "epochs must be > 0" in text


def test_runs_of_one_name_and_seed_in_one_second_never_share_a_folder(
    tiny_pipeline: Any, tmp_path: Path
) -> None:
    from augreg.pipeline import claim_folder

    first = tiny_pipeline().run().run_dir
    metrics = (first / "metrics.json").read_bytes()
    # the folder the next run would compute in the same second is taken: it gets its own
    taken = claim_folder(first)
    assert taken == first.with_name(first.name + "-2") and taken.is_dir()
    second = tiny_pipeline(train={"epochs": 1}).run().run_dir
    assert second != first and (first / "metrics.json").read_bytes() == metrics
    named = tiny_pipeline(train={"run_name": "mine"}).run().run_dir
    assert named.name == "mine"  # a chosen name is used as given
