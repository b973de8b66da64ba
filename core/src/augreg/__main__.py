"""``python -m augreg`` runs the command line (also under ``torchrun``)."""

from augreg.cli import main

main()
