"""augreg bench: spec validation, variants, resume, killed runs, statistics, reports, --jobs."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from augreg.bench import (
    load_records,
    load_spec,
    plan_jobs,
    run_bench,
    summarize,
    write_reports,
)
from augreg.bench.report import require_matplotlib
from augreg.bench.runner import execute, recipe_soup_entry, slots_for
from augreg.bench.stats import mean_ci, paired_test, t_quantile
from augreg.cli import app
from augreg.errors import AugregError, ConfigError
from augreg.host import PluginHost
from augreg.model_io import load_model

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _spec(tmp_path: Path, model: Path, files: dict[str, Path], **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "tiny",
        "base": {
            "name": "tiny",
            "model": {"name": str(model), "max_length": 32},
            "data": {"train": str(files["train"]), "train_size": 16},
            "train": {"epochs": 1, "batch_size": 8, "eval_strategy": "no", "logging_steps": 50},
        },
        "seeds": 1,
        "eval": {"test": str(files["test"]), "ood": str(files["ood"])},
        "variants": [{"name": "rdrop", "add": [{"name": "core.rdrop", "weight": 0.5}]}],
        "output_dir": str(tmp_path / "bench"),
    }
    spec.update(extra)
    return spec


# -- the spec ---------------------------------------------------------------------------------


def test_spec_structure_errors_reported_together(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    raw = _spec(
        tmp_path,
        tiny_seq_model,
        sentiment_files,
        seeds=0,
        variants=[{"name": "rdrop", "ad": ["core.rdrop"]}],
    )
    with pytest.raises(ConfigError) as info:
        load_spec(raw, source="spec.toml")
    text = str(info.value)
    assert text.startswith("augreg: spec.toml is invalid (2 errors)")
    assert "seeds: a number of seeds must be between 1 and 1000, got 0" in text
    assert "variants[0]: ad is not an option. Did you mean 'add'?" in text


def test_variant_errors_reported_together_with_closest_names(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    raw = _spec(tmp_path, tiny_seq_model, sentiment_files)
    raw["base"]["regularize"] = [{"name": "core.l2sp"}]
    raw["variants"] = [
        {"name": "typo", "add": ["core.rdorp"]},
        {"name": "gone", "remove": ["core.l2ps"]},
        {"name": "bad_value", "add": ["core.rdrop"], "replace": {"core.rdrop": {"weight": -1}}},
        {"name": "bad_key", "replace": {"trian": {"epochs": 2}}},
        {"name": "recipe", "recipe": "core_regularisers"},
        {"name": "typo", "add": ["core.rdrop"]},
    ]
    with pytest.raises(ConfigError) as info:
        load_spec(raw, source="spec.toml")
    text = str(info.value)
    assert "invalid (6 errors)" in text
    assert "variant 'typo' add[0] core.rdorp: unknown component. Did you mean 'core.rdrop'?" in text
    assert "variant 'gone' remove[0]: 'core.l2ps' is not a component of the base." in text
    assert "Did you mean 'core.l2sp'?" in text
    assert re.search(
        r"variant 'bad_value' regularize\[1\] core.rdrop \(augreg [^)]+\): weight", text
    )
    assert "variant 'bad_key' replace.trian: is neither train/data/model/task" in text
    assert "unknown recipe 'core_regularisers'. Did you mean 'core_regularizers'?" in text
    assert "variants[5]: name 'typo' is used twice (variants[0]); rename" in text


def test_variant_of_missing_plugin_names_install_or_is_skipped(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    host = PluginHost(env={"AUGREG_DISABLE_PLUGINS": "adversarial"})
    raw = _spec(
        tmp_path,
        tiny_seq_model,
        sentiment_files,
        variants=[
            {"name": "fgm", "add": ["adversarial.fgm"]},
            {"name": "rdrop", "add": ["core.rdrop"]},
        ],
    )
    with pytest.raises(ConfigError) as info:
        load_spec(raw, source="spec.toml", host=host)
    text = str(info.value)
    assert "variant 'fgm' add[0] adversarial.fgm: unknown component." in text
    assert "pip install augreg-adversarial" in text
    assert "skip_missing = true (--skip-missing)" in text
    plan = load_spec(raw, source="spec.toml", host=host, skip_missing=True)
    assert [v.name for v in plan.variants] == ["base", "rdrop"]
    assert plan.skipped == [
        ("fgm", "adversarial.fgm is not installed (pip install augreg-adversarial)")
    ]


def test_variants_add_remove_replace_recipe_and_ablate(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    raw = _spec(tmp_path, tiny_seq_model, sentiment_files, ablate=True, seeds=[3, 7])
    raw["base"]["regularize"] = [{"name": "core.embedding_noise", "std": 0.02}]
    raw["variants"] = [
        {"name": "rdrop", "add": [{"name": "core.rdrop", "weight": 0.5}]},
        {"name": "no_noise", "remove": ["core.embedding_noise"]},
        {
            "name": "tuned",
            "replace": {"core.embedding_noise": {"std": 0.1}, "train": {"learning_rate": 1e-4}},
        },
        {"name": "recipe", "recipe": "core_regularizers"},
        {"name": "smooth", "add": ["core.label_smoothing"]},
    ]
    plan = load_spec(raw, source="spec", spec_dir=tmp_path)
    v = {x.name: x for x in plan.variants}
    assert list(v) == [
        "base",
        "rdrop",
        "no_noise",
        "tuned",
        "recipe",
        "smooth",
        "without_core.embedding_noise",
    ]
    assert plan.seeds == [3, 7]
    assert v["rdrop"].components == ["core.embedding_noise", "core.rdrop"]
    assert v["rdrop"].config.regularize[1].options["weight"] == 0.5
    assert v["no_noise"].components == []
    assert v["tuned"].config.regularize[0].options["std"] == 0.1
    assert v["tuned"].config.train.learning_rate == 1e-4
    assert v["tuned"].config.train.epochs == 1  # merged, not replaced
    assert v["recipe"].components == [
        "core.label_smoothing",
        "core.embedding_noise",
        "core.rdrop",
        "core.l2sp",
    ]
    assert v["smooth"].config.objectives[0].name == "core.label_smoothing"
    # The ablation equals no_noise: same config, same hash, so the runs are shared.
    assert v["without_core.embedding_noise"].hash == v["no_noise"].hash
    assert len({x.hash for x in plan.variants}) == 6
    runs = plan.runs()
    assert len(runs) == 12  # 6 distinct configs x 2 seeds, seed-major
    assert [s for _, s, _ in runs[:6]] == [3] * 6
    assert ["no_noise", "without_core.embedding_noise"] in [names for _, _, names in runs]
    # Data paths are absolute: the run can go anywhere, and the hash names the data.
    assert Path(str(v["base"].config.data.train.path)).is_absolute()
    assert set(v["base"].config.data.eval) == {"ood"}


def test_config_hash_ignores_seed_and_bookkeeping(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    raw = _spec(tmp_path, tiny_seq_model, sentiment_files)
    plan = load_spec(raw)
    raw["base"]["train"].update(seed=5, output_dir="elsewhere", progress=False, run_name="x")
    assert load_spec(raw).base.hash == plan.base.hash
    raw["base"]["train"]["learning_rate"] = 1e-3
    assert load_spec(raw).base.hash != plan.base.hash


def test_data_options_added_later_leave_the_hash_alone_at_their_default(
    tiny_seq_model: Path, sentiment_files: dict[str, Path]
) -> None:
    # A run keyed before data.expand_first existed keeps its key; stating it changes the key.
    from augreg.bench.spec import HASHED_UNLESS_DEFAULT, config_hash, hashed_config
    from augreg.config import DataConfig, validate

    cfg = validate(
        {"model": {"name": str(tiny_seq_model)}, "data": {"train": str(sentiment_files["train"])}}
    )
    for key, default in HASHED_UNLESS_DEFAULT.items():
        assert DataConfig.model_fields[key].get_default(call_default_factory=True) == default
        assert key not in hashed_config(cfg)["data"]
    data = cfg.data.model_copy(update={"expand_first": ["counterfactual.negation"]})
    changed = cfg.model_copy(update={"data": data})
    assert hashed_config(changed)["data"]["expand_first"] == ["counterfactual.negation"]
    assert config_hash(changed) != config_hash(cfg)


def test_committed_sst2_spec_validates() -> None:
    if not (ROOT.parent / "shared" / "data").exists():
        pytest.skip("../shared/data is not beside the checkout")
    plan = load_spec(ROOT / "benchmarks" / "generalization" / "sst2_500.toml")
    names = [v.name for v in plan.variants]
    skipped = [name for name, _ in plan.skipped]  # a plugin not installed: skipped, named
    expected = [
        "plain",
        "label_smoothing",
        "rdrop",
        "l2sp",
        "embedding_noise",
        "eda",
        "fgm",
        "smart",
        "pgd",
        "freelb",
        "word_substitution",
        "supervised_contrastive",
        "simcse",
        "uda",
        "lora",
        "core_regularizers",
        "small_data",
        "negation",
    ]
    assert [n for n in expected if n not in skipped] == names
    assert not set(skipped) & set(names)
    assert plan.seeds == [1, 2, 3, 4, 5]
    assert plan.metric == "accuracy"
    assert plan.base.components == []
    assert plan.base.config.data.train_size == 500
    assert plan.base.config.data.test is not None
    assert str(plan.base.config.data.test.path).endswith("sst2/test.jsonl")
    assert list(plan.base.config.data.eval) == ["cr"]


def _plan_sharing_sst2_500(file: str, expected: list[str], seeds: int = 5) -> dict[str, Any]:
    """The variants of a committed spec that must share sst2_500's base runs, by name."""
    if not (ROOT.parent / "shared" / "data").exists():
        pytest.skip("../shared/data is not beside the checkout")
    folder = ROOT / "benchmarks" / "generalization"
    plan = load_spec(folder / file)
    # Same base config and seeds: `--adopt` takes sst2_500's plain runs as they are.
    assert plan.base.hash == load_spec(folder / "sst2_500.toml").base.hash
    assert plan.seeds == list(range(1, seeds + 1))  # sst2_500's seeds first, paired alike
    skipped = [name for name, _ in plan.skipped]
    assert [n for n in expected if n not in skipped] == [v.name for v in plan.variants]
    return {v.name: v for v in plan.variants}


