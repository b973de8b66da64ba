"""Injectors with ``model_inputs`` and augmenters: every augmented view gets its own fields.

A toy injector writes one value per word (the word's length; character spans for text) and
declares it in ``model_inputs``; a toy augmenter reverses the word order, so the view has as
many words as its parent but other words in each position. Before the fix the view kept its
parent's per-word values and nothing complained; now each view's values describe its own
words, in the offline data stage, in per-epoch views and in model-made views, while the
originals are untouched and text-level injectors run once.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, ClassVar

import pytest
from datasets import Dataset
from pydantic import Field

import augreg
from augreg.config import TaskConfig
from augreg.data import ID, PARENT, SOURCE, DataStage
from augreg.errors import DataError
from augreg.tasks import get_task
from augreg.testing import tiny_model, tiny_tokenizer

SEQ = "sequence_classification"
TOK = "token_classification"
FIELD = "word_lengths"
TEXTS = ["the movie was great", "so very bad", "i loved this film", "awful acting and plot"]
SENTENCES = [
    (["John", "visited", "Paris", "yesterday"], ["B-PER", "O", "B-LOC", "O"]),
    (["Mary", "met", "Bob"], ["B-PER", "O", "B-PER"]),
]


def word_spans(text: str) -> list[list[int]]:
    """``[start, end, len(word)]`` for each whitespace word of ``text``."""
    spans, pos = [], 0
    for word in text.split():
        start = text.index(word, pos)
        pos = start + len(word)
        spans.append([start, pos, len(word)])
    return spans


class WordLengths(augreg.KnowledgeInjector):
    """A model-input injector: each word's length (plus ``offset``); records what it saw."""

    name = "test.word_lengths"
    model_inputs = (FIELD,)
    seen: ClassVar[list[str]] = []

    class Options(augreg.KnowledgeInjector.Options):
        offset: int = Field(0, ge=0, description="Added to every length.")

    def inject(self, example: augreg.Example) -> augreg.Example:
        off = self.options.offset  # type: ignore[attr-defined]
        if "tokens" in example:
            WordLengths.seen.append(" ".join(example["tokens"]))
            return {**example, FIELD: [len(t) + off for t in example["tokens"]]}
        WordLengths.seen.append(example["text"])
        return {**example, FIELD: [[s, e, v + off] for s, e, v in word_spans(example["text"])]}


class Prefix(augreg.KnowledgeInjector):
    """A text-level injector: inserts the word ``<k>`` first (running twice would show)."""

    name = "test.prefix"

    def inject(self, example: augreg.Example) -> augreg.Example:
        if "tokens" in example:
            return {
                **example,
                "tokens": ["<k>", *example["tokens"]],
                "tags": [augreg.IGNORE_TAG, *example["tags"]],
            }
        return {**example, "text": "<k> " + example["text"]}


class NoGreatFirst(augreg.KnowledgeInjector):
    """A model-input injector that cannot handle a text starting with 'great'."""

    name = "test.no_great_first"
    model_inputs = ("firsts",)

    def inject(self, example: augreg.Example) -> augreg.Example:
        if example["text"].startswith("great"):
            raise ValueError("a text may not start with 'great'")
        return {**example, "firsts": [[0, 1, 1]]}


class Reverse(augreg.Augmenter):
    """Reverses the word order (tags with their words): same length, other words per position."""

    name = "test.reverse"
    calls: ClassVar[int] = 0

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        type(self).calls += 1
        if "tokens" in example:
            return [{**example, "tokens": example["tokens"][::-1], "tags": example["tags"][::-1]}]
        return [{**example, "text": " ".join(example["text"].split()[::-1])}]


class ModelReverse(Reverse):
    """The same, written against the model being trained (a refresh every epoch)."""

    name = "test.model_reverse"
    needs_model: ClassVar[bool] = True

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        assert self.model_context.model is not None
        return super().augment(example, rng)


