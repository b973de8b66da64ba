"""augreg bench: run keys by data content, self-describing run configs, --adopt of finished runs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from augreg.bench import adopt_runs, config_hash, load_records, load_spec, run_bench, summarize
from augreg.bench.report import to_markdown
from augreg.cli import app
from augreg.config import load_config, validate
from augreg.errors import AugregError, ConfigError

runner = CliRunner()
TRAIN = {"epochs": 1, "batch_size": 8, "eval_strategy": "no", "logging_steps": 50}


def _raw(model: Path, data: dict[str, str], **train: Any) -> dict[str, Any]:
    """A pipeline config (file layout); ``data`` maps train/test/ood to paths."""
    return {
        "name": "tiny",
        "model": {"name": str(model), "max_length": 32},
        "data": {
            "train": data["train"],
            "test": data["test"],
            "eval": {"ood": data["ood"]},
            "train_size": 16,
        },
        "train": {**TRAIN, **train},
    }


def _plan_spec(tmp_path: Path, model: Path, files: dict[str, Path]) -> dict[str, Any]:
    """A bench spec (seeds 1 and 2, no variant) whose base is ``_raw`` on absolute paths."""
    return {
        "name": "tiny",
        "base": _raw(model, {k: str(v) for k, v in files.items()}),
        "seeds": [1, 2],
        "output_dir": str(tmp_path / "bench"),
    }


def _relative(files: dict[str, Path], start: Path) -> dict[str, str]:
    return {k: os.path.relpath(v, start) for k, v in files.items()}


def _run_folder(
    folder: Path, raw: dict[str, Any], *, accuracy: float = 0.75, finished: bool = True
) -> Path:
    """A fake finished run folder, as augreg run leaves it (config.yaml, metrics.json)."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    if finished:
        report = {
            "eval": {"test": {"accuracy": accuracy}, "ood": {"accuracy": accuracy - 0.1}},
            "train": {"wall_seconds": 3.0, "steps": 2, "train_examples": 16},
        }
        (folder / "metrics.json").write_text(json.dumps(report), encoding="utf-8")
    return folder


# -- the key: data by content ------------------------------------------------------------------


