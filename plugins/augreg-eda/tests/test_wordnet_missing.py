"""Without WordNet, set-up fails with an AugregError that says how to install it."""

from __future__ import annotations

from pathlib import Path

import nltk
import pytest

import augreg
from augreg_eda.eda import Eda, RandomInsertion, RandomSwap, SynonymReplacement


@pytest.mark.parametrize("cls", [SynonymReplacement, RandomInsertion, Eda])
def test_missing_wordnet_is_an_augreg_error_with_the_fix(
    cls: type[augreg.Augmenter], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    comp = cls(preset="paper-500") if cls is Eda else cls()
    with pytest.raises(augreg.AugregError) as excinfo:
        comp.setup(augreg.SetupContext())
    message = str(excinfo.value)
    assert "'wordnet'" in message and cls.name in message
    assert "python -m nltk.downloader wordnet" in message
    assert "NLTK_DATA" in message and str(tmp_path) in message


def test_ops_without_wordnet_do_not_need_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    example = {"text": "a gripping , well acted film", "label": 1}
    swap = RandomSwap()
    swap.setup(augreg.SetupContext())
    assert swap.augment(example, __import__("random").Random(0))
    eda = Eda(preset="paper-500", ops=("random_swap", "random_deletion"))
    eda.setup(augreg.SetupContext())
    assert len(eda.augment(example, __import__("random").Random(0))) > 4


def test_importing_the_plugin_loads_no_wordnet_nlpaug_torch_or_numpy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, augreg_eda.hooks, augreg_eda.eda, augreg_eda.noise; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('nltk', 'nlpaug', 'torch', 'numpy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
