"""Augmenters that need the model (``needs_model``): views rewritten against the current weights.

A test augmenter writes, as its view, the text plus a digest of the weights it was handed and
the model's mode; the checks read those back to see when refreshes ran, against which
weights, and how (eval mode, no gradients), and that everything around (provenance, the
schedule, errors off the training path) holds.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from datasets import Dataset
from pydantic import Field
from transformers import TrainerCallback
from typer.testing import CliRunner

import augreg
from augreg.cli import app
from augreg.data import ID, PARENT, SOURCE, DataStage
from augreg.errors import ConfigError, DataError
from augreg.host import PluginHost
from augreg.tasks import get_task
from augreg.testing import AugmenterContract, model_context, tiny_model, tiny_tokenizer


def weights_digest(model: torch.nn.Module) -> str:
    total = sum(float(p.detach().double().sum()) for p in model.parameters())
    return f"{total:.10e}"


class EchoModel(augreg.Augmenter):
    """Test augmenter: appends the digest of the model it is handed (and its mode).

    Cost: one pass over the parameters per example.
    """

    name = "test.echo_model"
    needs_model: ClassVar[bool] = True

    class Options(augreg.Augmenter.Options):
        refresh_every: int = Field(1, ge=1, description="Refresh every this many epochs.")
        start_epoch: int = Field(0, ge=0, description="First refresh.")

    seen: ClassVar[list[dict[str, Any]]] = []

    def refresh_epoch(self, epoch: int) -> int | None:
        start, every = self.options.start_epoch, self.options.refresh_every  # type: ignore[attr-defined]
        return None if epoch < start else epoch - (epoch - start) % every

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        ctx = self.model_context
        model = ctx.model
        EchoModel.seen.append(
            {
                "epoch": ctx.epoch,
                "training": any(m.training for m in model.modules()),
                "grad": torch.is_grad_enabled(),
                "digest": weights_digest(model),
            }
        )
        mark = f"w{weights_digest(model)}"
        if "tokens" in example:  # token classification: one more token, tagged O
            if not example["tokens"]:
                return []
            assert ctx.logits([example]).shape[::2] == (1, 9)  # (1, sub-words, tags)
            return [
                {**example, "tokens": [*example["tokens"], mark], "tags": [*example["tags"], "O"]}
            ]
        if not example["text"]:
            return []
        assert ctx.logits([example]).shape == (1, 2)
        return [{**example, "text": f"{example['text']} {mark}"}]


class FiveWords(augreg.Augmenter):
    """A sparse, label-changing copy: texts of five words or more, negated."""

    name = "test.five_words"
    changes_labels = True

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        if len(example["text"].split()) < 5:
            return []
        return [{**example, "text": "not " + example["text"], "label": 1 - example["label"]}]


class _Plugin:
    @augreg.hookimpl
    def augreg_register_augmenters(self, register: augreg.Register) -> None:
        register(EchoModel)
        register(FiveWords)


def quiet_train(tmp_path: Path, **settings: Any) -> dict[str, Any]:
    """Train settings of a short test run: batch 8, no progress bars, evaluation or weights."""
    return {
        "batch_size": 8,
        "output_dir": str(tmp_path / "runs"),
        "progress": False,
        "eval_strategy": "no",
        "save_model": False,
        **settings,
    }


def host() -> PluginHost:
    return PluginHost(entry_points=False, plugins={"test": _Plugin()})


def seq_dataset() -> Dataset:
    texts = ["the movie was great", "so bad", "a wonderful story", "i hate this film"]
    return Dataset.from_dict(
        {ID: [f"train:{i}" for i in range(4)], "text": texts, "label": [1, 0, 1, 0]}
    )


def tokenize_fn() -> Any:
    task = get_task(augreg.config.TaskConfig(), ["0", "1"])
    tok = tiny_tokenizer()
    return lambda batch: task.tokenize_batch(batch, tok, 32)


# -- the data set --------------------------------------------------------------------------------


def test_views_are_written_on_refresh_epochs_and_kept_between() -> None:
    EchoModel.seen.clear()
    stage = DataStage(
        [], [EchoModel(refresh_every=2, start_epoch=1)], 5, "sequence_classification", None
    )
    data = stage.per_epoch_dataset(seq_dataset(), tokenize_fn())
    model = tiny_model(seed=1)
    model.train()
    tok = tiny_tokenizer()

    data.set_epoch(0, model, tok)  # before start_epoch: the slots hold the originals
    assert EchoModel.seen == []
    row = data.example(5)
    assert row["text"] == "so bad" and row[SOURCE] == "original" and row[PARENT] == ""

    data.set_epoch(1, model, tok)
    first = weights_digest(model)
    assert [s["epoch"] for s in EchoModel.seen] == [1] * 4
    row = data.example(5)
    assert row["text"] == f"so bad w{first}"
    assert row[ID] == "train:1/test.echo_model/1.0.0"
    assert row[SOURCE] == "test.echo_model" and row[PARENT] == "train:1"
    assert data.example(1)[SOURCE] == "original"  # slot 0 keeps the originals
    # eval mode, no gradients while writing; the model's own flags restored after
    assert not any(s["training"] for s in EchoModel.seen)
    assert not any(s["grad"] for s in EchoModel.seen)
    assert all(m.training for m in model.modules())
    assert data.stage.augmenters[0]._model_context is None  # the model was let go

    with torch.no_grad():  # the weights move on
        for p in model.parameters():
            p.add_(0.01)
    data.set_epoch(2, model, tok)  # not a refresh epoch: the views of epoch 1 stay
    assert len(EchoModel.seen) == 4 and data.example(5)["text"] == f"so bad w{first}"
    data.set_epoch(3, model, tok)  # a refresh against the current weights
    assert len(EchoModel.seen) == 8
    assert data.example(5)["text"] == f"so bad w{weights_digest(model)}" != f"so bad w{first}"
    refreshes = stage.report["test.echo_model"]["refreshes"]
    assert [r["epoch"] for r in refreshes] == [1, 3]
    assert all(r["examples"] == 4 and r["written"] == 4 for r in refreshes)


def test_refresh_without_a_model_is_an_error_and_offline_expand_refuses() -> None:
    stage = DataStage([], [EchoModel()], 5, "sequence_classification", None)
    data = stage.per_epoch_dataset(seq_dataset(), tokenize_fn())
    with pytest.raises(
        DataError, match=r"refresh for epoch 0 is due, but set_epoch\(\) got no model"
    ):
        data.set_epoch(0)
    with pytest.raises(DataError, match=r"test\.echo_model write their views against the model"):
        stage.expand(seq_dataset())


def test_augmenter_without_a_model_names_the_fix() -> None:
    with pytest.raises(augreg.AugregError, match=r'data\.augmentation = "per_epoch"'):
        EchoModel().augment({"text": "so bad", "label": 0}, random.Random(0))


# -- the pipeline --------------------------------------------------------------------------------


class Watch(TrainerCallback):
    """Digest of the weights at each epoch start; the model's mode at each step."""

    def __init__(self) -> None:
        self.at_epoch: list[str] = []
        self.step_modes: list[bool] = []

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.at_epoch.append(weights_digest(kw["model"]))

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.step_modes.append(kw["model"].training)


