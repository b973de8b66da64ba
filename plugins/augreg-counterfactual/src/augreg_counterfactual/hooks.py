"""Registration only: no I/O, no heavy imports (``augreg plugins`` imports this)."""

import augreg
from augreg_counterfactual.negation import Negation


@augreg.hookimpl
def augreg_register_augmenters(register: augreg.Register) -> None:
    register(Negation)
