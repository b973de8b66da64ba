"""Options: validation errors rendered as one short, fixable line each."""

from __future__ import annotations

import pydantic
import pytest
from pydantic import BaseModel, Field

import augreg
from augreg.builtins.objectives import LabelSmoothing
from augreg.builtins.regularizers import EmbeddingNoise
from augreg.options import describe_validation_error


def _message(**options: object) -> str:
    with pytest.raises(augreg.OptionsError) as excinfo:
        LabelSmoothing(**options)
    return str(excinfo.value)


def test_bound_error_names_the_option_bound_and_value() -> None:
    assert _message(epsilon=1.5) == (
        "augreg: invalid options for core.label_smoothing:\n  epsilon must be < 1.0, got 1.5"
    )


def test_every_problem_is_reported_at_once() -> None:
    assert _message(epsilon=0, weight=-1) == (
        "augreg: invalid options for core.label_smoothing:\n"
        "  weight must be >= 0.0, got -1\n"
        "  epsilon must be > 0.0, got 0"
    )


def test_unknown_option_suggests_the_closest_and_lists_the_known() -> None:
    assert _message(epsilonn=0.1).endswith(
        "epsilonn is not an option. Did you mean 'epsilon'? Known options: weight, epsilon."
    )


def test_wrong_type_uses_pydantic_message_in_lower_case() -> None:
    assert _message(weight="abc").endswith(
        "weight: input should be a valid number, unable to parse string as a number, got 'abc'"
    )


def test_wrong_literal_lists_the_choices() -> None:
    with pytest.raises(augreg.OptionsError, match=r"scale: input should be 'absolute', "
                       r"'relative' or 'neftune', got 'loud'"):  # fmt: skip
        EmbeddingNoise(scale="loud")


def test_options_must_be_a_dict_or_options() -> None:
    with pytest.raises(augreg.OptionsError, match=r"options must be a dict or "
                       r"LabelSmoothing\.Options, got list"):  # fmt: skip
        LabelSmoothing(["epsilon"])  # type: ignore[arg-type]


def test_options_instance_plus_keywords_is_revalidated() -> None:
    base = LabelSmoothing.Options(epsilon=0.2)
    assert LabelSmoothing(base, weight=3.0).options.weight == 3.0  # type: ignore[attr-defined]
    assert LabelSmoothing(base).options.epsilon == 0.2  # type: ignore[attr-defined]
    with pytest.raises(augreg.OptionsError, match=r"epsilon must be < 1\.0, got 2"):
        LabelSmoothing(base, epsilon=2)


def test_options_are_frozen_and_forbid_extra() -> None:
    opts = LabelSmoothing(epsilon=0.2).options
    with pytest.raises(pydantic.ValidationError):
        opts.epsilon = 0.3  # type: ignore[attr-defined]
    with pytest.raises(pydantic.ValidationError):
        LabelSmoothing.Options(nope=1)  # type: ignore[call-arg]


class Inner(augreg.Options):
    p: float = Field(0.5, ge=0, le=1, description="A probability.")


class Outer(augreg.Options):
    name: str = Field(description="Required.")
    inner: Inner = Field(default_factory=Inner, description="Nested.")
    items: list[Inner] = Field(default_factory=list, description="A list.")


def _lines(model: type[BaseModel], **values: object) -> list[str]:
    with pytest.raises(pydantic.ValidationError) as excinfo:
        model(**values)
    return describe_validation_error(excinfo.value, model)


def test_nested_locations_missing_fields_and_nested_suggestions() -> None:
    assert _lines(Outer) == ["name is required"]
    assert _lines(Outer, name="x", inner={"p": 2}) == ["inner.p must be <= 1.0, got 2"]
    assert _lines(Outer, name="x", items=[{"p": 0.1}, {"pp": 0.1}]) == [
        "items[1].pp is not an option. Did you mean 'p'? Known options: p."
    ]


def test_without_a_model_unknown_keys_get_no_suggestion() -> None:
    with pytest.raises(pydantic.ValidationError) as excinfo:
        Inner(pp=1)  # type: ignore[call-arg]
    assert describe_validation_error(excinfo.value) == ["pp is not an option."]
