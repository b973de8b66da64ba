"""The conformance kit, with the tiny trained toy model (both directions).

Beam search and seeded sampling are both checked: batch equals one-by-one, deterministic
given the rng, labels and entity spans preserved, explicit on empty input.
"""

from __future__ import annotations

from augreg.testing import AugmenterContract
from augreg_backtranslation.round_trip import Pivot
from augreg_backtranslation.tiny import tiny_models

_TRAINED = tiny_models()["trained"]
_PIVOT = (Pivot(forward=_TRAINED, back=_TRAINED),)


class TestRoundTripBeam(AugmenterContract):
    component = "backtranslation.round_trip"
    options = {"pivots": _PIVOT, "num_beams": 2, "paraphrases": 2, "max_new_tokens": 32}


class TestRoundTripSampled(AugmenterContract):
    component = "backtranslation.round_trip"
    options = {
        "pivots": _PIVOT,
        "sample": True,
        "temperature": 0.7,
        "copies": 2,
        "max_new_tokens": 32,
    }
