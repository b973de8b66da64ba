"""The four EDA operations (Wei & Zou 2019), EDA itself, and mention replacement (Dai & Adel 2020).

All written here rather than wrapped from nlpaug: nlpaug's word ops rejoin text with single
spaces, know nothing of entity spans, use global random state, and its WordNet synonym op
re-queries WordNet for every word (about 1,000 sentences/s on SST-2; these ops keep a per-word
synonym cache, see :mod:`augreg_eda.lexicon`).

Shared behaviour:

* Text is split on whitespace and rejoined exactly as written; punctuation tokens are never
  changed, moved or deleted, and a word's attached punctuation stays in place.
  ``normalize=True`` applies the reference implementation's cleaning (lower case, letters only)
  first, for sequence classification only.
* Token classification: entity spans are never split, changed or deleted; words are replaced,
  deleted or inserted only outside spans (inserted tokens are tagged ``O``); a swap moves whole
  spans as units. Tags are re-written as valid IOB2 for the new positions.
* ``n = max(1, int(alpha * l))`` words change, ``l`` being the number of words (tokens with a
  letter or digit) in the sentence.
* ``[]`` when no new example can be written: empty text, one word for swap or deletion, no
  WordNet synonym for replacement or insertion, or an output equal to the input.
* Deterministic given the rng; no global random state.

Swap and deletion edit a batch's texts all at once with numpy (:mod:`augreg_eda._batch`),
so that they run at least 20x faster than nlpaug's; token examples, and the synonym ops, go
one sentence at a time through :class:`~augreg_eda._seq.Seq`.

Cost: CPU only, no model; about 2 microseconds per sentence for swap and deletion in batches
(plus 0.1-0.2 ms a call), about 20 for synonym ops once the per-word synonym cache is warm (a
WordNet lookup is 0.1-10 ms the first time a word is seen). WordNet loads once per process in
``setup()`` (about 3 s).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

import augreg
from augreg import AugregError
from augreg_eda._seq import Seq, normalize_text
from augreg_eda.lexicon import Lexicon, lexicon

__all__ = [
    "PRESETS",
    "Eda",
    "MentionReplacement",
    "RandomDeletion",
    "RandomInsertion",
    "RandomSwap",
    "SynonymReplacement",
    "preset_for_size",
    "random_deletion",
    "random_insertion",
    "random_swap",
    "synonym_replacement",
]

WEI_ZOU = (
    "Wei & Zou 2019, EDA: Easy Data Augmentation Techniques for Boosting Performance on Text "
    "Classification (EMNLP-IJCNLP)"
)
DAI_ADEL = (
    "Dai & Adel 2020, An Analysis of Simple Data Augmentation for Named Entity Recognition (COLING)"
)

Preset = Literal["paper-500", "paper-2000", "paper-5000", "auto"]
OpName = Literal["synonym_replacement", "random_insertion", "random_swap", "random_deletion"]
ALL_OPS: tuple[OpName, ...] = (
    "synonym_replacement",
    "random_insertion",
    "random_swap",
    "random_deletion",
)

PRESETS: dict[str, tuple[float, int]] = {
    "paper-500": (0.05, 16),
    "paper-2000": (0.05, 8),
    "paper-5000": (0.1, 4),
}
"""``(alpha, n_aug)`` recommended by Wei & Zou (Table 3) per training-set size."""


def preset_for_size(n_train: int) -> str:
    """The paper's preset nearest (on a log scale) to a training-set size.

    Below 1,000 examples ``paper-500``, below 3,163 ``paper-2000``, else ``paper-5000``
    (the boundaries are the geometric means of 500, 2,000 and 5,000).

    Example:
        >>> preset_for_size(500), preset_for_size(2000), preset_for_size(6920)
        ('paper-500', 'paper-2000', 'paper-5000')
    """
    if n_train < 1000:
        return "paper-500"
    if n_train * n_train < 2000 * 5000:
        return "paper-2000"
    return "paper-5000"


def _pick(rng: random.Random, n: int) -> int:
    # random() is one C call; randrange/choice cost several Python calls each.
    return int(rng.random() * n)


def _n_changes(seq: Seq, alpha: float) -> int:
    return max(1, int(alpha * len(seq.word_positions())))


def _candidates(seq: Seq, lex: Lexicon) -> dict[str, list[int]]:
    """Distinct non-stopword words outside spans (lower case) -> their positions, in order."""
    found: dict[str, list[int]] = {}
    for i in seq.editable_positions():
        word = seq.word_at(i)
        if word.isalpha():
            key = word.lower()
            if key not in lex.stopwords:
                found.setdefault(key, []).append(i)
    return found


# -- the operations (work in place on a Seq; return whether anything changed) -----------------


def synonym_replacement(seq: Seq, n: int, rng: random.Random, lex: Lexicon) -> bool:
    """Replace ``n`` distinct non-stopwords (every occurrence) by a random WordNet synonym.

    Candidates are visited in a random order and skipped when WordNet has no synonym, as in
    the reference code. Casing follows the replaced word; multi-word synonyms become several
    tokens tagged ``O`` in token mode.
    """
    found = _candidates(seq, lex)
    order = list(found)
    rng.shuffle(order)
    edits: list[tuple[int, list[str]]] = []
    replaced = 0
    for word in order:
        syns = lex.synonyms(word)
        if not syns:
            continue
        words = syns[_pick(rng, len(syns))].split(" ")
        edits.extend((i, words) for i in found[word])
        replaced += 1
        if replaced >= n:
            break
    # right to left, so multi-word replacements do not shift positions still to edit
    for i, words in sorted(edits, key=lambda e: -e[0]):
        seq.replace_word(i, words)
    return bool(edits)


def random_insertion(seq: Seq, n: int, rng: random.Random, lex: Lexicon) -> bool:
    """Insert, ``n`` times, a synonym of a random non-stopword of the sentence at a random gap.

    As in the reference code, up to 10 random words are tried per insertion to find one with
    synonyms. Token mode inserts only outside spans, tagged ``O``.
    """
    words = list(_candidates(seq, lex))
    if not words:
        return False
    inserted = 0
    for _ in range(n):
        syns: tuple[str, ...] = ()
        for _try in range(10):
            syns = lex.synonyms(words[_pick(rng, len(words))])
            if syns:
                break
        if not syns:
            continue
        new = syns[_pick(rng, len(syns))].split(" ")
        gaps = seq.insertion_gaps()
        seq.insert(gaps[_pick(rng, len(gaps))], new)
        inserted += 1
    return inserted > 0


def random_swap(seq: Seq, n: int, rng: random.Random) -> bool:
    """Swap two random words ``n`` times (token mode: whole spans move as units).

    Punctuation stays in place. Needs at least two movable units. (Text examples in the
    components go through :func:`augreg_eda._batch.swap_texts`, a whole batch at once.)
    """
    units = seq.units()
    m = len(units)
    if m < 2:
        return False
    for _ in range(n):
        a = _pick(rng, m)
        b = _pick(rng, m - 1)
        if b >= a:
            b += 1
        seq.swap_units(units[a], units[b])
        units = seq.units()
    return True


def random_deletion(seq: Seq, p: float, rng: random.Random, at_least_one: bool = True) -> bool:
    """Delete each word outside spans with probability ``p``; at least one word remains.

    As in the reference code, when every word comes up for deletion one random word is kept.
    With ``at_least_one``, a draw that deletes nothing deletes one random word instead.
    """
    editable = seq.editable_positions()
    n_words = len(seq.word_positions())
    if not editable or n_words < 2:
        return False
    r = rng.random
    drop = [i for i in editable if r() < p]
    if len(drop) == n_words:
        drop.pop(_pick(rng, len(drop)))
    if not drop:
        if not at_least_one:
            return False
        drop = [editable[_pick(rng, len(editable))]]
    seq.delete(set(drop))
    return True


# -- components ------------------------------------------------------------------------------


class _WordOp(augreg.Augmenter):
    """Shared parsing, set-up and output of the word-level ops (not registered)."""

    uses_wordnet: ClassVar[bool] = True
    paper: ClassVar[str] = WEI_ZOU

    class Options(augreg.Augmenter.Options):
        alpha: float = Field(
            0.1,
            gt=0,
            le=1,
            description="Fraction of the words changed (n = max(1, int(alpha * words))); for "
            "random deletion, the probability p of deleting each word.",
        )
        normalize: bool = Field(
            False,
            description="Lower-case and keep letters only first, like the reference EDA code "
            "(sequence classification only).",
        )

    _lexicon: Lexicon | None = None

    def setup(self, ctx: augreg.SetupContext) -> None:
        """Load WordNet and the stopwords (once per process); check the options fit the task.

        Raises:
            AugregError: WordNet or stopwords are missing (says how to install them), or
                ``normalize`` is on for token classification.
        """
        if getattr(self.options, "normalize", False) and ctx.task == "token_classification":
            raise AugregError(
                f"augreg: {self.name}: normalize=True rewrites the text and would misalign "
                "token tags; it is for sequence classification only. Remove normalize."
            )
        if self.uses_wordnet:
            self._lexicon = lexicon(self.name)

    @property
    def lex(self) -> Lexicon:
        """The lexicon (re-loaded lazily in a worker process after unpickling)."""
        if self._lexicon is None:
            self._lexicon = lexicon(self.name)
        return self._lexicon

    def __getstate__(self) -> dict[str, Any]:
        # WordNet's reader holds open files; worker processes load their own (cached per
        # process) on first use.
        state = dict(self.__dict__)
        state.pop("_lexicon", None)
        return state

    def parse(self, example: augreg.Example) -> Seq:
        """The example's working sequence (tokens and span ids, or whitespace tokens)."""
        if "tokens" in example:
            if getattr(self.options, "normalize", False):
                raise AugregError(
                    f"augreg: {self.name}: normalize=True is for text examples only; this "
                    "example has tokens. Remove normalize."
                )
            return Seq.from_tokens(example["tokens"], example["tags"])
        text = example["text"]
        if getattr(self.options, "normalize", False):
            text = normalize_text(text)
        return Seq.from_text(text)

    def finish(self, example: augreg.Example, seq: Seq) -> list[augreg.Example]:
        """``[new example]``, or ``[]`` when it equals the input."""
        if "tokens" in example:
            out = seq.output(example)
            return [] if out["tokens"] == list(example["tokens"]) else [out]
        return self.finish_texts([example], [seq.text()])[0]

    def work_texts(self, examples: Sequence[augreg.Example]) -> list[str]:
        """The texts an op edits (cleaned first with ``normalize``)."""
        if getattr(self.options, "normalize", False):
            return [normalize_text(ex["text"]) for ex in examples]
        return [ex["text"] for ex in examples]

    def finish_texts(
        self, examples: Sequence[augreg.Example], texts: Sequence[str | None]
    ) -> list[list[augreg.Example]]:
        """``[new example]`` per edited text; ``[]`` for ``None``, the input text or a blank."""
        if getattr(self.options, "normalize", False):
            texts = [None if t is None else normalize_text(t) for t in texts]
        out: list[list[augreg.Example]] = []
        for ex, t in zip(examples, texts, strict=True):
            if t is None or t == ex["text"] or not t.strip():
                out.append([])
                continue
            new = dict(ex)  # a third faster than {**ex, "text": t}: a hot loop in big batches
            new["text"] = t
            out.append([new])
        return out

    def op(self, seq: Seq, rng: random.Random) -> bool:
        raise NotImplementedError

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        seq = self.parse(example)
        if not seq.toks or not self.op(seq, rng):
            return []
        return self.finish(example, seq)


