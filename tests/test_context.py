"""The step context: perturbed passes on the input-embedding output, dropout, copies."""

from __future__ import annotations

from typing import Any

import torch

from augreg.builtins.adapters import Freeze
from augreg.builtins.objectives import CrossEntropy
from augreg.context import StepContext
from augreg.testing import make_batch, sequence_examples
from augreg.testing.models import tiny_model, tiny_tokenizer


def _f(value: torch.Tensor) -> float:
    return float(value.detach())


def _batch() -> dict[str, torch.Tensor]:
    return make_batch("sequence_classification", tiny_tokenizer(), sequence_examples())


def _ctx(model: Any, batch: dict[str, torch.Tensor] | None = None, copies: int = 1) -> StepContext:
    return StepContext(model, batch or _batch(), objectives=[(CrossEntropy(), 1.0)], copies=copies)


def _along_gradient(ctx: StepContext, scale: float) -> torch.Tensor:
    delta = ctx.zeros_like_embeddings(requires_grad=True)
    loss = ctx.task_loss(ctx.forward(perturbation=delta, dropout=False))
    grad = ctx.perturbation_grad(loss, delta)
    return scale * grad / grad.norm()


def test_perturbation_along_the_gradient_raises_the_loss() -> None:
    torch.manual_seed(0)
    model = tiny_model().train()
    ctx = _ctx(model)
    clean = _f(ctx.task_loss(ctx.forward(dropout=False)))
    up = _f(ctx.task_loss(ctx.forward(perturbation=_along_gradient(ctx, 1.0), dropout=False)))
    down = _f(ctx.task_loss(ctx.forward(perturbation=_along_gradient(ctx, -1.0), dropout=False)))
    assert up > clean + 1e-4
    assert down < clean - 1e-4


def test_perturbation_never_reaches_padding() -> None:
    model = tiny_model().eval()
    batch = _batch()
    mask = batch["attention_mask"].bool()
    assert (~mask).any(), "the sample batch must contain padding"
    seen: list[torch.Tensor] = []
    handle = model.bert.embeddings.register_forward_hook(
        lambda _m, _a, out: seen.append(out.detach())
    )
    ctx = _ctx(model, batch)
    ctx.forward(dropout=False)
    ctx.forward(perturbation=torch.ones_like(ctx.embeddings), dropout=False)
    handle.remove()
    clean, perturbed = seen[-2], seen[-1]
    changed = (perturbed - clean).abs().sum(-1) > 1e-6
    assert torch.equal(changed, mask)
    masked = ctx.mask_padding(torch.ones_like(ctx.embeddings))
    assert masked[~mask].abs().sum() == 0 and masked[mask].abs().sum() > 0


def test_dropout_switch() -> None:
    torch.manual_seed(0)
    model = tiny_model(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3).train()
    ctx = _ctx(model)
    a = ctx.forward(dropout=False).logits
    b = ctx.forward(dropout=False).logits
    assert torch.equal(a, b)
    c = ctx.forward(dropout=True).logits
    d = ctx.forward(dropout=True).logits
    assert not torch.allclose(c, d)
    assert model.training and all(m.training for m in model.modules())  # flags restored


def test_perturbation_grad_leaves_weight_grads_alone() -> None:
    model = tiny_model().train()
    ctx = _ctx(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    delta = _along_gradient(ctx, 1.0)
    assert delta.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_perturbation_works_with_frozen_embeddings() -> None:
    torch.manual_seed(0)
    model = Freeze(embeddings=True).prepare_model(tiny_model()).train()
    assert not model.get_input_embeddings().weight.requires_grad
    ctx = _ctx(model)
    clean = _f(ctx.task_loss(ctx.forward(dropout=False)))
    delta = _along_gradient(ctx, 1.0)
    adv = ctx.task_loss(ctx.forward(perturbation=delta, dropout=False))
    assert _f(adv) > clean
    adv.backward()
    assert model.get_input_embeddings().weight.grad is None
    assert model.classifier.weight.grad is not None


def test_copies_double_the_batch() -> None:
    model = tiny_model().eval()
    batch = _batch()
    ctx = _ctx(model, batch, copies=2)
    n = batch["input_ids"].shape[0]
    assert ctx.logits.shape[0] == 2 * n
    assert torch.equal(ctx.labels, torch.cat([batch["labels"]] * 2))
    first, second = ctx.split(ctx.logits)
    assert torch.allclose(first, second, atol=1e-6)  # eval: the two copies agree
    assert torch.allclose(first, model(**{k: v for k, v in batch.items() if k != "labels"}).logits,
                          atol=1e-5)  # fmt: skip


def test_parameters_stand_in_for_weights_in_one_pass_without_editing_them() -> None:
    model = tiny_model().train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ctx = _ctx(model)
    clean = _f(ctx.task_loss(ctx.forward(dropout=False)))
    weight = model.classifier.weight
    same = ctx.task_loss(ctx.forward(dropout=False, parameters={"classifier.weight": weight + 0}))
    assert _f(same) == clean
    shift = torch.zeros_like(weight)
    shift[0] = 0.5  # one class's row: a shift of every row would leave the softmax as it is
    moved = ctx.task_loss(
        ctx.forward(dropout=False, parameters={"classifier.weight": weight + shift})
    )
    assert _f(moved) != clean
    moved.backward()  # a tensor made from the parameter passes its gradient on to it
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
