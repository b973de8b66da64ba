"""consistency.tsa: the schedules and the masking of labelled examples the model already knows."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import augreg
from augreg.context import StepContext
from augreg.testing import make_batch, tiny_model, tiny_tokenizer
from augreg_consistency.tsa import TrainingSignalAnnealing, tsa_threshold


def test_schedules_rise_from_chance_to_one() -> None:
    for schedule in ("linear", "log", "exp"):  # the paper's log ends at 1 - exp(-5)
        assert tsa_threshold(schedule, 100, 100, 4) == pytest.approx(1.0, abs=0.006)
        assert tsa_threshold(schedule, 0, 100, 4) == pytest.approx(0.25, abs=0.006)
    mid = {s: tsa_threshold(s, 50, 100, 2) for s in ("linear", "log", "exp")}
    assert mid["linear"] == pytest.approx(0.75)
    assert mid["log"] > mid["linear"] > mid["exp"]


def _ctx(step: int, labels: list[int], total: int | None = None) -> StepContext:
    examples = [{"text": f"text {i}", "label": y} for i, y in enumerate(labels)]
    batch = make_batch("sequence_classification", tiny_tokenizer(), examples)
    return StepContext(tiny_model("sequence_classification"), batch, step=step, total_steps=total)


def test_masks_examples_whose_correct_class_probability_exceeds_the_threshold() -> None:
    logits = torch.tensor([[3.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.2]])
    outputs = SimpleNamespace(logits=logits)  # p(correct): 0.95, 0.73, 0.27, 0.55
    tsa = TrainingSignalAnnealing(schedule="linear")
    ctx = _ctx(step=40, labels=[0, 1, 1, 1], total=100)  # eta = 0.4 * 0.5 + 0.5 = 0.7
    loss = tsa.loss(ctx, outputs)
    ce = F.cross_entropy(logits, torch.tensor([0, 1, 1, 1]), reduction="none")
    assert float(loss) == pytest.approx(float(ce[2:].mean()))  # two kept: 0.27 and 0.55
    assert ctx.state["consistency.tsa"]["masked"] == pytest.approx(0.5)
    late = tsa.loss(_ctx(step=100, labels=[0, 1, 1, 1], total=100), outputs)
    assert float(late) == pytest.approx(float(ce.mean()))  # eta = 1: plain cross-entropy


def test_everything_masked_gives_zero() -> None:
    outputs = SimpleNamespace(logits=torch.tensor([[5.0, 0.0]]))
    loss = TrainingSignalAnnealing(steps=10).loss(_ctx(step=0, labels=[0]), outputs)
    assert float(loss) == 0.0


def test_step_count_comes_from_the_options_or_the_run() -> None:
    with pytest.raises(augreg.AugregError, match="steps ="):
        TrainingSignalAnnealing().loss(_ctx(step=0, labels=[0, 1]))
    ctx = _ctx(step=5, labels=[0, 1], total=10)
    assert TrainingSignalAnnealing().threshold(ctx, 2) == pytest.approx(0.75)
    assert TrainingSignalAnnealing(steps=20).threshold(ctx, 2) == pytest.approx(0.625)


def test_replaces_cross_entropy(tmp_path: object) -> None:
    with pytest.raises(augreg.ConfigError, match="conflicts with"):
        augreg.Pipeline(
            model="none",
            data={"train": [{"text": "a", "label": 0}]},
            objectives=["core.cross_entropy", "consistency.tsa"],
        )
