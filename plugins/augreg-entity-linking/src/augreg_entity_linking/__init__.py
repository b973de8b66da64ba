"""augreg-entity-linking: link mentions to a knowledge base and inject what it knows.

Components: ``entity_linking.describe`` (K-BERT-style ``name: description`` after each linked
mention), ``entity_linking.markers`` (typed markers around linked mentions) and
``entity_linking.fusion`` (ERNIE-style entity vectors gated into the mention tokens' input
embeddings). The linker
itself (:class:`EntityLinker`) and the KB loader (:func:`load_kb`) are usable on their own.
"""

from augreg_entity_linking.kb import Entity, KBError, KnowledgeBase, load_kb
from augreg_entity_linking.linker import EntityLinker, Link, LinkerOptions

__all__ = ["Entity", "EntityLinker", "KBError", "KnowledgeBase", "Link", "LinkerOptions", "load_kb"]
