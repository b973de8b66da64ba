"""Tiny models and tokenizers built locally, for tests that must not touch the network.

The tokenizer is a WordPiece tokenizer over a small fixed vocabulary (common English words,
single characters and ``##`` continuations), so any text tokenizes. The models are 2-layer
BERT encoders of width 32, with dropout, seeded: building one takes milliseconds.
"""

from __future__ import annotations

import atexit
import shutil
import string
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

_WORDS = (
    "the a an and or but not no is are was were be been it this that these those he she they "
    "we you i me him her them my your our their of to in on at by for with from as about into "
    "over after before under between good bad great terrible awful fine nice best worst love "
    "hate like movie film story plot actor actors acting director scene scenes music funny "
    "boring dull fun great-looking excellent poor wonderful beautiful ugly very too so really "
    "quite just only also even still never always often what which who whom whose when where "
    "why how all any both each few more most other some such one two three new old big small "
    "long short high low first last city paris london john mary smith germany france europe "
    "united states company bank president minister said says will would can could should may "
    "might must have has had do does did make made take took see saw go went get got know "
    "think time year day people man woman world life work hand part place case week point "
    "government number group problem fact question product phone camera battery screen price "
    "quality works worked broke easy hard fast slow"
).split()


@lru_cache(maxsize=1)
def _vocab_dir() -> str:
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += chars + ["##" + c for c in string.ascii_lowercase + string.digits]
    vocab += [w for w in dict.fromkeys(_WORDS) if w not in vocab]
    folder = Path(tempfile.mkdtemp(prefix="augreg-tiny-tok-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # one folder per process
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return str(folder)


def tiny_tokenizer() -> Any:
    """A fast, uncased WordPiece tokenizer (about 200 entries) built locally."""
    import inspect

    from transformers import BertTokenizerFast  # type: ignore[attr-defined,unused-ignore]

    vocab_file = Path(_vocab_dir()) / "vocab.txt"
    if "vocab_file" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers 4
        return BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    words = vocab_file.read_text(encoding="utf-8").split("\n")[:-1]
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)


def tiny_config(num_labels: int = 2, **overrides: Any) -> Any:
    """A 2-layer, 32-wide BERT config matching :func:`tiny_tokenizer`."""
    from transformers import BertConfig

    vocab_size = len(tiny_tokenizer())
    values: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        num_labels=num_labels,
    )
    values.update(overrides)
    return BertConfig(**values)


def tiny_model(
    task: str = "sequence_classification", num_labels: int = 2, seed: int = 0, **overrides: Any
) -> Any:
    """A tiny BERT model with a task head, seeded."""
    import torch
    from transformers import BertForSequenceClassification, BertForTokenClassification

    torch.manual_seed(seed)
    config = tiny_config(num_labels=num_labels, **overrides)
    if task == "token_classification":
        return BertForTokenClassification(config)
    if task == "sequence_classification":
        return BertForSequenceClassification(config)
    raise ValueError(f"unknown task {task!r}")


NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
"""Config overrides for a tiny model without dropout (passes then agree exactly)."""


def training_setup(
    task: str = "sequence_classification",
    *,
    seed: int = 0,
    dropout: bool = True,
    frozen_embeddings: bool = False,
    **overrides: Any,
) -> tuple[Any, dict[str, Any]]:
    """A tiny model in training mode and a padded batch of the kit's sample data for ``task``.

    What a regularizer's or objective's own tests start from: the model has the labels of the
    sample data (2 classes, or the IOB2 tags of :data:`augreg.testing.DEFAULT_TAGS`), the
    batch has padding and ``labels``.

    Args:
        task: ``"sequence_classification"`` or ``"token_classification"``.
        seed: Seeds the model's weights.
        dropout: False sets the dropout probabilities to 0 (:data:`NO_DROPOUT`), so two
            passes agree and gradients can be compared exactly.
        frozen_embeddings: Freeze the input embeddings (``core.freeze``), as adapters do.
        overrides: Other ``BertConfig`` values.

    Example:
        >>> model, batch = training_setup("token_classification", dropout=False)
        ... # doctest: +SKIP
    """
    from augreg.testing.helpers import (
        DEFAULT_TAGS,
        make_batch,
        sequence_examples,
        token_examples,
    )

    labels = len(DEFAULT_TAGS) if task == "token_classification" else 2
    values = {**({} if dropout else NO_DROPOUT), **overrides}
    model = tiny_model(task, num_labels=labels, seed=seed, **values)
    if frozen_embeddings:
        from augreg.builtins.adapters import Freeze

        model = Freeze({"embeddings": True}).prepare_model(model)
    model.train()
    examples = token_examples() if task == "token_classification" else sequence_examples()
    return model, make_batch(task, tiny_tokenizer(), examples)


def unshared_sum() -> Any:
    """The weighted sum (``core.sum``) not declared linear, as a combiner instance.

    The step then keeps every term's own backward and shares no clean backward (see
    :func:`augreg.step.shares_clean_backward`): pass it as ``combiner`` to test the path a
    ``uses_clean_gradient`` regularizer takes when ``ctx.clean_embedding_grad`` and
    ``ctx.clean_weight_grads`` are None (PCGrad, learned weights, gradient checkpointing).
    """
    from augreg.builtins.combiners import WeightedSum

    class UnsharedSum(WeightedSum):
        linear = False

    return UnsharedSum()


def save_tiny_model(
    folder: str | Path,
    task: str = "sequence_classification",
    num_labels: int | None = None,
    seed: int = 0,
) -> Path:
    """Save a tiny model and its tokenizer to ``folder`` (loadable by path, like a hub model).

    ``num_labels`` defaults to the labels of the kit's sample data for ``task`` (2 classes,
    or the IOB2 tags of :data:`augreg.testing.DEFAULT_TAGS`), so the model fits the kit's
    checks, e.g. as a teacher in :meth:`augreg.Component.conformance_options`.
    """
    if num_labels is None:
        from augreg.testing.helpers import DEFAULT_TAGS

        num_labels = len(DEFAULT_TAGS) if task == "token_classification" else 2
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tiny_model(task, num_labels, seed).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder
