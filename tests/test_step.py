"""The training step: objectives and regularizers combined, in any loop."""

from __future__ import annotations

import math
from pathlib import Path

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


# -- combiners (train.combiner) and hidden states ---------------------------------------------


class _Recording(augreg.Combiner):
    """Takes the larger term only; records what it was given."""

    name = "test.max"
    seen: list[dict[str, float]] = []

    def combine(self, terms: dict[str, torch.Tensor], ctx: augreg.StepContext) -> torch.Tensor:
        type(self).seen.append({k: float(v.detach()) for k, v in terms.items()})
        return torch.stack(list(terms.values())).max()


def test_the_combiner_gets_the_weighted_terms_and_makes_the_loss() -> None:
    model = tiny_model().eval()
    ce, ls = CrossEntropy(weight=0.5), LabelSmoothing(weight=3.0, epsilon=0.2)
    result = compute_loss(model, _batch(), [ce, ls], combiner=_Recording())
    seen = _Recording.seen[-1]
    assert list(seen) == ["core.cross_entropy", "core.label_smoothing"]
    for name, w in (("core.cross_entropy", 0.5), ("core.label_smoothing", 3.0)):
        assert math.isclose(seen[name], w * result.parts[name], rel_tol=1e-6)
    assert math.isclose(float(result.loss), max(seen.values()), rel_tol=1e-6)


def test_core_sum_is_the_default_weighted_sum() -> None:
    model = tiny_model().eval()
    objectives = [CrossEntropy(weight=0.5), LabelSmoothing(weight=2.0, epsilon=0.2)]
    plain = compute_loss(model, _batch(), objectives).loss
    summed = compute_loss(
        model,
        _batch(),
        objectives,
        combiner=augreg.create("core.sum"),  # type: ignore[arg-type]
    ).loss
    assert float(plain) == float(summed)


class _Hidden(augreg.Objective):
    name = "test.hidden"
    needs_hidden_states = True

    def loss(self, ctx: augreg.StepContext, outputs: object = None) -> torch.Tensor:
        out = ctx.outputs if outputs is None else outputs
        return out.hidden_states[-1].pow(2).mean()  # type: ignore[attr-defined,no-any-return]


def test_hidden_states_come_from_the_single_clean_pass() -> None:
    model = tiny_model().train()
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))
    result = compute_loss(model, _batch(), [CrossEntropy(), _Hidden()])
    assert len(calls) == 1 and result.context is not None
    assert result.context.outputs.hidden_states is not None
    plain = compute_loss(model, _batch(), [CrossEntropy()])
    assert plain.context is not None and plain.context.outputs.hidden_states is None


