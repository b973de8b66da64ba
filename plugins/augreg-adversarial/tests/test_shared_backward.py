"""FGM and PGD on the step's shared clean backward: one backward through the clean pass gives
the weights' gradients and the embeddings' gradient the attack starts from, and the step's
gradient is the same as with a backward of their own."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import augreg
from augreg.builtins.combiners import WeightedSum
from augreg.builtins.objectives import CrossEntropy
from augreg.builtins.regularizers import RDrop
from augreg.step import compute_loss, shares_clean_backward
from augreg.testing import training_setup, unshared_sum
from augreg_adversarial.regularizers import FGM, PGD, SMART, FreeLB

TASKS = ["sequence_classification", "token_classification"]


def _setup(task: str, frozen: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
    return training_setup(task, seed=3, dropout=False, frozen_embeddings=frozen)


def _step(
    model: torch.nn.Module, batch: dict[str, Any], regs: list[Any], task: str, combiner: Any
) -> tuple[Any, dict[str, torch.Tensor], int]:
    """Loss, weight gradients and how many backwards went through the first encoder layer."""
    backwards = {"n": 0}
    layer = model.base_model.encoder.layer[0]
    handle = layer.register_full_backward_hook(
        lambda *_: backwards.__setitem__("n", backwards["n"] + 1)
    )
    model.zero_grad(set_to_none=True)
    torch.manual_seed(11)
    result = compute_loss(model, batch, [CrossEntropy()], regs, task=task, combiner=combiner)
    result.loss.backward()
    handle.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return result, grads, backwards["n"]


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("make", [lambda: FGM(), lambda: PGD(steps=2)], ids=["fgm", "pgd"])
def test_shared_backward_gives_the_same_step_with_one_clean_backward_less(
    make: Any, task: str, frozen: bool
) -> None:
    model, batch = _setup(task, frozen)
    shared, shared_grads, shared_backwards = _step(model, batch, [make()], task, WeightedSum())
    own, own_grads, own_backwards = _step(model, batch, [make()], task, unshared_sum())

    assert shared.context is not None and shared.context.clean_embedding_grad is not None
    assert own.context is not None and own.context.clean_embedding_grad is None
    # one backward through the clean pass instead of two (its own probe and the step's)
    assert shared_backwards == own_backwards - 1
    assert float(shared.loss.detach()) == pytest.approx(float(own.loss.detach()), rel=1e-6)
    assert shared.parts == pytest.approx(own.parts, rel=1e-6)
    assert set(shared_grads) == set(own_grads)
    if frozen:
        assert not any("word_embeddings" in n for n in shared_grads)
    for name, grad in own_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, rtol=1e-4, atol=1e-6)


def test_clean_embedding_grad_is_the_task_losss_gradient() -> None:
    model, batch = _setup("sequence_classification")
    result = compute_loss(model, batch, [CrossEntropy()], [FGM()])
    ctx = result.context
    assert ctx is not None and ctx.clean_embedding_grad is not None
    fresh = augreg.StepContext(model, batch, objectives=[(CrossEntropy(), 1.0)])
    (expected,) = torch.autograd.grad(fresh.task_loss(), fresh.embeddings)
    torch.testing.assert_close(ctx.clean_embedding_grad, expected)


def test_other_terms_still_backward_through_the_kept_clean_graph() -> None:
    """R-Drop's term runs on the clean pass after the shared backward: its graph is kept."""
    model, batch = _setup("sequence_classification")
    regs = [RDrop(), FGM()]
    shared, shared_grads, _ = _step(model, batch, regs, "sequence_classification", WeightedSum())
    own, own_grads, _ = _step(model, batch, regs, "sequence_classification", unshared_sum())
    assert shared.context is not None and shared.context.clean_embedding_grad is not None
    assert shared.parts == pytest.approx(own.parts, rel=1e-6)
    for name, grad in own_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, rtol=1e-4, atol=1e-6)


def test_the_step_shares_only_when_it_may() -> None:
    model, _ = _setup("sequence_classification")
    ce = [CrossEntropy()]
    assert shares_clean_backward(model, ce, [FGM()], None)
    assert shares_clean_backward(model, ce, [PGD()], WeightedSum())
    # a random start probes elsewhere; SMART and FreeLB do not start from the clean gradient
    assert not shares_clean_backward(model, ce, [FGM(random_init=0.05)], None)
    assert not shares_clean_backward(model, ce, [SMART(), FreeLB()], None)
    assert not shares_clean_backward(model, ce, [FGM(weight=0.0)], None)
    # gradient surgery and learned weights need each term's graph
    assert not shares_clean_backward(model, ce, [FGM()], unshared_sum())
    # an objective that does not apply to perturbed passes would change the direction
    simcse_like = CrossEntropy()
    simcse_like.applies_to_perturbed = False  # type: ignore[misc]
    assert not shares_clean_backward(model, [*ce, simcse_like], [FGM()], None)
    with torch.no_grad():
        assert not shares_clean_backward(model, ce, [FGM()], None)
    model.eval()
    assert not shares_clean_backward(model, ce, [FGM()], None)
    model.train()
    enable = getattr(model, "activation_checkpointing_enable", None)
    (enable or model.gradient_checkpointing_enable)()
    assert not shares_clean_backward(model, ce, [FGM()], None)


def test_declared_cost_counts_the_free_first_gradient() -> None:
    assert FGM().extra_passes == pytest.approx(1.0)
    assert FGM(random_init=0.05).extra_passes == pytest.approx(1.67)
    assert PGD(steps=3).extra_passes == pytest.approx(2.33)
    assert FGM().uses_clean_gradient and not FGM(random_init=0.05).uses_clean_gradient
    # SMART's teacher forward is counted only when the proximal term is on
    assert SMART().extra_passes == pytest.approx(2.0)
    assert SMART(proximal_weight=0.0).extra_passes == pytest.approx(1.67)
