"""augreg-adversarial: adversarial regularizers in embedding space (FGM, PGD, FreeLB, SMART)
and adversarial word substitution against the model being trained."""

__version__ = "0.1.0"
