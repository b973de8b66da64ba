"""Multi-task training: one shared encoder, one ``transformers`` head per task.

A pipeline with ``[[tasks]]`` trains several classification tasks at once (sequence and token
classification may be mixed), as
MT-DNN does (Liu et al. 2019, Multi-Task Deep Neural Networks for Natural Language
Understanding): the pretrained encoder is shared, each task keeps its own classification head,
and every batch holds examples of one task, drawn by :class:`MultiTaskBatchSampler`
(proportional, uniform, or temperature-scaled as in Arivazhagan et al. 2019 and T5, Raffel et
al. 2020). The step's loss terms are named ``<task>/<component>``, so a combiner
(``train.combiner``) weighs tasks against each other, and each task's terms are logged apart.

The heads are the ``transformers`` ones: every task gets an
``AutoModelForSequenceClassification`` (or ``AutoModelForTokenClassification``) built for its
labels, and all of them hold the same encoder module (``base_model_prefix``), so a head alone
(:meth:`MultiTaskModel.head`) is an ordinary ``transformers`` model that predicts its task.

Example::

    model = augreg.load_model("runs/sst2-trec-s42-...")
    enc = tokenizer(["what is the capital of peru ?"], return_tensors="pt")
    logits = model(**enc, augreg_task="trec").logits
    trec = model.head("trec")            # a BertForSequenceClassification sharing the encoder

Cost: one head per task (a linear layer each); a step costs what a single-task step costs on
the batch it draws; ``multitask.batches_per_step = k`` makes a step k batches.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from augreg.errors import AugregError
from augreg.seeding import derive_seed

if TYPE_CHECKING:
    from augreg.config import ModelConfig
    from augreg.tasks import Task

TASK = "augreg_task"
"""Batch key (and column) naming the task of a batch's examples; the model reads it."""
TASKS = "augreg_tasks"
"""Batch key of a training step that holds batches of several tasks (a list of batches)."""
MANIFEST = "augreg_multitask.json"
"""Name of the rebuild manifest of a saved multi-task model."""
WEIGHTS = "model.safetensors"
FORMAT = "augreg-multitask/1"


def task_probabilities(
    sizes: Sequence[int], mode: str, temperature: float | None = None
) -> list[float]:
    """The probability of drawing each task for a batch.

    ``proportional``: n_k / sum n; ``uniform``: 1 / K; ``temperature``: n_k ** (1/T),
    normalized (T defaults to 2; T = 1 is proportional, T -> infinity uniform).

    Raises:
        ValueError: an unknown mode, no task, or a task without examples.

    Example:
        >>> task_probabilities([300, 100], "temperature", 2.0)
        [0.6339745962155614, 0.36602540378443865]
    """
    if not sizes or any(n <= 0 for n in sizes):
        raise ValueError(f"augreg: every task needs training examples, got sizes {list(sizes)}")
    if mode == "proportional":
        weights = [float(n) for n in sizes]
    elif mode == "uniform":
        weights = [1.0] * len(sizes)
    elif mode == "temperature":
        t = 2.0 if temperature is None else float(temperature)
        weights = [float(n) ** (1.0 / t) for n in sizes]
    else:
        raise ValueError(
            f"augreg: unknown task sampling {mode!r}; use proportional, uniform or temperature"
        )
    total = sum(weights)
    return [w / total for w in weights]


class MultiTaskBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields, per training step, the indices of ``batches_per_step`` batches of one task each.

    Indices are global over the tasks' training sets concatenated in task order. An epoch is
    ``sum_k ceil(n_k / batch_size)`` batches (every example once under ``proportional``).
    ``proportional`` shuffles all tasks' batches together (MT-DNN); ``uniform`` and
    ``temperature`` draw each batch's task from :func:`task_probabilities` and take its
    examples from a per-task permutation that is renewed when used up (small tasks repeat,
    large ones are not all seen in an epoch). Seeded by (seed, epoch); no global random state.

    Args:
        sizes: Training examples per task, in task order.
        batch_size: Examples per batch.
        mode: ``proportional``, ``uniform`` or ``temperature``.
        temperature: T of ``temperature`` sampling.
        seed: The pipeline seed.
        batches_per_step: Batches per yielded step.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_size: int,
        mode: str = "proportional",
        temperature: float | None = None,
        seed: int = 0,
        batches_per_step: int = 1,
    ) -> None:
        self.sizes = [int(n) for n in sizes]
        self.probabilities = task_probabilities(self.sizes, mode, temperature)
        self.batch_size = int(batch_size)
        self.mode = mode
        self.seed = seed
        self.batches_per_step = int(batches_per_step)
        self.offsets = [sum(self.sizes[:k]) for k in range(len(self.sizes))]
        self.batches_per_epoch = sum(math.ceil(n / self.batch_size) for n in self.sizes)
        self.epoch = 0

    def set_epoch(self, epoch: int, model: Any = None, tokenizer: Any = None) -> None:
        """Start epoch ``epoch`` (the Trainer and :class:`augreg.trainer.EpochCallback`)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.batches_per_epoch / self.batches_per_step)

    def batches(self, epoch: int) -> list[tuple[int, list[int]]]:
        """The epoch's batches as (task index, global example indices), in order."""
        rng = random.Random(derive_seed(self.seed, "augreg.multitask", epoch))
        out: list[tuple[int, list[int]]] = []
        if self.mode == "proportional":
            for k, n in enumerate(self.sizes):
                order = list(range(n))
                rng.shuffle(order)
                for start in range(0, n, self.batch_size):
                    part = order[start : start + self.batch_size]
                    out.append((k, [self.offsets[k] + i for i in part]))
            rng.shuffle(out)
            return out
        streams: list[list[int]] = [[] for _ in self.sizes]
        tasks = rng.choices(range(len(self.sizes)), self.probabilities, k=self.batches_per_epoch)
        for k in tasks:
            chunk: list[int] = []
            while len(chunk) < min(self.batch_size, self.sizes[k]):
                if not streams[k]:
                    streams[k] = list(range(self.sizes[k]))
                    rng.shuffle(streams[k])
                chunk.append(streams[k].pop())
            out.append((k, [self.offsets[k] + i for i in chunk]))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)
        for start in range(0, len(batches), self.batches_per_step):
            group = batches[start : start + self.batches_per_step]
            yield [i for _, chunk in group for i in chunk]


class MultiTaskCollator:
    """Pads the examples of a step per task with that task's collator.

    Examples carry their task in :data:`TASK`. One task: the padded batch with ``TASK``
    set to the task name. Several (``batches_per_step`` > 1): ``{TASKS: [batch, ...]}``,
    one padded batch per task in order of first appearance.
    """

    def __init__(self, collators: Mapping[str, Any]) -> None:
        self.collators = dict(collators)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for feature in features:
            name = str(feature[TASK])
            groups.setdefault(name, []).append({k: v for k, v in feature.items() if k != TASK})
        batches: list[dict[str, Any]] = []
        for name, rows in groups.items():
            batch = dict(self.collators[name](rows))
            batch[TASK] = name
            batches.append(batch)
        if len(batches) == 1:
            return batches[0]
        return {TASKS: batches}


def task_groups(inputs: Mapping[str, Any]) -> list[tuple[str | None, Mapping[str, Any]]]:
    """The (task name, batch) pairs of a step: one ``(None, inputs)`` for a single-task batch."""
    if TASKS in inputs:
        return [(str(b[TASK]), b) for b in inputs[TASKS]]
    if TASK in inputs:
        return [(str(inputs[TASK]), inputs)]
    return [(None, inputs)]


