"""The data stage: load and check the splits, then inject knowledge and augment.

:func:`load_data` reads every split of a pipeline config (local JSON/JSONL/CSV/TSV files, hub
data sets, or in-memory data sets), checks them and returns a :class:`DataBundle` of
``datasets.Dataset`` objects in augreg's fixed column layout:

* sequence classification: ``augreg_id`` (str), ``text`` (str), ``label`` (int index)
* token classification: ``augreg_id`` (str), ``tokens`` (list[str]), ``tags`` (list[str], IOB2)

Bad input is never dropped silently: every problem is a :class:`augreg.DataError` that names
the file (and line), the column, or the offending row ids, and says how to fix it.

:class:`DataStage` then runs knowledge injectors and augmenters over a split, either once
(:meth:`DataStage.expand`, cached on disk by a fingerprint of the input and the components) or
lazily with fresh views every epoch (:meth:`DataStage.per_epoch_dataset`). Every augmenter call
gets its own ``random.Random`` from (seed, component, example id, epoch, copy), so results do
not depend on batch size, order or the number of processes.

Example:
    >>> bundle = load_data(cfg)  # doctest: +SKIP
    >>> stage = DataStage([], [RandomSwap()], seed=13, task="sequence_classification",
    ...                   cache_dir=Path("cache"))  # doctest: +SKIP
    >>> train = stage.expand(stage.inject(bundle.train))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets
import torch.utils.data
from datasets import ClassLabel, Dataset, Features, List, Value

from augreg.components import (
    IGNORE_TAG,
    Augmenter,
    Component,
    Example,
    KnowledgeInjector,
    SetupContext,
)
from augreg.config import PipelineConfig, SourceConfig
from augreg.context import UNLABELLED
from augreg.errors import DataError
from augreg.seeding import derive_rng, derive_seed
from augreg.tasks import to_iob2, token_label_set

__all__ = [
    "ID",
    "PARENT",
    "SOURCE",
    "DataBundle",
    "DataStage",
    "PerEpochDataset",
    "UnlabelledCollator",
    "WithUnlabelled",
    "cache_root",
    "dataset_fingerprint",
    "load_data",
]

ID = "augreg_id"
"""Column with each example's stable id (``"<split>:<row>"`` or the mapped ``id`` column)."""
SOURCE = "augreg_source"
"""Provenance column: ``"original"`` or the name of the augmenter that wrote the row."""
PARENT = "augreg_parent"
"""Provenance column: the ``augreg_id`` of the row an augmented row was made from."""
PROVENANCE = (SOURCE, PARENT)
ORIGINAL = "original"

_CACHE_FORMAT = "augreg-data-1"  # bump when the cached layout changes
_MAX_IDS = 10

# -- the bundle ------------------------------------------------------------------------------


@dataclass
class DataBundle:
    """The checked splits of a pipeline, in augreg's column layout.

    Attributes:
        train: The training split (after the ``train_size`` subset).
        validation: The validation split, if configured.
        test: The test split, if configured.
        eval: Named extra evaluation sets (e.g. out of domain).
        labels: Label names in index order (IOB2 tags for token classification).
    """

    train: Dataset
    validation: Dataset | None = None
    test: Dataset | None = None
    eval: dict[str, Dataset] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    """Ids of rows skipped per split (only with ``data.empty_rows = "skip"``)."""
    unlabelled: Dataset | None = None
    """Unlabelled text (``data.unlabelled``): ``augreg_id`` and ``text`` (or ``tokens``); with
    ``"train:rest"``, the training rows outside :attr:`train`, ids ``unlabelled:<train id>``."""


def cache_root(cfg: PipelineConfig) -> Path:
    """The pipeline's cache folder: ``data.cache_dir``, ``$AUGREG_CACHE`` or ``~/.cache/augreg``."""
    if cfg.data.cache_dir:
        return cfg.resolve_path(cfg.data.cache_dir)
    return Path(os.environ.get("AUGREG_CACHE", Path.home() / ".cache" / "augreg"))


@contextmanager
def _progress(enabled: bool) -> Iterator[None]:
    """Turn datasets' progress bars off for a block (restoring the previous state)."""
    was_enabled = datasets.is_progress_bar_enabled()
    if not enabled and was_enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and was_enabled:
            datasets.enable_progress_bars()


def _ids_text(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_MAX_IDS])
    more = (
        f", ... ({len(ids)} rows)"
        if len(ids) > _MAX_IDS
        else f" ({len(ids)} row{'s' if len(ids) != 1 else ''})"
    )
    return shown + more


# -- reading sources -------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _type_problem(rows: Sequence[tuple[int, Any]], unit: str) -> str | None:
    """First row whose value type of a key differs from the first row that had the key."""
    first: dict[str, tuple[str, int]] = {}
    for where, row in rows:
        if not isinstance(row, dict):
            return f"{unit} {where}: expected an object with named fields, got {_kind(row)}"
        for key, value in row.items():
            kind = _kind(value)
            if kind == "null":
                continue
            seen = first.get(key)
            if seen is None:
                first[key] = (kind, where)
            elif seen[0] != kind:
                return (
                    f"{unit} {where}: field {key!r} is a {kind} here but a {seen[0]} on "
                    f"{unit} {seen[1]}; use one type per field"
                )
    return None


