"""The knowledge base: entities read from JSONL or CSV, validated with line numbers.

Format (one entity per JSONL line, or one per CSV row under a header):

* ``id`` (required, non-empty string, unique), ``name`` (required, non-empty string),
* ``aliases`` (other names: a JSON list of strings, or ``|``-separated in CSV),
* ``description`` (a short text; may be empty),
* ``types`` (a JSON list of strings, or ``|``-separated in CSV),
* ``prior`` (optional number >= 0: how common the entity is; normalised over the candidates
  of a mention at link time).

Every problem is reported with its line number (all of them, up to 20 shown): a line that is
not JSON, a missing or empty id or name, a duplicate id (with the line of its first use), an
alias list that is not a list of non-empty strings, an unknown field, a prior that is not a
number >= 0. Nothing is dropped silently: a file with any such problem is refused.

A CSV file without a header row (like ``entities.csv`` of the Emerson test) needs its columns
named: ``load_kb(path, columns=["id", "name", "description"])``.

Cost: reading and validating is about 10 ms per 1,000 entities; :func:`load_kb` itself does no
caching (the linker caches the KB together with its indexes, see
:mod:`augreg_entity_linking.linker`).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augreg import AugregError

__all__ = ["FIELDS", "Entity", "KBError", "KnowledgeBase", "kb_digest", "load_kb"]

FIELDS = ("id", "name", "aliases", "description", "types", "prior")
"""The fields an entity may have."""

LIST_SEPARATOR = "|"
"""Separator of several aliases or types inside one CSV cell."""

_MAX_SHOWN = 20


class KBError(AugregError):
    """A knowledge-base file cannot be used; the message lists every problem with its line."""


@dataclass(frozen=True)
class Entity:
    """One entity of the knowledge base.

    Attributes:
        id: Unique id (``wn:paris.n.01``, ``Q48226``).
        name: Its canonical name (also an alias).
        aliases: Other names it is mentioned by.
        description: A short description (may be empty).
        types: Its types, most specific first (may be empty).
        prior: How common it is (>= 0), or ``None`` when the KB does not say.
    """

    id: str
    name: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    types: tuple[str, ...] = ()
    prior: float | None = None


@dataclass(frozen=True)
class KnowledgeBase:
    """Validated entities in file order, and the digest of the file they came from.

    Attributes:
        entities: The entities, in file order.
        source: The file path.
        digest: SHA-256 of the file's bytes and the column names given (cache key).
    """

    entities: tuple[Entity, ...]
    source: str
    digest: str

    def __len__(self) -> int:
        return len(self.entities)

    def by_id(self) -> dict[str, Entity]:
        """Map id -> entity."""
        return {e.id: e for e in self.entities}


def _str_list(value: Any, field: str, line: int, errors: list[str], cell: bool) -> tuple[str, ...]:
    if value is None:
        return ()
    if cell and isinstance(value, str):  # CSV: "a|b"
        parts = [p.strip() for p in value.split(LIST_SEPARATOR)] if value.strip() else []
        if any(not p for p in parts):
            errors.append(f"line {line}: {field} has an empty entry in {value!r}")
        return tuple(p for p in parts if p)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.append(f"line {line}: {field} must be a list of strings, got {value!r}")
        return ()
    if any(not v.strip() for v in value):
        errors.append(f"line {line}: {field} has an empty string in {value!r}")
    return tuple(v.strip() for v in value if v.strip())


def _entity(row: dict[str, Any], line: int, errors: list[str], cell: bool) -> Entity | None:
    n_before = len(errors)
    unknown = [k for k in row if k not in FIELDS]
    for key in unknown:
        close = difflib.get_close_matches(str(key), FIELDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        errors.append(f"line {line}: unknown field {key!r}{hint}; fields are {', '.join(FIELDS)}")
    ident = row.get("id")
    if not isinstance(ident, str) or not ident.strip():
        errors.append(f"line {line}: id must be a non-empty string, got {ident!r}")
    name = row.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.append(f"line {line}: name must be a non-empty string, got {name!r}")
    description = row.get("description") or ""
    if not isinstance(description, str):
        errors.append(f"line {line}: description must be a string, got {description!r}")
    aliases = _str_list(row.get("aliases"), "aliases", line, errors, cell)
    types = _str_list(row.get("types"), "types", line, errors, cell)
    prior_raw = row.get("prior")
    prior: float | None = None
    if prior_raw is not None and prior_raw != "":
        try:
            prior = float(prior_raw)
        except (TypeError, ValueError):
            prior = math.nan
        if isinstance(prior_raw, bool) or not math.isfinite(prior) or prior < 0:
            errors.append(f"line {line}: prior must be a number >= 0, got {prior_raw!r}")
    if len(errors) > n_before:
        return None
    assert isinstance(ident, str) and isinstance(name, str) and isinstance(description, str)
    return Entity(ident.strip(), name.strip(), aliases, description.strip(), types, prior)


def _jsonl_rows(text: str, errors: list[str]) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(value, dict):
            errors.append(f"line {number}: expected a JSON object, got {type(value).__name__}")
            continue
        rows.append((number, value))
    return rows


def _csv_rows(
    text: str, columns: Sequence[str] | None, errors: list[str]
) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    header: list[str] | None = list(columns) if columns is not None else None
    start = 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not record or all(not c.strip() for c in record):
                continue
            if header is None:
                header = [c.strip() for c in record]
                if "id" not in header or "name" not in header:
                    errors.append(
                        f"line {line}: the first row {record!r} is not a header with 'id' and "
                        "'name'. Add a header row (id,name,aliases,description,types,prior) "
                        "or name the columns: csv_columns = ['id', 'name', 'description']"
                    )
                    return []
                continue
            if len(record) != len(header):
                errors.append(
                    f"line {line}: {len(record)} cells but {len(header)} columns ({header})"
                )
                continue
            rows.append((line, dict(zip(header, record, strict=True))))
    except csv.Error as exc:
        errors.append(f"line {reader.line_num}: CSV error: {exc}")
    return rows


def load_kb(path: str | Path, columns: Sequence[str] | None = None) -> KnowledgeBase:
    """Read and validate a knowledge base (``.jsonl``/``.json`` lines or ``.csv``).

    Args:
        path: The file.
        columns: CSV only: column names of a file without a header row.

    Raises:
        KBError: the file is missing, unreadable, empty, or has invalid rows (every problem
            listed with its line number).

    Example:
        >>> kb = load_kb("entities.csv", columns=["id", "name", "description"])  # doctest: +SKIP
        >>> kb.entities[0].name  # doctest: +SKIP
        'Roy Stanley Emerson'
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise KBError(
            f"augreg-entity-linking: knowledge base {str(path)!r} not found; give the path of "
            "a JSONL or CSV file (fields: id, name, aliases, description, types, prior)."
        )
    data = file.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KBError(
            f"augreg-entity-linking: knowledge base {file} is not UTF-8 (byte {exc.start}); "
            "re-encode it as UTF-8."
        ) from None
    suffix = file.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv"):
        raise KBError(
            f"augreg-entity-linking: knowledge base {file}: unknown format {suffix!r}; use "
            "a .jsonl (one JSON object per line) or a .csv file."
        )
    if columns is not None and suffix != ".csv":
        raise KBError(
            f"augreg-entity-linking: csv_columns was given but {file} is not a CSV file; "
            "remove csv_columns."
        )
    errors: list[str] = []
    rows = _csv_rows(text, columns, errors) if suffix == ".csv" else _jsonl_rows(text, errors)
    entities: list[Entity] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        entity = _entity(row, line, errors, cell=suffix == ".csv")
        if entity is None:
            continue
        if entity.id in first_line:
            errors.append(
                f"line {line}: duplicate id {entity.id!r} (first on line {first_line[entity.id]})"
            )
            continue
        first_line[entity.id] = line
        entities.append(entity)
    if errors:
        shown = "\n  ".join(errors[:_MAX_SHOWN])
        more = f"\n  ... and {len(errors) - _MAX_SHOWN} more" if len(errors) > _MAX_SHOWN else ""
        raise KBError(
            f"augreg-entity-linking: knowledge base {file} has {len(errors)} problem"
            f"{'s' if len(errors) != 1 else ''}; fix them (no row is skipped silently):\n  "
            f"{shown}{more}"
        )
    if not entities:
        raise KBError(
            f"augreg-entity-linking: knowledge base {file} has no entities; add one per line."
        )
    return KnowledgeBase(tuple(entities), str(file), kb_digest(data, columns))


def kb_digest(data: bytes, columns: Sequence[str] | None = None) -> str:
    """The cache key of a knowledge-base file's bytes read with these CSV columns."""
    return hashlib.sha256(data + json.dumps(list(columns or [])).encode()).hexdigest()
