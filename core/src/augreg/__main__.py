"""``python -m augreg`` runs the command line (also under ``torchrun``)."""

from augreg.cli import main

# Guarded: a bench's spawned run processes import this module again as ``__mp_main__``.
if __name__ == "__main__":
    main()
