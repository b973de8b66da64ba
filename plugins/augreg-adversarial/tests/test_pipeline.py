"""The regularizers in whole pipelines: from a config, with gradient accumulation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import augreg
from augreg.testing import save_tiny_model

POSITIVE = ["the movie was great", "i love this film", "a wonderful story", "great acting"]
NEGATIVE = ["the movie was terrible", "i hate this film", "a boring story", "bad acting"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-seq"), "sequence_classification", 2)


@pytest.fixture()
def train_file(tmp_path: Path) -> Path:
    rows = [{"text": t, "label": 1} for t in POSITIVE] + [{"text": t, "label": 0} for t in NEGATIVE]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows * 2), encoding="utf-8")
    return path


def _logged(run_dir: Path) -> list[dict[str, float]]:
    history = json.loads((run_dir / "log_history.json").read_text())
    return [h for h in history if "loss" in h]


def test_fgm_runs_from_a_config_with_gradient_accumulation(
    tiny_folder: Path, train_file: Path, tmp_path: Path
) -> None:
    config = tmp_path / "p.toml"
    config.write_text(f"""
name = "adv"
[model]
name = "{tiny_folder}"
max_length = 32
[data]
train = "{train_file}"
[[regularize]]
name = "adversarial.fgm"
epsilon = 0.5
[train]
epochs = 1
batch_size = 4
gradient_accumulation_steps = 2
learning_rate = 1e-3
seed = 3
logging_steps = 1
output_dir = "{tmp_path / "runs"}"
progress = false
eval_strategy = "no"
save_model = false
""")
    pipe = augreg.Pipeline.from_config(config)
    assert [r.name for r in pipe.regularizers] == ["adversarial.fgm"]
    assert pipe.regularizers[0].options.epsilon == 0.5  # type: ignore[attr-defined]
    result = pipe.run()
    summary = json.loads((result.run_dir / "metrics.json").read_text())
    assert summary["train"]["steps"] == 2  # 16 examples / (4 x 2)
    assert summary["train"]["extra_passes"] == pipe.regularizers[0].extra_passes
    logged = _logged(result.run_dir)
    assert logged and all(math.isfinite(h["loss/adversarial.fgm"]) for h in logged)


def test_every_method_together_with_gradient_accumulation(
    tiny_folder: Path, train_file: Path, tmp_path: Path
) -> None:
    pipe = augreg.Pipeline(
        model={"name": str(tiny_folder), "max_length": 32},
        data={"train": str(train_file)},
        regularize=[
            {"name": "adversarial.pgd", "steps": 2},
            {"name": "adversarial.freelb", "steps": 2},
            {"name": "adversarial.smart", "beta": 0.5},
            {"name": "adversarial.sam", "rho": 0.05},
        ],
        train={
            "epochs": 1,
            "batch_size": 4,
            "gradient_accumulation_steps": 2,
            "learning_rate": 1e-3,
            "seed": 3,
            "logging_steps": 1,
            "output_dir": str(tmp_path / "runs"),
            "progress": False,
            "eval_strategy": "no",
            "save_model": False,
        },
    )
    result = pipe.run()
    logged = _logged(result.run_dir)
    assert logged
    for name in ("adversarial.pgd", "adversarial.freelb", "adversarial.smart", "adversarial.sam"):
        assert all(math.isfinite(h[f"loss/{name}"]) for h in logged), name
    assert math.isfinite(float(result.train["train_loss"]))
