"""Disambiguation, threshold, options validation and the on-disk caches."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from augreg import AugregError, OptionsError
from augreg_entity_linking.injectors import Describe, Markers
from augreg_entity_linking.linker import DISK_CACHE_MIN_TEXTS, EntityLinker, LinkerOptions


def _ids(linker: EntityLinker, text: str) -> list[tuple[str, str]]:
    return [(lk.mention, lk.entity_id) for lk in linker.link(text)]


def test_context_picks_the_candidate_whose_description_fits(linker: EntityLinker) -> None:
    assert _ids(linker, "Paris abducted Helen and so began the Trojan War") == [
        ("Paris", "paris_prince")
    ]
    assert _ids(linker, "Paris, on the Seine, is lovely") == [("Paris", "paris_city")]


def test_prior_decides_without_context(tiny_kb: Path) -> None:
    # no context words: the prior (0.8 city vs 0.2 prince) decides
    assert _ids(EntityLinker.load(LinkerOptions(kb=str(tiny_kb))), "Paris !") == [
        ("Paris", "paris_city")
    ]
    only_context = EntityLinker.load(LinkerOptions(kb=str(tiny_kb), prior_weight=0.0))
    (link,) = only_context.link("Paris !")
    assert link.score == 0.0 and link.candidates == 2


def test_threshold_leaves_weak_mentions_unlinked(tiny_kb: Path) -> None:
    strict = EntityLinker.load(LinkerOptions(kb=str(tiny_kb), threshold=0.5))
    assert _ids(strict, "We met in London.") == []  # score 0.2: prior only
    assert _ids(strict, "London, the capital of England") == [("London", "london")]


def test_empty_text_has_no_links_and_non_text_is_an_error(linker: EntityLinker) -> None:
    assert linker.link("") == []
    assert linker.link_batch(["", "   "]) == [[], []]
    with pytest.raises(AugregError, match="takes strings"):
        linker.link_batch([None])  # type: ignore[list-item]


def test_options_are_validated_with_the_fix(tiny_kb: Path) -> None:
    with pytest.raises(OptionsError, match="prior_weight"):
        Describe(kb=str(tiny_kb), prior_weight=1.5)
    with pytest.raises(OptionsError, match="csv_columns must name distinct fields"):
        Describe(kb="kb.csv", csv_columns=["name", "label"])
    with pytest.raises(OptionsError, match=r"only placeholder is \{type\}"):
        Markers(kb=str(tiny_kb), open_marker="<{kind}>")
    with pytest.raises(OptionsError, match="whitespace"):
        Describe(kb=str(tiny_kb), open="( ")
    with pytest.raises(OptionsError, match="threshold"):
        Describe(kb=str(tiny_kb), prior_weight=1.0, threshold=0.5)


def test_indexes_are_cached_on_disk_and_rebuilt_when_the_kb_changes(
    tiny_kb: Path, tmp_path: Path
) -> None:
    kb = tmp_path / "kb.jsonl"
    kb.write_text(tiny_kb.read_text())
    opts = LinkerOptions(kb=str(kb))
    first = EntityLinker.load(opts, tmp_path / "cache")
    files = sorted((tmp_path / "cache" / "entity_linking").glob("index-*.pkl"))
    assert len(files) == 1
    # the cached index is used: a second load does not parse the KB again
    stamp = files[0].stat().st_mtime_ns
    second = EntityLinker.load(opts, tmp_path / "cache")
    assert files[0].stat().st_mtime_ns == stamp
    assert len(second.kb) == len(first.kb) == 10
    kb.write_text(tiny_kb.read_text() + '{"id": "rome", "name": "Rome", "description": "x"}\n')
    third = EntityLinker.load(opts, tmp_path / "cache")
    assert len(third.kb) == 11
    assert _ids(third, "Rome") == [("Rome", "rome")]


def test_link_results_are_cached_per_texts_and_options(tiny_kb: Path, tmp_path: Path) -> None:
    linker = EntityLinker.load(LinkerOptions(kb=str(tiny_kb)), tmp_path)
    texts = ["Paris abducted Helen", "London"] * (DISK_CACHE_MIN_TEXTS // 2)
    links = linker.link_texts(texts)
    cached = list((tmp_path / "entity_linking" / "links").glob("*.pkl"))
    assert len(cached) == 1
    assert pickle.loads(cached[0].read_bytes()) == links
    assert linker.link_texts(texts) == links
    other = EntityLinker.load(LinkerOptions(kb=str(tiny_kb), threshold=0.9), tmp_path)
    assert other.link_texts(texts) != links
    assert len(list((tmp_path / "entity_linking" / "links").glob("*.pkl"))) == 2


def test_per_view_calls_write_no_file_and_link_alike(
    tiny_kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [
        f"Paris abducted Helen {i}" if i % 3 else f"London and New York City {i}" for i in range(90)
    ]
    expected = EntityLinker.load(LinkerOptions(kb=str(tiny_kb))).link_batch(texts)
    linker = EntityLinker.load(LinkerOptions(kb=str(tiny_kb)), tmp_path)
    calls: list[int] = []
    link_batch = linker.link_batch
    monkeypatch.setattr(linker, "link_batch", lambda ts: calls.append(len(ts)) or link_batch(ts))
    for _epoch in range(3):  # per-epoch views: one call per view, the same texts again
        assert [linker.link_texts([t])[0] for t in texts] == expected
    assert linker.link_texts(texts[:5]) == expected[:5]
    assert not list((tmp_path / "entity_linking").glob("links/*"))  # no file per call
    assert calls == [1] * len(texts)  # every text linked once, then from memory
    monkeypatch.undo()
    # a pickled linker (a data loader worker) starts with an empty memo and still works
    clone = pickle.loads(pickle.dumps(linker))
    assert clone._memo == {} and clone.link_texts(texts[:2]) == expected[:2]
    # calls as large as a data set are still cached on disk, one file per call
    assert linker.link_texts(texts) == expected
    assert len(list((tmp_path / "entity_linking" / "links").glob("*.pkl"))) == 1


def test_corrupt_kb_fails_at_setup_with_line_numbers(tmp_path: Path) -> None:
    kb = tmp_path / "kb.jsonl"
    kb.write_text('{"id": "a", "name": "A"}\n{"id": "a", "name": "B"}\n')
    with pytest.raises(AugregError, match=r"line 2: duplicate id 'a' \(first on line 1\)"):
        EntityLinker.load(LinkerOptions(kb=str(kb)), tmp_path)
