"""The conformance kit for every eda component (both tasks where supported)."""

from __future__ import annotations

from augreg.testing import AugmenterContract


class TestSynonymReplacement(AugmenterContract):
    component = "eda.synonym_replacement"
    options = {"alpha": 0.2}


class TestRandomInsertion(AugmenterContract):
    component = "eda.random_insertion"
    options = {"alpha": 0.2}


class TestRandomSwap(AugmenterContract):
    component = "eda.random_swap"
    options = {"alpha": 0.2}


class TestRandomDeletion(AugmenterContract):
    component = "eda.random_deletion"
    options = {"alpha": 0.2}


class TestEda(AugmenterContract):
    component = "eda.eda"
    options = {"preset": "paper-2000"}


class TestEdaAuto(AugmenterContract):
    component = "eda.eda"


class TestMentionReplacement(AugmenterContract):
    component = "eda.mention_replacement"
    options = {"p": 0.5}


class TestKeyboard(AugmenterContract):
    component = "eda.keyboard"


class TestOcr(AugmenterContract):
    component = "eda.ocr"


class TestCharRandom(AugmenterContract):
    component = "eda.char_random"
    options = {"action": "swap"}


class TestSpelling(AugmenterContract):
    component = "eda.spelling"
