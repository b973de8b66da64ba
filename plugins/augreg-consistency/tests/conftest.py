"""Tiny models, tokenizer and step contexts with an unlabelled part, all built locally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from augreg.components import SetupContext
from augreg.context import StepContext, UnlabelledBatch
from augreg.testing import make_batch, save_tiny_model, tiny_model, tiny_tokenizer

POSITIVE = ["the movie was great", "i love this film", "a wonderful story", "great acting"]
NEGATIVE = ["the movie was terrible", "i hate this film", "a boring story", "bad acting"]
UNLABELLED = [
    "what a great story",
    "i hate the acting",
    "a wonderful film",
    "the story was boring",
    "love this movie",
    "terrible film",
    "great great film",
    "a bad story",
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny two-label sequence classifier saved as a folder."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-seq"), "sequence_classification", 2)


@pytest.fixture()
def data_files(tmp_path: Path) -> dict[str, Path]:
    """Labelled train/test files and an unlabelled file (whose labels must be ignored)."""
    rows = [{"text": t, "label": 1} for t in POSITIVE] + [{"text": t, "label": 0} for t in NEGATIVE]
    return {
        "train": write_jsonl(tmp_path / "data" / "train.jsonl", rows * 2),
        "test": write_jsonl(tmp_path / "data" / "test.jsonl", rows),
        "unlabelled": write_jsonl(
            tmp_path / "data" / "unlabelled.jsonl",
            [{"text": t, "label": 99} for t in UNLABELLED * 3],
        ),
    }


@pytest.fixture()
def setup_ctx(tmp_path: Path) -> SetupContext:
    """What the pipeline gives components in setup(), for the tiny tokenizer."""
    train = [{"text": t, "label": 1} for t in POSITIVE] + [
        {"text": t, "label": 0} for t in NEGATIVE
    ]
    return SetupContext(
        labels=["0", "1"],
        seed=13,
        cache_dir=tmp_path,
        tokenizer=tiny_tokenizer(),
        train_examples=train,
        max_length=32,
    )


@pytest.fixture()
def unlabelled_texts() -> list[str]:
    """The unlabelled texts of :func:`step_ctx`."""
    return list(UNLABELLED)


@pytest.fixture()
def step_ctx() -> Any:
    """A factory: ``step_ctx(model=None, step=0, state=None)``, see :func:`step_context`."""
    return step_context


def step_context(
    model: torch.nn.Module | None = None, *, step: int = 0, state: dict[str, Any] | None = None
) -> StepContext:
    """A step on two labelled examples with the eight unlabelled texts drawn alongside."""
    tok = tiny_tokenizer()
    batch = make_batch(
        "sequence_classification",
        tok,
        [{"text": POSITIVE[0], "label": 1}, {"text": NEGATIVE[0], "label": 0}],
    )
    inputs = dict(tok(UNLABELLED, padding=True, return_tensors="pt"))
    examples = [{"augreg_id": f"unlabelled:{i}", "text": t} for i, t in enumerate(UNLABELLED)]
    if model is None:
        torch.manual_seed(0)
        model = tiny_model("sequence_classification", seed=0)
        model.train()
    return StepContext(
        model, batch, step=step, state=state, unlabelled=UnlabelledBatch(inputs, examples)
    )
