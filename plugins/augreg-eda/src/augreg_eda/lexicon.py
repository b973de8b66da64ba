"""WordNet synonyms and English stopwords through nltk, loaded lazily and cached per process.

Nothing here touches nltk at import. :func:`lexicon` loads WordNet and the stopword list the
first time a component's ``setup()`` asks for them (about 3 s for WordNet from its zip), and
keeps one :class:`Lexicon` per process and per ``nltk.data.path``, so every component of the
plugin (and every call) shares one synonym cache. A missing resource is an
:class:`augreg.AugregError` that says how to install it.

Why a cache of our own: the reference EDA code calls ``wordnet.synsets(word)`` for every
word of every sentence; a lookup costs 0.1-10 ms, a cache hit about 50 ns.

Example:
    >>> lex = lexicon()  # doctest: +SKIP
    >>> "film" in lex.synonyms("movie")  # doctest: +SKIP
    True
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

from augreg import AugregError

__all__ = ["INSTALL_HINT", "Lexicon", "lexicon"]

INSTALL_HINT = (
    "Install the NLTK data with `python -m nltk.downloader wordnet stopwords`, or point "
    "NLTK_DATA at a folder that has corpora/wordnet(.zip) and corpora/stopwords(.zip)"
)


def _find(resource: str) -> Any:
    """The nltk path pointer of a corpus, unzipped or zipped (as nltk's own loader does)."""
    import nltk

    try:
        return nltk.data.find(f"corpora/{resource}")
    except LookupError:
        return nltk.data.find(f"corpora/{resource}.zip/{resource}/")


def _missing(resource: str, who: str) -> AugregError:
    import nltk

    searched = ", ".join(str(p) for p in nltk.data.path) or "(none)"
    return AugregError(
        f"augreg: {who}: the NLTK resource {resource!r} was not found (searched: {searched}). "
        f"{INSTALL_HINT}."
    )


class Lexicon:
    """WordNet synonyms (cached per word) and the English stopword set.

    Build it with :func:`lexicon`, not directly. Synonym lists are sorted tuples, so a choice
    made with a seeded rng is the same in every process.
    """

    def __init__(self, who: str = "augreg-eda") -> None:
        try:
            wn_root = _find("wordnet")
        except LookupError:
            raise _missing("wordnet", who) from None
        try:
            sw_root = _find("stopwords")
        except LookupError:
            raise _missing("stopwords", who) from None
        from nltk.corpus.reader.wordnet import WordNetCorpusReader

        with warnings.catch_warnings():
            # "multilingual functions are not available": we only read English lemmas.
            warnings.simplefilter("ignore")
            self.wordnet = WordNetCorpusReader(wn_root, None)
        self.stopwords: frozenset[str] = frozenset(
            w.strip() for w in sw_root.join("english").open().read().decode("utf-8").split("\n")
        ) - {""}
        self._cache: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def synonyms(self, word: str) -> tuple[str, ...]:
        """Sorted WordNet synonyms of ``word`` (lower case, ``_`` as space), without itself.

        Lemma names keep hyphens and apostrophes; names with other non-letters are dropped.
        """
        key = word.lower()
        found = self._cache.get(key)
        if found is not None:
            return found
        names: set[str] = set()
        with self._lock:  # nltk's reader fills its own caches lazily
            for synset in self.wordnet.synsets(key):
                for lemma in synset.lemmas():
                    name = lemma.name().replace("_", " ").lower()
                    if name != key and all(c.isalpha() or c in " -'" for c in name):
                        names.add(name)
        result = tuple(sorted(names))
        self._cache[key] = result
        return result

    def is_stopword(self, word: str) -> bool:
        """Whether ``word`` (any case) is in nltk's English stopword list."""
        return word.lower() in self.stopwords


_LEXICONS: dict[tuple[str, ...], Lexicon] = {}
_LOAD_LOCK = threading.Lock()


def lexicon(who: str = "augreg-eda") -> Lexicon:
    """The process's :class:`Lexicon` for the current ``nltk.data.path`` (loaded once).

    Raises:
        AugregError: WordNet or the stopword list is not installed; the message says how to
            install them.
    """
    import nltk

    key = tuple(str(p) for p in nltk.data.path)
    with _LOAD_LOCK:
        lex = _LEXICONS.get(key)
        if lex is None:
            lex = _LEXICONS[key] = Lexicon(who)
    return lex
