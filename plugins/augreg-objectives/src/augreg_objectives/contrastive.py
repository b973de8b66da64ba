"""Contrastive auxiliary losses on the pooled representation.

Both read the last hidden layer of the clean pass (``needs_hidden_states``), pool it (mean
over real tokens by default, or the first token) and L2-normalise it. They are auxiliary:
list them beside the task loss (``core.cross_entropy``), and they do not enter
``ctx.task_loss`` on perturbed passes. In evaluation SimCSE returns 0 (no extra pass).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

import augreg
from augreg_objectives.pooling import Pooling

if TYPE_CHECKING:
    import torch

    from augreg.context import StepContext


class _PooledOptions(augreg.Objective.Options):
    pooling: Pooling = Field(
        "mean", description="Sentence vector: mean over real tokens, or the first token."
    )


class SupervisedContrastive(augreg.Objective):
    """Supervised contrastive loss over the batch (Gunel et al. 2021, after Khosla et al. 2020).

    For each example (anchor) with a label, the other examples of its class in the batch are
    positives and all others negatives: ``-mean_{positives} log softmax(z_a . z_p / tau)``
    over the batch without the anchor, averaged over anchors that have a positive. Examples
    labelled ``-100`` are neither anchors nor candidates; padding never enters the pooled
    vector. A batch where no class appears twice gives 0. Sequence classification only.

    Cost: no extra pass; one ``(batch, batch)`` similarity matrix.

    Example:
        >>> augreg.create("objectives.supervised_contrastive", weight=0.9, temperature=0.3)
        ... # doctest: +SKIP
    """

    name = "objectives.supervised_contrastive"
    paper = (
        "Gunel et al. 2021, Supervised Contrastive Learning for Pre-trained Language Model "
        "Fine-tuning (ICLR)"
    )
    supports_tasks: ClassVar[frozenset[str]] = frozenset({"sequence_classification"})
    applies_to_perturbed: ClassVar[bool] = False
    needs_hidden_states: ClassVar[bool] = True

    class Options(_PooledOptions):
        temperature: float = Field(
            0.3, gt=0, le=10, description="Softmax temperature of the similarities."
        )

    options: Options

    def loss(self, ctx: StepContext, outputs: Any = None) -> torch.Tensor:
        import torch

        from augreg_objectives.pooling import last_hidden, pool, zero_like

        out = ctx.outputs if outputs is None else outputs
        z = pool(last_hidden(out, self.name), ctx.attention_mask, self.options.pooling)
        labels = ctx.labels.to(z.device)
        keep = labels != -100
        z, labels = z[keep], labels[keep]
        if z.size(0) < 2:
            return zero_like(z)
        z = torch.nn.functional.normalize(z, dim=-1)
        sim = z @ z.T / self.options.temperature
        self_mask = torch.eye(z.size(0), dtype=torch.bool, device=z.device)
        sim = sim.masked_fill(self_mask, float("-inf"))
        log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
        positive = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~self_mask
        counts = positive.sum(dim=1)
        anchors = counts > 0
        if not bool(anchors.any()):
            return zero_like(z)
        pos_log_prob = log_prob.masked_fill(~positive, 0.0).sum(dim=1)
        return -(pos_log_prob[anchors] / counts[anchors]).mean()


class SimCSE(augreg.Objective):
    """Unsupervised SimCSE (Gao et al. 2021): two dropout views of each sentence.

    The clean pass (dropout on) is the first view; a second pass on the same batch with other
    dropout masks is the second. Each sentence's second view is its positive, the other
    sentences' views are in-batch negatives: cross-entropy over ``cos(z1_i, z2_j) / tau``.
    Labels are not used, so examples labelled ``-100`` (unlabelled text) count too; padding
    never enters the pooled vector. In evaluation (dropout off, no gradient) it returns 0.

    Cost: one extra forward and backward pass per training step.
    """

    name = "objectives.simcse"
    paper = "Gao et al. 2021, SimCSE: Simple Contrastive Learning of Sentence Embeddings (EMNLP)"
    applies_to_perturbed: ClassVar[bool] = False
    needs_hidden_states: ClassVar[bool] = True
    extra_passes: ClassVar[float] = 1.0

    class Options(_PooledOptions):
        weight: float = Field(0.1, ge=0, le=1e4, description="Weight in the summed loss.")
        temperature: float = Field(
            0.05, gt=0, le=10, description="Softmax temperature of the cosine similarities."
        )

    options: Options

    def loss(self, ctx: StepContext, outputs: Any = None) -> torch.Tensor:
        import torch

        from augreg_objectives.pooling import last_hidden, pool, zero_like

        if not ctx.model.training:
            return torch.zeros((), device=ctx.labels.device)
        out = ctx.outputs if outputs is None else outputs
        mask = ctx.attention_mask
        z1 = pool(last_hidden(out, self.name), mask, self.options.pooling)
        if z1.size(0) < 2:
            return zero_like(z1)
        z2 = pool(last_hidden(ctx.forward(dropout=True), self.name), mask, self.options.pooling)
        z1 = torch.nn.functional.normalize(z1, dim=-1)
        z2 = torch.nn.functional.normalize(z2, dim=-1)
        sim = z1 @ z2.T / self.options.temperature
        target = torch.arange(z1.size(0), device=z1.device)
        return torch.nn.functional.cross_entropy(sim, target)
