"""Norm balls around the input embeddings: ascent directions, projections, random starts.

Shared by every method of the plugin, so FGM, PGD, FreeLB and SMART measure, step and project
a perturbation the same way. A perturbation is a ``(batch, length, hidden)`` tensor added to
the input-embedding output; ``mask`` is the ``(batch, length, 1)`` float mask of real tokens
(padding is never perturbed, and never counts in a norm).

``unit`` says what one ball is: ``"token"`` (each token's hidden vector has its own ball) or
``"sequence"`` (one ball per example, over all its real tokens). For ``"linf"`` the two agree
(the bound is per entry). Directions and projections are computed in float32, whatever the
model's precision, so that small gradients do not vanish in bf16.
"""

from __future__ import annotations

from typing import Literal

import torch

Norm = Literal["l2", "linf"]
Unit = Literal["token", "sequence"]

TINY = 1e-12
"""Floor of a norm before dividing by it (a zero gradient gives a zero step, not NaN)."""


def token_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(batch, length, 1)`` float32 mask of real tokens from an attention mask."""
    return attention_mask.to(torch.float32).unsqueeze(-1)


def l2_norm(t: torch.Tensor, mask: torch.Tensor, unit: Unit) -> torch.Tensor:
    """L2 norm of each ball of ``t``, broadcastable to ``t``: ``(B, L, 1)`` or ``(B, 1, 1)``."""
    t = t.float() * mask
    norms: torch.Tensor
    if unit == "token":
        norms = torch.linalg.vector_norm(t, dim=-1, keepdim=True)
    else:
        norms = torch.linalg.vector_norm(t.flatten(1), dim=1).view(-1, 1, 1)
    return norms


def direction(grad: torch.Tensor, mask: torch.Tensor, norm: Norm, unit: Unit) -> torch.Tensor:
    """The steepest-ascent step of size one in the chosen norm, for gradient ``grad``.

    L2: ``g / ||g||`` per ball. Linf: ``sign(g)`` (every entry moves by one, as in FGSM and
    Madry et al.'s PGD). Zero on padding; a zero gradient gives a zero step.
    """
    g = grad.float() * mask
    if norm == "linf":
        return torch.sign(g)
    return g / l2_norm(g, mask, unit).clamp_min(TINY)


def project(
    delta: torch.Tensor, mask: torch.Tensor, norm: Norm, unit: Unit, epsilon: float
) -> torch.Tensor:
    """Project ``delta`` onto the ``epsilon`` ball of each token or sequence; zero padding."""
    delta = delta.float() * mask
    if norm == "linf":
        return delta.clamp(-epsilon, epsilon)
    scale = (epsilon / l2_norm(delta, mask, unit).clamp_min(TINY)).clamp(max=1.0)
    return delta * scale


def ascend(
    delta: torch.Tensor | None,
    grad: torch.Tensor,
    mask: torch.Tensor,
    norm: Norm,
    unit: Unit,
    step_size: float,
    epsilon: float,
) -> torch.Tensor:
    """One projected ascent step: ``project(delta + step_size * direction(grad))``.

    ``delta=None`` stands for a zero start. The result is detached (a new leaf).
    """
    step = step_size * direction(grad.detach(), mask, norm, unit)
    moved = step if delta is None else delta.detach().float() + step
    return project(moved, mask, norm, unit, epsilon)


def random_start(
    like: torch.Tensor, mask: torch.Tensor, norm: Norm, unit: Unit, magnitude: float
) -> torch.Tensor:
    """A random start inside the ball, as FreeLB initializes it (Zhu et al. 2020).

    Entries are uniform in ``[-1, 1]``. Linf: scaled by ``magnitude``. L2: scaled by
    ``magnitude / sqrt(d)``, ``d`` the number of real entries of the ball (hidden size per
    token, or real length x hidden size per sequence), so the expected norm is about
    ``magnitude / sqrt(3)`` whatever the width or length. Then projected onto the
    ``magnitude`` ball. Uses torch's global generator, which the trainer seeds.
    """
    u = (torch.rand(like.shape, device=like.device, dtype=torch.float32) * 2 - 1) * mask
    if norm == "linf":
        return u * magnitude
    hidden = like.shape[-1]
    if unit == "token":
        dims = torch.full_like(mask, float(hidden))
    else:
        dims = (mask.sum(dim=(1, 2), keepdim=True) * hidden).clamp_min(1.0)
    return project(u * magnitude / dims.sqrt(), mask, norm, unit, magnitude)
