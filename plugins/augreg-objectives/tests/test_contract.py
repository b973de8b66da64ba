"""The conformance kit for every component of augreg-objectives (each task it supports)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from augreg.testing import (
    DEFAULT_TAGS,
    CombinerContract,
    ObjectiveContract,
    save_tiny_model,
)

# Options are class attributes, fixed before fixtures run: the kit's teachers live in a folder
# made at import (a tiny model each, a few hundred kB).
_TEACHERS = Path(tempfile.mkdtemp(prefix="augreg-objectives-teachers-"))
SEQ_TEACHER = save_tiny_model(_TEACHERS / "seq", "sequence_classification", 2, seed=5)
TOK_TEACHER = save_tiny_model(_TEACHERS / "tok", "token_classification", len(DEFAULT_TAGS), seed=5)


class TestDistillation(ObjectiveContract):
    component = "objectives.distillation"
    options = {"teacher": str(SEQ_TEACHER)}

    @pytest.fixture(scope="class")
    @classmethod
    def task(cls) -> str:  # the teacher has the sequence labels; tokens: TestDistillationTokens
        return "sequence_classification"

    def test_ignores_label_minus_100(self, *args: Any, **kwargs: Any) -> None:
        pytest.skip("token positions are checked by TestDistillationTokens")


class TestDistillationTokens(ObjectiveContract):
    component = "objectives.distillation"
    options = {"teacher": str(TOK_TEACHER), "hidden_weight": 0.5}

    @pytest.fixture(scope="class")
    @classmethod
    def task(cls) -> str:
        return "token_classification"


class TestSupervisedContrastive(ObjectiveContract):
    component = "objectives.supervised_contrastive"


class TestSimCSE(ObjectiveContract):
    component = "objectives.simcse"


class TestMaskedLM(ObjectiveContract):
    component = "objectives.mlm"


class TestUncertainty(CombinerContract):
    component = "objectives.uncertainty"


class TestPCGrad(CombinerContract):
    component = "objectives.pcgrad"
