"""Registration only: no I/O, no heavy imports (``augreg plugins`` imports this)."""

import augreg
from augreg_hello.shout import Shout


@augreg.hookimpl
def augreg_register_augmenters(register: augreg.Register) -> None:
    register(Shout)