class SynonymReplacement(_WordOp):
    """EDA synonym replacement: replace n random non-stopwords by WordNet synonyms.

    Wei & Zou 2019 (EDA). ``n = max(1, int(alpha * words))`` distinct words, chosen at random
    among words that are not in nltk's English stopword list, each replaced (every occurrence)
    by a random WordNet synonym. The replacement takes the casing of the word it replaces
    (``Movie`` -> ``Film``) and keeps its punctuation. Token classification: only words
    outside entity spans; a multi-word synonym (``not bad``) becomes several tokens tagged
    ``O``. Returns ``[]`` when no candidate word has a synonym.

    Written here, not with nlpaug's ``SynonymAug``: per-word synonym cache (about 40x
    faster once warm), faithful text, entity spans, the rng we are given.

    Cost: no model; a few microseconds per sentence with a warm synonym cache, plus one
    WordNet lookup (0.1-10 ms) the first time each word is seen; WordNet loads in ``setup()``
    (about 3 s, once per process).

    Example:
        >>> sr = SynonymReplacement(alpha=0.2)
        >>> sr.setup(augreg.SetupContext())  # doctest: +SKIP
        >>> sr.augment({"text": "A great movie.", "label": 1}, random.Random(0))  # doctest: +SKIP
        [{'text': 'A great film.', 'label': 1}]
    """

    name = "eda.synonym_replacement"

    def op(self, seq: Seq, rng: random.Random) -> bool:
        n = _n_changes(seq, self.options.alpha)  # type: ignore[attr-defined]
        return synonym_replacement(seq, n, rng, self.lex)


