"""The KB loader: formats, and every kind of bad row reported with its line number."""

from __future__ import annotations

from pathlib import Path

import pytest

from augreg_entity_linking.kb import KBError, load_kb


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_loads_every_field(tiny_kb: Path) -> None:
    kb = load_kb(tiny_kb)
    assert len(kb) == 10
    paris = kb.by_id()["paris_city"]
    assert paris.aliases == ("City of Light",)
    assert paris.types == ("national capital",)
    assert paris.prior == 0.8
    assert kb.by_id()["london"].prior is None
    assert kb.by_id()["europe"].description == ""


def test_csv_with_header_splits_lists(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "kb.csv",
        "id,name,aliases,description,types,prior\n"
        'Q1,Paris,City of Light|Paree,"capital of France, on the Seine",city|capital,0.5\n',
    )
    (entity,) = load_kb(path).entities
    assert entity.aliases == ("City of Light", "Paree")
    assert entity.types == ("city", "capital")
    assert entity.description == "capital of France, on the Seine"
    assert entity.prior == 0.5


def test_headerless_csv_needs_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "kb.csv", '"Q1","Roy Emerson","tennis player"\n')
    with pytest.raises(KBError, match=r"line 1: .*csv_columns"):
        load_kb(path)
    kb = load_kb(path, columns=["id", "name", "description"])
    assert kb.entities[0].description == "tennis player"


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "kb.jsonl",
        '{"id": "a", "name": "Alpha"}\n'
        "\n"
        '{"id": "b", "name": ""}\n'
        "{not json\n"
        '{"id": "a", "name": "Again"}\n'
        '{"id": "c", "name": "C", "alias": ["x"]}\n'
        '{"id": "d", "name": "D", "aliases": "x"}\n'
        '{"id": "e", "name": "E", "prior": -1}\n'
        '["a list"]\n',
    )
    with pytest.raises(KBError) as info:
        load_kb(path)
    msg = str(info.value)
    assert "7 problems" in msg
    assert "line 3: name must be a non-empty string" in msg
    assert "line 4: not valid JSON" in msg
    assert "line 5: duplicate id 'a' (first on line 1)" in msg
    assert "line 6: unknown field 'alias' (did you mean 'aliases'?)" in msg
    assert "line 7: aliases must be a list of strings" in msg
    assert "line 8: prior must be a number >= 0" in msg
    assert "line 9: expected a JSON object" in msg


def test_csv_row_with_wrong_cell_count_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "kb.csv", "id,name,description\nQ1,One,first\nQ2,Two\n")
    with pytest.raises(KBError, match=r"line 3: 2 cells but 3 columns"):
        load_kb(path)


def test_empty_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(KBError, match="no entities"):
        load_kb(_write(tmp_path, "kb.jsonl", "\n\n"))
    with pytest.raises(KBError, match="not found"):
        load_kb(tmp_path / "missing.jsonl")
    with pytest.raises(KBError, match="unknown format"):
        load_kb(_write(tmp_path, "kb.txt", "Paris\n"))
    with pytest.raises(KBError, match="not UTF-8"):
        (tmp_path / "bad.jsonl").write_bytes(b'{"id": "\xff"}\n')
        load_kb(tmp_path / "bad.jsonl")
