"""Character and spelling noise through nlpaug: keyboard typos, OCR errors, random characters,
common misspellings.

nlpaug does these well (its keyboard and OCR maps, its misspelling dictionary of 13,550 words,
its per-word and per-character sampling) and fast enough (about 10,000 sentences/s on SST-2),
so these components wrap it. Two things are ours:

* **What nlpaug sees.** We split the text on whitespace (or take the tokens), keep each token's
  punctuation, and hand nlpaug only the words (outside entity spans, unless
  ``include_entities``), joined by single spaces, with a tokenizer that splits them back and a
  reverse tokenizer that returns the list. The new words go back in place, so the text keeps its
  own spacing and punctuation, and token counts and tags never change.
* **Determinism.** nlpaug draws from the global ``random`` and ``numpy.random`` states. Each call
  runs inside :func:`seeded_globals`, which saves both states, seeds them from the rng we are
  given, and restores them afterwards (under a lock, so threads do not interleave). Outside the
  call, global random state is as it was.

Cost: no model; about 0.1 ms per sentence (nlpaug's per-call overhead); ``setup()`` builds the
nlpaug augmenter (imports nlpaug, which imports torch: about 2 s once per process).
"""

from __future__ import annotations

import copy
import random
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import Field

import augreg
from augreg_eda._seq import Seq, split_core

__all__ = ["CharRandom", "Keyboard", "Ocr", "Spelling", "clean_misspellings", "seeded_globals"]

_GLOBAL_RANDOM = threading.RLock()


@contextmanager
def seeded_globals(rng: random.Random) -> Iterator[None]:
    """Seed Python's and numpy's global random states from ``rng``; restore them on exit.

    For libraries (nlpaug) that draw from global state: the block is deterministic given
    ``rng``, and code outside it sees the global states unchanged.

    Example:
        >>> import random
        >>> before = random.getstate()
        >>> with seeded_globals(random.Random(1)):
        ...     x = random.random()
        >>> random.getstate() == before
        True
    """
    import numpy as np

    with _GLOBAL_RANDOM:
        py_state = random.getstate()
        np_state = np.random.get_state()
        random.seed(rng.getrandbits(64))
        np.random.seed(rng.getrandbits(32))
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _split(text: str) -> list[str]:
    return text.split(" ")


def _as_list(tokens: Any) -> Any:
    return list(tokens)


class _NlpaugNoise(augreg.Augmenter):
    """Runs an nlpaug augmenter on the words of an example (not registered)."""

    class Options(augreg.Augmenter.Options):
        word_p: float = Field(
            0.3, gt=0, le=1, description="Fraction of the words that get noise (nlpaug aug_word_p)."
        )
        include_entities: bool = Field(
            False,
            description="Token classification: also put noise into entity tokens (tags are "
            "never changed).",
        )

    _aug: Any = None

    def nlpaug_action(self) -> str:
        """The name of the nlpaug augmenter's method to call."""
        return "substitute"

    def build(self) -> Any:
        """The nlpaug augmenter, with our tokenizer pair."""
        raise NotImplementedError

    def setup(self, ctx: augreg.SetupContext) -> None:
        """Import nlpaug and build its augmenter (once per component)."""
        self._aug = self.build()

    @property
    def aug(self) -> Any:
        """The nlpaug augmenter (rebuilt lazily in a worker process after unpickling)."""
        if self._aug is None:
            self._aug = self.build()
        return self._aug

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_aug", None)
        return state

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        if "tokens" in example:
            seq = Seq.from_tokens(example["tokens"], example["tags"])
            every = self.options.include_entities  # type: ignore[attr-defined]
            where = seq.word_positions() if every else seq.editable_positions()
            words = [seq.toks[i] for i in where]
        else:
            seq = Seq.from_text(example["text"])
            where = seq.word_positions()
            cores = [split_core(seq.toks[i]) for i in where]
            words = [core for _, core, _ in cores]
        keep = [k for k, w in enumerate(words) if w and not any(c.isspace() for c in w)]
        if not keep:
            return []
        sent = " ".join(words[k] for k in keep)
        with seeded_globals(rng):
            new = getattr(self.aug, self.nlpaug_action())(sent)
        if isinstance(new, str) or len(new) != len(keep):  # nlpaug found nothing to change
            return []
        changed = False
        for k, word in zip(keep, new, strict=True):
            if word and word != words[k] and not any(c.isspace() for c in word):
                i = where[k]
                if seq.sid is not None:
                    seq.toks[i] = word
                else:
                    pre, _, suf = cores[k]
                    seq.toks[i] = pre + word + suf
                changed = True
        return [seq.output(example)] if changed else []


