"""One training step over the chosen objectives and regularizers, for any loop.

:func:`compute_loss` is the single place where components act: the ``transformers`` Trainer
subclass calls it, and so can a custom loop or a Lightning module. :func:`training_step`
adds backward, clipping and the optimizer step for plain PyTorch loops.

Example (a custom loop)::

    objectives = [augreg.create("core.cross_entropy")]
    regularizers = [augreg.create("core.rdrop", weight=1.0)]
    for step, batch in enumerate(loader):
        result = augreg.training_step(model, batch, optimizer, objectives, regularizers,
                                      step=step)
        print(result.parts)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from augreg.components import Objective, Regularizer
from augreg.context import StepContext
from augreg.errors import TrainingDivergedError


@dataclass
class StepResult:
    """The loss of one step and its parts (unweighted, as floats for logging)."""

    loss: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)
    context: StepContext | None = None


def _weight(component: Any) -> float:
    return float(getattr(component.options, "weight", 1.0))


def compute_loss(
    model: nn.Module,
    inputs: dict[str, Any],
    objectives: Sequence[Objective],
    regularizers: Sequence[Regularizer] = (),
    *,
    task: str = "sequence_classification",
    step: int = 0,
    epoch: float = 0.0,
    num_items_in_batch: Any = None,
    state: dict[str, Any] | None = None,
    check_finite: bool = True,
) -> StepResult:
    """Weighted sum of objectives on the clean pass plus regularizer terms.

    Regularizers act only when ``model.training`` is true (not during evaluation): their
    :meth:`~augreg.Regularizer.clean_perturbation` on the clean pass, then their terms.

    Raises:
        TrainingDivergedError: the loss is NaN or infinite (names the step and components).
    """
    if not objectives:
        raise ValueError("augreg: at least one objective is needed (core.cross_entropy)")
    training = model.training
    regs = list(regularizers) if training else []
    copies = max([1, *(int(getattr(r, "forward_copies", 1)) for r in regs)])
    perturbers = [r.clean_perturbation for r in regs if _weight(r) != 0]
    ctx = StepContext(
        model,
        inputs,
        task=task,
        objectives=[(o, _weight(o)) for o in objectives],
        copies=copies,
        step=step,
        epoch=epoch,
        num_items_in_batch=num_items_in_batch,
        state=state,
        clean_perturbers=perturbers,
    )
    parts: dict[str, float] = {}
    total: torch.Tensor | None = None
    acting: list[Objective | Regularizer] = [*objectives, *regs]
    for component in acting:
        w = _weight(component)
        if w == 0 or (isinstance(component, Regularizer) and not component.has_term()):
            continue
        term = component.loss(ctx)
        parts[component.name] = float(term.detach())
        total = w * term if total is None else total + w * term
    if total is None:
        raise ValueError("augreg: every objective has weight 0; nothing to train")
    if check_finite:
        value = float(total.detach())
        if not math.isfinite(value):
            names = [c.name for c in (*objectives, *regs)]
            raise TrainingDivergedError(step, value, names)
    return StepResult(total, parts, ctx)


def training_step(
    model: nn.Module,
    batch: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    objectives: Sequence[Objective],
    regularizers: Sequence[Regularizer] = (),
    *,
    task: str = "sequence_classification",
    scheduler: Any = None,
    max_grad_norm: float | None = 1.0,
    step: int = 0,
    epoch: float = 0.0,
    state: dict[str, Any] | None = None,
) -> StepResult:
    """One full optimizer step for a plain PyTorch loop (forward, backward, clip, step)."""
    model.train()
    result = compute_loss(
        model, batch, objectives, regularizers, task=task, step=step, epoch=epoch, state=state
    )
    result.loss.backward()  # type: ignore[no-untyped-call]
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], max_grad_norm
        )
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return result
