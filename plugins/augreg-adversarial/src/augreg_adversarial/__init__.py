"""augreg-adversarial: adversarial regularizers in embedding space (FGM, PGD, FreeLB, SMART),
in weight space (SAM), and adversarial word substitution against the model being trained."""

__version__ = "0.1.0"
