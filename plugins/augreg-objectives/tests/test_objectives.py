"""Behaviour of the objectives: what they ignore, what they train, when they fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import augreg
from augreg.context import StepContext
from augreg.errors import AugregError, OptionsError
from augreg.step import compute_loss
from augreg.testing import (
    make_batch,
    save_tiny_model,
    sequence_examples,
    tiny_model,
    tiny_tokenizer,
)
from augreg_objectives.contrastive import SimCSE, SupervisedContrastive
from augreg_objectives.distillation import Distillation
from augreg_objectives.mlm import MaskedLM

SEQUENCE_LABELS = ("negative", "positive")  # the kit's sample labels


def _setup(component: Any, task: str = "sequence_classification", labels: Any = None) -> Any:
    component.setup(
        augreg.SetupContext(
            task=task,
            labels=list(labels or SEQUENCE_LABELS),
            seed=1,
            tokenizer=tiny_tokenizer(),
        )
    )
    return component


def _batch() -> dict[str, Any]:
    return make_batch(
        "sequence_classification",
        tiny_tokenizer(),
        sequence_examples(),
        label_names=list(SEQUENCE_LABELS),
    )


def _ctx(model: Any, batch: dict[str, Any], *objectives: Any) -> StepContext:
    return StepContext(
        model,
        batch,
        objectives=[(o, 1.0) for o in objectives],
        hidden_states=any(o.needs_hidden_states for o in objectives),
    )


# -- distillation --------------------------------------------------------------------------


def test_distillation_is_zero_when_the_student_is_the_teacher(teacher_folder: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    dist = _setup(Distillation(teacher=str(teacher_folder), alpha=1.0, hidden_weight=1.0))
    student = AutoModelForSequenceClassification.from_pretrained(teacher_folder).eval()
    loss = compute_loss(student, _batch(), [dist]).loss
    assert abs(float(loss)) < 1e-6
    other = tiny_model("sequence_classification", 2, seed=9).eval()
    assert float(compute_loss(other, _batch(), [dist]).loss) > 1e-4


def test_distillation_ignores_examples_labelled_minus_100_unless_unlabeled(
    teacher_folder: Path,
) -> None:
    batch = _batch()
    batch["labels"][0] = -100
    model = tiny_model("sequence_classification", 2, seed=9).eval()
    for unlabeled, changes in ((False, False), (True, True)):
        dist = _setup(Distillation(teacher=str(teacher_folder), unlabeled=unlabeled))
        ctx = _ctx(model, batch, dist)
        out = ctx.outputs
        moved = out.logits.clone()
        moved[0] += torch.tensor([3.0, -3.0])
        base = float(dist.loss(ctx, out))
        other = float(dist.loss(ctx, type(out)(**{**out, "logits": moved})))
        assert (abs(base - other) > 1e-4) is changes


def test_distillation_caches_teacher_logits_per_tokenized_example(teacher_folder: Path) -> None:
    dist = _setup(Distillation(teacher=str(teacher_folder)))
    calls: list[int] = []
    dist._teacher.register_forward_hook(lambda *_: calls.append(1))
    model = tiny_model("sequence_classification", 2, seed=9).eval()
    first = float(compute_loss(model, _batch(), [dist]).loss)
    second = float(compute_loss(model, _batch(), [dist]).loss)
    assert len(calls) == 1 and abs(first - second) < 1e-6
    fresh = _setup(Distillation(teacher=str(teacher_folder), cache="none"))
    assert abs(float(compute_loss(model, _batch(), [fresh]).loss) - first) < 1e-5


def test_distillation_projects_hidden_states_of_a_student_of_another_width(
    tmp_path: Path,
) -> None:
    wide = tiny_model("sequence_classification", 2, seed=5, hidden_size=48)
    wide.save_pretrained(tmp_path / "wide")
    tiny_tokenizer().save_pretrained(tmp_path / "wide")
    dist = _setup(Distillation(teacher=str(tmp_path / "wide"), hidden_weight=1.0))
    student = tiny_model("sequence_classification", 2, seed=9).train()
    student = dist.prepare_model(student)
    proj = student.augreg_aux["objectives_distillation"]
    assert tuple(proj.weight.shape) == (48, 32)
    compute_loss(student, _batch(), [dist]).loss.backward()
    assert proj.weight.grad is not None and float(proj.weight.grad.abs().sum()) > 0


def test_distillation_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="teacher is missing"):
        Distillation()
    three = save_tiny_model(tmp_path / "three", "sequence_classification", 3)
    with pytest.raises(AugregError, match="has 3 labels and the task has 2"):
        _setup(Distillation(teacher=str(three)))
    with pytest.raises(AugregError, match="not-a-model"):
        _setup(Distillation(teacher=str(tmp_path / "not-a-model")))


# -- contrastive ---------------------------------------------------------------------------


def test_supervised_contrastive_ignores_minus_100_and_padding() -> None:
    model = tiny_model("sequence_classification", 2, seed=3).eval()
    supcon = SupervisedContrastive()
    batch = _batch()
    base = float(supcon.loss(_ctx(model, batch, supcon)))
    assert base > 0
    # an extra example labelled -100 (with its padding) changes nothing
    tok = tiny_tokenizer()
    extra = dict(
        sequence_examples()[0], text=" ".join(["the movie was great and the story was long"] * 3)
    )
    longer = make_batch(
        "sequence_classification",
        tok,
        [*sequence_examples(), extra],
        label_names=list(SEQUENCE_LABELS),
    )
    longer["labels"][-1] = -100
    assert longer["input_ids"].shape[1] > batch["input_ids"].shape[1]  # more padding
    assert abs(float(supcon.loss(_ctx(model, longer, supcon))) - base) < 1e-5


def test_simcse_uses_two_dropout_views_in_training_only() -> None:
    model = tiny_model("sequence_classification", 2, seed=3)
    simcse = SimCSE()
    model.eval()
    assert float(compute_loss(model, _batch(), [simcse]).loss) == 0.0
    model.train()
    loss = compute_loss(model, _batch(), [simcse]).loss
    assert float(loss) > 0
    loss.backward()
    emb = model.get_input_embeddings().weight
    assert emb.grad is not None and bool(torch.isfinite(emb.grad).all())


# -- mlm -----------------------------------------------------------------------------------


def test_mlm_masks_real_tokens_with_the_80_10_10_rule() -> None:
    tok = tiny_tokenizer()
    mlm = _setup(MaskedLM())
    model = tiny_model("sequence_classification", 2, seed=3).train()
    texts = [" ".join(["the movie was great and the story was wonderful"] * 4)] * 64
    batch = make_batch(
        "sequence_classification",
        tok,
        [{"text": t, "label": "positive"} for t in texts[:-1]]
        + [{"text": "ok", "label": "negative"}],
        label_names=list(SEQUENCE_LABELS),
    )
    ctx = StepContext(model, batch, step=7)
    masked, labels = mlm._mask(ctx)
    ids = batch["input_ids"]
    chosen = labels != -100
    special = torch.zeros_like(chosen)
    for sid in tok.all_special_ids:
        special |= ids == sid
    assert not bool((chosen & special).any())  # never [CLS], [SEP] or padding
    share = float(chosen.sum()) / float((~special).sum())
    assert 0.12 < share < 0.18
    as_mask = float((masked[chosen] == tok.mask_token_id).float().mean())
    kept = float((masked[chosen] == ids[chosen]).float().mean())
    assert 0.72 < as_mask < 0.88 and 0.04 < kept < 0.17
    assert torch.equal(masked[~chosen], ids[~chosen])
    again, _ = mlm._mask(StepContext(model, batch, step=7))
    assert torch.equal(again, masked)  # seeded by (seed, step), not global state


def test_mlm_head_is_trained_tied_and_saved(tmp_path: Path) -> None:
    mlm = _setup(MaskedLM())
    model = tiny_model("sequence_classification", 2, seed=3).train()
    model = mlm.prepare_model(model, tiny_tokenizer())
    assert mlm.prepare_model(model, tiny_tokenizer()) is model  # idempotent
    compute_loss(model, _batch(), [mlm]).loss.backward()
    head = dict(model.augreg_aux["objectives_mlm"].named_parameters())
    assert head and all(p.grad is not None for p in head.values())
    assert not any(n.endswith("decoder.weight") for n in head)  # tied to the input embeddings
    assert float(model.get_input_embeddings().weight.grad.abs().sum()) > 0
    model.save_pretrained(tmp_path / "saved")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "saved" / "model.safetensors"))
    assert any(k.startswith("augreg_aux.objectives_mlm.") for k in saved)


def test_a_new_mlm_head_trains_at_its_learning_rate_scale() -> None:
    import torch

    from augreg.step import LR_SCALE, split_lr_groups

    mlm = _setup(MaskedLM(lr_scale=10))
    model = mlm.prepare_model(tiny_model("sequence_classification", 2, seed=3), tiny_tokenizer())
    assert mlm.head_source == "new"
    head = list(model.augreg_aux["objectives_mlm"].parameters())
    assert head and all(getattr(p, LR_SCALE, None) == 10 for p in head)
    # the tied decoder weight is the student's embedding: it keeps the pipeline's rate
    assert not hasattr(model.get_input_embeddings().weight, LR_SCALE)
    optimizer = split_lr_groups(torch.optim.AdamW(model.parameters(), lr=1e-4))
    rates = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert all(rates[id(p)] == pytest.approx(1e-3) for p in head)
    assert rates[id(model.get_input_embeddings().weight)] == pytest.approx(1e-4)


def test_the_checkpoint_mlm_head_keeps_the_pipeline_rate(tmp_path: Path) -> None:
    import transformers

    from augreg.step import LR_SCALE

    config = tiny_model("sequence_classification", 2, seed=3).config
    transformers.BertForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    tiny_tokenizer().save_pretrained(tmp_path / "mlm")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "mlm", num_labels=2
    )
    mlm = _setup(MaskedLM())
    model = mlm.prepare_model(model, tiny_tokenizer())
    assert mlm.head_source == "checkpoint"
    head = list(model.augreg_aux["objectives_mlm"].parameters())
    assert head and not any(hasattr(p, LR_SCALE) for p in head)


def test_mlm_without_a_mask_token_says_what_to_do() -> None:
    tok = tiny_tokenizer()
    tok.mask_token = None
    mlm = MaskedLM()
    mlm.setup(augreg.SetupContext(tokenizer=tok))
    model = tiny_model("sequence_classification", 2, seed=3)
    with pytest.raises(AugregError, match=r"mask token.*remove objectives\.mlm"):
        mlm.prepare_model(model, tok)


def test_mlm_scores_the_chosen_positions_only_and_equals_the_full_head() -> None:
    mlm = _setup(MaskedLM())
    model = mlm.prepare_model(tiny_model("sequence_classification", 2, seed=3), tiny_tokenizer())
    model.eval()  # no dropout: both passes see the same encoder; _loss does not check mode
    ctx = StepContext(model, _batch(), step=3)
    masked, labels = mlm._mask(ctx)
    assert 0 < int((labels != -100).sum()) < labels.numel()
    decoder = mlm._mlm.get_output_embeddings()
    rows: list[int] = []  # positions the vocabulary projection scored, per pass
    handle = decoder.register_forward_hook(lambda _m, _a, out: rows.append(out.shape[:-1].numel()))
    losses, grads = [], []
    params = [p for p in model.parameters() if p.requires_grad]
    for sparse in (True, False):
        model.zero_grad()
        loss = mlm._loss(ctx, masked, labels, sparse=sparse)
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() if p.grad is not None else None for p in params])
    handle.remove()
    assert rows == [int((labels != -100).sum()), labels.numel()]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    for sparse_grad, full_grad in zip(*grads, strict=True):
        assert (sparse_grad is None) == (full_grad is None)
        if full_grad is not None:
            torch.testing.assert_close(sparse_grad, full_grad, rtol=1e-4, atol=1e-6)


def test_mlm_on_a_batch_of_special_tokens_only_is_zero() -> None:
    mlm = _setup(MaskedLM())
    tok = tiny_tokenizer()
    model = mlm.prepare_model(tiny_model("sequence_classification", 2, seed=3), tok)
    model.train()
    batch = _batch()
    ids = batch["input_ids"]
    batch["input_ids"] = torch.full_like(ids, tok.pad_token_id)
    batch["input_ids"][:, 0] = tok.cls_token_id
    batch["input_ids"][:, 1] = tok.sep_token_id
    batch["attention_mask"] = torch.zeros_like(ids)
    batch["attention_mask"][:, :2] = 1
    loss = mlm.loss(StepContext(model, batch, step=1))
    assert float(loss) == 0.0 and torch.isfinite(loss)


# -- multi-task ------------------------------------------------------------------------------


def test_mlm_trains_the_shared_encoder_of_a_multitask_model() -> None:
    from augreg.multitask import TASK, TASKS, MultiTaskModel

    mlm = _setup(MaskedLM())
    model: Any = MultiTaskModel(
        {"a": tiny_model("sequence_classification", 2, seed=3), "b": tiny_model(num_labels=3)}
    ).train()
    model = mlm.prepare_model(model, tiny_tokenizer())
    a, b = _batch(), _batch()
    a[TASK], b[TASK] = "a", "b"
    b["labels"] = b["labels"] * 0 + 2
    result = compute_loss(model, {TASKS: [a, b]}, [mlm])
    assert list(result.parts) == ["a/objectives.mlm", "b/objectives.mlm"]
    result.loss.backward()
    assert float(model.get_input_embeddings().weight.grad.abs().sum()) > 0
    head = dict(model.augreg_aux["objectives_mlm"].named_parameters())
    assert head and all(p.grad is not None for p in head.values())


def test_distillation_is_refused_in_a_multitask_pipeline(
    teacher_folder: Path, train_file: Path
) -> None:
    from augreg.config import validate

    task = {"data": {"train": str(train_file)}}
    raw = {
        "model": {"name": "m"},
        "tasks": [{"name": "a", **task}, {"name": "b", **task}],
        "objectives": [{"name": "objectives.distillation", "teacher": str(teacher_folder)}],
    }
    with pytest.raises(augreg.ConfigError, match="serves one task head only"):
        validate(raw)
