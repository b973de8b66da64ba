"""Registration only: no I/O, no heavy imports (``augreg plugins`` imports this)."""

import augreg
from augreg_backtranslation.round_trip import RoundTrip


@augreg.hookimpl
def augreg_register_augmenters(register: augreg.Register) -> None:
    register(RoundTrip)