class RandomInsertion(_WordOp):
    """EDA random insertion: insert n WordNet synonyms of the sentence's words at random gaps.

    Wei & Zou 2019 (EDA). ``n = max(1, int(alpha * words))`` times: take a random non-stopword
    of the sentence that has a WordNet synonym (up to 10 tries, as the reference code), insert
    a random synonym of it as new word(s) between two tokens. Token classification: never
    inside an entity span; inserted tokens are tagged ``O``. Returns ``[]`` when no word of
    the sentence has a synonym.

    Written here (see :class:`SynonymReplacement` for why).

    Cost: as synonym replacement, a few microseconds per sentence with a warm synonym cache.
    """

    name = "eda.random_insertion"

    def op(self, seq: Seq, rng: random.Random) -> bool:
        n = _n_changes(seq, self.options.alpha)  # type: ignore[attr-defined]
        return random_insertion(seq, n, rng, self.lex)


class _TextBatchOp(_WordOp):
    """Swap and deletion: a batch's text examples are edited all at once (not registered).

    Text examples go through :mod:`augreg_eda._batch` (numpy over the whole batch; each
    example's choices come from one 64-bit key drawn from its own rng, so the output does not
    depend on the batch). Token examples go one by one through the span-aware :class:`Seq` op.
    """

    uses_wordnet = False
    # In the cache key: version 2 draws text choices from a hashed key, not from the rng
    # directly, so the same seed writes other texts than version 1 did.
    version: ClassVar[str] = "2"

    def on_texts(self, texts: list[str], keys: list[int]) -> list[str | None]:
        raise NotImplementedError

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        return self.augment_batch([example], [rng])[0]

    def augment_batch(
        self, examples: Sequence[augreg.Example], rngs: Sequence[random.Random]
    ) -> list[list[augreg.Example]]:
        text_at = [i for i, ex in enumerate(examples) if "tokens" not in ex]
        if len(text_at) == len(examples):
            keys = [rng.getrandbits(64) for rng in rngs]
            return self.finish_texts(examples, self.on_texts(self.work_texts(examples), keys))
        out = [
            _WordOp.augment(self, ex, rng) if "tokens" in ex else []
            for ex, rng in zip(examples, rngs, strict=True)
        ]
        if text_at:
            done = self.augment_batch([examples[i] for i in text_at], [rngs[i] for i in text_at])
            for i, views in zip(text_at, done, strict=True):
                out[i] = views
        return out


