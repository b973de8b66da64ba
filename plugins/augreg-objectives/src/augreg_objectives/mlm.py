"""Auxiliary masked-language-model loss on the training text.

Why by hand: ``transformers.DataCollatorForLanguageModeling`` masks in the data loader, where
the classification labels live in the same batch; here the masked copy is made inside the
step from the batch the classifier sees, with its own seeded generator (no global random
state), and the classifier's inputs stay unmasked. And the masked-LM heads of ``transformers``
(``BertForMaskedLM`` and the rest) project every position of the batch onto the whole
vocabulary, though only the ~15% chosen positions carry a label: here the encoder's output is
cut down to the chosen positions before the head runs (:class:`_ChosenOnly`), so the head's
transform, the vocabulary projection and the cross-entropy see those positions only. The loss
is the same number (the head works position by position, and the cross-entropy of
``transformers`` averages over the labelled positions only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

import augreg
from augreg.errors import AugregError
from augreg.options import lr_scale_field

if TYPE_CHECKING:
    import torch
    from torch import nn

    from augreg.context import StepContext

AUX_KEY = "objectives_mlm"


def _transformers_model(model: nn.Module) -> Any:
    from augreg.context import unwrap_model

    inner: Any = unwrap_model(model)
    base = getattr(inner, "get_base_model", None)  # peft
    return base() if callable(base) else inner


class _Shared:
    """Re-supplies, before each forward, tensors a module reads but must not own.

    The masked-LM decoder reads the student's input-embedding matrix (tied, as in
    pre-training) and, in BERT, a bias owned by its parent: as views set before the forward,
    they train the student's own parameters and are saved once.
    """

    def __init__(self, sources: dict[str, Any]) -> None:
        self.sources = sources  # attribute -> zero-argument callable giving the Parameter

    def __call__(self, module: Any, _args: Any) -> None:
        for attr, source in self.sources.items():
            param = source()
            object.__setattr__(module, attr, param.view_as(param))


class _ChosenOnly:
    """Forward hook on the shared encoder: keep the hidden states of the chosen positions only.

    Set for the masked-LM forward alone: the head then sees ``(1, n_chosen, hidden)`` instead
    of ``(batch, length, hidden)`` and the loss the labels of those positions. Reusing the
    model's own forward (rather than calling its head by name) keeps every architecture's head
    and loss as ``transformers`` wrote them.
    """

    def __init__(self, chosen: torch.Tensor) -> None:
        self.chosen = chosen  # (batch, length) bool

    def __call__(self, _module: Any, _args: Any, output: Any) -> Any:
        hidden = output[0][self.chosen].unsqueeze(0)
        if isinstance(output, tuple):
            return (hidden, *output[1:])
        output.last_hidden_state = hidden
        return output


class MaskedLM(augreg.Objective):
    """Auxiliary masked-LM loss: dynamic masking, 15% of tokens with the 80/10/10 rule.

    Each training step masks a fresh ``probability`` share of the real (non-special,
    non-padding) tokens of the batch: 80% become the mask token, 10% a random token, 10% stay;
    the masked copy goes through the shared encoder and a masked-LM head, and the loss is the
    cross-entropy on the chosen tokens only. The task's own inputs stay unmasked.

    The head: with ``head = "auto"`` the checkpoint's masked-LM head when it has one (BERT,
    RoBERTa checkpoints), else a new one; ``"new"`` always starts fresh. Its decoder is tied to
    the student's input embeddings. The head is attached under ``augreg_aux`` before the
    optimizer is built, so it is trained and saved with the model (and ignored when the
    classifier is loaded for inference). In evaluation it returns 0 (no extra pass). A new
    head's own weights train at ``lr_scale`` times the pipeline's rate (20 by default, about
    1e-3 at 5e-5; :func:`augreg.step.set_lr_scale`), the checkpoint's head at the rate itself.

    Cost: one extra forward and backward pass of the encoder per training step; the head and
    its vocabulary projection run on the chosen tokens only (~15% of the positions).

    Raises (on first use): :class:`augreg.AugregError` when the tokenizer has no mask token or
    the architecture has no masked-LM head in ``transformers``.
    """

    name = "objectives.mlm"
    paper = (
        "Devlin et al. 2019 (BERT) masking; as an auxiliary fine-tuning loss e.g. "
        "Chronopoulou et al. 2019, An Embarrassingly Simple Approach for Transfer Learning"
    )
    applies_to_perturbed: ClassVar[bool] = False
    extra_passes: ClassVar[float] = 1.0

    class Options(augreg.Objective.Options):
        weight: float = Field(0.1, ge=0, le=1e4, description="Weight in the summed loss.")
        probability: float = Field(
            0.15, gt=0, lt=1, description="Share of real tokens chosen for prediction."
        )
        mask_fraction: float = Field(
            0.8, ge=0, le=1, description="Of the chosen tokens, the share replaced by [MASK]."
        )
        random_fraction: float = Field(
            0.1, ge=0, le=1, description="Of the chosen tokens, the share replaced at random."
        )
        head: Literal["auto", "new"] = Field(
            "auto", description="auto: the checkpoint's MLM head when it has one; new: fresh."
        )
        lr_scale: float = lr_scale_field(
            "a new head's own weights (the checkpoint's head trains at the pipeline's rate)"
        )

        @model_validator(mode="after")
        def _fractions(self) -> MaskedLM.Options:
            if self.mask_fraction + self.random_fraction > 1:
                raise ValueError(
                    "mask_fraction + random_fraction must be <= 1 (the rest stays unchanged), "
                    f"got {self.mask_fraction} + {self.random_fraction}"
                )
            return self

    options: Options

    def __init__(self, options: Any = None, /, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self._tokenizer: Any = None
        self._seed = 0
        self._mlm: Any = None
        self._model_id: int | None = None
        self.head_source = ""
        """``checkpoint`` or ``new`` once the head is built."""

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_mlm": None, "_model_id": None}

    def setup(self, ctx: augreg.SetupContext) -> None:
        self._tokenizer = ctx.tokenizer
        self._seed = ctx.seed

    # -- the head --------------------------------------------------------------------------

    def _check_tokenizer(self, tokenizer: Any) -> None:
        if tokenizer is None or getattr(tokenizer, "mask_token_id", None) is None:
            kind = "no tokenizer" if tokenizer is None else type(tokenizer).__name__
            raise AugregError(
                f"augreg: objectives.mlm needs a vocabulary with a mask token, and {kind} has "
                "none. Use a masked-LM model (BERT, RoBERTa, MiniLM, DeBERTa ...) or remove "
                "objectives.mlm from objectives."
            )

    def prepare_model(self, model: nn.Module, tokenizer: Any = None) -> nn.Module:
        """Build the masked-LM head over the student's encoder and attach it (idempotent)."""
        tokenizer = tokenizer if tokenizer is not None else self._tokenizer
        self._tokenizer = tokenizer
        self._check_tokenizer(tokenizer)
        inner = _transformers_model(model)
        aux = augreg.aux_modules(model)
        if self._mlm is not None and self._model_id == id(inner) and AUX_KEY in aux:
            return model
        self._mlm = self._build(inner)
        self._model_id = id(inner)
        prefix = self._mlm.base_model_prefix
        head = {n: m for n, m in self._mlm.named_children() if n != prefix}
        from torch import nn

        device = next(inner.parameters()).device
        heads = nn.ModuleDict(head).to(device)
        if self.head_source == "new":
            # The head's own weights (transform, bias) start from scratch; the decoder's tied
            # weight is the student's input embedding, which is not among them.
            from augreg.step import set_lr_scale

            set_lr_scale(heads, self.options.lr_scale)
        aux[AUX_KEY] = heads
        return model

    def _build(self, inner: Any) -> Any:
        import transformers

        config = inner.config
        mlm: Any = None
        source = str(getattr(config, "_name_or_path", "") or "")
        try:
            if self.options.head == "auto" and source:
                try:
                    mlm, info = transformers.AutoModelForMaskedLM.from_pretrained(
                        source, output_loading_info=True
                    )
                    missing = [
                        k for k in info["missing_keys"] if not k.startswith(mlm.base_model_prefix)
                    ]
                    self.head_source = "new" if missing else "checkpoint"
                except OSError:
                    mlm = None
            if mlm is None:
                # transformers leaves from_config unannotated
                mlm = transformers.AutoModelForMaskedLM.from_config(config)  # type: ignore[no-untyped-call]
                self.head_source = "new"
        except (ValueError, KeyError) as exc:
            raise AugregError(
                f"augreg: objectives.mlm: {type(inner).__name__} ({config.model_type}) has no "
                f"masked-LM head in transformers ({exc}). Use an encoder with a masked-LM "
                "vocabulary (BERT, RoBERTa, MiniLM, DeBERTa ...) or remove objectives.mlm."
            ) from None
        prefix = mlm.base_model_prefix
        encoder = getattr(inner, inner.base_model_prefix, None)
        if encoder is None or not hasattr(mlm, prefix):
            raise AugregError(
                f"augreg: objectives.mlm cannot find the shared encoder of "
                f"{type(inner).__name__}; use a transformers encoder with a masked-LM head."
            )
        if len(self._tokenizer) > int(config.vocab_size):
            raise AugregError(
                f"augreg: objectives.mlm: the tokenizer has {len(self._tokenizer)} tokens and "
                f"the model's vocabulary {config.vocab_size}; resize the embeddings first."
            )
        decoder = mlm.get_output_embeddings()
        embedding = inner.get_input_embeddings()
        # The encoder is the student's: the masked copy trains the same weights.
        setattr(mlm, prefix, encoder)
        sources: dict[str, Any] = {}
        if decoder is not None and getattr(config, "tie_word_embeddings", True):
            del decoder.weight
            sources["weight"] = lambda: embedding.weight
        # A parameter registered twice in the head (BERT's decoder bias) is kept once.
        seen: dict[int, tuple[Any, str]] = {}
        for module in mlm.modules():
            if module is encoder:
                continue
            for attr, param in list(module._parameters.items()):
                if param is None:
                    continue
                if id(param) in seen and module is decoder:
                    del module._parameters[attr]
                    sources[attr] = lambda p=param: p
                seen.setdefault(id(param), (module, attr))
        if decoder is not None and sources:
            decoder.register_forward_pre_hook(_Shared(sources))
        return mlm

    # -- the loss --------------------------------------------------------------------------

    def _mask(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        ids = ctx.inputs["input_ids"]
        tok = self._tokenizer
        gen = torch.Generator().manual_seed(augreg.derive_seed(self._seed, self.name, ctx.step))
        special = torch.zeros_like(ids, dtype=torch.bool)
        for sid in tok.all_special_ids:
            special |= ids == sid
        eligible = (~special & ctx.attention_mask.bool()).cpu()
        shape = ids.shape
        chosen = (torch.rand(shape, generator=gen) < self.options.probability) & eligible
        if not bool(chosen.any()) and bool(eligible.any()):
            first = eligible.flatten().nonzero()[0]
            chosen.view(-1)[first] = True
        draw = torch.rand(shape, generator=gen)
        to_mask = chosen & (draw < self.options.mask_fraction)
        limit = self.options.mask_fraction + self.options.random_fraction
        to_random = chosen & (draw >= self.options.mask_fraction) & (draw < limit)
        random_ids = torch.randint(len(tok), shape, generator=gen)
        masked = ids.cpu().clone()
        masked[to_mask] = tok.mask_token_id
        masked[to_random] = random_ids[to_random]
        labels = torch.where(chosen, ids.cpu(), torch.full_like(masked, -100))
        return masked.to(ids.device), labels.to(ids.device)

    def loss(self, ctx: StepContext, outputs: Any = None) -> torch.Tensor:
        import torch

        if not ctx.model.training:
            return torch.zeros((), device=ctx.labels.device)
        if self._mlm is None or self._model_id != id(_transformers_model(ctx.model)):
            # built here only outside a pipeline (the kit, a custom loop that skipped
            # prepare_model): a head made after the optimizer is not trained by it
            self.prepare_model(ctx.model, self._tokenizer)
        masked, labels = self._mask(ctx)
        if not bool((labels != -100).any()):  # only special tokens and padding: nothing to do
            return torch.zeros((), device=ctx.labels.device)
        return self._loss(ctx, masked, labels)

    def _loss(
        self, ctx: StepContext, masked: torch.Tensor, labels: torch.Tensor, *, sparse: bool = True
    ) -> torch.Tensor:
        """The masked-LM loss of ``masked``; ``sparse=False``: the head on every position."""
        inputs = {"input_ids": masked}
        for key in ("attention_mask", "token_type_ids"):
            if key in ctx.inputs:
                inputs[key] = ctx.inputs[key]
        if not sparse:
            return self._mlm(**inputs, labels=labels).loss.float()  # type: ignore[no-any-return]
        # By hand: transformers' masked-LM heads score every position against the whole
        # vocabulary; only the chosen (~15%) carry a label, so the head sees those alone.
        chosen = labels != -100
        encoder = getattr(self._mlm, self._mlm.base_model_prefix)
        handle = encoder.register_forward_hook(_ChosenOnly(chosen))
        try:
            out = self._mlm(**inputs, labels=labels[chosen].unsqueeze(0))
        finally:
            handle.remove()
        return out.loss.float()  # type: ignore[no-any-return]
