"""The training step: objectives and regularizers combined, in any loop."""

from __future__ import annotations

import math

import pytest
import torch

import augreg
from augreg.builtins.objectives import CrossEntropy, LabelSmoothing
from augreg.builtins.regularizers import EmbeddingNoise, RDrop
from augreg.step import compute_loss, training_step
from augreg.testing.models import tiny_model, tiny_tokenizer


def _batch(n: int = 4) -> dict[str, torch.Tensor]:
    tok = tiny_tokenizer()
    texts = ["the movie was great", "terrible plot", "i love this film", "bad acting"][:n]
    enc = tok(texts, padding=True, return_tensors="pt")
    enc["labels"] = torch.tensor([1, 0, 1, 0][:n])
    return dict(enc)


def test_loss_is_weighted_sum_of_parts() -> None:
    model = tiny_model()
    model.eval()  # no dropout: passes are comparable
    batch = _batch()
    ce = CrossEntropy(weight=0.5)
    ls = LabelSmoothing(weight=2.0, epsilon=0.2)
    result = compute_loss(model, batch, [ce, ls])
    expected = 0.5 * result.parts["core.cross_entropy"] + 2.0 * result.parts["core.label_smoothing"]
    assert math.isclose(float(result.loss.detach()), expected, rel_tol=1e-5)
    plain = model(**batch).loss
    assert math.isclose(result.parts["core.cross_entropy"], float(plain), rel_tol=1e-5)


def test_regularizers_only_act_in_training_mode() -> None:
    model = tiny_model()
    batch = _batch()
    noise = EmbeddingNoise(std=0.5, where="extra_pass")
    model.eval()
    assert "core.embedding_noise" not in compute_loss(model, batch, [CrossEntropy()], [noise]).parts
    model.train()
    assert "core.embedding_noise" in compute_loss(model, batch, [CrossEntropy()], [noise]).parts


def test_rdrop_doubles_the_clean_pass() -> None:
    model = tiny_model()
    model.train()
    result = compute_loss(model, _batch(), [CrossEntropy()], [RDrop()])
    assert result.context is not None
    assert result.context.logits.shape[0] == 8
    assert result.parts["core.rdrop"] > 0


def test_nan_loss_stops_with_step_and_components() -> None:
    model = tiny_model()
    model.train()
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    with pytest.raises(augreg.TrainingDivergedError) as info:
        compute_loss(model, _batch(), [CrossEntropy()], [RDrop()], step=17)
    msg = str(info.value)
    assert "step 17" in msg and "core.rdrop" in msg and "core.cross_entropy" in msg


def test_plain_training_step_learns() -> None:
    torch.manual_seed(0)
    model = tiny_model(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    batch = _batch()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = training_step(model, batch, opt, [CrossEntropy()], [RDrop(weight=0.1)])
    for step in range(1, 30):
        last = training_step(model, batch, opt, [CrossEntropy()], [RDrop(weight=0.1)], step=step)
    assert float(last.loss) < 0.5 * float(first.loss)


def test_token_classification_ignores_minus_100() -> None:
    model = tiny_model("token_classification", num_labels=3)
    model.eval()
    tok = tiny_tokenizer()
    enc = dict(tok(["john went to paris", "the city"], padding=True, return_tensors="pt"))
    labels = torch.full(enc["input_ids"].shape, -100)
    labels[0, 1] = 1
    labels[0, 4] = 2
    labels[1, 2] = 0
    enc["labels"] = labels
    result = compute_loss(model, enc, [CrossEntropy()])
    logits = model(**{k: v for k, v in enc.items() if k != "labels"}).logits
    mask = labels != -100
    manual = torch.nn.functional.cross_entropy(logits[mask], labels[mask])
    assert math.isclose(float(result.loss), float(manual), rel_tol=1e-5)
