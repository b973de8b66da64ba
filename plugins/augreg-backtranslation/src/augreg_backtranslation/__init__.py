"""augreg-backtranslation: paraphrases by round-trip translation, batched and cached."""

__version__ = "0.1.0"
