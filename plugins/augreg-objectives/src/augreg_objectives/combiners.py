"""Loss combiners for ``train.combiner``: uncertainty weighting and PCGrad.

The core's default is ``core.sum`` (the weighted sum). A combiner gets the step's terms
already multiplied by each component's ``weight``; the core still logs every term
separately (``loss/<component>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field

import augreg

if TYPE_CHECKING:
    import torch
    from torch import nn

    from augreg.context import StepContext

AUX_KEY = "objectives_uncertainty"


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys cannot hold dots


class UncertaintyWeighting(augreg.Combiner):
    """Learned weights from homoscedastic uncertainty (Kendall et al. 2018).

    ``loss = sum_i 0.5 * exp(-s_i) * L_i + 0.5 * s_i`` with one learned log-variance ``s_i``
    per term, trained with the model: a noisy or large term gets a larger variance and a
    smaller weight, and the ``s_i`` term keeps the variances from growing without bound.
    ``L_i`` is the component's weighted loss, so ``weight`` still sets its prior scale.

    The log-variances live under ``augreg_aux`` (saved with the model). Adam moves a
    parameter by about the learning rate per step, which at fine-tuning rates (2e-5 to 1e-4)
    would leave them where they started; they are stored divided by ``lr_scale``, so they move
    ``lr_scale`` times faster.

    Cost: none beyond the sum (one parameter per term).
    """

    name = "objectives.uncertainty"
    paper = (
        "Kendall et al. 2018, Multi-Task Learning Using Uncertainty to Weigh Losses for Scene "
        "Geometry and Semantics (CVPR)"
    )

    class Options(augreg.Combiner.Options):
        init: float = Field(0.0, ge=-10, le=10, description="Initial log-variance of each term.")
        lr_scale: float = Field(
            100.0, gt=0, le=1e6, description="Log-variances learn this many times faster."
        )

    options: Options

    def prepare_model(self, model: nn.Module, names: Sequence[str]) -> nn.Module:
        """Attach one log-variance per term name (idempotent)."""
        for name in names:
            self._log_variance(model, name)
        return model

    def _log_variance(self, model: nn.Module, name: str) -> torch.Tensor:
        import torch
        from torch import nn

        aux = augreg.aux_modules(model)
        if AUX_KEY not in aux:
            aux[AUX_KEY] = nn.ParameterDict()
        params: Any = aux[AUX_KEY]
        key = _key(name)
        if key not in params:
            device = next(p for p in model.parameters()).device
            start = torch.tensor(self.options.init / self.options.lr_scale, device=device)
            params[key] = nn.Parameter(start)
        return params[key] * self.options.lr_scale  # type: ignore[no-any-return]

    def log_variances(self, model: nn.Module) -> dict[str, float]:
        """The current log-variance of each term, by component name."""
        aux = augreg.aux_modules(model)
        if AUX_KEY not in aux:
            return {}
        params: Any = aux[AUX_KEY]
        return {
            k.replace("__", "."): float(v.detach()) * self.options.lr_scale
            for k, v in params.items()
        }

    def combine(self, terms: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        import torch

        total: torch.Tensor | None = None
        for name, term in terms.items():
            s = self._log_variance(ctx.model, name).to(term.dtype)
            part = 0.5 * torch.exp(-s) * term + 0.5 * s
            total = part if total is None else total + part
        assert total is not None
        return total


def project_conflicts(grads: torch.Tensor, order: Sequence[Sequence[int]]) -> torch.Tensor:
    """PCGrad's projection: each task gradient loses its component along conflicting ones.

    Args:
        grads: ``(tasks, parameters)`` flattened per-task gradients.
        order: For each task, the order in which the other tasks are visited (random in the
            paper).

    Returns:
        The projected gradients, same shape. For each ``i`` and each ``j`` in ``order[i]``
        with ``g_i . g_j < 0``: ``g_i -= (g_i . g_j) / |g_j|^2 * g_j`` (original ``g_j``).
    """
    out = grads.clone()
    norms = (grads * grads).sum(dim=1)
    for i, others in enumerate(order):
        g = out[i]
        for j in others:
            if j == i or float(norms[j]) == 0.0:
                continue
            dot = (g * grads[j]).sum()
            if dot < 0:
                g = g - (dot / norms[j]) * grads[j]
        out[i] = g
    return out


class PCGrad(augreg.Combiner):
    """Gradient surgery for multi-objective training (Yu et al. 2020, PCGrad).

    Each term's gradient on the trainable parameters is computed separately
    (``torch.autograd.grad``); where two conflict (negative dot product), each is projected
    onto the normal plane of the other, in a random order per step (seeded); the projected
    gradients are summed. Terms that do not conflict are summed unchanged, so PCGrad equals
    the weighted sum then. The step's loss is a surrogate whose gradient is that sum and
    whose value is the plain sum of the terms, so the Trainer's backward, gradient
    accumulation, clipping and logging are unchanged. In evaluation it is the plain sum.

    Cost: one backward pass per term (instead of one in all), and memory for one flattened
    gradient per term.
    """

    name = "objectives.pcgrad"
    paper = "Yu et al. 2020, Gradient Surgery for Multi-Task Learning (NeurIPS)"
    extra_passes = 0.5  # one more backward per extra term; 0.5 pass each for two terms

    class Options(augreg.Combiner.Options):
        seed: int = Field(0, ge=0, description="Seed of the random projection order.")

    options: Options

    def combine(self, terms: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        import random

        import torch

        from augreg.step import gradient_surrogate, weighted_sum

        total = weighted_sum(terms)
        live = [t for t in terms.values() if t.requires_grad]
        if not torch.is_grad_enabled() or not ctx.model.training or len(live) < 2:
            return total
        params = [p for p in ctx.model.parameters() if p.requires_grad]
        flat = []
        for term in live:
            grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
            flat.append(
                torch.cat(
                    [
                        (torch.zeros_like(p) if g is None else g).reshape(-1).float()
                        for p, g in zip(params, grads, strict=True)
                    ]
                )
            )
        stacked = torch.stack(flat)
        rng = random.Random(augreg.derive_seed(self.options.seed, self.name, ctx.step))
        order = []
        for i in range(len(live)):
            others = [j for j in range(len(live)) if j != i]
            rng.shuffle(others)
            order.append(others)
        combined = project_conflicts(stacked, order).sum(dim=0)
        projected: list[torch.Tensor | None] = []
        offset = 0
        for p in params:
            n = p.numel()
            projected.append(combined[offset : offset + n].view_as(p))
            offset += n
        # gradient: the projected sum; value: the plain sum of the terms (what is logged)
        return gradient_surrogate(params, projected, total)
