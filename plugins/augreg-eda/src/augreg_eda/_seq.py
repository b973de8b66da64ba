"""One sentence as the EDA ops see it: whitespace tokens (text) or tokens with entity spans.

Text examples are split on whitespace with the separators kept, so a sentence is rejoined
exactly as written (double spaces, tabs, leading and trailing blanks). A token's *word* is its
core between leading and trailing punctuation (``"great!"`` -> ``"great"``); a token without
a letter or digit is punctuation and is never changed, moved or deleted.

Token examples keep one entity-span id per token (``-1`` outside spans); tags are re-written
from those ids (``B-X I-X ...``), so spans stay whole and valid IOB2 whatever an op moves.
Only tokens outside spans are words an op may change.

Written here, not taken from nlpaug: nlpaug's word ops rejoin tokens with single spaces and
know nothing of entity spans.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["Seq", "apply_case", "normalize_text", "split_core"]

_PLAIN_BREAK = re.compile(r"[^\S ]| {2}|^ | $")  # anything but single inner spaces
_WS = re.compile(r"(\s+)")
_AFFIX = re.compile(r"^([\W_]*)(.*?)([\W_]*)$", re.S)
_HAS_ALNUM = re.compile(r"[^\W_]")
_NOT_LETTER = re.compile(r"[^a-z ]")
_SPACES = re.compile(r" +")


def split_core(token: str) -> tuple[str, str, str]:
    """``(leading punctuation, word, trailing punctuation)`` of a whitespace token.

    Example:
        >>> split_core('"Great!"')
        ('"', 'Great', '!"')
    """
    if token.isalnum():
        return "", token, ""
    m = _AFFIX.match(token)
    assert m is not None  # the pattern matches every string
    return m.group(1), m.group(2), m.group(3)


def apply_case(like: str, word: str) -> str:
    """``word`` in the casing of ``like``: ``Title``, ``UPPER`` (2+ letters) or as given.

    Example:
        >>> apply_case("Movie", "film"), apply_case("USA", "us"), apply_case("cat", "dog")
        ('Film', 'US', 'dog')
    """
    if len(like) > 1 and like.isupper():
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def normalize_text(text: str) -> str:
    """The reference EDA cleaning: lower case, letters and single spaces only.

    Example:
        >>> normalize_text("It's a well-made, GREAT film!")
        'its a well made great film'
    """
    line = text.replace("'", "").replace("-", " ").lower()
    return _SPACES.sub(" ", _NOT_LETTER.sub(" ", line)).strip()


class Seq:
    """A mutable working copy of one example's tokens (never the example's own lists).

    Attributes:
        toks: Whitespace tokens (text) or tokens.
        gaps: Text only: ``len(toks) + 1`` separators (leading, between, trailing), or
            ``None`` when the text is single-space separated without outer blanks.
        sid: Tokens only: entity-span id per token, ``-1`` outside spans.
        types: Tokens only: entity type per span id.
    """

    __slots__ = ("_words", "gaps", "sid", "toks", "types")

    def __init__(
        self,
        toks: list[str],
        gaps: list[str] | None = None,
        sid: list[int] | None = None,
        types: list[str] | None = None,
    ) -> None:
        self.toks = toks
        self.gaps = gaps
        self.sid = sid
        self.types = types
        self._words: list[int] | None = None

    @classmethod
    def from_text(cls, text: str) -> Seq:
        """Split a text on whitespace, keeping the separators."""
        if not _PLAIN_BREAK.search(text):
            return cls(text.split(" ") if text else [])
        parts = _WS.split(text)
        # parts alternates token, separator, token ...; empty first/last when text starts or
        # ends with whitespace.
        toks = parts[0::2]
        gaps = parts[1::2]
        lead = ""
        trail = ""
        if toks and toks[0] == "":
            toks.pop(0)
            lead = gaps.pop(0) if gaps else ""
        if toks and toks[-1] == "":
            toks.pop()
            trail = gaps.pop() if gaps else ""
        if not toks:
            return cls([], [lead + trail])
        return cls(toks, [lead, *gaps, trail])

    @classmethod
    def from_tokens(cls, tokens: Sequence[str], tags: Sequence[str]) -> Seq:
        """Tokens with span ids from IOB2 tags (lenient: a stray ``I-X`` starts a span)."""
        from augreg.tasks import spans

        sid = [-1] * len(tokens)
        types: list[str] = []
        for k, (start, end, kind) in enumerate(spans(tags)):
            types.append(kind)
            for i in range(start, end):
                sid[i] = k
        return cls(list(tokens), None, sid, types)

    @property
    def tokenized(self) -> bool:
        return self.sid is not None

    def text(self) -> str:
        """The text, rejoined with the original separators (text mode)."""
        if self.gaps is None:
            return " ".join(self.toks)
        out = [self.gaps[0]]
        for tok, gap in zip(self.toks, self.gaps[1:], strict=True):
            out.append(tok)
            out.append(gap)
        return "".join(out)

    def tags(self) -> list[str]:
        """IOB2 tags re-written from the span ids (token mode)."""
        assert self.sid is not None and self.types is not None
        tags: list[str] = []
        prev = -1
        for s in self.sid:
            if s < 0:
                tags.append("O")
            else:
                tags.append(("I-" if s == prev else "B-") + self.types[s])
            prev = s
        return tags

    def output(self, example: dict[str, Any]) -> dict[str, Any]:
        """A new example with this sequence's text or tokens and tags (other keys kept)."""
        if self.sid is not None:
            return {**example, "tokens": list(self.toks), "tags": self.tags()}
        return {**example, "text": self.text()}

    # -- where ops may act -------------------------------------------------------------------

    def word_positions(self) -> list[int]:
        """Positions of tokens that hold a word (a letter or digit): the sentence length.

        Cached until an edit changes the positions; do not mutate the returned list.
        """
        if self._words is None:
            has = _HAS_ALNUM.search
            self._words = [i for i, t in enumerate(self.toks) if t.isalnum() or has(t)]
        return self._words

    def editable_positions(self) -> list[int]:
        """Word positions an op may change, delete or swap: outside entity spans."""
        words = self.word_positions()
        if self.sid is None:
            return words
        sid = self.sid
        return [i for i in words if sid[i] < 0]

    def word_at(self, i: int) -> str:
        """The word of token ``i`` (its core in text mode, the token in token mode)."""
        tok = self.toks[i]
        return tok if self.sid is not None else split_core(tok)[1]

    def insertion_gaps(self) -> list[int]:
        """Gaps ``g`` (insert before token ``g``; ``len(toks)`` = at the end) not inside a span."""
        n = len(self.toks)
        if self.sid is None:
            return list(range(n + 1))
        sid = self.sid
        return [g for g in range(n + 1) if g in (0, n) or sid[g - 1] < 0 or sid[g - 1] != sid[g]]

    # -- edits -------------------------------------------------------------------------------

    def replace_word(self, i: int, words: Sequence[str]) -> None:
        """Replace the word at ``i`` by ``words`` (a synonym, maybe several words), cased like it.

        Text mode keeps the token's punctuation; token mode writes one token per word, tagged
        ``O`` (only call it outside spans).
        """
        tok = self.toks[i]
        if self.sid is None:
            pre, core, suf = split_core(tok)
            self.toks[i] = pre + apply_case(core, " ".join(words)) + suf
            return
        new = [apply_case(tok, words[0]), *words[1:]]
        self._words = None
        self.toks[i : i + 1] = new
        self.sid[i : i + 1] = [-1] * len(new)

    def insert(self, gap: int, words: Sequence[str]) -> None:
        """Insert ``words`` as new tokens before token ``gap`` (tagged ``O``)."""
        self._words = None
        self.toks[gap:gap] = list(words)
        if self.sid is not None:
            self.sid[gap:gap] = [-1] * len(words)
        elif self.gaps is not None:
            at = gap if gap == len(self.toks) - len(words) else gap + 1
            self.gaps[at:at] = [" "] * len(words)

    def delete(self, positions: set[int]) -> None:
        """Delete the words at ``positions``; in text mode a token's punctuation stays.

        Trailing punctuation left by a deleted word is glued to the previous token
        (``"was great!"`` -> ``"was!"``) unless that token already ends with it.
        """
        toks, gaps, sid = self.toks, self.gaps, self.sid
        new_toks: list[str] = []
        new_gaps: list[str] | None = None if gaps is None else [gaps[0]]
        new_sid: list[int] | None = None if sid is None else []
        for i, tok in enumerate(toks):
            if i in positions:
                rest_pre, rest_suf = ("", "") if sid is not None else split_core(tok)[0::2]
                glue = not rest_pre and new_toks
                if not (rest_pre or rest_suf) or glue:
                    if glue and rest_suf and not new_toks[-1].endswith(rest_suf):
                        new_toks[-1] += rest_suf
                    if new_gaps is not None and gaps is not None and new_toks:
                        # the previous token now ends where the deleted one did
                        new_gaps[-1] = gaps[i + 1]
                    continue
                tok = rest_pre + rest_suf
            new_toks.append(tok)
            if new_sid is not None and sid is not None:
                new_sid.append(sid[i])
            if new_gaps is not None and gaps is not None:
                new_gaps.append(gaps[i + 1])
        if new_gaps is not None and gaps is not None and not new_toks:
            new_gaps = [gaps[0] + gaps[-1]]
        self.toks = new_toks
        self.gaps = new_gaps
        self.sid = new_sid
        self._words = None

    def units(self) -> list[list[int]]:
        """Movable units for a swap: one per word outside spans, one per whole span."""
        units: list[list[int]] = []
        sid = self.sid
        last = -2
        for i in self.word_positions() if sid is None else range(len(self.toks)):
            if sid is None:
                units.append([i])
            elif sid[i] >= 0:
                if sid[i] == last:
                    units[-1].append(i)
                else:
                    units.append([i])
                last = sid[i]
                continue
            elif self.toks[i].isalnum() or _HAS_ALNUM.search(self.toks[i]):
                units.append([i])
            last = -2
        return units

    def swap_units(self, a: list[int], b: list[int]) -> None:
        """Swap two units' contents (token mode: recompute :meth:`units` afterwards).

        Text mode swaps the words and leaves each token's punctuation in place.
        """
        if self.sid is None:
            (i,), (j,) = a, b
            ti, tj = self.toks[i], self.toks[j]
            if ti.isalnum() and tj.isalnum():
                self.toks[i], self.toks[j] = tj, ti
            else:
                pi, ci, si = split_core(ti)
                pj, cj, sj = split_core(tj)
                self.toks[i], self.toks[j] = pi + cj + si, pj + ci + sj
            return
        first, second = (a, b) if a[0] < b[0] else (b, a)
        f0, f1, s0, s1 = first[0], first[-1] + 1, second[0], second[-1] + 1
        toks, sid = self.toks, self.sid
        self._words = None
        self.toks = toks[:f0] + toks[s0:s1] + toks[f1:s0] + toks[f0:f1] + toks[s1:]
        self.sid = sid[:f0] + sid[s0:s1] + sid[f1:s0] + sid[f0:f1] + sid[s1:]
