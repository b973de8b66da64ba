"""The combiners: PCGrad's projection on toy problems, uncertainty weights that learn."""

from __future__ import annotations

from typing import Any

import torch

from augreg.context import StepContext
from augreg.step import compute_loss
from augreg.testing import make_batch, sequence_examples, tiny_model, tiny_tokenizer
from augreg_objectives.combiners import PCGrad, UncertaintyWeighting, project_conflicts


class _Toy(torch.nn.Module):
    """One weight vector; stands in for the model in a step context."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.0, 2.0, -1.0]))


def _toy_ctx(model: torch.nn.Module) -> StepContext:
    return StepContext(model, {"labels": torch.zeros(1), "input_ids": torch.zeros(1, 1)})


def _grad(combiner: Any, terms_of: Any) -> torch.Tensor:
    model = _Toy().train()
    loss = combiner.combine(terms_of(model.w), _toy_ctx(model))
    loss.backward()
    assert model.w.grad is not None
    return model.w.grad.clone()


def test_pcgrad_removes_two_exactly_opposed_gradients() -> None:
    a = torch.tensor([0.5, -1.0, 2.0])
    grad = _grad(PCGrad(), lambda w: {"x.up": (w * a).sum(), "x.down": -(w * a).sum()})
    assert torch.allclose(grad, torch.zeros(3), atol=1e-7)
    # the plain sum cancels too, but a partly opposed pair shows the surgery:
    b = torch.tensor([-1.0, 0.0, 0.0])
    g = project_conflicts(torch.stack([a, b]), [[1], [0]])
    assert float(g[0] @ b) >= -1e-7 and float(g[1] @ a) >= -1e-7


def test_pcgrad_on_conflicting_gradients_differs_from_the_sum() -> None:
    a, b = torch.tensor([1.0, 1.0, 0.0]), torch.tensor([-1.0, 0.5, 0.0])

    def terms(w: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"x.a": (w * a).sum(), "x.b": (w * b).sum()}

    grad = _grad(PCGrad(), terms)
    # g_a' = a - (a.b)/|b|^2 b ; g_b' = b - (a.b)/|a|^2 a ; a.b = -0.5
    expected = (a + 0.5 / 1.25 * b) + (b + 0.5 / 2.0 * a)
    assert torch.allclose(grad, expected, atol=1e-6)


def test_pcgrad_equals_the_plain_sum_without_conflict() -> None:
    a, b = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.5, 1.0, 0.0])

    def terms(w: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"x.a": (w * w * a).sum(), "x.b": (w * b).sum()}

    model = _Toy().train()
    loss = PCGrad().combine(terms(model.w), _toy_ctx(model))
    plain = sum(terms(model.w).values())
    assert abs(float(loss) - float(plain)) < 1e-6  # the logged value is the sum
    loss.backward()
    assert model.w.grad is not None
    expected = torch.autograd.grad(plain, model.w)[0]
    assert torch.allclose(model.w.grad, expected, atol=1e-6)


def test_pcgrad_on_a_model_gives_finite_gradients_on_every_trainable_parameter() -> None:
    from augreg.builtins.objectives import CrossEntropy
    from augreg_objectives.contrastive import SupervisedContrastive

    model = tiny_model("sequence_classification", 2, seed=3).train()
    batch = make_batch(
        "sequence_classification",
        tiny_tokenizer(),
        sequence_examples(),
        label_names=["negative", "positive"],
    )
    result = compute_loss(
        model, batch, [CrossEntropy(), SupervisedContrastive()], combiner=PCGrad()
    )
    assert set(result.parts) == {"core.cross_entropy", "objectives.supervised_contrastive"}
    result.loss.backward()
    for name, p in model.named_parameters():
        if "pooler" in name:  # the pooler feeds only the classifier: CE's gradient only
            continue
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name


def test_uncertainty_log_variances_are_trained() -> None:
    from augreg.builtins.objectives import CrossEntropy
    from augreg_objectives.contrastive import SupervisedContrastive

    torch.manual_seed(0)
    model = tiny_model("sequence_classification", 2, seed=3).train()
    objectives = [CrossEntropy(), SupervisedContrastive()]
    combiner = UncertaintyWeighting()
    model = combiner.prepare_model(model, [o.name for o in objectives])
    before = combiner.log_variances(model)
    assert before == {"core.cross_entropy": 0.0, "objectives.supervised_contrastive": 0.0}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = make_batch(
        "sequence_classification",
        tiny_tokenizer(),
        sequence_examples(),
        label_names=["negative", "positive"],
    )
    for step in range(5):
        compute_loss(model, batch, objectives, combiner=combiner, step=step).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = combiner.log_variances(model)
    # d/ds (0.5 e^-s L + 0.5 s) = 0.5 (1 - L e^-s): each moves unless its loss is exactly 1
    assert all(abs(after[k] - before[k]) > 0.01 for k in before), after
