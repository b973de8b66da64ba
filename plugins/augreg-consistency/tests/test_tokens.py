"""Token classification: words paired between a text and its view, per-token terms."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch

from augreg.components import SetupContext
from augreg.context import StepContext, UnlabelledBatch
from augreg.testing import DEFAULT_TAGS, make_batch, tiny_model, tiny_tokenizer
from augreg_consistency.base import align_words
from augreg_consistency.self_training import SelfTraining
from augreg_consistency.uda import Uda

SENTENCES = [
    ["John", "lives", "in", "Paris"],
    ["the", "bank", "of", "London", "is", "old"],
    ["Mary", "met", "Anna"],
]


def test_align_words_pairs_kept_and_substituted_words_only() -> None:
    words = ["a", "big", "cat", "sat"]
    assert align_words(words, words) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert align_words(words, ["a", "huge", "cat", "sat"]) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert align_words(words, ["a", "cat", "sat"]) == [(0, 0), (2, 1), (3, 2)]  # deletion
    assert align_words(words, ["a", "big", "fat", "cat", "sat"]) == [  # insertion
        (0, 0),
        (1, 1),
        (2, 3),
        (3, 4),
    ]
    swapped = align_words(words, ["a", "sat", "cat", "big"])
    assert all(words[i] == ["a", "sat", "cat", "big"][j] for i, j in swapped)  # never crossed
    assert align_words(words, ["a", "very", "big", "cat"])[:1] == [(0, 0)]


@pytest.fixture()
def token_setup(setup_ctx: SetupContext) -> SetupContext:
    return replace(
        setup_ctx,
        task="token_classification",
        labels=list(DEFAULT_TAGS),
        train_examples=[{"tokens": ["John", "went"], "tags": ["B-PER", "O"]}],
    )


def _token_ctx(state: dict[str, Any] | None = None) -> StepContext:
    tok = tiny_tokenizer()
    batch = make_batch(
        "token_classification",
        tok,
        [{"tokens": ["John", "went", "home"], "tags": ["B-PER", "O", "O"]}],
        label_names=DEFAULT_TAGS,
    )
    inputs = dict(tok(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt"))
    examples = [{"augreg_id": f"unlabelled:{i}", "tokens": t} for i, t in enumerate(SENTENCES)]
    torch.manual_seed(0)
    model = tiny_model("token_classification", num_labels=len(DEFAULT_TAGS), seed=0).train()
    return StepContext(
        model,
        batch,
        task="token_classification",
        state=state,
        unlabelled=UnlabelledBatch(inputs, examples),
    )


def _build(cls: Any, setup: SetupContext, **options: Any) -> Any:
    component = cls(options)
    component.setup(setup)
    return component


def test_uda_per_word_with_a_substituting_augmenter(token_setup: SetupContext) -> None:
    uda = _build(Uda, token_setup, augmenter="eda.keyboard", threshold=0.0)
    ctx = _token_ctx()
    clean, view, ids = uda.paired_logits(ctx)
    assert len(ids) == sum(len(s) for s in SENTENCES)  # typos keep every word in place
    assert ids[0] == "unlabelled:0#0" and clean.shape == view.shape == (13, len(DEFAULT_TAGS))
    assert not clean.requires_grad and view.requires_grad
    term = uda.loss(_token_ctx())
    assert float(term.detach()) > 0
    term.backward()  # type: ignore[no-untyped-call]


def test_inserted_words_get_no_term(token_setup: SetupContext) -> None:
    uda = _build(
        Uda,
        token_setup,
        augmenter="eda.random_insertion",
        threshold=0.0,
        augmenter_options={"alpha": 0.5},
    )
    ctx = _token_ctx()
    _, examples = uda.unlabelled_batch(ctx)
    views = uda.view_examples(ctx, examples)
    assert any(len(v) > len(s) for v, s in zip(views, SENTENCES, strict=True))
    _, _, ids = uda.paired_logits(_token_ctx())
    assert len(ids) == sum(len(s) for s in SENTENCES)  # the original words only


def test_uda_per_word_zero_below_threshold(token_setup: SetupContext) -> None:
    uda = _build(Uda, token_setup, augmenter="eda.keyboard", threshold=0.99)
    ctx = _token_ctx()
    assert float(uda.loss(ctx).detach()) == 0.0
    assert ctx.state["consistency.uda"]["mask_rate"] == 0.0


def test_self_training_writes_per_token_pseudo_labels(token_setup: SetupContext) -> None:
    st = _build(
        SelfTraining, token_setup, augmenter="eda.keyboard", threshold=0.0, balance="flexmatch"
    )
    ctx = _token_ctx()
    term = st.loss(ctx)
    assert float(term.detach()) > 0
    latest = ctx.state["consistency.self_training"]["latest"]
    assert len(latest) == 13 and "unlabelled:1#3" in latest  # one record per word
    assert st._prior is not None and st._prior[DEFAULT_TAGS.index("O")] == 0.5
