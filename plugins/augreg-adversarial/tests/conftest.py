"""NLTK data for the word substitution, and a tiny sentiment model trained until it fits.

CI and the scripts set NLTK_DATA (scripts/env.sh); a bare ``pytest`` here finds the data in
``<repo>/../shared/nltk_data``. Tests that need it fail with the install command, never skip.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

_SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "nltk_data"
if not os.environ.get("NLTK_DATA") and _SHARED.is_dir():
    os.environ["NLTK_DATA"] = str(_SHARED)  # read by nltk when it is first imported

SENTENCES = [
    ("the movie was great and the story was wonderful", 1),
    ("a good film with excellent music", 1),
    ("the actors were great and the plot was fun", 1),
    ("a beautiful story and a nice director", 1),
    ("really good acting in a great film", 1),
    ("the best movie of the year with wonderful scenes", 1),
    ("the movie was terrible and the story was dull", 0),
    ("a bad film with poor music", 0),
    ("the actors were awful and the plot was boring", 0),
    ("an ugly story and a poor director", 0),
    ("really bad acting in a terrible film", 0),
    ("the worst movie of the year with boring scenes", 0),
]
"""Sentences of the tiny vocabulary whose sentiment words have WordNet synonyms."""


@pytest.fixture(scope="session")
def sentiment() -> list[dict[str, Any]]:
    """The :data:`SENTENCES` as examples with ids."""
    return [
        {"text": t, "label": y, "augreg_id": f"train:{i}"} for i, (t, y) in enumerate(SENTENCES)
    ]


@pytest.fixture(scope="session")
def trained(sentiment: list[dict[str, Any]]) -> Any:
    """A tiny BERT trained on :data:`SENTENCES` until it classifies all of them; eval mode."""
    import torch

    from augreg.testing import make_batch, tiny_model, tiny_tokenizer

    model = tiny_model(seed=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    batch = make_batch("sequence_classification", tiny_tokenizer(), sentiment)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(3)
    model.train()
    for _ in range(200):
        opt.zero_grad()
        out = model(**batch)
        out.loss.backward()
        opt.step()
        if (out.logits.argmax(-1) == batch["labels"]).all() and out.loss.item() < 0.05:
            break
    model.eval()
    with torch.no_grad():
        assert (model(**batch).logits.argmax(-1) == batch["labels"]).all(), "did not fit"
    return model


@pytest.fixture(scope="session")
def lexicon() -> Any:
    """WordNet and stopwords; fails (not skips) with the install command when missing."""
    from augreg import AugregError
    from augreg_eda.lexicon import lexicon as load

    try:
        return load()
    except AugregError as exc:
        pytest.fail(f"the word substitution tests need NLTK data: {exc}", pytrace=False)
