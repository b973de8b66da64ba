"""Helpers for testing components: sample data, batches, isolated hosts, a network guard.

Used by the conformance kit (:mod:`augreg.testing.kit`) and meant for a plugin's own tests too.
Nothing here imports torch at module import; :func:`make_batch` imports it when called.

Example:
    >>> from augreg.testing import isolated_host, make_batch, sequence_examples
    >>> from augreg.testing.models import tiny_tokenizer
    >>> host = isolated_host(entry_points=False)
    >>> batch = make_batch("sequence_classification", tiny_tokenizer(), sequence_examples())
    >>> sorted(batch)  # doctest: +SKIP
    ['attention_mask', 'input_ids', 'labels', 'token_type_ids']
"""

from __future__ import annotations

import contextlib
import copy
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from augreg.components import IGNORE_TAG, Example
from augreg.host import PluginHost

__all__ = [
    "DEFAULT_TAGS",
    "NetworkAccessError",
    "entity_spans",
    "isolated_host",
    "make_batch",
    "no_network",
    "sequence_examples",
    "short_train",
    "token_examples",
]

DEFAULT_TAGS: tuple[str, ...] = (
    "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC",
)  # fmt: skip
"""IOB2 tag set of :func:`token_examples`, in label-id order."""

_SEQUENCE: tuple[Example, ...] = (
    {"text": "The movie, frankly, was great!", "label": 1, "augreg_id": "seq:0"},
    {"text": "I hate this phone; the battery broke after a week.", "label": 0,
     "augreg_id": "seq:1"},
    {"text": "John Smith said the plot was boring and the acting was poor.", "label": 0,
     "augreg_id": "seq:2"},
    {"text": "What a wonderful, beautiful film. Really.", "label": 1, "augreg_id": "seq:3"},
)  # fmt: skip

