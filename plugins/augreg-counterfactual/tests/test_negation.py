"""counterfactual.negation: which sentences it negates, how, and the label it gives them."""

from __future__ import annotations

import random

import pytest

import augreg
from augreg.testing import AugmenterContract
from augreg_counterfactual.negation import Negation
from augreg_counterfactual.rules import negate, negation_sites


class TestNegation(AugmenterContract):
    component = "counterfactual.negation"
    options = {"max_sites": 3}


def built(labels: tuple[str, ...] = ("0", "1"), **options: object) -> Negation:
    aug = Negation(**options)
    aug.setup(augreg.SetupContext(labels=labels))
    return aug


def one(aug: Negation, text: str, label: str = "0") -> list[augreg.Example]:
    return aug.augment({"id": "x", "text": text, "label": label}, random.Random(0))


@pytest.mark.parametrize(
    ("text", "negated"),
    [
        ("the film is bad .", "the film is not bad ."),
        ("the film is not bad .", "the film is bad ."),
        ("it does n't work .", "it does work ."),  # SST-2 tokenization
        ("it doesn't work .", "it does work ."),
        ("it can't fail .", "it can fail ."),
        ("it wo n't fail .", "it will fail ."),  # tokenized "wo n't"
        ("i ca n't complain .", "i can complain ."),
        ("it cannot fail .", "it can fail ."),
        ("i have never been bored .", "i have been bored ."),
        ("it 's a mess .", "it 's not a mess ."),
        ("the director 's cut is long .", "the director 's cut is not long ."),
    ],
)
def test_rules_negate_each_site(text: str, negated: str) -> None:
    assert " ".join(negate(text.split()).words) == negated


def test_negating_twice_restores_a_simple_sentence() -> None:
    words = "the battery life is great .".split()
    assert negate(negate(words).words).words == words


def test_a_sentence_without_a_site_is_unchanged() -> None:
    words = "an impressive hybrid .".split()
    assert negation_sites(words) == []
    assert negate(words).words == words


def test_binary_labels_are_swapped_and_int_labels_stay_ints() -> None:
    aug = built()
    assert one(aug, "it is not bad .", "0") == [{"id": "x", "text": "it is bad .", "label": "1"}]
    out = aug.augment({"id": "y", "text": "it is good .", "label": 1}, random.Random(0))
    assert out == [{"id": "y", "text": "it is not good .", "label": 0}]


def test_opposite_map_for_named_labels() -> None:
    aug = built(("negative", "neutral", "positive"), opposite={"negative": "positive"})
    assert one(aug, "it is awful .", "negative")[0]["label"] == "positive"
    assert one(aug, "it is fine .", "neutral") == []  # no opposite: not written
    assert aug.counts()["no_opposite"] == 1


def test_more_than_two_labels_without_opposite_is_an_error_naming_the_fix() -> None:
    with pytest.raises(augreg.OptionsError, match="Set opposite"):
        built(("a", "b", "c"))


def test_sentences_with_too_many_sites_or_a_skip_word_are_left_alone() -> None:
    aug = built()
    assert one(aug, "it is long and it is dull .") == []  # 2 sites > max_sites 1
    assert one(aug, "if you are bored , leave .") == []  # a conditional
    assert one(aug, "it is short but sweet .") == []  # a contrast
    assert (
        built(max_sites=2, skip_words=[]).augment(
            {"id": "x", "text": "it is long and it is dull .", "label": "0"}, random.Random(0)
        )[0]["text"]
        == "it is not long and it is not dull ."
    )
    assert aug.counts() == {"too_many_sites": 1, "skip_word": 2}


def test_augment_before_setup_says_what_to_do() -> None:
    with pytest.raises(augreg.AugregError, match=r"setup\(ctx\)"):
        Negation().augment({"id": "x", "text": "it is bad .", "label": "0"}, random.Random(0))


def test_input_is_not_mutated() -> None:
    example = {"id": "x", "text": "it is bad .", "label": "0"}
    one(built(), example["text"])
    built().augment(example, random.Random(0))
    assert example == {"id": "x", "text": "it is bad .", "label": "0"}


@pytest.mark.parametrize("options", [{"max_sites": 0}, {"max_sites": 21}, {"unknown": 1}])
def test_bad_options_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(augreg.OptionsError):
        Negation(**options)
