"""The torch modules of the hand-written adapters (imported only when a model is prepared)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "swish": nn.SiLU,
}


class BottleneckBlock(nn.Module):
    """``x + up(act(down(x)))``: a bottleneck with a residual, near the identity at the start.

    Both projections start from a zero-mean normal of standard deviation ``init_std``
    truncated at two deviations, and zero biases (Houlsby et al. 2019), so the block starts as
    almost exactly the identity and the pretrained model's outputs are almost unchanged.

    Args:
        hidden: Width of the sublayer output it adapts.
        size: Bottleneck width.
        activation: A key of :data:`ACTIVATIONS`.
        init_std: Standard deviation of the initial projection weights.
    """

    def __init__(self, hidden: int, size: int, activation: str, init_std: float) -> None:
        super().__init__()
        self.down = nn.Linear(hidden, size)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(size, hidden)
        for linear in (self.down, self.up):
            nn.init.trunc_normal_(linear.weight, std=init_std, a=-2 * init_std, b=2 * init_std)
            nn.init.zeros_(linear.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = hidden_states + self.up(self.act(self.down(hidden_states)))
        return out

    def hook(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        """Forward hook on the sublayer's output projection: adapt its output."""
        if isinstance(output, tuple):
            return (self(output[0]), *output[1:])
        return self(output)
