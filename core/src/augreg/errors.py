"""Errors raised by augreg.

Every error says who (which step, component, plugin or file), what went wrong and how to fix
it. Errors that collect several problems (a whole pipeline config) report them all at once.
This module imports nothing of ours and nothing heavy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


class AugregError(Exception):
    """Base class of every error augreg raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One problem found while validating a config or a component.

    Attributes:
        where: The location, e.g. ``augment[0]`` or ``train.epochs``.
        message: What is wrong and how to fix it.
        component: The component name, when the problem belongs to one.
        origin: ``distribution version`` of the plugin that provides the component.
        hint: Extra lines shown indented under the message (installed names, ...).
    """

    where: str
    message: str
    component: str | None = None
    origin: str | None = None
    hint: tuple[str, ...] = field(default_factory=tuple)

    def render(self) -> str:
        head = self.where
        if self.component:
            head += f" {self.component}"
            if self.origin:
                head += f" ({self.origin})"
        lines = [f"  {head}: {self.message}"]
        lines.extend(f"    {h}" for h in self.hint)
        return "\n".join(lines)


class ConfigError(AugregError):
    """A pipeline config (or a set of components given in code) is invalid.

    All problems are collected before raising, so the user fixes them in one go.
    """

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        n = len(self.problems)
        head = f"augreg: {source} is invalid ({n} error{'s' if n != 1 else ''})"
        super().__init__("\n".join([head, *(p.render() for p in self.problems)]))


class OptionsError(AugregError):
    """The options given to one component are invalid (raised when built in code)."""

    def __init__(self, component: str, problems: Sequence[str]) -> None:
        self.component = component
        self.problems = list(problems)
        body = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"augreg: invalid options for {component}:\n{body}")


class UnknownComponentError(AugregError):
    """A component name is not installed."""


class PluginError(AugregError):
    """A plugin broke a registration rule (duplicate name, bad class, ...)."""


class DataError(AugregError):
    """Input data is unusable: missing column, empty split, bad label, corrupt file."""


class TrainingDivergedError(AugregError):
    """The training loss became NaN or infinite."""

    def __init__(
        self, step: int, value: float, components: Sequence[str], checkpoint: str | None = None
    ) -> None:
        self.step = step
        self.value = value
        self.components = list(components)
        self.checkpoint = checkpoint
        msg = (
            f"augreg: training loss is {value} at step {step}; stopped. "
            f"Active components: {', '.join(self.components) or 'none'}. "
            "Lower the learning rate or a component's weight, or enable gradient clipping "
            "(train.max_grad_norm)."
        )
        if checkpoint:
            msg += f" The last good weights are in {checkpoint}."
        super().__init__(msg)
