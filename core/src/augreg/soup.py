"""Weight averaging of finished runs: a model soup, evaluated like a run.

Models fine-tuned from the same pretrained weights and the same head initialisation, with
different recipes (one with adversarial word substitution, one with counterfactual negations,
...), usually sit in one basin of the loss, so the average of their weights is a model that
works, at the inference cost of one model and with no training: a *model soup* (Wortsman et
al. 2022, "Model soups: averaging weights of multiple fine-tuned models improves accuracy
without increasing inference time"). Averaging diverse fine-tunes is also a remedy for
distribution shift (Ramé et al. 2022, "Diverse Weight Averaging for Out-of-Distribution
Generalization").

:func:`soup_runs` averages the whole saved models of two or more run folders (optionally
weighted) and writes a run folder of its own: ``model/`` (a whole ``transformers`` model and the
tokenizer), ``config.yaml`` (the first member's, with its augmenters, objectives and
regularizers removed: they shaped the members, not the soup) and ``soup.json`` (the members,
their weights, seeds and components). :func:`augreg.evaluate_run` then measures it on the
members' evaluation sets and writes ``metrics.json``, so ``augreg evaluate`` and
``augreg bench --adopt`` read a soup like any run.

In augreg the seed fixes the new task head's initialisation, so members must share the seed
(the same head start); members trained from different seeds average unrelated heads and are
refused unless ``any_seed``. Runs with adapters save only what the adapters train and are
refused (merge LoRA first, ``augreg_adapters.merge``, and train from the merged model).

Cost: loading each member once and one evaluation pass over each set; memory for two copies
of the weights in float32.

Example:
    >>> runs = ["runs/wordsub-s1", "runs/negation-s1"]
    >>> soup = augreg.soup_runs(runs, "runs/soup-s1")  # doctest: +SKIP
    >>> soup.metrics["cr"]["accuracy"]  # doctest: +SKIP
    0.8311
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augreg.errors import AugregError

__all__ = ["Soup", "greedy_soup", "soup_runs", "summed_training"]

SOUP_FILE = "soup.json"
#: What a soup writes in its folder: a folder holding any of them is refused, not overwritten.
OUTPUT_FILES = ("model", "config.yaml", "metrics.json", "metrics", SOUP_FILE)
#: Config entries every member must share: they define what the averaged weights mean.
SHARED = (("model", "name"), ("task",), ("inject",), ("adapters",))
#: Config entries a soup does not keep: they shaped the members' training.
TRAINING_ONLY = ("augment", "objectives", "regularize")
#: Metrics a greedy soup minimises (every other one it maximises).
LOWER_IS_BETTER = frozenset({"loss", "class_rate_gap"})


def soup_config(member: Mapping[str, Any]) -> dict[str, Any]:
    """What a soup of runs writes as its config: the first member's, without what only
    shaped the members' training: augmenters, objectives, regularizers (:data:`TRAINING_ONLY`),
    the unlabelled data those read, and a teacher stage or soup of the member's own (the
    averaged model is evaluated and loaded like a plain run's). Named ``<name>-soup``."""
    config = dict(member)
    for key in TRAINING_ONLY:
        config[key] = []
    for key in ("teacher", "soup", "recipe"):
        config.pop(key, None)
    if isinstance(config.get("data"), Mapping):
        config["data"] = {
            k: v for k, v in config["data"].items() if k not in ("unlabelled", "unlabelled_ratio")
        }
    config["name"] = f"{config.get('name', 'run')}-soup"
    return config


@dataclass
class Soup:
    """What :func:`soup_runs` wrote.

    Attributes:
        run_dir: The soup's run folder.
        members: The member run folders, in order.
        weights: Their weights (summing to 1).
        metrics: Metrics per evaluation set (empty when not evaluated).
    """

    run_dir: Path
    members: list[Path]
    weights: list[float]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