def test_training_refreshes_against_the_current_weights(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    EchoModel.seen.clear()
    pipe = augreg.Pipeline(
        model={"name": str(tiny_seq_model), "max_length": 32},
        data={"train": str(sentiment_files["train"]), "augmentation": "per_epoch"},
        augment=[{"name": "test.echo_model", "refresh_every": 2}],
        train=quiet_train(tmp_path, epochs=3, learning_rate=1e-3, seed=3),
        host=host(),
    )
    watch = Watch()
    result = pipe.run(callbacks=[watch])
    assert result.train["train_examples"] == 80  # originals + one view slot
    refreshes = result.train["data_report"]["test.echo_model"]["refreshes"]
    assert [r["epoch"] for r in refreshes] == [0, 2]
    by_epoch: dict[int, set[str]] = {}
    for s in EchoModel.seen:
        by_epoch.setdefault(s["epoch"], set()).add(s["digest"])
    # Each refresh saw the weights at the start of its epoch, and they had moved.
    assert by_epoch == {0: {watch.at_epoch[0]}, 2: {watch.at_epoch[2]}}
    assert watch.at_epoch[0] != watch.at_epoch[2]
    # The refresh at epoch 2 put the model back in train mode before the epoch's first step.
    # (Step 0 comes before the Trainer's own model.train(): a loaded model starts in eval.)
    assert len(watch.step_modes) == 3 * 10 and watch.step_modes[20] is True
    assert all(watch.step_modes[1:])


def test_offline_augmentation_with_a_model_augmenter_is_a_config_error(
    tiny_seq_model: Path, sentiment_files: dict[str, Path]
) -> None:
    with pytest.raises(ConfigError) as info:
        augreg.Pipeline(
            model=str(tiny_seq_model),
            data={"train": str(sentiment_files["train"])},
            augment=["test.echo_model"],
            host=host(),
        )
    text = str(info.value)
    assert "augment[0] test.echo_model" in text
    assert 'set data.augmentation = "per_epoch"' in text


def test_expand_first_trains_model_views_of_the_expanded_set(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    rows = sentiment_files["train"].read_text().splitlines()
    long = sum(1 for r in rows if len(json.loads(r)["text"].split()) >= 5)
    assert 0 < long < len(rows)
    pipe = augreg.Pipeline(
        model={"name": str(tiny_seq_model), "max_length": 32},
        data={
            "train": str(sentiment_files["train"]),
            "augmentation": "per_epoch",
            "keep_original": False,
            "expand_first": ["test.five_words"],
        },
        augment=["test.five_words", {"name": "test.echo_model", "refresh_every": 2}],
        train=quiet_train(tmp_path, epochs=2),
        host=host(),
    )
    result = pipe.run()
    # The originals and their copies, each as the model-made view: one slot per row.
    assert result.train["train_examples"] == len(rows) + long
    report = result.train["data_report"]
    assert report["test.five_words"]["written"] == long
    assert report["test.echo_model"]["refreshes"][0]["examples"] == len(rows) + long


@pytest.mark.parametrize(
    ("data", "augment", "message"),
    [
        (
            {},
            ["test.five_words", "test.echo_model"],
            'applies with data.augmentation = "per_epoch"',
        ),
        ({"augmentation": "per_epoch"}, ["test.echo_model"], "which is not in the augment section"),
        (
            {"augmentation": "per_epoch"},
            ["test.five_words"],
            'none is left to run per epoch; use data.augmentation = "offline"',
        ),
    ],
)
def test_expand_first_is_checked(
    tiny_seq_model: Path,
    sentiment_files: dict[str, Path],
    data: dict[str, Any],
    augment: list[str],
    message: str,
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        augreg.Pipeline(
            model=str(tiny_seq_model),
            data={
                "train": str(sentiment_files["train"]),
                "expand_first": ["test.five_words"],
                **data,
            },
            augment=augment,
            host=host(),
        )
    with pytest.raises(
        ConfigError, match="writes its views against the model being trained, every"
    ):
        augreg.Pipeline(
            model=str(tiny_seq_model),
            data={
                "train": str(sentiment_files["train"]),
                "augmentation": "per_epoch",
                "expand_first": ["test.echo_model"],
            },
            augment=["test.five_words", "test.echo_model"],
            host=host(),
        )


def test_cli_augment_refuses_a_model_augmenter(
    sentiment_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import augreg.host

    monkeypatch.setattr(augreg.host, "default_host", host)
    out = CliRunner().invoke(
        app,
        [
            "augment",
            str(sentiment_files["train"]),
            str(tmp_path / "out.jsonl"),
            "--component",
            "test.echo_model",
        ],
    )
    assert out.exit_code == 2, out.output
    assert "test.echo_model write their examples against the model being trained" in out.output
    assert "augreg run" in out.output and not (tmp_path / "out.jsonl").exists()


# -- the conformance kit on a model-needing augmenter -------------------------------------------


class TestEchoModelContract(AugmenterContract):
    component = "test.echo_model"
    plugins = {"test": _Plugin()}
    heavy_import_ok = True  # this test module imports torch itself
    seed = 7


def test_model_context_encodes_like_training() -> None:
    tok = tiny_tokenizer()
    ctx = model_context("sequence_classification", tiny_model(), tok)
    batch = ctx.encode([{"text": "so good", "label": 1}, {"text": "a great film", "label": 0}])
    assert "labels" not in batch and batch["input_ids"].shape[0] == 2
    assert ctx.logits([{"text": "so good", "label": 1}]).dtype == torch.float32
