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
* ``needs_unlabelled``: the component trains on unlabelled text (consistency training). A
  pipeline with such a component needs ``data.unlabelled`` (checked before any model
  loads); the Trainer then draws ``data.unlabelled_ratio`` unlabelled examples per labelled
  one into every training batch, and the component reads them from ``ctx.unlabelled``
  (:class:`augreg.context.UnlabelledBatch`). Its ``extra_passes`` counts passes over an
  unlabelled batch as large as the labelled one; the run report multiplies them by the ratio.
  A component whose use of unlabelled text depends on its options (distillation with
  ``unlabeled = true``) overrides the class method :meth:`Component.uses_unlabelled` instead.
* ``teacher_option``: the name of the option that names a model the component learns from
  (``"teacher"`` for ``objectives.distillation``). A config with a teacher stage
  (``[teacher]``, or a recipe with a ``teacher``) trains that teacher first, in the run's
  ``teacher/`` folder, and fills the option with it; the option is left unset in the config.
* ``needs_model`` (augmenters): the augmenter writes its views against the model being
  trained (adversarial examples). The core hands it the model through
  :meth:`Augmenter.use_model` at the start of the epochs :meth:`Augmenter.refresh_epoch`
  names, and trains on those views until the next refresh.

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

import functools
import hashlib
import json
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, ValidationError

from augreg.errors import AugregError, OptionsError
from augreg.options import Options as _Options
from augreg.options import describe_validation_error

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps `import augreg` light
    import torch

    from augreg.context import StepContext

Kind = Literal["augmenter", "injector", "objective", "regularizer", "adapter", "combiner"]
KINDS: tuple[Kind, ...] = (
    "augmenter",
    "injector",
    "objective",
    "regularizer",
    "adapter",
    "combiner",
)
TASKS: frozenset[str] = frozenset({"sequence_classification", "token_classification"})

Example = dict[str, Any]
"""One example as components see it.

Sequence classification: ``{"text": str, "label": int, ...}``.
Token classification: ``{"tokens": list[str], "tags": list[str], ...}`` with IOB2 tags.
Extra keys (``augreg_id`` and other provenance columns, injector outputs) pass through.
"""

IGNORE_TAG = "X"
"""Tag of a token that is not part of the sentence's labelling (token classification).

A knowledge injector that inserts words into ``tokens`` (an entity description) tags them
``IGNORE_TAG`` so tags stay aligned; tokenization gives them label ``-100``, so the loss and
the metrics skip them. Never inside an entity span: insert after a span, not within it.
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
        max_length: The model's maximum input length in tokens (``model.max_length``), when
            known (a knowledge injector keeps its insertions within it).
    """

    task: str = "sequence_classification"
    labels: Sequence[str] = ()
    seed: int = 0
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "augreg")
    tokenizer: Any = None
    train_examples: Sequence[Example] | None = None
    device: str = "cpu"
    max_length: int | None = None