def test_hash_names_the_data_not_where_it_is(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    absolute = validate(_raw(tiny_seq_model, {k: str(v) for k, v in sentiment_files.items()}))
    elsewhere = tmp_path / "a" / "study"
    elsewhere.mkdir(parents=True)
    relative = validate(
        {**_raw(tiny_seq_model, _relative(sentiment_files, elsewhere)), "base_dir": str(elsewhere)}
    )
    assert relative.data.train.path != absolute.data.train.path
    assert config_hash(relative) == config_hash(absolute)
    # A copy of the data elsewhere (a moved checkout) keeps the key.
    moved = tmp_path / "moved"
    shutil.copytree(sentiment_files["train"].parent, moved)
    copied = validate(
        _raw(tiny_seq_model, {k: str(moved / v.name) for k, v in sentiment_files.items()})
    )
    assert config_hash(copied) == config_hash(absolute)
    # Other content under the same path is another run.
    train = moved / "train.jsonl"
    train.write_text(train.read_text().replace('"label": 1', '"label": 0', 1))
    os.utime(train, ns=(1, 1))  # mtime changed too, whatever the clock's resolution
    assert config_hash(copied) != config_hash(absolute)


def test_hash_of_a_missing_data_file_is_a_config_error(
    tiny_seq_model: Path, sentiment_files: dict[str, Path]
) -> None:
    cfg = validate(_raw(tiny_seq_model, {k: str(v) for k, v in sentiment_files.items()}))
    sentiment_files["ood"].unlink()
    with pytest.raises(ConfigError) as info:
        config_hash(cfg)
    assert "data.eval.ood: file not found:" in str(info.value)
    assert "ood.jsonl" in str(info.value) and "Check the path." in str(info.value)


# -- a run folder is self-describing; a finished run is adopted ----------------------------------


def test_run_config_is_absolute_and_a_finished_run_is_adopted_not_rerun(
    tiny_seq_model: Path,
    sentiment_files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import augreg

    study = tmp_path / "study"
    study.mkdir()
    config = study / "pipeline.yaml"
    raw = _raw(
        tiny_seq_model, _relative(sentiment_files, study), seed=2, output_dir=str(study / "runs")
    )
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = augreg.Pipeline.from_config(config).run()
    written = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert written["data"]["train"]["path"] == str(sentiment_files["train"].resolve())
    assert written["data"]["eval"]["ood"]["path"] == str(sentiment_files["ood"].resolve())
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    again = load_config(result.run_dir / "config.yaml")  # validates from another folder
    del written["base_dir"]
    assert validate(written).data.test == again.data.test  # the paths alone name the files
    assert config_hash(again) == config_hash(validate({**raw, "base_dir": str(study)}))

    spec = _plan_spec(tmp_path, tiny_seq_model, sentiment_files)
    plan = load_spec(spec)
    outcome = adopt_runs(plan, [study])
    key = f"{plan.base.hash}-s2"
    assert [run.key for run in outcome.adopted] == [key]
    assert outcome.per_variant() == {"base": [2]}
    record = load_records(plan.folder)[0][key]
    assert record["adopted_from"] == str(result.run_dir.resolve())
    assert record["metrics"] == result.metrics
    assert record["steps"] == result.train["steps"] and record["threads"] is None
    assert record["variants"] == ["base"] and record["seed"] == 2
    done = run_bench(load_spec(spec, seeds=[2]), isolate=False)
    assert done.ran == [] and done.already_done == 1  # the adopted run is not run again
    summary = summarize(plan, load_records(plan.folder)[0])
    assert summary["adopted"] == 1 and summary["runs"] == 1
    assert "1 of the 1 runs were adopted from finished run folders" in to_markdown(summary, [])


def test_adoption_skips_what_does_not_match_and_never_overwrites(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    plan = load_spec(_plan_spec(tmp_path, tiny_seq_model, sentiment_files))
    runs = tmp_path / "runs"
    rel = _relative(sentiment_files, runs / "x" / "s1")  # from a run folder two levels down
    _run_folder(runs / "match" / "s1", _raw(tiny_seq_model, rel, seed=1))
    _run_folder(runs / "match" / "s7", _raw(tiny_seq_model, rel, seed=7))
    _run_folder(runs / "other_lr" / "s1", _raw(tiny_seq_model, rel, seed=1, learning_rate=1e-3))
    _run_folder(runs / "copy" / "s1", _raw(tiny_seq_model, rel, seed=1))
    _run_folder(runs / "killed" / "s1", _raw(tiny_seq_model, rel, seed=1), finished=False)
    # a soup's config is its first member's without training components: not a run of it
    soup = _run_folder(runs / "soup" / "s1", _raw(tiny_seq_model, rel, seed=1))
    (soup / "soup.json").write_text('{"members": []}')
    (_run_folder(runs / "broken" / "s1", _raw(tiny_seq_model, rel)) / "metrics.json").write_text(
        "{"
    )
    (tmp_path / "study" / "configs").mkdir(parents=True)
    elsewhere = _relative(sentiment_files, tmp_path / "study" / "configs")
    _run_folder(runs / "moved" / "s2", _raw(tiny_seq_model, elsewhere, seed=2))
    # Seed 2 already has a record: adoption never replaces it.
    records = plan.folder / "runs"
    records.mkdir(parents=True)
    kept = records / f"{plan.base.hash}-s2.json"
    kept.write_text("not json, but a record all the same")

    outcome = adopt_runs(plan, [runs], write=False)
    reasons = {r: sorted(p.parent.name for p, _ in items) for r, items in outcome.skipped.items()}
    assert [(r.run_dir.parent.name, r.seed) for r in outcome.adopted] == [("copy", 1)]
    assert reasons == {
        "no match": ["other_lr"],
        "seed not in plan": ["match"],
        "duplicate": ["match"],
        "data not found": ["moved"],
        "unreadable": ["broken"],
        "unfinished": ["killed"],
        "model soup": ["soup"],
    }
    (detail,) = [d for _, d in outcome.skipped["no match"]]
    assert "train.learning_rate: 0.001 here, 5e-05 there" in detail
    (missing,) = [d for _, d in outcome.skipped["data not found"]]
    assert "train.jsonl is in none of:" in missing
    assert not (records / f"{plan.base.hash}-s1.json").exists()  # a dry run writes nothing

    # --adopt-base: relative paths that are not there from the run folder resolve from it.
    outcome = adopt_runs(plan, [runs], base=tmp_path / "study" / "configs")
    assert [r.seed for r in outcome.adopted] == [1]
    assert [p.parent.name for p, _ in outcome.skipped["already recorded"]] == ["moved"]
    assert kept.read_text() == "not json, but a record all the same"
    again = adopt_runs(plan, [runs], base=tmp_path / "study" / "configs")
    assert again.adopted == [] and len(again.skipped["already recorded"]) == 3
    with pytest.raises(AugregError, match=r"--adopt .*nowhere: no such folder"):
        adopt_runs(plan, [tmp_path / "nowhere"])
    with pytest.raises(AugregError, match=r"--adopt-base .*nowhere: no such folder"):
        adopt_runs(plan, [runs], base=tmp_path / "nowhere")


def test_readopting_adds_the_metrics_a_run_gained_and_changes_nothing_else(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    plan = load_spec(_plan_spec(tmp_path, tiny_seq_model, sentiment_files))
    raw = _raw(tiny_seq_model, {k: str(v) for k, v in sentiment_files.items()}, seed=1)
    run_dir = _run_folder(tmp_path / "runs" / "s1", raw)
    assert len(adopt_runs(plan, [tmp_path / "runs"]).adopted) == 1
    path = plan.folder / "runs" / f"{plan.base.hash}-s1.json"
    before = json.loads(path.read_text())
    # augreg evaluate added roc_auc to the run; a changed accuracy is not taken over
    report = json.loads((run_dir / "metrics.json").read_text())
    report["eval"]["test"].update(roc_auc=0.9, accuracy=0.5)
    report["eval"]["ood"]["roc_auc"] = 0.8
    (run_dir / "metrics.json").write_text(json.dumps(report))

    dry = adopt_runs(plan, [tmp_path / "runs"], write=False)
    assert dry.refreshed == {f"{plan.base.hash}-s1": ["test/roc_auc", "ood/roc_auc"]}
    assert json.loads(path.read_text()) == before
    spec = tmp_path / "bench.yaml"
    spec.write_text(yaml.safe_dump(_plan_spec(tmp_path, tiny_seq_model, sentiment_files)))
    result = runner.invoke(
        app, ["bench", str(spec), "--adopt", str(tmp_path / "runs"), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "would add metrics to 1 record(s) whose run folder has gained them: roc_auc" in (
        result.output
    )
    assert json.loads(path.read_text()) == before
    assert adopt_runs(plan, [tmp_path / "runs"]).refreshed == dry.refreshed
    after = json.loads(path.read_text())
    assert after["metrics"]["test"] == {"accuracy": 0.75, "roc_auc": 0.9}
    assert after["metrics"]["ood"]["roc_auc"] == 0.8
    assert {k: v for k, v in after.items() if k != "metrics"} == {
        k: v for k, v in before.items() if k != "metrics"
    }
    again = adopt_runs(plan, [tmp_path / "runs"])
    assert again.refreshed == {} and len(again.skipped["already recorded"]) == 1


def test_of_two_matching_runs_the_one_that_states_its_settings_is_adopted(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    # An older run lacks a setting added since (matched through today's default); a newer run
    # states it. Whichever folder is found first, the newer one is adopted.
    plan = load_spec(_plan_spec(tmp_path, tiny_seq_model, sentiment_files))
    files = {k: str(v) for k, v in sentiment_files.items()}
    stated = _raw(tiny_seq_model, files, seed=1, eval_batch_size=64)  # today's default
    older = _raw(tiny_seq_model, files, seed=1)
    assert config_hash(validate(stated)) == config_hash(validate(older))
    for order in (("a_old", "b_new"), ("b_old", "a_new")):
        runs = tmp_path / "-".join(order)
        for name in order:
            _run_folder(runs / name / "s1", older if name.endswith("old") else stated)
        outcome = adopt_runs(plan, [runs], write=False)
        (run,) = outcome.adopted
        assert run.run_dir.parent.name.endswith("new")
        assert [p.parent.name for p, _ in outcome.skipped["duplicate"]] == [
            n for n in order if n.endswith("old")
        ]


def test_cli_adopt_dry_run_shows_what_would_be_adopted(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    spec = tmp_path / "bench.yaml"
    spec.write_text(yaml.safe_dump(_plan_spec(tmp_path, tiny_seq_model, sentiment_files)))
    study = tmp_path / "study"
    rel = _relative(sentiment_files, study / "plain" / "s1")
    _run_folder(study / "plain" / "s1", _raw(tiny_seq_model, rel, seed=1))
    _run_folder(study / "plain" / "s3", _raw(tiny_seq_model, rel, seed=3))
    result = runner.invoke(app, ["bench", str(spec), "--adopt", str(study), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would adopt 1 run(s)" in result.output
    assert "skipped 1 run folder(s): seed not in plan 1" in result.output
    assert "1 run(s) to do, 1 done (1 by adoption)" in result.output
    assert not (tmp_path / "bench" / "runs").exists()
    result = runner.invoke(app, ["bench", str(spec), "--adopt-base", str(study), "--dry-run"])
    assert result.exit_code == 2 and "--adopt-base is for --adopt DIR" in result.output
