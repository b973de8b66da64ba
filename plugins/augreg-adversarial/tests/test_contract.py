"""The conformance kit for every component of augreg-adversarial (both tasks)."""

from __future__ import annotations

from augreg.testing import RegularizerContract


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
