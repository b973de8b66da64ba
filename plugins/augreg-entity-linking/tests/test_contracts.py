"""The conformance kit for the injectors, on both tasks, with the tiny KB."""

from __future__ import annotations

from pathlib import Path

from augreg.testing import InjectorContract

KB = str(Path(__file__).parent / "data" / "tiny_kb.jsonl")


class TestDescribe(InjectorContract):
    component = "entity_linking.describe"
    options = {"kb": KB}


class TestDescribeShort(InjectorContract):
    component = "entity_linking.describe"
    options = {"kb": KB, "max_length": 16, "content": "types"}


class TestMarkers(InjectorContract):
    component = "entity_linking.markers"
    options = {"kb": KB}


class TestFusion(InjectorContract):
    component = "entity_linking.fusion"
    options = {"kb": KB, "record_links": True}
