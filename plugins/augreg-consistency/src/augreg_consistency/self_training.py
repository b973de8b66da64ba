"""``consistency.self_training``: FixMatch-style pseudo-labelling (Sohn et al. 2020).

Cost: two extra forward passes per step on the unlabelled batch (one without gradients for
the pseudo-labels, by the model or its EMA copy; one with backward on the strong view), plus
one augmenter call per unlabelled example; the EMA teacher holds a second copy of the weights.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from augreg_consistency.base import ConsistencyRegularizer

if TYPE_CHECKING:
    import torch
    from torch import nn

    from augreg.components import SetupContext
    from augreg.context import StepContext


def flexmatch_thresholds(
    threshold: float, confident: torch.Tensor, unused: int, warmup: bool = True
) -> torch.Tensor:
    """FlexMatch per-class thresholds (Zhang et al. 2021): ``M(beta_c) * threshold``.

    Args:
        threshold: The fixed threshold tau.
        confident: ``(classes,)`` counts of unlabelled examples whose latest prediction is
            confident (above tau) and of class c (the learning effect sigma_c).
        unused: Examples seen whose latest prediction is not confident.
        warmup: Normalise by ``max(max_c sigma_c, unused)`` (threshold warm-up) rather than
            ``max_c sigma_c``.

    Returns:
        ``(classes,)`` thresholds; ``M(x) = x / (2 - x)`` (the paper's convex mapping), so a
        class the model rarely predicts confidently gets a lower threshold.
    """
    import torch

    sigma = confident.float()
    top = sigma.max()
    denom = torch.maximum(top, torch.tensor(float(unused))) if warmup else top
    beta = sigma / denom.clamp_min(1.0)
    return beta / (2.0 - beta) * threshold


def align_distribution(
    probs: torch.Tensor, running: torch.Tensor, prior: torch.Tensor
) -> torch.Tensor:
    """Distribution alignment (Berthelot et al. 2020): ``probs * prior / running``, renormalised.

    Pulls the predicted class distribution on unlabelled data toward ``prior`` (the labelled
    class distribution), so pseudo-labels of an over-predicted class become less confident.
    """
    aligned = probs * (prior / running.clamp_min(1e-6))
    return aligned / aligned.sum(dim=-1, keepdim=True)


class SelfTraining(ConsistencyRegularizer):
    """Pseudo-labels on the clean unlabelled text above a confidence threshold, trained on a
    strongly augmented view (FixMatch, Sohn et al. 2020), with class balancing.

    Per step: the teacher (the model itself, or an exponential moving average of its weights
    with ``teacher = "ema"``) predicts the clean (weak) unlabelled texts without gradients and
    without dropout; the arg-max class is the pseudo-label and the example is kept when its
    confidence reaches the threshold of that class. The term is the cross-entropy of the
    model's prediction on the augmented (strong) view against the pseudo-labels, summed over
    kept examples and divided by the number of unlabelled examples (as in FixMatch), times the
    warm-up ramp.

    Token classification: per-token pseudo-labels with the same thresholds and balancing, one
    per word found in both the text and its view
    (:func:`augreg_consistency.base.align_words`); FlexMatch counts words.

    Balancing (``balance``), so one class does not take over the pseudo-labels:

    * ``"flexmatch"`` (default): per-class thresholds ``M(beta_c) * threshold`` (Zhang et al.
      2021). ``beta_c`` is the number of unlabelled examples whose latest prediction is
      confident and of class c, over the largest such count (or the number of examples not yet
      confidently predicted, during warm-up); ``M(x) = x / (2 - x)``. A class learnt less
      gets a lower threshold, hence more pseudo-labels. Latest predictions are kept per
      ``augreg_id`` in ``ctx.state``; examples not drawn yet are not counted.
    * ``"distribution_alignment"``: the teacher's probabilities are multiplied by the labelled
      class distribution over a running mean of the predicted one, then renormalised
      (Berthelot et al. 2020), before thresholding at the fixed threshold.
    * ``"none"``: one fixed threshold (plain FixMatch).

    Cost: two extra forward passes on the unlabelled batch (one without gradients) and one
    backward; with ``teacher = "ema"`` a copy of the weights and one update per step.
    """

    name = "consistency.self_training"
    paper = (
        "Sohn et al. 2020, FixMatch: Simplifying Semi-Supervised Learning with Consistency "
        "and Confidence; Zhang et al. 2021, FlexMatch"
    )
    # A forward without backward (1/3 of a training pass) and a trained pass (forward and
    # backward), per unlabelled batch as large as the labelled one (the run report multiplies
    # by data.unlabelled_ratio).
    extra_passes: ClassVar[float] = 1.33

    class Options(ConsistencyRegularizer.Options):
        threshold: float = Field(
            0.95,
            ge=0,
            lt=1,
            description="Confidence a pseudo-label needs (FixMatch's 0.95; with flexmatch the "
            "highest per-class threshold).",
        )
        balance: Literal["flexmatch", "distribution_alignment", "none"] = Field(
            "flexmatch",
            description="Keep one class from taking over: flexmatch (per-class thresholds), "
            "distribution_alignment, or none.",
        )
        teacher: Literal["model", "ema"] = Field(
            "model",
            description="Who writes pseudo-labels: the model itself, or an EMA of its weights.",
        )
        ema_decay: float = Field(
            0.999, gt=0, lt=1, description="Decay of the EMA teacher (teacher = 'ema')."
        )
        alignment_momentum: float = Field(
            0.999,
            gt=0,
            lt=1,
            description="Momentum of the running predicted class distribution "
            "(balance = 'distribution_alignment').",
        )

    options: Options

    _prior: list[float] | None = None

    def setup(self, ctx: SetupContext) -> None:
        """As the base, and keep the labelled class distribution (distribution alignment)."""
        super().setup(ctx)
        names = list(ctx.labels)
        index = {name: i for i, name in enumerate(names)}
        counts = [0] * len(names)
        for ex in ctx.train_examples or ():
            label = ex.get("label")
            if isinstance(label, int) and 0 <= label < len(names):
                counts[label] += 1
            for tag in ex.get("tags", ()):  # token classification: words per tag
                if tag in index:
                    counts[index[tag]] += 1
        total = sum(counts)
        self._prior = [c / total for c in counts] if total else None

    def loss(self, ctx: StepContext) -> torch.Tensor:
        """The masked pseudo-label cross-entropy of this step (unweighted, times the ramp)."""
        import torch.nn.functional as F

        weak, strong, ids = self.paired_logits(ctx, self._teacher(ctx))
        pseudo, mask = self.pseudo_labels(ctx, weak, ids)
        ce = F.cross_entropy(strong, pseudo, reduction="none")
        return (ce * mask).sum() / max(int(mask.numel()), 1) * self.ramp(ctx)

    def pseudo_labels(
        self, ctx: StepContext, logits: torch.Tensor, ids: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pseudo-labels and their mask (1 kept, 0 dropped) from the teacher's ``logits``.

        Updates the balancing state in ``ctx.state[self.name]`` (FlexMatch's latest prediction
        per example, the running class distribution) after using it.
        """
        import torch

        opts = self.options
        state = ctx.state.setdefault(self.name, {})
        if logits.shape[0] == 0:  # no word of the batch survived in its view
            state["mask_rate"] = 0.0
            empty = torch.zeros(0, device=logits.device)
            return empty.long(), empty
        probs = torch.softmax(logits.detach().float(), dim=-1)
        classes = probs.shape[-1]
        if opts.balance == "distribution_alignment":
            prior = (
                torch.tensor(self._prior, device=probs.device)
                if self._prior is not None and len(self._prior) == classes
                else torch.full((classes,), 1.0 / classes, device=probs.device)
            )
            running = state.get("running")
            running = probs.mean(0) if running is None else running.to(probs.device)
            probs = align_distribution(probs, running, prior)
            m = opts.alignment_momentum
            state["running"] = m * running + (1 - m) * torch.softmax(logits.float(), -1).mean(0)
        confidence, pseudo = probs.max(dim=-1)
        if opts.balance == "flexmatch":
            latest: dict[str, int] = state.setdefault("latest", {})
            counts = torch.zeros(classes)
            for c in latest.values():
                if c >= 0:
                    counts[c] += 1
            unused = sum(1 for c in latest.values() if c < 0)
            per_class = flexmatch_thresholds(opts.threshold, counts, unused).to(probs.device)
            thresholds = per_class[pseudo]
            for rid, conf, c in zip(ids, confidence.tolist(), pseudo.tolist(), strict=True):
                latest[rid] = int(c) if conf >= opts.threshold else -1
            state["thresholds"] = per_class.tolist()
        else:
            thresholds = torch.full_like(confidence, opts.threshold)
        mask = (confidence >= thresholds).float()
        state["mask_rate"] = float(mask.mean()) if mask.numel() else 0.0
        return pseudo, mask

    def _teacher(self, ctx: StepContext) -> nn.Module:
        """The model, or its EMA copy (created on the first step, updated once per step)."""
        if self.options.teacher == "model":
            return ctx.model
        import torch

        from augreg.context import unwrap_model

        state = ctx.state.setdefault(self.name, {})
        student = unwrap_model(ctx.model)
        teacher: Any = state.get("teacher")
        if teacher is None:
            teacher = copy.deepcopy(student)
            for p in teacher.parameters():
                p.requires_grad_(False)
            state["teacher"], state["teacher_step"] = teacher, ctx.step
            return teacher  # type: ignore[no-any-return]
        if ctx.step > state["teacher_step"]:  # once per optimizer step, not per micro-batch
            decay = self.options.ema_decay
            with torch.no_grad():
                for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
                    t.mul_(decay).add_(s.detach(), alpha=1 - decay)
                for tb, sb in zip(teacher.buffers(), student.buffers(), strict=True):
                    tb.copy_(sb)
            state["teacher_step"] = ctx.step
        return teacher  # type: ignore[no-any-return]
