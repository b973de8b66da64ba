"""augreg-adapters: parameter-efficient fine-tuning as augreg adapters.

LoRA, IA3, prefix tuning and prompt tuning through peft; bottleneck adapters (Houlsby,
Pfeiffer) and LP-FT written here. :func:`merge` folds LoRA or IA3 into the base weights.
Importing this package imports neither torch nor peft.
"""

from augreg_adapters.bottleneck import Bottleneck
from augreg_adapters.common import head_modules, trainable_summary
from augreg_adapters.lp_ft import LPFT
from augreg_adapters.peft_adapters import IA3, LoRA, PrefixTuning, PromptTuning, merge

__version__ = "0.1.0"

__all__ = [
    "IA3",
    "LPFT",
    "Bottleneck",
    "LoRA",
    "PrefixTuning",
    "PromptTuning",
    "__version__",
    "head_modules",
    "merge",
    "trainable_summary",
]
