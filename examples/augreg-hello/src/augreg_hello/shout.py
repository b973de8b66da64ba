"""The ``hello.shout`` augmenter."""

import random

from pydantic import Field

import augreg


class Shout(augreg.Augmenter):
    """Upper-case one random word (token classification: one token; tags unchanged).

    The template plugin: copy ``examples/augreg-hello`` to start your own.
    Returns ``[]`` when no word is long enough to shout (empty input included).
    Cost: negligible, one string operation per example and no model.
    """

    name = "hello.shout"

    class Options(augreg.Augmenter.Options):
        min_length: int = Field(1, ge=1, le=50, description="Shortest word (characters) shouted.")

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        tokenized = "tokens" in example
        words = list(example["tokens"]) if tokenized else example["text"].split(" ")
        n = self.options.min_length  # type: ignore[attr-defined]
        spots = [i for i, w in enumerate(words) if len(w) >= n and w.upper() != w]
        if not spots:
            return []
        i = rng.choice(spots)
        words[i] = words[i].upper()
        return [{**example, "tokens": words} if tokenized else {**example, "text": " ".join(words)}]
