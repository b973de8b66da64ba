"""WordNet synonyms, English stopwords and the POS tagger through nltk, loaded lazily and cached.

Nothing here touches nltk at import. :func:`lexicon` loads WordNet and the stopword list the
first time a component's ``setup()`` asks for them (about 3 s for WordNet from its zip), and
keeps one :class:`Lexicon` per process and per ``nltk.data.path``, so every component of the
plugin (and every call) shares one synonym cache. :func:`pos_tagger` does the same for nltk's
averaged perceptron tagger (``averaged_perceptron_tagger_eng``, about 0.5 s to load, 0.4 ms
per 20-word sentence). A missing resource is an :class:`augreg.AugregError` that says how to
install it. Other plugins (augreg-adversarial's word substitution) use these too.

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

__all__ = ["INSTALL_HINT", "WORDNET_POS", "Lexicon", "lexicon", "pos_tagger", "wordnet_pos"]

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

    def sense_synonyms(self, word: str, pos: str) -> tuple[str, ...]:
        """WordNet synonyms of ``word`` as part of speech ``pos``, most frequent sense first.

        ``pos`` is a WordNet POS: ``"n"``, ``"v"``, ``"a"`` (adjectives, satellites included)
        or ``"r"``. Lemmas come in WordNet's order (senses by frequency, then the synset's
        lemma order), lower case, ``_`` as space, without duplicates and without ``word``;
        names with characters other than letters, space, hyphen and apostrophe are dropped.
        Cached per (word, pos).
        """
        key = word.lower()
        cache_key = f"{pos}:{key}"
        found = self._cache.get(cache_key)
        if found is not None:
            return found
        names: dict[str, None] = {}
        with self._lock:
            for synset in self.wordnet.synsets(key, pos=pos):
                for lemma in synset.lemmas():
                    name = lemma.name().replace("_", " ").lower()
                    if name != key and all(c.isalpha() or c in " -'" for c in name):
                        names[name] = None
        result = tuple(names)
        self._cache[cache_key] = result
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


WORDNET_POS: dict[str, str] = {"NN": "n", "NNS": "n", "JJ": "a", "JJR": "a", "JJS": "a"}
WORDNET_POS.update({t: "v" for t in ("VB", "VBD", "VBG", "VBN", "VBP", "VBZ")})
WORDNET_POS.update({t: "r" for t in ("RB", "RBR", "RBS")})
"""Penn Treebank tag -> WordNet POS. Proper nouns (NNP, NNPS) and closed classes have none."""


def wordnet_pos(penn_tag: str) -> str | None:
    """The WordNet POS of a Penn Treebank tag, or None (proper nouns, function words).

    Example:
        >>> wordnet_pos("VBD"), wordnet_pos("NNP")
        ('v', None)
    """
    return WORDNET_POS.get(penn_tag)


TAGGER_HINT = (
    "Install it with `python -m nltk.downloader averaged_perceptron_tagger_eng`, or point "
    "NLTK_DATA at a folder that has taggers/averaged_perceptron_tagger_eng(.zip)"
)
_TAGGERS: dict[tuple[str, ...], Any] = {}


def pos_tagger(who: str = "augreg-eda") -> Any:
    """nltk's English averaged perceptron tagger for the current ``nltk.data.path`` (loaded once).

    ``pos_tagger().tag(["a", "great", "film"])`` gives Penn Treebank tags.

    Raises:
        AugregError: ``averaged_perceptron_tagger_eng`` is not installed; says how to install it.
    """
    import nltk

    key = tuple(str(p) for p in nltk.data.path)
    with _LOAD_LOCK:
        tagger = _TAGGERS.get(key)
        if tagger is None:
            from nltk.tag import PerceptronTagger

            try:
                tagger = PerceptronTagger(lang="eng")
            except LookupError:
                searched = ", ".join(str(p) for p in nltk.data.path) or "(none)"
                raise AugregError(
                    f"augreg: {who}: the NLTK resource 'averaged_perceptron_tagger_eng' was not "
                    f"found (searched: {searched}). {TAGGER_HINT}."
                ) from None
            _TAGGERS[key] = tagger
    return tagger
