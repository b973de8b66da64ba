"""The torch side of ``entity_linking.fusion``: the gated fusion module and how it is attached.

Imported only by :meth:`augreg_entity_linking.fusion.Fusion.prepare_model` (it imports torch).

:class:`EntityFusion` holds the entity table (a buffer: one vector per KB entity, computed once)
and the trained parameters: a projection to the model's hidden size and a per-dimension gate.
For input-embedding outputs ``E`` (batch, length, hidden) and entity ids ``ids`` (batch,
length; ``-1`` where no entity is linked)::

    E' = E + tanh(gate) * (W @ table[ids] + b) * [ids >= 0]

so padding, special tokens and words outside every mention are never changed, and with
``gate = 0`` (the default initialisation) ``E' = E`` exactly: the model starts as the base model.

:func:`attach` adds the module to the model under :data:`MODULE`, registers a forward hook on
``model.get_input_embeddings()`` that applies it, and wraps the model's ``forward`` so that the
batch's entity ids (keyword :data:`~augreg_entity_linking.fusion.FIELD`) are taken out before
the base model sees them. The wrapper is an instance attribute, so it also runs when peft calls
``model.forward`` directly (LoRA), and ``inspect.signature(model.forward)`` still shows the
base model's arguments (``__wrapped__``).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["MODULE", "EntityFusion", "attach", "input_embeddings"]

MODULE = "entity_fusion"
"""Name of the fusion module on the model (its parameters are ``entity_fusion.*``)."""


class EntityFusion(nn.Module):
    """Gated projection of entity vectors added to the input embeddings of mention tokens.

    Args:
        table: ``(entities, entity_dim)`` entity vectors, in KB order (not trained).
        hidden: The model's embedding size.
        gate_init: Initial value of every gate entry (``tanh`` is applied); 0 = closed.

    Parameters are plain tensors used with ``F.linear`` rather than an ``nn.Linear``, so that
    adapters that wrap linear layers by name (LoRA on ``all-linear``) leave them alone.
    """

    table: torch.Tensor

    def __init__(self, table: torch.Tensor, hidden: int, gate_init: float = 0.0) -> None:
        super().__init__()
        dim = int(table.shape[1])
        self.register_buffer("table", table.detach().clone().float(), persistent=True)
        weight = torch.empty(hidden, dim)
        if dim == hidden:  # the table lives in the embedding space: start from identity
            nn.init.eye_(weight)
        else:
            nn.init.xavier_uniform_(weight)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.gate = nn.Parameter(torch.full((hidden,), float(gate_init)))
        self.current: torch.Tensor | None = None
        """The batch's entity ids while the wrapped forward runs, else None."""

    def extra_repr(self) -> str:
        return f"entities={self.table.shape[0]}, entity_dim={self.table.shape[1]}, " + (
            f"hidden={self.weight.shape[0]}"
        )

    def fuse(self, embeddings: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``embeddings`` with the gated entity vectors added where ``ids >= 0``.

        Raises:
            ValueError: ``ids`` does not have the embeddings' (batch, length) shape.
        """
        if ids.shape != embeddings.shape[:2]:
            raise ValueError(
                f"augreg-entity-linking: entity ids of shape {tuple(ids.shape)} do not match the "
                f"input embeddings {tuple(embeddings.shape[:2])}; pass the batch's "
                "entity_fusion_ids as the tokenizer aligned them (the pipeline does)."
            )
        ids = ids.to(embeddings.device)
        mask = ids >= 0
        if not bool(mask.any()):
            return embeddings
        vectors = self.table[ids.clamp(min=0)]
        added = torch.nn.functional.linear(vectors, self.weight, self.bias) * torch.tanh(self.gate)
        return embeddings + (added * mask.unsqueeze(-1)).to(embeddings.dtype)

    def hook(self, _module: nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
        """Forward hook on the input embeddings: fuse when the wrapped forward set ids."""
        if self.current is None:
            return output
        return self.fuse(output, self.current)


def input_embeddings(model: nn.Module) -> nn.Module:
    """``model.get_input_embeddings()``, or a clear error naming what fusion needs."""
    get = getattr(model, "get_input_embeddings", None)
    module = get() if callable(get) else None
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"augreg-entity-linking: entity_linking.fusion adds entity vectors to the input "
            f"embeddings, but {type(model).__name__} has no get_input_embeddings() returning a "
            "module. Use a transformers model (AutoModelFor...), or a text-level injector "
            "(entity_linking.describe or entity_linking.markers) instead."
        )
    return module


def _wrapped_forward(cls: type[nn.Module], field: str) -> Callable[..., Any]:
    base = cls.forward

    @functools.wraps(base)
    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        ids = kwargs.pop(field, None)
        fusion = getattr(self, MODULE)
        fusion.current = ids
        try:
            return base(self, *args, **kwargs)
        finally:
            fusion.current = None

    return forward


def attach(model: nn.Module, fusion: EntityFusion, field: str) -> nn.Module:
    """Add ``fusion`` to ``model``, hook it on the input embeddings, wrap ``forward``."""
    embeddings = input_embeddings(model)
    model.add_module(MODULE, fusion)
    # A bound method (not a closure) so that copy.deepcopy(model) hooks the copy's module.
    embeddings.register_forward_hook(fusion.hook)
    model.forward = types.MethodType(_wrapped_forward(type(model), field), model)
    return model
