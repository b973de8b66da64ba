"""Adversarial regularizers in embedding space: FGM, PGD, FreeLB and SMART.

Every method perturbs the output of ``model.get_input_embeddings()`` through the step context
(``ctx.forward(perturbation=...)``) and finds the perturbation with ``torch.autograd.grad``
(``ctx.perturbation_grad``): no weight is edited and restored, no ``.grad`` is written, and
padding is never perturbed. So they work on any ``transformers`` model, with frozen
embeddings (``core.freeze``), adapters, gradient accumulation and mixed precision.

Cost is stated per class, in extra forward and backward passes over the plain step (forward
plus backward). A backward to the embeddings only (no weight gradients) is counted as about a
third of a pass, a forward as a third, a full backward as two thirds. When a method starts from
a zero perturbation, its first gradient comes from the clean pass the step runs anyway (the
gradient with respect to the clean embedding output): FGM and PGD set ``uses_clean_gradient``,
so the step's one backward through the clean pass gives that gradient with the weights' (the
core's shared clean backward), and the first probe costs nothing. With a combiner that is not
a plain sum (PCGrad, uncertainty weighting) the step cannot share its backward; the probe then
reuses the clean forward and pays a backward to the embeddings (a third of a pass).

Example::

    import augreg

    pipe = augreg.Pipeline(..., regularize=[{"name": "adversarial.fgm", "epsilon": 0.1}])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

import augreg

if TYPE_CHECKING:  # pragma: no cover - typing only; importing this module stays light
    import torch
    from torch import nn

    from augreg.context import StepContext

LossFn = Callable[[Any], "torch.Tensor"]

# Cost units, in plain-step passes (forward + backward = 1): see the module docstring.
_FORWARD = 1 / 3
_TO_EMBEDDINGS = 1 / 3
_BACKWARD = 2 / 3


def _cost(
    *,
    probes: int,
    reused: bool,
    trained: int,
    shared: int = 0,
    forwards: int = 0,
    clean_gradient: bool = False,
) -> float:
    """Declared extra passes of a method (rounded to 0.01), with the step's default combiner.

    Args:
        probes: Gradients taken with respect to the perturbation (backward to the embeddings).
        reused: The first probe is the clean pass (zero start): its forward is free.
        trained: Perturbed passes whose loss is in the term (forward and full backward).
        shared: How many trained passes are also probes (their forward is counted once).
        forwards: Forwards without any backward (SMART's teacher).
        clean_gradient: The first probe's backward is the step's shared clean backward
            (``uses_clean_gradient``): free as well.
    """
    cost = probes * (_FORWARD + _TO_EMBEDDINGS) - (_FORWARD if reused else 0.0)
    cost -= _TO_EMBEDDINGS if reused and clean_gradient else 0.0
    cost += trained * (_FORWARD + _BACKWARD) - shared * _FORWARD + forwards * _FORWARD
    return round(cost, 2)


def _leaf(ctx: StepContext, delta: torch.Tensor | None) -> torch.Tensor:
    """A float32 leaf perturbation that requires grad: ``delta`` detached, or zeros."""
    import torch

    emb = ctx.embeddings
    if delta is None:
        return torch.zeros(emb.shape, device=emb.device, dtype=torch.float32, requires_grad=True)
    return delta.detach().clone().requires_grad_(True)


# -- options -----------------------------------------------------------------------------------


class BallOptions(augreg.Regularizer.Options):
    """Where the perturbation lives: its norm ball, what one ball covers, how it starts."""

    # 0.1 (per sequence, L2) is measured, not taken from a paper: MiniLM's word embeddings
    # have norm ~1.0 per token (BERT-base ~1.4), and a per-sequence gradient step concentrates
    # on the few most important tokens, so epsilon = 1.0 can overwrite a sentiment word's
    # embedding. With 1.0, FGM and PGD kept SST-2-500 training at chance (loss 0.69 after 5
    # epochs); 0.1 and 0.3 trained normally. Scale it with the model's embedding norms.
    epsilon: float = Field(
        0.1,
        gt=0,
        le=100,
        description="Radius of the norm ball the perturbation stays in (input-embedding "
        "space: compare with the model's token-embedding norms, ~1 for BERT-like models).",
    )
    norm: Literal["l2", "linf"] = Field(
        "l2", description="Norm of the ball: l2, or linf (bound on every entry, sign steps)."
    )
    normalize: Literal["token", "sequence"] = Field(
        "sequence",
        description="L2 ball (and gradient normalization) per token or per sequence; "
        "linf is per entry either way.",
    )
    random_init: float = Field(
        0.0,
        ge=0,
        le=100,
        description="Magnitude of a random start (0: start at zero; true: epsilon).",
    )

    @model_validator(mode="before")
    @classmethod
    def _random_init_true_means_epsilon(cls, data: Any) -> Any:
        """``random_init = true`` starts anywhere in the ball (Madry et al.); false at zero."""
        if isinstance(data, dict) and isinstance(data.get("random_init"), bool):
            eps = data.get("epsilon", cls.model_fields["epsilon"].default)
            data = {**data, "random_init": eps if data["random_init"] else 0.0}
        return data


class AscentOptions(BallOptions):
    """A ball plus projected gradient ascent in it."""

    step_size: float = Field(
        0.04,
        gt=0,
        le=100,
        description="alpha: length of one ascent step (in the chosen norm); K steps should "
        "reach epsilon.",
    )
    steps: int = Field(3, ge=1, le=20, description="K: number of ascent steps.")


# -- the shared machinery ----------------------------------------------------------------------


class _EmbeddingAttack(augreg.Regularizer):
    """Shared steps of the methods: masks, random starts, gradient probes, cost."""

    options: BallOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The cost depends on the options (steps, random start): the class attribute states it
        # for the defaults, the instance for its own options (summed in the run's metrics).
        self.extra_passes = self.declared_passes()  # type: ignore[misc]

    def declared_passes(self) -> float:
        """Extra forward+backward passes per step for these options."""
        raise NotImplementedError

    def _zero_start(self) -> bool:
        return self.options.random_init == 0

    @staticmethod
    def _mask(ctx: StepContext) -> torch.Tensor:
        from augreg_adversarial.geometry import token_mask

        return token_mask(ctx.attention_mask)

    def _start(self, ctx: StepContext, mask: torch.Tensor) -> torch.Tensor | None:
        """The random start, or None for a zero start."""
        from augreg_adversarial.geometry import random_start

        o = self.options
        if o.random_init == 0:
            return None
        emb = ctx.embeddings
        return random_start(emb, mask, o.norm, o.normalize, o.random_init).to(emb.device)

    @staticmethod
    def _task_gradient(ctx: StepContext, delta: torch.Tensor | None) -> torch.Tensor:
        """The gradient of the task loss with respect to the perturbation at ``delta``.

        At zero it is the step's shared clean backward's (``ctx.clean_embedding_grad``, free)
        when the step took one, else a probe on the clean pass.
        """
        if delta is None and ctx.clean_embedding_grad is not None:
            return ctx.clean_embedding_grad
        return _EmbeddingAttack._probe(ctx, delta, ctx.task_loss, keep_graph=False)[1]

    @staticmethod
    def _probe(
        ctx: StepContext, delta: torch.Tensor | None, fn: LossFn, *, keep_graph: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``fn(outputs)`` at perturbation ``delta`` (None: zero) and its gradient wrt ``delta``.

        At zero, the clean pass is reused when its embedding output is in the graph (not with
        frozen embeddings): its graph is kept for the step's backward. ``keep_graph`` keeps the
        perturbed pass's graph, for a term that trains on this loss too (FreeLB).
        """

        if delta is None and ctx.embeddings.requires_grad:
            loss = fn(ctx.outputs)
            return loss, ctx.perturbation_grad(loss, ctx.embeddings, retain_graph=True)
        leaf = _leaf(ctx, delta)
        loss = fn(ctx.forward(perturbation=leaf))
        return loss, ctx.perturbation_grad(loss, leaf, retain_graph=keep_graph)

    def _ascend(
        self, delta: torch.Tensor | None, grad: torch.Tensor, mask: torch.Tensor, step: float
    ) -> torch.Tensor:
        from augreg_adversarial.geometry import ascend

        o = self.options
        return ascend(delta, grad, mask, o.norm, o.normalize, step, o.epsilon)


class _FromCleanGradient(_EmbeddingAttack):
    """FGM and PGD: from a zero start, the first gradient is the clean pass's.

    The step's shared clean backward gives it (``uses_clean_gradient``). With frozen input
    embeddings (``core.freeze``, LoRA) the clean pass's embedding output is outside the
    graph; a zero perturbation that requires grad is added to it (:meth:`clean_perturbation`),
    so the same backward still reaches it (a few element-wise operations).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.uses_clean_gradient = self._zero_start()  # type: ignore[misc]

    def clean_perturbation(self, ctx: StepContext, embeddings: torch.Tensor) -> torch.Tensor | None:
        """A zero leaf when the embeddings are frozen and the attack starts at zero, else None."""
        import torch

        if not self._zero_start() or embeddings.requires_grad:
            return None
        return torch.zeros(embeddings.shape, device=embeddings.device, requires_grad=True)


class FGM(_FromCleanGradient):
    """Fast gradient method: the task loss at one normalized gradient step in embedding space.

    ``delta = epsilon * g / ||g||`` (L2, per sequence by default; ``sign(g)`` for linf), with
    ``g`` the gradient of the task loss with respect to the input embeddings, then the term is
    the task loss on the perturbed pass. With ``random_init`` the gradient is taken at a random
    start and the step projected back to the ball.

    Paper: Miyato et al. 2017, Adversarial Training Methods for Semi-Supervised Text
    Classification.

    Cost: about 1 extra pass from a zero start (one perturbed forward and backward; the
    gradient comes from the step's shared clean backward), 1.33 when the combiner is not a
    plain sum, 1.67 with a random start.
    """

    name = "adversarial.fgm"
    paper = (
        "Miyato et al. 2017, Adversarial Training Methods for Semi-Supervised Text Classification"
    )
    extra_passes: ClassVar[float] = _cost(probes=1, reused=True, trained=1, clean_gradient=True)
    uses_clean_gradient = True  # from a zero start (the default; per instance otherwise)

    class Options(BallOptions):
        pass

    options: Options

    def declared_passes(self) -> float:
        zero = self._zero_start()
        return _cost(probes=1, reused=zero, trained=1, clean_gradient=zero)

    def attack(self, ctx: StepContext) -> torch.Tensor:
        """The adversarial perturbation (float32, detached, zero on padding)."""
        mask = self._mask(ctx)
        start = self._start(ctx, mask)
        grad = self._task_gradient(ctx, start)
        return self._ascend(start, grad, mask, self.options.epsilon)

    def loss(self, ctx: StepContext) -> torch.Tensor:
        return ctx.task_loss(ctx.forward(perturbation=self.attack(ctx)))


class PGD(_FromCleanGradient):
    """Projected gradient descent: the task loss after K projected ascent steps.

    From the start (zero, or random with ``random_init``), K times: take the gradient of the
    task loss with respect to the perturbation, step ``step_size`` along its normalized
    direction, project back onto the ``epsilon`` ball. The term is the task loss at the final
    perturbation.

    Paper: Madry et al. 2018, Towards Deep Learning Models Resistant to Adversarial Attacks.

    Cost: K gradient probes (forward and backward to the embeddings; from a zero start the
    first is free, from the step's shared clean backward) plus one perturbed forward and
    backward: about 2.33 extra passes for K = 3 from zero, 0.67 K + 1 from a random start.
    """

    name = "adversarial.pgd"
    paper = "Madry et al. 2018, Towards Deep Learning Models Resistant to Adversarial Attacks"
    extra_passes: ClassVar[float] = _cost(probes=3, reused=True, trained=1, clean_gradient=True)
    uses_clean_gradient = True  # from a zero start (the default; per instance otherwise)

    class Options(AscentOptions):
        pass

    options: Options

    def declared_passes(self) -> float:
        o = self.options
        zero = self._zero_start()
        return _cost(probes=o.steps, reused=zero, trained=1, clean_gradient=zero)

    def attack(self, ctx: StepContext) -> torch.Tensor:
        """The final perturbation (float32, detached, inside the ball, zero on padding)."""
        mask = self._mask(ctx)
        delta = self._start(ctx, mask)
        for _ in range(self.options.steps):
            grad = self._task_gradient(ctx, delta)
            delta = self._ascend(delta, grad, mask, self.options.step_size)
        assert delta is not None
        return delta

    def loss(self, ctx: StepContext) -> torch.Tensor:
        return ctx.task_loss(ctx.forward(perturbation=self.attack(ctx)))


class FreeLB(_EmbeddingAttack):
    """FreeLB: the task loss averaged over K ascent steps, each trained on ("free" steps).

    From a random start ``delta_0`` of magnitude ``random_init``, K passes at perturbations
    ``delta_0 .. delta_{K-1}``; the weights train on the mean of the K task losses, and each
    pass's gradient moves the perturbation one projected step of ``step_size``.

    As in the paper, there is no clean pass: the step's own training pass is the first one.
    :meth:`clean_perturbation` adds ``delta_0`` to it (every objective and regularizer of the
    step sees that pass), and the term corrects the weights so that, with the task objective
    and this regularizer at weight 1, the step's gradient is the paper's
    ``(1/K) sum_t grad L(x + delta_t)``: the term is ``(sum_{t>=1} L_t - (K - 1) L_0) / K``
    in gradient, the mean of the K losses in value. The gradients are "free" as in the
    paper too: each middle pass runs one backward that gives both the perturbation's gradient
    (for the ascent) and the weights' gradients, which are kept and added through a linear
    surrogate (``sum(w * g)``, whose gradient is ``g``), so the Trainer's backward, gradient
    accumulation and combiner see the whole term as usual. With ``clean_pass = true``, or
    called outside a training step (no ``clean_perturbation`` on this context), the step
    keeps its clean pass and the term runs all K passes on top, its value and gradient the
    mean of the K losses.

    Paper: Zhu et al. 2020, FreeLB: Enhanced Adversarial Training for Natural Language
    Understanding.

    Cost: K - 1 perturbed forwards and backwards plus one backward to the embeddings from the
    training pass: about K - 0.67 extra passes, so a step is about 1.1 K passes (K extra
    with ``clean_pass``). Memory: one copy of the trainable weights' gradients and one more
    pass's activations.
    """

    name = "adversarial.freelb"
    paper = (
        "Zhu et al. 2020, FreeLB: Enhanced Adversarial Training for Natural Language Understanding"
    )
    extra_passes: ClassVar[float] = _cost(probes=1, reused=True, trained=2)

    class Options(AscentOptions):
        # FreeLB keeps the paper's values (adv-lr 0.1, adv-init-mag 0.6, a loose ball): its
        # start is spread over all real entries (norm ~0.35 per sequence), and it was measured
        # to train normally on SST-2-500 with MiniLM.
        epsilon: float = Field(
            1.0, gt=0, le=100, description="Radius of the norm ball the perturbation stays in."
        )
        step_size: float = Field(
            0.1, gt=0, le=100, description="alpha: length of one ascent step (adv-lr)."
        )
        random_init: float = Field(
            0.6,
            ge=0,
            le=100,
            description="Magnitude of the random start (adv-init-mag; 0: start at zero; "
            "true: epsilon).",
        )
        clean_pass: bool = Field(
            False,
            description="false: the paper's FreeLB, the step's pass is the first of the K "
            "(no clean pass); true: keep the step's clean pass and its cross-entropy, and "
            "add the mean of the K perturbed losses on top (one more pass).",
        )

    options: Options
    _pending: tuple[StepContext, torch.Tensor, torch.Tensor] | None = None

    def declared_passes(self) -> float:
        k = self.options.steps
        if self.options.clean_pass and self.options.random_init > 0:
            return _cost(probes=0, reused=False, trained=k)
        return _cost(probes=1, reused=True, trained=k - 1)

    def clean_perturbation(self, ctx: StepContext, embeddings: torch.Tensor) -> torch.Tensor | None:
        """``delta_0`` (the random start, or zeros), a leaf whose gradient starts the ascent;
        None with ``clean_pass = true``."""
        import torch

        if self.options.clean_pass:
            return None

        from augreg_adversarial.geometry import random_start, token_mask

        o = self.options
        mask = token_mask(ctx.attention_mask)
        if o.random_init == 0:
            start = torch.zeros(embeddings.shape, device=embeddings.device, dtype=torch.float32)
        else:
            start = random_start(embeddings, mask, o.norm, o.normalize, o.random_init)
        leaf = start.to(embeddings.device).requires_grad_(True)
        self._pending = (ctx, leaf, mask)
        return leaf

    def loss(self, ctx: StepContext) -> torch.Tensor:
        import torch

        from augreg.step import gradient_surrogate

        steps = self.options.steps
        pending, self._pending = self._pending, None
        weights = [p for p in ctx.model.parameters() if p.requires_grad]
        kept: list[torch.Tensor | None] = [None] * len(weights)
        in_graph: list[torch.Tensor] = []  # losses whose graph the step's backward runs
        values: list[torch.Tensor] = []
        first = 0
        if pending is not None and pending[0] is ctx:
            # the training pass is the first one, at delta_0
            _, delta0, mask = pending
            clean = ctx.task_loss(ctx.outputs)
            values.append(clean.detach())
            if steps == 1:
                return clean.detach() + 0 * clean  # nothing to add: the step trained on L_0
            grad = ctx.perturbation_grad(clean, delta0, retain_graph=True)
            delta: torch.Tensor | None = self._ascend(
                delta0.detach(), grad, mask, self.options.step_size
            )
            in_graph.append(-(steps - 1) * clean)
            first = 1
        else:
            mask = self._mask(ctx)
            delta = self._start(ctx, mask)
        for k in range(first, steps):
            if k == steps - 1:  # the last pass trains through the step's backward
                start = delta if delta is not None else ctx.zeros_like_embeddings()
                last = ctx.task_loss(ctx.forward(perturbation=start))
                in_graph.append(last)
                values.append(last.detach())
                break
            if delta is None and ctx.embeddings.requires_grad:
                # zero start outside a step: the clean pass is the first, its graph kept for
                # the step's backward; only the embeddings' gradient is taken here
                loss, grad = self._probe(ctx, None, ctx.task_loss, keep_graph=True)
                in_graph.append(loss)
                values.append(loss.detach())
            else:
                leaf = _leaf(ctx, delta)
                loss = ctx.task_loss(ctx.forward(perturbation=leaf))
                # one backward for the ascent and the weights: FreeLB's "free" gradients
                grad, *weight_grads = torch.autograd.grad(loss, [leaf, *weights], allow_unused=True)
                for i, g in enumerate(weight_grads):
                    before = kept[i]
                    if g is not None:
                        kept[i] = g if before is None else before + g
                values.append(loss.detach())
            delta = self._ascend(delta, grad, mask, self.options.step_size)
        term = torch.stack(in_graph).sum() + gradient_surrogate(weights, kept)
        term = term / steps
        # gradient: the term's; value: the mean of the K task losses
        return term - term.detach() + torch.stack(values).mean()


class SMART(_EmbeddingAttack):
    """SMART: smoothness-inducing adversarial regularizer plus a Bregman proximal point term.

    Adversarial part (``weight``): symmetric KL between the clean predictions and the
    predictions at a perturbation found by ``steps`` projected ascent steps on that KL, from a
    small random start (``random_init``). Proximal part (``proximal_weight``): symmetric KL
    between the clean predictions and those of a momentum teacher, an EMA copy of the model
    (``beta``) built at the first step and kept in ``ctx.state[name]``; it runs without
    dropout and without gradient, and moves toward the model after each call:
    ``teacher = beta * teacher + (1 - beta) * model``. Under gradient accumulation it moves once
    per micro-batch. The step multiplies the term by ``weight``, so the term returned is
    ``adversarial + (proximal_weight / weight) * proximal``.

    Paper: Jiang et al. 2020, SMART: Robust and Efficient Fine-Tuning for Pre-trained Natural
    Language Models through Principled Regularized Optimization.

    Cost: per ascent step one forward and backward to the embeddings, plus one perturbed
    forward and backward, plus one teacher forward without gradient: about 2.0 extra passes
    for 1 step. Memory: a second copy of the model (the teacher).
    """

    name = "adversarial.smart"
    paper = (
        "Jiang et al. 2020, SMART: Robust and Efficient Fine-Tuning for Pre-trained Natural "
        "Language Models through Principled Regularized Optimization"
    )
    extra_passes: ClassVar[float] = _cost(probes=1, reused=False, trained=1, forwards=1)

    class Options(AscentOptions):
        weight: float = Field(
            1.0,
            ge=0,
            le=1e4,
            description="lambda_s: weight of the adversarial KL (0 turns SMART off entirely).",
        )
        epsilon: float = Field(
            1e-3, gt=0, le=100, description="Radius of the ball the perturbation stays in."
        )
        norm: Literal["l2", "linf"] = Field(
            "linf", description="Norm of the ball: linf (the paper's) or l2."
        )
        step_size: float = Field(
            1e-3, gt=0, le=100, description="eta: length of one ascent step on the KL."
        )
        steps: int = Field(1, ge=1, le=20, description="T_x: number of ascent steps on the KL.")
        random_init: float = Field(
            1e-5,
            gt=0,
            le=100,
            description="Magnitude of the random start (> 0: the KL's gradient at zero is zero;"
            " true: epsilon).",
        )
        proximal_weight: float = Field(
            1.0, ge=0, le=1e4, description="mu: weight of the proximal KL to the EMA teacher."
        )
        beta: float = Field(
            0.99, ge=0, lt=1, description="Momentum of the EMA teacher (0: the previous model)."
        )

        @model_validator(mode="after")
        def _weight_zero_turns_everything_off(self) -> SMART.Options:
            if self.weight == 0 and self.proximal_weight > 0:
                raise ValueError(
                    "weight = 0 turns adversarial.smart off entirely (the step skips terms of "
                    "weight 0), proximal term included; set weight > 0, or remove the component"
                )
            return self

    options: Options

    def declared_passes(self) -> float:
        teacher = 1 if self.options.proximal_weight > 0 else 0
        return _cost(probes=self.options.steps, reused=False, trained=1, forwards=teacher)

    @staticmethod
    def _labelled(ctx: StepContext, logits: torch.Tensor) -> torch.Tensor | None:
        """Positions whose prediction is compared: labelled tokens, or None (sequences)."""
        if logits.dim() == 3:
            return ctx.labels.reshape(-1) != -100
        return None

    def teacher(self, ctx: StepContext) -> nn.Module:
        """The EMA teacher of this run, built from the model at the first call."""
        import copy

        from augreg.context import unwrap_model

        teacher: nn.Module | None = ctx.state.get(self.name)
        if teacher is None:
            teacher = copy.deepcopy(unwrap_model(ctx.model))
            for p in teacher.parameters():
                p.requires_grad_(False)
                p.grad = None
            teacher.eval()
            ctx.state[self.name] = teacher
        return teacher

    def update_teacher(self, ctx: StepContext) -> None:
        """Move the teacher toward the model: ``t = beta * t + (1 - beta) * model``."""
        import torch

        from augreg.context import unwrap_model

        teacher = self.teacher(ctx)
        student = unwrap_model(ctx.model)
        with torch.no_grad():
            params = dict(student.named_parameters())
            for name, t in teacher.named_parameters():
                s = params.get(name)
                if s is not None:
                    t.lerp_(s.detach().to(t.dtype), 1.0 - self.options.beta)
            buffers = dict(student.named_buffers())
            for name, b in teacher.named_buffers():
                sb = buffers.get(name)
                if sb is not None and sb.shape == b.shape:
                    b.copy_(sb)

    def attack(self, ctx: StepContext) -> torch.Tensor:
        """The perturbation that most changes the predictions (float32, detached)."""
        from augreg.builtins.regularizers import symmetric_kl

        mask = self._mask(ctx)
        clean = ctx.logits.detach()
        labelled = self._labelled(ctx, clean)

        def divergence(outputs: Any) -> torch.Tensor:
            return symmetric_kl(outputs.logits, clean, labelled)

        delta = self._start(ctx, mask)
        for _ in range(self.options.steps):
            _, grad = self._probe(ctx, delta, divergence, keep_graph=False)
            delta = self._ascend(delta, grad, mask, self.options.step_size)
        assert delta is not None
        return delta

    def loss(self, ctx: StepContext) -> torch.Tensor:
        import torch

        from augreg.builtins.regularizers import symmetric_kl

        o = self.options
        labelled = self._labelled(ctx, ctx.logits)
        perturbed = ctx.forward(perturbation=self.attack(ctx)).logits
        term = symmetric_kl(perturbed, ctx.logits, labelled)
        if o.proximal_weight > 0:
            teacher = self.teacher(ctx)
            with torch.no_grad():
                reference = ctx.forward(model=teacher, dropout=False).logits
            proximal = symmetric_kl(ctx.logits, reference, labelled)
            ratio = o.proximal_weight / o.weight if o.weight > 0 else o.proximal_weight
            term = term + ratio * proximal
            self.update_teacher(ctx)
        return term
