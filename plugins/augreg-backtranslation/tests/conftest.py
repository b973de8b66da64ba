"""Shared fixtures: tiny Marian models (built once per session) and fresh augmenters.

No real translation model can be downloaded in tests; :func:`augreg_backtranslation.tiny.
tiny_models` builds a random one and a trained toy one once per process, in a temporary
folder removed at exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import augreg
from augreg.testing import no_network
from augreg_backtranslation.round_trip import RoundTrip
from augreg_backtranslation.tiny import tiny_models

# Tiny models run ~50x faster on one thread than on two contended ones (CI shares its cores).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def models() -> dict[str, str]:
    """``{"random": folder, "trained": folder}``."""
    return tiny_models()


@pytest.fixture(autouse=True)
def _offline() -> Iterator[None]:
    with no_network():
        yield


def _make(
    model: str, cache_dir: Path | None, task: str = "sequence_classification", **opts: Any
) -> RoundTrip:
    """A set-up round trip through ``model`` both ways (cache in ``cache_dir``, or none)."""
    options: dict[str, Any] = {
        "pivots": [{"forward": model, "back": model}],
        "max_new_tokens": 24,
        "progress": False,
        "cache": cache_dir is not None,
        **opts,
    }
    aug = RoundTrip(options)
    aug.setup(augreg.SetupContext(task=task, cache_dir=cache_dir or Path("/nonexistent")))
    return aug


@pytest.fixture
def make() -> Callable[..., RoundTrip]:
    """``make(model, cache_dir, task="sequence_classification", **options)``: a set-up
    round trip through ``model`` both ways (translation cache in ``cache_dir``, or none)."""
    return _make
