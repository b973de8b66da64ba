"""Built-in regularizers: L2-SP, R-Drop and embedding noise (NEFTune, or a noisy second pass)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from augreg.components import Regularizer

if TYPE_CHECKING:
    import torch

    from augreg.context import StepContext


def _valid_positions(ctx: StepContext, logits: torch.Tensor) -> torch.Tensor | None:
    """Mask of positions that carry a label for token classification, else None."""
    if logits.dim() == 3:
        labels = ctx.labels
        return labels.reshape(-1) != -100
    return None


def symmetric_kl(
    p_logits: torch.Tensor, q_logits: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean symmetric KL divergence between two categorical predictions (per row)."""
    import torch.nn.functional as F

    p = p_logits.reshape(-1, p_logits.size(-1)).float()
    q = q_logits.reshape(-1, q_logits.size(-1)).float()
    if mask is not None:
        p, q = p[mask], q[mask]
    if p.numel() == 0:
        return p_logits.sum() * 0.0
    lp, lq = F.log_softmax(p, dim=-1), F.log_softmax(q, dim=-1)
    kl_pq = F.kl_div(lq, lp, log_target=True, reduction="batchmean")
    kl_qp = F.kl_div(lp, lq, log_target=True, reduction="batchmean")
    return 0.5 * (kl_pq + kl_qp)


class RDrop(Regularizer):
    """R-Drop: symmetric KL between two dropout views of each example (Liang et al. 2021).

    The two views come from one concatenated forward of the batch repeated twice, so the
    objectives are averaged over both views, as in the paper. Needs dropout in the model.
    Cost: the clean pass runs on a doubled batch (about one extra forward and backward).
    """

    name = "core.rdrop"
    paper = "Liang et al. 2021, R-Drop: Regularized Dropout for Neural Networks"
    forward_copies = 2
    extra_passes = 1.0

    class Options(Regularizer.Options):
        weight: float = Field(1.0, ge=0, le=1e4, description="alpha: weight of the KL term.")

    def loss(self, ctx: StepContext) -> torch.Tensor:
        first, second = ctx.split(ctx.logits)
        half = ctx.labels.chunk(2, dim=0)[0]
        mask = half.reshape(-1) != -100 if first.dim() == 3 else None
        return symmetric_kl(first, second, mask)


