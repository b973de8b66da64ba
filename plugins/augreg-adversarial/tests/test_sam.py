"""adversarial.sam: the step's gradient is SAM's (the gradient at w + rho g / ||g||), whether
the step shares its clean backward or SAM takes its own; no weight is edited."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from augreg.builtins.combiners import WeightedSum
from augreg.builtins.objectives import CrossEntropy
from augreg.errors import OptionsError
from augreg.step import compute_loss
from augreg.testing import training_setup, unshared_sum
from augreg_adversarial.regularizers import FGM
from augreg_adversarial.sam import SAM

TASKS = ["sequence_classification", "token_classification"]


def _setup(task: str, frozen: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
    return training_setup(task, seed=5, dropout=False, frozen_embeddings=frozen)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _step(model: torch.nn.Module, batch: dict[str, Any], regs: list[Any], task: str,
          combiner: Any) -> tuple[Any, dict[str, torch.Tensor]]:  # fmt: skip
    model.zero_grad(set_to_none=True)
    result = compute_loss(model, batch, [CrossEntropy()], regs, task=task, combiner=combiner)
    result.loss.backward()
    return result, _grads(model)


def _task_loss(model: torch.nn.Module, batch: dict[str, Any], task: str) -> torch.Tensor:
    ctx = compute_loss(model, batch, [CrossEntropy()], [], task=task).context
    assert ctx is not None
    return ctx.task_loss()


def _by_hand(
    model: torch.nn.Module,
    batch: dict[str, Any],
    task: str,
    rho: float,
    adaptive: bool = False,
    eta: float = 0.01,
) -> tuple[dict[str, torch.Tensor], float]:
    """SAM written out: gradient at w, step to w + e in place, gradient there, step back."""
    model.zero_grad(set_to_none=True)
    clean = _task_loss(model, batch, task)
    clean.backward()
    g = _grads(model)
    params = dict(model.named_parameters())
    t = {n: params[n].detach().abs() + eta if adaptive else torch.ones_like(v)
         for n, v in g.items()}  # fmt: skip
    norm = torch.sqrt(sum(((t[n] * v) ** 2).sum() for n, v in g.items()))
    e = {n: rho * t[n] * t[n] * v / norm for n, v in g.items()}
    with torch.no_grad():
        for n, v in e.items():
            params[n].add_(v)
    model.zero_grad(set_to_none=True)
    perturbed = _task_loss(model, batch, task)
    perturbed.backward()
    at_e = _grads(model)
    with torch.no_grad():
        for n, v in e.items():
            params[n].sub_(v)
    model.zero_grad(set_to_none=True)
    return at_e, float(perturbed.detach() - clean.detach())


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("combiner", [WeightedSum(), unshared_sum()], ids=["shared", "own"])
@pytest.mark.parametrize("task", TASKS)
def test_the_step_gradient_is_the_gradient_at_the_perturbed_weights(
    task: str, combiner: Any, frozen: bool
) -> None:
    model, batch = _setup(task, frozen)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result, grads = _step(model, batch, [SAM(rho=0.05)], task, combiner)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    expected, sharpness = _by_hand(model, batch, task, 0.05)

    ctx = result.context
    assert ctx is not None
    shared = bool(combiner.linear)
    assert (ctx.clean_weight_grads is not None) == shared
    assert set(grads) == set(expected)
    for name, grad in expected.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6)
    # the term is the sharpness, L(w + e) - L(w): positive along the gradient
    assert result.parts["adversarial.sam"] == pytest.approx(sharpness, rel=1e-3, abs=1e-7)
    assert result.parts["adversarial.sam"] > 0


@pytest.mark.parametrize("task", TASKS)
def test_a_weight_below_one_mixes_the_clean_and_the_perturbed_gradient(task: str) -> None:
    model, batch = _setup(task)
    _, mixed = _step(model, batch, [SAM(rho=0.05, weight=0.25)], task, WeightedSum())
    at_e, _ = _by_hand(model, batch, task, 0.05)
    _, clean = _step(model, batch, [], task, WeightedSum())
    for name, grad in mixed.items():
        torch.testing.assert_close(grad, 0.75 * clean[name] + 0.25 * at_e[name], rtol=1e-4,
                                   atol=1e-6)  # fmt: skip


def test_adaptive_scales_the_radius_by_each_weight() -> None:
    task = "sequence_classification"
    model, batch = _setup(task)
    _, grads = _step(model, batch, [SAM(rho=0.5, adaptive=True)], task, WeightedSum())
    expected, _ = _by_hand(model, batch, task, 0.5, adaptive=True)
    for name, grad in expected.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6)
    # and it is not plain SAM at the same radius
    plain, _ = _by_hand(model, batch, task, 0.5)
    assert any(not torch.allclose(plain[n], expected[n], atol=1e-6) for n in expected)


def test_perturbation_has_norm_rho_and_points_along_the_gradient() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    q = torch.nn.Parameter(torch.tensor([3.0]))
    g_p, g_q = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    out = SAM(rho=0.1).perturbation([(p, g_p), (q, g_q), (p, None)])
    assert out is not None
    (_, e_p), (_, e_q) = out
    torch.testing.assert_close(e_p, torch.tensor([0.06, 0.0]))
    torch.testing.assert_close(e_q, torch.tensor([0.08]))
    # a zero gradient: nothing to climb, no perturbation (and no division by zero)
    assert SAM().perturbation([(p, torch.zeros(2))]) is None
    assert SAM().perturbation([(p, None)]) is None


def test_a_zero_gradient_gives_a_zero_term() -> None:
    task = "sequence_classification"
    model, batch = _setup(task)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # every logit 0, every hidden state 0: the gradient vanishes
    result, _ = _step(model, batch, [SAM()], task, unshared_sum())
    assert result.parts["adversarial.sam"] == 0.0


def test_sam_and_fgm_share_one_clean_backward() -> None:
    task = "sequence_classification"
    model, batch = _setup(task)
    result, _ = _step(model, batch, [FGM(), SAM()], task, WeightedSum())
    ctx = result.context
    assert ctx is not None
    assert ctx.clean_embedding_grad is not None and ctx.clean_weight_grads is not None
    assert result.parts["adversarial.sam"] > 0 and result.parts["adversarial.fgm"] > 0


@pytest.mark.parametrize(
    ("options", "field"),
    [({"weight": 1.5}, "weight"), ({"rho": 0}, "rho"), ({"rho": -0.1}, "rho"),
     ({"eta": 2}, "eta"), ({"rhoo": 0.1}, "rhoo")],
)  # fmt: skip
def test_bad_options_are_refused_with_the_field_named(options: dict[str, Any], field: str) -> None:
    with pytest.raises(OptionsError, match=field):
        SAM(**options)


def test_declared_cost_is_one_extra_pass() -> None:
    assert SAM.extra_passes == 1.0
    assert SAM.uses_clean_gradient


def test_sam_perturbs_only_the_trainable_weights_of_a_peft_model() -> None:
    peft = pytest.importorskip("peft")
    task = "sequence_classification"
    base, batch = _setup(task)
    config = peft.LoraConfig(
        task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"]
    )
    model = peft.get_peft_model(base, config)
    model.train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    result, grads = _step(model, batch, [SAM(rho=0.05)], task, WeightedSum())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(grads) <= trainable and any("lora_" in n for n in grads)
    assert result.parts["adversarial.sam"] > 0
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
