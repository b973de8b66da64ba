"""``consistency.tsa``: cross-entropy with training-signal annealing (Xie et al. 2020).

Cost: none beyond the clean pass (it replaces ``core.cross_entropy``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from augreg.components import Objective
from augreg.errors import AugregError

if TYPE_CHECKING:
    import torch

    from augreg.context import StepContext

Schedule = Literal["linear", "log", "exp"]


def tsa_threshold(schedule: Schedule, step: int, total: int, classes: int) -> float:
    """The TSA threshold ``eta_t = alpha_t * (1 - 1/K) + 1/K`` at ``step`` of ``total``.

    ``alpha_t`` is ``t/T`` (linear), ``1 - exp(-5 t/T)`` (log: releases early) or
    ``exp(5 (t/T - 1))`` (exp: releases late), as in the paper; ``K`` is the number of
    classes. It rises from ``1/K`` to 1 over training (within ``exp(-5)``, for log and exp).
    """
    frac = min(max(step / max(total, 1), 0.0), 1.0)
    if schedule == "linear":
        alpha = frac
    elif schedule == "log":
        alpha = 1.0 - math.exp(-frac * 5.0)
    else:
        alpha = math.exp((frac - 1.0) * 5.0)
    return alpha * (1.0 - 1.0 / classes) + 1.0 / classes


class TrainingSignalAnnealing(Objective):
    """Cross-entropy on the labelled batch that leaves out examples the model already gets
    right with probability above the TSA threshold (Xie et al. 2020), so a small labelled
    set is not memorised while the unlabelled consistency term is still learning.

    The threshold ``eta_t`` rises from ``1/K`` to 1 over ``steps`` (default: the run's total
    optimizer steps) along the ``schedule``; an example (token, for token classification)
    whose correct-class probability exceeds it gets no gradient. The loss is the sum of the
    kept examples' cross-entropy over their number (at least 1), as in the paper's code.
    Replaces ``core.cross_entropy`` (the two conflict). The share of masked examples of the
    last step is kept in ``ctx.state["consistency.tsa"]``.

    Cost: none beyond the clean pass.
    """

    name = "consistency.tsa"
    paper = "Xie et al. 2020, Unsupervised Data Augmentation for Consistency Training"
    conflicts_with: ClassVar[frozenset[str]] = frozenset({"core.cross_entropy"})

    class Options(Objective.Options):
        schedule: Schedule = Field(
            "linear",
            description="How the threshold rises: linear, log (early release, for large "
            "labelled sets) or exp (late release, for tiny labelled sets).",
        )
        steps: int | None = Field(
            None,
            ge=1,
            description="Steps over which the threshold reaches 1; default: the run's total "
            "optimizer steps.",
        )

    options: Options

    @classmethod
    def conformance_options(cls, folder: Any, task: str) -> dict[str, Any] | None:
        """The kit's step has no run length: give one."""
        return {"steps": 100}

    def threshold(self, ctx: StepContext, classes: int) -> float:
        """This step's threshold.

        Raises:
            AugregError: neither ``steps`` nor the run's total steps are known.
        """
        total = self.options.steps or ctx.total_steps
        if total is None:
            raise AugregError(
                f"augreg: {self.name} needs the run length: give steps = <optimizer steps> "
                "(the pipeline's Trainer passes its total steps)."
            )
        return tsa_threshold(self.options.schedule, ctx.step, total, classes)

    def loss(self, ctx: StepContext, outputs: Any = None) -> torch.Tensor:
        """The annealed cross-entropy; label ``-100`` is ignored."""
        import torch
        import torch.nn.functional as F

        out = ctx.outputs if outputs is None else outputs
        logits = out.logits.float()
        classes = int(logits.shape[-1])
        logits = logits.reshape(-1, classes)
        labels = ctx.labels.reshape(-1)
        valid = labels != -100
        safe = labels.clamp_min(0)
        ce = F.cross_entropy(logits, safe, reduction="none")
        with torch.no_grad():
            correct = torch.softmax(logits, dim=-1).gather(1, safe[:, None]).squeeze(1)
        keep = valid & (correct <= self.threshold(ctx, classes))
        stats = ctx.state.setdefault(self.name, {})
        stats["masked"] = 1.0 - float(keep.sum()) / max(int(valid.sum()), 1)
        return (ce * keep.float()).sum() / keep.sum().clamp_min(1).float()
