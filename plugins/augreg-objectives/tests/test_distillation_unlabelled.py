"""Distillation on unlabelled text: soft labels on data.unlabelled drawn with every batch."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import augreg
from augreg.context import StepContext, UnlabelledBatch
from augreg.errors import AugregError, ConfigError
from augreg.testing import make_batch, sequence_examples, tiny_model, tiny_tokenizer
from augreg_objectives.distillation import Distillation

LABELS = ("negative", "positive")
UNLABELLED = ["a film about nothing", "the cast is fine", "long and slow", "what a ride"]


def _setup(component: Distillation, task: str = "sequence_classification") -> Distillation:
    component.setup(augreg.SetupContext(task=task, labels=list(LABELS), tokenizer=tiny_tokenizer()))
    return component


def _ctx(model: Any, dist: Distillation) -> StepContext:
    tok = tiny_tokenizer()
    batch = make_batch(
        "sequence_classification", tok, sequence_examples(), label_names=list(LABELS)
    )
    inputs = dict(tok(UNLABELLED, padding=True, return_tensors="pt"))
    examples = [{"augreg_id": f"u:{i}", "text": t} for i, t in enumerate(UNLABELLED)]
    return StepContext(
        model, batch, objectives=[(dist, 1.0)], unlabelled=UnlabelledBatch(inputs, examples)
    )


def test_kl_covers_labelled_and_unlabelled_examples_each_once(teacher_folder: Path) -> None:
    dist = _setup(Distillation(teacher=str(teacher_folder), alpha=1.0, unlabeled=True))
    model = tiny_model("sequence_classification", 2, seed=9).eval()
    ctx = _ctx(model, dist)
    got = dist.loss(ctx)

    teacher = dist._teacher
    with torch.no_grad():
        t_lab = teacher(**ctx.inputs).logits
        t_unl = teacher(**ctx.unlabelled.inputs).logits  # type: ignore[union-attr]
    s_lab = ctx.logits
    s_unl = model(**ctx.unlabelled.inputs).logits  # type: ignore[union-attr]
    student, target = torch.cat([s_lab, s_unl]), torch.cat([t_lab, t_unl])
    t = dist.options.temperature
    expected = (
        F.kl_div(
            F.log_softmax(student / t, -1),
            F.log_softmax(target / t, -1),
            log_target=True,
            reduction="batchmean",
        )
        * t
        * t
    )
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)

    # the unlabelled part trains the student: its gradient is not the labelled-only one
    alone = _setup(Distillation(teacher=str(teacher_folder), alpha=1.0))
    g_with = torch.autograd.grad(got, model.classifier.weight)[0]
    plain = _ctx(model, alone)
    g_without = torch.autograd.grad(alone.loss(plain), model.classifier.weight)[0]
    assert not torch.allclose(g_with, g_without)


def test_zero_when_the_student_is_the_teacher_on_unlabelled_text_too(teacher_folder: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    dist = _setup(Distillation(teacher=str(teacher_folder), alpha=1.0, unlabeled=True))
    student = AutoModelForSequenceClassification.from_pretrained(teacher_folder).eval()
    assert abs(float(dist.loss(_ctx(student, dist)).detach())) < 1e-6


def test_perturbed_passes_use_the_labelled_part_only(teacher_folder: Path) -> None:
    """task_loss(outputs) on another pass of the labelled batch does not add unlabelled KL."""
    dist = _setup(Distillation(teacher=str(teacher_folder), alpha=1.0, unlabeled=True))
    model = tiny_model("sequence_classification", 2, seed=9).eval()
    ctx = _ctx(model, dist)
    labelled_only = _setup(Distillation(teacher=str(teacher_folder), alpha=1.0))
    torch.testing.assert_close(
        ctx.task_loss(ctx.outputs), labelled_only.loss(_ctx(model, labelled_only))
    )


def test_the_pipeline_draws_unlabelled_text_for_it(
    tiny_folder: Path, teacher_folder: Path, train_file: Path, tmp_path: Path
) -> None:
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text("".join(json.dumps({"text": t}) + "\n" for t in UNLABELLED * 3))
    base: dict[str, Any] = {
        "model": {"name": str(tiny_folder), "max_length": 32},
        "train": {
            "epochs": 1,
            "batch_size": 4,
            "seed": 3,
            "output_dir": str(tmp_path / "runs"),
            "progress": False,
            "eval_strategy": "no",
            "logging_steps": 1,
        },
    }
    spec = {"name": "objectives.distillation", "teacher": str(teacher_folder), "unlabeled": True}
    data = {"train": str(train_file), "unlabelled": str(unlabelled), "unlabelled_ratio": 2}
    result = augreg.Pipeline(**base, data=data, objectives=[spec]).run()
    train = result.train
    assert train["unlabelled_examples"] == len(UNLABELLED) * 3
    assert train["extra_passes"] == pytest.approx(2 * (1 + 1 / 3), abs=1e-3)
    history = json.loads((result.run_dir / "log_history.json").read_text())
    assert all(math.isfinite(h["loss"]) for h in history if "loss" in h)

    # unlabeled = true needs the unlabelled data, and unlabelled data needs a user
    with pytest.raises(ConfigError, match=r"data\.unlabelled"):
        augreg.Pipeline(**base, data={"train": str(train_file)}, objectives=[spec])
    with pytest.raises(ConfigError, match="unlabeled = true"):
        augreg.Pipeline(**base, data=data, objectives=[{**spec, "unlabeled": False}])


def test_token_classification_is_refused_with_the_fix(tmp_path: Path) -> None:
    from augreg.testing import DEFAULT_TAGS, save_tiny_model

    teacher = save_tiny_model(tmp_path / "t", "token_classification", len(DEFAULT_TAGS))
    dist = Distillation(teacher=str(teacher), unlabeled=True)
    with pytest.raises(AugregError, match="set unlabeled = false"):
        dist.setup(augreg.SetupContext(task="token_classification", labels=list(DEFAULT_TAGS)))
