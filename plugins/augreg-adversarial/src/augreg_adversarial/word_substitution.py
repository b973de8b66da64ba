"""Adversarial word substitution: examples the current model gets wrong, rewritten every k epochs.

In the spirit of TextFooler (Jin et al. 2020, "Is BERT Really Robust? A Strong Baseline for
Natural Language Attack on Text Classification and Entailment", AAAI), with WordNet synonyms
instead of counter-fitted embeddings, as A2T-style adversarial training does with a cheap
attack (Yoo & Qi 2021, "Towards Improving Adversarial Training of NLP Models").

Written here rather than with TextAttack (``textattack`` on PyPI): its TextFooler recipe
fetches counter-fitted embeddings and the Universal Sentence Encoder at run time, which an
offline machine cannot, and its attack loop runs through its own model wrapper and goal
function rather than the model the core hands over mid-training. The greedy search here is a
hundred lines over nltk (WordNet, the POS tagger and stopwords, shared with augreg-eda
through :mod:`augreg_eda.lexicon`).

Cost: forward passes only (no backward), on the model being trained, at each refresh: for
each attacked example 1 + W rows to rank the W changeable words, then up to
``max_candidates`` rows per word tried, about 1 + W + C x T rows (T words tried, C
candidates each; measured on SST-2 with the defaults: 18 rows per scored example, batched
per example). One refresh over SST-2-500 with MiniLM: 32-40 s on 2 shared CPU cores.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

import augreg
from augreg import AugregError
from augreg_eda._seq import Seq
from augreg_eda.lexicon import wordnet_pos

if TYPE_CHECKING:  # pragma: no cover
    from augreg_eda.lexicon import Lexicon

__all__ = ["JIN_2020", "MIN_LETTERS", "AttackResult", "WordSubstitution"]

MIN_LETTERS = 3
"""Shorter words never change: mostly abbreviations WordNet reads as other words
(``al`` -> ``alabama``, ``w`` -> ``tungsten``), a risk in lower-cased text."""

JIN_2020 = (
    "Jin et al. 2020, Is BERT Really Robust? A Strong Baseline for Natural Language Attack on "
    "Text Classification and Entailment (AAAI)"
)


@dataclass
class AttackResult:
    """What one attack did (see :meth:`WordSubstitution.attack`).

    Attributes:
        text: The perturbed text (the input text when nothing was changed).
        status: ``"success"`` (the prediction flipped), ``"perturbed"`` (words changed, the
            prediction did not flip), ``"failed"`` (no substitution lowered the true-label
            probability), or why the example was not attacked: ``"misclassified"`` (the
            model already gets it wrong), ``"too_short"`` (the change cap allows no word),
            ``"not_sampled"``, ``"no_candidates"`` (no word with a same-POS synonym).
        changed: Positions (whitespace tokens) of the substituted words, in order of change.
        words: Number of words (tokens with a letter or digit) in the text.
        p_original: True-label probability of the original text.
        p_final: True-label probability of ``text``.
        rows: Texts scored by the model (forward-pass rows) for this example.
    """

    text: str
    status: str
    changed: list[int] = field(default_factory=list)
    words: int = 0
    p_original: float = float("nan")
    p_final: float = float("nan")
    rows: int = 0

    @property
    def success(self) -> bool:
        """Whether the prediction flipped."""
        return self.status == "success"


class WordSubstitution(augreg.Augmenter):
    """Adversarial examples against the current model: greedy same-POS WordNet synonym swaps.

    Jin et al. 2020 (TextFooler), with WordNet synonyms. At each refresh (the start of epoch
    ``start_epoch``, then every ``refresh_every`` epochs) the core hands over the model being
    trained, and for each training example (or a seeded ``attack_fraction`` of them):

    1. Rank words by importance: the drop in the true-label probability when the word is
       deleted (one batched forward pass over the deletions). Only words that can change are
       ranked: not stopwords (nltk's English list), letters only, at least 3 of them, and with
       a WordNet synonym of their part of speech (nltk's averaged perceptron tagger, proper
       nouns excluded).
    2. In that order, try up to ``max_candidates`` single-word synonyms of the word, in
       WordNet sense order, that keep the word's Penn tag when the sentence is re-tagged
       (so "loved" is never replaced by "enjoy"). Score them in one batch; keep the one that
       lowers the true-label probability most, if it lowers it at all (among candidates that
       flip the prediction, the lowest).
    3. Stop when the prediction flips or ``floor(max_change_fraction * words)`` words are
       changed.

    The output keeps the label, the casing and punctuation of each replaced word, and the
    text's spacing; ``[]`` when the model already misclassifies the example, nothing can
    change, or (``keep = "successful"``) the prediction did not flip. In training, a slot
    without a view holds the original example. Sequence classification only: for token
    classification a substitution would have to keep every tag, which this attack does not
    measure.

    Cost: forward passes (no backward) on the model being trained, at each refresh, about
    1 + W + C x T rows per attacked example (W changeable words, T words tried, C candidates);
    measured on SST-2 with the defaults, 18 rows per scored example and 32-40 s for one
    refresh over 500 examples with MiniLM on 2 shared CPU cores (plugin README).

    Example:
        >>> aug = WordSubstitution(max_change_fraction=0.2, refresh_every=2)
        >>> aug.setup(augreg.SetupContext())  # doctest: +SKIP
        >>> aug.use_model(ctx)  # the core does this at each refresh  # doctest: +SKIP
        >>> aug.augment({"text": "a great movie", "label": 1}, random.Random(0))  # doctest: +SKIP
    """

    name = "adversarial.word_substitution"
    paper = JIN_2020
    needs_model: ClassVar[bool] = True
    supports_tasks: ClassVar[frozenset[str]] = frozenset({"sequence_classification"})

    class Options(augreg.Augmenter.Options):
        copies: int = Field(
            1,
            ge=1,
            le=1,
            description="Views per example; the attack is deterministic, so only 1 (more "
            "copies would repeat the same view).",
        )
        max_change_fraction: float = Field(
            0.2,
            gt=0,
            le=1,
            description="At most floor(fraction * words) words are replaced; texts where that "
            "is 0 are not attacked.",
        )
        max_candidates: int = Field(
            6,
            ge=1,
            le=100,
            description="Synonyms tried per word (WordNet sense order, same POS tag).",
        )
        refresh_every: int = Field(
            2, ge=1, le=1000, description="Rewrite the views every this many epochs."
        )
        start_epoch: int = Field(
            2,
            ge=0,
            le=1000,
            description="First refresh at the start of this epoch (0: before training, "
            "against the untrained head; until then the slots hold the originals).",
        )
        attack_fraction: float = Field(
            0.3,
            gt=0,
            le=1,
            description="Share of the examples attacked per refresh (a seeded draw per "
            "example and refresh; 1: all).",
        )
        keep: Literal["successful", "perturbed"] = Field(
            "perturbed",
            description="successful: keep only views that flip the prediction; perturbed: "
            "also views that lowered the true-label probability without flipping it.",
        )
        batch_size: int = Field(
            64, ge=1, le=4096, description="Texts per forward pass when scoring."
        )

    options: Options
    _lexicon: Lexicon | None = None
    _tagger: Any = None

    # -- set-up --------------------------------------------------------------------------------

    def setup(self, ctx: augreg.SetupContext) -> None:
        """Load WordNet, the stopwords and the POS tagger (once per process).

        Raises:
            AugregError: a resource is missing (says how to install it), or the task is not
                sequence classification.
        """
        if ctx.task not in self.supports_tasks:
            raise AugregError(
                f"augreg: {self.name} supports sequence classification only, not {ctx.task}; "
                "remove it from [[augment]] for this task."
            )
        self._load()

    def _load(self) -> None:
        from augreg_eda.lexicon import lexicon, pos_tagger

        self._lexicon = lexicon(self.name)
        self._tagger = pos_tagger(self.name)

    @property
    def lex(self) -> Lexicon:
        """The WordNet lexicon (loaded lazily in a worker process after unpickling)."""
        if self._lexicon is None:
            self._load()
        assert self._lexicon is not None
        return self._lexicon

    @property
    def tagger(self) -> Any:
        """nltk's averaged perceptron tagger (loaded lazily after unpickling)."""
        if self._tagger is None:
            self._load()
        return self._tagger

    def __getstate__(self) -> dict[str, Any]:
        # WordNet's reader holds open files and the model belongs to the trainer: workers
        # load their own resources and never get the model.
        state = dict(self.__dict__)
        for key in ("_lexicon", "_tagger", "_model_context"):
            state.pop(key, None)
        return state

    # -- the schedule --------------------------------------------------------------------------

    def refresh_epoch(self, epoch: int) -> int | None:
        """``start_epoch``, then every ``refresh_every`` epochs; None before ``start_epoch``."""
        start, every = self.options.start_epoch, self.options.refresh_every
        if epoch < start:
            return None
        return epoch - (epoch - start) % every

    # -- the attack ----------------------------------------------------------------------------

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        """The adversarial view of ``example`` (``[]`` when none is kept); see the class doc."""
        result = self.attack(example, rng)
        if not result.changed:
            return []
        if self.options.keep == "successful" and not result.success:
            return []
        return [{**example, "text": result.text}]

    def attack(self, example: augreg.Example, rng: random.Random) -> AttackResult:
        """Attack one example against the model handed over; report what happened.

        Deterministic given the model, the example and the rng (used once, for the
        ``attack_fraction`` draw). Each forward batch holds texts of this example only, so
        the result does not depend on which other examples are attacked with it.

        Raises:
            AugregError: no model was handed over (see :meth:`augreg.Augmenter.use_model`), or
                the example has tokens (token classification is not supported).
        """
        if "tokens" in example:
            raise AugregError(
                f"augreg: {self.name} attacks texts (sequence classification); this example "
                "has tokens. Remove it from [[augment]] for token classification."
            )
        ctx = self.model_context
        text = example["text"]
        sampled = rng.random() < self.options.attack_fraction
        seq = Seq.from_text(text)
        words = seq.word_positions()
        cap = math.floor(self.options.max_change_fraction * len(words) + 1e-9)
        result = AttackResult(text=text, status="too_short", words=len(words))
        if cap == 0:
            return result
        if not sampled:
            result.status = "not_sampled"
            return result
        label = int(example["label"])
        lex, tagger = self.lex, self.tagger
        cores = [seq.word_at(i) for i in words]
        tags = [t for _, t in tagger.tag(cores)]
        # word position -> (index among the words, WordNet POS) for words that may change
        changeable: dict[int, tuple[int, str]] = {}
        for k, i in enumerate(words):
            word = cores[k]
            if len(word) < MIN_LETTERS or not word.isalpha() or lex.is_stopword(word):
                continue
            pos = wordnet_pos(tags[k])
            if pos is not None and self._synonyms(word, pos):
                changeable[i] = (k, pos)
        if not changeable:
            result.status = "no_candidates"
            return result
        deleted = []
        for i in changeable:
            cut = Seq.from_text(text)
            cut.delete({i})
            deleted.append(cut.text())
        probs, preds = self._score(ctx, example, [text, *deleted], label)
        result.rows = 1 + len(deleted)
        result.p_original = result.p_final = probs[0]
        if preds[0] != label:
            result.status = "misclassified"
            return result
        drop = {i: probs[0] - p for i, p in zip(changeable, probs[1:], strict=True)}
        order = sorted(changeable, key=lambda i: (-drop[i], i))
        current = probs[0]
        status = "failed"
        for i in order:
            if len(result.changed) >= cap:
                break
            k, pos = changeable[i]
            candidates = self._candidates(cores, tags, k, pos)
            if not candidates:
                continue
            texts = [_replaced(seq, i, c) for c in candidates]
            p, pred = self._score(ctx, example, texts, label)
            result.rows += len(texts)
            flips = [j for j in range(len(texts)) if pred[j] != label]
            pool = flips or range(len(texts))
            best = min(pool, key=lambda j: (p[j], j))
            if not flips and p[best] >= current:
                continue
            seq.replace_word(i, [candidates[best]])
            cores[k] = candidates[best]
            current = p[best]
            result.changed.append(i)
            status = "perturbed"
            if flips:
                status = "success"
                break
        result.status = status
        result.text = seq.text()
        result.p_final = current
        return result

    # -- helpers -------------------------------------------------------------------------------

    def _synonyms(self, word: str, pos: str) -> list[str]:
        """Single-word synonyms in sense order that are not stopwords."""
        lex = self.lex
        return [s for s in lex.sense_synonyms(word, pos) if " " not in s and not lex.is_stopword(s)]

    def _candidates(self, cores: list[str], tags: list[str], k: int, pos: str) -> list[str]:
        """Up to ``max_candidates`` synonyms of word ``k`` that keep its tag in the current
        sentence (``cores``: the words so far, substitutions included)."""
        out: list[str] = []
        for syn in self._synonyms(cores[k], pos)[: self.options.max_candidates]:
            trial = [*cores[:k], syn, *cores[k + 1 :]]
            if self.tagger.tag(trial)[k][1] == tags[k]:
                out.append(syn)
        return out

    def _score(
        self, ctx: augreg.ModelContext, example: augreg.Example, texts: list[str], label: int
    ) -> tuple[list[float], list[int]]:
        """True-label probabilities and predicted labels of ``texts``, in batches."""
        probs: list[float] = []
        preds: list[int] = []
        size = self.options.batch_size
        for start in range(0, len(texts), size):
            chunk = [{**example, "text": t} for t in texts[start : start + size]]
            logits = ctx.logits(chunk)
            p = logits.softmax(-1)
            probs.extend(float(x) for x in p[:, label])
            preds.extend(int(x) for x in logits.argmax(-1))
        return probs, preds


def _replaced(seq: Seq, i: int, word: str) -> str:
    """The text of ``seq`` with the word at ``i`` replaced by ``word`` (``seq`` unchanged)."""
    trial = Seq(list(seq.toks), None if seq.gaps is None else list(seq.gaps))
    trial.replace_word(i, [word])
    return trial.text()