def test_committed_layerwise_spec_shares_the_plain_runs_of_sst2_500() -> None:
    by_name = _plan_sharing_sst2_500(
        "sst2_500_layerwise.toml",
        [
            "plain",
            "head_lr_20",
            "layer_decay_0.8",
            "layer_decay_0.8_head_lr_20",
            "small_data_head_lr_20",
        ],
    )
    assert list(by_name["head_lr_20"].components) == ["core.layerwise_lr"]


def test_committed_counterfactual_spec_shares_the_plain_runs_of_sst2_500() -> None:
    by_name = _plan_sharing_sst2_500(
        "sst2_500_counterfactual.toml",
        [
            "plain",
            "negation",
            "negation_of_negatives",
            "small_data",
            "negation_small_data",
            "negation_first_small_data",
        ],
        seeds=10,
    )
    if "small_data" in by_name:  # sst2_500's variant: its runs are adopted as they are
        sst2_500 = load_spec(ROOT / "benchmarks" / "generalization" / "sst2_500.toml")
        assert by_name["small_data"].hash == sst2_500.variant("small_data").hash
    assert all(
        load_spec(ROOT / "benchmarks" / "generalization" / f).also_metrics == ["roc_auc"]
        for f in ("sst2_500.toml", "sst2_500_counterfactual.toml", "sst2_500_layerwise.toml")
    )
    if "negation_small_data" in by_name:
        cfg = by_name["negation_small_data"].config
        assert [s.name for s in cfg.augment] == [
            "counterfactual.negation",
            "adversarial.word_substitution",
        ]
        assert cfg.data.augmentation == "per_epoch" and cfg.data.keep_original is False
        assert cfg.data.expand_first == []
    if "negation_first_small_data" in by_name:
        cfg = by_name["negation_first_small_data"].config
        assert cfg.data.expand_first == ["counterfactual.negation"]


def test_committed_soup_spec_shares_its_members_with_sst2_500() -> None:
    by_name = _plan_sharing_sst2_500(
        "sst2_500_soup.toml",
        [
            "plain",
            "small_data",
            "negation",
            "soup",
            "soup_2to1",
            "soup_plain_small_data",
            "soup_all",
            "fgm",
            "soup_fgm_negation",
            "soup_small_data_fgm_negation",
            "small_data_fgm",
            "soup_small_data_fgm_negation_2to1",
            "soup_small_data_fgm_negation_1to1",
            "soup_four",
            "negation_fgm",
            "soup_small_data_negation_fgm_2to1",
            "soup_small_data_negation_fgm_1to1",
            "soup_small_data_fgm_negation_fgm_2to1",
            "small_data_freelb",
            "soup_three",
            "soup_small_data_freelb_negation_fgm_2to1",
        ],
        seeds=10,
    )
    folder = ROOT / "benchmarks" / "generalization"
    sst2_500 = load_spec(folder / "sst2_500.toml")
    for name in ("small_data", "negation", "fgm"):
        if name in by_name:  # the same runs as sst2_500's (and the counterfactual bench's)
            assert by_name[name].hash == sst2_500.variant(name).hash
    if "soup" in by_name:
        assert by_name["soup"].soup == ("small_data", "negation")
        assert by_name["soup_2to1"].soup_weights == pytest.approx((2 / 3, 1 / 3))