class RandomSwap(_TextBatchOp):
    """EDA random swap: swap two random words, n times.

    Wei & Zou 2019 (EDA). ``n = max(1, int(alpha * words))`` swaps of two distinct words.
    Punctuation stays where it was (in ``"was great!"`` only ``great`` moves). Token
    classification: a whole entity span moves as one unit, never split. The multiset of words
    is kept. Returns ``[]`` for fewer than two words (or when the swaps cancel out).

    Written here, not with nlpaug's ``RandomWordAug(action="swap")``: faithful text, entity
    spans, the rng we are given, and over 20x faster: a batch's texts are edited at once
    with numpy (:mod:`augreg_eda._batch`).

    Cost: no model, no WordNet; about 2 microseconds per sentence in batches, plus 0.1-0.2 ms
    of numpy set-up per call (so one-example calls are the slow way).
    """

    name = "eda.random_swap"

    def op(self, seq: Seq, rng: random.Random) -> bool:
        n = _n_changes(seq, self.options.alpha)  # type: ignore[attr-defined]
        return random_swap(seq, n, rng)

    def on_texts(self, texts: list[str], keys: list[int]) -> list[str | None]:
        from augreg_eda._batch import swap_texts  # numpy: not at import (`augreg plugins`)

        return swap_texts(texts, keys, self.options.alpha)  # type: ignore[attr-defined]


