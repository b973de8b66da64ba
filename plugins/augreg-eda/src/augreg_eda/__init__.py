"""augreg-eda: Easy Data Augmentation, mention replacement and character noise for augreg."""

__version__ = "0.1.0"
