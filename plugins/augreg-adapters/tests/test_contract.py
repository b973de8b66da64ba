"""The conformance kit for every component of augreg-adapters (both tasks where supported)."""

from __future__ import annotations

from augreg.testing import AdapterContract


class TestLoRA(AdapterContract):
    component = "adapters.lora"
    options = {"r": 4}


class TestLoRAExplicitTargets(AdapterContract):
    component = "adapters.lora"
    options = {
        "r": 2,
        "alpha": 4.0,
        "target_modules": ["query", "key", "value"],
        "bias": "lora_only",
    }


class TestIA3(AdapterContract):
    component = "adapters.ia3"


class TestPrefixTuning(AdapterContract):
    component = "adapters.prefix_tuning"
    options = {"num_virtual_tokens": 4}


class TestPrefixTuningProjected(AdapterContract):
    component = "adapters.prefix_tuning"
    options = {"num_virtual_tokens": 3, "prefix_projection": True, "encoder_hidden_size": 16}


class TestPromptTuning(AdapterContract):
    component = "adapters.prompt_tuning"
    options = {"num_virtual_tokens": 4}


class TestBottleneckHoulsby(AdapterContract):
    component = "adapters.bottleneck"


class TestBottleneckPfeiffer(AdapterContract):
    component = "adapters.bottleneck"
    options = {"placement": "pfeiffer", "size": 8, "activation": "gelu", "train_layer_norm": False}


class TestLPFT(AdapterContract):
    component = "adapters.lp_ft"
    options = {"switch": 0.3}
