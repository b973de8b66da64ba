"""augreg-counterfactual: label-flipping counterfactual augmentation for augreg."""

__version__ = "0.1.0"
