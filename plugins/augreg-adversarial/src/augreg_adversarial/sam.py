"""Sharpness-aware minimization as a regularizer: the task loss at adversarially perturbed weights.

The embedding-space methods (:mod:`augreg_adversarial.regularizers`) perturb the input; SAM
perturbs the weights. It looks for weights whose whole neighbourhood has a low loss (a flat
minimum) by training on the loss at the worst nearby point, found with one gradient step:

    e = rho * g / ||g||,   g = gradient of the task loss at w (all trainable weights, one norm)

The term is ``L(w + e) - L(w)``, the sharpness SAM adds to the loss (Foret et al. 2021, eq. 1),
with ``e`` held constant. With the component's ``weight`` at 1 (the default), the step's
gradient becomes ``g(w + e)`` alone: SAM's update. A weight between 0 and 1 mixes the two,
``(1 - weight) g(w) + weight g(w + e)``: the gradient-norm penalty of Zhao et al. (2022),
which they find better than either end.

The perturbed pass runs through ``ctx.forward(parameters=...)`` (``torch.func.functional_call``
on ``w + e``): no weight is edited and restored, so gradient accumulation, mixed precision,
clipping and the optimizer stay the Trainer's. ``g`` comes from the step's shared clean backward
(``uses_clean_gradient``), which gives the weights' gradients anyway; with a combiner that is
not a plain sum, or gradient checkpointing, SAM takes its own backward.

Papers: Foret et al. 2021, Sharpness-Aware Minimization for Efficiently Improving
Generalization (ICLR); Bahri et al. 2022, Sharpness-Aware Minimization Improves Language Model
Generalization (ACL), which finds the largest gains with little training data; Kwon et al.
2021, ASAM (``adaptive = true``); Zhao et al. 2022, Penalizing Gradient Norm for Efficiently
Improving Generalization in Deep Learning (ICML).

Cost: one extra forward and backward per step (the perturbed pass) with the step's shared
clean backward, about 1.67 with its own backward; memory for one more copy of the trainable
weights (``w + e``) and the perturbed pass's activations.

Example::

    pipe = augreg.Pipeline(..., regularize=[{"name": "adversarial.sam", "rho": 0.05}])
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

import augreg

if TYPE_CHECKING:  # pragma: no cover - typing only; importing this module stays light
    import torch

    from augreg.context import StepContext

__all__ = ["SAM"]


class SAM(augreg.Regularizer):
    """Sharpness-aware minimization: train on the loss at the worst weights within ``rho``.

    ``e = rho * g / ||g||`` over all trainable weights (``adaptive``: ASAM's
    ``rho * T^2 g / ||T g||`` with ``T = |w| + eta``, a radius relative to each weight's size),
    then the term ``L(w + e) - L(w)`` with ``e`` held constant. ``weight = 1`` (default) is SAM:
    the step's gradient is the one at ``w + e``; a smaller weight mixes in the clean gradient
    (gradient-norm penalty).

    Paper: Foret et al. 2021, Sharpness-Aware Minimization for Efficiently Improving
    Generalization; for fine-tuned language models Bahri et al. 2022.

    Cost: 1 extra forward and backward per step (1.67 when the step cannot share its clean
    backward: a combiner other than the sum, or gradient checkpointing).
    """

    name = "adversarial.sam"
    paper = (
        "Foret et al. 2021, Sharpness-Aware Minimization for Efficiently Improving Generalization"
    )
    extra_passes: ClassVar[float] = 1.0
    uses_clean_gradient = True

    class Options(augreg.Regularizer.Options):
        weight: float = Field(
            1.0,
            ge=0,
            le=1,
            description="Share of the step's gradient taken at the perturbed weights: 1 is "
            "SAM, between 0 and 1 mixes in the clean gradient (gradient-norm penalty); above 1 "
            "would subtract the clean gradient, so it is refused.",
        )
        # Foret et al. use 0.05 for most of their fine-tuning runs; Bahri et al. search 0.02
        # to 0.15 for T5. ASAM's radii are larger (it scales by |w|): Kwon et al. use 0.5 to 2.
        rho: float = Field(
            0.05,
            gt=0,
            le=10,
            description="Radius of the weight perturbation (L2 over all trainable weights; "
            "relative to |w| + eta with adaptive).",
        )
        adaptive: bool = Field(
            False, description="ASAM (Kwon et al. 2021): scale the radius by each weight's size."
        )
        eta: float = Field(
            0.01,
            ge=0,
            le=1,
            description="ASAM's offset: T = |w| + eta keeps zero weights perturbable.",
        )

    options: Options

    def perturbation(
        self, pairs: list[tuple[torch.Tensor, torch.Tensor | None]]
    ) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """``(parameter, e)`` for each weight with a gradient, or None when the gradient is 0.

        Args:
            pairs: ``(parameter, gradient of the clean task loss)``; None gradients skipped.
        """
        import torch

        o = self.options
        with torch.no_grad():
            live = [(p, g.to(p.dtype)) for p, g in pairs if g is not None]
            scaled: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]
            if o.adaptive:
                scaled = [(p, (p.abs() + o.eta) * g, p.abs() + o.eta) for p, g in live]
            else:
                scaled = [(p, g, None) for p, g in live]
            if not scaled:
                return None
            norm = torch.stack([s.float().pow(2).sum() for _, s, _ in scaled]).sum().sqrt()
            value = float(norm)
            if value == 0.0 or not math.isfinite(value):
                return None
            out: list[tuple[torch.Tensor, torch.Tensor]] = []
            for p, s, t in scaled:
                e = s * (o.rho / value)
                out.append((p, e if t is None else e * t))
        return out

    def loss(self, ctx: StepContext) -> torch.Tensor:
        import torch

        from augreg.step import gradient_surrogate

        model = ctx.model
        names = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
        shared = ctx.clean_weight_grads
        if shared is not None:
            pairs = [(p, g) for p, g in shared if id(p) in names]
            # the clean gradient already reached the weights through the step's backward:
            # subtract it with a surrogate of the same gradient (value: the clean loss)
            clean: torch.Tensor | None = None
        else:
            clean = ctx.task_loss()
            params = [p for p in model.parameters() if p.requires_grad]
            grads = torch.autograd.grad(clean, params, retain_graph=True, allow_unused=True)
            pairs = list(zip(params, grads, strict=True))
        perturbation = self.perturbation(pairs)
        if perturbation is None:  # a zero gradient: w is (locally) flat already
            base = ctx.task_loss()
            return base.detach() * 0.0
        weights = {names[id(p)]: p + e for p, e in perturbation}
        perturbed = ctx.task_loss(ctx.forward(parameters=weights))
        if clean is None:
            params_with = [p for p, _ in pairs]
            grads_with = [g for _, g in pairs]
            value = ctx.task_loss().detach()
            clean = gradient_surrogate(params_with, grads_with, value)
        return perturbed - clean
