"""Shared fixtures: tiny model folders and tiny data files, all built locally."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import augreg
from augreg.testing import short_train
from augreg.testing.models import save_tiny_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

POSITIVE = [
    "the movie was great",
    "i love this film",
    "a wonderful story",
    "great acting",
    "the best film this year",
    "beautiful music and a nice plot",
    "really fun",
    "excellent director",
    "so good",
    "the actors were wonderful",
]
NEGATIVE = [
    "the movie was terrible",
    "i hate this film",
    "a boring story",
    "bad acting",
    "the worst film this year",
    "ugly music and a dull plot",
    "really awful",
    "poor director",
    "so bad",
    "the actors were terrible",
]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_seq_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-seq"), "sequence_classification", 2)


@pytest.fixture(scope="session")
def tiny_tok_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-tok"), "token_classification", 2)


@pytest.fixture()
def sentiment_files(tmp_path: Path) -> dict[str, Path]:
    rows = [{"text": t, "label": 1} for t in POSITIVE] + [{"text": t, "label": 0} for t in NEGATIVE]
    ood = [
        {"text": t.replace("film", "phone").replace("movie", "camera"), "label": r["label"]}
        for t, r in zip([r["text"] for r in rows], rows, strict=True)
    ]
    return {
        "train": write_jsonl(tmp_path / "data" / "train.jsonl", rows * 2),
        "validation": write_jsonl(tmp_path / "data" / "validation.jsonl", rows[::2]),
        "test": write_jsonl(tmp_path / "data" / "test.jsonl", rows),
        "ood": write_jsonl(tmp_path / "data" / "ood.jsonl", ood),
    }


@pytest.fixture()
def ner_files(tmp_path: Path) -> dict[str, Path]:
    rows = [
        {
            "tokens": ["John", "Smith", "went", "to", "Paris", "."],
            "ner_tags": ["I-PER", "I-PER", "O", "O", "I-LOC", "O"],
        },
        {
            "tokens": ["Mary", "works", "at", "the", "United", "States", "bank"],
            "ner_tags": ["I-PER", "O", "O", "O", "I-LOC", "I-LOC", "O"],
        },
        {
            "tokens": ["Paris", "London", "and", "Germany"],
            "ner_tags": ["I-LOC", "B-LOC", "O", "I-LOC"],
        },
        {"tokens": ["the", "president", "said", "so"], "ner_tags": ["O", "O", "O", "O"]},
    ]
    return {
        "train": write_jsonl(tmp_path / "ner" / "train.jsonl", rows * 4),
        "test": write_jsonl(tmp_path / "ner" / "test.jsonl", rows),
    }


@pytest.fixture()
def tiny_pipeline(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> Callable[..., augreg.Pipeline]:
    """Builds a sequence pipeline on the tiny model and ``sentiment_files`` (test and ``ood``
    sets): ``tiny_pipeline(train={...}, regularize=[...])``."""

    def make(train: dict[str, Any] | None = None, **kw: Any) -> augreg.Pipeline:
        return augreg.Pipeline(
            model={"name": str(tiny_seq_model), "max_length": 32},
            task="sequence_classification",
            data={
                "train": str(sentiment_files["train"]),
                "test": str(sentiment_files["test"]),
                "eval": {"ood": str(sentiment_files["ood"])},
            },
            train=short_train(tmp_path, **(train or {})),
            name="tiny",
            **kw,
        )

    return make
