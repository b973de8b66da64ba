"""The Trainer: one ``transformers.Trainer`` subclass where every component acts.

:class:`AugregTrainer` overrides ``compute_loss`` (objectives as a weighted sum plus
regularizer terms, through :func:`augreg.step.compute_loss`), ``log`` (each loss part logged
separately) and ``create_optimizer`` (parameters a component trains at a scaled learning rate
get groups of their own). Everything else — the optimizer itself, schedule, mixed precision,
gradient accumulation, checkpoints, early stopping, multi-GPU and multi-node through
accelerate/torchrun — is the Trainer's own, so users never stack Trainer subclasses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from augreg.components import Combiner, Objective, Regularizer
from augreg.config import TrainConfig
from augreg.errors import TrainingDivergedError
from augreg.multitask import TASK, MultiTaskModel, load_multitask_state, save_multitask
from augreg.step import compute_loss, split_lr_groups


class AugregTrainer(Trainer):
    """A Trainer that composes augreg objectives and regularizers.

    Args:
        objectives: Objectives, combined by their ``weight`` (at least one).
        regularizers: Regularizers; active only in training mode.
        task_type: ``sequence_classification`` or ``token_classification``.
        combiner: Turns the weighted terms into the loss (``train.combiner``; default: sum).
        batch_sampler: Draws the training batches (multi-task: one task per batch,
            :class:`augreg.multitask.MultiTaskBatchSampler`); default: the Trainer's sampler.
        task_metrics: Multi-task: task name -> its ``compute_metrics``; an evaluation set's
            task is read from its ``augreg_task`` column.
        task_weights: Multi-task: task name -> weight of its loss terms.
        task_types: Multi-task: task name -> its task type (``ctx.task`` of its batches).
        *args, **kwargs: Passed to ``transformers.Trainer``.
    """

    def __init__(
        self,
        *args: Any,
        objectives: Sequence[Objective],
        regularizers: Sequence[Regularizer] = (),
        task_type: str = "sequence_classification",
        combiner: Combiner | None = None,
        batch_sampler: Any = None,
        task_metrics: Mapping[str, Callable[[Any], dict[str, float]]] | None = None,
        task_weights: Mapping[str, float] | None = None,
        task_types: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.batch_sampler = batch_sampler
        self.task_metrics = dict(task_metrics or {})
        self.task_weights = dict(task_weights or {})
        self.task_types = dict(task_types or {})
        self.combiner = combiner
        self.objectives = list(objectives)
        self.regularizers = list(regularizers)
        self.task_type = task_type
        self.component_state: dict[str, Any] = {}
        self._parts_sum: dict[str, float] = {}
        self._parts_count: dict[str, int] = {}

    def create_optimizer(self, *args: Any, **kwargs: Any) -> Any:
        """The Trainer's optimizer, with parameters given a learning-rate scale by a component
        (:func:`augreg.step.set_lr_scale`) in groups of their own."""
        optimizer = super().create_optimizer(*args, **kwargs)
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
        split_lr_groups(inner)
        return optimizer

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        try:
            result = compute_loss(
                model,
                inputs,
                self.objectives,
                self.regularizers,
                task=self.task_type,
                step=self.state.global_step,
                epoch=float(self.state.epoch or 0.0),
                num_items_in_batch=num_items_in_batch,
                state=self.component_state,
                combiner=self.combiner,
                total_steps=int(self.state.max_steps or 0) or None,
                # A task's weight shapes training; its evaluation loss stays the plain loss.
                task_weights=self.task_weights if model.training else None,
                task_types=self.task_types,
            )
        except TrainingDivergedError:
            raise
        if model.training:
            for key, value in result.parts.items():
                self._parts_sum[key] = self._parts_sum.get(key, 0.0) + value
                # Per key: a multi-task term is averaged over the steps that drew its task.
                self._parts_count[key] = self._parts_count.get(key, 0) + 1
        if return_outputs:
            assert result.context is not None
            return result.loss, result.context.outputs
        return result.loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs and self._parts_count:
            for key, value in self._parts_sum.items():
                logs[f"loss/{key}"] = round(value / self._parts_count[key], 6)
            self._parts_sum.clear()
            self._parts_count.clear()
        super().log(logs, *args, **kwargs)

    def get_train_dataloader(self) -> Any:
        """The Trainer's loader, or one over :attr:`batch_sampler` when one is given."""
        if self.batch_sampler is None:
            return super().get_train_dataloader()
        from torch.utils.data import DataLoader

        loader = DataLoader(
            self.train_dataset,  # type: ignore[arg-type]
            batch_sampler=self.batch_sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)

    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """The Trainer's evaluation; multi-task: with the metrics of the set's task.

        Multi-task evaluation during training (``eval_dataset`` a dict of the tasks'
        validation sets) adds ``<prefix>_average_<metric>``, the mean over the sets of each
        metric they all have (MT-DNN's model selection), logs it and passes it to the
        callbacks, so ``metric_for_best_model = "average_accuracy"`` and early stopping use it.
        """
        if self.task_metrics and not isinstance(eval_dataset, dict):
            ds = eval_dataset
            if ds is None or isinstance(ds, str):
                ds = self.eval_dataset[ds] if isinstance(ds, str) else self.eval_dataset  # type: ignore[index]
            if ds is not None and not isinstance(ds, dict) and TASK in ds.column_names:
                self.compute_metrics = self.task_metrics[str(ds[0][TASK])]
        sets = self.eval_dataset if eval_dataset is None else eval_dataset
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if self.task_metrics and isinstance(sets, dict) and len(sets) > 1:
            average = average_metrics(metrics, list(sets), metric_key_prefix)
            self.log(average)
            metrics.update(average)
            self.control = self.callback_handler.on_evaluate(
                self.args, self.state, self.control, metrics
            )
        return metrics

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        # A multi-task model's heads share one encoder: safetensors refuses shared tensors, so
        # checkpoints are written as the run's model is (encoder once).
        if not isinstance(self.model, MultiTaskModel):
            super()._save(output_dir, state_dict)
            return
        folder = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save:
            save_multitask(str(folder), self.model, self.processing_class)

    def _load_best_model(self) -> None:
        if not isinstance(self.model, MultiTaskModel):
            super()._load_best_model()
            return
        from pathlib import Path

        from augreg.multitask import WEIGHTS

        assert self.state.best_model_checkpoint is not None
        load_multitask_state(self.model, Path(self.state.best_model_checkpoint) / WEIGHTS)


