"""The pooled sentence representation that the contrastive objectives act on.

The clean pass already carries the hidden states (the objectives set
``needs_hidden_states``, so the step asks the model for them): pooling costs no extra pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from augreg.errors import AugregError

if TYPE_CHECKING:
    import torch

Pooling = Literal["mean", "cls"]


def last_hidden(outputs: Any, who: str) -> torch.Tensor:
    """The last layer's hidden states ``(batch, length, hidden)`` of a pass.

    Raises:
        AugregError: the pass has no hidden states (the model ignores
            ``output_hidden_states``).
    """
    states = getattr(outputs, "hidden_states", None)
    if not states:
        raise AugregError(
            f"augreg: {who} needs the encoder's hidden states, and the model returned none. "
            "Use a transformers model that honours output_hidden_states=True (any encoder "
            "with a classification head does)."
        )
    return states[-1]  # type: ignore[no-any-return]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: Pooling) -> torch.Tensor:
    """Mean over real tokens (padding excluded) or the first token, as float32."""
    if how == "cls":
        return hidden[:, 0].float()
    mask = attention_mask.to(hidden.device).float().unsqueeze(-1)
    summed = (hidden.float() * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp_min(1.0)


def zero_like(reference: torch.Tensor) -> torch.Tensor:
    """A zero loss still in the graph of ``reference`` (a batch with nothing to learn from)."""
    return reference.sum() * 0.0