class MultiTaskModel(nn.Module):
    """Task heads around one shared encoder; ``forward(augreg_task=<name>, **inputs)``.

    Each head is a ``transformers`` sequence- or token-classification model; the encoder of
    ``encoder_task`` (its ``base_model_prefix`` module) is set into every other, so the
    encoder's parameters exist once and get the gradients of every task, while a task's loss
    reaches only its own head. ``get_input_embeddings`` is the shared encoder's, so
    embedding-space regularizers (FGM, R-Drop, ...) act as in a single-task model.

    Args:
        heads: Task name -> ``transformers`` model for that task, in task order.
        encoder_task: The task whose encoder is shared (default: the first). Take a
            sequence-classification task when there is one: its encoder has the pooler that
            sequence heads read (token-classification models are built without it).
    """

    main_input_name = "input_ids"
    base_model_prefix = "encoder"
    """As in ``transformers`` models: ``getattr(model, model.base_model_prefix)`` is the encoder
    (objectives such as ``objectives.mlm`` reach it so)."""

    def __init__(self, heads: Mapping[str, nn.Module], encoder_task: str | None = None) -> None:
        super().__init__()
        if len(heads) < 1:
            raise ValueError("augreg: a multi-task model needs at least one task head")
        items = list(heads.items())
        self.encoder_task = items[0][0] if encoder_task is None else encoder_task
        first = heads[self.encoder_task]
        prefix = str(getattr(first, "base_model_prefix", ""))
        encoder = getattr(first, prefix, None) if prefix else None
        if not isinstance(encoder, nn.Module):
            raise AugregError(
                f"augreg: {type(first).__name__} has no encoder under base_model_prefix "
                f"{prefix!r}, so heads cannot share it; multi-task training needs a "
                "transformers model with a base model (BERT, RoBERTa, DeBERTa, ...)."
            )
        for name, head in items:
            if name != self.encoder_task:
                setattr(head, prefix, encoder)
        self.heads = nn.ModuleDict(dict(items))
        self.encoder_prefix = prefix
        self.config: Any = first.config
        accepts = getattr(first, "accepts_loss_kwargs", None)
        if accepts is None:
            import inspect

            params = inspect.signature(first.forward).parameters.values()
            accepts = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params)
        # The Trainer scales the loss for gradient accumulation as it would for one head.
        self.accepts_loss_kwargs = bool(accepts)

    @property
    def tasks(self) -> list[str]:
        """Task names, in order."""
        return list(self.heads.keys())

    def head(self, task: str) -> nn.Module:
        """The ``transformers`` model of ``task`` (shares the encoder with the others).

        Raises:
            KeyError: an unknown task (the message lists the tasks).
        """
        if task not in self.heads:
            raise KeyError(f"augreg: no task {task!r} in this model; tasks: {self.tasks}")
        return self.heads[task]

    @property
    def encoder(self) -> nn.Module:
        """The shared encoder module."""
        module = getattr(self.head(self.encoder_task), self.encoder_prefix)
        assert isinstance(module, nn.Module)
        return module

    def get_input_embeddings(self) -> nn.Module:
        """The shared encoder's input embeddings."""
        head: Any = self.head(self.encoder_task)
        module = head.get_input_embeddings()
        assert isinstance(module, nn.Module)
        return module

    def forward(self, augreg_task: str | None = None, **inputs: Any) -> Any:
        """Run the head of ``augreg_task`` on ``inputs`` (``input_ids``, ``labels``, ...).

        Raises:
            ValueError: no task given, or an unknown one (the message lists the tasks).
        """
        if augreg_task is None or augreg_task not in self.heads:
            raise ValueError(
                f"augreg: a multi-task model needs the task of the batch: pass "
                f"augreg_task=<one of {self.tasks}>, got {augreg_task!r}"
            )
        return self.heads[augreg_task](**inputs)


def build_multitask_model(tasks: Mapping[str, Task], model_cfg: ModelConfig) -> MultiTaskModel:
    """The pretrained encoder with a fresh head per task (seed the process first).

    The first sequence-classification task's model (else the first task's) is loaded with its
    pretrained encoder; every other task's model is built from the same config with its own
    labels (``from_config``, whose randomly initialised encoder is then replaced by the shared
    one: a few hundred ms for MiniLM, paid once) and its head initialised as
    ``from_pretrained`` initialises a new head.
    """
    import transformers

    names = list(tasks)
    donor = next((n for n in names if tasks[n].type == "sequence_classification"), names[0])
    first = tasks[donor].load_model(model_cfg)
    heads: dict[str, nn.Module] = {}
    for name in names:
        task = tasks[name]
        if name == donor:
            heads[name] = first
            continue
        config = type(first.config).from_dict(
            {
                **first.config.to_dict(),
                "num_labels": len(task.labels),
                "id2label": task.id2label,
                "label2id": task.label2id,
            }
        )
        loader = getattr(transformers, task.auto_model)
        heads[name] = loader.from_config(config)
    return MultiTaskModel(heads, encoder_task=donor)


