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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from augreg.components import Combiner, Objective, Regularizer
from augreg.context import StepContext, unwrap_model
from augreg.errors import TrainingDivergedError
from augreg.multitask import task_groups


@dataclass
class StepResult:
    """The loss of one step and its parts (unweighted, as floats for logging)."""

    loss: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)
    context: StepContext | None = None


def _weight(component: Any) -> float:
    return float(getattr(component.options, "weight", 1.0))


AUX = "augreg_aux"
"""Attribute of the model holding training-only modules of objectives and combiners."""


def aux_modules(model: nn.Module) -> nn.ModuleDict:
    """The ``nn.ModuleDict`` where objectives and combiners attach the modules they train.

    Created on first use as ``<model>.augreg_aux`` on the underlying ``transformers`` model
    (inside data-parallel and peft wrappers), so its parameters are in ``model.parameters()``
    (the optimizer trains them) and in the saved weights; :func:`augreg.load_model` ignores
    them when it rebuilds a model for inference. Key the entries by component name.

    Example:
        >>> heads = aux_modules(model)  # doctest: +SKIP
        >>> if "objectives_mlm" not in heads:
        ...     heads["objectives_mlm"] = build_head()
    """
    inner = unwrap_model(model)
    base = getattr(inner, "get_base_model", None)  # peft: attach to the transformers model
    if callable(base):
        inner = base()
    found = getattr(inner, AUX, None)
    if isinstance(found, nn.ModuleDict):
        return found
    modules = nn.ModuleDict()
    try:
        param = next(inner.parameters())
        modules.to(param.device)
    except StopIteration:
        pass
    inner.add_module(AUX, modules)
    return modules


LR_SCALE = "augreg_lr_scale"
"""Attribute of a parameter: its learning rate is this many times the pipeline's."""


def set_lr_scale(params: nn.Module | Iterable[torch.Tensor], scale: float) -> None:
    """Train ``params`` (a module's, or an iterable) at ``scale`` times the learning rate.

    For parameters a component adds from scratch next to pretrained weights (a fusion gate and
    projection): at a fine-tuning learning rate such as 5e-5 they barely move in a few hundred
    steps. The Trainer puts them in optimizer groups of their own (same weight decay rule,
    learning rate times ``scale``), and the schedule scales every group alike. A plain loop
    gets the same groups from :func:`split_lr_groups`.

    Raises:
        ValueError: ``scale`` is not positive.
    """
    if not scale > 0:
        raise ValueError(f"augreg: a learning-rate scale must be > 0, got {scale}")
    items = params.parameters() if isinstance(params, nn.Module) else params
    for param in items:
        setattr(param, LR_SCALE, float(scale))


