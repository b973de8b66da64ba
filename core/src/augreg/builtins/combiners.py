"""Built-in combiner: the weighted sum of the step's loss terms (``train.combiner`` default).

Cost: none (one backward pass, as without a combiner).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from augreg.components import Combiner

if TYPE_CHECKING:
    import torch

    from augreg.context import StepContext


class WeightedSum(Combiner):
    """The sum of the weighted terms (each component's ``weight`` times its loss).

    The default of ``train.combiner``; the same loss as a pipeline without a combiner.
    """

    name = "core.sum"
    linear = True
    paper = "standard multi-objective training: a fixed weighted sum"

    def combine(self, terms: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        from augreg.step import weighted_sum

        return weighted_sum(terms)