def seq_dataset() -> Dataset:
    return Dataset.from_dict({
        ID: [f"train:{i}" for i in range(len(TEXTS))],
        "text": TEXTS,
        "label": [i % 2 for i in range(len(TEXTS))],
    })  # fmt: skip


def tok_dataset() -> Dataset:
    return Dataset.from_dict({
        ID: [f"train:{i}" for i in range(len(SENTENCES))],
        "tokens": [t for t, _ in SENTENCES],
        "tags": [g for _, g in SENTENCES],
    })  # fmt: skip


def make_stage(
    injectors: list[augreg.KnowledgeInjector],
    augmenters: list[augreg.Augmenter],
    task: str = SEQ,
    cache: Path | None = None,
) -> DataStage:
    return DataStage(injectors, augmenters, seed=0, task=task, cache_dir=cache,
                     show_progress=False)  # fmt: skip


def expected(row: dict[str, Any], offset: int = 0) -> Any:
    """The field as the injector computes it on the row's own words."""
    if "tokens" in row:
        return [len(t) + offset for t in row["tokens"]]
    return [[s, e, v + offset] for s, e, v in word_spans(row["text"])]


def test_expand_recomputes_model_inputs_on_views_only(tmp_path: Path) -> None:
    st = make_stage([Prefix(), WordLengths()], [Reverse()], cache=tmp_path / "cache")
    injected = st.inject(seq_dataset())
    WordLengths.seen = []
    out = st.expand(injected)
    originals = out.filter(lambda r: r[SOURCE] == "original")
    views = out.filter(lambda r: r[SOURCE] == "test.reverse")
    assert originals[FIELD] == injected[FIELD] and originals["text"] == injected["text"]
    assert len(views) == len(TEXTS)
    for row in views:
        assert row[FIELD] == expected(row)  # the view's own words, not its parent's
        parent = injected[int(row[PARENT].split(":")[1])]
        assert row[FIELD] != parent[FIELD]  # what the view would have kept before
        assert row["text"].split() == parent["text"].split()[::-1]
        assert row["text"].count("<k>") == 1  # the text-level injector did not run again
    assert sorted(WordLengths.seen) == sorted(views["text"])  # views only, not the originals
    assert st.report["test.word_lengths"] == {"rows": len(TEXTS), "reinjected": len(TEXTS)}
    assert "reinjected" not in st.report["test.prefix"]


def test_expand_leaves_data_without_the_fields_alone() -> None:
    st = make_stage([WordLengths()], [Reverse()])
    WordLengths.seen = []
    out = st.expand(seq_dataset())  # not injected: nothing to recompute
    assert FIELD not in out.column_names and WordLengths.seen == []


