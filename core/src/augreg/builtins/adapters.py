"""Built-in adapter: freeze the embeddings and/or the first k encoder layers."""

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
            emb = model.get_input_embeddings()  # type: ignore[operator]
            frozen = [emb]
            # The whole embedding block (positions, layer norm), not only the word matrix.
            for name, module in model.named_modules():
                if name.endswith("embeddings") and emb in list(module.modules()):
                    frozen = [module]
                    break
            for module in frozen:
                for p in module.parameters():
                    p.requires_grad_(False)
        for block in blocks[: opts.layers]:
            for p in block.parameters():
                p.requires_grad_(False)
        return model
