"""The conformance kit for the injectors, on both tasks, with the tiny KB."""

from __future__ import annotations

from augreg.testing import InjectorContract
from augreg_entity_linking.injectors import SAMPLE_KB

KB = str(SAMPLE_KB)


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
