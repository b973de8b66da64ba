"""The README's code runs: its pipeline validates and builds with the installed components."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import augreg

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def test_readme_pipeline_example_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    if not (ROOT.parent / "shared" / "data").exists():
        pytest.skip("../shared/data is not beside the checkout")
    block = next(b for b in _python_blocks(ROOT / "README.md") if "augreg.Pipeline(" in b)
    built: list[augreg.Pipeline] = []

    class Ran(Exception):
        pass

    def fake_run(self: augreg.Pipeline, *args: object, **kwargs: object) -> None:
        built.append(self)
        raise Ran

    # Training MiniLM for 5 epochs is the main job's business; here the example must build.
    monkeypatch.setattr(augreg.Pipeline, "run", fake_run)
    monkeypatch.chdir(ROOT)
    with pytest.raises(Ran):
        exec(compile(block, "README.md", "exec"), {})
    (pipe,) = built
    assert [c.name for c in pipe.regularizers] == ["core.rdrop", "core.l2sp"]
    assert pipe.objectives[0].name == "core.label_smoothing"
    assert pipe.config.data.train_size == 500


def test_readme_plugin_snippets_compile() -> None:
    for block in _python_blocks(ROOT / "README.md") + _python_blocks(
        ROOT / "docs" / "writing-plugins.md"
    ):
        compile(block, "snippet", "exec")
