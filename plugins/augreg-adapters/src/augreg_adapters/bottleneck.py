"""Bottleneck adapters (Houlsby and Pfeiffer placements), written here: peft has none.

A small block ``x + up(act(down(x)))`` is inserted after a sublayer's output projection, before
its dropout, residual connection and layer norm; the pretrained weights are frozen and only the
blocks, the task head and (optionally) the layer norms train. The block is a registered
submodule of the sublayer (so it is in ``state_dict`` and moves with ``.to()``) and runs through
a forward hook on the projection, so parameter names of the pretrained model do not change.

Supported architectures: any whose transformer layers (``encoder.layer``, ``layers``, ``h``,
``block``) hold the two output projections at the paths given by ``attention_output`` and
``ffn_output``. The defaults fit BERT-style encoders (BERT, RoBERTa, XLM-R, ELECTRA, MiniLM,
DeBERTa); DistilBERT is ``attention.out_lin`` / ``ffn.lin2``, GPT-2 ``attn.c_proj`` /
``mlp.c_proj``. Anything else is an error naming the path that is missing.

Example::

    adapters=[{"name": "adapters.bottleneck", "placement": "pfeiffer", "reduction_factor": 16}]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

import augreg
from augreg_adapters.common import (
    adapter_error,
    already_applied,
    head_modules,
    mark_applied,
    unwrap,
)
from augreg_adapters.peft_adapters import PEFT_FAMILY

if TYPE_CHECKING:  # pragma: no cover - typing only; importing this module stays light
    from torch import nn

BLOCK_ATTR = "augreg_bottleneck"
"""Name of the bottleneck block inside each adapted sublayer."""


class Bottleneck(augreg.Adapter):
    """Bottleneck adapters in every transformer layer, pretrained weights frozen.

    ``placement = "houlsby"`` puts one block after the attention output projection and one
    after the feed-forward output projection of each layer (Houlsby et al. 2019) and, as in the
    paper, trains the layer norms too; ``"pfeiffer"`` puts one block after the feed-forward
    output only (Pfeiffer et al. 2021), half the blocks. The bottleneck width is
    ``hidden / reduction_factor`` unless ``size`` is set. Blocks start near the identity.

    Papers: Houlsby et al. 2019, *Parameter-Efficient Transfer Learning for NLP*; Pfeiffer et
    al. 2021, *AdapterFusion: Non-Destructive Task Composition for Transfer Learning*.

    Cost: no extra pass; two small matrix products per block (MiniLM, factor 16, Houlsby:
    about 0.5% more FLOPs), backward still runs through the frozen layers. Trained: about
    2 x hidden x size per block plus the head (MiniLM Houlsby, factor 16: about 1% of the
    parameters). Not mergeable into the weights (the block is nonlinear).
    """

    name = "adapters.bottleneck"
    paper = (
        "Houlsby et al. 2019, Parameter-Efficient Transfer Learning for NLP; Pfeiffer et al. "
        "2021, AdapterFusion: Non-Destructive Task Composition for Transfer Learning"
    )
    # Either order with a peft adapter would silently freeze the other's weights.
    conflicts_with: ClassVar[frozenset[str]] = PEFT_FAMILY

    class Options(augreg.Adapter.Options):
        placement: Literal["houlsby", "pfeiffer"] = Field(
            "houlsby",
            description="houlsby: after attention and feed-forward outputs; pfeiffer: after "
            "the feed-forward output only.",
        )
        reduction_factor: int = Field(
            16, ge=1, le=4096, description="Bottleneck width = hidden size / this factor."
        )
        size: int | None = Field(
            None, ge=1, le=65536, description="Bottleneck width; overrides reduction_factor."
        )
        activation: Literal["relu", "gelu", "tanh", "swish"] = Field(
            "relu", description="Nonlinearity between the projections."
        )
        init_std: float = Field(
            1e-2, gt=0, le=1, description="Std of the initial projection weights (near identity)."
        )
        train_layer_norm: bool = Field(
            True, description="Also train the layer norms of the layers (Houlsby et al.)."
        )
        attention_output: str = Field(
            "attention.output.dense",
            min_length=1,
            description="Path, inside each layer, of the attention output projection.",
        )
        ffn_output: str = Field(
            "output.dense",
            min_length=1,
            description="Path, inside each layer, of the feed-forward output projection.",
        )
        head: list[str] | None = Field(
            None, min_length=1, description="Top-level modules kept trainable; default: inferred."
        )

    options: Options

    def _sites(self, layer: nn.Module, index: int) -> list[nn.Module]:
        paths = [self.options.ffn_output]
        if self.options.placement == "houlsby":
            paths.insert(0, self.options.attention_output)
        sites = []
        for path in paths:
            try:
                sites.append(layer.get_submodule(path))
            except AttributeError:
                children = sorted(n for n, _ in layer.named_modules() if n)
                raise adapter_error(
                    self,
                    f"layer {index} ({type(layer).__name__}) has no module {path!r}. Supported: "
                    "BERT-style layers; for other architectures set attention_output and "
                    f"ffn_output to the output projections among {children[:40]}.",
                ) from None
        return sites

    @staticmethod
    def _width(site: nn.Module, model: nn.Module) -> int:
        out = getattr(site, "out_features", None)
        if out is None and hasattr(site, "nf"):  # transformers' Conv1D (GPT-2)
            out = site.nf
        if out is None:
            out = getattr(getattr(model, "config", None), "hidden_size", None)
        if out is None:
            raise adapter_error(
                "adapters.bottleneck",
                f"cannot tell the output width of {type(site).__name__}; point "
                "attention_output / ffn_output at linear projections.",
            )
        return int(out)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        if already_applied(model, self):
            return model
        from torch import nn

        from augreg.builtins.adapters import encoder_layers
        from augreg_adapters.modules import BottleneckBlock

        base = unwrap(model)
        layers = encoder_layers(base)
        if not layers:
            raise adapter_error(
                self,
                f"found no transformer layers in {type(base).__name__} (a ModuleList named "
                "layer, layers, h, block or blocks); this adapter supports layered encoders.",
            )
        all_sites = [(i, site) for i, layer in enumerate(layers) for site in self._sites(layer, i)]
        taken = [i for i, site in all_sites if hasattr(site, BLOCK_ATTR)]
        if taken:
            raise adapter_error(
                self,
                f"layer {taken[0]} already has a bottleneck block; apply the adapter once.",
            )
        head = head_modules(model, self.options.head)
        for p in model.parameters():
            p.requires_grad_(False)
        for _, site in all_sites:
            hidden = self._width(site, base)
            size = self.options.size or max(1, hidden // self.options.reduction_factor)
            ref = next(site.parameters())
            block = BottleneckBlock(
                hidden, size, self.options.activation, self.options.init_std
            ).to(device=ref.device, dtype=ref.dtype)
            site.add_module(BLOCK_ATTR, block)
            site.register_forward_hook(block.hook)
        for name in head:
            for p in base.get_submodule(name).parameters():
                p.requires_grad_(True)
        if self.options.train_layer_norm:
            for layer in layers:
                for module in layer.modules():
                    if isinstance(module, nn.LayerNorm):
                        for p in module.parameters():
                            p.requires_grad_(True)
        for _, site in all_sites:
            for p in getattr(site, BLOCK_ATTR).parameters():
                p.requires_grad_(True)
        mark_applied(model, self)
        return model
