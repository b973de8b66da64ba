"""The training-step context: what objectives and regularizers act on.

A :class:`StepContext` wraps one batch and the model. It runs the clean forward pass once
(lazily), and can run the model again on the same batch with a perturbation added to the
output of ``model.get_input_embeddings()`` (a forward hook), with or without dropout. The
gradient with respect to such a perturbation comes from ``torch.autograd.grad``; no weight is
edited and restored, so adversarial methods keep working when an adapter freezes the
embedding matrix.

Example (an FGM-like term)::

    delta = ctx.zeros_like_embeddings(requires_grad=True)
    loss = ctx.task_loss(ctx.forward(perturbation=delta))
    g = ctx.perturbation_grad(loss, delta)
    adv = ctx.task_loss(ctx.forward(perturbation=ctx.mask_padding(1e-2 * g / g.norm())))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

LABEL_KEYS = ("labels",)
UNLABELLED = "augreg_unlabelled"
"""Batch key of the unlabelled part of a training batch (taken out before the model runs)."""


@dataclass
class UnlabelledBatch:
    """The unlabelled examples drawn with a training batch (``data.unlabelled``).

    Attributes:
        inputs: Their model inputs, padded tensors on the batch's device, no labels.
        examples: Their raw examples, in the same order: ``augreg_id`` and ``text`` (token
            classification: ``tokens``), after the knowledge injectors, for writing views.
    """

    inputs: dict[str, Any]
    examples: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.inputs["input_ids"].shape[0])

    @classmethod
    def from_batch(cls, value: Any) -> UnlabelledBatch | None:
        """Read the :data:`UNLABELLED` entry of a collated batch (None when absent)."""
        if value is None or isinstance(value, UnlabelledBatch):
            return value
        return cls(dict(value["inputs"]), list(value.get("examples", [])))


@contextlib.contextmanager
def dropout_mode(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Temporarily switch dropout (``training`` flags) on or off; restore each module's flag."""
    saved = [(m, m.training) for m in model.modules()]
    try:
        for m, _ in saved:
            m.training = enabled and m.training
        yield
    finally:
        for m, flag in saved:
            m.training = flag


