"""The five component kinds: thin base classes that plugins subclass.

A component is a class with a ``name`` (``<plugin>.<component>``), a nested ``Options``
(pydantic, unknown keys forbidden, frozen) and capabilities declared as class attributes,
never found by branching on class names:

* ``changes_labels``: the component may change an example's label (an augmenter that does
  must say so; the data stage then does not check label preservation).
* ``supports_tasks``: the task types it works on.
* ``extra_passes``: declared cost, extra forward+backward passes per training step.
* ``conflicts_with``: names of components it cannot be combined with.
* ``paper``: the work it comes from.

Heavy resources (models, WordNet, knowledge bases) load lazily in :meth:`Component.setup`,
never at import or registration. This module does not import torch.

Example (an augmenter)::

    class Shout(augreg.Augmenter):
        '''Upper-cases one random word.'''
        name = "hello.shout"

        def augment(self, example, rng):
            words = example["text"].split(" ")
            i = rng.randrange(len(words))
            words[i] = words[i].upper()
            return [{**example, "text": " ".join(words)}]
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, ValidationError

from augreg.errors import OptionsError
from augreg.options import Options as _Options
from augreg.options import describe_validation_error

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps `import augreg` light
    import torch

    from augreg.context import StepContext

Kind = Literal["augmenter", "injector", "objective", "regularizer", "adapter"]
KINDS: tuple[Kind, ...] = ("augmenter", "injector", "objective", "regularizer", "adapter")
TASKS: frozenset[str] = frozenset({"sequence_classification", "token_classification"})

Example = dict[str, Any]
"""One example as components see it.

Sequence classification: ``{"text": str, "label": int, ...}``.
Token classification: ``{"tokens": list[str], "tags": list[str], ...}`` with IOB2 tags.
Extra keys (``augreg_id`` and other provenance columns, injector outputs) pass through.
"""


@dataclass
class SetupContext:
    """What a component may use in :meth:`Component.setup`.

    Attributes:
        task: ``"sequence_classification"`` or ``"token_classification"``.
        labels: The label names (class names, or IOB2 tags for token classification).
        seed: The pipeline seed.
        cache_dir: A folder the component may cache resources in.
        tokenizer: The pipeline's tokenizer, when one is loaded.
        train_examples: The training examples before augmentation, when available
            (e.g. to collect entity mentions). Do not mutate.
        device: ``"cpu"`` or ``"cuda"``.
    """

    task: str = "sequence_classification"
    labels: Sequence[str] = ()
    seed: int = 0
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "augreg")
    tokenizer: Any = None
    train_examples: Sequence[Example] | None = None
    device: str = "cpu"


class Component:
    """Base of every component. Subclass one of the five kinds, not this class."""

    kind: ClassVar[Kind]
    name: ClassVar[str] = ""
    changes_labels: ClassVar[bool] = False
    supports_tasks: ClassVar[frozenset[str]] = TASKS
    extra_passes: ClassVar[float] = 0.0
    conflicts_with: ClassVar[frozenset[str]] = frozenset()
    paper: ClassVar[str] = ""

    class Options(_Options):
        """No options."""

    options: _Options
    """The validated options; a subclass may narrow it with ``options: Options``."""

    def __init__(self, options: _Options | dict[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Build the component from an ``Options`` instance, a dict, or keyword options.

        Raises:
            OptionsError: an option is unknown, of the wrong type or out of range.
        """
        if isinstance(options, self.Options):
            if kwargs:
                options = options.model_copy(update=kwargs)
                options = self.validate_options(options.model_dump())
            self.options = options
            return
        if options is not None and not isinstance(options, dict):
            raise OptionsError(
                self.name or type(self).__name__,
                [
                    f"options must be a dict or {type(self).__name__}.Options, "
                    f"got {type(options).__name__}"
                ],
            )
        self.options = self.validate_options({**(options or {}), **kwargs})

    @classmethod
    def validate_options(cls, values: dict[str, Any]) -> Options:
        """Validate a dict of options; raise :class:`OptionsError` listing every problem."""
        try:
            return cls.Options(**values)
        except ValidationError as exc:
            raise OptionsError(
                cls.name or cls.__name__, describe_validation_error(exc, cls.Options)
            ) from None

    def setup(self, ctx: SetupContext) -> None:
        """Load heavy resources. Called once before the component first acts."""

    def fingerprint(self) -> str:
        """A stable digest of the name, class and options, for caching derived data."""
        payload = json.dumps(
            {
                "name": self.name,
                "class": f"{type(self).__module__}.{type(self).__qualname__}",
                "version": getattr(type(self), "version", ""),
                "options": self.options.model_dump(mode="json"),
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.model_dump().items())
        return f"{type(self).__name__}({opts})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Component)
            and type(self) is type(other)
            and (self.options == other.options)
        )

    def __hash__(self) -> int:
        return hash((type(self), self.fingerprint()))


