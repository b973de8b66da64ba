"""Hook specifications of the ``augreg`` plugin system (pluggy project name ``augreg``).

A plugin is a module (usually ``augreg_<name>/hooks.py``) with functions marked
``@augreg.hookimpl`` whose names are the hooks below. Registration hooks receive a typed
``register`` callable and call it once per component class. A hook implementation accepts
only the arguments it uses and never gives them defaults (pluggy does not pass arguments that
have defaults).

Hooks evolve by adding arguments only; every hook has a section in docs/hooks.md and a test.
This module imports nothing of ours.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

PROJECT = "augreg"
ENTRY_POINT_GROUP = "augreg"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callable a registration hook receives: ``register(ComponentClass)``."""

    def __call__(self, component: type[Any], /) -> None: ...


class AugregSpecs:
    """The hook specs. Each registration hook is called once per plugin at host start."""

    @hookspec
    def augreg_register_augmenters(self, register: Register) -> None:
        """Register :class:`augreg.Augmenter` subclasses: ``register(RandomSwap)``."""

    @hookspec
    def augreg_register_injectors(self, register: Register) -> None:
        """Register :class:`augreg.KnowledgeInjector` subclasses."""

    @hookspec
    def augreg_register_objectives(self, register: Register) -> None:
        """Register :class:`augreg.Objective` subclasses."""

    @hookspec
    def augreg_register_regularizers(self, register: Register) -> None:
        """Register :class:`augreg.Regularizer` subclasses."""

    @hookspec
    def augreg_register_adapters(self, register: Register) -> None:
        """Register :class:`augreg.Adapter` subclasses."""

    @hookspec
    def augreg_register_combiners(self, register: Register) -> None:
        """Register :class:`augreg.Combiner` subclasses (chosen by ``train.combiner``)."""


REGISTRATION_HOOKS = {
    "augmenter": "augreg_register_augmenters",
    "injector": "augreg_register_injectors",
    "objective": "augreg_register_objectives",
    "regularizer": "augreg_register_regularizers",
    "adapter": "augreg_register_adapters",
    "combiner": "augreg_register_combiners",
}