class EmbeddingNoise(Regularizer):
    """Random noise on the input embeddings, in the training pass or in a second pass.

    ``where="training_pass"`` (default) adds the noise to the training forward itself, as
    NEFTune does (Jain et al. 2023): no extra pass, no extra term; the objectives see the
    noisy pass, evaluation never does. ``where="extra_pass"`` keeps the clean pass and adds
    the task loss of a second, noisy pass as a term (the noise baseline of FreeLB, Zhu et al.
    2020).

    Noise (drawn with ``torch``, seeded by the trainer, never on padding):
    ``scale="absolute"``: Gaussian with std ``std``; ``"relative"``: Gaussian with std ``std``
    times each token embedding's RMS, so ``std`` means the same for any model width;
    ``"neftune"``: uniform in ``[-1, 1]`` times ``std / sqrt(L * d)`` (NEFTune's alpha, with
    ``L`` the example's real length and ``d`` the hidden size; the paper uses alpha 5 to 15).

    Cost: none in the training pass; one extra forward and backward with ``extra_pass``.
    """

    name = "core.embedding_noise"
    paper = (
        "Jain et al. 2023, NEFTune: Noisy Embeddings Improve Instruction Finetuning; "
        "Zhu et al. 2020, FreeLB (noise baseline)"
    )
    extra_passes = 0.0

    class Options(Regularizer.Options):
        std: float = Field(0.01, gt=0, le=100, description="Noise std (alpha for scale = neftune).")
        scale: Literal["absolute", "relative", "neftune"] = Field(
            "absolute",
            description="absolute std, std relative to each token's embedding RMS, or "
            "NEFTune's uniform noise of norm alpha / sqrt(length * hidden).",
        )
        where: Literal["training_pass", "extra_pass"] = Field(
            "training_pass",
            description="Noise the training pass itself (no extra cost), or add the loss of "
            "a second, noisy pass (weight applies to that term only).",
        )

    options: Options

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.extra_passes = 1.0 if self.options.where == "extra_pass" else 0.0  # type: ignore[misc]

    def has_term(self) -> bool:
        return self.options.where == "extra_pass"

    def noise(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Noise shaped like ``embeddings`` (padding not yet zeroed; the step does that)."""
        import torch

        emb = embeddings.detach()
        o = self.options
        if o.scale == "neftune":
            lengths = attention_mask.sum(dim=1).clamp_min(1).to(torch.float32)
            bound = o.std / torch.sqrt(lengths * emb.size(-1))
            uniform = torch.rand(emb.shape, device=emb.device, dtype=torch.float32) * 2 - 1
            return (uniform * bound.view(-1, 1, 1)).to(emb.dtype)
        noise = torch.randn_like(emb) * o.std
        if o.scale == "relative":
            noise = noise * emb.pow(2).mean(dim=-1, keepdim=True).sqrt()
        return noise

    def clean_perturbation(self, ctx: StepContext, embeddings: torch.Tensor) -> torch.Tensor | None:
        if self.options.where != "training_pass":
            return None
        return self.noise(embeddings, ctx.attention_mask)

    def loss(self, ctx: StepContext) -> torch.Tensor:
        if self.options.where != "extra_pass":
            raise RuntimeError(
                "core.embedding_noise with where = 'training_pass' has no term: it noises the "
                "training pass (the step calls clean_perturbation); use where = 'extra_pass' "
                "for a second, noisy pass"
            )
        noise = self.noise(ctx.embeddings, ctx.attention_mask)
        return ctx.task_loss(ctx.forward(perturbation=noise))


class L2SP(Regularizer):
    """L2-SP: squared distance of the weights to their starting point (Li et al. 2018).

    The anchor is taken at the first training step: the pretrained weights after adapters,
    before any update. Only the base model is anchored (a new task head has no pretrained
    value); ``head_weight`` adds a plain L2 penalty on the rest (the paper's beta).
    Cost: one pass over the trainable parameters per step, no extra forward.
    """

    name = "core.l2sp"
    paper = "Li et al. 2018, Explicit Inductive Bias for Transfer Learning with CNNs"
    conflicts_with: ClassVar[frozenset[str]] = frozenset()

    class Options(Regularizer.Options):
        weight: float = Field(
            0.01, ge=0, le=1e4, description="alpha: weight of the distance to the start."
        )
        head_weight: float = Field(
            0.0, ge=0, le=1e4, description="beta/alpha: L2 on parameters not in the base model."
        )

    options: Options

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._anchor: dict[str, torch.Tensor] | None = None
        self._base_names: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_anchor"] = None  # an anchor belongs to one model, never pickled along
        return state

    def _take_anchor(self, model: Any) -> None:
        from augreg.context import unwrap_model

        prefix = getattr(unwrap_model(model), "base_model_prefix", "")
        base = getattr(unwrap_model(model), prefix, None) if prefix else None
        base_ids = {id(p) for p in base.parameters()} if base is not None else None
        self._anchor = {}
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if base_ids is None or id(p) in base_ids:
                self._anchor[name] = p.detach().clone()
                self._base_names.add(name)

    def loss(self, ctx: StepContext) -> torch.Tensor:
        import torch

        model = ctx.model
        if self._anchor is None:
            self._take_anchor(model)
        assert self._anchor is not None
        total = torch.zeros((), device=ctx.logits.device)
        head = torch.zeros((), device=ctx.logits.device)
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            ref = self._anchor.get(name)
            if ref is not None:
                total = total + (p - ref).pow(2).sum()
            elif self.options.head_weight:
                head = head + p.pow(2).sum()
        term: torch.Tensor = 0.5 * total + 0.5 * self.options.head_weight * head
        return term
