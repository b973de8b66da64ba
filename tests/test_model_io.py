"""Run folders of pipelines with adapters keep only what trains; augreg.load_model rebuilds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import augreg
from augreg.model_io import MANIFEST, WEIGHTS
from augreg.testing import make_batch, sequence_examples, tiny_tokenizer


def _run(model: Path, files: dict[str, Path], out: Path, **kwargs: object) -> augreg.RunResult:
    pipe = augreg.Pipeline(
        model={"name": str(model), "max_length": 16},
        data={"train": str(files["train"])},
        train={"epochs": 1, "batch_size": 8, "learning_rate": 1e-2, "progress": False},
        **kwargs,  # type: ignore[arg-type]
    )
    return pipe.run(out)


def _logits(model: torch.nn.Module) -> torch.Tensor:
    batch = make_batch("sequence_classification", tiny_tokenizer(), sequence_examples())
    batch.pop("labels")
    with torch.no_grad():
        return model.eval()(**batch).logits


def test_adapter_run_saves_the_trained_tensors_and_loads_identical(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    result = _run(
        tiny_seq_model, sentiment_files, tmp_path, adapters=[{"name": "core.freeze", "layers": 1}]
    )
    folder = result.run_dir / "model"
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST, WEIGHTS])
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["adapters"] == [
        {"name": "core.freeze", "options": {"embeddings": True, "layers": 1}}
    ]
    assert manifest["trained_parameters"] == result.train["trainable_parameters"]
    from safetensors.torch import load_file

    saved = load_file(str(folder / WEIGHTS))
    assert not any("embeddings" in k or "layer.0." in k for k in saved), "frozen tensors saved"
    assert any("layer.1." in k for k in saved) and "classifier.weight" in saved

    loaded = augreg.load_model(result.run_dir)
    assert not loaded.training
    trained = load_file(str(folder / WEIGHTS))
    for name, p in loaded.named_parameters():
        if name in trained:
            assert torch.equal(p, trained[name])
    # The frozen part is the base model again.
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_seq_model))
    assert torch.equal(
        loaded.bert.encoder.layer[0].attention.self.query.weight,
        base.bert.encoder.layer[0].attention.self.query.weight,
    )
    assert not torch.allclose(_logits(loaded), _logits(base))


def test_full_model_run_loads_through_the_same_function(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    result = _run(tiny_seq_model, sentiment_files, tmp_path)
    assert (result.run_dir / "model" / "config.json").is_file()
    from transformers import AutoModelForSequenceClassification

    saved = AutoModelForSequenceClassification.from_pretrained(str(result.run_dir / "model"))
    torch.testing.assert_close(
        _logits(augreg.load_model(result.run_dir)), _logits(saved), atol=0, rtol=0
    )


def test_load_model_says_when_there_is_nothing_to_load(tmp_path: Path) -> None:
    with pytest.raises(augreg.AugregError, match="no saved model"):
        augreg.load_model(tmp_path)
