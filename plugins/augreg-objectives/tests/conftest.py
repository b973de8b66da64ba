"""Tiny teachers and students saved as folders (loadable by path, like hub models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from augreg.testing import save_tiny_model

POSITIVE = ["the movie was great", "i love this film", "a wonderful story", "great acting"]
NEGATIVE = ["the movie was terrible", "i hate this film", "a boring story", "bad acting"]


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny two-label sequence classifier (the student's checkpoint)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-seq"), "sequence_classification", 2)


@pytest.fixture(scope="session")
def teacher_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny two-label classifier (other seed): a teacher."""
    return save_tiny_model(tmp_path_factory.mktemp("teacher"), "sequence_classification", 2, seed=5)


@pytest.fixture()
def train_file(tmp_path: Path) -> Path:
    rows = [{"text": t, "label": 1} for t in POSITIVE] + [{"text": t, "label": 0} for t in NEGATIVE]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows * 2), encoding="utf-8")
    return path