def _task_entries(model: MultiTaskModel) -> list[dict[str, Any]]:
    out = []
    for name in model.tasks:
        head: Any = model.head(name)
        id2label: Mapping[Any, str] = head.config.id2label or {}
        out.append(
            {
                "name": name,
                "type": (
                    "token_classification"
                    if "TokenClassification" in type(head).__name__
                    else "sequence_classification"
                ),
                "labels": [str(id2label[k]) for k in sorted(id2label, key=int)],
            }
        )
    return out


def save_multitask(
    folder: str | Path, model: MultiTaskModel, tokenizer: Any = None, *, seed: int = 0
) -> Path:
    """Write a multi-task model: shared encoder once, every head, config, manifest, tokenizer.

    ``model.safetensors`` holds the first head's full model and, for the other tasks, their
    parameters outside the shared encoder; modules that objectives and combiners train
    (``augreg_aux``) are left out, as in :func:`augreg.model_io.save_trained`. Loads back with
    :func:`load_multitask` (or :func:`augreg.load_model`) without the base model.
    """
    from safetensors.torch import save_file

    from augreg.step import AUX

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shared = f"{model.encoder_prefix}."
    state: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if AUX in parts:
            continue
        task, _, rest = key[len("heads.") :].partition(".")
        if task != model.encoder_task and rest.startswith(shared):
            continue  # the shared encoder, saved once under its task
        state[key] = value.detach().cpu().contiguous().clone()
    save_file(state, str(folder / WEIGHTS), metadata={"format": FORMAT})
    manifest = {
        "format": FORMAT,
        "tasks": _task_entries(model),
        "encoder_prefix": model.encoder_prefix,
        "encoder_task": model.encoder_task,
        "config": model.config.to_dict(),
        "seed": seed,
        "weights": WEIGHTS,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    return folder


def load_multitask(folder: str | Path) -> MultiTaskModel:
    """Rebuild a model saved by :func:`save_multitask`, in evaluation mode.

    Raises:
        AugregError: another format, missing weights, or tensors that do not fit.
    """
    import transformers

    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise AugregError(
            f"augreg: {folder / MANIFEST} has format {manifest.get('format')!r}; this augreg "
            f"reads {FORMAT!r}. Load it with the augreg version that wrote it."
        )
    weights = folder / str(manifest["weights"])
    if not weights.is_file():
        raise AugregError(
            f"augreg: the saved tensors {weights} are missing; the run is incomplete."
        )
    raw_config = dict(manifest["config"])
    heads: dict[str, nn.Module] = {}
    for entry in manifest["tasks"]:
        labels = [str(x) for x in entry["labels"]]
        config = transformers.AutoConfig.for_model(
            **{
                **raw_config,
                "num_labels": len(labels),
                "id2label": dict(enumerate(labels)),
                "label2id": {name: i for i, name in enumerate(labels)},
            }
        )
        loader: Any = (
            transformers.AutoModelForTokenClassification
            if entry.get("type") == "token_classification"
            else transformers.AutoModelForSequenceClassification
        )
        heads[str(entry["name"])] = loader.from_config(config)
    model = MultiTaskModel(heads, encoder_task=manifest.get("encoder_task"))
    load_multitask_state(model, weights)
    return model.eval()


def load_multitask_state(model: MultiTaskModel, weights: str | Path) -> None:
    """Load tensors written by :func:`save_multitask` into ``model`` (same tasks and encoder).

    Raises:
        AugregError: tensors that do not fit (another model, or another version).
    """
    from safetensors.torch import load_file

    result = model.load_state_dict(load_file(str(weights)), strict=False)
    shared = f"{model.encoder_prefix}."
    first = model.encoder_task
    # heads.<task>.<encoder prefix>.* of the other tasks are the shared encoder; modules
    # that objectives and combiners train are not saved.
    missing = [
        k
        for k in result.missing_keys
        if not k.startswith("augreg_aux.")
        and (k.startswith(f"heads.{first}.") or not k.split(".", 2)[2].startswith(shared))
    ]
    if missing or result.unexpected_keys:
        bad = [*missing, *result.unexpected_keys]
        raise AugregError(
            f"augreg: the saved tensors of {weights} do not fit the rebuilt multi-task model "
            f"({len(bad)} tensors: {', '.join(bad[:3])}, ...). Load it with the augreg and "
            "transformers versions the run used (the run folder's augreg.lock lists them)."
        )
