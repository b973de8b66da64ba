"""Registration only: no I/O, no heavy imports (``augreg plugins`` imports this)."""

import augreg
from augreg_entity_linking.fusion import Fusion
from augreg_entity_linking.injectors import Describe, Markers


@augreg.hookimpl
def augreg_register_injectors(register: augreg.Register) -> None:
    for cls in (Describe, Markers, Fusion):
        register(cls)
