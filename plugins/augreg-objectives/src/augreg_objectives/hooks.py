"""Registration of augreg-objectives' components. Registers only: no I/O, no heavy imports."""

from __future__ import annotations

import augreg
from augreg_objectives.combiners import PCGrad, UncertaintyWeighting
from augreg_objectives.contrastive import SimCSE, SupervisedContrastive
from augreg_objectives.distillation import Distillation
from augreg_objectives.mlm import MaskedLM


@augreg.hookimpl
def augreg_register_objectives(register: augreg.Register) -> None:
    register(Distillation)
    register(SupervisedContrastive)
    register(SimCSE)
    register(MaskedLM)


@augreg.hookimpl
def augreg_register_combiners(register: augreg.Register) -> None:
    register(UncertaintyWeighting)
    register(PCGrad)
