"""The command line: run, validate, plugins, augment, check-plugin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from augreg.cli import app

runner = CliRunner()


def _config(tmp_path: Path, model: Path, files: dict[str, Path], extra: str = "") -> Path:
    cfg = tmp_path / "pipe.toml"
    cfg.write_text(f"""
name = "cli"
[model]
name = "{model}"
max_length = 32
[data]
train = "{files["train"]}"
test = "{files["test"]}"
{extra}
[train]
epochs = 1
batch_size = 8
output_dir = "{tmp_path / "runs"}"
progress = false
eval_strategy = "no"
save_model = false
""")
    return cfg


def test_validate_ok_and_errors(
    tiny_seq_model: Path,
    sentiment_files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from augreg.host import reset_default_host

    good = _config(tmp_path, tiny_seq_model, sentiment_files)
    result = runner.invoke(app, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "is valid" in result.output
    bad = _config(
        tmp_path,
        tiny_seq_model,
        sentiment_files,
        extra='[[regularize]]\nname = "adversarial.fmg"\n[[augment]]\nname = "core.rdrop"\n',
    )
    # As on a machine where augreg-adversarial is not installed.
    monkeypatch.setenv("AUGREG_DISABLE_PLUGINS", "adversarial")
    reset_default_host()
    try:
        result = runner.invoke(app, ["validate", str(bad)])
    finally:
        monkeypatch.delenv("AUGREG_DISABLE_PLUGINS")
        reset_default_host()
    assert result.exit_code == 2
    assert "invalid (2 errors)" in result.output
    assert "pip install augreg-adversarial" in result.output
    assert "is a regularizer, not an augmenter" in result.output
    assert "move it to the regularize section" in result.output


def test_validate_reports_parse_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[model\nname = 1\n")
    result = runner.invoke(app, ["validate", str(broken)])
    assert result.exit_code == 2
    assert "cannot be parsed" in result.output


def test_plugins_lists_builtins_with_distribution() -> None:
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    names = {c["name"]: c for c in data["regularizer"]}
    assert names["core.rdrop"]["distribution"] == "augreg"
    assert {c["name"] for c in data["adapter"]} >= {"core.freeze"}


def test_run_prints_metrics_and_writes_run_folder(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    cfg = _config(tmp_path, tiny_seq_model, sentiment_files)
    result = runner.invoke(app, ["run", str(cfg), "--seed", "5", "--set", "train.epochs=2"])
    assert result.exit_code == 0, result.output
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("cli-s5-")
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2 * 5
    assert "accuracy" in result.output


def test_augment_with_a_component(sentiment_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "aug.jsonl"
    result = runner.invoke(
        app,
        [
            "augment",
            str(sentiment_files["test"]),
            str(out),
            "--component",
            "hello.shout",
            "--option",
            "copies=2",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 20 * 3
    assert {r["augreg_source"] for r in rows} == {"original", "hello.shout"}
    originals = {r["augreg_id"]: r for r in rows if r["augreg_source"] == "original"}
    for r in rows:
        if r["augreg_source"] != "original":
            assert r["label"] == originals[r["augreg_parent"]]["label"]


def test_augment_unknown_component(
    sentiment_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from augreg.host import reset_default_host

    # As on a machine where augreg-eda is not installed.
    monkeypatch.setenv("AUGREG_DISABLE_PLUGINS", "eda")
    reset_default_host()
    try:
        result = runner.invoke(
            app,
            [
                "augment",
                str(sentiment_files["test"]),
                str(tmp_path / "o.jsonl"),
                "--component",
                "eda.random_swap",
            ],
        )
    finally:
        monkeypatch.delenv("AUGREG_DISABLE_PLUGINS")
        reset_default_host()
    assert result.exit_code == 2
    assert "pip install augreg-eda" in result.output
    assert not (tmp_path / "o.jsonl").exists()
