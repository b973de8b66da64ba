"""LoRA, IA3, prefix tuning and prompt tuning, through peft.

peft does the work (layer injection, forward, merging); these classes choose its settings for
the model at hand (target modules for the architecture, the task head kept trainable through
``modules_to_save``), validate options before any model loads, and make a second application
a no-op or an error instead of a second wrap. At most one of them per model: peft wraps the
model once.

Example::

    pipe = augreg.Pipeline(..., adapters=[{"name": "adapters.lora", "r": 8}],
                           train={"learning_rate": 5e-4})
    merged = augreg_adapters.merge(augreg.load_model(run_dir))  # plain model, LoRA folded in
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

import augreg
from augreg_adapters.common import (
    adapter_error,
    already_applied,
    head_modules,
    is_peft_model,
    mark_applied,
    unwrap,
)

if TYPE_CHECKING:  # pragma: no cover - typing only; importing this module stays light
    from torch import nn

PEFT_FAMILY = frozenset(
    {"adapters.lora", "adapters.ia3", "adapters.prefix_tuning", "adapters.prompt_tuning"}
)

# Attention projections by naming convention, for model types peft has no default for.
_LORA_PAIRS: tuple[tuple[str, ...], ...] = (
    ("query", "value"),
    ("q_proj", "v_proj"),
    ("q_lin", "v_lin"),
    ("q", "v"),
)
_LORA_FUSED: tuple[str, ...] = ("query_key_value", "qkv_proj", "Wqkv", "c_attn", "qkv")


class _HeadOptions(augreg.Adapter.Options):
    head: list[str] | None = Field(
        None,
        min_length=1,
        description="Top-level modules kept fully trainable (the task head); default: inferred "
        "(classifier, score, ...).",
    )


def _task_type(adapter: augreg.Adapter, model: nn.Module) -> str:
    """peft's task type from the model class (``...ForSequenceClassification`` and so on)."""
    cls = type(unwrap(model)).__name__
    if cls.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    if cls.endswith("ForTokenClassification"):
        return "TOKEN_CLS"
    raise adapter_error(
        adapter,
        f"needs a model with a classification head, got {cls}. Load it with "
        "AutoModelForSequenceClassification or AutoModelForTokenClassification (the pipeline "
        "does this for its tasks).",
    )


def _linear_leaf_names(model: nn.Module) -> set[str]:
    from torch import nn

    names: set[str] = set()
    for name, module in unwrap(model).named_modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            names.add(name.rsplit(".", 1)[-1])
    return names


def infer_lora_targets(model: nn.Module) -> list[str]:
    """LoRA target modules for the model's architecture.

    peft's table for the model type when it has one (BERT-like: ``query``, ``value``; LLaMA:
    ``q_proj``, ``v_proj``; GPT-2: ``c_attn``), else the query and value projections found by
    common names, else a fused query-key-value projection.

    Raises:
        AugregError: none found; the message lists the linear layers to choose from.
    """
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    model_type = str(getattr(getattr(unwrap(model), "config", None), "model_type", ""))
    if model_type in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
        return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type])
    names = _linear_leaf_names(model)
    for pair in _LORA_PAIRS:
        if set(pair) <= names:
            return list(pair)
    for fused in _LORA_FUSED:
        if fused in names:
            return [fused]
    raise adapter_error(
        "adapters.lora",
        f"cannot infer the attention projections of model type {model_type!r}. Set "
        f"target_modules to some of its linear layers: {sorted(names)}.",
    )


class _PeftAdapter(augreg.Adapter):
    """Shared wrapping logic: one peft wrap per model, head in ``modules_to_save``."""

    supports_tasks: ClassVar[frozenset[str]] = augreg.TASKS

    options: Any

    def _config(self, model: nn.Module, task_type: str, head: list[str]) -> Any:
        raise NotImplementedError

    def _before_wrap(self, model: nn.Module) -> None:
        """A hook for adapters that must adjust the model before peft wraps it."""

    def prepare_model(self, model: nn.Module) -> nn.Module:
        if already_applied(model, self):
            return model
        if is_peft_model(model):
            kinds = sorted(
                {str(c.peft_type.value) for c in getattr(model, "peft_config", {}).values()}
            )
            raise adapter_error(
                self,
                f"the model already has a peft adapter ({', '.join(kinds)}); use one of "
                f"{', '.join(sorted(PEFT_FAMILY))} per model.",
            )
        from peft import get_peft_model

        task_type = _task_type(self, model)
        head = head_modules(model, self.options.head)
        self._before_wrap(model)
        wrapped: nn.Module = get_peft_model(model, self._config(model, task_type, head))
        mark_applied(wrapped, self)
        mark_applied(unwrap(wrapped), self)
        return wrapped


