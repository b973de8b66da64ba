"""Each objective and each combiner in a short whole pipeline on a tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import augreg
from augreg.errors import ConfigError


def _logged(run_dir: Path) -> list[dict[str, float]]:
    history = json.loads((run_dir / "log_history.json").read_text())
    return [h for h in history if "loss" in h]


def _run(tiny: Path, data: Path, out: Path, **kwargs: Any) -> augreg.RunResult:
    pipe = augreg.Pipeline(
        model={"name": str(tiny), "max_length": 32},
        data={"train": str(data), "test": str(data)},
        train={
            "epochs": 1,
            "batch_size": 8,
            "learning_rate": 1e-3,
            "seed": 3,
            "logging_steps": 1,
            "output_dir": str(out),
            "progress": False,
            "eval_strategy": "no",
            **kwargs.pop("train", {}),
        },
        **kwargs,
    )
    return pipe.run()


@pytest.mark.parametrize(
    "objectives",
    [
        [{"name": "objectives.distillation", "teacher": "TEACHER", "hidden_weight": 0.5}],
        ["core.cross_entropy", "objectives.supervised_contrastive"],
        ["core.cross_entropy", "objectives.simcse"],
        ["core.cross_entropy", "objectives.mlm"],
    ],
    ids=["distillation", "supcon", "simcse", "mlm"],
)
def test_each_objective_trains_in_a_pipeline(
    objectives: list[Any], tiny_folder: Path, teacher_folder: Path, train_file: Path, tmp_path: Path
) -> None:
    objectives = [
        {**o, "teacher": str(teacher_folder)} if isinstance(o, dict) else o for o in objectives
    ]
    result = _run(tiny_folder, train_file, tmp_path / "runs", objectives=objectives)
    names = [o if isinstance(o, str) else o["name"] for o in objectives]
    logged = _logged(result.run_dir)
    assert logged and all(math.isfinite(h[f"loss/{n}"]) for h in logged for n in names)
    assert "accuracy" in result.metrics["test"]
    augreg.load_model(result.run_dir)  # training-only modules do not block loading


@pytest.mark.parametrize("combiner", ["objectives.uncertainty", "objectives.pcgrad", "core.sum"])
def test_each_combiner_trains_in_a_pipeline(
    combiner: str, tiny_folder: Path, train_file: Path, tmp_path: Path
) -> None:
    result = _run(
        tiny_folder,
        train_file,
        tmp_path / "runs",
        objectives=["core.cross_entropy", {"name": "objectives.supervised_contrastive"}],
        train={"combiner": combiner},
    )
    logged = _logged(result.run_dir)
    assert logged and all(
        math.isfinite(h["loss/core.cross_entropy"])
        and math.isfinite(h["loss/objectives.supervised_contrastive"])
        for h in logged
    )
    assert result.config.train.combiner.name == combiner
    if combiner == "objectives.uncertainty":
        from safetensors.torch import load_file

        saved = load_file(str(result.run_dir / "model" / "model.safetensors"))
        keys = [k for k in saved if k.startswith("augreg_aux.objectives_uncertainty.")]
        assert len(keys) == 2 and all(float(saved[k].abs()) > 0 for k in keys)


def test_combiner_from_a_toml_config_with_options(
    tiny_folder: Path, train_file: Path, tmp_path: Path
) -> None:
    config = tmp_path / "p.toml"
    config.write_text(f"""
[model]
name = "{tiny_folder}"
[data]
train = "{train_file}"
[[objectives]]
name = "core.cross_entropy"
[[objectives]]
name = "objectives.mlm"
weight = 0.2
[train]
combiner = {{ name = "objectives.uncertainty", init = 0.5 }}
""")
    pipe = augreg.Pipeline.from_config(config)
    assert pipe.combiner.name == "objectives.uncertainty"
    assert pipe.combiner.options.init == 0.5  # type: ignore[attr-defined]
    assert pipe.config.to_dict()["train"]["combiner"]["init"] == 0.5


def test_unknown_combiner_and_bad_options_name_the_fix(tiny_folder: Path, train_file: Path) -> None:
    base = {"model": str(tiny_folder), "data": {"train": str(train_file)}}
    with pytest.raises(ConfigError) as err:
        augreg.Pipeline(**base, train={"combiner": "objectives.pcgard"})
    text = str(err.value)
    assert "train.combiner" in text and "objectives.pcgrad" in text
    with pytest.raises(ConfigError, match="lr_scale"):
        augreg.Pipeline(
            **base, train={"combiner": {"name": "objectives.uncertainty", "lr_scale": 0}}
        )
    with pytest.raises(ConfigError, match="teacher is missing"):
        augreg.Pipeline(**base, objectives=["objectives.distillation"])
