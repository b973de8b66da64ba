"""Registration only: no I/O, no heavy imports (``augreg plugins`` imports this)."""

import augreg
from augreg_adversarial.regularizers import FGM, PGD, SMART, FreeLB
from augreg_adversarial.sam import SAM
from augreg_adversarial.word_substitution import WordSubstitution


@augreg.hookimpl
def augreg_register_regularizers(register: augreg.Register) -> None:
    register(FGM)
    register(PGD)
    register(FreeLB)
    register(SMART)
    register(SAM)


@augreg.hookimpl
def augreg_register_augmenters(register: augreg.Register) -> None:
    register(WordSubstitution)
