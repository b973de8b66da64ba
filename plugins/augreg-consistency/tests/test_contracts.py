"""The conformance kit for every component of augreg-consistency (the tasks each supports)."""

from __future__ import annotations

from augreg.testing import ObjectiveContract, RegularizerContract
from augreg_consistency.self_training import SelfTraining
from augreg_consistency.tsa import TrainingSignalAnnealing
from augreg_consistency.uda import Uda

# The kit's step has no unlabelled batch and its tiny model is unsure of everything: the
# components' conformance options (labelled batch as unlabelled text, threshold 0).
KIT = Uda.conformance_options(None, "sequence_classification") or {}


class TestUda(RegularizerContract):
    component = "consistency.uda"
    options = KIT


class TestSelfTraining(RegularizerContract):
    component = "consistency.self_training"
    options = SelfTraining.conformance_options(None, "sequence_classification") or {}


class TestSelfTrainingEmaAligned(RegularizerContract):
    component = "consistency.self_training"
    options = {**KIT, "teacher": "ema", "balance": "distribution_alignment"}


class TestTsa(ObjectiveContract):
    component = "consistency.tsa"
    options = TrainingSignalAnnealing.conformance_options(None, "sequence_classification") or {}


class TestTsaLog(ObjectiveContract):
    component = "consistency.tsa"
    options = {"steps": 10, "schedule": "log"}
