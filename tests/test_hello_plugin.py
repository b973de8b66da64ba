"""The template plugin, installed like any third-party plugin: listed, conformant, runnable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import augreg


def test_listed_by_augreg_plugins_with_its_distribution() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "augreg", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    augmenters = {c["name"]: c for c in json.loads(proc.stdout)["augmenter"]}
    assert augmenters["hello.shout"]["distribution"] == "augreg-hello"


def test_passes_check_plugin_from_the_command_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "augreg", "check-plugin", "augreg-hello"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def test_runs_in_a_pipeline(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    pipe = augreg.Pipeline(
        model={"name": str(tiny_seq_model), "max_length": 32},
        data={
            "train": str(sentiment_files["train"]),
            "test": str(sentiment_files["test"]),
            "cache_dir": str(tmp_path / "cache"),
        },
        augment=[{"name": "hello.shout", "copies": 2}],
        train={
            "epochs": 1,
            "batch_size": 8,
            "output_dir": str(tmp_path / "runs"),
            "progress": False,
            "eval_strategy": "no",
            "save_model": False,
        },
    )
    result = pipe.run()
    assert result.train["train_examples"] == 40 * 3
    assert result.train["data_report"]
    assert "accuracy" in result.metrics["test"]