class Augmenter(Component):
    """Writes new training examples from existing ones, preserving labels (spans too).

    Implement :meth:`augment`; override :meth:`augment_batch` only to batch work (a
    translation model), keeping batch output equal to one-by-one output. Use only the given
    ``rng`` for randomness. Return ``[]`` when no new example can be written from this input
    (too short, no synonym found); the data stage counts those. Never mutate the input.
    """

    kind: ClassVar[Kind] = "augmenter"

    class Options(_Options):
        copies: int = Field(
            1, ge=1, le=1000, description="Augmented views written per source example."
        )

    def augment(self, example: Example, rng: random.Random) -> list[Example]:
        """Return new examples made from ``example`` (usually one)."""
        raise NotImplementedError(f"{type(self).__name__} must implement augment()")

    def augment_batch(
        self, examples: Sequence[Example], rngs: Sequence[random.Random]
    ) -> list[list[Example]]:
        """Augment many examples; ``rngs[i]`` belongs to ``examples[i]``."""
        return [self.augment(ex, rng) for ex, rng in zip(examples, rngs, strict=True)]


class KnowledgeInjector(Component):
    """Adds outside knowledge to examples (text, extra fields) and optionally a model module.

    Implement :meth:`inject` (one example in, the enriched example out, labels kept and
    token tags realigned). Override :meth:`prepare_model` to attach a module; it must be
    idempotent.
    """

    kind: ClassVar[Kind] = "injector"

    def inject(self, example: Example) -> Example:
        """Return the example with knowledge added."""
        raise NotImplementedError(f"{type(self).__name__} must implement inject()")

    def inject_batch(self, examples: Sequence[Example]) -> list[Example]:
        """Inject into many examples; must equal one-by-one output."""
        return [self.inject(ex) for ex in examples]

    def prepare_model(self, model: torch.nn.Module, tokenizer: Any = None) -> torch.nn.Module:
        """Attach modules to the model (default: none). Idempotent."""
        return model


class Objective(Component):
    """A training loss. Objectives are combined by their ``weight`` (weighted sum).

    Implement :meth:`loss`: given the step context and model outputs (the clean pass by
    default, or a perturbed pass when a regularizer asks), return a scalar tensor. Ignore
    padding and label ``-100``.
    """

    kind: ClassVar[Kind] = "objective"
    applies_to_perturbed: ClassVar[bool] = True
    """Whether this loss is part of ``ctx.task_loss(outputs)`` on perturbed passes."""

    class Options(_Options):
        weight: float = Field(1.0, ge=0, le=1e4, description="Weight in the summed loss.")

    def loss(self, ctx: StepContext, outputs: Any = None) -> torch.Tensor:
        """Return the loss on ``outputs`` (default ``ctx.outputs``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss()")


class Regularizer(Component):
    """An extra loss term per training step, from the step context.

    Implement :meth:`loss`. Use ``ctx.forward(perturbation=..., dropout=...)`` for extra
    passes, ``ctx.task_loss(outputs)`` for the objectives on them, and
    ``ctx.perturbation_grad(loss, delta)`` for gradients with respect to a perturbation.
    Never edit and restore weights. Only called while training.

    ``forward_copies`` > 1 asks the step to run its clean pass on the batch repeated that many
    times in one concatenated forward (R-Drop); ``ctx.split(tensor)`` gives the copies.
    """

    kind: ClassVar[Kind] = "regularizer"
    forward_copies: ClassVar[int] = 1

    class Options(_Options):
        weight: float = Field(1.0, ge=0, le=1e4, description="Weight of this term in the loss.")

    def loss(self, ctx: StepContext) -> torch.Tensor:
        """Return this step's regularization term (unweighted)."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss()")


class Adapter(Component):
    """Changes what is trained (freezing, LoRA, bottleneck adapters, ...).

    Implement :meth:`prepare_model`, which must be idempotent or raise on a second call, never
    wrap twice. :meth:`trainable_state_dict` says what is saved (by default the parameters
    that require gradients).
    """

    kind: ClassVar[Kind] = "adapter"

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Return the model prepared for training."""
        raise NotImplementedError(f"{type(self).__name__} must implement prepare_model()")

    def trainable_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Return the tensors this adapter trains (saved in the run folder)."""
        return {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}

    def callbacks(self) -> list[Any]:
        """``transformers.TrainerCallback`` objects the adapter needs (e.g. LP-FT's switch)."""
        return []


BASES: dict[Kind, type[Component]] = {
    "augmenter": Augmenter,
    "injector": KnowledgeInjector,
    "objective": Objective,
    "regularizer": Regularizer,
    "adapter": Adapter,
}


def kind_of(cls: type[Any]) -> Kind | None:
    """Return the kind of a component class, or None if it is not one."""
    if not isinstance(cls, type):
        return None
    for kind, base in BASES.items():
        if issubclass(cls, base) and cls is not base:
            return kind
    return None