def test_expand_cache_key_covers_the_recomputed_fields(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    injected = make_stage([WordLengths()], []).inject(seq_dataset())
    # A cache written without re-injection (the layout before it existed): stale fields.
    stale = make_stage([], [Reverse()], cache=cache).expand(injected)
    assert stale[FIELD][len(TEXTS) :] == injected[FIELD]
    Reverse.calls = 0
    fresh = make_stage([WordLengths()], [Reverse()], cache=cache).expand(injected)
    assert Reverse.calls == len(TEXTS)  # not read from the stale cache
    assert all(r[FIELD] == expected(r) for r in fresh.select(range(len(TEXTS), len(fresh))))
    again_stage = make_stage([WordLengths()], [Reverse()], cache=cache)
    again = again_stage.expand(injected)
    assert Reverse.calls == len(TEXTS)  # the same components: read from the cache
    assert again[FIELD] == fresh[FIELD]
    assert again_stage.report["test.word_lengths"]["reinjected"] == len(TEXTS)
    other = make_stage([WordLengths(offset=1)], [Reverse()], cache=cache).expand(injected)
    assert Reverse.calls == 2 * len(TEXTS)  # the injector's options are in the key
    assert all(r[FIELD] == expected(r, 1) for r in other.select(range(len(TEXTS), len(other))))


def test_per_epoch_views_get_their_own_fields_tokenized() -> None:
    task = get_task(TaskConfig(), ["0", "1"])
    tok = tiny_tokenizer()

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return task.tokenize_batch(batch, tok, 32, (FIELD,))

    st = make_stage([Prefix(), WordLengths()], [Reverse()])
    injected = st.inject(seq_dataset())
    data = st.per_epoch_dataset(injected, tokenize)
    n = len(TEXTS)
    for i in range(n):
        assert data.example(i)[FIELD] == injected[i][FIELD]  # the originals, as injected
        view = data.example(n + i)
        assert view[SOURCE] == "test.reverse" and view["text"].count("<k>") == 1
        assert view[FIELD] == expected(view) != injected[i][FIELD]
    assert st.report["test.word_lengths"]["reinjected"] == n  # one per view written
    # The tokenized item carries the view's values: the last word's length on its sub-tokens.
    view, item = data.example(n), data[n]
    last = view["text"].split()[-1]
    values = [v for v in item[FIELD] if v >= 0]
    assert values[-1] == len(last) and values[0] == len(view["text"].split()[0])


def test_token_classification_expand_and_per_epoch() -> None:
    st = make_stage([Prefix(), WordLengths()], [Reverse()], task=TOK)
    injected = st.inject(tok_dataset())
    out = st.expand(injected)
    views = out.select(range(len(SENTENCES), len(out)))
    assert out.select(range(len(SENTENCES)))[FIELD] == injected[FIELD]
    for row in views:
        assert row[FIELD] == expected(row) and row["tokens"].count("<k>") == 1
        assert row["tokens"][-1] == "<k>"  # reversed: the prefix moved last, inserted once
    assert views[0][FIELD] == [9, 5, 7, 4, 3]  # yesterday Paris visited John <k>
    task = get_task(TaskConfig(type=TOK), ["O", "B-PER", "B-LOC"])
    tok = tiny_tokenizer()
    data = st.per_epoch_dataset(injected, lambda b: task.tokenize_batch(b, tok, 32, (FIELD,)))
    view = data.example(len(SENTENCES))
    assert view[FIELD] == [9, 5, 7, 4, 3]
    item = data[len(SENTENCES)]  # each word's value on its sub-tokens, in the view's order
    values = [v for v in item[FIELD] if v >= 0]
    assert values[0] == 9 and values[-1] == 3 and sorted(set(values)) == [3, 4, 5, 7, 9]


def test_model_made_views_get_their_own_fields() -> None:
    st = make_stage([WordLengths()], [ModelReverse()])
    injected = st.inject(seq_dataset())
    data = st.per_epoch_dataset(injected, lambda b: b)
    data.set_epoch(0, tiny_model(SEQ, num_labels=2, seed=0), tiny_tokenizer())
    n = len(TEXTS)
    for i in range(n):
        view = data.example(n + i)
        assert view[SOURCE] == "test.model_reverse"
        assert view[FIELD] == expected(view) != injected[i][FIELD]
    assert st.report["test.word_lengths"]["reinjected"] == n


def test_fields_that_cannot_be_recomputed_name_augmenter_injector_and_fix() -> None:
    st = make_stage([NoGreatFirst()], [Reverse()])
    injected = st.inject(seq_dataset())  # no original starts with 'great'
    with pytest.raises(DataError) as info:
        st.expand(injected)
    text = str(info.value)
    assert "injector test.no_great_first could not recompute its model inputs ['firsts']" in text
    assert "augmenter test.reverse" in text and "train:0" in text
    assert "a text may not start with 'great'" in text
    assert "make test.no_great_first accept every view test.reverse can write" in text
    with pytest.raises(DataError, match=r"test\.no_great_first could not recompute"):
        st.per_epoch_dataset(injected, lambda b: b).example(len(TEXTS))
