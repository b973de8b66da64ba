"""Shared fixtures: the tiny knowledge base of the tests and a linker built on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from augreg_entity_linking.injectors import SAMPLE_KB
from augreg_entity_linking.linker import EntityLinker, LinkerOptions

TINY_KB = SAMPLE_KB


@pytest.fixture
def tiny_kb() -> Path:
    """Ten entities: two named Paris, New York City vs York, John Smith vs Smith, ..."""
    return TINY_KB


@pytest.fixture
def linker() -> EntityLinker:
    """A linker on the tiny KB, built in memory (no cache)."""
    return EntityLinker.load(LinkerOptions(kb=str(TINY_KB)))
