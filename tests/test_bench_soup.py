"""augreg bench soup variants: validation, members keep their models, the soup's record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from augreg.bench import load_records, load_spec, plan_jobs, run_bench, summarize
from augreg.cli import app
from augreg.errors import ConfigError
from augreg.model_io import load_model

runner = CliRunner()


def _spec(tmp_path: Path, model: Path, files: dict[str, Path], **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "tiny_soup",
        "base": {
            "name": "tiny",
            "model": {"name": str(model), "max_length": 32},
            "data": {"train": str(files["train"]), "train_size": 16},
            "train": {"epochs": 1, "batch_size": 8, "eval_strategy": "no", "logging_steps": 50},
        },
        "seeds": 1,
        "eval": {"test": str(files["test"]), "ood": str(files["ood"])},
        "variants": [
            {"name": "smooth", "add": [{"name": "core.label_smoothing", "epsilon": 0.2}]},
            {"name": "soup", "soup": ["plain", "smooth"]},
        ],
        "base_name": "plain",
        "output_dir": str(tmp_path / "bench"),
    }
    spec.update(extra)
    return spec


def test_soup_variants_are_validated_with_every_problem_at_once(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    raw = _spec(tmp_path, tiny_seq_model, sentiment_files)
    raw["variants"] += [
        {"name": "one", "soup": ["plain"]},
        {"name": "typo", "soup": ["plain", "smoth"]},
        {"name": "mixed", "soup": ["plain", "smooth"], "add": ["core.rdrop"]},
        {"name": "weights", "soup": ["plain", "smooth"], "soup_weights": [1.0]},
        {"name": "negative", "soup": ["plain", "smooth"], "soup_weights": [1.0, -1.0]},
        {"name": "nested", "soup": ["soup", "plain"]},
        {"name": "twice", "soup": ["plain", "plain"]},
        {"name": "lone_weights", "soup_weights": [1.0, 2.0]},
    ]
    with pytest.raises(ConfigError) as info:
        load_spec(raw, source="spec.toml")
    text = str(info.value)
    assert "variants[6] soup_weights: must be positive numbers, got [1.0, -1.0]" in text
    assert "name two or more variants to average" in text
    assert "'smoth' is not a trained variant of this bench. Did you mean 'smooth'?" in text
    assert "trains nothing itself; remove add" in text
    assert "1 weight(s) for 2 members" in text
    assert "'soup' is a soup; name trained variants" in text
    assert "names a variant twice" in text
    assert "soup_weights without soup" in text


def test_soup_plan_keys_and_order(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    raw = _spec(tmp_path, tiny_seq_model, sentiment_files, seeds=2)
    raw["variants"].append(
        {"name": "soup_heavy", "soup": ["plain", "smooth"], "soup_weights": [3, 1]}
    )
    plan = load_spec(raw)
    soup, heavy = plan.variant("soup"), plan.variant("soup_heavy")
    assert soup.is_soup and soup.soup_weights == (0.5, 0.5)
    assert heavy.soup_weights == (0.75, 0.25) and heavy.hash != soup.hash
    assert soup.components == ["soup(plain + smooth)"]
    assert "plain (0.50) and smooth (0.50)" in soup.description
    # Same members and weights (in another spelling): the same key.
    again = _spec(tmp_path, tiny_seq_model, sentiment_files)
    again["variants"][1]["soup_weights"] = [2, 2]
    assert load_spec(again).variant("soup").hash == soup.hash
    jobs = plan_jobs(plan)
    # Per seed: the trained runs first (saving their models), then the soups.
    assert [j.soup != () for j in jobs] == [False, False, True, True] * 2
    trained = {j.config_hash: j for j in jobs if not j.soup}
    assert all(j.config["train"]["save_model"] for j in trained.values())
    assert jobs[2].needs == [f"{plan.base.hash}-s1", f"{plan.variant('smooth').hash}-s1"]
    # Selecting a soup selects its members.
    only = plan_jobs(plan, ["soup"])
    assert {j.variants for j in only} == {("plain",), ("smooth",), ("soup",)}
    # A bench without soups saves no model.
    plain = load_spec(_spec(tmp_path, tiny_seq_model, sentiment_files, variants=[]))
    assert not any(j.config["train"]["save_model"] for j in plan_jobs(plain))


def test_soup_run_averages_the_members_models_and_adds_their_costs(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    plan = load_spec(_spec(tmp_path, tiny_seq_model, sentiment_files))
    outcome = run_bench(plan, isolate=False)
    assert not outcome.failed and len(outcome.ran) == 3
    records, _ = load_records(plan.folder)
    soup = records[f"{plan.variant('soup').hash}-s1"]
    members = [records[key] for key in soup["soup"]["members"]]
    assert [m["variants"] for m in members] == [["plain"], ["smooth"]]
    assert set(soup["metrics"]) == {"test", "ood"}
    assert soup["steps"] == sum(m["steps"] for m in members)
    assert soup["train_examples"] == sum(m["train_examples"] for m in members)
    assert soup["wall_seconds"] >= sum(m["wall_seconds"] for m in members)
    assert soup["peak_memory_mb"] == max(m["peak_memory_mb"] for m in members)
    assert soup["config"]["soup"][1] == {
        "variant": "smooth",
        "config_hash": plan.variant("smooth").hash,
        "weight": 0.5,
    }
    # The soup's weights are the mean of its members'.
    models = [load_model(m["run_dir"]).state_dict() for m in members]
    mine = load_model(soup["run_dir"]).state_dict()
    name = "classifier.weight"
    assert torch.allclose(mine[name], (models[0][name] + models[1][name]) / 2, atol=1e-6)
    assert not torch.equal(models[0][name], models[1][name])
    # The summary compares the soup with the base like any variant.
    summary = summarize(plan, records)
    row = next(v for v in summary["variants"] if v["name"] == "soup")
    assert row["seeds"] == [1] and row["sets"]["ood"]["diff"] is not None
    assert row["cost"]["wall_seconds_ratio"] > 1


def test_member_recorded_without_its_model_is_trained_again_for_the_soup(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    raw = _spec(tmp_path, tiny_seq_model, sentiment_files)
    soup_spec = raw["variants"].pop()
    first = load_spec(raw)  # no soup yet: the members keep no model
    run_bench(first, isolate=False)
    records, _ = load_records(first.folder)
    smooth_key = f"{first.variant('smooth').hash}-s1"
    assert not (Path(records[smooth_key]["run_dir"]) / "model").exists()
    before = (first.folder / "runs" / f"{smooth_key}.json").read_text(encoding="utf-8")
    raw["variants"].append(soup_spec)
    plan = load_spec(raw)
    outcome = run_bench(plan, isolate=False)
    assert outcome.ran == [f"{plan.variant('soup').hash}-s1"] and not outcome.failed
    records, _ = load_records(plan.folder)
    soup = records[outcome.ran[0]]
    assert soup["soup"]["models"][1].endswith(f"{smooth_key}.model")
    # The member's record is kept as it was; the retrained member gives the same figures.
    assert (plan.folder / "runs" / f"{smooth_key}.json").read_text(encoding="utf-8") == before
    again = json.loads((Path(soup["soup"]["models"][1]) / "metrics.json").read_text())
    assert again["eval"]["ood"]["accuracy"] == pytest.approx(
        records[smooth_key]["metrics"]["ood"]["accuracy"], abs=1e-6
    )


def test_soup_whose_member_failed_fails_with_the_member_named(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    plan = load_spec(_spec(tmp_path, tiny_seq_model, sentiment_files))
    jobs = plan_jobs(plan)
    member = jobs[1]
    # Only the base and the soup: the smooth member has no record.
    run_bench(
        load_spec(_spec(tmp_path, tiny_seq_model, sentiment_files, variants=[])), isolate=False
    )
    from augreg.bench.runner import execute

    with pytest.raises(Exception, match=f"member run {member.key} has no record"):
        execute(jobs[2])
    assert not jobs[2].record_path.exists()


def test_cli_bench_with_a_soup_in_two_processes(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(_spec(tmp_path, tiny_seq_model, sentiment_files)))
    dry = runner.invoke(app, ["bench", str(spec), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "soup(plain + smooth)" in dry.output and "3 run(s) to do" in dry.output
    result = runner.invoke(app, ["bench", str(spec), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    records, _ = load_records(tmp_path / "bench")
    assert len(records) == 3
    summary = (tmp_path / "bench" / "summary.md").read_text(encoding="utf-8")
    assert "| soup" in summary or "soup" in summary
    # Moving the members' models away: the soup is done, nothing runs again.
    for record in records.values():
        if "soup" not in record:
            shutil.rmtree(Path(record["run_dir"]) / "model")
    again = runner.invoke(app, ["bench", str(spec)])
    assert again.exit_code == 0 and "0 run(s) to do, 3 done" in again.output


def test_soup_components_show_unequal_weights(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    raw = _spec(tmp_path, tiny_seq_model, sentiment_files)
    raw["variants"][1]["soup_weights"] = [3, 1]
    assert load_spec(raw).variant("soup").components == ["soup(0.75 plain + 0.25 smooth)"]
