"""What the adversarial regularizers promise: stronger loss, untouched weights, bounded
perturbations, frozen embeddings, mixed precision, NaN caught, the EMA teacher."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import augreg
from augreg.builtins.adapters import Freeze
from augreg.builtins.objectives import CrossEntropy
from augreg.context import StepContext
from augreg.step import compute_loss
from augreg.testing import NO_DROPOUT, training_setup
from augreg_adversarial.regularizers import FGM, PGD, SMART, FreeLB

TASKS = ["sequence_classification", "token_classification"]
ALL = ["adversarial.fgm", "adversarial.pgd", "adversarial.freelb", "adversarial.smart"]


def _setup(task: str, seed: int = 0, **overrides: Any) -> tuple[torch.nn.Module, dict[str, Any]]:
    model, batch = training_setup(task, seed=seed, **overrides)
    assert (batch["attention_mask"] == 0).any(), "the batch must have padding"
    return model, batch


def _context(model: torch.nn.Module, batch: dict[str, Any], task: str, **kw: Any) -> StepContext:
    return StepContext(model, batch, task=task, objectives=[(CrossEntropy(), 1.0)], **kw)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("cls", [FGM, PGD])
def test_perturbation_increases_the_loss(cls: type, norm: str, task: str) -> None:
    torch.manual_seed(0)
    model, batch = _setup(task)
    model.eval()  # dropout off: the only difference between the passes is the perturbation
    eps = 1.0 if norm == "l2" else 0.05
    reg = cls(norm=norm, epsilon=eps)
    ctx = _context(model, batch, task)
    clean = float(ctx.task_loss(ctx.outputs).detach())
    adversarial = float(reg.loss(ctx).detach())
    assert adversarial > clean + 1e-3, (clean, adversarial)


@pytest.mark.parametrize("name", ALL)
def test_parameters_identical_after_the_term(name: str) -> None:
    torch.manual_seed(0)
    model, batch = _setup("sequence_classification")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = compute_loss(model, batch, [CrossEntropy()], [augreg.create(name)])
    assert name in result.parts
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n]), n
        assert p.grad is None, n


def _grads(model: torch.nn.Module, batch: dict[str, Any], regs: list[Any]) -> dict[str, Any]:
    torch.manual_seed(1)
    model.zero_grad(set_to_none=True)
    result = compute_loss(model, batch, [CrossEntropy()], regs)
    assert math.isfinite(float(result.loss.detach()))
    result.loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ALL)
def test_works_with_frozen_embeddings_and_changes_the_gradients(name: str) -> None:
    model, batch = _setup("sequence_classification", **NO_DROPOUT)
    model = Freeze({"embeddings": True}).prepare_model(model)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any("word_embeddings" in n for n in frozen)
    plain = _grads(model, batch, [])
    reg = augreg.create(name)
    with_reg = _grads(model, batch, [reg])
    assert not frozen & set(with_reg), "frozen parameters got gradients"
    assert set(with_reg) == set(plain)
    differ = [n for n in plain if not torch.allclose(plain[n], with_reg[n])]
    assert differ, f"{name} did not change any gradient"


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", ALL)
def test_bf16_autocast_gives_a_finite_loss(name: str, task: str) -> None:
    torch.manual_seed(0)
    model, batch = _setup(task)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = compute_loss(model, batch, [CrossEntropy()], [augreg.create(name)], task=task)
    assert math.isfinite(float(result.loss.detach())) and math.isfinite(result.parts[name])
    result.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.parametrize("name", ALL)
def test_nan_is_caught_by_the_step_guard(name: str) -> None:
    model, batch = _setup("sequence_classification")
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    with pytest.raises(augreg.TrainingDivergedError) as info:
        compute_loss(model, batch, [CrossEntropy()], [augreg.create(name)], step=7)
    assert info.value.step == 7 and name in str(info.value)


def _norms(delta: torch.Tensor, unit: str) -> torch.Tensor:
    if unit == "token":
        return delta.norm(dim=-1)
    return delta.flatten(1).norm(dim=1)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("unit", ["token", "sequence"])
@pytest.mark.parametrize("random_init", [0.0, True])
def test_pgd_delta_stays_in_the_l2_ball_and_off_padding(
    unit: str, task: str, random_init: Any
) -> None:
    torch.manual_seed(0)
    model, batch = _setup(task)
    eps = 0.5
    pgd = PGD(epsilon=eps, step_size=0.3, steps=3, normalize=unit, random_init=random_init)
    ctx = _context(model, batch, task)
    delta = pgd.attack(ctx)
    assert delta.shape == ctx.embeddings.shape
    padding = batch["attention_mask"] == 0
    assert bool((delta[padding] == 0).all()), "padding was perturbed"
    norms = _norms(delta, unit)
    if unit == "token":
        norms = norms[~padding]
    assert float(norms.max()) <= eps * (1 + 1e-5)
    assert float(norms.max()) >= eps * 0.99, "the projection never acted: the test is too weak"


@pytest.mark.parametrize("name", ["adversarial.pgd", "adversarial.fgm", "adversarial.smart"])
def test_linf_bounds_every_entry(name: str) -> None:
    torch.manual_seed(0)
    model, batch = _setup("token_classification")
    eps = 0.02
    reg = augreg.create(name, norm="linf", epsilon=eps, random_init=True)
    delta = reg.attack(_context(model, batch, "token_classification"))  # type: ignore[attr-defined]
    assert float(delta.abs().max()) <= eps + 1e-7
    assert float(delta.abs().max()) == pytest.approx(eps)
    assert bool((delta[batch["attention_mask"] == 0] == 0).all())


def test_freelb_term_is_the_mean_of_the_k_perturbed_losses(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model, batch = _setup("sequence_classification")
    model.eval()
    freelb = FreeLB(steps=3)
    ctx = _context(model, batch, "sequence_classification")
    seen: list[float] = []
    real = ctx.task_loss

    def spy(outputs: Any = None, labels: Any = None) -> torch.Tensor:
        loss = real(outputs, labels)
        seen.append(float(loss.detach()))
        return loss

    monkeypatch.setattr(ctx, "task_loss", spy)
    term = float(freelb.loss(ctx).detach())
    assert len(seen) == 3
    assert term == pytest.approx(sum(seen) / 3, rel=1e-6)
    assert len(set(seen)) == 3, "the perturbation did not move between steps"


@pytest.mark.parametrize("random_init", [0.6, 0.0])
def test_freelb_gradient_is_the_papers_accumulated_gradient(random_init: float) -> None:
    """The weights' gradient of the term equals the paper's loop: K passes, each
    ``(loss / K).backward()`` accumulating into the weights, the perturbation ascending."""
    model, batch = _setup("sequence_classification")
    model.eval()  # no dropout: both computations see the same passes
    freelb = FreeLB(steps=3, random_init=random_init)

    torch.manual_seed(5)
    ctx = _context(model, batch, "sequence_classification")
    model.zero_grad(set_to_none=True)
    term = freelb.loss(ctx)
    term.backward()
    ours = [p.grad.clone() if p.grad is not None else None for p in model.parameters()]

    torch.manual_seed(5)
    paper, values = _paper_freelb_grads(model, batch, freelb, 3)

    assert float(term.detach()) == pytest.approx(sum(values) / 3, rel=1e-5)
    _assert_same_grads(ours, paper)


def _paper_freelb_grads(
    model: torch.nn.Module, batch: dict[str, Any], freelb: FreeLB, steps: int
) -> tuple[list[torch.Tensor | None], list[float]]:
    """The paper's loop: K passes, each ``(loss / K).backward()``, the perturbation ascending."""
    ctx = _context(model, batch, "sequence_classification")
    model.zero_grad(set_to_none=True)
    mask = freelb._mask(ctx)
    delta = freelb._start(ctx, mask)
    values = []
    for _ in range(steps):
        start = ctx.zeros_like_embeddings() if delta is None else delta.detach()
        leaf = start.clone().float().requires_grad_(True)
        loss = ctx.task_loss(ctx.forward(perturbation=leaf))
        (loss / steps).backward()
        values.append(float(loss.detach()))
        delta = freelb._ascend(delta, leaf.grad, mask, freelb.options.step_size)
    grads = [p.grad.clone() if p.grad is not None else None for p in model.parameters()]
    return grads, values