class Keyboard(_NlpaugNoise):
    """Keyboard typos: characters replaced by neighbours on a QWERTY keyboard.

    Wraps nlpaug's ``KeyboardAug`` (Belinkov & Bisk 2018, "Synthetic and Natural Noise Both
    Break Neural Machine Translation"), seeded through :func:`seeded_globals`. A fraction
    ``word_p`` of the words of at least ``min_char`` characters gets typos in a fraction
    ``char_p`` of its characters. Punctuation, spacing and (token classification) tags are
    kept; entity tokens only with ``include_entities``. Returns ``[]`` when no word is long
    enough.

    Cost: no model; about 0.1 ms per sentence; ``setup()`` imports nlpaug (about 2 s).
    """

    name = "eda.keyboard"
    paper = "Belinkov & Bisk 2018 (keyboard noise); nlpaug KeyboardAug"

    class Options(_NlpaugNoise.Options):
        char_p: float = Field(
            0.1, gt=0, le=1, description="Fraction of a chosen word's characters mistyped."
        )
        min_char: int = Field(4, ge=1, le=50, description="Shortest word (characters) changed.")
        special_chars: bool = Field(
            False, description="Typos may produce punctuation characters (nlpaug's default: on)."
        )
        numbers: bool = Field(False, description="Typos may produce digits.")

    def build(self) -> Any:
        import nlpaug.augmenter.char as nac

        o = self.options
        return nac.KeyboardAug(
            aug_char_p=o.char_p,  # type: ignore[attr-defined]
            aug_word_p=o.word_p,  # type: ignore[attr-defined]
            min_char=o.min_char,  # type: ignore[attr-defined]
            include_special_char=o.special_chars,  # type: ignore[attr-defined]
            include_numeric=o.numbers,  # type: ignore[attr-defined]
            tokenizer=_split,
            reverse_tokenizer=_as_list,
        )


class Ocr(_NlpaugNoise):
    """OCR errors: characters replaced by look-alikes (``l`` -> ``1``, ``O`` -> ``0``).

    Wraps nlpaug's ``OcrAug`` (its built-in OCR confusion map), seeded through
    :func:`seeded_globals`. A fraction ``word_p`` of the words gets errors in a fraction
    ``char_p`` of its characters. Punctuation, spacing and tags are kept. Returns ``[]`` when
    no character of any word has a look-alike.

    Cost: no model; about 0.1 ms per sentence; ``setup()`` imports nlpaug (about 2 s).
    """

    name = "eda.ocr"
    paper = "nlpaug OcrAug (Ma 2019, nlpaug)"

    class Options(_NlpaugNoise.Options):
        char_p: float = Field(
            0.3, gt=0, le=1, description="Fraction of a chosen word's characters changed."
        )
        min_char: int = Field(1, ge=1, le=50, description="Shortest word (characters) changed.")

    def build(self) -> Any:
        import nlpaug.augmenter.char as nac

        o = self.options
        return nac.OcrAug(
            aug_char_p=o.char_p,  # type: ignore[attr-defined]
            aug_word_p=o.word_p,  # type: ignore[attr-defined]
            min_char=o.min_char,  # type: ignore[attr-defined]
            tokenizer=_split,
            reverse_tokenizer=_as_list,
        )


