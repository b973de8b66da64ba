"""Rule-based English sentence negation: the edits behind ``counterfactual.negation``.

Written by hand: no library of the field negates a sentence (nlpaug, nltk and checklist have
no such operation usable offline). The rules work on words split at spaces, for both
tokenized text (``it is n't bad``, ``does n't``, as in SST-2) and plain text (``isn't``).

Each finite auxiliary or copula (``is``, ``was``, ``has``, ``can``, ``does``, ...) is a
*site*: a site already negated (``is not``, ``is n't``, ``isn't``, ``can't``, ``never``)
loses its negation, any other gets ``not`` after it. Negating every site of a sentence flips
each clause, so the sentence as a whole says the opposite.
"""

from __future__ import annotations

from dataclasses import dataclass

AUXILIARIES = frozenset(
    "is are was were am 're 'm has have had will would can could should shall must may "
    "might does do did".split()
)
"""Words after which ``not`` negates the clause."""

PRONOUNS_BEFORE_IS = frozenset("it he she that there here what this who where".split())
"""``'s`` is ``is`` (not a possessive) only after these."""

_NT_BASE = {"ca": "can", "wo": "will", "sha": "shall", "ai": "is"}
"""Contractions whose base is not the word without ``n't``: ``can't`` -> ``can``."""


@dataclass(frozen=True)
class Negation:
    """A negated sentence and what was changed.

    Attributes:
        words: The new words.
        added: Sites where ``not`` was inserted.
        removed: Sites whose negation was removed.
    """

    words: list[str]
    added: int
    removed: int


def _nt_base(word: str) -> str | None:
    """``isn't`` -> ``is``, ``can't`` -> ``can``; None for a word that is not a contraction."""
    low = word.lower()
    for suffix in ("n't", "n\u2019t"):  # ASCII and typographic apostrophes
        if low.endswith(suffix) and len(low) > len(suffix):
            stem = word[: -len(suffix)]
            return _NT_BASE.get(stem.lower(), stem)
    return None


def negation_sites(words: list[str]) -> list[int]:
    """Indexes of the words that are negation sites (see the module docstring)."""
    sites = []
    for i, word in enumerate(words):
        low = word.lower()
        prev = words[i - 1].lower() if i else ""
        if low in ("not", "n't", "never") or low == "cannot" or _nt_base(word) is not None:
            # "is not", "does n't": the site is the negation itself (removed)
            # "not" negates a clause after an auxiliary ("is not"), not elsewhere ("not
            # only"); a split "n't" always does ("ca n't", "wo n't")
            if low != "not" or prev in AUXILIARIES | {"'s"}:
                sites.append(i)
            continue
        nxt = words[i + 1].lower() if i + 1 < len(words) else ""
        if nxt in ("not", "n't", "never"):
            continue  # the negation after it is the site
        if low in AUXILIARIES or (low == "'s" and prev in PRONOUNS_BEFORE_IS):
            sites.append(i)
    return sites


def negate(words: list[str]) -> Negation:
    """Negate every site of ``words``; ``Negation.words`` equals ``words`` when there is none."""
    sites = set(negation_sites(words))
    out: list[str] = []
    added = removed = 0
    for i, word in enumerate(words):
        if i not in sites:
            out.append(word)
            continue
        low = word.lower()
        base = _nt_base(word)
        if low in ("not", "n't", "never"):
            removed += 1  # dropped; a split contraction's stem becomes a word: "ca n't" -> "can"
            if low == "n't" and out and out[-1].lower() in _NT_BASE:
                out[-1] = _NT_BASE[out[-1].lower()]
        elif low == "cannot":
            out.append(word[:3])
            removed += 1
        elif base is not None:
            out.append(base)
            removed += 1
        else:
            out.extend([word, "NOT" if word.isupper() and len(word) > 1 else "not"])
            added += 1
    return Negation(out, added, removed)