def _assert_same_grads(ours: list[torch.Tensor | None], paper: list[torch.Tensor | None]) -> None:
    for a, b in zip(ours, paper, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _freelb_step(
    model: torch.nn.Module, batch: dict[str, Any], freelb: FreeLB
) -> tuple[Any, list[torch.Tensor | None], int]:
    """One step's loss and weight gradients with FreeLB (seed 5), and the model calls it ran."""
    passes = {"n": 0}
    handle = model.register_forward_pre_hook(lambda *_: passes.__setitem__("n", passes["n"] + 1))
    torch.manual_seed(5)
    model.zero_grad(set_to_none=True)
    result = compute_loss(model, batch, [CrossEntropy()], [freelb])
    result.loss.backward()
    handle.remove()
    grads = [p.grad.clone() if p.grad is not None else None for p in model.parameters()]
    return result, grads, passes["n"]


@pytest.mark.parametrize("steps", [1, 2, 3])
@pytest.mark.parametrize("random_init", [0.6, 0.0])
def test_freelb_step_trains_on_the_papers_gradient_without_a_clean_pass(
    random_init: float, steps: int
) -> None:
    """In a training step, the step's pass is FreeLB's first (at delta_0): the cross-entropy
    plus the term give the paper's gradient, with K passes and no clean one."""
    model, batch = _setup("sequence_classification", **NO_DROPOUT)
    freelb = FreeLB(steps=steps, random_init=random_init)
    result, ours, passes = _freelb_step(model, batch, freelb)
    assert passes == steps

    torch.manual_seed(5)
    paper, values = _paper_freelb_grads(model, batch, freelb, steps)
    assert result.parts["adversarial.freelb"] == pytest.approx(sum(values) / steps, rel=1e-5)
    assert result.parts["core.cross_entropy"] == pytest.approx(values[0], rel=1e-5)
    _assert_same_grads(ours, paper)


def test_freelb_with_a_clean_pass_adds_the_k_passes_to_it() -> None:
    model, batch = _setup("sequence_classification", **NO_DROPOUT)
    freelb = FreeLB(steps=3, clean_pass=True)
    result, ours, passes = _freelb_step(model, batch, freelb)
    assert passes == 4  # the clean pass and the K perturbed ones

    model.zero_grad(set_to_none=True)
    clean = _context(model, batch, "sequence_classification")
    clean.task_loss(clean.outputs).backward()
    clean_grads = [p.grad.clone() if p.grad is not None else None for p in model.parameters()]
    torch.manual_seed(5)
    paper, values = _paper_freelb_grads(model, batch, freelb, 3)
    assert result.parts["adversarial.freelb"] == pytest.approx(sum(values) / 3, rel=1e-5)
    both = [a + b if a is not None else None for a, b in zip(clean_grads, paper, strict=True)]
    _assert_same_grads(ours, both)


def test_smart_teacher_is_built_once_and_follows_the_momentum_rule() -> None:
    torch.manual_seed(0)
    model, batch = _setup("sequence_classification")
    smart = SMART(beta=0.9)
    state: dict[str, Any] = {}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    compute_loss(model, batch, [CrossEntropy()], [smart], state=state).loss.backward()
    teacher = state["adversarial.smart"]
    assert teacher is not model
    first = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    for n, p in model.named_parameters():  # built from the model, and the model had not moved
        assert torch.equal(first[n], p.detach()), n
        assert p.data_ptr() != dict(teacher.named_parameters())[n].data_ptr()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    student = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = compute_loss(model, batch, [CrossEntropy()], [smart], state=state)
    result.loss.backward()
    assert state["adversarial.smart"] is teacher, "the teacher was rebuilt"
    moved = 0
    for n, p in teacher.named_parameters():
        expected = 0.9 * first[n] + 0.1 * student[n]
        assert torch.allclose(p, expected, atol=1e-6), n
        moved += not torch.equal(p, first[n])
        assert not p.requires_grad and p.grad is None, f"the teacher got a gradient on {n}"
    assert moved, "the teacher did not move toward the student"


def test_smart_deep_copies_the_model_inside_a_data_parallel_wrapper() -> None:
    torch.manual_seed(0)
    model, batch = _setup("sequence_classification")
    wrapped = torch.nn.DataParallel(model)  # on CPU it just calls the module
    state: dict[str, Any] = {}
    result = compute_loss(wrapped, batch, [CrossEntropy()], [SMART()], state=state)
    assert math.isfinite(float(result.loss.detach()))
    teacher = state["adversarial.smart"]
    assert type(teacher) is type(model)
    assert {n for n, _ in teacher.named_parameters()} == {n for n, _ in model.named_parameters()}


def test_smart_proximal_term_pulls_toward_the_teacher() -> None:
    torch.manual_seed(0)
    model, batch = _setup("sequence_classification", **NO_DROPOUT)
    ctx = _context(model, batch, "sequence_classification", state={})
    without = float(SMART(proximal_weight=0.0).loss(ctx).detach())
    ctx.state.clear()
    with_prox = float(SMART(proximal_weight=5.0).loss(ctx).detach())
    # Without dropout the teacher (a copy of the model) predicts like the model: no pull yet.
    assert with_prox == pytest.approx(without, abs=1e-5)
    with torch.no_grad():
        ctx.state["adversarial.smart"].classifier.bias[0] += 1.0  # shifts the softmax
    assert float(SMART(proximal_weight=5.0).loss(ctx).detach()) > without + 1e-3


def test_options_are_validated_with_clear_errors() -> None:
    with pytest.raises(augreg.OptionsError) as info:
        PGD(epsilon=0, steps=50, norm="l1", normalize="word", stepsize=0.1)
    text = str(info.value)
    for expected in (
        "epsilon must be > 0",
        "steps must be <= 20",
        "norm: input should be 'l2' or 'linf'",
        "normalize: input should be 'token' or 'sequence'",
        "stepsize is not an option. Did you mean 'step_size'?",
    ):
        assert expected in text, text
    with pytest.raises(augreg.OptionsError, match="random_init must be > 0"):
        SMART(random_init=0)
    with pytest.raises(augreg.OptionsError, match=r"weight = 0 turns adversarial\.smart off"):
        SMART(weight=0)
    with pytest.raises(augreg.OptionsError, match="steps"):
        FGM(steps=3)  # FGM is one step: no such option


def test_random_init_true_means_epsilon_and_cost_follows_the_options() -> None:
    assert PGD(random_init=True, epsilon=0.4).options.random_init == 0.4
    assert PGD(random_init=False).options.random_init == 0.0
    assert PGD(steps=5).extra_passes > PGD(steps=2).extra_passes
    assert FGM(random_init=0.1).extra_passes > FGM().extra_passes == FGM.extra_passes
    for cls in (FGM, PGD, FreeLB, SMART):
        assert cls().extra_passes == cls.extra_passes  # the class states the default's cost
