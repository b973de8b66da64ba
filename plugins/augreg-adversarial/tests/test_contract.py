"""The conformance kit for every component of augreg-adversarial (each task it supports)."""

from __future__ import annotations

from augreg.testing import AugmenterContract, RegularizerContract


class TestFGM(RegularizerContract):
    component = "adversarial.fgm"


class TestFGMRandomStart(RegularizerContract):
    component = "adversarial.fgm"
    options = {"random_init": 0.5, "norm": "linf", "epsilon": 0.05}


class TestPGD(RegularizerContract):
    component = "adversarial.pgd"
    options = {"steps": 2, "normalize": "token"}


class TestFreeLB(RegularizerContract):
    component = "adversarial.freelb"
    options = {"steps": 2}


class TestSMART(RegularizerContract):
    component = "adversarial.smart"


class TestWordSubstitution(AugmenterContract):
    """Run by the kit against a tiny model handed over as a refresh does (needs_model)."""

    component = "adversarial.word_substitution"
    # the kit's sentences are short: allow half the words; every view, flipped or not
    options = {
        "start_epoch": 0,
        "attack_fraction": 1.0,
        "max_change_fraction": 0.5,
        "keep": "perturbed",
    }


class TestSAM(RegularizerContract):
    component = "adversarial.sam"


class TestSAMAdaptive(RegularizerContract):
    component = "adversarial.sam"
    options = {"adaptive": True, "rho": 0.5, "weight": 0.5}