def soup_runs(
    runs: Sequence[str | Path],
    out: str | Path,
    *,
    weights: Sequence[float] | None = None,
    any_seed: bool = False,
    evaluate: bool = True,
    batch_size: int | None = None,
    config: Mapping[str, Any] | None = None,
) -> Soup:
    """Average the weights of finished runs into a new run folder (see the module docstring).

    Args:
        runs: Two or more run folders made by ``augreg run``, with whole saved models.
        out: The soup's run folder: new, or without a model, config, metrics or soup.json
            (a soup recipe's run keeps its members in it, under members/).
        weights: One positive weight per run (normalised to sum to 1); default: equal.
        any_seed: Accept members trained with different seeds (different head starts).
        evaluate: Measure the soup on the first member's evaluation sets
            (:func:`augreg.evaluate_run`) and write its ``metrics.json``.
        batch_size: Evaluation batch size (default: the first member's).
        config: The config to write as the soup's ``config.yaml`` (default: the first
            member's without its augmenters, objectives and regularizers). A soup recipe's
            run writes its own config, with the soup.

    Raises:
        AugregError: fewer than two runs, a folder that is not a run or has no whole saved
            model, members that differ in model, task, injectors, adapters or seed, models
            whose weights do not line up, bad weights, or an output folder that holds files.
    """
    import yaml

    members = [Path(r) for r in runs]
    if len(members) < 2:
        raise AugregError(
            f"augreg: soup: give at least two run folders to average, got {len(members)}"
        )
    if len({m.resolve() for m in members}) != len(members):
        raise AugregError("augreg: soup: a run folder is given twice; give each member once")
    norm = _weights(weights, len(members))
    out = Path(out)
    _check_out(out)
    configs = [_member_config(m, yaml) for m in members]
    _check_compatible(members, configs, any_seed)
    return _write_soup(members, norm, configs, out, config, evaluate, batch_size)


def _check_out(out: Path) -> None:
    taken = [n for n in OUTPUT_FILES if (out / n).exists()] if out.is_dir() else []
    if out.exists() and (not out.is_dir() or taken):
        raise AugregError(
            f"augreg: soup: {out} holds {', '.join(taken) or 'a file'} already; give a new "
            "folder (nothing there is overwritten)"
        )


