"""LP-FT: linear probing, then full fine-tuning, switched by a Trainer callback. Written here:
peft has no schedule of what trains.

How the switch stays correct with the ``transformers`` Trainer: ``prepare_model`` leaves every
parameter trainable, so the Trainer's optimizer holds all of them from the start; the callback
then turns ``requires_grad`` off for the body when training begins (after the optimizer is
built) and back on at the switch. Frozen parameters get no gradient (``None``), which AdamW
skips entirely (no update, no weight decay, no moment state), so the body does not move before
the switch and does after it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

import augreg
from augreg_adapters.common import already_applied, head_modules, mark_applied

if TYPE_CHECKING:  # pragma: no cover - typing only; importing this module stays light
    from torch import nn


class LPFT(augreg.Adapter):
    """Linear probing, then full fine-tuning (LP-FT).

    Until the switch only the task head trains (a linear probe on the pretrained features);
    from the switch everything trains. Starting full fine-tuning from a fitted head keeps the
    random head's large early gradients from distorting the pretrained features, which the
    paper finds helps most out of distribution. ``switch`` is a fraction of the training steps
    (``unit = "fraction"``) or a number of epochs (``unit = "epoch"``). What trains after the
    switch is whatever the other adapters leave trainable when training starts, so with
    ``core.freeze`` or ``adapters.lora`` beside it the second phase tunes only that. The
    paper fits the probe to convergence with its own solver; here the probe shares the run's
    optimizer and schedule, at ``probe_lr_scale`` times the learning rate. Single-process
    training only: toggling ``requires_grad`` under DistributedDataParallel breaks its
    gradient buckets.

    Paper: Kumar et al. 2022, *Fine-Tuning can Distort Pretrained Features and Underperform
    Out-of-Distribution*.

    Cost: no extra pass; steps before the switch are cheaper (no weight gradients for the
    body). Saves the whole model, like full fine-tuning.
    """

    name = "adapters.lp_ft"
    paper = (
        "Kumar et al. 2022, Fine-Tuning can Distort Pretrained Features and Underperform "
        "Out-of-Distribution"
    )

    class Options(augreg.Adapter.Options):
        switch: float = Field(
            0.5,
            gt=0,
            le=1000,
            description="When probing ends: a fraction of the training steps (unit fraction, "
            "below 1) or a number of epochs (unit epoch).",
        )
        unit: Literal["fraction", "epoch"] = Field(
            "fraction", description="What switch counts: fraction of steps, or epochs."
        )
        probe_lr_scale: float = Field(
            1.0,
            gt=0,
            le=1e4,
            description="Learning rate while probing, as a multiple of train.learning_rate "
            "(a head trained alone from scratch wants a larger rate than fine-tuning).",
        )
        head: list[str] | None = Field(
            None,
            min_length=1,
            description="Top-level modules trained while probing; default: inferred "
            "(classifier, score, ...).",
        )

        @model_validator(mode="after")
        def _switch_in_range(self) -> LPFT.Options:
            if self.unit == "fraction" and self.switch >= 1:
                raise ValueError(
                    f"switch must be below 1 with unit 'fraction' (a share of the training "
                    f"steps), got {self.switch}; for epochs set unit = 'epoch'"
                )
            return self

    options: Options

    def prepare_model(self, model: nn.Module) -> nn.Module:
        if already_applied(model, self):
            return model
        head_modules(model, self.options.head)  # fail now, not when training starts
        mark_applied(model, self)
        return model

    def callbacks(self) -> list[Any]:
        from augreg_adapters.lp_ft_callback import LPFTSwitch

        opts = self.options
        return [LPFTSwitch(opts.switch, opts.unit, opts.head, opts.probe_lr_scale)]
