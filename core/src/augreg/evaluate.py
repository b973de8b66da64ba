"""Evaluate a finished run again: its saved model on its own evaluation sets, or on new ones.

A run folder keeps its resolved config (``config.yaml``) and, with ``train.save_model``
(the default), its model. :func:`evaluate_run` rebuilds the model (:func:`augreg.load_model`),
loads the data the config names (the training split too: it fixes the label order), passes the
evaluation sets through the run's knowledge injectors, and evaluates with the task's metrics,
as ``augreg run`` did at the end of training. Uses:

- a metric added to augreg after the run was made (``roc_auc``): the run gets it without
  training again, and ``augreg bench --adopt`` then picks it up;
- an evaluation set the run did not have: ``sets={"amazon": "data/amazon.jsonl"}``.

``write = True`` merges the figures into the run's ``metrics.json`` and ``metrics/<set>.json``
without losing anything: a metric the run already has is never overwritten (when the new
value differs, it is reported in :attr:`Reevaluation.differs`), new metrics and new sets are
added, and the file keeps its modification time (the time the run finished). Cost: one
forward pass over each evaluation set, plus loading the data and the model.

Example:
    >>> result = augreg.evaluate_run("runs/sst2-minilm-s1")  # doctest: +SKIP
    >>> result.metrics["cr"]["roc_auc"]  # doctest: +SKIP
    0.8871
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augreg.errors import AugregError

__all__ = ["Reevaluation", "add_metrics", "evaluate_run"]

#: Figures that describe the evaluation pass rather than the model: never compared.
TIMING_KEYS = frozenset(
    {"runtime", "samples_per_second", "steps_per_second", "model_preparation_time"}
)

#: Two values of one metric that differ by less than this are the same figure.
TOLERANCE = 1e-6


@dataclass
class Reevaluation:
    """What :func:`evaluate_run` measured and what it wrote.

    Attributes:
        run_dir: The run folder.
        metrics: Metrics per evaluation set, as measured now.
        added: Per set, the metric names written into ``metrics.json`` (new ones only).
        differs: Per set, ``{metric: (recorded, now)}`` for metrics whose recorded value
            differs from the new one; the recorded value is kept. The loss of a run trained
            with another objective (label smoothing, distillation) differs by design: it is
            measured here with cross-entropy.
    """

    run_dir: Path
    metrics: dict[str, dict[str, float]]
    added: dict[str, list[str]] = field(default_factory=dict)
    differs: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)


def evaluate_run(
    run_dir: str | Path,
    sets: Mapping[str, str | Path] | None = None,
    *,
    write: bool = True,
    batch_size: int | None = None,
) -> Reevaluation:
    """Evaluate the saved model of a finished run (see the module docstring).

    Args:
        run_dir: A run folder made by ``augreg run`` / :meth:`augreg.Pipeline.run`.
        sets: Evaluation sets by name (``test`` is the in-domain test set); JSON Lines,
            CSV or TSV files as in a config's ``data.eval``. Default: the run's own
            ``data.test`` and ``data.eval`` sets.
        write: Merge the figures into the run's ``metrics.json`` (only new metrics and sets).
        batch_size: Evaluation batch size (default: the run's ``train.eval_batch_size``).

    Raises:
        AugregError: not a run folder, a multi-task run, no saved model, or no evaluation set.
        DataError: an evaluation file is missing or unusable (named).
    """
    from augreg.pipeline import Pipeline

    run_dir = Path(run_dir)
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise AugregError(
            f"augreg: {run_dir} is not a run folder (no config.yaml); give the folder "
            "augreg run wrote (runs/<name>-s<seed>-<time>)"
        )
    overrides: dict[str, Any] = {"data.validation": None}
    if sets is not None:
        if not sets:
            raise AugregError("augreg: evaluate: no evaluation set given; name at least one")
        named = {str(k): str(v) for k, v in sets.items()}
        overrides["data.test"] = named.pop("test", None)
        overrides["data.eval"] = named
    if batch_size is not None:
        overrides["train.eval_batch_size"] = batch_size
    pipe = Pipeline.from_config(config, overrides=overrides)
    cfg = pipe.config
    if cfg.tasks:
        raise AugregError(
            f"augreg: {run_dir} is a multi-task run; evaluate_run handles single-task runs. "
            "Load its model with augreg.load_model and evaluate each task's head."
        )
    metrics = _measure(pipe, run_dir)
    result = Reevaluation(run_dir, metrics)
    if write:
        _merge(run_dir, result)
    return result


def _measure(pipe: Any, run_dir: Path) -> dict[str, dict[str, float]]:
    from augreg import Objective, create
    from augreg.model_io import load_model
    from augreg.pipeline import _evaluate_all, by_length, injector_model_inputs
    from augreg.tasks import get_task
    from augreg.trainer import AugregTrainer, training_arguments

    cfg = pipe.config
    bundle = pipe.load_data()
    evals_raw = {
        **({"test": bundle.test} if bundle.test is not None else {}),
        **bundle.eval,
    }
    if not evals_raw:
        raise AugregError(
            f"augreg: the run in {run_dir} has no evaluation set (data.test, data.eval); "
            "name one: augreg evaluate RUN --eval test=<path>"
        )
    task = get_task(cfg.task, list(bundle.labels))
    tokenizer = task.load_tokenizer(cfg.model)
    # Only the injectors act on evaluation text; augmenters and objectives are not set up
    # (a distillation teacher, for one, would be loaded for nothing).
    pipe.setup_components(bundle, tokenizer, components=pipe.injectors)
    stage = pipe.data_stage()
    model_inputs = injector_model_inputs(pipe.injectors)
    model = load_model(run_dir)
    loss = create("core.cross_entropy")  # the plain task loss: what an evaluation loss means
    assert isinstance(loss, Objective)

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return task.tokenize_batch(batch, tokenizer, cfg.model.max_length, model_inputs)

    evals = {}
    for name, ds in evals_raw.items():
        encoded = stage.inject(ds).map(
            tokenize, batched=True, remove_columns=ds.column_names, desc="tokenize"
        )
        evals[name] = by_length(encoded)
    with tempfile.TemporaryDirectory(prefix="augreg-evaluate-") as tmp:
        args = training_arguments(cfg.train, tmp, has_validation=False, metric=task.default_metric)
        trainer = AugregTrainer(
            model=model,
            args=args,
            data_collator=task.collator(tokenizer, model_inputs),
            processing_class=tokenizer,
            compute_metrics=task.compute_metrics,
            objectives=[loss],
            regularizers=[],
            task_type=cfg.task.type,
        )
        return _evaluate_all(trainer, evals)


def _merge(run_dir: Path, result: Reevaluation) -> None:
    path = run_dir / "metrics.json"
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError as exc:
        raise AugregError(
            f"augreg: {path} is not valid JSON ({exc}); nothing was written. Move it aside to "
            "write a fresh one, or evaluate with write=False (--no-write)."
        ) from exc
    evals = recorded.setdefault("eval", {})
    for name, values in result.metrics.items():
        old = evals.get(name) or {}
        for key, value in values.items():
            if key in old and key not in TIMING_KEYS and not _same(old[key], value):
                result.differs.setdefault(name, {})[key] = (float(old[key]), value)
    result.added = add_metrics(evals, result.metrics)
    if not result.added:
        return
    finished = path.stat() if path.is_file() else None
    tmp = path.with_suffix(".json.tmp")  # written whole, then renamed: never half a file
    tmp.write_text(json.dumps(recorded, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    if finished is not None:  # its time stays the run's end (augreg bench --adopt reads it)
        os.utime(path, ns=(finished.st_atime_ns, finished.st_mtime_ns))
    mdir = run_dir / "metrics"
    mdir.mkdir(exist_ok=True)
    for name in result.added:
        (mdir / f"{name}.json").write_text(json.dumps(evals[name], indent=2) + "\n")


def add_metrics(held: dict[str, Any], metrics: Mapping[str, Any]) -> dict[str, list[str]]:
    """Add to ``held`` (metrics by evaluation set) the metrics it lacks; a value it has is
    never replaced. Returns the names added, by set. Shared by :func:`evaluate_run` and
    ``augreg bench --adopt`` (which adds a run folder's new metrics to its record).

    Example:
        >>> held = {"test": {"accuracy": 0.8}}
        >>> add_metrics(held, {"test": {"accuracy": 0.7, "roc_auc": 0.9}})
        {'test': ['roc_auc']}
        >>> held
        {'test': {'accuracy': 0.8, 'roc_auc': 0.9}}
    """
    added: dict[str, list[str]] = {}
    for name, values in metrics.items():
        if not isinstance(values, Mapping):
            continue
        target = held.setdefault(name, {})
        for key, value in values.items():
            if key not in target:
                target[key] = value
                added.setdefault(name, []).append(key)
    return added


def _same(a: Any, b: float) -> bool:
    try:
        return math.isclose(float(a), b, rel_tol=0, abs_tol=TOLERANCE)
    except (TypeError, ValueError):
        return False
