"""The sentence vector a sequence-classification head reads: the first token, or the mean.

``model.pooling = "mean"`` makes the head of a BERT-family classifier read the mean of the
last hidden states over the real tokens (padding excluded) instead of the first token's
state through the pretrained pooler (``dense`` + ``tanh``). Sentence-transformers checkpoints
(``all-MiniLM-L6-v2``, ``all-mpnet-base-v2``, ...) are trained to put the sentence in that mean;
their first token and pooler are left over from masked-language pre-training and were never
trained as a sentence vector. A logistic-regression probe on 500 SST-2 sentences shows the gap
with MiniLM: 78.7 on SST-2 test and 75.8 on CR with the mean, 70.7 and 62.0 with the first
token, 67.8 and 59.9 with the pooler output. Fine-tuning a head on the mean starts from the
representation the encoder was trained for, as SetFit does (Tunstall et al. 2022, "Efficient
Few-Shot Learning Without Prompts"; mean pooling: Reimers and Gurevych 2019,
"Sentence-BERT").

How: the base model's ``pooler`` is replaced by :class:`MeanPooler`, which keeps the
pretrained ``dense`` layer unused (so the state dict keeps its keys and soups line up); a
forward pre-hook on the base model hands it the attention mask. The
choice is written into the model's ``config.json`` (``augreg_pooling``), so
:func:`augreg.load_model`, ``augreg evaluate`` and soups rebuild the same head. A model loaded
with plain ``AutoModelForSequenceClassification.from_pretrained`` reads the first token again:
load augreg runs with :func:`augreg.load_model`.

transformers has no mean-pooling option for its sequence-classification heads, hence this
module. Models whose base has no ``pooler`` (RoBERTa, DistilBERT, DeBERTa, ...) are refused
with a clear error.

Cost: one masked mean over the last hidden states per forward, negligible next to the encoder;
no new parameters.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Literal

from augreg.errors import AugregError

if TYPE_CHECKING:
    import torch
    from torch import nn

Pooling = Literal["cls", "mean"]
CONFIG_KEY = "augreg_pooling"
"""The attribute of a model's ``PretrainedConfig`` (saved in ``config.json``) that records
the pooling a run trained with."""


@functools.cache
def _mean_pooler_class() -> type[nn.Module]:
    """The pooler module, defined once torch is imported (this module does not import it)."""
    from torch import nn

    class MeanPooler(nn.Module):
        """Masked mean of the last hidden states.

        Holds the replaced pooler's ``dense`` layer, unused, so the parameter names stay.
        """

        is_mean_pooler = True

        def __init__(self, old: nn.Module) -> None:
            super().__init__()
            self.dense: nn.Module = old.dense  # type: ignore[assignment]
            self.mask: torch.Tensor | None = None

        def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
            mask, self.mask = self.mask, None
            if mask is None or mask.shape != hidden_states.shape[:2]:
                return hidden_states.mean(dim=1)
            m = mask.to(hidden_states.dtype).unsqueeze(-1)
            return (hidden_states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)

    return MeanPooler


def _hand_mask(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Forward pre-hook on the base model: give its pooler this forward's attention mask.

    It reads the pooler from ``module`` (not from a closure), so a deep copy of the model
    (a teacher, an L2-SP anchor) feeds its own pooler.
    """
    mask = kwargs.get("attention_mask")
    if mask is None and len(args) > 1:
        mask = args[1]
    pooler = getattr(module, "pooler", None)
    if pooler is not None and getattr(pooler, "is_mean_pooler", False):
        pooler.mask = mask


def apply_pooling(model: nn.Module, pooling: Pooling | None) -> nn.Module:
    """Make a sequence-classification model's head read ``pooling``; return the model.

    ``None`` keeps what the model's ``config.json`` says (``"mean"`` for a model an augreg
    run saved with it, else the model's own head); ``"cls"`` keeps the model's own head and
    records that choice. Idempotent.

    Raises:
        AugregError: ``"mean"`` on a model whose base has no pooler to replace.
    """
    config = getattr(model, "config", None)
    pooling = pooling or getattr(config, CONFIG_KEY, None)
    if pooling in (None, "cls"):
        if pooling == "cls" and config is not None and hasattr(config, CONFIG_KEY):
            setattr(config, CONFIG_KEY, "cls")  # a saved model then says what it reads
        return model
    if pooling != "mean":
        raise AugregError(
            f"augreg: model.pooling = {pooling!r} is not known; use 'cls' (the model's own "
            "head) or 'mean' (the mean of the last hidden states)"
        )
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None) if prefix else None
    pooler = getattr(base, "pooler", None)
    if base is None or pooler is None or not hasattr(pooler, "dense"):
        arch = type(model).__name__
        raise AugregError(
            f"augreg: model.pooling = 'mean' replaces the pooler of a BERT-family model "
            f"(BERT, MiniLM, ...); {arch} has none. Leave model.pooling unset for this model."
        )
    if getattr(pooler, "is_mean_pooler", False):
        return model  # already mean-pooled
    base.pooler = _mean_pooler_class()(pooler)
    base.register_forward_pre_hook(_hand_mask, with_kwargs=True)
    setattr(model.config, CONFIG_KEY, "mean")
    return model
