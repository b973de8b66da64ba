"""Registration of the built-in components. Registers only: no I/O, no heavy imports."""

from __future__ import annotations

from augreg.builtins.adapters import Freeze, LayerwiseLR
from augreg.builtins.combiners import WeightedSum
from augreg.builtins.objectives import CrossEntropy, LabelSmoothing
from augreg.builtins.regularizers import L2SP, EmbeddingNoise, RDrop
from augreg.hookspecs import Register, hookimpl


@hookimpl
def augreg_register_objectives(register: Register) -> None:
    register(CrossEntropy)
    register(LabelSmoothing)


@hookimpl
def augreg_register_regularizers(register: Register) -> None:
    register(L2SP)
    register(RDrop)
    register(EmbeddingNoise)


@hookimpl
def augreg_register_adapters(register: Register) -> None:
    register(Freeze)
    register(LayerwiseLR)


@hookimpl
def augreg_register_combiners(register: Register) -> None:
    register(WeightedSum)
