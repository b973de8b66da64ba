"""The Trainer callback of ``adapters.lp_ft`` (imports transformers; loaded when a run starts)."""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback

from augreg_adapters.common import adapter_error, head_modules, unwrap


def switch_step(switch: float, unit: str, max_steps: int, epochs: float) -> int:
    """The global step at which full fine-tuning starts (at least 1)."""
    if unit == "fraction":
        step = switch * max_steps
    else:
        step = switch * max_steps / max(epochs, 1e-9)
    return max(1, math.ceil(step - 1e-9))


class LPFTSwitch(TrainerCallback):
    """The Trainer callback of :class:`LPFT`: freeze the body at the start, unfreeze at the switch.

    Attributes:
        switch_at: The global step of the switch, known once training starts.
        body: Names of the parameters frozen while probing.
    """

    def __init__(
        self, switch: float, unit: str, head: list[str] | None, probe_lr_scale: float = 1.0
    ) -> None:
        self.switch = switch
        self.unit = unit
        self.head = head
        self.probe_lr_scale = probe_lr_scale
        self._scheduler: Any = None
        self._optimizer: Any = None
        self.switch_at: int | None = None
        self.body: list[str] = []
        self._frozen: list[Any] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = kwargs["model"]
        optimizer = kwargs.get("optimizer")
        if int(getattr(args, "world_size", 1)) > 1:
            raise adapter_error(
                "adapters.lp_ft",
                "runs in a single process only (toggling requires_grad under "
                "DistributedDataParallel breaks its gradient buckets); train without torchrun.",
            )
        base = unwrap(model)
        head_ids = {
            id(p)
            for name in head_modules(model, self.head)
            for p in base.get_submodule(name).parameters()
        }
        body = [
            (n, p) for n, p in model.named_parameters() if p.requires_grad and id(p) not in head_ids
        ]
        if optimizer is not None:
            held = {id(p) for group in optimizer.param_groups for p in group["params"]}
            missing = [n for n, p in body if id(p) not in held]
            if missing:
                raise adapter_error(
                    "adapters.lp_ft",
                    f"the optimizer does not hold {len(missing)} parameters trained after the "
                    f"switch ({', '.join(missing[:3])}, ...); it must be built over every "
                    "trainable parameter before training starts (the Trainer's default).",
                )
        self.switch_at = switch_step(
            self.switch, self.unit, int(state.max_steps), float(state.num_train_epochs or 1)
        )
        self.body = [n for n, _ in body]
        if state.global_step < self.switch_at:
            self._frozen = [p for _, p in body]
            for p in self._frozen:
                p.requires_grad_(False)
            if self.probe_lr_scale != 1.0:
                self._scale_lr(kwargs.get("lr_scheduler"), optimizer, self.probe_lr_scale)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._frozen and self.switch_at is not None and state.global_step >= self.switch_at:
            self._unfreeze()
            state.log_history.append({"lp_ft_switch": self.switch_at, "step": state.global_step})

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._unfreeze()  # a run that ends before the switch still leaves the model whole

    def _scale_lr(self, scheduler: Any, optimizer: Any, factor: float) -> None:
        # The Trainer's schedules are LambdaLR: lr = base_lr * lambda(step), recomputed from
        # base_lrs at every scheduler step, so scaling both moves the whole probing phase.
        if scheduler is None or optimizer is None or not hasattr(scheduler, "base_lrs"):
            raise adapter_error(
                "adapters.lp_ft",
                "probe_lr_scale needs the Trainer's optimizer and a LambdaLR schedule (its "
                "default); set probe_lr_scale = 1 with a custom scheduler.",
            )
        scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
        for group in optimizer.param_groups:
            group["lr"] *= factor
        self._scheduler, self._optimizer = scheduler, optimizer

    def _unfreeze(self) -> None:
        for p in self._frozen:
            p.requires_grad_(True)
        self._frozen = []
        if self._scheduler is not None:
            self._scale_lr(self._scheduler, self._optimizer, 1.0 / self.probe_lr_scale)
            self._scheduler = self._optimizer = None