def test_aux_modules_are_trained_and_ignored_when_loading(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from augreg.model_io import _load_tensors

    model = tiny_model()
    aux = augreg.aux_modules(model)
    aux["test_head"] = torch.nn.Linear(2, 2)
    assert augreg.aux_modules(model) is aux
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert "augreg_aux.test_head.weight" in state
    save_file(state, str(tmp_path / "w.safetensors"))
    _load_tensors(tiny_model(), tmp_path / "w.safetensors")  # no error: training-only
    state["other.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "x.safetensors"))
    with pytest.raises(augreg.AugregError, match=r"other\.weight"):
        _load_tensors(tiny_model(), tmp_path / "x.safetensors")


def test_unknown_combiner_is_a_config_error_with_the_closest_name() -> None:
    from augreg.config import PipelineConfig, validate

    with pytest.raises(augreg.ConfigError) as err:
        validate({"model": "m", "data": {"train": "x.jsonl"}, "train": {"combiner": "core.summ"}})
    assert "train.combiner" in str(err.value) and "core.sum" in str(err.value)
    cfg = PipelineConfig.model_validate({"model": {"name": "m"}, "data": {"train": "x"}})
    assert cfg.train.combiner.name == "core.sum"


def test_gradient_surrogate_carries_the_gradient_and_keeps_the_value() -> None:
    from augreg.step import gradient_surrogate

    a = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    b = torch.nn.Parameter(torch.tensor(3.0))
    out = gradient_surrogate([a, b], [torch.tensor([0.5, -1.0]), None], torch.tensor(7.0))
    assert float(out.detach()) == pytest.approx(7.0)
    out.backward()
    assert torch.equal(a.grad, torch.tensor([0.5, -1.0])) and b.grad is None
    assert float(gradient_surrogate([a], [None], 2.5)) == pytest.approx(2.5)


class _CleanGradientProbe(augreg.Regularizer):
    """A one-step attack from the clean gradient, reading it from the step when shared."""

    name = "test.clean_gradient_probe"
    uses_clean_gradient = True
    seen: list[torch.Tensor | None]

    def loss(self, ctx: augreg.StepContext) -> torch.Tensor:
        self.seen.append(ctx.clean_embedding_grad)
        grad = ctx.clean_embedding_grad
        if grad is None:
            (grad,) = torch.autograd.grad(ctx.task_loss(), ctx.embeddings, retain_graph=True)
        delta = 0.5 * grad / grad.norm()
        return ctx.task_loss(ctx.forward(perturbation=delta.detach()))


def test_shared_clean_backward_hands_over_the_gradient_and_keeps_the_step_gradient() -> None:
    from augreg.builtins.combiners import WeightedSum

    class NotLinear(WeightedSum):
        linear = False

    model = tiny_model(
        "sequence_classification", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    model.train()
    batch = _batch()
    grads, seen = [], []
    for combiner in (WeightedSum(), NotLinear()):
        probe = _CleanGradientProbe()
        probe.seen = []
        model.zero_grad(set_to_none=True)
        result = compute_loss(model, batch, [CrossEntropy()], [probe], combiner=combiner)
        result.loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        seen.append(probe.seen[0])
    assert seen[0] is not None and seen[1] is None
    fresh = augreg.StepContext(model, batch, objectives=[(CrossEntropy(), 1.0)])
    (expected,) = torch.autograd.grad(fresh.task_loss(), fresh.embeddings)
    torch.testing.assert_close(seen[0], expected)
    assert set(grads[0]) == set(grads[1])
    for name, grad in grads[1].items():
        torch.testing.assert_close(grads[0][name], grad, rtol=1e-4, atol=1e-6)


def test_lr_scale_moves_marked_parameters_into_their_own_groups() -> None:
    from augreg.step import LR_SCALE, set_lr_scale, split_lr_groups

    model = tiny_model()
    head = model.classifier
    set_lr_scale(head, 20.0)
    decay = [p for n, p in model.named_parameters() if not n.endswith("bias")]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias")]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4,
    )
    split_lr_groups(optimizer)
    split_lr_groups(optimizer)  # idempotent
    groups = optimizer.param_groups
    assert len(groups) == 4
    scaled = [g for g in groups if LR_SCALE in g]
    assert {g["weight_decay"] for g in scaled} == {0.01, 0.0}
    assert all(g["lr"] == pytest.approx(2e-3) for g in scaled)
    assert {id(p) for g in scaled for p in g["params"]} == {id(p) for p in head.parameters()}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="> 0"):
        set_lr_scale(head, 0.0)


def test_the_trainer_builds_the_scaled_groups_and_the_schedule_follows(tmp_path: Path) -> None:
    from transformers import TrainingArguments

    from augreg.step import LR_SCALE, set_lr_scale
    from augreg.trainer import AugregTrainer

    model = tiny_model()
    set_lr_scale(model.classifier, 10.0)
    args = TrainingArguments(
        output_dir=str(tmp_path), learning_rate=1e-4, warmup_steps=0, report_to=[], max_steps=4
    )
    trainer = AugregTrainer(model=model, args=args, objectives=[CrossEntropy()])
    trainer.create_optimizer_and_scheduler(num_training_steps=4)
    scaled = [g for g in trainer.optimizer.param_groups if LR_SCALE in g]
    assert scaled and all(g["lr"] == pytest.approx(1e-3) for g in scaled)
    trainer.lr_scheduler.step()
    plain = [g for g in trainer.optimizer.param_groups if LR_SCALE not in g]
    ratio = scaled[0]["lr"] / plain[0]["lr"]
    assert ratio == pytest.approx(10.0)
