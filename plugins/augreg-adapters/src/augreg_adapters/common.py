"""What every adapter of this plugin shares: the task head, the applied-adapter record, errors.

Importing this module does not import torch or peft (``hooks.py`` imports it through the
component classes); functions that need them import inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import augreg

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import nn

# Names transformers gives task heads, so that modules an injector attached at the top level
# are not mistaken for the head when a known head is present.
HEAD_NAMES: tuple[str, ...] = (
    "classifier",
    "score",
    "qa_outputs",
    "classification_head",
    "pre_classifier",
)

APPLIED_ATTR = "augreg_adapters"
"""Attribute on the prepared model: ``{component name: fingerprint}`` of the adapters applied."""


def adapter_error(component: augreg.Adapter | str, message: str) -> augreg.AugregError:
    """An error that names the component and its plugin, then says what and how to fix."""
    name = component if isinstance(component, str) else component.name
    return augreg.AugregError(f"augreg: {name} (augreg-adapters): {message}")


def unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper (the model itself otherwise)."""
    if hasattr(model, "peft_config") and hasattr(model, "get_base_model"):
        base: nn.Module = model.get_base_model()  # type: ignore[operator]
        return base
    return model


def is_peft_model(model: nn.Module) -> bool:
    """Whether peft already wrapped the model."""
    return unwrap(model) is not model


def head_modules(model: nn.Module, override: Sequence[str] | None = None) -> list[str]:
    """Top-level module names of the task head (kept trainable by every adapter).

    By default: the children of the model outside its pretrained body
    (``model.base_model_prefix``, e.g. ``bert``) that hold parameters, restricted to the usual
    head names (``classifier``, ``score``, ...) when one is present. ``override`` names them
    explicitly; each must be a top-level module of the model.

    Raises:
        AugregError: an overridden name is not a module of the model, or no head is found.
    """
    base = unwrap(model)
    prefix = str(getattr(base, "base_model_prefix", ""))
    children = [
        name
        for name, module in base.named_children()
        if name != prefix and any(True for _ in module.parameters())
    ]
    if override is not None:
        missing = [n for n in override if n not in dict(base.named_children())]
        if missing:
            raise augreg.AugregError(
                f"augreg: head modules {missing} are not top-level modules of "
                f"{type(base).__name__}; its top-level modules are "
                f"{[n for n, _ in base.named_children()]}. Fix the 'head' option."
            )
        return list(override)
    known = [n for n in children if n in HEAD_NAMES]
    found = known or children
    if not found:
        raise augreg.AugregError(
            f"augreg: no task head found in {type(base).__name__} (no top-level module with "
            f"parameters outside {prefix!r}). Load the model with a task head "
            "(AutoModelForSequenceClassification / ...ForTokenClassification) or set 'head'."
        )
    return found


def already_applied(model: nn.Module, adapter: augreg.Adapter) -> bool:
    """True when this adapter, with these options, was applied to ``model`` already.

    Raises:
        AugregError: the same adapter was applied with other options (applying it again would
            wrap twice).
    """
    applied: dict[str, str] = getattr(model, APPLIED_ATTR, None) or {}
    previous = applied.get(adapter.name)
    if previous is None:
        return False
    if previous == adapter.fingerprint():
        return True
    raise adapter_error(
        adapter,
        "the model already has this adapter with other options; apply it once (build the "
        "model again from the base to change its options).",
    )


def mark_applied(model: nn.Module, adapter: augreg.Adapter) -> None:
    """Record on the model that ``adapter`` was applied (what :func:`already_applied` reads)."""
    applied = dict(getattr(model, APPLIED_ATTR, None) or {})
    applied[adapter.name] = adapter.fingerprint()
    object.__setattr__(model, APPLIED_ATTR, applied)


def trainable_summary(model: nn.Module) -> dict[str, Any]:
    """Trainable and total parameter counts and the trainable share of a model."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {
        "trainable_parameters": int(trainable),
        "total_parameters": int(total),
        "trainable_share": trainable / max(total, 1),
    }
