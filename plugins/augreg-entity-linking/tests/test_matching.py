"""Alias matching: word boundaries, longest match, case and punctuation options."""

from __future__ import annotations

from augreg_entity_linking.matching import AliasIndex, normalize


def _found(index: AliasIndex, text: str) -> list[str]:
    return [text[m.start : m.end] for m in index.find(text)]


def test_longest_match_wins_and_matches_do_not_overlap() -> None:
    index = AliasIndex([("New York", 0), ("York", 1), ("New York City", 2)], False, "ignore")
    assert _found(index, "I love New York City and York.") == ["New York City", "York"]
    (match,) = index.find("in New York")
    assert index.candidates[match.alias] == (0,)


def test_matches_stop_at_word_boundaries() -> None:
    index = AliasIndex([("Paris", 0)], False, "ignore")
    assert _found(index, "Parisian food, in Paris-based shops") == ["Paris"]
    assert _found(index, "Parisian food") == []


def test_case_option() -> None:
    pairs = [("Paris", 0)]
    assert _found(AliasIndex(pairs, False, "ignore"), "paris is PARIS") == ["paris", "PARIS"]
    assert _found(AliasIndex(pairs, True, "ignore"), "paris is PARIS or Paris") == ["Paris"]


def test_punctuation_option() -> None:
    pairs = [("St. Louis", 0)]
    ignore = AliasIndex(pairs, False, "ignore")
    keep = AliasIndex(pairs, False, "keep")
    assert _found(ignore, "St Louis and St. Louis") == ["St Louis", "St. Louis"]
    assert _found(keep, "St Louis and St. Louis") == ["St. Louis"]
    assert normalize("Jean-Paul  SARTRE", False, "ignore") == "jean paul sartre"


def test_skip_and_min_chars() -> None:
    index = AliasIndex([("Will", 0), ("X", 1), ("Troy", 2)], False, "ignore", {"will"}, 2)
    assert _found(index, "Will X go to Troy") == ["Troy"]


def test_empty_text_and_empty_index() -> None:
    assert AliasIndex([("Paris", 0)], False, "ignore").find("") == []
    assert AliasIndex([], False, "ignore").find("Paris") == []


def test_offsets_survive_characters_whose_lower_case_is_longer() -> None:
    index = AliasIndex([("İstanbul", 0), ("Paris", 1)], False, "ignore")
    text = "İstanbul and Paris"
    assert _found(index, text) == ["İstanbul", "Paris"]
