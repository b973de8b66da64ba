"""entity_linking.fusion with an augmenter that moves words (EDA random swap).

The core recomputes the injector's ``entity_fusion_ids`` on every augmented view, so after a
swap each entity id sits on its own mention's words (or character span) in the view, not where
the mention was in the parent sentence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import Dataset

import augreg
from augreg import SetupContext
from augreg.config import TaskConfig
from augreg.data import PARENT, SOURCE, DataStage
from augreg.tasks import get_task
from augreg.testing import tiny_tokenizer
from augreg_entity_linking.fusion import FIELD, Fusion
from augreg_entity_linking.injectors import SAMPLE_KB

TOK = "token_classification"
SEQ = "sequence_classification"
SENTENCES = [
    (
        ["Mary", "visited", "Paris", "and", "then", "London"],
        ["B-PER", "O", "B-LOC", "O", "O", "B-LOC"],
    ),
    (
        ["France", "is", "big", "and", "London", "is", "old"],
        ["B-LOC", "O", "O", "O", "B-LOC", "O", "O"],
    ),
]
TEXTS = ["Mary loves Paris and London , really", "France is large and London is old"]


def _stage(tmp_path: Path, task: str) -> tuple[DataStage, Fusion]:
    """Fusion on the sample KB, then three random-swap views per example."""
    fusion = Fusion(kb=str(SAMPLE_KB))
    swap = augreg.create("eda.random_swap", alpha=0.5, copies=3)
    stage = DataStage([fusion], [swap], seed=3, task=task, cache_dir=None, show_progress=False)
    stage.setup(SetupContext(task=task, tokenizer=tiny_tokenizer(), cache_dir=tmp_path))
    return stage, fusion


def _names(fusion: Fusion) -> dict[int, str]:
    return {i: e.name for i, e in enumerate(fusion.linker.kb.entities)}


def _tokens_data() -> Dataset:
    return Dataset.from_dict({
        "augreg_id": [f"train:{i}" for i in range(len(SENTENCES))],
        "tokens": [t for t, _ in SENTENCES],
        "tags": [g for _, g in SENTENCES],
    })  # fmt: skip


def _text_data() -> Dataset:
    return Dataset.from_dict({
        "augreg_id": [f"train:{i}" for i in range(len(TEXTS))],
        "text": TEXTS,
        "label": [1, 0],
    })  # fmt: skip


def _word_ids(row: dict[str, Any], names: dict[int, str]) -> list[str | None]:
    """The entity name fused into each word of a token row (None: no entity)."""
    return [names[i] if i >= 0 else None for i in row[FIELD]]


def test_fusion_ids_follow_swapped_words_in_token_classification(tmp_path: Path) -> None:
    stage, fusion = _stage(tmp_path, TOK)
    names = _names(fusion)
    injected = stage.inject(_tokens_data())
    for row in injected:  # each linked mention carries its entity on its own word
        assert [n for n in _word_ids(row, names) if n] == [
            w for w in row["tokens"] if w in ("Paris", "London", "France")
        ]
    out = stage.expand(injected)
    views = out.filter(lambda r: r[SOURCE] == "eda.random_swap")
    assert len(views) >= 4  # 2 examples x 3 copies, less the swaps that cancel out ([])
    moved = 0
    for row in views:
        parent = injected[int(row[PARENT].split(":")[1])]
        assert sorted(row["tokens"]) == sorted(parent["tokens"])  # a swap: same words
        # Every word carries its own entity: the id moved with the mention.
        assert _word_ids(row, names) == [
            w if w in ("Paris", "London", "France") else None for w in row["tokens"]
        ]
        moved += row[FIELD] != parent[FIELD]
    assert moved  # some swaps moved a mention: the parent's ids would have been wrong there
    assert stage.report[fusion.name]["reinjected"] == len(views)
    # The same in per-epoch views, through tokenization (one id per sub-token of the word).
    task = get_task(TaskConfig(type=TOK), ["O", "B-PER", "B-LOC"])
    tok = tiny_tokenizer()
    data = stage.per_epoch_dataset(injected, lambda b: task.tokenize_batch(b, tok, 32, (FIELD,)))
    for index in range(len(SENTENCES), len(data)):
        view = data.example(index)
        assert _word_ids(view, names) == [
            w if w in ("Paris", "London", "France") else None for w in view["tokens"]
        ]
        item = data[index]
        assert len(item[FIELD]) == len(item["input_ids"])


def test_fusion_spans_follow_swapped_words_in_text(tmp_path: Path) -> None:
    stage, fusion = _stage(tmp_path, SEQ)
    names = _names(fusion)
    injected = stage.inject(_text_data())
    out = stage.expand(injected)
    views = out.filter(lambda r: r[SOURCE] == "eda.random_swap")
    assert len(views) > 0
    stale = 0
    for row in views:
        parent = injected[int(row[PARENT].split(":")[1])]
        # Each span covers its entity's name in the view's own text.
        assert [row["text"][s:e] for s, e, i in row[FIELD]] == [names[i] for _, _, i in row[FIELD]]
        assert sorted(i for *_, i in row[FIELD]) == sorted(i for *_, i in parent[FIELD])
        stale += any(row["text"][s:e] != names[i] for s, e, i in parent[FIELD])
    assert stale  # the parent's spans would have pointed at other words
    data = stage.per_epoch_dataset(injected, lambda b: b)
    data.set_epoch(2)
    for index in range(len(TEXTS), len(data)):
        view = data.example(index)
        assert [view["text"][s:e] for s, e, i in view[FIELD]] == [
            names[i] for _, _, i in view[FIELD]
        ]


def test_per_epoch_views_add_no_link_cache_files(tmp_path: Path) -> None:
    # Each view is linked in its own call; those calls are memoised in memory, not on disk.
    stage, _ = _stage(tmp_path, SEQ)
    data = stage.per_epoch_dataset(stage.inject(_text_data()), lambda b: b)
    for epoch in range(4):
        data.set_epoch(epoch)
        for index in range(len(data)):
            assert data[index][FIELD] is not None
    assert not list(tmp_path.glob("entity_linking/links/*"))