@dataclass
class ModelContext:
    """The model being trained, as an augmenter with ``needs_model`` sees it while writing views.

    The core builds one at each refresh (see :meth:`Augmenter.refresh_epoch`), hands it to
    :meth:`Augmenter.use_model`, calls the augmenter on the training examples, then hands it
    ``None``. During that time the model is in eval mode (dropout off) and gradients are off;
    the augmenter must not train, edit or keep the model.

    Attributes:
        model: The model (unwrapped from data-parallel wrappers), on its training device.
        tokenizer: The pipeline's tokenizer.
        task: ``"sequence_classification"`` or ``"token_classification"``.
        epoch: The epoch at whose start the views are written.
        tokenize: The pipeline's batched tokenize function (column -> values in, model inputs
            with ``labels`` out, truncated to the model's ``max_length``, not padded).

    Example:
        >>> probs = ctx.logits([{"text": "so good", "label": 1}]).softmax(-1)  # doctest: +SKIP
    """

    model: Any
    tokenizer: Any
    task: str = "sequence_classification"
    epoch: int = 0
    tokenize: Callable[[dict[str, list[Any]]], dict[str, list[Any]]] | None = None

    def encode(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        """Tokenize and pad examples as training does; tensors on the model's device, no labels.

        Raises:
            AugregError: ``examples`` is empty, or no ``tokenize`` function was given.
        """
        if not examples:
            raise AugregError("augreg: ModelContext.encode() got no examples; pass at least one.")
        if self.tokenize is None:
            raise AugregError(
                "augreg: this ModelContext has no tokenize function; build it with "
                "tokenize=<the task's batched tokenize> (the pipeline and the kit do)."
            )
        keys = [k for k in examples[0] if all(k in ex for ex in examples)]
        enc = self.tokenize({k: [ex[k] for ex in examples] for k in keys})
        rows = [{k: v[i] for k, v in enc.items() if k != "labels"} for i in range(len(examples))]
        known = set(getattr(self.tokenizer, "model_input_names", ())) | {"token_type_ids"}
        extra = {k: [r.pop(k) for r in rows] for k in list(rows[0]) if k not in known}
        batch = dict(self.tokenizer.pad(rows, return_tensors="pt"))
        if extra:  # knowledge injectors' model inputs (KnowledgeInjector.model_inputs)
            from augreg.tasks import pad_model_inputs

            width = int(batch["input_ids"].shape[1])
            side = str(getattr(self.tokenizer, "padding_side", "right"))
            batch.update(pad_model_inputs(extra, width, side))
        device = next(self.model.parameters()).device
        return {k: v.to(device) for k, v in batch.items()}

    def logits(self, examples: Sequence[Example]) -> torch.Tensor:
        """The model's logits on ``examples`` in one forward pass, float32 on the CPU.

        Runs without gradients and in the model's current mode (eval during a refresh).
        """
        import torch

        with torch.no_grad():
            out = self.model(**self.encode(examples))
        return out.logits.detach().float().cpu()  # type: ignore[no-any-return]


@functools.cache
def code_digest(module: str) -> str:
    """A digest of the Python source of the top-level package that holds ``module``.

    Every ``.py`` file of the package counts (a component's rules may live beside it, as
    ``augreg_counterfactual.rules`` does), read once per process. A module without source
    files (defined interactively) gives ``""``.
    """
    top = module.split(".")[0]
    mod = sys.modules.get(top)  # a component's package is imported when its class exists
    if mod is None:
        return ""
    roots = [Path(p) for p in getattr(mod, "__path__", [])]
    files = sorted((f.relative_to(r).as_posix(), f) for r in roots for f in r.rglob("*.py"))
    if not roots and getattr(mod, "__file__", None):
        files = [(Path(str(mod.__file__)).name, Path(str(mod.__file__)))]
    digest = hashlib.sha256()
    for rel, f in files:
        try:
            digest.update(rel.encode() + b"\0" + f.read_bytes())
        except OSError:
            continue
    return digest.hexdigest()[:16] if files else ""


class Component:
    """Base of every component. Subclass one of the five kinds, not this class."""

    kind: ClassVar[Kind]
    name: ClassVar[str] = ""
    changes_labels: ClassVar[bool] = False
    supports_tasks: ClassVar[frozenset[str]] = TASKS
    extra_passes: ClassVar[float] = 0.0
    conflicts_with: ClassVar[frozenset[str]] = frozenset()
    paper: ClassVar[str] = ""
    needs_unlabelled: ClassVar[bool] = False
    supports_multitask: ClassVar[bool] = True
    """False for a component that cannot serve several task heads at once (a distillation
    teacher predicts one task's labels); a multi-task pipeline with it is a config error."""
    teacher_option: ClassVar[str | None] = None
    """The option naming the model the component learns from (``"teacher"`` for
    ``objectives.distillation``), or None. A config with a teacher stage (``[teacher]``)
    trains the teacher first and fills this option with its run folder."""

    class Options(_Options):
        """No options."""

    @classmethod
    def uses_unlabelled(cls, options: Mapping[str, Any]) -> bool:
        """Whether the component, with these (raw config) options, trains on unlabelled text.

        Default: ``needs_unlabelled``. The config check and the run report ask this, before
        and after the component is built.
        """
        return cls.needs_unlabelled

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

    @classmethod
    def conformance_options(cls, folder: Path, task: str) -> dict[str, Any] | None:
        """Options ``augreg check-plugin`` builds this component with, on ``task``.

        Override it when the defaults cannot run in the conformance kit: a required option
        (a teacher model, a knowledge base) or a default that needs the network (a hub
        model). The kit calls it once per task in ``supports_tasks``, before any check runs,
        with the network blocked; write whatever the options point at (a tiny model saved
        with :func:`augreg.testing.save_tiny_model`, a small KB file) under ``folder``, an
        empty temporary folder per task that lives for the whole run. It must not download.

        Returns:
            The options (a dict, as in a pipeline config), or None to use the defaults
            (the default).

        Example:
            >>> class Distil(Objective):  # doctest: +SKIP
            ...     @classmethod
            ...     def conformance_options(cls, folder, task):
            ...         from augreg.testing import save_tiny_model
            ...         return {"teacher": str(save_tiny_model(folder / "teacher", task))}
        """
        return None

    def setup(self, ctx: SetupContext) -> None:
        """Load heavy resources. Called once before the component first acts."""

    def fingerprint(self) -> str:
        """A stable digest of the name, class, options and code, for caching derived data.

        The code is :func:`code_digest` of the package that defines the class: augmented
        and injected data cached by an earlier version of the component's code (a changed
        rule in a plugin under development, whose version number did not move) is not
        reused.
        """
        payload = json.dumps(
            {
                "name": self.name,
                "class": f"{type(self).__module__}.{type(self).__qualname__}",
                "version": getattr(type(self), "version", ""),
                "code": code_digest(type(self).__module__),
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
    needs_model: ClassVar[bool] = False
    """Writes views against the model being trained (adversarial examples).

    Such an augmenter runs only inside training with ``data.augmentation = "per_epoch"``: at
    the start of each epoch that :meth:`refresh_epoch` names, the core puts the model in eval
    mode without gradients, hands it over with :meth:`use_model`, writes this augmenter's
    views of every training example (batched calls of :meth:`augment_batch`, rngs derived
    from the refresh epoch), and trains on them until the next refresh. Under torchrun the
    processes share the examples and exchange the views, so every process trains on the same
    views. It never runs in the offline data stage (``augreg augment``), which has no model.
    """

    _model_context: ModelContext | None = None

    class Options(_Options):
        copies: int = Field(
            1, ge=1, le=1000, description="Augmented views written per source example."
        )

    def refresh_epoch(self, epoch: int) -> int | None:
        """For ``needs_model``: the epoch at whose start the views used in ``epoch`` are written.

        The last refresh at or before ``epoch``; ``None`` while there is none yet (the slots
        of this augmenter then hold the original examples). Default: every epoch. Override it
        to refresh less often (e.g. from a ``refresh_every`` option); it must be a pure
        function of ``epoch`` and the options, and return ``epoch`` itself on refresh epochs.
        """
        return epoch

    def use_model(self, ctx: ModelContext | None) -> None:
        """Receive the model before views are written (``ctx``) and let it go after (``None``).

        Called by the core for ``needs_model`` augmenters only. Keep no reference to the model
        beyond the ``None`` call (the augmenter is pickled to data-loader workers).
        """
        self._model_context = ctx

    @property
    def model_context(self) -> ModelContext:
        """The model handed over by :meth:`use_model`.

        Raises:
            AugregError: no model was handed over (the augmenter ran outside training).
        """
        ctx = self._model_context
        if ctx is None:
            raise AugregError(
                f"augreg: {self.name or type(self).__name__} writes its views against the model "
                "being trained, and none was handed to it. Use it in training with "
                'data.augmentation = "per_epoch" (augreg run), or call use_model(ModelContext('
                "model, tokenizer, tokenize=...)) first; the offline data stage (augreg augment) "
                "cannot run it."
            )
        return ctx

    def augment(self, example: Example, rng: random.Random) -> list[Example]:
        """Return new examples made from ``example`` (usually one)."""
        raise NotImplementedError(f"{type(self).__name__} must implement augment()")

    def augment_batch(
        self, examples: Sequence[Example], rngs: Sequence[random.Random]
    ) -> list[list[Example]]:
        """Augment many examples; ``rngs[i]`` belongs to ``examples[i]``."""
        return [self.augment(ex, rng) for ex, rng in zip(examples, rngs, strict=True)]

    def counts(self) -> dict[str, int]:
        """Running counts of what this augmenter did, for the run report (default: none).

        Override to report filters and drops (``{"identical": 3, "length_ratio": 1}``):
        totals since the augmenter was built, in this process. The data stage adds what
        changed during each offline pass to ``report[name]``; a pass read from the data
        cache calls no augmenter, so it adds nothing.
        """
        return {}


class KnowledgeInjector(Component):
    """Adds outside knowledge to examples (text, extra fields) and optionally a model module.

    Implement :meth:`inject` (one example in, the enriched example out, labels kept and
    token tags realigned). Override :meth:`prepare_model` to attach a module; it must be
    idempotent.

    A module that needs per-token inputs (entity ids fused into the embeddings) names the
    example fields it writes in ``model_inputs``. Tokenization maps each to one integer per
    sub-token like the labels (token classification: one value per word in ``tokens``, spread
    over the word's sub-tokens; sequence classification: ``[start, end, value]`` character
    spans over ``text``), unmarked positions and padding get ``-1``, and the batch passes them
    to the model's forward as keyword arguments of the same name, which the module must take
    out before the base model sees them (see docs/hooks.md).
    """

    kind: ClassVar[Kind] = "injector"
    model_inputs: ClassVar[tuple[str, ...]] = ()

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
    """A training loss. Objectives are combined by their ``weight`` (weighted sum by default;
    ``train.combiner`` names another :class:`Combiner`).

    Implement :meth:`loss`: given the step context and model outputs (the clean pass by
    default, or a perturbed pass when a regularizer asks), return a scalar tensor. Ignore
    padding and label ``-100``.

    An objective that reads the encoder's hidden states (a pooled representation) sets
    ``needs_hidden_states = True``: every pass of the step then runs with
    ``output_hidden_states=True`` (no second clean pass). An objective that trains modules
    of its own (an MLM head, a projection) attaches them in :meth:`prepare_model`, before the
    optimizer is built, under :func:`augreg.step.aux_modules` (saved with the model, ignored
    by :func:`augreg.load_model`).
    """

    kind: ClassVar[Kind] = "objective"
    applies_to_perturbed: ClassVar[bool] = True
    """Whether this loss is part of ``ctx.task_loss(outputs)`` on perturbed passes."""
    needs_hidden_states: ClassVar[bool] = False
    """Ask every pass of the step for ``output_hidden_states=True``."""

    class Options(_Options):
        weight: float = Field(1.0, ge=0, le=1e4, description="Weight in the summed loss.")

    def loss(self, ctx: StepContext, outputs: Any = None) -> torch.Tensor:
        """Return the loss on ``outputs`` (default ``ctx.outputs``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss()")

    def prepare_model(self, model: torch.nn.Module, tokenizer: Any = None) -> torch.nn.Module:
        """Attach the modules this objective trains (default: none). Idempotent.

        Called once after the model is built (injectors and adapters applied) and before the
        optimizer is created, so the attached parameters are trained. Parameters added here
        stay trainable whatever the adapters froze.
        """
        return model


class Regularizer(Component):
    """An extra loss term per training step, from the step context.

    Implement :meth:`loss`. Use ``ctx.forward(perturbation=..., dropout=...)`` for extra
    passes, ``ctx.task_loss(outputs)`` for the objectives on them, and
    ``ctx.perturbation_grad(loss, delta)`` for gradients with respect to a perturbation.
    Never edit and restore weights. Only called while training.

    ``forward_copies`` > 1 asks the step to run its clean pass on the batch repeated that many
    times in one concatenated forward (R-Drop); ``ctx.split(tensor)`` gives the copies.

    A method that starts from the clean loss's gradient in embedding space sets
    ``uses_clean_gradient`` and reads ``ctx.clean_embedding_grad``: the step's one backward
    through the clean pass gives it, instead of a second backward of its own. A method that
    needs the clean loss's gradient of the weights (SAM) sets it too and reads
    ``ctx.clean_weight_grads``; ``ctx.forward(parameters=...)`` then runs a pass with
    perturbed weights without editing them.

    A regularizer may instead act on the training pass itself, at no extra pass: override
    :meth:`clean_perturbation` (added to the clean pass's input-embedding output, as NEFTune
    does) and return False from :meth:`has_term`; the step then never calls :meth:`loss`.
    """

    kind: ClassVar[Kind] = "regularizer"
    forward_copies: ClassVar[int] = 1
    uses_clean_gradient: ClassVar[bool] = False
    """True: the method needs the clean loss's gradient with respect to the input embeddings
    (FGM, PGD from a zero start). The step then runs the clean backward once itself, before
    the regularizers, and hands that gradient over as ``ctx.clean_embedding_grad`` and the
    weights' gradients as ``ctx.clean_weight_grads`` (None when it could not: read them, and
    take the gradient yourself when they are None); the weights' gradients of that backward
    enter the loss through a linear surrogate. May be set per instance (it can depend on the
    options)."""

    class Options(_Options):
        weight: float = Field(1.0, ge=0, le=1e4, description="Weight of this term in the loss.")

    def loss(self, ctx: StepContext) -> torch.Tensor:
        """Return this step's regularization term (unweighted)."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss()")

    def has_term(self) -> bool:
        """Whether the step adds :meth:`loss` to the training loss (True by default)."""
        return True

    def clean_perturbation(self, ctx: StepContext, embeddings: torch.Tensor) -> torch.Tensor | None:
        """A perturbation of the training (clean) pass's input-embedding output, or None.

        Called once per training step, inside the clean pass, with the embedding output
        (``(batch, length, hidden)``, in the graph). The step zeroes padding positions and
        adds the result before the encoder runs; every objective and ``ctx.embeddings`` then
        see the perturbed pass. Never called in evaluation. Default: None (no change).
        """
        return None


class Combiner(Component):
    """Turns the step's weighted loss terms into the one tensor backward runs on.

    Chosen by ``train.combiner`` (default ``core.sum``, the weighted sum). :meth:`combine`
    gets the terms in order (``{component name: weight * loss}``) and returns a scalar whose
    gradient is the combined gradient; its value is what the Trainer logs as ``loss``. A
    gradient-surgery combiner (PCGrad) computes per-term gradients itself with
    ``torch.autograd.grad`` and returns a surrogate whose gradient is the projected sum, so
    the Trainer's own backward, accumulation, mixed precision and clipping stay in place.
    Learned weights are attached in :meth:`prepare_model` (under
    :func:`augreg.step.aux_modules`) so the optimizer trains them.
    """

    kind: ClassVar[Kind] = "combiner"
    linear: ClassVar[bool] = False
    """True when :meth:`combine` is the plain sum of the terms: the step may then take the
    clean terms' backward early (``Regularizer.uses_clean_gradient``) and add their gradient
    through a surrogate. Gradient surgery and learned weights leave it False."""

    def combine(self, terms: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        """Return the step's loss from the weighted terms (at least one)."""
        raise NotImplementedError(f"{type(self).__name__} must implement combine()")

    def prepare_model(self, model: torch.nn.Module, names: Sequence[str]) -> torch.nn.Module:
        """Attach learned parameters for the terms ``names`` (default: none). Idempotent."""
        return model


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
    "combiner": Combiner,
}


def kind_of(cls: type[Any]) -> Kind | None:
    """Return the kind of a component class, or None if it is not one."""
    if not isinstance(cls, type):
        return None
    for kind, base in BASES.items():
        if issubclass(cls, base) and cls is not base:
            return kind
    return None
