"""augreg's conformance kit and test helpers (``pip install 'augreg[testing]'``).

Never auto-registered as a pytest plugin: a plugin's test module imports what it uses.

Example:
    >>> from augreg.testing import AugmenterContract
    >>> class TestShout(AugmenterContract):
    ...     component = "hello.shout"
    ...     options = {"copies": 2}

Public API:
    Contracts: :class:`ComponentContract`, :class:`AugmenterContract`,
    :class:`InjectorContract`, :class:`ObjectiveContract`, :class:`RegularizerContract`,
    :class:`AdapterContract`, :class:`CombinerContract` (``CONTRACTS`` maps each kind to
    its contract).
    Helpers: :func:`make_batch`, :func:`isolated_host`, :func:`no_network`,
    :func:`sequence_examples`, :func:`token_examples`, :func:`entity_spans`,
    :func:`heavy_imports_of`, :func:`tiny_model`, :func:`tiny_tokenizer`,
    :func:`training_setup` (a tiny model in training mode and a sample batch),
    :func:`unshared_sum` (a combiner under which the step shares no clean backward),
    :func:`model_context` (hands a model to an augmenter with ``needs_model``).
    Runner: :func:`augreg.testing.runner.check_plugin` (``augreg check-plugin DIST``).
"""

from __future__ import annotations

from augreg.testing.helpers import (
    DEFAULT_TAGS,
    NetworkAccessError,
    entity_spans,
    isolated_host,
    make_batch,
    no_network,
    sequence_examples,
    short_train,
    token_examples,
)
from augreg.testing.kit import (
    CONTRACTS,
    AdapterContract,
    AugmenterContract,
    CombinerContract,
    ComponentContract,
    InjectorContract,
    ObjectiveContract,
    RegularizerContract,
    heavy_imports_of,
    model_context,
)
from augreg.testing.models import (
    NO_DROPOUT,
    save_tiny_model,
    tiny_model,
    tiny_tokenizer,
    training_setup,
    unshared_sum,
)

__all__ = [
    "CONTRACTS",
    "DEFAULT_TAGS",
    "NO_DROPOUT",
    "AdapterContract",
    "AugmenterContract",
    "CombinerContract",
    "ComponentContract",
    "InjectorContract",
    "NetworkAccessError",
    "ObjectiveContract",
    "RegularizerContract",
    "entity_spans",
    "heavy_imports_of",
    "isolated_host",
    "make_batch",
    "model_context",
    "no_network",
    "save_tiny_model",
    "sequence_examples",
    "short_train",
    "tiny_model",
    "tiny_tokenizer",
    "token_examples",
    "training_setup",
    "unshared_sum",
]
