"""augreg recipes: the named recipes, what each trains and needs, and whether it is installed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from augreg import recipes
from augreg.cli import _first_sentence, app
from augreg.recipes import Recipe, SoupMember, Teacher

runner = CliRunner()


@pytest.fixture
def made() -> Iterator[list[str]]:
    """A recipe needing an absent plugin, and a distilled recipe whose soup teacher has a
    member recipe: what it needs is gathered through both."""
    rs = [
        Recipe(
            "tiny_absent_test",
            "Needs a plugin nobody has, e.g. here. More.",
            (("absent.thing", {}),),
        ),
        Recipe(
            "tiny_soup_test",
            "A soup.",
            soup=(
                SoupMember("a", 1.0, recipe="tiny_absent_test"),
                SoupMember("b", 1.0, components=(("core.rdrop", {}),)),
            ),
        ),
        Recipe(
            "tiny_taught_test",
            "Taught.",
            (("objectives.distillation", {"unlabeled": True}),),
            settings={"data": {"unlabelled_ratio": 2}},
            teacher=Teacher(recipe="tiny_soup_test", components=(("core.l2sp", {}),)),
        ),
    ]
    for r in rs:
        recipes.register(r, replace=True)
    yield [r.name for r in rs]
    for r in rs:
        recipes._RECIPES.pop(r.name, None)


def test_needed_components_follow_members_and_teachers(made: list[str]) -> None:
    taught = recipes.get("tiny_taught_test")
    assert recipes.needed_components(taught) == [
        "objectives.distillation",
        "absent.thing",
        "core.rdrop",
        "core.l2sp",
    ]
    assert recipes.needed_components(recipes.get("small_data")) == [
        "adversarial.word_substitution",
        "core.label_smoothing",
    ]


def test_cli_recipes_lists_and_shows_one(made: list[str]) -> None:
    listed = runner.invoke(app, ["recipes", "--json"])
    assert listed.exit_code == 0, listed.output
    data = {r["name"]: r for r in json.loads(listed.output)}
    assert set(recipes.names()) == set(data)
    absent = data["tiny_absent_test"]
    assert absent["missing"] == ["absent.thing (a plugin providing absent.*)"]
    taught = data["tiny_taught_test"]
    assert taught["trains"] == "teacher(tiny_soup_test), objectives.distillation"
    assert taught["settings"] == {"data": {"unlabelled_ratio": 2}}
    assert "absent.thing" in " ".join(taught["missing"])
    assert data["tiny_soup_test"]["trains"] == "soup(1 a + 1 b)"
    table = runner.invoke(app, ["recipes"], terminal_width=200)
    assert table.exit_code == 0 and "tiny_absent_test" in table.output
    assert _first_sentence(recipes.get("tiny_absent_test").description) == (
        "Needs a plugin nobody has, e.g. here."
    )
    assert _first_sentence("Soups (Wortsman et al. 2022) work. Yes.") == (
        "Soups (Wortsman et al. 2022) work."
    )
    one = runner.invoke(app, ["recipes", "tiny_taught_test"], terminal_width=200)
    assert one.exit_code == 0, one.output
    assert "sets [data] unlabelled_ratio = 2" in one.output
    assert 'recipe = "tiny_taught_test"' in one.output and "missing: absent.thing" in one.output
    bad = runner.invoke(app, ["recipes", "tiny_taught_tset"])
    assert bad.exit_code == 2 and "Did you mean 'tiny_taught_test'" in bad.output