# -- recipes ----------------------------------------------------------------------------------


def test_recipe_in_a_pipeline_config(
    tiny_seq_model: Path, sentiment_files: dict[str, Path]
) -> None:
    import augreg
    from augreg.config import validate

    raw = {
        "model": {"name": str(tiny_seq_model)},
        "data": {"train": str(sentiment_files["train"])},
        "regularize": ["core.embedding_noise"],
        "recipe": "core_regularizers",
    }
    cfg = validate(raw)
    assert [s.name for s in cfg.objectives] == ["core.label_smoothing"]
    assert [s.name for s in cfg.regularize] == ["core.embedding_noise", "core.rdrop", "core.l2sp"]
    assert cfg.regularize[1].options["weight"] == 1.0
    assert "recipe" not in cfg.to_dict()  # the resolved config names every component
    with pytest.raises(ConfigError, match=r"unknown recipe 'core_reg'\. Did you mean"):
        validate({**raw, "recipe": ["core_reg"]})
    recipe = augreg.recipes.get("core_regularizers")
    assert recipe.sections() == {
        "objectives": [{"name": "core.label_smoothing", "epsilon": 0.1}],
        "regularize": [
            {"name": "core.rdrop", "weight": 1.0},
            {"name": "core.l2sp", "weight": 0.01},
        ],
    }
    with pytest.raises(ValueError, match="already registered"):
        augreg.recipes.register(recipe)
    with pytest.raises(augreg.recipes.UnknownRecipeError, match="Did you mean 'core_regularizers'"):
        augreg.recipes.get("core_regularizer")


def test_recipe_with_uninstalled_component_is_reported(
    tiny_seq_model: Path, sentiment_files: dict[str, Path]
) -> None:
    from augreg import recipes
    from augreg.config import validate

    recipe = recipes.Recipe("needs_fgm_test", "test recipe", (("adversarial.fgm", {}),))
    recipes.register(recipe, replace=True)
    host = PluginHost(env={"AUGREG_DISABLE_PLUGINS": "adversarial"})
    raw = {
        "model": {"name": str(tiny_seq_model)},
        "data": {"train": str(sentiment_files["train"])},
        "recipe": "needs_fgm_test",
    }
    with pytest.raises(ConfigError) as info:
        validate(raw, host=host)
    assert "recipe 'needs_fgm_test' adversarial.fgm: needs a component that is not installed" in (
        str(info.value)
    )
    assert "pip install augreg-adversarial" in str(info.value)


def _register_settings_test() -> None:
    """A test recipe with data and train settings (``settings_test``)."""
    from augreg import recipes

    recipes.register(
        recipes.Recipe(
            "settings_test",
            "test recipe",
            (("core.label_smoothing", {"epsilon": 0.2}),),
            settings={
                "data": {"augmentation": "per_epoch", "keep_original": False},
                "train": {"epochs": 2},
            },
        ),
        replace=True,
    )


def test_recipe_settings_fill_what_the_config_leaves_unset(
    tiny_seq_model: Path, sentiment_files: dict[str, Path]
) -> None:
    import augreg
    from augreg import recipes
    from augreg.config import DataConfig, validate

    _register_settings_test()
    raw = {
        "model": {"name": str(tiny_seq_model)},
        "data": {"train": str(sentiment_files["train"]), "keep_original": True},
        "recipe": "settings_test",
    }
    cfg = validate(raw)
    assert cfg.data.augmentation == "per_epoch"  # unset: the recipe's
    assert cfg.data.keep_original is True  # stated by the config: the config's
    assert cfg.train.epochs == 2
    assert [s.name for s in cfg.objectives] == ["core.label_smoothing"]
    # In code, a DataConfig instance counts only the options it was given.
    data = DataConfig(train=str(sentiment_files["train"]))
    pipe = augreg.Pipeline(str(tiny_seq_model), data=data, recipe="settings_test")
    assert pipe.config.data.augmentation == "per_epoch"
    assert pipe.config.train.epochs == 2
    assert [type(c).name for c in pipe.components["objectives"]] == ["core.label_smoothing"]
    # Two recipes that set one option differently: an error naming both and the fix.
    recipes.register(
        recipes.Recipe(
            "settings_test_other",
            "test recipe",
            (("core.rdrop", {}),),
            settings={"train": {"epochs": 3}},
        ),
        replace=True,
    )
    with pytest.raises(ConfigError) as info:
        validate({**raw, "recipe": ["settings_test", "settings_test_other"]})
    text = str(info.value)
    assert "sets train.epochs = 3, but recipe 'settings_test' sets 2" in text
    assert "state train.epochs in the config to choose" in text
    ok = validate(
        {**raw, "recipe": ["settings_test", "settings_test_other"], "train": {"epochs": 4}}
    )
    assert ok.train.epochs == 4
    # A multi-task config takes data options per task: the recipe's are not spread over them.
    multi = {
        "model": {"name": str(tiny_seq_model)},
        "tasks": [
            {"name": "a", "data": {"train": str(sentiment_files["train"])}},
            {"name": "b", "data": {"train": str(sentiment_files["train"])}},
        ],
        "recipe": "settings_test",
    }
    with pytest.raises(ConfigError, match="which a multi-task config takes per task"):
        validate(multi)


