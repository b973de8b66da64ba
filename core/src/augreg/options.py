"""Options: the validated, frozen settings of every component.

Each component has a nested ``Options`` class derived from :class:`Options`: every field is
typed, bounded and described, unknown keys are rejected, and instances are frozen so that a
component's behaviour (and its cache fingerprint) cannot change after it is built.

Example:
    >>> from pydantic import Field
    >>> class SwapOptions(Options):
    ...     alpha: float = Field(0.1, gt=0, le=1, description="Fraction of words swapped.")
    >>> SwapOptions(alpha=0.2).alpha
    0.2
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["Options", "ValidationError", "describe_validation_error", "lr_scale_field"]


class Options(BaseModel):
    """Base class of component options: unknown keys forbidden, instances frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def lr_scale_field(what: str, default: float = 20.0) -> Any:
    """The ``lr_scale`` option of a component that adds weights from scratch (``what``).

    At a fine-tuning rate such as 5e-5 new weights barely move in a few hundred steps; the
    component passes the value to :func:`augreg.step.set_lr_scale`. 20 gives about 1e-3 at
    5e-5, the usual rate for new modules.
    """
    return Field(
        default,
        gt=0,
        le=1e4,
        description=f"Learning rate of {what}, in multiples of the pipeline's (new weights "
        "barely move at a fine-tuning rate); 1 = the pipeline's.",
    )


_BOUNDS = {
    "greater_than": ("gt", "must be > {}"),
    "greater_than_equal": ("ge", "must be >= {}"),
    "less_than": ("lt", "must be < {}"),
    "less_than_equal": ("le", "must be <= {}"),
}


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(options)"


def _fields_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model found by following ``loc`` from ``model``."""
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = field.annotation
        for arg in typing.get_args(current) or ():
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
                break
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def describe_validation_error(
    exc: ValidationError, model: type[BaseModel] | None = None
) -> list[str]:
    """Turn a pydantic error into short lines: ``name must be <= 1, got 1.5``.

    When ``model`` is given, an unknown key is answered with the closest known field.
    """
    lines: list[str] = []
    fields: list[str] = []
    for err in exc.errors(include_url=False):
        loc = _loc(tuple(err.get("loc", ())))
        kind = err.get("type", "")
        value = err.get("input")
        ctx = err.get("ctx") or {}
        if kind in _BOUNDS:
            key, template = _BOUNDS[kind]
            lines.append(f"{loc} {template.format(ctx.get(key))}, got {value!r}")
        elif kind == "extra_forbidden":
            name = loc.split(".")[-1]
            fields = _fields_at(model, tuple(err.get("loc", ()))[:-1]) if model else []
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            known = f" Known options: {', '.join(fields)}." if fields else ""
            lines.append(f"{loc} is not an option.{hint}{known}")
        elif kind == "missing":
            lines.append(f"{loc} is required")
        else:
            msg = str(err.get("msg", "invalid value"))
            msg = msg[0].lower() + msg[1:] if msg else msg
            lines.append(f"{loc}: {msg}, got {value!r}")
    return lines
