"""hello.shout: the conformance kit plus what the component promises its users."""

from __future__ import annotations

import random

import pytest

import augreg
from augreg.testing import AugmenterContract
from augreg_hello.shout import Shout


class TestShout(AugmenterContract):
    component = "hello.shout"
    options = {"min_length": 3}


def test_shouts_exactly_one_long_enough_word() -> None:
    shout = Shout(min_length=4)
    text = "I saw the movie, frankly great!"
    for seed in range(20):
        (out,) = shout.augment({"text": text, "label": 1}, random.Random(seed))
        changed = [
            (a, b) for a, b in zip(text.split(" "), out["text"].split(" "), strict=True) if a != b
        ]
        assert len(changed) == 1
        before, after = changed[0]
        assert after == before.upper() and len(before) >= 4
        assert out["label"] == 1


def test_token_classification_keeps_tags_and_returns_nothing_when_nothing_to_shout() -> None:
    example = {"tokens": ["John", "lives", "in", "Paris"], "tags": ["B-PER", "O", "O", "B-LOC"]}
    (out,) = Shout().augment(example, random.Random(0))
    assert out["tags"] == example["tags"]
    assert sum(a != b for a, b in zip(out["tokens"], example["tokens"], strict=True)) == 1
    assert Shout(min_length=6).augment(example, random.Random(0)) == []


def test_min_length_is_validated() -> None:
    with pytest.raises(augreg.OptionsError, match="min_length must be >= 1, got 0"):
        Shout(min_length=0)
