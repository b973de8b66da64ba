"""augreg-adversarial: adversarial regularizers in embedding space (FGM, PGD, FreeLB, SMART)."""

__version__ = "0.1.0"