class StepContext:
    """One training step's batch, model and passes.

    Args:
        model: The model being trained (a ``transformers`` model, possibly wrapped by peft).
        inputs: The batch, with ``labels``.
        task: Task type, ``sequence_classification`` or ``token_classification``.
        objectives: ``(objective, weight)`` pairs making up :meth:`task_loss`.
        copies: Run the clean pass on the batch repeated this many times (R-Drop).
        step: Global optimizer step. ``epoch``: fractional epoch.
        unlabelled: Unlabelled examples drawn with the batch (``data.unlabelled``); also
            read from the batch's ``augreg_unlabelled`` entry, which the model never sees.
        total_steps: Optimizer steps of the whole run, when known (schedules use it).
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: Mapping[str, Any],
        *,
        task: str = "sequence_classification",
        objectives: Sequence[tuple[Any, float]] = (),
        copies: int = 1,
        step: int = 0,
        epoch: float = 0.0,
        num_items_in_batch: Any = None,
        state: dict[str, Any] | None = None,
        clean_perturbers: Sequence[Callable[[StepContext, torch.Tensor], Any]] = (),
        hidden_states: bool = False,
        unlabelled: UnlabelledBatch | None = None,
        total_steps: int | None = None,
    ) -> None:
        if "labels" not in inputs:
            raise ValueError("augreg: the batch has no 'labels'; training needs labelled data.")
        self.model = model
        self.task = task
        self.step = step
        self.epoch = epoch
        self.copies = copies
        self.num_items_in_batch = num_items_in_batch
        self.objectives = list(objectives)
        self.state = state if state is not None else {}
        """Per-run state that components may keep across steps (keyed by component name)."""
        self.unlabelled = unlabelled or UnlabelledBatch.from_batch(inputs.get(UNLABELLED))
        """Unlabelled examples drawn with this batch, or None (no ``data.unlabelled``)."""
        self.total_steps = total_steps
        base = {k: v for k, v in inputs.items() if k not in LABEL_KEYS and k != UNLABELLED}
        labels = inputs["labels"]
        if copies > 1:
            base = {k: _repeat(v, copies) for k, v in base.items()}
            labels = _repeat(labels, copies)
        self.inputs: dict[str, Any] = base
        self.labels: torch.Tensor = labels
        self._outputs: Any = None
        self._embeddings: torch.Tensor | None = None
        self.clean_perturbers = list(clean_perturbers)
        """Called in the clean pass with the embedding output; their sum is added to it."""
        self.hidden_states = hidden_states
        """Every pass runs with ``output_hidden_states=True`` (an objective needs them)."""
        self.clean_embedding_grad: torch.Tensor | None = None
        """Gradient of the step's clean objective terms (as weighted in the loss) with respect
        to :attr:`embeddings`, proportional to that of :meth:`task_loss`; set by the step's
        shared clean backward before the regularizers run (see :func:`augreg.compute_loss`
        and ``Regularizer.uses_clean_gradient``), else None: take a probe yourself."""
        self.clean_weight_grads: list[tuple[torch.Tensor, torch.Tensor | None]] | None = None
        """The same backward's gradients of the trainable weights, ``(parameter, gradient)``
        pairs in ``model.parameters()`` order (None where a weight is outside the graph); set
        with :attr:`clean_embedding_grad` (weight-space methods such as SAM read it), else
        None: take the gradient yourself."""

    # -- the clean pass --------------------------------------------------------------------

    @property
    def outputs(self) -> Any:
        """Outputs of the clean pass (run once, with the model's current dropout mode)."""
        if self._outputs is None:
            self._outputs = self._run(self.inputs, None, capture=True)
        return self._outputs

    @property
    def logits(self) -> torch.Tensor:
        """Logits of the clean pass."""
        return self.outputs.logits  # type: ignore[no-any-return]

    @property
    def embeddings(self) -> torch.Tensor:
        """Input-embedding output of the clean pass (in the graph; detach before reusing)."""
        if self._embeddings is None:
            _ = self.outputs
        if self._embeddings is None:
            raise RuntimeError("augreg: the model's input embeddings were not called")
        return self._embeddings

    @property
    def attention_mask(self) -> torch.Tensor:
        """``(batch, length)`` mask, 1 on real tokens, 0 on padding."""
        mask = self.inputs.get("attention_mask")
        if mask is None:
            ids = self.inputs["input_ids"]
            return torch.ones_like(ids)
        return mask  # type: ignore[no-any-return]

    def split(self, tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Split a clean-pass tensor into its ``copies`` (R-Drop's two dropout views)."""
        return tuple(tensor.chunk(self.copies, dim=0))

    # -- extra passes ----------------------------------------------------------------------

    def zeros_like_embeddings(self, requires_grad: bool = False) -> torch.Tensor:
        """A zero perturbation with the shape, dtype and device of the embedding output."""
        emb = self.embeddings
        return torch.zeros_like(emb, requires_grad=requires_grad)

    def mask_padding(self, perturbation: torch.Tensor) -> torch.Tensor:
        """Zero a ``(batch, length, hidden)`` perturbation on padding positions."""
        mask = self.attention_mask.to(perturbation.dtype).unsqueeze(-1)
        return perturbation * mask

    def forward(
        self,
        perturbation: torch.Tensor | None = None,
        *,
        dropout: bool = True,
        inputs: Mapping[str, Any] | None = None,
        model: nn.Module | None = None,
        parameters: Mapping[str, torch.Tensor] | None = None,
    ) -> Any:
        """Run the model again on the batch (or ``inputs``).

        Args:
            perturbation: Added to the input-embedding output; padding positions are zeroed.
            dropout: Keep dropout as in training (True) or switch it off for this pass.
            inputs: Other inputs (default: this batch, without labels).
            model: Another model sharing the architecture (e.g. an EMA teacher).
            parameters: Tensors that stand in for some of the model's parameters in this pass,
                by name as in ``model.named_parameters()`` (``torch.func.functional_call``):
                a weight-space perturbation (SAM) without editing and restoring weights. A
                tensor computed from the parameter (``p + e``) passes its gradient on to it.
        """
        target = self.model if model is None else model
        batch = self.inputs if inputs is None else dict(inputs)
        if perturbation is not None:
            perturbation = self.mask_padding(perturbation)
        if dropout:
            return self._run(batch, perturbation, target=target, parameters=parameters)
        with dropout_mode(target, False):
            return self._run(batch, perturbation, target=target, parameters=parameters)

    def task_loss(self, outputs: Any = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted sum of the objectives that apply to (perturbed) ``outputs``."""
        outputs = self.outputs if outputs is None else outputs
        total: torch.Tensor | None = None
        for objective, weight in self.objectives:
            if not getattr(objective, "applies_to_perturbed", True):
                continue
            if weight == 0:
                continue
            term = (
                objective.loss(self, outputs)
                if labels is None
                else objective.loss(self.with_labels(labels), outputs)
            )
            total = weight * term if total is None else total + weight * term
        if total is None:
            raise RuntimeError("augreg: no objective applies; add core.cross_entropy")
        return total

    def with_labels(self, labels: torch.Tensor) -> StepContext:
        """A shallow copy of this context with other labels (for soft or shifted targets)."""
        clone = object.__new__(StepContext)
        clone.__dict__.update(self.__dict__)
        clone.labels = labels
        return clone

    @staticmethod
    def perturbation_grad(
        loss: torch.Tensor, perturbation: torch.Tensor, retain_graph: bool = False
    ) -> torch.Tensor:
        """Gradient of ``loss`` with respect to ``perturbation`` (weights get no gradient)."""
        (grad,) = torch.autograd.grad(loss, perturbation, retain_graph=retain_graph)
        return grad

    # -- internals -------------------------------------------------------------------------

    def _run(
        self,
        batch: Mapping[str, Any],
        perturbation: torch.Tensor | None,
        *,
        capture: bool = False,
        target: nn.Module | None = None,
        parameters: Mapping[str, torch.Tensor] | None = None,
    ) -> Any:
        model = self.model if target is None else target
        if self.hidden_states:
            batch = {**batch, "output_hidden_states": True}

        def call() -> Any:
            if parameters:
                return torch.func.functional_call(model, dict(parameters), (), dict(batch))
            return model(**batch)

        if perturbation is None and not capture:
            return call()
        embedding = _input_embeddings(model)

        def hook(_module: nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
            if capture:
                for perturber in self.clean_perturbers:
                    extra = perturber(self, output)
                    if extra is not None:
                        output = output + self.mask_padding(extra).to(output.dtype)
                self._embeddings = output
            if perturbation is not None:
                return output + perturbation.to(output.dtype)
            return output

        handle = embedding.register_forward_hook(hook)
        try:
            return call()
        finally:
            handle.remove()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside data-parallel wrappers (DistributedDataParallel, DataParallel)."""
    while isinstance(getattr(model, "module", None), nn.Module) and not hasattr(
        model, "get_input_embeddings"
    ):
        model = model.module  # type: ignore[assignment]
    return model


def _input_embeddings(model: nn.Module) -> nn.Module:
    model = unwrap_model(model)
    get = getattr(model, "get_input_embeddings", None)
    if get is None:
        raise TypeError(
            f"augreg: {type(model).__name__} has no get_input_embeddings(); embedding-space "
            "regularizers need a transformers model."
        )
    module = get()
    if not isinstance(module, nn.Module):
        raise TypeError(f"augreg: {type(model).__name__}.get_input_embeddings() returned None")
    return module


def _repeat(value: Any, copies: int) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        return torch.cat([value] * copies, dim=0)
    return value


LossFn = Callable[[StepContext], torch.Tensor]
