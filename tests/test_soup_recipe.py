"""Soup recipes: recipe = "<soup>" trains each member on the config and averages them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import yaml

import augreg
from augreg import recipes
from augreg.config import soup_member_config, validate
from augreg.errors import ConfigError
from augreg.host import default_host
from augreg.recipes import Recipe, SoupMember

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_soup() -> Iterator[Recipe]:
    recipe = Recipe(
        "tiny_soup_test",
        "two core members, for tests",
        soup=(
            SoupMember("smooth", 3.0, components=(("core.label_smoothing", {"epsilon": 0.2}),)),
            SoupMember("regs", 1.0, recipe="core_regularizers"),
        ),
    )
    recipes.register(recipe, replace=True)
    yield recipe
    recipes._RECIPES.pop(recipe.name, None)


def test_recipe_definitions_are_checked() -> None:
    one = (SoupMember("a", components=(("core.rdrop", {}),)),)
    with pytest.raises(ValueError, match="two or more members"):
        Recipe("x", "", soup=one)
    with pytest.raises(ValueError, match="has a soup and components"):
        Recipe("x", "", (("core.rdrop", {}),), soup=one * 2)
    with pytest.raises(ValueError, match="names a member twice"):
        Recipe("x", "", soup=one * 2)
    with pytest.raises(ValueError, match="weight must be a positive number"):
        SoupMember("a", 0.0, recipe="small_data")
    with pytest.raises(ValueError, match="trains nothing of its own"):
        SoupMember("a")
    assert recipes.get("small_data_soup").is_soup
    assert not recipes.get("small_data").is_soup


def test_soup_recipe_resolves_members_against_the_config(
    tiny_soup: Recipe, tiny_pipeline: Callable[..., augreg.Pipeline]
) -> None:
    cfg = tiny_pipeline(recipe="tiny_soup_test", regularize=["core.embedding_noise"]).config
    assert [(m.name, m.weight) for m in cfg.soup] == [("smooth", 3.0), ("regs", 1.0)]
    # the config's own components: every member trains with them
    assert [s.name for s in cfg.regularize] == ["core.embedding_noise"]
    smooth = soup_member_config(cfg, cfg.soup[0])
    assert [s["name"] for s in smooth["objectives"]] == ["core.label_smoothing"]
    assert [s["name"] for s in smooth["regularize"]] == ["core.embedding_noise"]
    regs = validate(soup_member_config(cfg, cfg.soup[1]))
    assert [s.name for s in regs.regularize] == ["core.embedding_noise", "core.rdrop", "core.l2sp"]
    assert [s.name for s in regs.objectives] == ["core.label_smoothing"]
    assert "soup" not in smooth and smooth["name"] == "tiny-smooth"
    # configs without a soup have no soup key: their bench keys are what they were
    assert "soup" not in tiny_pipeline().config.to_dict()


def test_bench_summaries_name_a_soup_recipes_members(
    tiny_soup: Recipe, tiny_pipeline: Callable[..., augreg.Pipeline]
) -> None:
    """A bench variant or record with recipe = "<soup>" lists its members and weights, not
    "(none)" (its own component lists are empty: the members carry them)."""
    from augreg.bench.spec import config_components

    cfg = tiny_pipeline(recipe="tiny_soup_test", regularize=["core.embedding_noise"]).config
    assert config_components(cfg) == ["soup(0.75 smooth + 0.25 regs)", "core.embedding_noise"]
    plain = tiny_pipeline(regularize=["core.embedding_noise"]).config
    assert config_components(plain) == ["core.embedding_noise"]


def test_soup_recipe_errors_name_the_member(
    tiny_soup: Recipe, tiny_pipeline: Callable[..., augreg.Pipeline]
) -> None:
    recipes.register(
        Recipe(
            "bad_soup_test",
            "",
            soup=(
                SoupMember("a", recipe="no_such_recipe"),
                SoupMember("b", components=(("core.rdorp", {}),)),
            ),
        ),
        replace=True,
    )
    try:
        with pytest.raises(ConfigError) as info:
            tiny_pipeline(recipe="bad_soup_test")
        text = str(info.value)
        assert "member 'a'" in text and "unknown recipe 'no_such_recipe'" in text
        assert "member 'b'" in text and "core.rdrop" in text
        with pytest.raises(ConfigError, match="use one soup recipe"):
            tiny_pipeline(recipe=["tiny_soup_test", "tiny_soup_test"])
    finally:
        recipes._RECIPES.pop("bad_soup_test", None)
    with pytest.raises(ConfigError, match="a soup averages whole models"):
        tiny_pipeline(recipe="tiny_soup_test", adapters=[{"name": "core.freeze", "layers": 1}])


def test_soup_recipe_run_trains_the_members_and_averages_them(
    tiny_soup: Recipe, tiny_pipeline: Callable[..., augreg.Pipeline]
) -> None:
    result = tiny_pipeline(recipe="tiny_soup_test", train={"seed": 5}).run()
    run = result.run_dir
    members = [run / "members" / "smooth", run / "members" / "regs"]
    assert all((m / "model" / "config.json").is_file() for m in members)
    seeds = {yaml.safe_load((m / "config.yaml").read_text())["train"]["seed"] for m in members}
    assert seeds == {5}
    params = [augreg.load_model(m).state_dict() for m in members]
    mine = augreg.load_model(run).state_dict()
    for name in ("classifier.weight", "bert.embeddings.word_embeddings.weight"):
        expected = 0.75 * params[0][name].float() + 0.25 * params[1][name].float()
        assert torch.allclose(mine[name].float(), expected, atol=1e-6), name
    report = json.loads((run / "metrics.json").read_text())
    assert set(report["eval"]) == {"test", "ood"} == set(result.metrics)
    member_steps = [json.loads((m / "metrics.json").read_text())["train"]["steps"] for m in members]
    assert report["train"]["steps"] == sum(member_steps) == result.train["steps"]
    assert report["train"]["soup"] == ["smooth", "regs"]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert [m["name"] for m in config["soup"]] == ["smooth", "regs"]
    assert json.loads((run / "soup.json").read_text())["members"][0]["weight"] == 0.75
    assert (run / "augreg.lock").is_file()
    # the run folder's config is valid on its own, and evaluate reads the run like any other
    again = augreg.evaluate_run(run, write=False)
    assert again.metrics["ood"]["accuracy"] == pytest.approx(result.metrics["ood"]["accuracy"])


def test_small_data_soup_is_the_committed_bench_soup() -> None:
    """The shipped recipe trains exactly the members that sst2_500_soup's
    soup_small_data_fgm_negation_2to1 averages."""
    host = default_host()
    if host.find("adversarial.fgm") is None or host.find("counterfactual.negation") is None:
        pytest.skip("augreg-adversarial and augreg-counterfactual are not installed")
    if not (ROOT.parent / "shared" / "data").exists():
        pytest.skip("../shared/data is not beside the checkout")
    from augreg.bench import load_spec
    from augreg.bench.spec import config_hash
    from augreg.config import read_config_file

    plan = load_spec(ROOT / "benchmarks" / "generalization" / "sst2_500_soup.toml")
    raw = read_config_file(ROOT / "examples" / "sst2_minilm.toml")
    raw["base_dir"] = str(ROOT / "examples")
    raw["recipe"] = "small_data_soup"
    cfg = validate(raw)
    members = [validate(soup_member_config(cfg, m)) for m in cfg.soup]
    soup = plan.variant("soup_small_data_fgm_negation_2to1")
    assert tuple(config_hash(m) for m in members) == soup.soup_hashes
    weights = [m.weight for m in cfg.soup]
    assert tuple(w / sum(weights) for w in weights) == pytest.approx(soup.soup_weights)
    confirm = load_spec(ROOT / "benchmarks" / "generalization" / "sst2_500_confirm.toml")
    assert confirm.variant("small_data_soup").components == [
        "soup(0.67 small_data_fgm + 0.33 negation)"
    ]