class LoRA(_PeftAdapter):
    """Low-rank adaptation: frozen weights plus a trained low-rank update ``B A`` (through peft).

    Each target projection ``W`` becomes ``W + (alpha / r) B A`` with ``A`` (r x d) random and
    ``B`` (d x r) zero at the start, so training starts from the pretrained model. The task head
    is trained fully. Target modules default to the attention query and value projections of
    the architecture (peft's table, else common names); set ``target_modules`` to change them.
    The update can be folded into the weights for inference (:func:`augreg_adapters.merge`).

    Paper: Hu et al. 2021, *LoRA: Low-Rank Adaptation of Large Language Models*.

    Cost: no extra pass; per step about the same time as full fine-tuning on a small encoder
    (the frozen weights still run forward and pass gradients back), less optimizer state and
    memory; the saved run holds only A, B and the head (MiniLM, r=8 on query/value: about 0.4%
    of the parameters). LoRA usually wants a larger learning rate than full fine-tuning
    (5e-4 to 1e-3).
    """

    name = "adapters.lora"
    paper = "Hu et al. 2021, LoRA: Low-Rank Adaptation of Large Language Models"
    conflicts_with: ClassVar[frozenset[str]] = PEFT_FAMILY - {"adapters.lora"}

    class Options(_HeadOptions):
        r: int = Field(8, ge=1, le=1024, description="Rank of the update.")
        alpha: float = Field(
            16.0, gt=0, le=1e4, description="Scale: the update is (alpha / r) B A."
        )
        dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the LoRA branch input.")
        target_modules: list[str] | None = Field(
            None,
            min_length=1,
            description="Module names (suffixes) to adapt; default: inferred for the "
            "architecture (BERT-like: query, value).",
        )
        bias: Literal["none", "all", "lora_only"] = Field(
            "none", description="Which biases to train as well (peft's bias setting)."
        )

    options: Options

    def _config(self, model: nn.Module, task_type: str, head: list[str]) -> Any:
        from peft import LoraConfig

        opts = self.options
        targets = list(opts.target_modules or infer_lora_targets(model))
        present = _linear_leaf_names(model) | {n for n, _ in unwrap(model).named_modules()}
        unknown = [t for t in targets if not any(p == t or p.endswith("." + t) for p in present)]
        if unknown:
            raise adapter_error(
                self,
                f"target_modules {unknown} match no module of {type(unwrap(model)).__name__}; "
                f"its linear layers are named {sorted(_linear_leaf_names(model))}.",
            )
        return LoraConfig(
            task_type=task_type,
            r=opts.r,
            # peft annotates int, but only divides alpha by r (or sqrt r): a float works exactly
            lora_alpha=opts.alpha,  # type: ignore[arg-type]
            lora_dropout=opts.dropout,
            target_modules=targets,
            bias=opts.bias,
            modules_to_save=head,
        )


class IA3(_PeftAdapter):
    """IA3: learned vectors that rescale keys, values and feed-forward activations (peft).

    Only the scaling vectors (initialised to one, so training starts from the pretrained
    model) and the head train. Target modules default to peft's table for the model type
    (BERT-like: key, value and the feed-forward output).

    Paper: Liu et al. 2022, *Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper
    than In-Context Learning*.

    Cost: no extra pass; the fewest trained parameters of the family (MiniLM: about 0.1%);
    can be merged into the weights (:func:`augreg_adapters.merge`).
    """

    name = "adapters.ia3"
    paper = (
        "Liu et al. 2022, Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than "
        "In-Context Learning"
    )
    conflicts_with: ClassVar[frozenset[str]] = PEFT_FAMILY - {"adapters.ia3"}

    class Options(_HeadOptions):
        target_modules: list[str] | None = Field(
            None,
            min_length=1,
            description="Modules whose outputs are rescaled; default: peft's table.",
        )
        feedforward_modules: list[str] | None = Field(
            None,
            description="The subset of target_modules that are feed-forward layers (their "
            "input is rescaled); default: peft's table.",
        )

    options: Options

    def _config(self, model: nn.Module, task_type: str, head: list[str]) -> Any:
        from peft import IA3Config
        from peft.utils.constants import (
            TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
            TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
        )

        opts = self.options
        model_type = str(getattr(getattr(unwrap(model), "config", None), "model_type", ""))
        targets = opts.target_modules or TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING.get(
            model_type
        )
        if targets is None:
            raise adapter_error(
                self,
                f"peft has no default IA3 targets for model type {model_type!r}. Set "
                "target_modules (and feedforward_modules) to some of its linear layers: "
                f"{sorted(_linear_leaf_names(model))}.",
            )
        feedforward = opts.feedforward_modules
        if feedforward is None:
            feedforward = list(
                TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(model_type, [])
            )
        outside = [f for f in feedforward if f not in targets]
        if outside:
            raise adapter_error(
                self, f"feedforward_modules {outside} must also be in target_modules {targets}."
            )
        return IA3Config(
            task_type=task_type,
            target_modules=list(targets),
            feedforward_modules=list(feedforward),
            modules_to_save=head,
        )


