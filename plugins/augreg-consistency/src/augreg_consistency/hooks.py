"""Registration of augreg-consistency's components. Registers only: no I/O, no heavy imports."""

from __future__ import annotations

import augreg
from augreg_consistency.self_training import SelfTraining
from augreg_consistency.tsa import TrainingSignalAnnealing
from augreg_consistency.uda import Uda


@augreg.hookimpl
def augreg_register_regularizers(register: augreg.Register) -> None:
    register(Uda)
    register(SelfTraining)


@augreg.hookimpl
def augreg_register_objectives(register: augreg.Register) -> None:
    register(TrainingSignalAnnealing)
