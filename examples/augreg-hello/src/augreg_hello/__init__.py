"""augreg-hello: the smallest augreg plugin, the template for new ones."""

__version__ = "0.1.0"