class RandomDeletion(_TextBatchOp):
    """EDA random deletion: delete each word with probability p = alpha.

    Wei & Zou 2019 (EDA). Each word is deleted with probability ``alpha`` (the paper's p);
    punctuation is never deleted (a deleted word's trailing punctuation joins the previous
    word). At least one word always remains. When the draw deletes nothing, one random word is
    deleted (``at_least_one``, default) so that every output is new; with ``at_least_one=False``
    that example gives ``[]``. Token classification: only words outside entity spans.
    Returns ``[]`` for one-word texts.

    Written here, not with nlpaug's ``RandomWordAug(action="delete")``: faithful text, entity
    spans, the rng we are given, and over 20x faster: a batch's texts are edited at once
    with numpy (:mod:`augreg_eda._batch`).

    Cost: no model, no WordNet; about 2 microseconds per sentence in batches, plus 0.1-0.2 ms
    of numpy set-up per call (so one-example calls are the slow way).
    """

    name = "eda.random_deletion"

    class Options(_WordOp.Options):
        at_least_one: bool = Field(
            True,
            description="When no word comes up for deletion, delete one random word (else "
            "write nothing for that example).",
        )

    def op(self, seq: Seq, rng: random.Random) -> bool:
        opts = self.options
        return random_deletion(seq, opts.alpha, rng, opts.at_least_one)  # type: ignore[attr-defined]

    def on_texts(self, texts: list[str], keys: list[int]) -> list[str | None]:
        from augreg_eda._batch import delete_texts  # numpy: not at import (`augreg plugins`)

        opts = self.options
        return delete_texts(texts, keys, opts.alpha, opts.at_least_one)  # type: ignore[attr-defined]


