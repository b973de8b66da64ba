"""Text-level knowledge injectors: entity descriptions after mentions, typed markers around them.

Both link each example with :class:`~augreg_entity_linking.linker.EntityLinker` (results
cached per batch content and options under ``<cache_dir>/entity_linking/links``), then write
into the text:

* ``entity_linking.describe`` (K-BERT, Liu et al. 2020, text-level): ``Paris (Paris: the
  capital and largest city of France) is ...``.
* ``entity_linking.markers`` (typed entity markers, as in Zhong & Chen 2021 and Baldini
  Soares et al. 2019): ``[national_capital] Paris [/national_capital] is ...``.

Length: insertions fit the model's maximum length (``max_length`` option, else the pipeline's
``model.max_length``, else the tokenizer's limit), counted in tokenizer sub-words (words
when no tokenizer is given) with room for the special tokens. Knowledge is truncated, never
the original text: when the text alone fills the length, nothing is inserted; otherwise
insertions are added left to right until the room is used (a description is cut word by word).

Token classification: inserted words get the tag :data:`augreg.IGNORE_TAG` (label ``-100``,
skipped by the loss and the metrics), so tags stay aligned. Nothing is inserted inside a gold
entity span: a description goes after the span containing its mention, and a mention whose
markers would cut a span is not marked.

Every output gets ``entity_links``: a JSON string listing the links inserted (mention,
character offsets in the original text, or for tokens in ``" ".join(tokens)``, entity id,
score). An empty text (or no tokens) is returned unchanged with ``entity_links = "[]"``.

Cost: CPU only, no model pass (unless similarity uses an encoder): about 40 us per example
on SST-2 with the WordNet KB, cached per data set; the KB indexes load once in ``setup()``.
Training cost grows with the inserted length (up to ``max_length``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

import augreg
from augreg import IGNORE_TAG, AugregError, Example, SetupContext
from augreg_entity_linking.linker import EntityLinker, Link, LinkerOptions

__all__ = ["Describe", "Markers"]

KBERT = "Liu et al. 2020, K-BERT: Enabling Language Representation with Knowledge Graph (AAAI)"
MARKERS = (
    "Zhong & Chen 2021, A Frustratingly Easy Approach for Entity and Relation Extraction "
    "(NAACL); Baldini Soares et al. 2019, Matching the Blanks (ACL)"
)
_TOKENIZER_LIMIT = 100_000  # tokenizers without a limit report a huge model_max_length


class _InjectorOptions(LinkerOptions):
    max_length: int | None = Field(
        None,
        ge=8,
        le=_TOKENIZER_LIMIT,
        description="Maximum input length in tokens the insertions must fit in (default: the "
        "pipeline's model.max_length, else the tokenizer's limit, else no limit).",
    )
    record_links: bool = Field(
        True, description="Add the 'entity_links' field (JSON) listing what was inserted."
    )


SAMPLE_KB = Path(__file__).with_name("sample_kb.jsonl")
"""A 10-entity KB (two Paris, cities, countries, people) shipped for the kit and the tests."""


class _Linked(augreg.KnowledgeInjector):
    """Shared machinery: linking, length budget, token-classification alignment."""

    options: _InjectorOptions

    @classmethod
    def conformance_options(cls, folder: Path, task: str) -> dict[str, Any] | None:
        """The shipped sample KB: there is no default KB to check with."""
        return {"kb": str(SAMPLE_KB)}

    _linker: EntityLinker | None = None
    _tokenizer: Any = None
    _limit: int | None = None

    def setup(self, ctx: SetupContext) -> None:
        """Load the KB and its indexes (cached under ``ctx.cache_dir``); note the length limit."""
        self._linker = EntityLinker.load(self.options, Path(ctx.cache_dir))
        self._tokenizer = ctx.tokenizer
        self._costs: dict[str, int] = {}
        limit = self.options.max_length or ctx.max_length
        if limit is None and ctx.tokenizer is not None:
            model_max = int(getattr(ctx.tokenizer, "model_max_length", 0) or 0)
            limit = model_max if 0 < model_max < _TOKENIZER_LIMIT else None
        self._limit = limit

    @property
    def linker(self) -> EntityLinker:
        """The linker loaded by :meth:`setup`.

        Raises:
            AugregError: ``setup()`` was not called.
        """
        if self._linker is None:
            raise AugregError(
                f"augreg-entity-linking: {self.name} was used before setup(); call "
                "setup(augreg.SetupContext(...)) first (the pipeline does)."
            )
        return self._linker

    # -- lengths -------------------------------------------------------------------------------

    def _cost(self, word: str) -> int:
        """Sub-words of one word (1 per word without a tokenizer); memoised."""
        tok = self._tokenizer
        if tok is None:
            return 1
        cost = self._costs.get(word)
        if cost is None:
            cost = len(tok.tokenize(word))
            self._costs[word] = cost
        return cost

    def _room(self, words: Sequence[str]) -> int | None:
        """Tokens left for knowledge after ``words`` and the special tokens (None: no limit)."""
        if self._limit is None:
            return None
        special = 0
        if self._tokenizer is not None:
            special = int(self._tokenizer.num_special_tokens_to_add(pair=False))
        return self._limit - special - sum(self._cost(w) for w in words)

    # -- linking -------------------------------------------------------------------------------

    def _links(self, examples: Sequence[Example]) -> list[tuple[str, list[Link]]]:
        texts = [self._text_of(ex) for ex in examples]
        return list(zip(texts, self.linker.link_texts(texts), strict=True))

    def _text_of(self, ex: Example) -> str:
        if "tokens" in ex:
            tokens = ex["tokens"]
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise AugregError(
                    f"augreg-entity-linking: {self.name}: 'tokens' must be a list of strings, "
                    f"got {tokens!r} (example {ex.get('augreg_id', '?')})."
                )
            return " ".join(tokens)
        text = ex.get("text")
        if not isinstance(text, str):
            raise AugregError(
                f"augreg-entity-linking: {self.name}: the example has no string 'text' or "
                f"'tokens' (keys: {sorted(ex)}); give {{'text': str}} or {{'tokens': [...]}}."
            )
        return text

    def inject(self, example: Example) -> Example:
        """Return the example with knowledge inserted (see the module docstring)."""
        return self.inject_batch([example])[0]

    def inject_batch(self, examples: Sequence[Example]) -> list[Example]:
        """Link the examples together (one linker call), then insert per example."""
        out = []
        for ex, (text, links) in zip(examples, self._links(examples), strict=True):
            if "tokens" in ex:
                new, used = self._render_tokens(ex, text, links)
            else:
                new, used = self._render_text(ex, text, links)
            if self.options.record_links:
                new["entity_links"] = json.dumps([lk.to_dict() for lk in used])
            out.append(new)
        return out

    # -- token classification ------------------------------------------------------------------

    @staticmethod
    def _token_span(tokens: Sequence[str], link: Link) -> tuple[int, int] | None:
        """Tokens (first, last inclusive) covered by a link, or None if it cuts a token."""
        pos = 0
        first = last = -1
        for i, tok in enumerate(tokens):
            end = pos + len(tok)
            if pos == link.start:
                first = i
            if pos < link.end <= end:
                rest = tok[link.end - pos :]
                if rest and any(ch.isalnum() for ch in rest):
                    return None  # ends inside a word ("Paris" in "Paris-based")
                last = i
            pos = end + 1
        if first < 0 or last < first:
            return None
        return first, last

    @staticmethod
    def _gold_spans(tags: Sequence[str]) -> list[tuple[int, int]]:
        """Gold entity spans (first, last inclusive); IGNORE_TAG tokens read as ``O``."""
        from augreg.tasks import spans

        clean = ["O" if t == IGNORE_TAG else t for t in tags]
        return [(s, e - 1) for s, e, _ in spans(clean)]

    def _render_tokens(
        self, ex: Example, text: str, links: list[Link]
    ) -> tuple[Example, list[Link]]:
        raise NotImplementedError

    def _plan(self, base: Sequence[str], links: list[Link]) -> list[tuple[Any, ...]]:
        """What to insert for which links (``(link, ...)`` items), within the length budget."""
        raise NotImplementedError

    def _insert(self, text: str, item: tuple[Any, ...]) -> str:
        """``text`` with one planned insertion made (offsets of the original text)."""
        raise NotImplementedError

    def _render_text(self, ex: Example, text: str, links: list[Link]) -> tuple[Example, list[Link]]:
        if not text.strip() or not links:
            return {**ex}, []
        plan = self._plan(text.split(), links)
        new = text
        for item in reversed(plan):  # right to left: earlier offsets stay valid
            new = self._insert(new, item)
        return {**ex, "text": new}, [item[0] for item in plan]

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _fit(words: list[str], room: int | None, cost: Any, close: str) -> list[str]:
    """The longest prefix of ``words``, its last word closed by ``close``, that fits ``room``.

    Example:
        >>> _fit(["(Paris:", "capital", "of", "France"], 3, lambda w: 1, ")")
        ['(Paris:', 'capital', 'of)']
    """
    used, k = 0, 0
    for i, word in enumerate(words):
        if room is not None and used + cost(word + close) > room:
            break
        used += cost(word)
        k = i + 1
    return [*words[: k - 1], words[k - 1] + close] if k else []


class Describe(_Linked):
    """Inserts ``name: description`` (or the types) after each linked mention (text-level K-BERT).

    ``Paris is lovely`` becomes ``Paris (Paris: the capital and largest city of France) is
    lovely`` (``open``/``close`` around, at most ``max_knowledge_words`` words of the
    description). Each entity is described once per example (its first mention) unless
    ``once_per_entity`` is off. Knowledge is truncated before the original text to fit the
    model's maximum length. For NER, inserted words are tagged ``augreg.IGNORE_TAG`` (label
    -100) and go after the gold span that contains the mention.

    Paper: Liu et al. 2020, K-BERT (AAAI): knowledge triples injected after the entity; this
    is its text-level form (no soft position or visibility matrix).

    Cost: linking about 40 us per example (cached per data set); the inserted words lengthen
    every training and evaluation example, up to ``max_length``.
    """

    name: ClassVar[str] = "entity_linking.describe"
    paper: ClassVar[str] = KBERT
    conflicts_with: ClassVar[frozenset[str]] = frozenset({"entity_linking.markers"})

    class Options(_InjectorOptions):
        content: Literal["description", "types"] = Field(
            "description", description="What follows the name: the description or the types."
        )
        max_knowledge_words: int = Field(
            16, ge=1, le=256, description="Words of the description (or types) kept per entity."
        )
        open: str = Field("(", max_length=8, description="Text put before the knowledge.")
        close: str = Field(")", max_length=8, description="Text put after the knowledge.")
        once_per_entity: bool = Field(
            True, description="Describe an entity at its first mention only."
        )

        @field_validator("open", "close")
        @classmethod
        def _no_space(cls, value: str) -> str:
            if any(ch.isspace() for ch in value):
                raise ValueError(f"must not contain whitespace, got {value!r}")
            return value

    options: Options

    def _knowledge(self, link: Link) -> list[str]:
        entity = self.linker.entity(link.entity_id)
        opts = self.options
        body = entity.description if opts.content == "description" else ", ".join(entity.types)
        if not body:  # no description: fall back to the types, and the other way round
            body = ", ".join(entity.types) if opts.content == "description" else entity.description
        words = body.split()[: opts.max_knowledge_words]
        if not words:  # neither description nor types: nothing to say
            return []
        head = f"{entity.name}:".split()
        return [opts.open + head[0], *head[1:], *words]

    def _plan(self, base: Sequence[str], links: list[Link]) -> list[tuple[Link, list[str]]]:
        """The links to describe and their (possibly truncated) words, left to right."""
        room = self._room(base)
        seen: set[str] = set()
        plan: list[tuple[Link, list[str]]] = []
        for link in links:
            if self.options.once_per_entity and link.entity_id in seen:
                continue
            seen.add(link.entity_id)
            knowledge = self._knowledge(link)
            if not knowledge:
                continue
            words = _fit(knowledge, room, self._cost, self.options.close)
            head = len(self.linker.entity(link.entity_id).name.split())
            if len(words) <= min(head, len(knowledge) - 1):
                break  # no room for more than the name: the remaining knowledge is truncated
            plan.append((link, words))
            if room is not None:
                room -= sum(self._cost(w) for w in words)
        return plan

    def _insert(self, text: str, item: tuple[Any, ...]) -> str:
        link, words = item
        return text[: link.end] + " " + " ".join(words) + text[link.end :]

    def _render_tokens(
        self, ex: Example, text: str, links: list[Link]
    ) -> tuple[Example, list[Link]]:
        tokens, tags = list(ex["tokens"]), list(ex["tags"])
        if not tokens or not links:
            return {**ex}, []
        gold = self._gold_spans(tags)
        placed: list[tuple[int, Link]] = []
        for link in links:
            span = self._token_span(tokens, link)
            if span is None:
                continue
            after = span[1]
            for first, last in gold:  # never inside a gold span: after the span
                if first <= span[1] and span[0] <= last:
                    after = max(after, last)
            placed.append((after, link))
        plan = self._plan(tokens, [lk for _, lk in placed])
        where = {id(lk): after for after, lk in placed}
        for link, words in reversed(plan):
            at = where[id(link)] + 1
            tokens[at:at] = words
            tags[at:at] = [IGNORE_TAG] * len(words)
        return {**ex, "tokens": tokens, "tags": tags}, [lk for lk, _ in plan]


class Markers(_Linked):
    """Puts typed markers around linked mentions: ``[city] Paris [/city] is lovely``.

    The type is the entity's first KB type (spaces become ``_``), or ``untyped`` when it has
    none; ``open_marker``/``close_marker`` are templates with ``{type}``. Markers are plain
    text (split into sub-words by the tokenizer; no vocabulary change). Pairs are added left
    to right while they fit the model's maximum length. For NER, markers are tagged
    ``augreg.IGNORE_TAG`` (label -100), and a mention whose markers would cut a gold span is
    left unmarked.

    Paper: typed entity markers as in Zhong & Chen 2021 (NAACL) and Baldini Soares et al.
    2019 (ACL), here placed by an entity linker rather than given.

    Cost: linking about 40 us per example (cached per data set); two marker words per linked
    mention lengthen every example.
    """

    name: ClassVar[str] = "entity_linking.markers"
    paper: ClassVar[str] = MARKERS
    conflicts_with: ClassVar[frozenset[str]] = frozenset({"entity_linking.describe"})

    class Options(_InjectorOptions):
        open_marker: str = Field(
            "[{type}]", min_length=1, max_length=64, description="Marker before a mention."
        )
        close_marker: str = Field(
            "[/{type}]", min_length=1, max_length=64, description="Marker after a mention."
        )
        untyped: str = Field(
            "entity", min_length=1, max_length=64, description="Type of entities without types."
        )

        @field_validator("open_marker", "close_marker")
        @classmethod
        def _template(cls, value: str) -> str:
            try:
                value.format(type="t")
            except (KeyError, IndexError, ValueError):
                raise ValueError(
                    f"must be a template whose only placeholder is {{type}}, got {value!r}"
                ) from None
            if any(ch.isspace() for ch in value):
                raise ValueError(f"must not contain whitespace, got {value!r}")
            return value

    options: Options

    def _pair(self, link: Link) -> tuple[str, str]:
        types = self.linker.entity(link.entity_id).types
        kind = "_".join(types[0].split()) if types else self.options.untyped
        return self.options.open_marker.format(type=kind), self.options.close_marker.format(
            type=kind
        )

    def _plan(self, base: Sequence[str], links: list[Link]) -> list[tuple[Link, str, str]]:
        room = self._room(base)
        plan = []
        for link in links:
            left, right = self._pair(link)
            cost = self._cost(left) + self._cost(right)
            if room is not None:
                if cost > room:
                    break
                room -= cost
            plan.append((link, left, right))
        return plan

    def _insert(self, text: str, item: tuple[Any, ...]) -> str:
        link, left, right = item
        return f"{text[: link.start]}{left} {text[link.start : link.end]} {right}{text[link.end :]}"

    def _render_tokens(
        self, ex: Example, text: str, links: list[Link]
    ) -> tuple[Example, list[Link]]:
        tokens, tags = list(ex["tokens"]), list(ex["tags"])
        if not tokens or not links:
            return {**ex}, []
        gold = self._gold_spans(tags)
        spans: dict[int, tuple[int, int]] = {}
        kept = []
        for link in links:
            span = self._token_span(tokens, link)
            if span is None:
                continue
            cuts = any(
                first <= span[1] and span[0] <= last and not (span[0] <= first and last <= span[1])
                for first, last in gold
            )
            if not cuts:
                spans[id(link)] = span
                kept.append(link)
        plan = self._plan(tokens, kept)
        for link, left, right in reversed(plan):
            first, last = spans[id(link)]
            tokens[last + 1 : last + 1] = [right]
            tags[last + 1 : last + 1] = [IGNORE_TAG]
            tokens[first:first] = [left]
            tags[first:first] = [IGNORE_TAG]
        return {**ex, "tokens": tokens, "tags": tags}, [lk for lk, _, _ in plan]