class CharRandom(_NlpaugNoise):
    """Random character noise: insert, substitute, swap or delete characters inside words.

    Wraps nlpaug's ``RandomCharAug`` (Belinkov & Bisk 2018 style synthetic noise), seeded
    through :func:`seeded_globals`. ``action`` picks the edit; a fraction ``word_p`` of the
    words of at least ``min_char`` characters gets it on a fraction ``char_p`` of characters.
    Punctuation, spacing and tags are kept. Returns ``[]`` when no word is long enough.

    Cost: no model; about 0.1 ms per sentence; ``setup()`` imports nlpaug (about 2 s).
    """

    name = "eda.char_random"
    paper = "Belinkov & Bisk 2018 (synthetic noise); nlpaug RandomCharAug"

    class Options(_NlpaugNoise.Options):
        action: Literal["insert", "substitute", "swap", "delete"] = Field(
            "substitute", description="The character edit: insert, substitute, swap, delete."
        )
        char_p: float = Field(
            0.1, gt=0, le=1, description="Fraction of a chosen word's characters edited."
        )
        min_char: int = Field(4, ge=2, le=50, description="Shortest word (characters) edited.")

    def nlpaug_action(self) -> str:
        return str(self.options.action)  # type: ignore[attr-defined]

    def build(self) -> Any:
        import nlpaug.augmenter.char as nac

        o = self.options
        return nac.RandomCharAug(
            action=o.action,  # type: ignore[attr-defined]
            aug_char_p=o.char_p,  # type: ignore[attr-defined]
            aug_word_p=o.word_p,  # type: ignore[attr-defined]
            min_char=o.min_char,  # type: ignore[attr-defined]
            include_numeric=False,
            spec_char="",
            tokenizer=_split,
            reverse_tokenizer=_as_list,
        )


class Spelling(_NlpaugNoise):
    """Common misspellings: words replaced by a real misspelling from a dictionary.

    Wraps nlpaug's ``SpellingAug`` with the English misspelling dictionary shipped inside the
    nlpaug package (13,550 words, from Coulombe 2018, "Text Data Augmentation Made Simple By
    Leveraging NLP Cloud APIs"), so it works offline; seeded through :func:`seeded_globals`.
    A fraction ``word_p`` of the words that have a known misspelling is replaced. Punctuation,
    spacing and tags are kept. Returns ``[]`` when no word has a known misspelling.

    The dictionary is cleaned on our side (:func:`clean_misspellings`): nlpaug keeps each
    word's misspellings in ``list(set(...))`` order, which changes with Python's hash seed, so
    the same rng gave different text in different processes; and the file has wiki-markup
    entries (``[[realy`` for "really", ``Bye)][[``) that would put brackets into the text.

    Cost: no model; about 0.1 ms per sentence; ``setup()`` imports nlpaug and reads its
    dictionary (about 2 s).
    """

    name = "eda.spelling"
    paper = "Coulombe 2018 (misspelling dictionary); nlpaug SpellingAug"

    def build(self) -> Any:
        import nlpaug.augmenter.word as naw

        aug = naw.SpellingAug(
            aug_p=self.options.word_p,  # type: ignore[attr-defined]
            tokenizer=_split,
            reverse_tokenizer=_as_list,
        )
        # nlpaug caches one model per process and shares it; clean a copy, not the cache.
        model = copy.copy(aug.model)
        model.dict = clean_misspellings(aug.model.dict)
        aug.model = model
        return aug


_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")


def clean_misspellings(table: dict[str, list[str]]) -> dict[str, list[str]]:
    """A misspelling table in a fixed order, with only word-like entries.

    Keys and candidates must be letters, optionally joined by an apostrophe or a hyphen
    (``dont``, ``wednes-day``); a candidate equal to its key is dropped, candidates are sorted
    (so a seeded draw is the same in every process), and keys left without candidates go.

    Example:
        >>> clean_misspellings({"really": ["realy", "[[realy", "really", "reali"], "Bye)": ["By"]})
        {'really': ['reali', 'realy']}
    """
    out: dict[str, list[str]] = {}
    for key, values in table.items():
        if not _WORD.fullmatch(key):
            continue
        kept = sorted({v for v in values if v != key and _WORD.fullmatch(v)})
        if kept:
            out[key] = kept
    return out
