"""augreg soup / augreg.soup_runs: weight averages of finished runs, evaluated like runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import augreg
from augreg.cli import app
from augreg.errors import AugregError

runner = CliRunner()


def _run(make: Callable[..., augreg.Pipeline], seed: int = 3, **kw: Any) -> Path:
    return make(train={"seed": seed}, **kw).run().run_dir


def _params(run: Path) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in augreg.load_model(run).state_dict().items()}


@pytest.fixture
def two_runs(tiny_pipeline: Callable[..., augreg.Pipeline]) -> tuple[Path, Path]:
    a = _run(tiny_pipeline)
    b = _run(tiny_pipeline, objectives=[augreg.create("core.label_smoothing", epsilon=0.2)])
    return a, b


def test_soup_is_the_weighted_average_and_is_evaluated_like_a_run(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = two_runs
    pa, pb = _params(a), _params(b)
    assert any(not torch.equal(pa[k], pb[k]) for k in pa)  # two different models
    soup = augreg.soup_runs([a, b], tmp_path / "soup", weights=[3, 1])
    assert soup.weights == [0.75, 0.25]
    got = _params(soup.run_dir)
    for k in pa:
        assert torch.allclose(got[k], 0.75 * pa[k] + 0.25 * pb[k], atol=1e-6), k
    # evaluated on the members' sets, recorded like a run (so evaluate and --adopt read it)
    assert set(soup.metrics) == {"test", "ood"}
    recorded = json.loads((soup.run_dir / "metrics.json").read_text())["eval"]
    assert recorded["ood"]["accuracy"] == soup.metrics["ood"]["accuracy"]
    again = augreg.evaluate_run(soup.run_dir, write=False)
    assert again.metrics["test"]["accuracy"] == pytest.approx(soup.metrics["test"]["accuracy"])
    record = json.loads((soup.run_dir / "soup.json").read_text())
    assert [m["weight"] for m in record["members"]] == [0.75, 0.25]
    assert record["members"][1]["components"]["objectives"][0]["name"] == "core.label_smoothing"
    config = (soup.run_dir / "config.yaml").read_text()
    assert "label_smoothing" not in config and "name: tiny-soup" in config
    # the members are untouched
    assert all(torch.equal(v, _params(a)[k]) for k, v in pa.items())


def test_a_soup_of_a_student_and_its_teacher_is_a_valid_run(
    tiny_pipeline: Callable[..., augreg.Pipeline], tmp_path: Path
) -> None:
    """A student distilled on unlabelled text, souped with its teacher: the soup's config
    keeps neither the unlabelled data nor a teacher stage (only the training used them), so
    it validates, and the soup is evaluated and loaded again like any run."""
    from augreg.host import default_host

    if default_host().find("objectives.distillation") is None:
        pytest.skip("augreg-objectives (objectives.distillation) is not installed")
    teacher = _run(tiny_pipeline)
    raw = tiny_pipeline().config.to_dict()
    raw["data"] = {**raw["data"], "train_size": 12, "unlabelled": "train:rest"}
    raw["objectives"] = [
        {"name": "objectives.distillation", "teacher": str(teacher), "unlabeled": True}
    ]
    raw["train"] = {**raw["train"], "seed": 3}
    student = augreg.Pipeline.from_validated(augreg.config.validate(raw)).run().run_dir
    soup = augreg.soup_runs([student, teacher], tmp_path / "soup")
    config = augreg.config.load_config(soup.run_dir / "config.yaml")
    assert config.data.unlabelled is None and config.objectives == [] and config.teacher is None
    again = augreg.evaluate_run(soup.run_dir, write=False)
    assert again.metrics["ood"]["accuracy"] == pytest.approx(soup.metrics["ood"]["accuracy"])


def test_equal_weights_by_default_and_a_soup_of_one_model_twice_is_that_model(
    tiny_pipeline: Callable[..., augreg.Pipeline], tmp_path: Path
) -> None:
    a = _run(tiny_pipeline)
    b = _run(tiny_pipeline)  # the same seed and config: the same model
    soup = augreg.soup_runs([a, b], tmp_path / "soup")
    assert soup.weights == [0.5, 0.5]
    pa, got = _params(a), _params(soup.run_dir)
    assert all(torch.allclose(got[k], pa[k], atol=1e-6) for k in pa)
    ref = json.loads((a / "metrics.json").read_text())["eval"]
    assert soup.metrics["ood"]["accuracy"] == pytest.approx(ref["ood"]["accuracy"])


def test_refusals_name_the_fix_and_write_nothing(
    tiny_pipeline: Callable[..., augreg.Pipeline], two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = two_runs
    other_seed = _run(tiny_pipeline, seed=4)
    frozen = _run(tiny_pipeline, adapters=[{"name": "core.freeze", "layers": 1}])
    cases: list[tuple[dict[str, Any], str]] = [
        ({"runs": [a]}, "at least two run folders"),
        ({"runs": [a, a]}, "given twice"),
        ({"runs": [a, tmp_path]}, "not a run folder"),
        ({"runs": [a, other_seed]}, "--any-seed"),
        ({"runs": [a, frozen]}, "augreg_adapters.merge"),
        ({"runs": [a, b], "weights": [1.0]}, "one weight per run"),
        ({"runs": [a, b], "weights": [1.0, -1.0]}, "positive"),
    ]
    for i, (kw, words) in enumerate(cases):
        target = tmp_path / f"soup{i}"
        with pytest.raises(AugregError, match=words.replace(".", r"\.")):
            augreg.soup_runs(kw.pop("runs"), target, **kw)
        assert not target.exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "config.yaml").write_text("keep me")
    with pytest.raises(AugregError, match=r"holds config\.yaml already"):
        augreg.soup_runs([a, b], busy)
    assert (busy / "config.yaml").read_text() == "keep me"
    notes = tmp_path / "notes"  # other files are kept beside the soup
    notes.mkdir()
    (notes / "notes.txt").write_text("keep me")
    augreg.soup_runs([a, b], notes, evaluate=False)
    assert (notes / "notes.txt").read_text() == "keep me" and (notes / "model").is_dir()
    # any_seed averages them anyway, without evaluating
    soup = augreg.soup_runs([a, other_seed], tmp_path / "any", any_seed=True, evaluate=False)
    assert soup.metrics == {} and not (soup.run_dir / "metrics.json").exists()


def test_cli_soup(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_runs
    result = runner.invoke(
        app,
        ["soup", str(a), str(b), "--out", str(tmp_path / "s"), "--weight", "1", "--weight", "1"],
    )
    assert result.exit_code == 0, result.output
    assert "augreg soup" in result.output and "ood" in result.output
    bad = runner.invoke(app, ["soup", str(a), "--out", str(tmp_path / "t")])
    assert bad.exit_code == 2 and "at least two" in bad.output


def test_greedy_soup_adds_runs_best_first_while_the_held_out_score_holds(
    tiny_pipeline: Callable[..., augreg.Pipeline],
    sentiment_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    a = _run(tiny_pipeline)
    b = _run(tiny_pipeline, objectives=[augreg.create("core.label_smoothing", epsilon=0.2)])
    c = _run(tiny_pipeline, regularize=[augreg.create("core.rdrop", weight=1.0)])
    held = {"dev": sentiment_files["ood"]}
    soup = augreg.greedy_soup([a, b, c], tmp_path / "greedy", held_out=held)
    choice = json.loads((soup.run_dir / "soup.json").read_text())["greedy"]
    assert choice["set"] == "dev" and choice["metric"] == "accuracy"
    steps = choice["steps"]
    # every run tried once, best alone first, and the first is always kept
    alone = {
        str(r.resolve()): augreg.evaluate_run(r, held, write=False).metrics["dev"]["accuracy"]
        for r in (a, b, c)
    }
    assert sorted(s["run"] for s in steps) == sorted(alone)
    assert [s["alone"] for s in steps] == [alone[s["run"]] for s in steps]
    assert steps[0]["alone"] == max(alone.values()) and steps[0]["kept"]
    # a run is kept exactly when the soup with it scores no worse than the soup before it
    best = steps[0]["soup"]
    for step in steps[1:]:
        assert step["kept"] == (step["soup"] >= best)
        best = max(best, step["soup"]) if step["kept"] else best
    kept = [s["run"] for s in steps if s["kept"]]
    assert [str(m.resolve()) for m in soup.members] == kept
    assert soup.weights == pytest.approx([1 / len(kept)] * len(kept))
    # the written soup is the chosen one: its held-out score is the last kept step's
    final = augreg.evaluate_run(soup.run_dir, held, write=False).metrics["dev"]["accuracy"]
    assert final == pytest.approx(best)
    assert set(soup.metrics) == {"test", "ood"}  # then measured on the members' own sets
    # a lower-is-better metric is minimised
    low = augreg.greedy_soup([a, b], tmp_path / "low", held_out=held, metric="loss")
    low_steps = json.loads((low.run_dir / "soup.json").read_text())["greedy"]["steps"]
    assert low_steps[0]["alone"] == min(s["alone"] for s in low_steps)
    with pytest.raises(AugregError, match="no 'brier'"):
        augreg.greedy_soup([a, b], tmp_path / "x", held_out=held, metric="brier")
    with pytest.raises(AugregError, match="one held-out set"):
        augreg.greedy_soup([a, b], tmp_path / "y", held_out={})


def test_cli_greedy_soup(
    two_runs: tuple[Path, Path], sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    a, b = two_runs
    dev = f"dev={sentiment_files['ood']}"
    ok = runner.invoke(app, ["soup", str(a), str(b), "--out", str(tmp_path / "g"), "--greedy", dev])
    assert ok.exit_code == 0, ok.output
    assert "kept" in ok.output and "accuracy on dev" in ok.output
    for extra, message in (
        (["--greedy", "dev"], "NAME=FILE"),
        (["--greedy", dev, "--weight", "1", "--weight", "2"], "drop --weight"),
        (["--metric", "loss"], "add --greedy"),
    ):
        bad = runner.invoke(app, ["soup", str(a), str(b), "--out", str(tmp_path / "h"), *extra])
        assert bad.exit_code == 2 and message in bad.output, bad.output