def test_bench_recipe_settings_fill_what_the_base_file_leaves_unset(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:

    _register_settings_test()
    variants = [{"name": "r", "recipe": "settings_test"}]
    plan = load_spec(_spec(tmp_path, tiny_seq_model, sentiment_files, variants=variants))
    cfg = plan.variant("r").config
    assert cfg.data.augmentation == "per_epoch"  # the base file leaves it unset
    assert cfg.train.epochs == 1  # the base file states it
    assert plan.base.config.data.augmentation == "offline"


def test_small_data_recipe(tiny_seq_model: Path, sentiment_files: dict[str, Path]) -> None:
    from augreg import recipes
    from augreg.config import validate

    recipe = recipes.get("small_data")
    assert recipe.specs() == [
        {"name": "adversarial.word_substitution"},
        {"name": "core.label_smoothing", "epsilon": 0.1},
    ]
    assert dict(recipe.settings["data"]) == {"augmentation": "per_epoch", "keep_original": False}
    assert "+0.96" in recipe.description and "does not reach" in recipe.description
    pytest.importorskip("augreg_adversarial")
    cfg = validate(
        {
            "model": {"name": str(tiny_seq_model)},
            "data": {"train": str(sentiment_files["train"])},
            "recipe": "small_data",
        }
    )
    assert [s.name for s in cfg.augment] == ["adversarial.word_substitution"]
    assert cfg.data.augmentation == "per_epoch" and cfg.data.keep_original is False


def test_recipe_settings_are_checked() -> None:
    from augreg import recipes

    with pytest.raises(ValueError, match="settings may name the sections data, train, not 'model'"):
        recipes.Recipe("bad", "x", (("core.rdrop", {}),), settings={"model": {"max_length": 8}})
    with pytest.raises(ValueError, match=r"settings\['data'\] must map option names to values"):
        recipes.Recipe("bad", "x", (("core.rdrop", {}),), settings={"data": "per_epoch"})  # type: ignore[dict-item]
    r = recipes.Recipe("ok", "x", (("core.rdrop", {}),), settings={"data": {"balanced": True}})
    with pytest.raises(TypeError):
        r.settings["data"]["balanced"] = False  # type: ignore[index]


# -- the seed ---------------------------------------------------------------------------------


def test_seed_changes_training_subset(
    tiny_seq_model: Path, sentiment_files: dict[str, Path]
) -> None:
    from augreg.config import validate
    from augreg.data import load_data

    def subset(seed: int) -> list[str]:
        cfg = validate(
            {
                "model": {"name": str(tiny_seq_model)},
                "data": {"train": str(sentiment_files["train"]), "train_size": 6},
                "train": {"seed": seed},
            }
        )
        return sorted(load_data(cfg).train["augreg_id"])

    assert subset(1) == subset(1)
    assert subset(1) != subset(2)


# -- running ----------------------------------------------------------------------------------


def test_resume_runs_nothing_twice_and_adding_a_seed_runs_only_it(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    raw = _spec(tmp_path, tiny_seq_model, sentiment_files)
    plan = load_spec(raw)
    first = run_bench(plan, isolate=False)
    assert len(first.ran) == 2 and not first.failed
    records, warnings = load_records(plan.folder)
    assert not warnings
    rec = records[f"{plan.base.hash}-s1"]
    assert set(rec["metrics"]) == {"test", "ood"}
    assert 0.0 <= rec["metrics"]["ood"]["accuracy"] <= 1.0
    assert rec["seed"] == 1 and rec["config_hash"] == plan.base.hash
    assert rec["train_examples"] == 16 and rec["extra_passes"] == 0
    assert records[f"{plan.variant('rdrop').hash}-s1"]["extra_passes"] == 1.0
    for key in ("wall_seconds", "seconds_per_step", "peak_memory_mb"):
        assert rec[key] > 0
    again = run_bench(plan, isolate=False)
    assert again.ran == [] and again.already_done == 2
    more = load_spec(raw, seeds=[1, 2])
    third = run_bench(more, isolate=False)
    assert sorted(third.ran) == sorted([f"{more.base.hash}-s2", f"{more.variant('rdrop').hash}-s2"])
    assert third.already_done == 2
    # The seed changes the run: the same config trains another subset in another order.
    records, _ = load_records(plan.folder)
    assert records[f"{plan.base.hash}-s1"]["run_dir"] != records[f"{plan.base.hash}-s2"]["run_dir"]


def test_interrupted_run_leaves_no_finished_record(
    tiny_seq_model: Path,
    sentiment_files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import augreg.pipeline

    plan = load_spec(_spec(tmp_path, tiny_seq_model, sentiment_files, variants=[]))
    real_run = augreg.pipeline.Pipeline.run

    def killed(self: Any, output_dir: Any = None, **kwargs: Any) -> Any:
        folder = self.run_dir(output_dir)
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text("{")  # half written, as when killed
        raise KeyboardInterrupt

    monkeypatch.setattr(augreg.pipeline.Pipeline, "run", killed)
    with pytest.raises(KeyboardInterrupt):
        run_bench(plan, isolate=False)
    (job,) = plan_jobs(plan)
    assert job.run_dir.exists() and not job.record_path.exists()
    assert load_records(plan.folder)[0] == {}
    monkeypatch.setattr(augreg.pipeline.Pipeline, "run", real_run)
    outcome = run_bench(plan, isolate=False)
    assert outcome.ran == [job.key]
    assert json.loads((job.run_dir / "metrics.json").read_text())["eval"]["test"]


def test_killed_run_process_leaves_no_record(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    import multiprocessing as mp

    raw = _spec(tmp_path, tiny_seq_model, sentiment_files, variants=[])
    raw["base"]["train"]["epochs"] = 500  # long enough to be killed while training
    plan = load_spec(raw)
    (job,) = plan_jobs(plan)
    Path(job.folder).mkdir(parents=True)
    proc = mp.get_context("spawn").Process(target=execute, args=(job,))
    proc.start()
    deadline = time.monotonic() + 120
    while not (job.run_dir / "config.yaml").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.kill()
    proc.join()
    assert (job.run_dir / "config.yaml").exists(), "the run never started"
    assert not job.record_path.exists()
    assert job.key not in load_records(plan.folder)[0]


def test_one_invocation_per_bench_folder(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    fcntl = pytest.importorskip("fcntl")
    from augreg.errors import AugregError

    plan = load_spec(_spec(tmp_path, tiny_seq_model, sentiment_files, variants=[]))
    plan.folder.mkdir(parents=True)
    with (plan.folder / "bench.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another invocation does
        with pytest.raises(AugregError, match="another augreg bench is running"):
            run_bench(plan, isolate=False)
    assert load_records(plan.folder)[0] == {}


def test_failed_run_is_reported_and_not_counted(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    raw = _spec(tmp_path, tiny_seq_model, sentiment_files, variants=[])
    plan = load_spec(raw)
    sentiment_files["test"].unlink()  # the run fails loading its data
    outcome = run_bench(plan, isolate=False)
    (key,) = outcome.failed
    assert "test.jsonl" in outcome.failed[key]
    assert (plan.folder / "runs" / f"{key}.error.txt").exists()
    assert load_records(plan.folder)[0] == {}


def test_slots_split_cpu_threads_or_pin_one_run_per_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert slots_for(2, gpus=[]) == [(None, 4), (None, 4)]
    assert slots_for(1, gpus=[]) == [(None, None)]
    assert slots_for(3, gpus=["0", "1"]) == [("0", None), ("1", None)]
    with pytest.raises(ValueError):
        slots_for(0, gpus=[])


# -- statistics and reports -------------------------------------------------------------------


def test_statistics_match_hand_computed_values() -> None:
    est = mean_ci([80.0, 82.0, 84.0])
    assert est.mean == 82.0 and est.std == 2.0
    half = 4.302652729749464 * 2.0 / math.sqrt(3)  # t(0.975, df=2) * s / sqrt(n)
    assert est.low == pytest.approx(82.0 - half) and est.high == pytest.approx(82.0 + half)
    test = paired_test([81.0, 83.0, 86.0], [80.0, 82.0, 84.0])
    assert test.estimate.mean == pytest.approx(4 / 3)
    assert test.t == pytest.approx(4.0)  # (4/3) / (0.57735 / sqrt 3)
    # With 2 degrees of freedom, P(|T| > t) = 1 - t / sqrt(2 + t^2).
    assert test.p == pytest.approx(1 - 4 / math.sqrt(18), rel=1e-9)
    assert paired_test([1.0, 2.0], [1.0, 2.0]).p == 1.0
    assert paired_test([1.0], [0.0]).p is None
    with pytest.raises(ValueError):
        paired_test([1.0], [1.0, 2.0])


def test_statistics_agree_with_scipy_and_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    stats = pytest.importorskip("scipy.stats")
    a = [0.81, 0.79, 0.845, 0.80, 0.83, 0.815]
    b = [0.80, 0.80, 0.83, 0.79, 0.81, 0.80]
    expected = stats.ttest_rel(a, b)
    with_scipy = paired_test(a, b)
    assert with_scipy.p == pytest.approx(float(expected.pvalue), rel=1e-9)
    monkeypatch.setitem(sys.modules, "scipy", None)  # as if scipy were not installed
    without = paired_test(a, b)
    assert without.p == pytest.approx(float(expected.pvalue), rel=1e-9)
    for df in (1, 2, 4, 9, 30):
        assert t_quantile(0.975, df) == pytest.approx(float(stats.t.ppf(0.975, df)), rel=1e-9)


def _fake_records(
    plan: Any,
    values: dict[str, list[float]],
    walls: dict[str, list[float]],
    loads: dict[str, float] | None = None,
) -> None:
    folder = plan.folder / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    for v in plan.variants:
        for seed, acc, wall in zip(plan.seeds, values[v.name], walls[v.name], strict=True):
            key = f"{v.hash}-s{seed}"
            record = {
                "key": key,
                "config_hash": v.hash,
                "seed": seed,
                "metrics": {"test": {"accuracy": acc}, "ood": {"accuracy": acc - 0.1}},
                "wall_seconds": wall,
                "seconds_per_step": wall / 10,
                "peak_memory_mb": 100.0 if v.name == "base" else 150.0,
                "train_examples": 16,
                "extra_passes": 0.0 if v.name == "base" else 1.0,
                "steps": 10,
            }
            if loads is not None:
                record.update(load_average=loads[v.name], cpu_count=2)
            (folder / f"{key}.json").write_text(json.dumps(record))


def test_summary_statistics_per_variant_and_set(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    plan = load_spec(_spec(tmp_path, tiny_seq_model, sentiment_files, seeds=3))
    _fake_records(
        plan,
        {"base": [0.80, 0.82, 0.84], "rdrop": [0.81, 0.83, 0.86]},
        {"base": [10.0, 12.0, 11.0], "rdrop": [20.0, 24.0, 22.0]},
    )
    summary = summarize(plan, load_records(plan.folder)[0])
    assert summary["sets"] == ["test", "ood"]
    base, rdrop = summary["variants"]
    assert base["sets"]["test"]["mean"] == pytest.approx(82.0)
    assert base["sets"]["test"]["std"] == pytest.approx(2.0)
    assert base["sets"]["test"]["diff"] is None
    assert base["sets"]["ood"]["mean"] == pytest.approx(72.0)
    d = rdrop["sets"]["test"]["diff"]
    assert d["mean"] == pytest.approx(4 / 3) and d["seeds"] == [1, 2, 3]
    assert d["p"] == pytest.approx(0.0571909584179366, rel=1e-6)
    assert rdrop["cost"]["wall_seconds_ratio"] == pytest.approx(2.0)
    assert rdrop["cost"]["peak_memory_mb_ratio"] == pytest.approx(1.5)
    # A missing seed: the pair is dropped, the rest still compared.
    (plan.folder / "runs" / f"{plan.variant('rdrop').hash}-s3.json").unlink()
    partial = summarize(plan, load_records(plan.folder)[0])["variants"][1]["sets"]["test"]
    assert partial["n"] == 2 and partial["diff"]["seeds"] == [1, 2]


def test_also_metrics_get_their_own_glance_table(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    from augreg.bench.report import to_markdown as markdown

    raw = _spec(
        tmp_path, tiny_seq_model, sentiment_files, seeds=3, also_metrics=["roc_auc", "brier"]
    )
    plan = load_spec(raw)
    assert plan.also_metrics == ["roc_auc", "brier"]
    _fake_records(
        plan,
        {"base": [0.80, 0.82, 0.84], "rdrop": [0.81, 0.83, 0.86]},
        {"base": [10.0, 12.0, 11.0], "rdrop": [20.0, 24.0, 22.0]},
    )
    # roc_auc on the test set only; rdrop ranks worse on every seed although more accurate
    aucs = {"base": [0.90, 0.91, 0.92], "rdrop": [0.88, 0.90, 0.90]}
    for v in plan.variants:
        for seed, auc in zip(plan.seeds, aucs[v.name], strict=True):
            path = plan.folder / "runs" / f"{v.hash}-s{seed}.json"
            record = json.loads(path.read_text())
            record["metrics"]["test"]["roc_auc"] = auc
            path.write_text(json.dumps(record))
    summary = summarize(plan, load_records(plan.folder)[0])
    rdrop = summary["variants"][1]
    assert rdrop["sets"]["test"]["diff"]["mean"] == pytest.approx(4 / 3)
    assert rdrop["also"]["roc_auc"]["test"]["diff"]["mean"] == pytest.approx(-5 / 3)
    assert "ood" not in rdrop["also"]["roc_auc"] and rdrop["also"]["brier"] == {}
    md = markdown(summary)
    assert md.index("## at a glance: paired") < md.index("## at a glance, roc_auc: paired")
    assert "| rdrop | 3/3 | -1.67 (p=0.038) |  | 2.00 |" in md
    assert "No run reports brier (also_metrics)" in md
    assert "at a glance, brier" not in md and "Also at a glance: roc_auc, brier" in md
    # the primary metric is not repeated, and a name listed twice is an error
    assert load_spec({**raw, "also_metrics": ["accuracy"]}).also_metrics == []
    with pytest.raises(ConfigError, match="name each metric once"):
        load_spec({**raw, "also_metrics": ["roc_auc", "roc_auc"]})


def test_time_ratios_under_unlike_loads_are_marked(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    from augreg.bench.report import to_markdown as markdown

    plan = load_spec(_spec(tmp_path, tiny_seq_model, sentiment_files, seeds=3))
    walls = {"base": [10.0, 12.0, 11.0], "rdrop": [20.0, 24.0, 22.0]}
    values = {"base": [0.80, 0.82, 0.84], "rdrop": [0.81, 0.83, 0.86]}
    _fake_records(plan, values, walls, loads={"base": 1.0, "rdrop": 2.2})  # 2 CPUs
    summary = summarize(plan, load_records(plan.folder)[0])
    rdrop = summary["variants"][1]["cost"]
    assert rdrop["load_average"] == 2.2 and rdrop["load_differs"] is True
    md = markdown(summary)
    assert "| rdrop | 3/3 | +1.33 (p=0.057) | +1.33 (p=0.057) | 2.00* |" in md
    assert "median 1-minute load average: base 1.00; rdrop 2.20; 2 CPUs" in md
    # Loads within a quarter of the CPUs: no mark, no note.
    _fake_records(plan, values, walls, loads={"base": 1.0, "rdrop": 1.4})
    similar = summarize(plan, load_records(plan.folder)[0])
    assert similar["variants"][1]["cost"]["load_differs"] is False
    assert "2.00*" not in markdown(similar) and "load average" not in markdown(similar)
    # Records without a load (adopted, or older): nothing to compare, no mark.
    _fake_records(plan, values, walls)
    unknown = summarize(plan, load_records(plan.folder)[0])
    assert unknown["variants"][1]["cost"]["load_differs"] is None


def test_load_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    from augreg.bench.runner import LoadSampler

    loads = iter([1.0, 2.0, 3.0, 3.0, 3.0, 3.0])
    monkeypatch.setattr(os, "getloadavg", lambda: (next(loads), 0.0, 0.0), raising=False)
    with LoadSampler(interval=0.05) as sampler:
        time.sleep(0.08)  # one sample in between
    assert sampler.samples[:2] == [1.0, 2.0] and len(sampler.samples) >= 3
    assert sampler.value == round(sum(sampler.samples) / len(sampler.samples), 2)

    def missing() -> tuple[float, float, float]:
        raise OSError("no load average here")

    monkeypatch.setattr(os, "getloadavg", missing, raising=False)
    with LoadSampler(interval=0.01) as none:
        time.sleep(0.02)
    assert none.value is None and none.samples == []


def test_reports_write_markdown_and_html_with_embedded_plots(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    plan = load_spec(_spec(tmp_path, tiny_seq_model, sentiment_files, seeds=3))
    _fake_records(
        plan,
        {"base": [0.80, 0.82, 0.84], "rdrop": [0.81, 0.83, 0.86]},
        {"base": [10.0, 12.0, 11.0], "rdrop": [20.0, 24.0, 22.0]},
    )
    summary, paths = write_reports(plan)
    assert summary["sets"] == ["test", "ood"]
    md = paths["summary.md"].read_text()
    assert (
        "| rdrop | 3/3 | 83.33 ± 2.52 | [77.08, 89.58] | +1.33 | [-0.10, 2.77] | 0.057 | 2.00 "
        "| 1.50 |" in md
    )
    assert "## ood" in md and "![metric.png](plots/metric.png)" in md
    # the first table: every set's paired difference in one row per variant
    assert md.index("## at a glance") < md.index("## test")
    assert "| variant | runs | test: Δ vs base (p) | ood: Δ vs base (p) | time x |" in md
    assert "| base | 3/3 | 82.00 | 72.00 | 1.00 |" in md
    assert "| rdrop | 3/3 | +1.33 (p=0.057) | +1.33 (p=0.057) | 2.00 |" in md
    page = paths["summary.html"].read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2
    assert all(base64.b64decode(img).startswith(b"\x89PNG\r\n\x1a\n") for img in images)
    assert "<td>rdrop</td>" in page
    assert paths["gain_cost.png"].read_bytes().startswith(b"\x89PNG")
    assert json.loads(paths["summary.json"].read_text())["base"] == "base"


def test_cli_report_only_prints_the_glance_table(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    raw = _spec(tmp_path, tiny_seq_model, sentiment_files, seeds=3)
    spec = _spec_file(tmp_path, raw)
    plan = load_spec(spec)
    _fake_records(
        plan,
        {"base": [0.80, 0.82, 0.84], "rdrop": [0.81, 0.83, 0.86]},
        {"base": [10.0, 12.0, 11.0], "rdrop": [20.0, 24.0, 22.0]},
    )
    result = runner.invoke(app, ["bench", str(spec), "--report-only"])
    assert result.exit_code == 0, result.output
    assert "at a glance" in result.output and "+1.33 (p=0.057)" in result.output
    assert (plan.folder / "summary.md").is_file()


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(Exception, match=re.escape('pip install "augreg[bench]"')):
        require_matplotlib()


# -- the command ------------------------------------------------------------------------------


def _spec_file(tmp_path: Path, raw: dict[str, Any]) -> Path:
    import yaml

    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_cli_dry_run_and_errors(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    raw = _spec(tmp_path, tiny_seq_model, sentiment_files, seeds=2)
    result = runner.invoke(app, ["bench", str(_spec_file(tmp_path, raw)), "--dry-run", "--ablate"])
    assert result.exit_code == 0, result.output
    assert "4 run(s) to do, 0 done" in result.output
    assert "ablate: the base has no components" in result.output
    result = runner.invoke(
        app, ["bench", str(_spec_file(tmp_path, raw)), "--dry-run", "--variant", "rdorp"]
    )
    assert result.exit_code == 2
    assert "no variant 'rdorp'" in result.output and "Did you mean 'rdrop'?" in result.output
    raw["variants"] = [{"name": "x", "add": ["core.rdorp"]}]
    result = runner.invoke(app, ["bench", str(_spec_file(tmp_path, raw)), "--dry-run"])
    assert result.exit_code == 2
    assert "Did you mean 'core.rdrop'?" in result.output


def test_cli_bench_with_two_jobs(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    raw = _spec(tmp_path, tiny_seq_model, sentiment_files)
    spec = _spec_file(tmp_path, raw)
    result = runner.invoke(app, ["bench", str(spec), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    records, _ = load_records(tmp_path / "bench")
    assert len(records) == 2
    import os

    import torch

    if not torch.cuda.is_available():  # on CPU the two runs share the cores
        assert {r["threads"] for r in records.values()} == {max(1, (os.cpu_count() or 1) // 2)}
    if hasattr(os, "getloadavg"):  # the machine's load while each run trained
        assert all(r["load_average"] >= 0 for r in records.values())
        assert {r["cpu_count"] for r in records.values()} == {os.cpu_count()}
    assert all((Path(r["run_dir"]) / "metrics.json").exists() for r in records.values())
    assert (tmp_path / "bench" / "summary.html").exists()
    again = runner.invoke(app, ["bench", str(spec), "--jobs", "2"])
    assert again.exit_code == 0 and "0 run(s) to do, 2 done" in again.output


# -- soup variants ----------------------------------------------------------------------------


def _soup_spec(tmp_path: Path, model: Path, files: dict[str, Path], **extra: Any) -> dict[str, Any]:
    """A tiny bench with a trained variant and a soup of it with the base."""
    variants = [
        {"name": "smooth", "add": [{"name": "core.label_smoothing", "epsilon": 0.2}]},
        {"name": "soup", "soup": ["plain", "smooth"]},
    ]
    return _spec(tmp_path, model, files, **{"base_name": "plain", "variants": variants, **extra})


def test_soup_variants_are_validated_with_every_problem_at_once(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    raw = _soup_spec(tmp_path, tiny_seq_model, sentiment_files)
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
    raw = _soup_spec(tmp_path, tiny_seq_model, sentiment_files, seeds=2)
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
    again = _soup_spec(tmp_path, tiny_seq_model, sentiment_files)
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
    plain = load_spec(_soup_spec(tmp_path, tiny_seq_model, sentiment_files, variants=[]))
    assert not any(j.config["train"]["save_model"] for j in plan_jobs(plain))


def test_soup_run_averages_the_members_models_and_adds_their_costs(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    plan = load_spec(_soup_spec(tmp_path, tiny_seq_model, sentiment_files))
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
    import torch

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
    raw = _soup_spec(tmp_path, tiny_seq_model, sentiment_files)
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
    plan = load_spec(_soup_spec(tmp_path, tiny_seq_model, sentiment_files))
    jobs = plan_jobs(plan)
    member = jobs[1]
    # Only the base and the soup: the smooth member has no record.
    run_bench(
        load_spec(_soup_spec(tmp_path, tiny_seq_model, sentiment_files, variants=[])), isolate=False
    )
    with pytest.raises(Exception, match=f"member run {member.key} has no record"):
        execute(jobs[2])
    assert not jobs[2].record_path.exists()


def test_soups_of_one_seed_sharing_a_member_do_not_run_at_once(tmp_path: Path) -> None:
    from augreg.bench.runner import RunJob, next_ready

    folder = str(tmp_path)

    def soup(h: str, seed: int, members: tuple[str, ...]) -> RunJob:
        return RunJob(h, seed, (h,), {}, folder, soup=members)

    member = RunJob("m" * 16, 1, ("m",), {}, folder)
    first, second = soup("a" * 16, 1, ("m" * 16, "n" * 16)), soup("b" * 16, 1, ("n" * 16,))
    other_seed, disjoint = soup("c" * 16, 2, ("n" * 16,)), soup("d" * 16, 1, ("o" * 16,))
    # A soup waits for a member run that is queued or running.
    assert next_ready([first], [member]) is None
    assert next_ready([member, first], []) == 0
    # Two soups of seed 1 sharing member n: the second waits while the first runs (both may
    # train n's missing model into the same folder); other seeds and other members go.
    assert next_ready([first, second], []) == 0
    assert next_ready([second], [first]) is None
    assert next_ready([second, other_seed], [first]) == 1
    assert next_ready([second, disjoint], [first]) == 1
    assert next_ready([second], []) == 0


def test_runs_with_a_teacher_wait_for_it_and_for_each_other(tmp_path: Path) -> None:
    from augreg.bench.runner import RunJob, next_ready

    folder = str(tmp_path)
    teacher = RunJob("t" * 16, 1, ("teacher of a",), {}, folder)

    def student(h: str, seed: int = 1) -> RunJob:
        return RunJob(h, seed, (h,), {}, folder, teacher="t" * 16, teacher_config={})

    a, b, other_seed = student("a" * 16), student("b" * 16), student("c" * 16, seed=2)
    assert a.needs == ["t" * 16 + "-s1"] and other_seed.needs == ["t" * 16 + "-s2"]
    assert next_ready([a], [teacher]) is None  # the teacher of the seed runs first
    assert next_ready([teacher, a], []) == 0
    # Two students of seed 1 do not run at once (a teacher whose model is missing is trained
    # again by the first into one folder); another seed's student goes.
    assert next_ready([b], [a]) is None
    assert next_ready([b, other_seed], [a]) == 1


def test_cli_bench_with_a_soup_in_two_processes(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(_soup_spec(tmp_path, tiny_seq_model, sentiment_files)))
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


@pytest.fixture
def tiny_soup_recipe() -> Iterator[str]:
    """A soup recipe of two core members (weights 3 and 1), registered for one test."""
    from augreg import recipes
    from augreg.recipes import Recipe, SoupMember

    name = "tiny_soup_test"
    members = (
        SoupMember("smooth", 3.0, components=(("core.label_smoothing", {}),)),
        SoupMember("regs", 1.0, recipe="core_regularizers"),
    )
    recipes.register(Recipe(name, "two core members, for tests", soup=members), replace=True)
    yield name
    recipes._RECIPES.pop(name, None)


def test_bench_records_and_summarizes_a_soup_recipes_members(
    tiny_soup_recipe: str, tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    """A bench variant with a soup recipe records each member's metrics beside the soup's, and
    its summary pairs every member with the base as well: a soup's gain reads against its
    members' on the same seeds."""
    spec = _spec(
        tmp_path,
        tiny_seq_model,
        sentiment_files,
        seeds=2,
        also_metrics=["macro_f1"],
        variants=[{"name": "souprec", "recipe": tiny_soup_recipe}],
    )
    plan = load_spec(spec)
    assert plan.variant("souprec").components == ["soup(0.75 smooth + 0.25 regs)"]
    outcome = run_bench(plan, isolate=False)
    assert not outcome.failed and len(outcome.ran) == 4
    records, _ = load_records(plan.folder)
    record = records[f"{plan.variant('souprec').hash}-s1"]
    assert record["components"] == ["soup(0.75 smooth + 0.25 regs)"]
    soup = record["soup"]
    assert soup["members"] == ["smooth", "regs"]
    assert soup["weights"] == pytest.approx([0.75, 0.25])
    for folder, metrics in zip(soup["models"], soup["metrics"], strict=True):
        saved = json.loads((Path(folder) / "metrics.json").read_text())["eval"]
        assert metrics == saved and set(metrics) == {"test", "ood"}
    assert soup["metrics"][0] != record["metrics"]  # the member is not the soup
    with pytest.raises(AugregError, match="not a soup recipe's run"):
        recipe_soup_entry(records[f"{plan.base.hash}-s1"]["run_dir"])

    summary, paths = write_reports(plan)
    row = next(v for v in summary["variants"] if v["name"] == "souprec")
    smooth = row["members"]["smooth"]["sets"]["ood"]
    base = next(v for v in summary["variants"] if v["name"] == summary["base"])
    expected = [
        100 * r["soup"]["metrics"][0]["ood"]["accuracy"]
        - base["sets"]["ood"]["per_seed"][r["seed"]]
        for r in records.values()
        if r.get("soup")
    ]
    assert smooth["diff"]["mean"] == pytest.approx(sum(expected) / 2)
    assert "macro_f1" in row["members"]["regs"]["also"]
    assert "members" not in base
    md = paths["summary.md"].read_text()
    assert "## soup recipe members and teachers, each alone: paired difference to base" in md
    title = "## soup recipe members and teachers, each alone"
    assert f"{title}, macro_f1: paired difference to base" in md
    assert "| souprec / smooth | 2/2 |" in md and "| souprec / regs | 2/2 |" in md


def test_soup_components_show_unequal_weights(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    raw = _soup_spec(tmp_path, tiny_seq_model, sentiment_files)
    raw["variants"][1]["soup_weights"] = [3, 1]
    assert load_spec(raw).variant("soup").components == ["soup(0.75 plain + 0.25 smooth)"]


# -- the docs ---------------------------------------------------------------------------------


def _blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def test_docs_bench_examples_run_and_specs_parse() -> None:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    from augreg import recipes
    from augreg.bench import BenchSpec, VariantSpec

    code, soup = _blocks(ROOT / "docs" / "bench.md", "python")
    scope: dict[str, Any] = {}
    exec(compile(code, "docs/bench.md", "exec"), scope)
    assert list(scope["sections"]) == ["objectives", "regularize"]
    try:
        exec(compile(soup, "docs/bench.md", "exec"), {})
        assert [m.weight for m in recipes.get("my_soup").soup] == [2.0, 1.0]
    finally:
        recipes._RECIPES.pop("my_soup", None)
    specs = [
        block
        for path in (ROOT / "docs" / "bench.md", ROOT / "README.md")
        for block in _blocks(path, "toml")
        if "[[variants]]" in block
    ]
    assert len(specs) == 3
    for block in specs:
        raw = tomllib.loads(block)
        if "base" not in raw:  # variants only (the soup example)
            assert all(VariantSpec.model_validate(v) for v in raw["variants"])
            continue
        spec = BenchSpec.model_validate(raw)
        assert spec.variants and spec.eval


# -- stopping ---------------------------------------------------------------------------------

_SLEEPER = """
import os, time
from pathlib import Path


def sleeper(job):
    Path(job.folder, "child.pid").write_text(str(os.getpid()))
    time.sleep(120)
"""

_PARENT = """
import sys
import sleeper_mod
from augreg.bench import runner

if __name__ == "__main__":  # the spawned run process imports this file too
    runner._child = sleeper_mod.sleeper
    job = runner.RunJob("0" * 16, 1, ("v",), {{}}, {folder!r})
    runner._run_processes([job], [(None, 1)], runner.BenchOutcome(), lambda *a: None)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as stopped
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is a POSIX signal")
def test_sigterm_to_the_bench_stops_its_run_processes(tmp_path: Path) -> None:
    import signal
    import subprocess

    (tmp_path / "sleeper_mod.py").write_text(_SLEEPER)
    script = tmp_path / "parent.py"
    script.write_text(_PARENT.format(folder=str(tmp_path)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    parent = subprocess.Popen([sys.executable, str(script)], env=env)
    pid_file = tmp_path / "child.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pid_file.exists(), "the run process did not start"
    child = int(pid_file.read_text())
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=60) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 30
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(child), "the run process outlived the bench"


@pytest.mark.parametrize(
    ("bench", "needs"),
    [
        ("sst2_500_soup", ("adversarial.fgm", "counterfactual.negation")),
        ("sst2_500_sam", ("adversarial.sam",)),
        ("sst2_500_confirm", ("adversarial.fgm", "counterfactual.negation")),
        (
            "sst2_500_distilled",
            ("adversarial.fgm", "counterfactual.negation", "objectives.distillation"),
        ),
        (
            "sst2_500_noisy_student",
            ("adversarial.fgm", "counterfactual.negation", "objectives.distillation"),
        ),
    ],
)
def test_a_committed_summary_is_what_its_committed_records_give(
    tmp_path: Path, bench: str, needs: tuple[str, ...]
) -> None:
    """benchmarks/results/<bench> holds the bench's records (no models): --report-only on a
    copy rewrites the same figures, and every planned run has its record."""
    pytest.importorskip("matplotlib")
    results = ROOT / "benchmarks" / "results" / bench
    if not (ROOT.parent / "shared" / "data").exists():
        pytest.skip("../shared/data is not beside the checkout (run keys hash the data files)")
    from augreg.host import default_host

    host = default_host()
    missing = [name for name in needs if host.find(name) is None]
    if missing:
        pytest.skip(f"the plugins of {', '.join(missing)} are not installed")
    shutil.copytree(results / "runs", tmp_path / "runs")
    shutil.copy(results / "plan.json", tmp_path / "plan.json")
    spec = ROOT / "benchmarks" / "generalization" / f"{bench}.toml"
    result = runner.invoke(
        app, ["bench", str(spec), "--output", str(tmp_path), "--report-only"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    got = json.loads((tmp_path / "summary.json").read_text())
    committed = json.loads((results / "summary.json").read_text())
    assert [v["name"] for v in got["variants"]] == [v["name"] for v in committed["variants"]]
    for new, old in zip(got["variants"], committed["variants"], strict=True):
        assert new["config_hash"] == old["config_hash"], new["name"]
        assert new["sets"] == old["sets"] and new["also"] == old["also"], new["name"]
        assert new.get("members") == old.get("members"), new["name"]  # soup members, teachers
    assert all(v["seeds"] == committed["seeds"] for v in got["variants"])


def test_p_values_near_the_threshold_keep_their_side_of_it() -> None:
    from augreg.bench.report import _p

    assert (_p(0.0497), _p(0.0503), _p(0.05)) == ("0.0497", "0.0503", "0.0500")
    assert (_p(0.0494), _p(0.012), _p(0.0004), _p(None)) == ("0.049", "0.012", "<0.001", "")


def test_the_replication_spec_runs_the_confirmation_on_fresh_seeds() -> None:
    """sst2_500_noisy_student_replicate.toml: the same plain, recipe and teacher configs as the
    confirmation (so the two benches' records pool), on seeds no committed spec has used."""
    if not (ROOT.parent / "shared" / "data").exists():
        pytest.skip("../shared/data is not beside the checkout (run keys hash the data files)")
    from augreg.host import default_host

    host = default_host()
    needs = ("adversarial.fgm", "counterfactual.negation", "objectives.distillation")
    if any(host.find(name) is None for name in needs):
        pytest.skip("the recipe's plugins are not installed")
    folder = ROOT / "benchmarks" / "generalization"
    replicate = load_spec(folder / "sst2_500_noisy_student_replicate.toml")
    confirmed = load_spec(folder / "sst2_500_noisy_student.toml")
    assert replicate.base.hash == confirmed.base.hash
    mine = replicate.variant("small_data_noisy_student")
    theirs = confirmed.variant("small_data_noisy_student")
    assert (mine.hash, mine.teacher_hash) == (theirs.hash, theirs.teacher_hash)
    used = {
        seed
        for spec in folder.glob("*.toml")
        if spec.name != "sst2_500_noisy_student_replicate.toml"
        for seed in load_spec(spec).seeds
    }
    assert replicate.seeds == list(range(41, 51)) and not used & set(replicate.seeds)