class Eda(_WordOp):
    """EDA: n_aug new sentences per example, each from one of the four ops, spread evenly.

    Wei & Zou 2019. Each call writes up to ``n_aug`` distinct examples; the k-th comes from op
    ``ops[(start + k) % len(ops)]`` with a random ``start``, so the ops share the copies evenly
    (the reference code writes ``n_aug/4 + 1`` per op, shuffles and truncates). Outputs equal
    to the input or to an earlier output are dropped, so fewer than ``n_aug`` may come back.
    (The data stage keeps the originals: they are not among the outputs.)

    ``preset`` sets ``alpha`` and ``n_aug`` from the paper's Table 3: ``paper-500`` 0.05 / 16,
    ``paper-2000`` 0.05 / 8, ``paper-5000`` 0.1 / 4 (5,000 examples and more); ``auto``
    (default) picks one from the training-set size given to ``setup()`` (see
    :func:`preset_for_size`). An explicit ``alpha`` or ``n_aug`` overrides the preset's.
    ``copies`` > 1 repeats the whole call with another rng (``copies * n_aug`` outputs).

    Cost: the sum of its ops' costs times n_aug, a few microseconds per output with a warm
    synonym cache (a batch's text swaps and deletions run in one numpy call each, as in
    :class:`RandomSwap`); WordNet loads in ``setup()``. 500 examples x 16 copies take well
    under a second (benchmarks/augment_speed.py).

    Example:
        >>> eda = Eda(preset="paper-500")
        >>> eda.setup(augreg.SetupContext())  # doctest: +SKIP
        >>> len(eda.augment({"text": "a gripping , well acted film", "label": 1},
        ...                 random.Random(0)))  # doctest: +SKIP
        16
    """

    name = "eda.eda"
    version: ClassVar[str] = "2"  # as _TextBatchOp: its swaps and deletions changed draws

    class Options(_WordOp.Options):
        alpha: float | None = Field(  # type: ignore[assignment]
            None,
            gt=0,
            le=1,
            description="Fraction of words changed per op (and deletion probability); "
            "default: the preset's (0.1 without a preset).",
        )
        n_aug: int | None = Field(
            None,
            ge=1,
            le=64,
            description="New examples written per call; default: the preset's (9 without one).",
        )
        preset: Preset | None = Field(
            "auto",
            description="The paper's parameters for a training-set size: paper-500, "
            "paper-2000, paper-5000, or auto (from the training set given to setup); None: "
            "alpha 0.1 and n_aug 9 as in the reference code.",
        )
        ops: tuple[OpName, ...] = Field(
            ALL_OPS,
            min_length=1,
            description="The ops to use: synonym_replacement, random_insertion, random_swap, "
            "random_deletion.",
        )

        @model_validator(mode="after")
        def _distinct_ops(self) -> Eda.Options:
            if len(set(self.ops)) != len(self.ops):
                raise ValueError(f"ops must not repeat an op, got {list(self.ops)}")
            return self

    _resolved: tuple[float, int] | None = None

    def _resolve(self, n_train: int | None) -> tuple[float, int]:
        opts = self.options
        preset = opts.preset  # type: ignore[attr-defined]
        if preset == "auto":
            if n_train is None:
                raise AugregError(
                    f"augreg: {self.name}: preset='auto' picks alpha and n_aug from the "
                    "training-set size, but setup() got no training examples. Give a preset "
                    "(paper-500, paper-2000, paper-5000) or alpha and n_aug."
                )
            preset = preset_for_size(n_train)
        alpha, n_aug = PRESETS[preset] if preset else (0.1, 9)
        if opts.alpha is not None:  # type: ignore[attr-defined]
            alpha = opts.alpha  # type: ignore[attr-defined]
        if opts.n_aug is not None:  # type: ignore[attr-defined]
            n_aug = opts.n_aug  # type: ignore[attr-defined]
        return alpha, n_aug

    @property
    def uses_wordnet(self) -> bool:  # type: ignore[override]
        ops = self.options.ops  # type: ignore[attr-defined]
        return "synonym_replacement" in ops or "random_insertion" in ops

    def setup(self, ctx: augreg.SetupContext) -> None:
        """Resolve the preset (``auto``: from ``len(ctx.train_examples)``) and load WordNet.

        Raises:
            AugregError: ``auto`` without training examples, missing NLTK data, or
                ``normalize`` with token classification.
        """
        n_train = None if ctx.train_examples is None else len(ctx.train_examples)
        needs_size = self.options.preset == "auto" and not (  # type: ignore[attr-defined]
            self.options.alpha is not None and self.options.n_aug is not None  # type: ignore[attr-defined]
        )
        self._resolved = self._resolve(n_train if needs_size else 0)
        super().setup(ctx)

    @property
    def params(self) -> tuple[float, int]:
        """``(alpha, n_aug)`` in use (known after ``setup()`` for ``preset='auto'``)."""
        if self._resolved is None:
            self._resolved = self._resolve(None)
        return self._resolved

    def fingerprint(self) -> str:
        # 'auto' resolves in setup(): the cache key must change with the values in use.
        base = super().fingerprint()
        if self._resolved is None:
            return base
        extra = f"{base}:{self._resolved[0]!r}:{self._resolved[1]}"
        return hashlib.sha256(extra.encode()).hexdigest()[:16]

    def _op(self, name: str, alpha: float) -> Callable[[Seq, random.Random], bool]:
        if name == "random_swap":
            return lambda seq, rng: random_swap(seq, _n_changes(seq, alpha), rng)
        if name == "random_deletion":
            return lambda seq, rng: random_deletion(seq, alpha, rng)
        if name == "synonym_replacement":
            return lambda seq, rng: synonym_replacement(seq, _n_changes(seq, alpha), rng, self.lex)
        return lambda seq, rng: random_insertion(seq, _n_changes(seq, alpha), rng, self.lex)

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        return self.augment_batch([example], [rng])[0]

    def augment_batch(
        self, examples: Sequence[augreg.Example], rngs: Sequence[random.Random]
    ) -> list[list[augreg.Example]]:
        alpha, n_aug = self.params
        names = self.options.ops  # type: ignore[attr-defined]
        ops = [self._op(name, alpha) for name in names]
        # views[i][k]: example i's k-th output. Text swaps and deletions only draw their key
        # here and run afterwards, the whole batch in one call each (augreg_eda._batch).
        views: list[list[list[augreg.Example]]] = []
        later: dict[str, list[tuple[int, int, int]]] = {"random_swap": [], "random_deletion": []}
        for i, (example, rng) in enumerate(zip(examples, rngs, strict=True)):
            start = _pick(rng, len(ops))
            row: list[list[augreg.Example]] = []
            for k in range(n_aug):
                j = (start + k) % len(ops)
                if names[j] in later and "tokens" not in example:
                    later[names[j]].append((i, k, rng.getrandbits(64)))
                    row.append([])
                    continue
                seq = self.parse(example)
                row.append(self.finish(example, seq) if seq.toks and ops[j](seq, rng) else [])
            views.append(row)
        from augreg_eda._batch import delete_texts, swap_texts  # numpy: not at import

        for name, jobs in later.items():
            if not jobs:
                continue
            sources = [examples[i] for i, _, _ in jobs]
            texts = self.work_texts(sources)
            keys = [key for _, _, key in jobs]
            if name == "random_swap":
                new = swap_texts(texts, keys, alpha)
            else:
                new = delete_texts(texts, keys, alpha)
            for (i, k, _), out in zip(jobs, self.finish_texts(sources, new), strict=True):
                views[i][k] = out
        return [_distinct(row) for row in views]


