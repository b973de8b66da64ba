"""Deterministic randomness for components.

Each augmenter call gets its own :class:`random.Random`, derived from (pipeline seed,
component name, example id, epoch, copy). The output therefore does not depend on batch
size, order, or the number of processes, and no component touches global random state.
"""

from __future__ import annotations

import hashlib
import random


def derive_seed(*parts: object) -> int:
    """Return a stable 63-bit seed from any printable parts.

    ``hash()`` is salted per process, so a cryptographic digest of the parts' ``repr`` is used.

    Example:
        >>> derive_seed(13, "eda.random_swap", "train:7", 0) == derive_seed(
        ...     13, "eda.random_swap", "train:7", 0)
        True
    """
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def derive_rng(
    seed: int, component: str, example_id: object, epoch: int = 0, copy: int = 0
) -> random.Random:
    """Return the random generator for one augmenter call on one example."""
    return random.Random(derive_seed(seed, component, example_id, epoch, copy))
