"""Registration only: no I/O, no heavy imports (``augreg plugins`` imports this)."""

import augreg
from augreg_eda.eda import (
    Eda,
    MentionReplacement,
    RandomDeletion,
    RandomInsertion,
    RandomSwap,
    SynonymReplacement,
)
from augreg_eda.noise import CharRandom, Keyboard, Ocr, Spelling


@augreg.hookimpl
def augreg_register_augmenters(register: augreg.Register) -> None:
    for cls in (
        SynonymReplacement,
        RandomInsertion,
        RandomSwap,
        RandomDeletion,
        Eda,
        MentionReplacement,
        Keyboard,
        Ocr,
        CharRandom,
        Spelling,
    ):
        register(cls)
