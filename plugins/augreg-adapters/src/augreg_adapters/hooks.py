"""Registration only: no I/O, no heavy imports (``augreg plugins`` imports this)."""

import augreg
from augreg_adapters.bottleneck import Bottleneck
from augreg_adapters.lp_ft import LPFT
from augreg_adapters.peft_adapters import IA3, LoRA, PrefixTuning, PromptTuning


@augreg.hookimpl
def augreg_register_adapters(register: augreg.Register) -> None:
    register(LoRA)
    register(IA3)
    register(PrefixTuning)
    register(PromptTuning)
    register(Bottleneck)
    register(LPFT)