def split_lr_groups(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Move parameters marked by :func:`set_lr_scale` into groups with their scaled rate.

    Each group keeps its other settings (weight decay); call it before the first step and
    before the schedule is built. Calling it again changes nothing. Returns the optimizer.
    """
    for group in list(optimizer.param_groups):
        if LR_SCALE in group:  # made by an earlier call: idempotent
            continue
        scaled: dict[float, list[torch.Tensor]] = {}
        kept = []
        for param in group["params"]:
            scale = float(getattr(param, LR_SCALE, 1.0))
            if scale == 1.0:
                kept.append(param)
            else:
                scaled.setdefault(scale, []).append(param)
        if not scaled:
            continue
        group["params"] = kept
        for scale, params in scaled.items():
            extra = {k: v for k, v in group.items() if k not in ("params", "initial_lr")}
            optimizer.add_param_group(
                {**extra, "params": params, "lr": group["lr"] * scale, LR_SCALE: scale}
            )
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
    return optimizer


def gradient_surrogate(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor | None],
    value: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """A scalar whose gradient with respect to ``params`` is ``grads`` and whose value is ``value``.

    ``sum(p * g)`` has gradient ``g`` in ``p``; subtracting its value and adding ``value``
    keeps what is logged. Gradients taken with ``torch.autograd.grad`` (gradient surgery,
    FreeLB's free gradients, the step's shared clean backward) reach the weights through it,
    so the Trainer's own backward, loss scaling, accumulation and clipping stay in place.
    ``None`` entries (parameters without gradient) are skipped.
    """
    pairs = [(p, g) for p, g in zip(params, grads, strict=True) if g is not None]
    if not pairs:
        base = torch.as_tensor(value)
        return base.detach() if isinstance(value, torch.Tensor) else base
    linear = torch.stack([(p * g.to(p.dtype)).sum().float() for p, g in pairs]).sum()
    value_t = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    return linear - linear.detach() + value_t.to(linear.device, linear.dtype)


def shares_clean_backward(
    model: nn.Module,
    objectives: Sequence[Objective],
    regularizers: Sequence[Regularizer],
    combiner: Combiner | None,
) -> bool:
    """Whether the step takes the clean pass's backward itself (see :func:`compute_loss`).

    Only when a regularizer asks (``uses_clean_gradient``), the combiner is linear (the
    weighted sum: PCGrad and learned weights need the terms as they are), every objective
    applies to perturbed passes (so the gradient is that of ``ctx.task_loss``), and the model
    does not recompute activations (gradient checkpointing does not support
    ``torch.autograd.grad``).
    """
    if not model.training or not torch.is_grad_enabled():
        return False
    if not any(getattr(r, "uses_clean_gradient", False) and _weight(r) != 0 for r in regularizers):
        return False
    if combiner is not None and not getattr(combiner, "linear", False):
        return False
    if not all(getattr(o, "applies_to_perturbed", True) for o in objectives):
        return False
    inner = unwrap_model(model)
    for flag in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(type(inner), flag):  # transformers 5 renamed it (the old name warns)
            return not bool(getattr(inner, flag))
    return True


def weighted_sum(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """The plain sum of the (already weighted) terms, in order."""
    total: torch.Tensor | None = None
    for term in terms.values():
        total = term if total is None else total + term
    if total is None:
        raise ValueError("augreg: no loss term to combine")
    return total


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
    combiner: Combiner | None = None,
    total_steps: int | None = None,
    task_weights: Mapping[str, float] | None = None,
    task_types: Mapping[str, str] | None = None,
) -> StepResult:
    """Objectives on the clean pass plus regularizer terms, combined (weighted sum by default).

    Regularizers act only when ``model.training`` is true (not during evaluation): their
    :meth:`~augreg.Regularizer.clean_perturbation` on the clean pass, then their terms. Each
    term is weighted by its component's ``weight``; ``combiner`` (``train.combiner``) turns
    the weighted terms into the loss (default: their sum). ``parts`` holds the unweighted
    terms. Unlabelled examples drawn with the batch (its ``augreg_unlabelled`` entry) reach
    the components as ``ctx.unlabelled``; the model never sees them in the clean pass.

    Shared clean backward (:func:`shares_clean_backward`): when a regularizer needs the
    gradient of the clean loss with respect to the input embeddings (FGM, PGD from a zero
    start), the step runs the clean terms' backward itself, once, before the regularizers: it
    gives the weights' gradients and ``ctx.clean_embedding_grad`` together, and the weights'
    gradients enter the returned loss through :func:`gradient_surrogate`. Without it, such a
    regularizer pays a second backward through the clean pass.

    A multi-task batch (:func:`augreg.multitask.task_groups`: one batch per task of the step)
    runs every component on each task's batch (``ctx.task`` = ``task_types[task]``); the terms
    are named ``<task>/<component>`` and weighted by ``task_weights[task]`` as well, and the
    result's context is the last task's.

    Raises:
        TrainingDivergedError: the loss is NaN or infinite (names the step and components).
    """
    if not objectives:
        raise ValueError("augreg: at least one objective is needed (core.cross_entropy)")
    training = model.training
    regs = list(regularizers) if training else []
    copies = max([1, *(int(getattr(r, "forward_copies", 1)) for r in regs)])
    perturbers = [r.clean_perturbation for r in regs if _weight(r) != 0]
    parts: dict[str, float] = {}
    terms: dict[str, torch.Tensor] = {}
    acting: list[Objective | Regularizer] = [*objectives, *regs]
    ctx: StepContext | None = None
    shared = shares_clean_backward(model, objectives, regs, combiner)
    params = [p for p in model.parameters() if p.requires_grad] if shared else []
    clean_grads: list[torch.Tensor | None] = [None] * len(params)
    # A multi-task step holds one batch per task (augreg.multitask): each runs as its own
    # context, and its terms are named <task>/<component> so the combiner sees each task.
    for task_name, batch in task_groups(inputs):
        task_weight = 1.0 if task_name is None else float((task_weights or {}).get(task_name, 1.0))
        ctx = StepContext(
            model,
            batch,
            task=task if task_name is None else (task_types or {}).get(task_name, task),
            objectives=[(o, _weight(o)) for o in objectives],
            copies=copies,
            step=step,
            epoch=epoch,
            num_items_in_batch=num_items_in_batch,
            state=state,
            clean_perturbers=perturbers,
            hidden_states=any(getattr(o, "needs_hidden_states", False) for o in objectives),
            total_steps=total_steps,
        )
        clean_keys: list[str] = []
        for component in acting:
            if shared and isinstance(component, Regularizer) and ctx.clean_weight_grads is None:
                _shared_clean_backward(ctx, terms, clean_keys, params, clean_grads)
            w = _weight(component) * task_weight
            if w == 0 or (isinstance(component, Regularizer) and not component.has_term()):
                continue
            term = component.loss(ctx)
            key = component.name if task_name is None else f"{task_name}/{component.name}"
            parts[key] = float(term.detach())
            terms[key] = w * term
            if isinstance(component, Objective):
                clean_keys.append(key)
    if not terms:
        raise ValueError("augreg: every objective has weight 0; nothing to train")
    assert ctx is not None
    total = weighted_sum(terms) if combiner is None else combiner.combine(terms, ctx)
    if any(g is not None for g in clean_grads):
        total = total + gradient_surrogate(params, clean_grads)
    if check_finite:
        value = float(total.detach())
        if not math.isfinite(value):
            names = [c.name for c in (*objectives, *regs)]
            raise TrainingDivergedError(step, value, names)
    return StepResult(total, parts, ctx)


def _shared_clean_backward(
    ctx: StepContext,
    terms: dict[str, torch.Tensor],
    clean_keys: list[str],
    params: Sequence[torch.Tensor],
    clean_grads: list[torch.Tensor | None],
) -> None:
    """One backward of the context's clean terms: weights' gradients and the embeddings'.

    The clean terms are replaced by their (detached) values in ``terms``, their weights'
    gradients added to ``clean_grads`` and handed to the regularizers as
    ``ctx.clean_weight_grads``; ``ctx.clean_embedding_grad`` is set. The clean pass's graph is
    kept: other regularizers (R-Drop, SMART) may still backward through it. Embeddings
    outside the graph (frozen, no perturbation on the clean pass) leave
    ``clean_embedding_grad`` unset, and an embedding-space regularizer takes its own probe.
    """
    live = [terms[k] for k in clean_keys if terms[k].requires_grad]
    if not live:
        return
    embeddings = ctx.embeddings
    with_embeddings = embeddings.requires_grad
    clean = torch.stack(live).sum() if len(live) > 1 else live[0]
    wrt = [embeddings, *params] if with_embeddings else list(params)
    grads = torch.autograd.grad(clean, wrt, retain_graph=True, allow_unused=True)
    if with_embeddings:
        ctx.clean_embedding_grad = grads[0]
        grads = grads[1:]
    ctx.clean_weight_grads = list(zip(params, grads, strict=True))
    for i, g in enumerate(grads):
        if g is not None:
            before = clean_grads[i]
            clean_grads[i] = g if before is None else before + g
    for k in clean_keys:
        terms[k] = terms[k].detach()


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
    combiner: Combiner | None = None,
    total_steps: int | None = None,
) -> StepResult:
    """One full optimizer step for a plain PyTorch loop (forward, backward, clip, step).

    ``total_steps`` is the run's number of optimizer steps, for components with schedules
    (``consistency.tsa``, warm-ups); ``state`` keeps component state across steps.
    """
    model.train()
    result = compute_loss(
        model,
        batch,
        objectives,
        regularizers,
        task=task,
        step=step,
        epoch=epoch,
        state=state,
        combiner=combiner,
        total_steps=total_steps,
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
