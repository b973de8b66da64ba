"""The ``counterfactual.negation`` augmenter."""

from __future__ import annotations

import random
from collections import Counter

from pydantic import Field

import augreg
from augreg_counterfactual import rules

DEFAULT_SKIP = ("if", "unless", "but", "although", "though", "however", "yet", "while", "whether")


class Negation(augreg.Augmenter):
    """Negate a sentence and give it the opposite label: a counterfactual example.

    Every finite auxiliary or copula of the sentence is negated (``is`` -> ``is not``,
    ``does n't`` -> ``does``, ``never`` dropped; see :mod:`augreg_counterfactual.rules`), and
    the label is swapped for its opposite (binary tasks: the other label; otherwise the
    ``opposite`` map). The model then sees minimal pairs that differ in polarity only, so it
    cannot rest on sentiment words alone: ``not bad`` must read as positive. Human-written
    counterfactuals of this kind improve out-of-domain sentiment accuracy (Kaushik et al.
    2020); negation is the simplest automatic edit of that kind (cf. Wu et al. 2021,
    Polyjuice's negation control code).

    Rules are noisy where a clause does not carry the sentence's polarity, so by default a
    sentence is left alone (``[]``) when it has more than ``max_sites`` sites, none, or a
    word of ``skip_words`` (conditionals and contrasts: ``if``, ``but``, ``although``, ...).
    English only; text is split at spaces, tokenized (SST-2's ``is n't``) or not (``isn't``).
    Sequence classification only. Cost: a few string operations per example, no model.

    Example:
        >>> aug = augreg.create("counterfactual.negation")
        >>> aug.setup(augreg.SetupContext(labels=["0", "1"]))
        >>> aug.augment({"id": "a", "text": "it is not bad .", "label": "0"}, random.Random(0))
        [{'id': 'a', 'text': 'it is bad .', 'label': '1'}]
    """

    name = "counterfactual.negation"
    changes_labels = True
    supports_tasks = frozenset({"sequence_classification"})
    paper = "Kaushik et al. 2020 (counterfactually augmented data); Wu et al. 2021 (Polyjuice)"

    class Options(augreg.Augmenter.Options):
        max_sites: int = Field(
            1,
            ge=1,
            le=20,
            description="Skip sentences with more negation sites (clauses) than this.",
        )
        skip_words: list[str] = Field(
            default_factory=lambda: list(DEFAULT_SKIP),
            description="Skip sentences containing any of these words (lower case).",
        )
        opposite: dict[str, str] | None = Field(
            None,
            description="Label -> opposite label; default: the other label of a binary task.",
        )

    options: Options

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._opposite: dict[str, str] | None = None
        self._labels: list[str] = []
        self._counts: Counter[str] = Counter()

    def setup(self, ctx: augreg.SetupContext) -> None:
        self._labels = [str(label) for label in ctx.labels]
        opposite = self.options.opposite
        if opposite is None:
            labels = [str(label) for label in ctx.labels]
            if len(labels) != 2:
                raise augreg.OptionsError(
                    self.name,
                    [
                        f"the task has {len(labels)} labels ({', '.join(labels) or 'none'}); "
                        "the opposite of a label is known for binary tasks only. Set "
                        "opposite = {label = opposite label, ...} for the labels that negation "
                        "flips"
                    ],
                )
            opposite = {labels[0]: labels[1], labels[1]: labels[0]}
        self._opposite = dict(opposite)

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        if self._opposite is None:
            raise augreg.AugregError(
                f"augreg: {self.name} needs setup(ctx) before augment(): it learns the labels "
                "there (the pipeline calls it)"
            )
        label = example["label"]
        flipped = self._opposite.get(str(label))
        by_index = isinstance(label, int) and flipped is None and 0 <= label < len(self._labels)
        if by_index:  # an integer label given as the index of a named label
            flipped = self._opposite.get(self._labels[label])
        if flipped is None:
            self._counts["no_opposite"] += 1
            return []
        words = example["text"].split()
        lowered = {w.lower() for w in words}
        if lowered & set(self.options.skip_words):
            self._counts["skip_word"] += 1
            return []
        sites = rules.negation_sites(words)
        if not sites or len(sites) > self.options.max_sites:
            self._counts["no_site" if not sites else "too_many_sites"] += 1
            return []
        negated = rules.negate(words)
        self._counts["negated"] += 1
        new_label: object = flipped
        if by_index and flipped in self._labels:
            new_label = self._labels.index(flipped)
        elif isinstance(label, int) and flipped.lstrip("-").isdigit():
            new_label = int(flipped)
        return [{**example, "text": " ".join(negated.words), "label": new_label}]