def average_metrics(
    metrics: Mapping[str, float], sets: Sequence[str], prefix: str = "eval"
) -> dict[str, float]:
    """``<prefix>_average_<m>``: the mean of ``<prefix>_<set>_<m>`` over ``sets``, for every
    numeric metric ``m`` (runtime and throughput figures left out) that all sets have.

    Example:
        >>> average_metrics({"eval_a_accuracy": 0.8, "eval_b_accuracy": 0.6}, ["a", "b"])
        {'eval_average_accuracy': 0.7}
    """
    skip = {"runtime", "samples_per_second", "steps_per_second", "loss"}
    per_set: list[dict[str, float]] = []
    for name in sets:
        head = f"{prefix}_{name}_"
        per_set.append(
            {
                k[len(head) :]: float(v)
                for k, v in metrics.items()
                if k.startswith(head) and isinstance(v, (int, float))
            }
        )
    common = set.intersection(*(set(d) for d in per_set)) - skip if per_set else set()
    return {
        f"{prefix}_average_{m}": sum(d[m] for d in per_set) / len(per_set) for m in sorted(common)
    }


class EpochCallback(TrainerCallback):
    """Tells a per-epoch augmented data set which epoch starts (fresh views each epoch).

    It also hands the data set the model being trained and the tokenizer, so that augmenters
    with ``needs_model`` write their views against the current weights on their refresh
    epochs (:meth:`augreg.data.PerEpochDataset.set_epoch`). ``on_epoch_begin`` runs before
    the epoch's data loader is iterated, so every batch of the epoch sees the new views.
    """

    def __init__(self, dataset: Any, tokenizer: Any = None) -> None:
        self.dataset = dataset
        self.tokenizer = tokenizer

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        tokenizer = self.tokenizer if self.tokenizer is not None else kwargs.get("processing_class")
        self.dataset.set_epoch(round(state.epoch or 0), kwargs.get("model"), tokenizer)


def resolve_precision(precision: str) -> dict[str, bool]:
    """``bf16``/``fp16`` flags for ``TrainingArguments`` from ``train.precision``."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        if cuda and torch.cuda.is_bf16_supported():
            return {"bf16": True, "fp16": False}
        if cuda:
            return {"bf16": False, "fp16": True}
        return {"bf16": False, "fp16": False}
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def _has_accelerator() -> bool:
    if torch.cuda.is_available():
        return True
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return True
    xpu = getattr(torch, "xpu", None)
    return bool(xpu is not None and xpu.is_available())


def training_arguments(
    train: TrainConfig,
    output_dir: str,
    *,
    has_validation: bool,
    metric: str,
    **extra: Any,
) -> TrainingArguments:
    """Translate augreg's :class:`TrainConfig` into ``transformers.TrainingArguments``."""
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    evaluate = has_validation and train.eval_strategy != "no"
    select = bool(evaluate and (train.select_best or train.early_stopping_patience))
    kwargs: dict[str, Any] = dict(
        output_dir=output_dir,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps or -1,
        learning_rate=train.learning_rate,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.eval_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm or 0.0,
        seed=train.seed,
        data_seed=train.seed,
        eval_strategy=train.eval_strategy if evaluate else "no",
        eval_steps=train.eval_steps,
        save_strategy=train.eval_strategy if select else "no",
        save_total_limit=2 if select else None,
        save_only_model=True,
        load_best_model_at_end=select,
        metric_for_best_model=metric if select else None,
        greater_is_better=True if select else None,
        logging_steps=train.logging_steps,
        report_to="none",
        disable_tqdm=not train.progress,
        dataloader_num_workers=train.dataloader_workers,
        remove_unused_columns=False,
        **resolve_precision(train.precision),
    )
    if not _has_accelerator():
        # Without use_cpu, accelerate treats a CPU-only torchrun launch as non-distributed and
        # every process trains on all the data; with it, the processes form a gloo group.
        kwargs["use_cpu"] = True
    if "warmup_ratio" in fields:  # transformers 4
        kwargs["warmup_ratio"] = train.warmup_ratio
    else:  # transformers 5: a float below 1 is a ratio
        kwargs["warmup_steps"] = train.warmup_ratio
    kwargs.update(extra)
    return TrainingArguments(**{k: v for k, v in kwargs.items() if k in fields})
