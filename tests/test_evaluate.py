"""augreg evaluate / augreg.evaluate_run: a finished run's saved model, evaluated again."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import augreg
from augreg.cli import app
from augreg.errors import AugregError

runner = CliRunner()


def _run(make: Callable[..., augreg.Pipeline], **kw: Any) -> Path:
    return make(**kw).run().run_dir


def test_old_run_gets_new_metrics_and_keeps_what_it_recorded(
    tiny_pipeline: Callable[..., augreg.Pipeline], sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = _run(
        tiny_pipeline,
        objectives=[augreg.create("core.label_smoothing", epsilon=0.2)],
    )
    path = run_dir / "metrics.json"
    recorded = json.loads(path.read_text())
    measured = {k: dict(v) for k, v in recorded["eval"].items()}
    # as a run made before roc_auc existed, with one figure that no longer matches
    for values in recorded["eval"].values():
        del values["roc_auc"]
    recorded["eval"]["test"]["accuracy"] = 0.123
    path.write_text(json.dumps(recorded))

    os.utime(path, (1_700_000_000, 1_700_000_000))  # finished long ago
    result = augreg.evaluate_run(run_dir)
    assert result.added == {"test": ["roc_auc"], "ood": ["roc_auc"]}
    assert path.stat().st_mtime == 1_700_000_000
    assert result.metrics["ood"]["roc_auc"] == pytest.approx(measured["ood"]["roc_auc"])
    assert result.metrics["test"]["accuracy"] == pytest.approx(measured["test"]["accuracy"])
    # the recorded accuracy is reported as differing and kept; the loss was measured with
    # label smoothing in the run and with cross-entropy now
    assert result.differs["test"]["accuracy"] == (0.123, result.metrics["test"]["accuracy"])
    assert "loss" in result.differs["test"] and "accuracy" not in result.differs.get("ood", {})
    after = json.loads(path.read_text())
    assert after["eval"]["test"]["accuracy"] == 0.123
    assert after["eval"]["test"]["roc_auc"] == result.metrics["test"]["roc_auc"]
    assert after["train"] == recorded["train"]  # the training record is untouched
    per_set = json.loads((run_dir / "metrics" / "ood.json").read_text())
    assert per_set["roc_auc"] == result.metrics["ood"]["roc_auc"]
    # once more: nothing new, the file is left as it is
    before = path.read_bytes()
    again = augreg.evaluate_run(run_dir)
    assert again.added == {} and path.read_bytes() == before


def test_new_evaluation_set_and_adapter_run(
    tiny_pipeline: Callable[..., augreg.Pipeline], sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    # core.freeze: the run folder holds only the trained tensors and the rebuild manifest
    run_dir = _run(tiny_pipeline, adapters=[{"name": "core.freeze", "layers": 1}])
    recorded = json.loads((run_dir / "metrics.json").read_text())["eval"]
    shifted = tmp_path / "shifted.jsonl"
    rows = [{"text": "the phone is great", "label": 1}, {"text": "the phone is awful", "label": 0}]
    shifted.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = augreg.evaluate_run(run_dir, {"shifted": shifted, "test": sentiment_files["test"]})
    assert set(result.metrics) == {"test", "shifted"}
    assert result.metrics["test"]["accuracy"] == pytest.approx(recorded["test"]["accuracy"])
    assert set(result.added) == {"shifted"}
    assert {"accuracy", "macro_f1", "roc_auc"} <= set(result.added["shifted"])
    after = json.loads((run_dir / "metrics.json").read_text())["eval"]
    assert after["ood"] == recorded["ood"] and "shifted" in after
    # write=False measures and writes nothing
    dry = augreg.evaluate_run(run_dir, {"shifted2": shifted}, write=False)
    assert "shifted2" in dry.metrics and dry.added == {}
    assert "shifted2" not in json.loads((run_dir / "metrics.json").read_text())["eval"]


def test_errors_name_the_fix_and_never_touch_the_record(
    tiny_pipeline: Callable[..., augreg.Pipeline], sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(AugregError, match="not a run folder"):
        augreg.evaluate_run(tmp_path)
    no_weights = _run(tiny_pipeline, train={"save_model": False})
    with pytest.raises(AugregError, match="save_model = false"):
        augreg.evaluate_run(no_weights)
    run_dir = _run(tiny_pipeline, train={"seed": 4})
    with pytest.raises(AugregError, match=r"no evaluation set given"):
        augreg.evaluate_run(run_dir, {})
    with pytest.raises(AugregError, match=r"missing\.jsonl"):
        augreg.evaluate_run(run_dir, {"gone": tmp_path / "missing.jsonl"})
    metrics = run_dir / "metrics.json"
    metrics.write_text('{"eval": {"test": ')  # cut short
    with pytest.raises(AugregError, match=r"not valid JSON.*nothing was written"):
        augreg.evaluate_run(run_dir)
    assert metrics.read_text() == '{"eval": {"test": '


def test_cli_evaluates_several_runs_and_fails_on_a_bad_one(
    tiny_pipeline: Callable[..., augreg.Pipeline], sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = _run(tiny_pipeline)
    before = (run_dir / "metrics.json").read_bytes()
    result = runner.invoke(app, ["evaluate", str(run_dir), str(tmp_path / "nothing"), "--no-write"])
    assert result.exit_code == 2
    assert "roc_auc" in result.output and "not a run folder" in result.output
    assert (run_dir / "metrics.json").read_bytes() == before
    extra = runner.invoke(
        app, ["evaluate", str(run_dir), "--eval", f"shifted={sentiment_files['ood']}"]
    )
    assert extra.exit_code == 0, extra.output
    assert "added to" in extra.output and "shifted" in extra.output