class _CacheForward:
    """A model ``forward`` that also takes ``past_key_values`` and passes it on as ``cache``.

    peft 0.21 gives prefix tuning's key/value prefixes as ``past_key_values`` and only does so
    when the model's forward signature names that argument; transformers 5 renamed it
    ``cache`` (BERT-like encoders take it there, through ``**kwargs``). This adapter between
    the two names is the only thing written here; the prefixes themselves are peft's.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        signature = inspect.signature(type(model).forward)
        params = [p for p in signature.parameters.values() if p.name != "self"]
        extra = inspect.Parameter("past_key_values", inspect.Parameter.KEYWORD_ONLY, default=None)
        ordered = [p for p in params if p.kind is not p.VAR_KEYWORD]
        ordered += [extra] + [p for p in params if p.kind is p.VAR_KEYWORD]
        self.__signature__ = signature.replace(parameters=ordered)

    def __call__(self, *args: Any, past_key_values: Any = None, **kwargs: Any) -> Any:
        if past_key_values is not None:
            kwargs["cache"] = past_key_values
        return type(self.model).forward(self.model, *args, **kwargs)


def _accepts(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False


class PrefixTuning(_PeftAdapter):
    """Prefix tuning: trained key/value vectors prepended in every attention layer (peft).

    The pretrained model is frozen; ``num_virtual_tokens`` prefix vectors per layer (through
    an MLP reparameterisation when ``prefix_projection``) and the head train. Input tokens
    attend to the prefixes; the outputs keep their length, so token classification works.

    Paper: Li & Liang 2021, *Prefix-Tuning: Optimizing Continuous Prompts for Generation*.

    Cost: attention over ``num_virtual_tokens`` more keys per layer (a few % per step at 64
    tokens); 2 x layers x virtual tokens x hidden size trained values.
    """

    name = "adapters.prefix_tuning"
    paper = "Li & Liang 2021, Prefix-Tuning: Optimizing Continuous Prompts for Generation"
    conflicts_with: ClassVar[frozenset[str]] = PEFT_FAMILY - {"adapters.prefix_tuning"}

    class Options(_HeadOptions):
        num_virtual_tokens: int = Field(20, ge=1, le=512, description="Prefix length per layer.")
        prefix_projection: bool = Field(
            False, description="Reparameterise the prefixes through a two-layer MLP."
        )
        encoder_hidden_size: int | None = Field(
            None, ge=1, le=65536, description="Hidden size of that MLP (default: model width)."
        )

    options: Options

    def _before_wrap(self, model: nn.Module) -> None:
        if _accepts(model.forward, "past_key_values"):
            return
        if not _accepts(type(model).forward, "kwargs"):
            raise adapter_error(
                self,
                f"{type(model).__name__}.forward takes neither past_key_values nor **kwargs, so "
                "peft cannot pass the prefixes; use adapters.prompt_tuning or adapters.lora.",
            )
        backbone = getattr(model, str(getattr(model, "base_model_prefix", "")), None)
        if backbone is None or not _accepts(type(backbone).forward, "cache"):
            raise adapter_error(
                self,
                f"{type(model).__name__} accepts no key/value cache, which prefix tuning needs; "
                "use adapters.prompt_tuning or adapters.lora.",
            )
        object.__setattr__(model, "forward", _CacheForward(model))

    def _config(self, model: nn.Module, task_type: str, head: list[str]) -> Any:
        from peft import PrefixTuningConfig

        opts = self.options
        kwargs: dict[str, Any] = {}
        if opts.encoder_hidden_size is not None:
            kwargs["encoder_hidden_size"] = opts.encoder_hidden_size
        return PrefixTuningConfig(
            task_type=task_type,
            num_virtual_tokens=opts.num_virtual_tokens,
            prefix_projection=opts.prefix_projection,
            modules_to_save=head,
            **kwargs,
        )


class PromptTuning(_PeftAdapter):
    """Prompt tuning: trained input embeddings prepended to every example (peft).

    Only ``num_virtual_tokens`` soft-prompt vectors (random, or initialised from the
    embeddings of ``init_text``) and the head train. Sequence classification only: peft
    prepends the virtual tokens to the outputs too, so per-token logits would no longer line up
    with the labels.

    Paper: Lester et al. 2021, *The Power of Scale for Parameter-Efficient Prompt Tuning*.

    Cost: ``num_virtual_tokens`` more positions in every forward (at 64 tokens and 20 virtual
    tokens about 30% more attention and feed-forward work); virtual tokens x hidden size
    trained values. Weak on small models (the paper's gap closes only at billions of
    parameters).
    """

    name = "adapters.prompt_tuning"
    paper = "Lester et al. 2021, The Power of Scale for Parameter-Efficient Prompt Tuning"
    supports_tasks: ClassVar[frozenset[str]] = frozenset({"sequence_classification"})
    conflicts_with: ClassVar[frozenset[str]] = PEFT_FAMILY - {"adapters.prompt_tuning"}

    class Options(_HeadOptions):
        num_virtual_tokens: int = Field(20, ge=1, le=512, description="Soft-prompt length.")
        init_text: str | None = Field(
            None,
            min_length=1,
            description="Initialise the prompt from this text's token embeddings (repeated to "
            "the length); default: random.",
        )
        tokenizer: str | None = Field(
            None,
            min_length=1,
            description="Tokenizer for init_text (default: the pipeline's model name).",
        )

    options: Options
    _tokenizer_name: str | None = None

    def setup(self, ctx: augreg.SetupContext) -> None:
        tokenizer = ctx.tokenizer
        self._tokenizer_name = getattr(tokenizer, "name_or_path", None) or None

    def _config(self, model: nn.Module, task_type: str, head: list[str]) -> Any:
        from peft import PromptTuningConfig, PromptTuningInit

        opts = self.options
        if task_type != "SEQ_CLS":
            raise adapter_error(
                self,
                "supports sequence classification only (peft prepends the soft prompt to the "
                "per-token outputs); use adapters.prefix_tuning or adapters.lora for token "
                "classification.",
            )
        if opts.init_text is None:
            return PromptTuningConfig(
                task_type=task_type,
                num_virtual_tokens=opts.num_virtual_tokens,
                prompt_tuning_init=PromptTuningInit.RANDOM,
                modules_to_save=head,
            )
        tokenizer = opts.tokenizer or self._tokenizer_name
        if not tokenizer:
            raise adapter_error(
                self,
                "init_text needs a tokenizer: set the tokenizer option to a hub name or folder "
                "(in a pipeline the model's tokenizer is used).",
            )
        return PromptTuningConfig(
            task_type=task_type,
            num_virtual_tokens=opts.num_virtual_tokens,
            prompt_tuning_init=PromptTuningInit.TEXT,
            prompt_tuning_init_text=opts.init_text,
            tokenizer_name_or_path=tokenizer,
            modules_to_save=head,
        )


def merge(model: nn.Module) -> nn.Module:
    """Fold LoRA (or IA3) into the base weights; return the plain transformers model.

    Use for inference: the merged model computes the same logits without the extra branch
    and saves with ``save_pretrained`` like any model. Training it further trains all weights.

    Args:
        model: A model prepared by ``adapters.lora`` or ``adapters.ia3`` (or loaded from such a
            run with ``augreg.load_model``).

    Raises:
        AugregError: the model has no peft adapter, or one that cannot be merged (prefix and
            prompt tuning add inputs, not weight updates).
    """
    if not is_peft_model(model):
        raise adapter_error(
            "adapters.lora",
            f"merge: {type(model).__name__} has no LoRA or IA3 adapter to merge (was it "
            "prepared by adapters.lora / adapters.ia3, or merged already?).",
        )
    kinds = {str(cfg.peft_type.value) for cfg in model.peft_config.values()}  # type: ignore[operator]
    if not kinds <= {"LORA", "IA3"}:
        raise adapter_error(
            "adapters.lora",
            f"merge: {sorted(kinds)} adapters add virtual tokens, not weight updates, so they "
            "cannot be merged; keep the peft model for inference.",
        )
    merged: nn.Module = model.merge_and_unload()  # type: ignore[operator]
    object.__setattr__(merged, "augreg_adapters", {})
    return merged