def _distinct(views: list[list[augreg.Example]]) -> list[augreg.Example]:
    """The examples of ``views`` in order, each once."""
    outputs: list[augreg.Example] = []
    seen: set[str] = set()
    for view in views:
        for out in view:
            key = repr((out.get("tokens"), out.get("tags"), out.get("text")))
            if key not in seen:
                seen.add(key)
                outputs.append(out)
    return outputs


class MentionReplacement(augreg.Augmenter):
    """Mention replacement: swap entity mentions for other same-type mentions from training data.

    Dai & Adel 2020. Each entity mention is replaced, with probability ``p``, by a random
    different mention of the same type seen in the training examples (collected in
    ``setup()`` from ``ctx.train_examples``); its tags are re-written ``B-X I-X ...`` for the
    new length. With ``at_least_one`` (default), a draw that replaces nothing replaces one
    random mention instead. Returns ``[]`` for sentences without a replaceable mention.
    Token classification only.

    Written here: nlpaug has no label-aware op.

    Cost: no model; microseconds per sentence; ``setup()`` reads the training set once.
    """

    name = "eda.mention_replacement"
    paper = DAI_ADEL
    supports_tasks = frozenset({"token_classification"})

    class Options(augreg.Augmenter.Options):
        p: float = Field(
            0.3, gt=0, le=1, description="Probability that each entity mention is replaced."
        )
        at_least_one: bool = Field(
            True,
            description="When no mention comes up for replacement, replace one random "
            "mention (else write nothing for that example).",
        )

    _mentions: dict[str, list[tuple[str, ...]]] | None = None
    _index: dict[str, dict[tuple[str, ...], int]] | None = None

    def setup(self, ctx: augreg.SetupContext) -> None:
        """Collect the training set's entity mentions by type.

        Raises:
            AugregError: not token classification, or no training examples given.
        """
        from augreg.tasks import spans

        if ctx.task != "token_classification":
            raise AugregError(
                f"augreg: {self.name} is for token classification (entity spans), not "
                f"{ctx.task}. Use eda.synonym_replacement or eda.eda for text."
            )
        if ctx.train_examples is None:
            raise AugregError(
                f"augreg: {self.name}: setup() got no training examples to take mentions "
                "from. Run it through a pipeline or give SetupContext(train_examples=...)."
            )
        found: dict[str, set[tuple[str, ...]]] = {}
        for ex in ctx.train_examples:
            tokens = ex["tokens"]
            tags = ex["tags"] if "tags" in ex else ex["ner_tags"]
            for start, end, kind in spans(tags):
                found.setdefault(kind, set()).add(tuple(tokens[start:end]))
        self._mentions = {k: sorted(v) for k, v in sorted(found.items())}
        self._index = {k: {m: i for i, m in enumerate(v)} for k, v in self._mentions.items()}

    @property
    def mentions(self) -> dict[str, list[tuple[str, ...]]]:
        """Training mentions by entity type (sorted)."""
        if self._mentions is None:
            raise AugregError(
                f"augreg: {self.name}: call setup() first; it collects the mentions from the "
                "training examples."
            )
        return self._mentions

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        if "tokens" not in example:
            raise AugregError(
                f"augreg: {self.name} needs token-classification examples (tokens and tags)."
            )
        mentions = self.mentions
        seq = Seq.from_tokens(example["tokens"], example["tags"])
        assert seq.sid is not None and seq.types is not None
        where: dict[int, list[int]] = {}
        for i, s in enumerate(seq.sid):
            if s >= 0:
                where.setdefault(s, []).append(i)
        replaceable: list[tuple[int, list[tuple[str, ...]], tuple[str, ...]]] = []
        for s in range(len(seq.types)):
            pool = mentions.get(seq.types[s], [])
            current = tuple(seq.toks[i] for i in where[s])
            if len(pool) > 1 or (pool and pool[0] != current):
                replaceable.append((s, pool, current))
        if not replaceable:
            return []
        p = self.options.p  # type: ignore[attr-defined]
        chosen = [item for item in replaceable if rng.random() < p]
        if not chosen:
            if not self.options.at_least_one:  # type: ignore[attr-defined]
                return []
            chosen = [replaceable[_pick(rng, len(replaceable))]]
        assert self._index is not None
        new: dict[int, tuple[str, ...]] = {}
        for s, pool, current in chosen:
            # a different mention: skip the current one's index without copying the pool
            at = self._index[seq.types[s]].get(current)
            k = _pick(rng, len(pool) - (at is not None))
            new[s] = pool[k + (at is not None and k >= at)]
        for s in sorted(new, key=lambda k: -where[k][0]):
            a, b = where[s][0], where[s][-1] + 1
            seq.toks[a:b] = list(new[s])
            seq.sid[a:b] = [s] * len(new[s])
        return [seq.output(example)]