_TOKENS: tuple[Example, ...] = (
    {"tokens": ["John", "Smith", "went", "to", "New", "York", "City", "."],
     "tags": ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC", "O"],
     "augreg_id": "tok:0"},
    {"tokens": ["The", "Bank", "of", "France", "said", "no", "."],
     "tags": ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O", "O"], "augreg_id": "tok:1"},
    {"tokens": ["Mary", "loves", "Paris", "and", "London", ",", "really", "!"],
     "tags": ["B-PER", "O", "B-LOC", "O", "B-LOC", "O", "O", "O"], "augreg_id": "tok:2"},
    {"tokens": ["Europe", "Germany", "France", "said", "the", "United", "States", "President"],
     "tags": ["B-LOC", "B-LOC", "B-LOC", "O", "O", "B-LOC", "I-LOC", "O"],
     "augreg_id": "tok:3"},
)  # fmt: skip


def short_train(folder: str | os.PathLike[str], **settings: Any) -> dict[str, Any]:
    """``train`` settings of a short run on a tiny model, for behaviour tests: 2 epochs, batch
    8, learning rate 1e-3, seed 3, no progress bars, no evaluation during training, run folders
    under ``folder/runs``; ``settings`` override any of them.

    Example:
        >>> short_train("/tmp/t", epochs=1)["epochs"], short_train("/tmp/t")["output_dir"]
        (1, '/tmp/t/runs')
    """
    return {
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "seed": 3,
        "output_dir": os.path.join(folder, "runs"),
        "progress": False,
        "eval_strategy": "no",
        **settings,
    }


def sequence_examples() -> list[Example]:
    """Fresh sequence-classification examples: sentences with punctuation and capitals.

    Example:
        >>> sequence_examples()[0]["text"]
        'The movie, frankly, was great!'
    """
    return copy.deepcopy(list(_SEQUENCE))


def token_examples() -> list[Example]:
    """Fresh token-classification examples: tokens and IOB2 tags with multi-token spans.

    They include adjacent spans of one type (``B-LOC B-LOC``) and spans at both ends.
    """
    return copy.deepcopy(list(_TOKENS))


def entity_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Entity spans of an IOB2 tag sequence as ``(start, end, type)``, end exclusive.

    A token tagged :data:`augreg.IGNORE_TAG` (inserted knowledge) ends a span like ``O``, so
    knowledge inserted inside a span is caught as a broken span.

    Raises:
        ValueError: the tags are not valid IOB2 (an ``I-X`` that does not continue an ``X``
            span, or a tag that is neither ``O`` nor ``B-``/``I-`` prefixed).

    Example:
        >>> entity_spans(["B-PER", "I-PER", "O", "B-LOC"])
        [(0, 2, 'PER'), (3, 4, 'LOC')]
    """
    spans: list[tuple[int, int, str]] = []
    start: int | None = None
    kind = ""
    for i, tag in enumerate(tags):
        if tag == "O" or tag == IGNORE_TAG:
            if start is not None:
                spans.append((start, i, kind))
            start = None
            continue
        prefix, _, label = tag.partition("-")
        if prefix not in ("B", "I") or not label:
            raise ValueError(f"tag {i} is {tag!r}: not an IOB2 tag (O, B-X or I-X)")
        if prefix == "I":
            if start is None or label != kind:
                raise ValueError(
                    f"tag {i} is {tag!r} but does not continue a {label} span (IOB2 needs B- first)"
                )
            continue
        if start is not None:
            spans.append((start, i, kind))
        start, kind = i, label
    if start is not None:
        spans.append((start, len(tags), kind))
    return spans


def isolated_host(
    plugins: Mapping[str, Any] | None = None,
    *,
    entry_points: bool | None = None,
    env: Mapping[str, str] | None = None,
) -> PluginHost:
    """A plugin host of its own, independent of the process host and the user's environment.

    Args:
        plugins: In-code plugin modules ``{name: module}``. When given, entry points are not
            loaded (unless ``entry_points=True``), so an installed copy cannot clash.
        entry_points: Load installed ``augreg`` entry points (default: when no ``plugins``).
        env: ``AUGREG_LOAD_PLUGINS`` / ``AUGREG_DISABLE_PLUGINS`` (default: neither set).

    Example:
        >>> isolated_host(entry_points=False).names("adapter")
        ['core.freeze', 'core.layerwise_lr']
    """
    load = (plugins is None) if entry_points is None else entry_points
    return PluginHost(entry_points=load, plugins=plugins, env=dict(env or {}))


def _label_id(label: Any, names: Sequence[str] | None) -> int:
    if isinstance(label, bool) or not isinstance(label, (int, str)):
        raise TypeError(f"label {label!r}: expected an int or a label name")
    if isinstance(label, int):
        return label
    if names is None or label not in names:
        raise ValueError(f"label {label!r} is not in label_names={list(names or [])}")
    return list(names).index(label)


def make_batch(
    task: str,
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    label_names: Sequence[str] | None = None,
    max_length: int = 64,
) -> dict[str, Any]:
    """Tokenize examples into a padded training batch with ``labels``.

    Sequence classification uses ``text`` and ``label`` (an int, or a name in
    ``label_names``). Token classification uses ``tokens`` and ``tags``: the first sub-word of
    each word gets its tag id (from ``label_names``, default :data:`DEFAULT_TAGS`), other
    sub-words, special tokens and padding get ``-100``.

    Args:
        task: ``"sequence_classification"`` or ``"token_classification"``.
        tokenizer: A fast ``transformers`` tokenizer (``tiny_tokenizer()`` in tests).
        examples: The examples; not modified.
        label_names: Label (or tag) names in id order.
        max_length: Truncation length.

    Raises:
        ValueError: unknown task, or a label not in ``label_names``.

    Example:
        >>> batch = make_batch("token_classification", tiny_tokenizer(), token_examples())
        ... # doctest: +SKIP
        >>> (batch["labels"] == -100).any()  # doctest: +SKIP
        tensor(True)
    """
    import torch

    if not examples:
        raise ValueError("make_batch needs at least one example")
    if task == "sequence_classification":
        enc = tokenizer(
            [ex["text"] for ex in examples],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        batch = dict(enc)
        batch["labels"] = torch.tensor([_label_id(ex["label"], label_names) for ex in examples])
        return batch
    if task == "token_classification":
        names = list(label_names or DEFAULT_TAGS)
        enc = tokenizer(
            [list(ex["tokens"]) for ex in examples],
            is_split_into_words=True,
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        rows: list[list[int]] = []
        for i, ex in enumerate(examples):
            tags = list(ex["tags"])
            row: list[int] = []
            previous: int | None = None
            for word in enc.word_ids(batch_index=i):
                if word is None or word == previous:
                    row.append(-100)
                else:
                    row.append(_label_id(tags[word], names))
                previous = word
            rows.append(row)
        batch = dict(enc)
        batch["labels"] = torch.tensor(rows)
        return batch
    raise ValueError(
        f"unknown task {task!r}; use 'sequence_classification' or 'token_classification'"
    )


class NetworkAccessError(AssertionError):
    """Raised when code under test opens a network connection."""


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Make every internet connection (and DNS lookup) raise :class:`NetworkAccessError`.

    Local (Unix) sockets keep working. Restores the socket functions on exit.

    Example:
        >>> with no_network():
        ...     socket.create_connection(("example.org", 80))  # doctest: +SKIP
        Traceback (most recent call last):
        NetworkAccessError: ...
    """
    inet = {socket.AF_INET, socket.AF_INET6}

    def refuse(what: str) -> NetworkAccessError:
        return NetworkAccessError(
            f"augreg: {what} during a component test; components must not use the network "
            "(load local resources in setup(), or let the user download them beforehand)"
        )

    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in inet:
            raise refuse(f"connect to {address!r}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in inet:
            raise refuse(f"connect to {address!r}")
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (None, "localhost", "127.0.0.1", "::1"):
            raise refuse(f"DNS lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo
