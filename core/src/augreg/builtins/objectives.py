"""Built-in objectives: cross-entropy and label smoothing.

Both ignore label ``-100`` (padding and non-first sub-word positions) and work for sequence
classification (``logits (B, C)``) and token classification (``logits (B, L, C)``).
Cost: no extra pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from augreg.components import Objective

if TYPE_CHECKING:
    import torch

    from augreg.context import StepContext


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    import torch.nn.functional as F

    if logits.dim() == labels.dim() + 1 and logits.dim() > 2:
        logits = logits.reshape(-1, logits.size(-1))
        labels = labels.reshape(-1)
    if labels.dtype.is_floating_point:  # soft targets (distillation, mixup) of shape (B, C)
        return F.cross_entropy(logits.float(), labels.float(), label_smoothing=smoothing)
    return F.cross_entropy(logits.float(), labels, ignore_index=-100, label_smoothing=smoothing)


class CrossEntropy(Objective):
    """Cross-entropy on the task labels: the default objective.

    Used when a pipeline names no objective. Cost: none beyond the clean pass.
    """

    name = "core.cross_entropy"
    paper = "standard maximum-likelihood training"

    def loss(self, ctx: StepContext, outputs: Any = None) -> torch.Tensor:
        out = ctx.outputs if outputs is None else outputs
        return _cross_entropy(out.logits, ctx.labels, 0.0)


class LabelSmoothing(Objective):
    """Cross-entropy against targets smoothed toward uniform (Szegedy et al. 2016).

    Replaces ``core.cross_entropy`` (the two conflict). Cost: none beyond the clean pass.
    """

    name = "core.label_smoothing"
    paper = "Szegedy et al. 2016, Rethinking the Inception Architecture for Computer Vision"
    conflicts_with: ClassVar[frozenset[str]] = frozenset({"core.cross_entropy"})

    class Options(Objective.Options):
        epsilon: float = Field(
            0.1, gt=0, lt=1, description="Probability mass spread uniformly over all classes."
        )

    options: Options

    def loss(self, ctx: StepContext, outputs: Any = None) -> torch.Tensor:
        out = ctx.outputs if outputs is None else outputs
        return _cross_entropy(out.logits, ctx.labels, self.options.epsilon)
