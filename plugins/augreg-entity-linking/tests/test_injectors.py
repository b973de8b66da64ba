"""What the injectors write: descriptions, markers, lengths, NER alignment, the data stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import augreg
from augreg import IGNORE_TAG, AugregError, SetupContext
from augreg.testing import tiny_tokenizer
from augreg_entity_linking.injectors import Describe, Markers


def _ready(cls: type[Any], tiny_kb: Path, tmp_path: Path, tokenizer: Any = None, **opts: Any):  # type: ignore[no-untyped-def]
    comp = cls(kb=str(tiny_kb), **opts)
    comp.setup(SetupContext(cache_dir=tmp_path, tokenizer=tokenizer, max_length=None))
    return comp


def test_describe_inserts_name_and_description_after_the_mention(
    tiny_kb: Path, tmp_path: Path
) -> None:
    comp = _ready(Describe, tiny_kb, tmp_path, max_knowledge_words=4)
    out = comp.inject({"text": "Paris abducted Helen in the Trojan War.", "label": 1})
    assert out["text"] == ("Paris (Paris: prince of Troy who) abducted Helen in the Trojan War.")
    assert out["label"] == 1
    (link,) = json.loads(out["entity_links"])
    assert link["entity_id"] == "paris_prince" and (link["start"], link["end"]) == (0, 5)


def test_describe_types_and_once_per_entity(tiny_kb: Path, tmp_path: Path) -> None:
    comp = _ready(Describe, tiny_kb, tmp_path, content="types")
    out = comp.inject({"text": "London and London again", "label": 0})
    assert out["text"] == "London (London: national capital) and London again"
    every = _ready(Describe, tiny_kb, tmp_path, content="types", once_per_entity=False)
    assert every.inject({"text": "London, London", "label": 0})["text"] == (
        "London (London: national capital), London (London: national capital)"
    )


def test_describe_truncates_knowledge_not_the_text(tiny_kb: Path, tmp_path: Path) -> None:
    tok = tiny_tokenizer()
    text = "Mary loves Paris and London , really"
    for limit in (12, 16, 24, 40):
        comp = _ready(Describe, tiny_kb, tmp_path, tok, max_length=limit)
        out = comp.inject({"text": text, "label": 1})["text"]
        assert len(tok(out)["input_ids"]) <= limit, (limit, out)
        # the original words are all there, in order
        kept = iter(out.split())
        assert all(any(w == k for k in kept) for w in text.split()), out
    short = _ready(Describe, tiny_kb, tmp_path, tok, max_length=9)
    assert short.inject({"text": text, "label": 1})["text"] == text  # no room: unchanged
    roomy = _ready(Describe, tiny_kb, tmp_path, tok, max_length=24)
    assert "(Paris:" in roomy.inject({"text": text, "label": 1})["text"]


def test_describe_ner_tags_inserted_words_and_goes_after_the_span(
    tiny_kb: Path, tmp_path: Path
) -> None:
    comp = _ready(Describe, tiny_kb, tmp_path, max_knowledge_words=2)
    ex = {
        "tokens": ["The", "Bank", "of", "France", "said", "no", "."],
        "tags": ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O", "O"],
    }
    out = comp.inject(ex)
    assert out["tokens"] == [
        "The", "Bank", "of", "France", "(Bank", "of", "France:", "the", "central)",
        "said", "no", ".",
    ]  # fmt: skip
    assert out["tags"] == ["B-ORG", "I-ORG", "I-ORG", "I-ORG", *[IGNORE_TAG] * 5, "O", "O", "O"]
    # a mention inside a gold span ("Smith" in "Adam Smith") is described after the span
    ex = {"tokens": ["Adam", "Smith", "wrote"], "tags": ["B-PER", "I-PER", "O"]}
    out = comp.inject(ex)
    assert out["tokens"][:3] == ["Adam", "Smith", "(Smith:"]
    assert out["tags"][:2] == ["B-PER", "I-PER"] and out["tags"][-1] == "O"


def test_markers_text_and_ner(tiny_kb: Path, tmp_path: Path) -> None:
    comp = _ready(Markers, tiny_kb, tmp_path)
    out = comp.inject({"text": "Mary loves Paris, on the Seine.", "label": 1})
    assert out["text"] == "Mary loves [national_capital] Paris [/national_capital], on the Seine."
    ner = comp.inject(
        {"tokens": ["Adam", "Smith", "saw", "York"], "tags": ["B-PER", "I-PER", "O", "B-LOC"]}
    )
    # "Smith" would cut the gold span "Adam Smith": left unmarked; York is marked
    assert ner["tokens"] == ["Adam", "Smith", "saw", "[city]", "York", "[/city]"]
    assert ner["tags"] == ["B-PER", "I-PER", "O", IGNORE_TAG, "B-LOC", IGNORE_TAG]
    untyped = _ready(Markers, tiny_kb, tmp_path, open_marker="<e>", close_marker="</e>")
    assert untyped.inject({"text": "York", "label": 0})["text"] == "<e> York </e>"


def test_empty_input_is_returned_unchanged(tiny_kb: Path, tmp_path: Path) -> None:
    for cls in (Describe, Markers):
        comp = _ready(cls, tiny_kb, tmp_path)
        assert comp.inject({"text": "", "label": 0}) == {
            "text": "",
            "label": 0,
            "entity_links": "[]",
        }
        assert comp.inject({"tokens": [], "tags": []})["tokens"] == []
        with pytest.raises(AugregError, match="no string 'text' or 'tokens'"):
            comp.inject({"label": 0})


def test_inject_before_setup_says_so(tiny_kb: Path) -> None:
    with pytest.raises(AugregError, match=r"before setup\(\)"):
        Describe(kb=str(tiny_kb)).inject({"text": "Paris", "label": 0})


def test_data_stage_and_tokenization_keep_ner_labels(tiny_kb: Path, tmp_path: Path) -> None:
    """Through the core: injected rows pass the stage's checks; inserted words get -100."""
    from datasets import Dataset

    from augreg.config import TaskConfig
    from augreg.data import DataStage
    from augreg.tasks import get_task

    comp = _ready(Describe, tiny_kb, tmp_path, max_knowledge_words=3)
    rows = {
        "tokens": [["Mary", "loves", "Paris", "."], ["No", "entity", "here"]],
        "tags": [["B-PER", "O", "B-LOC", "O"], ["O", "O", "O"]],
        "augreg_id": ["a", "b"],
    }
    stage = DataStage([comp], [], seed=1, task="token_classification", cache_dir=None,
                      show_progress=False)  # fmt: skip
    ds = stage.inject(Dataset.from_dict(rows))
    assert ds[0]["tokens"] == ["Mary", "loves", "Paris", "(Paris:", "the", "capital", "and)", "."]
    assert ds[1]["tokens"] == rows["tokens"][1]
    task = get_task(TaskConfig(type="token_classification"), augreg.testing.DEFAULT_TAGS)
    tok = tiny_tokenizer()
    enc = task.tokenize_batch(ds[:1], tok, max_length=64)
    labels = [x for x in enc["labels"][0] if x != -100]
    assert [task.labels[i] for i in labels] == ["B-PER", "O", "B-LOC", "O"]