def _write_soup(
    members: list[Path],
    norm: list[float],
    configs: list[dict[str, Any]],
    out: Path,
    config: Mapping[str, Any] | None,
    evaluate: bool,
    batch_size: int | None,
    extra: Mapping[str, Any] | None = None,
) -> Soup:
    """Average checked members into ``out`` (model, config, soup.json), evaluate if asked."""
    import yaml

    state, model = _average(members, norm)
    out.mkdir(parents=True, exist_ok=True)
    model.load_state_dict(state)
    model.save_pretrained(out / "model")
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(members[0] / "model").save_pretrained(out / "model")
    if config is None:
        config = soup_config(configs[0])
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    record = {
        "members": [
            {
                "run": str(m.resolve()),
                "weight": w,
                "seed": (c.get("train") or {}).get("seed"),
                "components": {k: c.get(k) or [] for k in TRAINING_ONLY},
            }
            for m, w, c in zip(members, norm, configs, strict=True)
        ],
        "paper": "Wortsman et al. 2022 (model soups); Ramé et al. 2022 (DiWA)",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **(extra or {}),
    }
    (out / SOUP_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    soup = Soup(out, members, norm)
    if evaluate:
        from augreg.evaluate import evaluate_run

        soup.metrics = evaluate_run(out, batch_size=batch_size).metrics
    return soup


def greedy_soup(
    runs: Sequence[str | Path],
    out: str | Path,
    *,
    held_out: Mapping[str, str | Path],
    metric: str | None = None,
    any_seed: bool = False,
    evaluate: bool = True,
    batch_size: int | None = None,
) -> Soup:
    """A greedy soup (Wortsman et al. 2022, Recipe 1): the runs ranked by their score on a
    held-out set, then each added to the soup, in that order, only if the uniform average
    with it scores at least as well on that set as the soup without it. The first (best)
    run is always in; a soup of one run is that run's model. Weights are equal among the
    runs kept. ``soup.json`` keeps the choice (``greedy``: the set, the metric, each run's
    score alone and the score of the soup with it, kept or not).

    Choose on a held-out set of the domain you care about: on an in-domain validation set
    the search keeps what helps in domain and may drop a member that helps elsewhere (a
    counterfactual member that gains out of domain). Never choose on a test set.

    Args:
        runs: Run folders made by ``augreg run``, with whole saved models.
        out: The soup's run folder (new, or without a model, config, metrics or soup.json).
        held_out: One set, ``{name: file}``, the choice is made on (JSON Lines, CSV or TSV
            as in ``data.eval``).
        metric: What is compared (default: ``accuracy`` for sequence classification, ``f1``
            for token classification); ``loss`` and ``class_rate_gap`` are minimised.
        any_seed, evaluate, batch_size: As for :func:`soup_runs`; ``evaluate`` measures the
            final soup on the first member's own sets.

    Cost: one evaluation of each run on the held-out set, then for each other run one
    average and one evaluation on that set; then :func:`soup_runs`' own.

    Raises:
        AugregError: as :func:`soup_runs`, a ``held_out`` that is not one set, or a metric
            the evaluation does not report.
    """
    import shutil
    import tempfile

    import yaml

    from augreg.evaluate import evaluate_run

    members = [Path(r) for r in runs]
    if not members:
        raise AugregError("augreg: greedy soup: give at least one run folder")
    if len({m.resolve() for m in members}) != len(members):
        raise AugregError("augreg: soup: a run folder is given twice; give each member once")
    if len(held_out) != 1:
        raise AugregError(
            "augreg: greedy soup: give one held-out set to choose on, {name: file}, got "
            f"{len(held_out)}"
        )
    ((name, file),) = held_out.items()
    out = Path(out)
    _check_out(out)
    configs = [_member_config(m, yaml) for m in members]
    _check_compatible(members, configs, any_seed)
    task_type = _get(configs[0], ("task", "type")) or "sequence_classification"
    chosen_metric = metric or ("f1" if task_type == "token_classification" else "accuracy")
    sets = {str(name): str(file)}

    sign = -1.0 if chosen_metric in LOWER_IS_BETTER else 1.0

    def score(run: Path) -> float:
        """The run's figure on the held-out set, signed so that higher is better."""
        figures = evaluate_run(run, sets, write=False, batch_size=batch_size).metrics[str(name)]
        if chosen_metric not in figures:
            raise AugregError(
                f"augreg: greedy soup: the evaluation reports no {chosen_metric!r} on "
                f"{name}; choose one of {', '.join(sorted(figures))}"
            )
        return sign * float(figures[chosen_metric])

    alone = {m: score(m) for m in members}
    ranked = sorted(members, key=lambda m: -alone[m])  # stable: ties keep the given order
    kept, best = [ranked[0]], alone[ranked[0]]
    tried: list[tuple[Path, float, bool]] = [(ranked[0], best, True)]  # run, soup score, kept
    by_run = dict(zip(members, configs, strict=True))

    def uniform(
        chosen: list[Path], folder: Path, measure: bool, extra: Mapping[str, Any] | None = None
    ) -> Soup:
        weights = [1.0 / len(chosen)] * len(chosen)
        configs = [by_run[m] for m in chosen]
        return _write_soup(chosen, weights, configs, folder, None, measure, batch_size, extra)

    scratch = Path(tempfile.mkdtemp(prefix="greedy-soup-"))
    try:
        for i, run in enumerate(ranked[1:]):
            trial = [*kept, run]
            folder = scratch / f"trial{i}"
            uniform(trial, folder, False)
            got = score(folder)
            tried.append((run, got, got >= best))
            if got >= best:
                kept, best = trial, got
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    steps = [  # the figures as the evaluation reports them
        {"run": str(run.resolve()), "alone": sign * alone[run], "soup": sign * got, "kept": ok}
        for run, got, ok in tried
    ]
    record = {
        "greedy": {"set": str(name), "file": str(file), "metric": chosen_metric, "steps": steps}
    }
    return uniform(kept, out, evaluate, record)


def summed_training(members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a soup cost to train: its members' training figures (a run's ``metrics.json``
    ``train``, or a bench record) added up; peak memory is the largest member's. A figure some
    member lacks is None; ``seconds_per_step`` is the training time over all members' steps.
    """

    def total(key: str) -> Any:
        values = [m.get(key) for m in members]
        return None if any(v is None for v in values) else sum(values)

    memory = [m["peak_memory_mb"] for m in members if m.get("peak_memory_mb") is not None]
    seconds, steps = total("train_seconds"), total("steps")
    return {
        "steps": steps,
        "train_seconds": seconds,
        "wall_seconds": total("wall_seconds"),
        "seconds_per_step": round(seconds / steps, 4) if seconds and steps else None,
        "peak_memory_mb": max(memory) if memory else None,
        "train_examples": total("train_examples"),
        "extra_passes": None,
        "trainable_parameters": members[0].get("trainable_parameters") if members else None,
    }


def _weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    values = [float(w) for w in weights]
    if len(values) != n:
        raise AugregError(
            f"augreg: soup: {len(values)} weight(s) for {n} runs; give one weight per run, "
            "in the same order"
        )
    if not all(math.isfinite(w) and w > 0 for w in values):
        raise AugregError(f"augreg: soup: weights must be positive numbers, got {values}")
    total = sum(values)
    return [w / total for w in values]


def _member_config(run: Path, yaml: Any) -> dict[str, Any]:
    config = run / "config.yaml"
    if not config.is_file():
        raise AugregError(
            f"augreg: soup: {run} is not a run folder (no config.yaml); give the folders "
            "augreg run wrote"
        )
    try:
        loaded = yaml.safe_load(config.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AugregError(f"augreg: soup: {config} is not valid YAML ({exc})") from exc
    if not isinstance(loaded, dict):
        raise AugregError(f"augreg: soup: {config} does not hold a pipeline config")
    model_dir = run / "model"
    if not (model_dir / "config.json").is_file():
        why = (
            "its adapters saved only what they train (augreg_model.json); averaging those "
            "pieces is not averaging the models. Merge LoRA/IA3 (augreg_adapters.merge) and "
            "save a whole model, or soup runs without adapters"
            if (model_dir / "augreg_model.json").is_file()
            else "it saved no model (train.save_model = false?); run it again with the model saved"
        )
        raise AugregError(f"augreg: soup: {run} has no whole saved model in model/: {why}")
    return loaded


def _get(config: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = config
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _check_compatible(members: list[Path], configs: list[dict[str, Any]], any_seed: bool) -> None:
    problems = []
    first = configs[0]
    if _get(first, ("tasks",)):
        problems.append(f"{members[0]} is a multi-task run; soups are made of single-task runs")
    for path in SHARED:
        want = _get(first, path)
        for run, config in zip(members[1:], configs[1:], strict=True):
            got = _get(config, path)
            if got != want:
                problems.append(
                    f"{'.'.join(path)} differs: {members[0]} has {want!r}, {run} {got!r}"
                )
    if not any_seed:
        seeds = [_get(c, ("train", "seed")) for c in configs]
        if len(set(map(str, seeds))) > 1:
            problems.append(
                f"the members have seeds {seeds}: the seed fixes the new head's start, so "
                "their heads are unrelated; soup runs of one seed (pass any_seed / --any-seed "
                "to average them anyway)"
            )
    if problems:
        raise AugregError(
            "augreg: soup: the runs cannot be averaged:\n  - " + "\n  - ".join(problems)
        )


def _average(members: list[Path], weights: list[float]) -> tuple[dict[str, Any], Any]:
    """The weighted average of the members' state dicts, and the first member's model.

    Floating tensors are averaged in float32 and cast back; other tensors (integer buffers
    such as position ids) must be equal across members.
    """
    import torch

    from augreg.model_io import load_model

    total: dict[str, torch.Tensor] = {}
    first: Any = None
    for i, (run, w) in enumerate(zip(members, weights, strict=True)):
        model = load_model(run)
        state = model.state_dict()
        if first is None:
            first, reference = model, state
            keys = set(state)
        elif set(state) != keys:
            missing = sorted(keys ^ set(state))[:5]
            raise AugregError(
                f"augreg: soup: {run}'s model does not line up with {members[0]}'s "
                f"(parameters only one of them has: {missing}); soup models of one architecture"
            )
        for name, tensor in state.items():
            if tensor.shape != reference[name].shape:
                raise AugregError(
                    f"augreg: soup: {name} has shape {tuple(tensor.shape)} in {run} and "
                    f"{tuple(reference[name].shape)} in {members[0]}; soup models of one "
                    "architecture and label set"
                )
            if tensor.is_floating_point():
                part = tensor.detach().float() * w
                total[name] = part if i == 0 else total[name] + part
            elif i == 0:
                total[name] = tensor.detach().clone()
            elif not torch.equal(tensor, total[name]):
                raise AugregError(
                    f"augreg: soup: the non-float tensor {name} differs between {members[0]} "
                    f"and {run}; they are not the same architecture"
                )
        del model
    averaged = {
        k: v.to(reference[k].dtype) if reference[k].is_floating_point() else v
        for k, v in total.items()
    }
    return averaged, first