def _scan_json(path: Path) -> str | None:
    """Find the first unreadable line of a JSON/JSONL file (datasets does not say which)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return f"line {line}: not valid UTF-8 ({exc.reason}); save the file as UTF-8"
    if text.lstrip().startswith("["):  # one JSON array, not JSON Lines
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            return f"line {exc.lineno}: invalid JSON ({exc.msg})"
        if not isinstance(doc, list):
            return "line 1: expected a JSON array of objects"
        return _type_problem(list(enumerate(doc)), "element")
    rows: list[tuple[int, Any]] = []
    for n, text_line in enumerate(text.splitlines(), start=1):
        if not text_line.strip():
            continue
        try:
            rows.append((n, json.loads(text_line)))
        except json.JSONDecodeError as exc:
            return f"line {n}: invalid JSON ({exc.msg} at column {exc.colno}): {text_line[:80]!r}"
    return _type_problem(rows, "line")


def _scan_csv(path: Path, delimiter: str, quoting: Literal[0, 1, 2, 3]) -> str | None:
    """Find the first line of a CSV/TSV file whose field count differs from the header's."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter=delimiter, quoting=quoting)
            header: list[str] | None = None
            for row in reader:
                if not row:
                    continue
                if header is None:
                    header = row
                    continue
                if len(row) != len(header):
                    return (
                        f"line {reader.line_num}: {len(row)} fields but the header has "
                        f"{len(header)} ({', '.join(header)}); quote fields that contain "
                        f"{'tabs' if delimiter == chr(9) else 'the delimiter'}"
                    )
    except UnicodeDecodeError:
        for n, line in enumerate(path.read_bytes().split(b"\n"), start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return f"line {n}: not valid UTF-8; save the file as UTF-8"
    except csv.Error as exc:
        return f"line {reader.line_num}: {exc}"
    return None


def _file_format(src: SourceConfig, path: Path, where: str) -> str:
    if src.format:
        return src.format
    suffix = path.suffix.lower()
    formats = {".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv"}
    if suffix not in formats:
        raise DataError(
            f"augreg: {where}: cannot tell the format of {path} from its extension "
            f"{suffix or '(none)'}. Use .jsonl, .json, .csv or .tsv, or set format in the "
            "data source."
        )
    return formats[suffix]


def _load_file(src: SourceConfig, path: Path, where: str, cache: Path, progress: bool) -> Dataset:
    if not path.is_file():
        raise DataError(
            f"augreg: {where}: no such file: {path}. Check the path (relative paths resolve "
            "from the config file's folder or base_dir)."
        )
    fmt = _file_format(src, path, where)
    if path.stat().st_size < 1 << 16 and not path.read_bytes().strip():
        raise DataError(f"augreg: {where}: {path} is empty. Give a file with examples.")
    builder = "json" if fmt in ("json", "jsonl") else "csv"
    kwargs: dict[str, Any] = {}
    delimiter = "\t" if fmt == "tsv" else ","
    quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    if fmt == "tsv":
        # TSV files (GLUE and most corpora) do not quote: a '"' in text is just a character.
        kwargs = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    try:
        with _progress(progress):
            ds = datasets.load_dataset(
                builder, data_files=str(path), split="train", cache_dir=str(cache), **kwargs
            )
    except Exception as exc:
        found = _scan_json(path) if builder == "json" else _scan_csv(path, delimiter, quoting)
        detail = found or f"{type(exc).__name__}: {exc}"
        raise DataError(
            f"augreg: {where}: cannot read {path}: {detail}. Fix the file "
            f"({'one JSON object per line' if fmt == 'jsonl' else fmt.upper()}) and run again."
        ) from exc
    assert isinstance(ds, Dataset)
    return ds


def _load_source(
    cfg: PipelineConfig, src: SourceConfig, role: str, where: str, cache: Path
) -> tuple[Dataset, str]:
    """Return the raw data set of one source and a description for messages."""
    progress = cfg.train.progress
    if src.path is not None:
        path = cfg.resolve_path(src.path)
        return _load_file(src, path, where, cache / "datasets", progress), f"{where} ({path})"
    if src.hub is not None:
        split = src.split or ("test" if role == "eval" else role)
        desc = f"{where} (hub {src.hub}{'/' + src.subset if src.subset else ''}, split {split})"
        try:
            with _progress(progress):
                ds = datasets.load_dataset(src.hub, src.subset, split=split)
        except Exception as exc:
            raise DataError(
                f"augreg: {desc}: cannot load it ({type(exc).__name__}: {exc}). Hub data sets "
                "need network access (HF_HUB_OFFLINE unset) or a local copy in the datasets "
                "cache; or save the split as JSONL and give its path."
            ) from exc
        if not isinstance(ds, Dataset):
            raise DataError(f"augreg: {desc}: expected one split, got {type(ds).__name__}.")
        return ds, desc
    value = src.dataset
    desc = f"{where} (in-memory data set)"
    if isinstance(value, Dataset):
        return value, desc
    if isinstance(value, list):
        if not value:
            raise DataError(f"augreg: {desc} has no rows. Give at least one example.")
        problem = _type_problem(list(enumerate(value)), "row")
        if problem:
            raise DataError(f"augreg: {desc}: {problem}.")
        try:
            return Dataset.from_list(value), desc
        except Exception as exc:
            raise DataError(f"augreg: {desc}: cannot build a data set: {exc}") from exc
    if value is None:
        raise DataError(f"augreg: {where}: give a path, a hub name or a data set.")
    raise DataError(
        f"augreg: {desc}: expected a datasets.Dataset or a list of dicts, got "
        f"{type(value).__name__} (for a DatasetDict, pass one split, e.g. dd['train'])."
    )


# -- normalizing -----------------------------------------------------------------------------


@dataclass
class _Split:
    """One split after column checks, before label indexing."""

    name: str
    desc: str
    ids: list[str]
    inputs: list[Any]  # texts or token lists
    targets: list[Any]  # label keys (str) or IOB2 tag lists
    is_int: list[bool] = field(default_factory=list)  # sequence: label given as integer
    skipped: list[str] = field(default_factory=list)  # ids dropped by data.empty_rows="skip"

    def without(self, drop: set[str]) -> _Split:
        """This split without the rows whose ids are in ``drop`` (recorded as skipped)."""
        keep = [i for i, x in enumerate(self.ids) if x not in drop]
        return _Split(
            self.name,
            self.desc,
            [self.ids[i] for i in keep],
            [self.inputs[i] for i in keep],
            [self.targets[i] for i in keep],
            [self.is_int[i] for i in keep] if self.is_int else [],
            sorted(drop, key=self.ids.index),
        )


def _class_names(feature: Any) -> list[str] | None:
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    inner = getattr(feature, "feature", None)
    if isinstance(inner, ClassLabel):
        return list(inner.names)
    return None


def _columns(cfg: PipelineConfig, present: Sequence[str]) -> dict[str, str]:
    mapping = dict(cfg.data.columns)
    if cfg.task.type == "token_classification":
        roles = {"tokens": "tokens", "tags": "tags"}
        if "tags" not in mapping and "tags" not in present and "ner_tags" in present:
            roles["tags"] = "ner_tags"
    else:
        roles = {"text": "text", "label": "label"}
    roles.update({k: v for k, v in mapping.items() if k in roles or k == "id"})
    return roles


def _label_key(value: Any) -> tuple[str | None, bool, str | None]:
    """(name, given as integer, problem) of one raw label value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, False, None
    if isinstance(value, bool):
        return str(value), False, None
    if isinstance(value, int):
        return str(value), True, None
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value)), True, None
        return None, False, f"{value!r} is not a class label (regression is not supported)"
    if isinstance(value, str):
        return value, False, None
    return None, False, f"{value!r} ({type(value).__name__}) is not a class label"


def _extract(cfg: PipelineConfig, ds: Dataset, name: str, desc: str) -> _Split:
    """Check columns and rows of one split; return its ids, inputs and raw targets."""
    present = list(ds.column_names)
    roles = _columns(cfg, present)
    token = cfg.task.type == "token_classification"
    needed = ["tokens", "tags"] if token else ["text", "label"]
    if "id" in roles:
        needed.append("id")
    for role in needed:
        col = roles[role]
        if col not in present:
            mapped = role in cfg.data.columns
            how = f" (data.columns.{role} = {col!r})" if mapped else ""
            fallback = " or 'ner_tags'" if role == "tags" and not mapped else ""
            raise DataError(
                f"augreg: {desc}: no column {col!r}{fallback} for the {role}{how}. Columns "
                f"present: {present}. Map the file's column with data.columns, e.g. "
                f'[data.columns] {role} = "<column>" (or data={{"columns": {{"{role}": ...}}}}).'
            )
    if len(ds) == 0:
        raise DataError(
            f"augreg: {desc} has no rows. Give a split with examples (an empty split would "
            "train or evaluate on nothing)."
        )
    values = ds.select_columns(sorted({roles[r] for r in needed})).to_dict()
    n = len(ds)
    if "id" in roles:
        ids = [str(x) if x is not None else "" for x in values[roles["id"]]]
        blank = [f"{name}:{i}" for i, x in enumerate(ids) if not x.strip()]
        if blank:
            raise DataError(
                f"augreg: {desc}: empty id (column {roles['id']!r}) in {_ids_text(blank)} "
                "(row numbers count from 0). Give every row an id or unmap data.columns.id."
            )
        dups = sorted(x for x, count in Counter(ids).items() if count > 1)
        if dups:
            raise DataError(
                f"augreg: {desc}: duplicate ids (column {roles['id']!r}): {_ids_text(dups)}. "
                "Ids must be unique (they seed augmentation and name augmented rows)."
            )
    else:
        ids = [f"{name}:{i}" for i in range(n)]
    problems: list[str] = []
    if token:
        return _extract_tokens(cfg, ds, name, desc, ids, values, roles, problems)
    texts = values[roles["text"]]
    bad_text = [ids[i] for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    skip = bad_text if cfg.data.empty_rows == "skip" else []
    if bad_text and not skip:
        problems.append(
            f"empty, missing or non-string text (column {roles['text']!r}) in "
            f"{_ids_text(bad_text)}. Remove those rows, fill in their text, or set "
            'data.empty_rows = "skip" to skip them (they are then listed in the run report)'
        )
    names = _class_names(ds.features[roles["label"]])
    keys: list[Any] = []
    is_int: list[bool] = []
    missing: list[str] = []
    bad_values: list[str] = []
    first_bad = ""
    for i, raw in enumerate(values[roles["label"]]):
        key: str | None
        if names is not None and isinstance(raw, int) and 0 <= raw < len(names):
            key, as_int, problem = names[raw], False, None
        else:
            key, as_int, problem = _label_key(raw)
        if problem:
            bad_values.append(ids[i])
            first_bad = first_bad or problem
        elif key is None:
            missing.append(ids[i])
        keys.append(key)
        is_int.append(as_int)
    if missing:
        problems.append(
            f"missing label (column {roles['label']!r}) in {_ids_text(missing)}. Give every "
            "row a label"
        )
    if bad_values:
        problems.append(f"bad label in {_ids_text(bad_values)}: {first_bad}")
    _raise(desc, problems)
    split = _Split(name, desc, ids, list(texts), keys, is_int)
    return split.without(set(skip)) if skip else split


def _extract_tokens(
    cfg: PipelineConfig,
    ds: Dataset,
    name: str,
    desc: str,
    ids: list[str],
    values: Mapping[str, list[Any]],
    roles: Mapping[str, str],
    problems: list[str],
) -> _Split:
    tokens_col, tags_col = roles["tokens"], roles["tags"]
    names = _class_names(ds.features[tags_col])
    given = cfg.task.labels
    empty: list[str] = []
    bad_tokens: list[str] = []
    mismatch: list[str] = []
    bad_tags: list[str] = []
    first_bad = ""
    out_tags: list[list[str]] = []
    for i, (toks, tags) in enumerate(zip(values[tokens_col], values[tags_col], strict=True)):
        if not isinstance(toks, list) or not toks:
            empty.append(ids[i])
            out_tags.append([])
            continue
        if not all(isinstance(t, str) and t.strip() for t in toks):
            bad_tokens.append(ids[i])
        if not isinstance(tags, list) or len(tags) != len(toks):
            mismatch.append(ids[i])
            out_tags.append([])
            continue
        try:
            as_str = [_tag_name(t, names, given) for t in tags]
            out_tags.append(to_iob2(as_str, cfg.task.tag_scheme))
        except ValueError as exc:
            bad_tags.append(ids[i])
            first_bad = first_bad or str(exc)
            out_tags.append([])
    skip = empty if cfg.data.empty_rows == "skip" else []
    if empty and not skip:
        problems.append(
            f"empty, missing or non-list tokens (column {tokens_col!r}) in {_ids_text(empty)}. "
            'Remove those rows, or set data.empty_rows = "skip" to skip them'
        )
    if bad_tokens:
        problems.append(
            f"empty, whitespace-only or non-string tokens (column {tokens_col!r}) in "
            f"{_ids_text(bad_tokens)}. Remove those tokens and their tags"
        )
    if mismatch:
        problems.append(
            f"tags (column {tags_col!r}) and tokens differ in length in {_ids_text(mismatch)}. "
            "Give exactly one tag per token"
        )
    if bad_tags:
        problems.append(
            f"bad tags in {_ids_text(bad_tags)}: {first_bad}. Check task.tag_scheme "
            f"({cfg.task.tag_scheme!r}) and the tag column"
        )
    _raise(desc, problems)
    split = _Split(name, desc, ids, list(values[tokens_col]), out_tags)
    return split.without(set(skip)) if skip else split


def _tag_name(tag: Any, names: list[str] | None, given: list[str] | None) -> str:
    if isinstance(tag, str):
        return tag
    if isinstance(tag, int) and not isinstance(tag, bool):
        table = names or given
        if table is None:
            raise ValueError(
                f"tag {tag!r} is an integer but the data has no tag names; give task.labels "
                "(tag names in index order)"
            )
        if not 0 <= tag < len(table):
            raise ValueError(f"tag index {tag} is outside the {len(table)} tag names")
        return table[tag]
    raise ValueError(f"tag {tag!r} is not a string")


def _raise(desc: str, problems: Sequence[str]) -> None:
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        raise DataError(
            f"augreg: {desc} has bad rows (ids are <split>:<row number from 0> unless "
            f"data.columns.id is set):\n{lines}"
        )


def _sequence_labels(cfg: PipelineConfig, train: _Split, train_ds: Dataset) -> list[str]:
    if cfg.task.labels is not None:
        return list(cfg.task.labels)
    label_col = _columns(cfg, train_ds.column_names)["label"]
    names = _class_names(train_ds.features[label_col])
    if names is not None:
        return names
    keys = {k for k in train.targets if k is not None}
    if all(train.is_int):
        return [str(x) for x in sorted(int(k) for k in keys)]
    return sorted(keys)


def _index_sequence(split: _Split, labels: list[str], given: bool) -> list[int]:
    index = {name: i for i, name in enumerate(labels)}
    by_position = given and not all(_is_int_text(x) for x in labels)
    out: list[int] = []
    bad: list[str] = []
    bad_values: list[str] = []
    for rid, key, as_int in zip(split.ids, split.targets, split.is_int, strict=True):
        if as_int and by_position and key not in index:
            pos = int(key)
            if 0 <= pos < len(labels):
                out.append(pos)
                continue
        if key in index:
            out.append(index[key])
        else:
            bad.append(rid)
            if key not in bad_values:
                bad_values.append(key)
            out.append(-1)
    if bad:
        if given:
            why = f"labels {bad_values[:10]} are not in task.labels {labels}"
            fix = "Fix the rows or add the labels to task.labels"
        else:
            why = f"labels {bad_values[:10]} never occur in the training split ({labels})"
            fix = "Fix the rows, or give the full label set in task.labels"
        raise DataError(f"augreg: {split.desc}: {why}: {_ids_text(bad)}. {fix}.")
    return out


def _check_tags(split: _Split, labels: list[str], given: bool) -> None:
    allowed = set(labels)
    bad: list[str] = []
    unknown: list[str] = []
    for rid, tags in zip(split.ids, split.targets, strict=True):
        extra = [t for t in tags if t not in allowed]
        if extra:
            bad.append(rid)
            unknown.extend(t for t in extra if t not in unknown)
    if bad:
        where = "task.labels" if given else "the tags of the training split"
        raise DataError(
            f"augreg: {split.desc}: tags {unknown[:10]} (after conversion to IOB2) are not in "
            f"{where} ({labels}): {_ids_text(bad)}. Fix the rows, check task.tag_scheme, or "
            "give the full tag set in task.labels."
        )


def _is_int_text(x: str) -> bool:
    return x.lstrip("-").isdigit()


def _subset(
    cfg: PipelineConfig, n: int, classes: list[int] | None, labels: list[str], desc: str
) -> list[int] | None:
    """Row indices of the training subset (sorted), or None for the whole split."""
    size = cfg.data.train_size
    if size is None:
        return None
    if size > n:
        raise DataError(
            f"augreg: data.train_size is {size} but {desc} has only {n} rows. Lower "
            "train_size or leave it unset to use every row."
        )
    rng = random.Random(derive_seed(cfg.train.seed, "augreg.train_subset", size))
    if classes is None or not cfg.data.balanced:
        return sorted(rng.sample(range(n), size))
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(classes):
        by_class.setdefault(c, []).append(i)
    order = sorted(by_class)
    base, rest = divmod(size, len(order))
    extra = set(rng.sample(order, rest))  # which classes get one more: seeded, not always the first
    picked: list[int] = []
    for c in order:
        want = base + (1 if c in extra else 0)
        have = by_class[c]
        if len(have) < want:
            label = labels[c]
            raise DataError(
                f"augreg: a class-balanced subset of {size} over {len(order)} classes needs "
                f"{want} examples of class {label!r}, but {desc} has only {len(have)}. Lower "
                "data.train_size, or set data.balanced = false."
            )
        picked.extend(rng.sample(have, want))
    return sorted(picked)


def _build(
    split: _Split, token: bool, labels_idx: list[int] | None, rows: list[int] | None
) -> Dataset:
    keep = range(len(split.ids)) if rows is None else rows
    ids = [split.ids[i] for i in keep]
    if token:
        return Dataset.from_dict(
            {
                ID: ids,
                "tokens": [split.inputs[i] for i in keep],
                "tags": [split.targets[i] for i in keep],
            },
            features=Features(
                {
                    ID: Value("string"),
                    "tokens": List(Value("string")),
                    "tags": List(Value("string")),
                }
            ),
        )
    assert labels_idx is not None
    return Dataset.from_dict(
        {ID: ids, "text": [split.inputs[i] for i in keep], "label": [labels_idx[i] for i in keep]},
        features=Features({ID: Value("string"), "text": Value("string"), "label": Value("int64")}),
    )


def load_data(cfg: PipelineConfig) -> DataBundle:
    """Load, check and normalize every split of a pipeline config; take the training subset.

    Reads local JSON/JSONL/CSV/TSV files through ``datasets.load_dataset`` (cached under
    :func:`cache_root`), hub data sets, or in-memory data sets; renames columns with
    ``data.columns``; converts token tags to IOB2 with ``task.tag_scheme``; turns labels into
    indices of :attr:`DataBundle.labels`; adds ``augreg_id``. Labels are ``task.labels`` when
    given (integer labels in files then index them, unless the names are integers), else the
    sorted training labels (integers sorted numerically; for token classification ``"O"``
    first, then ``B-``/``I-`` of every entity type). ``data.unlabelled = "train:rest"`` is
    the training rows outside the ``train_size`` subset, labels dropped.

    It never drops or repairs rows silently (except repairing stray IOB2 ``I-`` tags to
    ``B-``, which is how the scheme is read).

    Raises:
        DataError: an unreadable file (named, with the line), a missing column (with the
            columns present), an empty split, empty texts or token lists, tags not matching
            tokens, labels outside the label set, or an impossible training subset (with
            the offending row ids), or a ``"train:rest"`` with no row left over.
    """
    token = cfg.task.type == "token_classification"
    cache = cache_root(cfg)
    sources: list[tuple[str, str, SourceConfig]] = [("train", "train", cfg.data.train)]
    if cfg.data.validation is not None:
        sources.append(("validation", "validation", cfg.data.validation))
    if cfg.data.test is not None:
        sources.append(("test", "test", cfg.data.test))
    sources.extend((name, "eval", src) for name, src in cfg.data.eval.items())
    splits: dict[str, _Split] = {}
    train_ds: Dataset | None = None
    for name, role, src in sources:
        where = f"data.{name}" if role != "eval" else f"data.eval.{name}"
        ds, desc = _load_source(cfg, src, role, where, cache)
        splits[name] = _extract(cfg, ds, name, desc)
        if name == "train":
            train_ds = ds
    assert train_ds is not None
    train = splits["train"]
    given = cfg.task.labels is not None
    built: dict[str, Dataset] = {}
    if token:
        if cfg.task.labels is not None:
            labels = list(cfg.task.labels)
        else:
            labels = token_label_set([t for tags in train.targets for t in tags])
        for split in splits.values():
            _check_tags(split, labels, given)
        rows = _subset(cfg, len(train.ids), None, labels, train.desc)
        for name, split in splits.items():
            built[name] = _build(split, True, None, rows if name == "train" else None)
    else:
        labels = _sequence_labels(cfg, train, train_ds)
        indices = {name: _index_sequence(split, labels, given) for name, split in splits.items()}
        rows = _subset(cfg, len(train.ids), indices["train"], labels, train.desc)
        for name, split in splits.items():
            built[name] = _build(split, False, indices[name], rows if name == "train" else None)
    skipped = {name: split.skipped for name, split in splits.items() if split.skipped}
    unlabelled = None
    if isinstance(cfg.data.unlabelled, SourceConfig):
        unlabelled, dropped = _load_unlabelled(cfg, cfg.data.unlabelled, cache)
        if dropped:
            skipped["unlabelled"] = dropped
    elif cfg.data.unlabelled is not None:  # "train:rest"
        unlabelled = _train_rest(cfg, train, rows, token)
    return DataBundle(
        train=built["train"],
        validation=built.get("validation"),
        test=built.get("test"),
        eval={name: built[name] for name in cfg.data.eval},
        labels=labels,
        skipped=skipped,
        unlabelled=unlabelled,
    )


def _load_unlabelled(
    cfg: PipelineConfig, src: SourceConfig, cache: Path
) -> tuple[Dataset, list[str]]:
    """The ``data.unlabelled`` set: ``augreg_id`` plus ``text`` (sequence classification) or
    ``tokens`` (token classification); label and tag columns are ignored.

    Returns the data set and the ids of rows skipped for empty text (``data.empty_rows``).

    Raises:
        DataError: unreadable source, no text (tokens) column, no rows, or empty texts.
    """
    where = "data.unlabelled"
    token = cfg.task.type == "token_classification"
    role = "tokens" if token else "text"
    fix = (
        "consistency components train on this text: give at least one example "
        f'({{"{role}": ...}} per line), or remove them and data.unlabelled'
    )
    if src.path is not None:  # an empty file: say what the set is for, not just "empty"
        path = cfg.resolve_path(src.path)
        if path.is_file() and path.stat().st_size < 1 << 16 and not path.read_bytes().strip():
            raise DataError(f"augreg: {where} ({path}) has no rows; {fix}.")
    ds, desc = _load_source(cfg, src, "train", where, cache)
    roles = _columns(cfg, ds.column_names)
    col = roles[role]
    if col not in ds.column_names:
        raise DataError(
            f"augreg: {desc}: no column {col!r} for the {role}. Columns present: "
            f"{list(ds.column_names)}. Map the file's column with data.columns.{role}."
        )
    if len(ds) == 0:
        raise DataError(f"augreg: {desc} has no rows; {fix}.")
    values = ds[col]
    if "id" in roles and roles["id"] in ds.column_names:
        ids = [f"unlabelled:{x}" for x in ds[roles["id"]]]
    else:
        ids = [f"unlabelled:{i}" for i in range(len(ds))]

    def usable(v: Any) -> bool:
        if token:
            return (
                isinstance(v, list) and bool(v) and all(isinstance(t, str) and t.strip() for t in v)
            )
        return isinstance(v, str) and bool(v.strip())

    bad = [ids[i] for i, v in enumerate(values) if not usable(v)]
    if bad and cfg.data.empty_rows != "skip":
        what = "tokens (an empty list, or an empty or non-string token)" if token else "text"
        raise DataError(
            f"augreg: {desc}: empty, missing or non-string {what} (column {col!r}) in "
            f"{_ids_text(bad)}. Remove those rows, fill them in, or set "
            'data.empty_rows = "skip".'
        )
    drop = set(bad)
    keep = [i for i, x in enumerate(ids) if x not in drop]
    if not keep:
        raise DataError(f"augreg: {desc} has no usable row; {fix}.")
    return _unlabelled_set([ids[i] for i in keep], [values[i] for i in keep], token), bad


def _train_rest(cfg: PipelineConfig, train: _Split, rows: list[int] | None, token: bool) -> Dataset:
    """``data.unlabelled = "train:rest"``: the training rows outside the subset ``rows``.

    In file order, labels dropped; rows skipped for empty text are in neither part. Each id is
    ``unlabelled:`` and the training row's id (``unlabelled:train:7``), so augmenters seeded by
    the id never draw what they draw for a labelled example.

    Raises:
        DataError: no subset was taken (``data.train_size`` unset) or it took every row.
    """
    picked = set(range(len(train.ids)) if rows is None else rows)
    rest = [i for i in range(len(train.ids)) if i not in picked]
    if not rest:
        raise DataError(
            f'augreg: data.unlabelled is "train:rest", and the training subset '
            f"(data.train_size = {cfg.data.train_size}) takes every usable row of "
            f"{train.desc} ({len(train.ids)}), so none is left as unlabelled text. Lower "
            "data.train_size, or give data.unlabelled a file."
        )
    ids = [f"unlabelled:{train.ids[i]}" for i in rest]
    return _unlabelled_set(ids, [train.inputs[i] for i in rest], token)


def _unlabelled_set(ids: list[str], values: list[Any], token: bool) -> Dataset:
    """An unlabelled data set: ``augreg_id`` and ``text`` (or ``tokens``)."""
    role = "tokens" if token else "text"
    kind = List(Value("string")) if token else Value("string")
    return Dataset.from_dict(
        {ID: ids, role: values}, features=Features({ID: Value("string"), role: kind})
    )


# -- the data stage --------------------------------------------------------------------------


def dataset_fingerprint(ds: Dataset) -> str:
    """A fingerprint of a data set's content, stable across processes.

    File-backed data sets use ``datasets``' own ``_fingerprint``. For in-memory data sets the
    content itself is hashed, because a fingerprint derived from an unhashable transform is
    random per process and would defeat the cache.
    """
    if ds.cache_files:
        return str(ds._fingerprint)
    import pyarrow as pa

    h = hashlib.blake2b(digest_size=16)
    h.update(str(ds.features).encode())
    for batch in ds.with_format("arrow").iter(batch_size=4096):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_table(batch)
        h.update(sink.getvalue().to_pybytes())
    return h.hexdigest()


def _digest(*parts: object) -> str:
    return hashlib.blake2b(
        json.dumps([_CACHE_FORMAT, *parts], sort_keys=True, default=str).encode(), digest_size=16
    ).hexdigest()


def _rows(batch: Mapping[str, list[Any]], columns: Sequence[str]) -> list[Example]:
    n = len(batch[columns[0]]) if columns else 0
    return [{c: batch[c][i] for c in columns} for i in range(n)]


def _carries(inj: KnowledgeInjector, fields: Sequence[str] | Mapping[str, Any]) -> bool:
    """Whether ``inj`` declares model inputs and ``fields`` (columns or an example) has them all.

    Those are the injectors whose fields an augmented view must have recomputed; data that
    was never injected (no such fields) is augmented as is.
    """
    return bool(inj.model_inputs) and all(f in fields for f in inj.model_inputs)


class DataStage:
    """Runs knowledge injectors and augmenters over a split, deterministically.

    Args:
        injectors: Knowledge injectors, applied in order by :meth:`inject`.
        augmenters: Augmenters, each applied to the original examples by :meth:`expand` or
            :meth:`per_epoch_dataset` (not to each other's outputs). Injectors that declare
            ``model_inputs`` run again on every view an augmenter writes (see
            :meth:`call_augmenter`), so per-word fields describe the view's own words.
        seed: The pipeline seed.
        task: ``"sequence_classification"`` or ``"token_classification"``.
        cache_dir: Cache folder; results go under ``cache_dir / "data"``. ``None``: no
            caching, everything stays in memory (nothing is written).
        keep_original: Keep the source examples beside the augmented ones.
        show_progress: Show ``datasets`` progress bars.
        expand_first: Names of augmenters that :meth:`per_epoch_dataset` applies once, as
            :meth:`expand` does (originals kept beside their copies), before the other
            augmenters write per-epoch views of the expanded set. Ignored by :meth:`expand`.

    Attributes:
        report: Counts per component: ``written`` rows, ``empty`` (example, copy) pairs for
            which the augmenter returned ``[]``, ``fallback`` per-epoch slots that fell back
            to the original example, and for injectors the ``rows`` processed (last split
            injected) and, for injectors with ``model_inputs``, the augmented views whose
            fields were recomputed (``reinjected``).

    The stage never mutates its input data sets and never touches global random state.
    """

    def __init__(
        self,
        injectors: Sequence[KnowledgeInjector],
        augmenters: Sequence[Augmenter],
        seed: int,
        task: str,
        cache_dir: Path | None,
        keep_original: bool = True,
        show_progress: bool = True,
        expand_first: Sequence[str] = (),
    ) -> None:
        names = [c.name for c in [*injectors, *augmenters]]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise DataError(
                f"augreg: components {dups} appear more than once in the data stage; their "
                "random streams and example ids would collide. Keep one of each (use copies "
                "for more views)."
            )
        self.injectors = list(injectors)
        self.augmenters = list(augmenters)
        self.seed = seed
        self.task = task
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.keep_original = keep_original
        self.show_progress = show_progress
        unknown = sorted(set(expand_first) - {a.name for a in self.augmenters})
        if unknown:
            raise DataError(
                f"augreg: expand_first names {unknown}, which are not augmenters of this stage "
                f"({[a.name for a in self.augmenters]}); name augmenters the stage has"
            )
        self.expand_first = tuple(expand_first)
        self.report: dict[str, dict[str, Any]] = {}
        self._set_up: set[int] = set()

    # -- helpers -------------------------------------------------------------------------------

    def setup(self, ctx: SetupContext) -> None:
        """Call each component's ``setup`` once (later calls skip components already set up)."""
        for comp in [*self.injectors, *self.augmenters]:
            if id(comp) not in self._set_up:
                comp.setup(ctx)
                self._set_up.add(id(comp))

    def _map(
        self,
        ds: Dataset,
        fn: Callable[[dict[str, list[Any]]], dict[str, list[Any]]],
        key: str,
        desc: str,
        features: Features | None = None,
    ) -> Dataset:
        kwargs: dict[str, Any] = {}
        if self.cache_dir is not None:
            folder = self.cache_dir / "data"
            folder.mkdir(parents=True, exist_ok=True)
            kwargs = {"cache_file_name": str(folder / f"{key}.arrow"), "load_from_cache_file": True}
        else:
            kwargs = {"keep_in_memory": True}
        with _progress(self.show_progress):
            return ds.map(
                fn,
                batched=True,
                batch_size=256,
                remove_columns=list(ds.column_names),
                new_fingerprint=key,
                features=features,
                desc=desc,
                **kwargs,
            )

    def _required(self) -> tuple[str, ...]:
        return ("tokens", "tags") if self.task == "token_classification" else ("text", "label")

    def _check_example(self, comp: Component, new: Any, parent: Example, what: str) -> None:
        pid = parent.get(ID, "?")
        if not isinstance(new, dict):
            raise DataError(
                f"augreg: {comp.kind} {comp.name} returned a {type(new).__name__} for {pid}; "
                f"{what} must return dicts (examples)."
            )
        missing = [c for c in parent if c not in new and c not in PROVENANCE and c != ID]
        if missing:
            raise DataError(
                f"augreg: {comp.kind} {comp.name} returned an example for {pid} without "
                f"{missing}; build outputs as {{**example, ...}} so every field is kept."
            )
        if self.task == "token_classification":
            toks, tags = new["tokens"], new["tags"]
            if (
                not isinstance(toks, list)
                or not toks
                or not isinstance(tags, list)
                or len(tags) != len(toks)
            ):
                raise DataError(
                    f"augreg: {comp.kind} {comp.name} wrote an example from {pid} with "
                    f"{len(toks) if isinstance(toks, list) else toks!r} tokens but "
                    f"{len(tags) if isinstance(tags, list) else tags!r} tags; keep exactly "
                    "one tag per token (and at least one token)."
                )
        else:
            text = new["text"]
            if not isinstance(text, str) or not text.strip():
                raise DataError(
                    f"augreg: {comp.kind} {comp.name} wrote an empty text from {pid}; return "
                    "[] when no example can be written instead."
                )
            if not comp.changes_labels and new["label"] != parent["label"]:
                raise DataError(
                    f"augreg: {comp.kind} {comp.name} changed the label of {pid} from "
                    f"{parent['label']!r} to {new['label']!r} but does not declare "
                    "changes_labels = True. Keep the label, or set changes_labels = True on "
                    "the class if it relabels on purpose."
                )

    # -- injection -------------------------------------------------------------------------------

    def inject(self, ds: Dataset) -> Dataset:
        """Run the knowledge injectors in order over a split (one output row per input row).

        Rows keep their ``augreg_id``; labels must be kept and token tags must stay aligned
        with tokens. Cached like :meth:`expand` when ``cache_dir`` is set.

        Raises:
            DataError: an injector changed the number of rows, a label, or the tag alignment.
        """
        for inj in self.injectors:
            key = _digest("inject", dataset_fingerprint(ds), inj.fingerprint(), self.task)
            columns = list(ds.column_names)

            def run(
                batch: dict[str, list[Any]],
                inj: KnowledgeInjector = inj,
                columns: list[str] = columns,
            ) -> dict[str, list[Any]]:
                examples = _rows(batch, columns)
                outs = inj.inject_batch([dict(e) for e in examples])
                if len(outs) != len(examples):
                    raise DataError(
                        f"augreg: injector {inj.name} returned {len(outs)} examples for "
                        f"{len(examples)}; inject_batch must return one example per input."
                    )
                out_cols: list[str] = []
                for ex, new in zip(examples, outs, strict=True):
                    self._check_example(inj, new, ex, "inject_batch")
                    for c in new:
                        if c not in out_cols:
                            out_cols.append(c)
                result: dict[str, list[Any]] = {c: [] for c in out_cols if c != ID}
                result[ID] = [ex[ID] for ex in examples]  # ids are the stage's, not the injector's
                for new in outs:
                    for c in result:
                        if c != ID:
                            if c not in new:
                                raise DataError(
                                    f"augreg: injector {inj.name} returned examples with "
                                    f"different fields (one lacks {c!r}); give every output "
                                    "the same fields."
                                )
                            result[c].append(new[c])
                return result

            ds = self._map(ds, run, key, f"inject {inj.name}")
            self.report.setdefault(inj.name, {})["rows"] = len(ds)
        return ds

    # -- offline augmentation ----------------------------------------------------------------

    def _data_columns(self, ds: Dataset) -> list[str]:
        cols = [c for c in ds.column_names if c not in PROVENANCE]
        if ID not in cols:
            raise DataError(
                f"augreg: the data set has no {ID!r} column (columns: {ds.column_names}); "
                "pass splits from load_data() or add unique string ids."
            )
        missing = [c for c in self._required() if c not in cols]
        if missing:
            raise DataError(
                f"augreg: the data set lacks {missing} for {self.task} (columns: "
                f"{ds.column_names})."
            )
        return cols

    def _out_features(self, ds: Dataset) -> Features:
        feats = {c: f for c, f in ds.features.items() if c not in PROVENANCE}
        return Features({**feats, SOURCE: Value("string"), PARENT: Value("string")})

    def expand(
        self, ds: Dataset, epoch: int = 0, *, only: Sequence[Augmenter] | None = None
    ) -> Dataset:
        """Write the augmented training set once: originals (if kept) + every augmenter's rows.

        ``only``: these augmenters of the stage instead of all, the originals always kept (the
        first step of :meth:`per_epoch_dataset` with ``expand_first``).

        Each augmenter acts on the original examples (not on other augmenters' outputs), for
        ``copies`` copies, with ``rngs[i] = derive_rng(seed, name, augreg_id, epoch, copy)``.
        Every row gets ``augreg_source`` and ``augreg_parent``; augmented rows get the id
        ``<parent>/<component>/<epoch>.<copy>.<k>``. Row order does not depend on the batch
        size. With ``cache_dir``, results are cached by the input's content fingerprint, each
        component's :meth:`~augreg.Component.fingerprint`, the seed and the epoch, so a second
        run with the same inputs reads the cache instead of calling the augmenters. Fields an
        augmenter adds beyond the input's columns are not kept. The ``model_inputs`` fields of
        the injectors are recomputed on every augmented row (:meth:`call_augmenter`); those
        injectors' fingerprints are part of the cache key.

        Raises:
            DataError: an augmenter changed a label without declaring ``changes_labels``,
                misaligned tags, dropped a field, or nothing is left to train on; or an
                augmenter needs the model (``needs_model``: it runs per epoch in training).
        """
        augmenters = self.augmenters if only is None else list(only)
        keep_original = self.keep_original or only is not None
        needy = [a.name for a in augmenters if a.needs_model]
        if needy:
            raise DataError(
                f"augreg: {', '.join(needy)} write their views against the model being trained, "
                'so they run only during training with data.augmentation = "per_epoch" '
                "(augreg run). The offline data stage (augreg augment, Pipeline.augment()) has "
                "no model: remove them there."
            )
        cols = self._data_columns(ds)
        feats = self._out_features(ds)
        fp = dataset_fingerprint(ds)
        has_prov = all(c in ds.column_names for c in PROVENANCE)
        parts: list[Dataset] = []
        if keep_original:

            def originals(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
                out = {c: batch[c] for c in cols}
                n = len(batch[ID])
                out[SOURCE] = batch[SOURCE] if has_prov else [ORIGINAL] * n
                out[PARENT] = batch[PARENT] if has_prov else [""] * n
                return out

            parts.append(self._map(ds, originals, _digest("original", fp), "originals", feats))
        # Views get their model-input fields recomputed by these injectors: part of the key,
        # so a cache written without (or with other) recomputed fields is not reused.
        reinjectors = [inj for inj in self.injectors if _carries(inj, cols)]
        reinject = [{"reinject": [inj.fingerprint() for inj in reinjectors]}] if reinjectors else []
        for aug in augmenters:
            key = _digest("expand", fp, aug.fingerprint(), self.seed, epoch, self.task, *reinject)
            before = aug.counts()
            reinjected = {
                inj.name: self.report.get(inj.name, {}).get("reinjected", 0) for inj in reinjectors
            }
            out_ds = self._map(
                ds, self._augment_fn(aug, cols, epoch), key, f"augment {aug.name}", feats
            )
            copies = int(getattr(aug.options, "copies", 1))
            pairs = {
                (parent, rid.rsplit("/", 1)[1].split(".")[1])
                for parent, rid in zip(out_ds[PARENT], out_ds[ID], strict=True)
            }
            self.report[aug.name] = {
                "examples": len(ds),
                "copies": copies,
                "written": len(out_ds),
                "empty": len(ds) * copies - len(pairs),
            }
            for name, value in aug.counts().items():  # the augmenter's own filters and drops
                if value - before.get(name, 0):
                    self.report[aug.name][name] = value - before.get(name, 0)
            for inj in reinjectors:  # every written row, whether computed now or cached
                self.report.setdefault(inj.name, {})["reinjected"] = reinjected[inj.name] + len(
                    out_ds
                )
            parts.append(out_ds)
        if not parts or sum(len(p) for p in parts) == 0:
            raise DataError(
                "augreg: the data stage produced no training examples (keep_original is off "
                f"and the augmenters {[a.name for a in augmenters]} wrote nothing). Turn "
                "data.keep_original on or check the augmenters' options."
            )
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)

    def call_augmenter(
        self, aug: Augmenter, examples: Sequence[Example], epoch: int, copies: Sequence[int]
    ) -> list[list[list[Example]]]:
        """``aug.augment_batch`` on ``examples`` for each copy: ``[copy][example] -> views``.

        Rngs are ``derive_rng(seed, name, augreg_id, epoch, copy)``; every call gets fresh
        dicts, so an augmenter that mutates its input cannot leak changes. Every view is
        checked (fields kept, label kept unless ``changes_labels``, one tag per token).

        Then every injector that declares ``model_inputs`` and whose fields the example
        carries runs again, in order, on the views (not on the originals), and each view takes
        that injector's ``model_inputs`` fields from the result: a view keeps its parent's
        fields otherwise, and a same-length rewrite (a word swap) would silently pair the
        parent's per-word values with other words. Only those fields are taken, so the view's
        text, tokens, tags and label stay the augmenter's; text-level injectors (no
        ``model_inputs``) ran once, before the augmenters, and do not run again. This is the
        one path of :meth:`expand`, per-epoch slots and ``needs_model`` refreshes.

        Raises:
            DataError: the augmenter did not return one list per example or wrote a bad
                view, or an injector could not recompute its fields for the views.
        """
        per_copy: list[list[list[Example]]] = []
        for copy in copies:
            rngs = [derive_rng(self.seed, aug.name, ex[ID], epoch, copy) for ex in examples]
            results = aug.augment_batch([dict(ex) for ex in examples], rngs)
            if len(results) != len(examples):
                raise DataError(
                    f"augreg: augmenter {aug.name} returned {len(results)} lists for "
                    f"{len(examples)} examples; augment_batch must return one list per "
                    "example ([] when nothing can be written)."
                )
            wrong = [
                ex.get(ID, "?")
                for ex, outs in zip(examples, results, strict=True)
                if not isinstance(outs, (list, tuple))
            ]
            if wrong:
                raise DataError(
                    f"augreg: augmenter {aug.name} returned something other than a list of "
                    f"views for {_ids_text(wrong)}; return a list per example ([] when "
                    "nothing can be written)."
                )
            views = [list(outs) for outs in results]
            for parent, outs in zip(examples, views, strict=True):
                for new in outs:
                    self._check_example(aug, new, parent, "augment")
            per_copy.append(self._reinject(aug, examples, views))
        return per_copy

    def _reinject(
        self, aug: Augmenter, parents: Sequence[Example], views: list[list[Example]]
    ) -> list[list[Example]]:
        """``views`` with the ``model_inputs`` fields recomputed on each view's own content.

        One batched ``inject_batch`` call per injector over all views of examples that carry
        its fields; counted in ``report[injector]["reinjected"]``.
        """
        for inj in self.injectors:
            at = [
                (i, k)
                for i, parent in enumerate(parents)
                if _carries(inj, parent)
                for k in range(len(views[i]))
            ]
            if not at:
                continue
            batch = [dict(views[i][k]) for i, k in at]
            fields = list(inj.model_inputs)
            try:
                fresh = inj.inject_batch(batch)
            except Exception as exc:
                raise DataError(
                    f"augreg: injector {inj.name} could not recompute its model inputs "
                    f"{fields} on the views augmenter {aug.name} wrote from "
                    f"{_ids_text(sorted({parents[i].get(ID, '?') for i, _ in at}))}: "
                    f"{type(exc).__name__}: {exc}. A view's per-word fields must describe its "
                    f"own words: make {inj.name} accept every view {aug.name} can write (or "
                    f"fix {aug.name}'s output), or do not combine them in one pipeline."
                ) from exc
            bad = [
                parents[i].get(ID, "?")
                for (i, _), new in zip(at, fresh, strict=False)
                if not isinstance(new, dict) or any(f not in new for f in fields)
            ]
            if len(fresh) != len(batch) or bad:
                got = f"{len(fresh)} examples for {len(batch)}" if not bad else "examples"
                raise DataError(
                    f"augreg: injector {inj.name}, run again on the views augmenter {aug.name} "
                    f"wrote, returned {got} without its model inputs {fields}"
                    f"{' (from ' + _ids_text(bad) + ')' if bad else ''}; inject_batch must "
                    "return one example per input, each with every field in model_inputs."
                )
            for (i, k), new in zip(at, fresh, strict=True):
                views[i][k] = {**views[i][k], **{f: new[f] for f in fields}}
            counts = self.report.setdefault(inj.name, {})
            counts["reinjected"] = counts.get("reinjected", 0) + len(at)
        return views

    def _augment_fn(
        self, aug: Augmenter, cols: list[str], epoch: int
    ) -> Callable[[dict[str, list[Any]]], dict[str, list[Any]]]:
        copies = int(getattr(aug.options, "copies", 1))

        def run(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            examples = _rows(batch, cols)
            per_copy = self.call_augmenter(aug, examples, epoch, range(copies))
            out: dict[str, list[Any]] = {c: [] for c in [*cols, SOURCE, PARENT]}
            # Example-major order, so the output order is independent of the batch size.
            for i, parent in enumerate(examples):
                for copy in range(copies):
                    for k, new in enumerate(per_copy[copy][i]):  # checked by call_augmenter
                        for c in cols:
                            if c != ID:
                                out[c].append(new[c])
                        out[ID].append(f"{parent[ID]}/{aug.name}/{epoch}.{copy}.{k}")
                        out[SOURCE].append(aug.name)
                        out[PARENT].append(parent[ID])
            return out

        return run

    # -- per-epoch augmentation -----------------------------------------------------------

    def per_epoch_dataset(
        self, ds: Dataset, tokenize: Callable[[dict[str, list[Any]]], dict[str, list[Any]]]
    ) -> PerEpochDataset:
        """A torch data set with fresh augmented views every epoch (call ``set_epoch``).

        Its length is fixed: one slot per original (if kept) plus one per augmenter copy, per
        example. Item ``i`` is computed on access for the current epoch with the same rng
        derivation as :meth:`expand`, then tokenized with ``tokenize`` (a batched function
        applied to one row). A slot whose augmenter returns ``[]`` falls back to the original
        example (counted in ``report[name]["fallback"]``). As in :meth:`expand`, the
        ``model_inputs`` fields of the injectors are recomputed on each view. Nothing is cached
        on disk.

        Augmenters with ``needs_model`` are the exception to computing on access: their views
        are written for all examples at once when ``set_epoch`` is given the model on a
        refresh epoch (see :meth:`PerEpochDataset.set_epoch`), and kept until the next one.

        Augmenters named in ``expand_first`` run first, once, like :meth:`expand` with the
        originals kept (cached the same way); the per-epoch slots are then those of the other
        augmenters over the expanded set, so each copy gets its own views and ``keep_original``
        decides whether the expanded rows appear as they are. Without this, an augmenter that
        writes for a few examples only fills its slot of the others with their originals
        (its ``fallback`` count), an extra copy of each per epoch.
        """
        first = [a for a in self.augmenters if a.name in self.expand_first]
        if first:
            ds = self.expand(ds, only=first)
        return PerEpochDataset(self, ds, tokenize)

    def per_epoch_augmenters(self) -> list[Augmenter]:
        """The augmenters whose views :meth:`per_epoch_dataset` writes every epoch."""
        return [a for a in self.augmenters if a.name not in self.expand_first]


class PerEpochDataset(torch.utils.data.Dataset[dict[str, Any]]):
    """Lazily augmented training examples, deterministic per (seed, epoch, index).

    Index ``i`` is slot ``i // n`` of example ``i % n`` (``n`` source examples); slot 0 is the
    original when originals are kept, the other slots are (augmenter, copy) pairs. Counts in
    ``report`` are per process (DataLoader workers keep their own).

    Slots of an augmenter with ``needs_model`` read views written against the model by
    :meth:`set_epoch` (the original until the augmenter's first refresh). Each refresh is
    logged in ``report[name]["refreshes"]`` (epoch, examples, views written, seconds).
    """

    def __init__(
        self,
        stage: DataStage,
        ds: Dataset,
        tokenize: Callable[[dict[str, list[Any]]], dict[str, list[Any]]],
    ) -> None:
        self.stage = stage
        self.cols = stage._data_columns(ds)
        self.ds = ds.select_columns(self.cols)
        # Rows of an expanded set (``expand_first``) keep their provenance in the original slot.
        self.provenance: Dataset | None = None
        if all(c in ds.column_names for c in PROVENANCE):
            self.provenance = ds.select_columns(list(PROVENANCE))
        self.tokenize = tokenize
        self.epoch = 0
        self.views: dict[str, tuple[int, list[list[list[Example]]]]] = {}
        """Views of ``needs_model`` augmenters: name -> (refresh epoch, [copy][example])."""
        self.slots: list[tuple[Augmenter, int] | None] = [None] if stage.keep_original else []
        for aug in stage.per_epoch_augmenters():
            copies = int(getattr(aug.options, "copies", 1))
            self.slots.extend((aug, c) for c in range(copies))
            stage.report.setdefault(aug.name, {"written": 0, "fallback": 0})
        if not self.slots:
            raise DataError(
                "augreg: per-epoch augmentation with keep_original off and no augmenters has "
                "nothing to train on; add an augmenter or keep the originals."
            )
        if len(ds) == 0:
            raise DataError("augreg: the training split is empty; nothing to augment.")

    def set_epoch(self, epoch: int, model: Any = None, tokenizer: Any = None) -> None:
        """Select the epoch whose views items are computed for; refresh model-made views.

        For each augmenter with ``needs_model`` whose :meth:`~augreg.Augmenter.refresh_epoch`
        names a refresh not yet written, writes its views of every example against ``model``
        (see :meth:`refresh`). Called by the trainer at the start of every epoch.

        Raises:
            DataError: a refresh is due and no model was given.
        """
        self.epoch = int(epoch)
        for aug in self.stage.per_epoch_augmenters():
            if not aug.needs_model:
                continue
            at = aug.refresh_epoch(self.epoch)
            if at is None or (aug.name in self.views and self.views[aug.name][0] == at):
                continue
            if model is None:
                raise DataError(
                    f"augreg: {aug.name} writes its views against the model being trained and "
                    f"its refresh for epoch {at} is due, but set_epoch() got no model. Pass "
                    "set_epoch(epoch, model=..., tokenizer=...) (the trainer's EpochCallback "
                    "does)."
                )
            self.refresh(aug, at, model, tokenizer)

    def refresh(self, aug: Augmenter, at: int, model: Any, tokenizer: Any) -> None:
        """Write ``aug``'s views of every example against ``model``, as of epoch ``at``.

        The model runs in eval mode (each module's flag restored afterwards) without
        gradients; the augmenter gets it through ``use_model`` and loses it afterwards. Rngs
        are ``derive_rng(seed, name, augreg_id, at, copy)``, so the views depend only on the
        seed, the weights and the examples. Under ``torch.distributed`` each process writes
        the views of every ``world_size``-th example and the processes exchange them
        (``all_gather_object``), so all train on the same views. Shows a progress bar on the
        main process when the stage shows progress.
        """
        import time

        import torch.distributed as dist

        from augreg.components import ModelContext
        from augreg.context import dropout_mode, unwrap_model

        stage = self.stage
        base = unwrap_model(model)
        world, rank = 1, 0
        if dist.is_available() and dist.is_initialized():
            world, rank = dist.get_world_size(), dist.get_rank()
        copies = int(getattr(aug.options, "copies", 1))
        mine = list(range(rank, len(self.ds), world))
        local: dict[int, list[list[Example]]] = {}  # example index -> per copy
        t0 = time.perf_counter()
        ctx = ModelContext(base, tokenizer, task=stage.task, epoch=at, tokenize=self.tokenize)
        chunk = 32
        bar = _refresh_bar(len(mine), f"{aug.name} (epoch {at})", stage.show_progress and rank == 0)
        with dropout_mode(base, False), torch.no_grad():
            aug.use_model(ctx)
            try:
                for start in range(0, len(mine), chunk):
                    idx = mine[start : start + chunk]
                    parents = [dict(self.ds[j]) for j in idx]
                    per_copy = stage.call_augmenter(aug, parents, at, range(copies))
                    for k, j in enumerate(idx):
                        local[j] = [per_copy[c][k] for c in range(copies)]
                    bar.update(len(idx))
            finally:
                aug.use_model(None)
                bar.close()
        if world > 1:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, local)
            for part in gathered:
                local.update(part)
        table = [[local[j][c] for j in range(len(self.ds))] for c in range(copies)]
        self.views[aug.name] = (at, table)
        written = sum(1 for views in table for outs in views if outs)
        stage.report.setdefault(aug.name, {}).setdefault("refreshes", []).append(
            {
                "epoch": at,
                "examples": len(self.ds),
                "written": written,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )

    def __len__(self) -> int:
        return len(self.ds) * len(self.slots)

    def example(self, index: int) -> Example:
        """The (augmented) example at ``index`` for the current epoch, before tokenizing."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        n = len(self.ds)
        slot, j = divmod(index, n)
        parent: Example = dict(self.ds[j])
        spec = self.slots[slot]
        if spec is None:
            if self.provenance is not None:
                return {**parent, **self.provenance[j]}
            return {**parent, SOURCE: ORIGINAL, PARENT: ""}
        aug, copy = spec
        stage = self.stage
        epoch = self.epoch
        if aug.needs_model:
            made = self.views.get(aug.name)
            if made is None:  # before the first refresh: the original
                outs: list[Example] = []
            else:
                epoch, table = made
                outs = table[copy][j]
        else:
            outs = stage.call_augmenter(aug, [parent], epoch, [copy])[0][0]
        counts = stage.report[aug.name]
        if not outs:
            counts["fallback"] = counts.get("fallback", 0) + 1
            return {**parent, SOURCE: ORIGINAL, PARENT: ""}
        if len(outs) == 1:
            new = outs[0]
        else:  # several views: pick one with its own stream, not the augmenter's
            pick = random.Random(derive_seed(stage.seed, aug.name, parent[ID], epoch, copy, "pick"))
            new = outs[pick.randrange(len(outs))]
        counts["written"] = counts.get("written", 0) + 1
        row = {c: new[c] for c in self.cols if c != ID}
        row[ID] = f"{parent[ID]}/{aug.name}/{epoch}.{copy}.0"
        row[SOURCE] = aug.name
        row[PARENT] = parent[ID]
        return row

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.example(index)
        enc = self.tokenize({k: [v] for k, v in row.items()})
        return {k: v[0] for k, v in enc.items()}


def _refresh_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar (the Trainer's own progress library) for writing model-made views."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ex", disable=not enabled, leave=True)


# -- unlabelled data ---------------------------------------------------------------------------


class WithUnlabelled(torch.utils.data.Dataset[dict[str, Any]]):
    """Training items with ``ratio`` unlabelled examples drawn alongside each labelled one.

    Item ``i`` is the labelled item ``i`` plus, under :data:`UNLABELLED`, the unlabelled
    examples at positions ``i * ratio ... i * ratio + ratio - 1`` of a permutation of the
    unlabelled set seeded by (seed, epoch): over an epoch every unlabelled example is drawn
    about ``len(labelled) * ratio / len(unlabelled)`` times, the draw depends only on the seed
    and the epoch, and the same injectors and tokenizer as the labelled data apply. Each
    unlabelled item is its raw example (``augreg_id`` and ``text``, or ``tokens`` for token
    classification) plus its tokenization (``input_ids`` ...), so a component can write
    augmented views of the text.

    Args:
        labelled: The training items (an encoded data set or a :class:`PerEpochDataset`).
        unlabelled: Unlabelled examples (``augreg_id`` and ``text`` or ``tokens``), after the
            injectors.
        tokenize: The pipeline's batched tokenize function.
        ratio: Unlabelled examples per labelled one (``data.unlabelled_ratio``).
        seed: The pipeline seed.

    Raises:
        DataError: the unlabelled set is empty.
    """

    def __init__(
        self,
        labelled: Any,
        unlabelled: Dataset,
        tokenize: Callable[[dict[str, list[Any]]], dict[str, list[Any]]],
        ratio: int,
        seed: int,
    ) -> None:
        if len(unlabelled) == 0:
            raise DataError(
                "augreg: data.unlabelled is empty; consistency components train on unlabelled "
                "text: give at least one example, or remove them and data.unlabelled."
            )
        self.labelled = labelled
        self.unlabelled = unlabelled
        self.tokenize = tokenize
        self.ratio = int(ratio)
        self.seed = seed
        self.epoch = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(len(self.unlabelled)))
        random.Random(derive_seed(self.seed, "augreg.unlabelled", epoch)).shuffle(order)
        return order

    def set_epoch(self, epoch: int, model: Any = None, tokenizer: Any = None) -> None:
        """Draw the unlabelled examples of ``epoch``; pass the epoch on to the labelled items."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self._order = self._permutation(self.epoch)
        inner = getattr(self.labelled, "set_epoch", None)
        if callable(inner):
            inner(epoch, model, tokenizer)

    def drawn(self, index: int) -> list[int]:
        """Indices (into the unlabelled set) drawn with labelled item ``index`` this epoch."""
        n = len(self._order)
        return [self._order[(index * self.ratio + k) % n] for k in range(self.ratio)]

    def __len__(self) -> int:
        return len(self.labelled)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.labelled[index])
        rows = self.unlabelled[self.drawn(index)]
        # Placeholder labels: the task's tokenize expects them; they are dropped right after.
        placeholder: dict[str, list[Any]]
        if "tokens" in rows:
            role = "tokens"
            placeholder = {"tags": [[IGNORE_TAG] * len(t) for t in rows["tokens"]]}
        else:
            role = "text"
            placeholder = {"label": [0] * len(rows["text"])}
        enc = self.tokenize({**rows, **placeholder})
        enc.pop("labels", None)
        item[UNLABELLED] = [
            {ID: rid, role: value, **{k: v[j] for k, v in enc.items()}}
            for j, (rid, value) in enumerate(zip(rows[ID], rows[role], strict=True))
        ]
        return item


_RAW = (ID, "text", "tokens")


class UnlabelledCollator:
    """Wraps a task's collator: the unlabelled examples of the items become one padded batch.

    The labelled part is collated by ``base`` as before; the unlabelled examples of all items
    are collated by ``base`` too (without labels) and put under :data:`UNLABELLED` as
    ``{"inputs": <padded tensors>, "examples": [{"augreg_id", "text" or "tokens"}, ...]}``.
    """

    def __init__(self, base: Any) -> None:
        self.base = base

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> Any:
        extra = [u for f in features for u in f.get(UNLABELLED, ())]
        batch = self.base([{k: v for k, v in f.items() if k != UNLABELLED} for f in features])
        if extra:
            raw = [{k: v for k, v in u.items() if k in _RAW} for u in extra]
            encoded = [{k: v for k, v in u.items() if k not in _RAW} for u in extra]
            batch[UNLABELLED] = {"inputs": dict(self.base(encoded)), "examples": raw}
        return batch
