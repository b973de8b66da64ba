"""model.pooling = "mean": the head reads the masked mean of the last hidden states."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import augreg
from augreg.config import ConfigError, ModelConfig, TaskConfig
from augreg.errors import AugregError
from augreg.pooling import CONFIG_KEY, apply_pooling
from augreg.tasks import get_task
from augreg.testing import short_train

SEQ = get_task(TaskConfig(type="sequence_classification"), ["neg", "pos"])


def _model(path: Path, pooling: str | None = "mean") -> torch.nn.Module:
    return SEQ.load_model(ModelConfig(name=str(path), pooling=pooling)).eval()  # type: ignore[arg-type]


def _batch(path: Path) -> dict[str, torch.Tensor]:
    tok = SEQ.load_tokenizer(ModelConfig(name=str(path)))
    return dict(
        tok(["great film", "a much longer and rather dull film"], padding=True, return_tensors="pt")
    )


def test_mean_pooling_is_the_masked_mean_and_ignores_padding(tiny_seq_model: Path) -> None:
    model = _model(tiny_seq_model)
    batch = _batch(tiny_seq_model)
    assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]  # row 0 is padded
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
        h, m = out.hidden_states[-1], batch["attention_mask"].unsqueeze(-1).float()
        mean = (h * m).sum(1) / m.sum(1)
        expected = model.classifier(mean)  # dropout is off in eval mode
        assert torch.allclose(out.logits, expected, atol=1e-5)
        # the padded row alone gives the same logits: padding does not enter the mean
        n = int(batch["attention_mask"][0].sum())
        alone = model(**{k: v[:1, :n] for k, v in batch.items()}).logits
        assert torch.allclose(alone, out.logits[:1], atol=1e-5)
        # and the first-token head gives something else
        cls = _model(tiny_seq_model, None)
        cls.load_state_dict(model.state_dict())
        assert not torch.allclose(cls(**batch).logits, out.logits, atol=1e-4)


def test_mean_pooling_keeps_parameter_names_survives_copies_and_is_idempotent(
    tiny_seq_model: Path,
) -> None:
    plain, model = _model(tiny_seq_model, None), _model(tiny_seq_model)
    assert set(plain.state_dict()) == set(model.state_dict())  # soups and anchors line up
    assert getattr(model.config, CONFIG_KEY) == "mean"
    assert apply_pooling(model, "mean") is model
    assert len(model.bert._forward_pre_hooks) == 1  # not hooked twice
    twin = copy.deepcopy(model)
    batch = _batch(tiny_seq_model)
    with torch.no_grad():
        assert torch.allclose(twin(**batch).logits, model(**batch).logits, atol=1e-6)


def test_a_saved_mean_pooled_model_loads_back_mean_pooled(
    tiny_seq_model: Path, tmp_path: Path
) -> None:
    model = _model(tiny_seq_model)
    model.save_pretrained(tmp_path / "m")
    SEQ.load_tokenizer(ModelConfig(name=str(tiny_seq_model))).save_pretrained(tmp_path / "m")
    again = _model(tmp_path / "m", None)  # config.json says mean
    assert type(again.bert.pooler).__name__ == "MeanPooler"
    batch = _batch(tiny_seq_model)
    with torch.no_grad():
        assert torch.allclose(again(**batch).logits, model(**batch).logits, atol=1e-6)
    first = _model(tmp_path / "m", "cls")  # stated: the first token, and the config says so
    assert not getattr(first.bert.pooler, "is_mean_pooler", False)
    assert getattr(first.config, CONFIG_KEY) == "cls"


def test_a_run_with_mean_pooling_trains_saves_and_evaluates_the_same(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    pipe = augreg.Pipeline(
        model={"name": str(tiny_seq_model), "max_length": 32, "pooling": "mean"},
        task="sequence_classification",
        data={"train": str(sentiment_files["train"]), "test": str(sentiment_files["test"])},
        train=short_train(tmp_path, seed=3),
        name="tiny-mean",
    )
    result = pipe.run()
    loaded = augreg.load_model(result.run_dir)
    assert type(loaded.bert.pooler).__name__ == "MeanPooler"
    again = augreg.evaluate_run(result.run_dir, write=False)
    assert again.metrics["test"]["accuracy"] == pytest.approx(result.metrics["test"]["accuracy"])


def test_mean_pooling_refuses_models_and_tasks_it_cannot_serve(
    tiny_seq_model: Path, tiny_tok_model: Path
) -> None:
    model = _model(tiny_seq_model, None)
    model.bert.pooler = None
    with pytest.raises(AugregError, match=r"Leave model\.pooling unset"):
        apply_pooling(model, "mean")
    tok = get_task(TaskConfig(type="token_classification"), ["O", "B-PER", "I-PER"])
    with pytest.raises(AugregError, match="applies to sequence classification"):
        tok.load_model(ModelConfig(name=str(tiny_tok_model), pooling="mean"))
    with pytest.raises(ValueError, match="pooling"):
        ModelConfig(name="x", pooling="max")  # type: ignore[arg-type]


def test_config_validation_names_the_pooling_problem(
    tiny_tok_model: Path, ner_files: dict[str, Path]
) -> None:
    with pytest.raises(ConfigError, match=r"model\.pooling"):
        augreg.Pipeline(
            model={"name": str(tiny_tok_model), "pooling": "mean"},
            task="token_classification",
            data={"train": str(ner_files["train"])},
        )


def test_configs_without_pooling_keep_their_dict_and_hash() -> None:
    assert "pooling" not in ModelConfig(name="x").model_dump(exclude_none=True)
