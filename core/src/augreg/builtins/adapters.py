"""Built-in adapters: freeze the embeddings and/or the first k encoder layers; discriminative
(layer-wise) learning rates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from augreg.components import Adapter

if TYPE_CHECKING:
    from torch import nn

_LAYER_LIST_NAMES = ("layer", "layers", "h", "block", "blocks")


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a model, in order (the longest ModuleList of blocks).

    Works for BERT-like (``encoder.layer``), GPT-like (``h``/``layers``) and T5-like
    (``block``) models, with or without a peft wrapper.
    """
    from torch import nn

    best: list[nn.Module] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] in _LAYER_LIST_NAMES:
            if len(module) > len(best):
                best = list(module)
    return best


def embedding_block(model: nn.Module) -> nn.Module:
    """The model's whole embedding block (word, position, type embeddings and their layer
    norm), or the input embedding matrix alone when no module named ``*embeddings`` holds it."""
    emb: nn.Module = model.get_input_embeddings()  # type: ignore[operator]
    for name, module in model.named_modules():
        if name.endswith("embeddings") and emb in list(module.modules()):
            return module  # type: ignore[no-any-return]
    return emb


class Freeze(Adapter):
    """Freeze the input embeddings and/or the first ``layers`` transformer blocks.

    A cheap way to limit how far fine-tuning moves pretrained features. Freezing is a state,
    so applying it twice is a no-op. Cost: fewer trainable parameters, no extra pass.
    """

    name = "core.freeze"
    paper = "Howard & Ruder 2018 (gradual unfreezing); Lee et al. 2019 (what to freeze)"

    class Options(Adapter.Options):
        embeddings: bool = Field(True, description="Freeze the whole embedding block.")
        layers: int = Field(0, ge=0, le=1000, description="Freeze the first k encoder layers.")

    options: Options

    def prepare_model(self, model: nn.Module) -> nn.Module:
        opts = self.options
        blocks = encoder_layers(model)
        if opts.layers > len(blocks):
            from augreg.errors import OptionsError

            raise OptionsError(
                self.name,
                [f"layers must be <= {len(blocks)} (the model's layer count), got {opts.layers}"],
            )
        if opts.embeddings:
            for p in embedding_block(model).parameters():
                p.requires_grad_(False)
        for block in blocks[: opts.layers]:
            for p in block.parameters():
                p.requires_grad_(False)
        return model


# Set on a parameter the first time LayerwiseLR scales it: the scale it had before (another
# component's lr_scale, or 1.0), so that applying the adapter again recomputes, never compounds.
_SCALE_BEFORE = "augreg_lr_scale_before_layerwise"


class LayerwiseLR(Adapter):
    """Discriminative learning rates: lower layers train slower, the new task head faster.

    The top encoder layer trains at the pipeline's learning rate, each layer below it at
    ``decay`` times the rate of the layer above, and the embeddings one step below the first
    layer. Parameters of the backbone outside the blocks (BERT's pooler, a final layer norm)
    train at the top rate. The task head, the weights that do not come from the pretrained
    backbone (``classifier``), trains at ``head_scale`` times the rate. Modules other components
    attach (``augreg.step.aux_modules``) keep their own scale.

    Lower layers hold the more general features, so they should move least on a small data set
    (Howard & Ruder 2018; Sun et al. 2019 use decay 0.95; Zhang et al. 2021). A fresh head at a
    fine-tuning rate of 5e-5 learns slowly, and its random gradients distort the features it
    reads (the argument of Kumar et al. 2022 for LP-FT); a larger ``head_scale`` aligns the
    head early at no extra pass.

    It does not freeze anything or change the model; the Trainer puts each scale in an
    optimizer group of its own (:func:`augreg.step.set_lr_scale`), with the same schedule and
    weight decay rule. Applying it twice gives the same scales. Cost: none per step.

    Example:
        >>> adapter = augreg.create("core.layerwise_lr", decay=0.9, head_scale=20)
    """

    name = "core.layerwise_lr"
    paper = (
        "Howard & Ruder 2018 (discriminative fine-tuning); Sun et al. 2019 (layer-wise decay "
        "for BERT); Kumar et al. 2022 (head first, less feature distortion)"
    )

    class Options(Adapter.Options):
        decay: float = Field(
            0.9,
            gt=0,
            le=1,
            description="Rate of each encoder layer relative to the layer above (1: no decay).",
        )
        head_scale: float = Field(
            1.0,
            gt=0,
            le=1000,
            description="Rate of the task head (weights not from the backbone) over the "
            "pipeline's rate.",
        )

    options: Options

    def prepare_model(self, model: nn.Module) -> nn.Module:
        from torch import nn

        from augreg.context import unwrap_model
        from augreg.errors import OptionsError
        from augreg.step import AUX, LR_SCALE

        opts = self.options
        inner = unwrap_model(model)
        get_base = getattr(inner, "get_base_model", None)  # peft: the transformers model
        if callable(get_base):
            inner = get_base()
        backbone = getattr(inner, "base_model", None)
        blocks = encoder_layers(inner)
        if not blocks or backbone is None:
            raise OptionsError(
                self.name,
                [
                    f"{type(inner).__name__} has no list of transformer blocks to scale; "
                    "core.layerwise_lr works with transformers models (BERT-, GPT- and T5-like)"
                ],
            )
        scales: dict[int, float] = {}
        for p in inner.parameters():
            scales[id(p)] = 1.0  # backbone outside blocks: the top rate
        n = len(blocks)
        for p in embedding_block(inner).parameters():
            scales[id(p)] = opts.decay**n
        for i, block in enumerate(blocks):
            for p in block.parameters():
                scales[id(p)] = opts.decay ** (n - 1 - i)
        in_backbone = {id(p) for p in backbone.parameters()} if backbone is not inner else None
        aux = getattr(inner, AUX, None)
        skip = {id(p) for p in aux.parameters()} if isinstance(aux, nn.Module) else set()
        for p in inner.parameters():
            if id(p) in skip:
                continue
            factor = scales[id(p)]
            if in_backbone is not None and id(p) not in in_backbone:
                factor = opts.head_scale
            before = getattr(p, _SCALE_BEFORE, None)
            if before is None:
                before = float(getattr(p, LR_SCALE, 1.0))
                setattr(p, _SCALE_BEFORE, before)
            scale = before * factor
            if scale == 1.0 and not hasattr(p, LR_SCALE):
                continue
            setattr(p, LR_SCALE, scale)
        return model
