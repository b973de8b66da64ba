"""Teacher stages: [teacher] (or a recipe's teacher) trains a model first, on the config, and
the components that learn from a teacher (objectives.distillation) learn from it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import augreg
from augreg import recipes
from augreg.config import TEACHER_STAGE, student_config, teacher_config, teacher_label
from augreg.errors import ConfigError
from augreg.host import default_host
from augreg.recipes import Recipe, Teacher

DISTIL = "objectives.distillation"


@pytest.fixture(autouse=True)
def _needs_distillation() -> None:
    if default_host().find(DISTIL) is None:
        pytest.skip("augreg-objectives (objectives.distillation) is not installed")


@pytest.fixture
def distilled_recipe() -> Iterator[str]:
    """A recipe with a teacher stage: a label-smoothing teacher, distilled on unlabelled text."""
    recipe = Recipe(
        "tiny_distilled_test",
        "for tests",
        ((DISTIL, {"unlabeled": True}),),
        settings={"data": {"unlabelled_ratio": 2}},
        teacher=Teacher(components=(("core.label_smoothing", {"epsilon": 0.2}),)),
    )
    recipes.register(recipe, replace=True)
    yield recipe.name
    recipes._RECIPES.pop(recipe.name, None)


def _distil(**options: Any) -> dict[str, Any]:
    return {"name": DISTIL, **options}


def test_recipe_teachers_are_checked() -> None:
    with pytest.raises(ValueError, match="trains nothing of its own"):
        Teacher()
    with pytest.raises(ValueError, match="no component to learn from it"):
        Recipe("x", "", teacher=Teacher(recipe="small_data"))


def _raw(tiny_pipeline: Callable[..., augreg.Pipeline], **extra: Any) -> dict[str, Any]:
    """The tiny pipeline's config with 12 labelled rows and the rest of train unlabelled."""
    raw = tiny_pipeline().config.to_dict()
    raw["data"] = {**raw["data"], "train_size": 12, "unlabelled": "train:rest"}
    del raw["data"]["unlabelled_ratio"]  # unstated: a recipe's setting fills it
    return {**raw, **extra}


def _student_bench(
    raw: dict[str, Any],
    name: str,
    seeds: int,
    folder: Path,
    **variants: tuple[str, dict[str, Any]],
) -> dict[str, Any]:
    """A bench spec on the tiny config (no unlabelled data in its base): each variant
    ``name=(recipe, replace)`` uses the recipe and reads the rest of train unlabelled."""
    base = {**raw, "data": {k: v for k, v in raw["data"].items() if k != "unlabelled"}}
    return {
        "name": name,
        "base": base,
        "seeds": seeds,
        "eval": {"ood": raw["data"]["eval"]["ood"]},
        "variants": [
            {
                "name": variant,
                "recipe": recipe,
                "replace": {"data": {"unlabelled": "train:rest"}, **replace},
            }
            for variant, (recipe, replace) in variants.items()
        ],
        "output_dir": str(folder),
    }


def test_a_teacher_stage_fills_the_teacher_option_and_configs_split_in_two(
    tiny_pipeline: Callable[..., augreg.Pipeline], distilled_recipe: str
) -> None:
    raw = _raw(tiny_pipeline, recipe=distilled_recipe, regularize=["core.l2sp"])
    raw["train"] = {**raw["train"], "seed": 3}
    cfg = augreg.config.validate(raw)
    assert cfg.data.unlabelled_ratio == 2  # the recipe's setting
    assert cfg.teacher is not None and teacher_label(cfg.teacher) == "core.label_smoothing"
    (spec,) = cfg.objectives
    assert spec.options["teacher"] == TEACHER_STAGE
    teacher = teacher_config(cfg)
    # the teacher: the config's seed and settings, its own components only; the config's
    # components (the learner, core.l2sp) are the student's
    assert [s["name"] for s in teacher["objectives"]] == ["core.label_smoothing"]
    assert teacher["regularize"] == []
    assert teacher["train"]["seed"] == 3 and "teacher" not in teacher
    assert "unlabelled" not in teacher["data"] and teacher["name"] == "tiny-teacher"
    augreg.config.validate(teacher)  # both halves are configs of their own
    student = student_config(cfg, "/runs/x/teacher")
    assert student["objectives"][0]["teacher"] == "/runs/x/teacher" and "teacher" not in student
    assert [s["name"] for s in student["regularize"]] == ["core.l2sp"]
    assert augreg.config.validate(student).data.unlabelled == "train:rest"


def test_teacher_stage_config_errors(tiny_pipeline: Callable[..., augreg.Pipeline]) -> None:
    with pytest.raises(ConfigError, match="no component learns from the teacher"):
        tiny_pipeline(teacher={"recipe": "core_regularizers"})
    with pytest.raises(ConfigError, match="names its own teacher"):
        tiny_pipeline(
            teacher={"recipe": "core_regularizers"}, objectives=[_distil(teacher="runs/t")]
        )
    with pytest.raises(ConfigError, match="names the teacher stage, and the config has none"):
        tiny_pipeline(objectives=[_distil(teacher=TEACHER_STAGE)])
    with pytest.raises(ConfigError, match=r"teacher recipe.*small_dta") as err:
        tiny_pipeline(teacher={"recipe": "small_dta"}, objectives=[_distil()])
    assert "small_data" in str(err.value)  # the closest recipe name
    with pytest.raises(ConfigError, match="trains nothing of its own"):
        tiny_pipeline(teacher={}, objectives=[_distil()])
    with pytest.raises(ConfigError, match=r"teacher.*is a soup and has a teacher stage"):
        recipe = Recipe(
            "tiny_soup_teacher_test",
            "",
            soup=(
                recipes.SoupMember("a", components=(("core.rdrop", {}),)),
                recipes.SoupMember("b", components=(("core.l2sp", {}),)),
            ),
        )
        recipes.register(recipe, replace=True)
        try:
            tiny_pipeline(
                recipe=recipe.name, teacher={"recipe": "core_regularizers"}, objectives=[_distil()]
            )
        finally:
            recipes._RECIPES.pop(recipe.name, None)


def test_teacher_stage_run_trains_the_teacher_then_the_student_from_it(
    tiny_pipeline: Callable[..., augreg.Pipeline], distilled_recipe: str
) -> None:
    pipe = augreg.Pipeline.from_validated(
        augreg.config.validate(_raw(tiny_pipeline, recipe=distilled_recipe))
    )
    result = pipe.run()
    run = result.run_dir
    teacher = run / "teacher"
    assert (teacher / "model" / "config.json").is_file()
    student = yaml.safe_load((run / "student.yaml").read_text())
    assert student["objectives"][0]["teacher"] == str(teacher)
    assert "teacher" not in student
    whole = yaml.safe_load((run / "config.yaml").read_text())
    assert whole["teacher"]["components"][0]["name"] == "core.label_smoothing"
    assert whole["objectives"][0]["teacher"] == TEACHER_STAGE
    report = json.loads((run / "metrics.json").read_text())
    train = report["train"]
    assert train["steps"] == train["teacher"]["steps"] + train["student"]["steps"]
    assert train["student"]["train_examples"] == 12
    assert set(report["eval"]) == {"test", "ood"}
    teacher_metrics = json.loads((teacher / "metrics.json").read_text())["eval"]
    assert teacher_metrics != report["eval"]  # two models, each evaluated
    # the run folder is a run like any other: evaluate and load it again
    again = augreg.evaluate_run(run, write=False)
    assert again.metrics["ood"]["accuracy"] == pytest.approx(result.metrics["ood"]["accuracy"])
    assert augreg.load_model(run) is not None

    # A teacher trained before is learnt from as it is: the same student, no teacher trained.
    again_run = pipe.run(teacher_run=teacher)
    assert not (again_run.run_dir / "teacher").exists()
    for key in ("loss", "accuracy", "roc_auc"):
        assert again_run.metrics["ood"][key] == pytest.approx(result.metrics["ood"][key])
    report = json.loads((again_run.run_dir / "metrics.json").read_text())["train"]
    assert report["teacher_run"] == str(teacher) and report["steps"] == train["steps"]
    # ... and checked: another seed's run, a folder without a model, a config without a stage.
    other_seed = augreg.config.validate(
        {
            **_raw(tiny_pipeline, recipe=distilled_recipe),
            "train": {**pipe.config.to_dict()["train"], "seed": 7},
        }
    )
    with pytest.raises(ConfigError, match="seed 7"):
        augreg.Pipeline.from_validated(other_seed).run(teacher_run=teacher)
    with pytest.raises(ConfigError, match=r"has no model/config\.json"):
        pipe.run(teacher_run=run / "student_missing")
    with pytest.raises(ConfigError, match="no teacher stage"):
        tiny_pipeline().run(teacher_run=teacher)
    # the command line takes it too, and names the problem
    from augreg.cli import app

    config = run / "config.yaml"
    seeded = ["run", str(config), "--output", str(run.parent), "--seed", "7"]
    bad = CliRunner().invoke(app, [*seeded, "--teacher-run", str(teacher)])
    assert bad.exit_code == 2 and "seed 7" in bad.output
    ok = CliRunner().invoke(
        app, ["run", str(config), "--output", str(run.parent), "--teacher-run", str(teacher)]
    )
    assert ok.exit_code == 0, ok.output


def test_validate_names_the_teacher_stage(
    tiny_pipeline: Callable[..., augreg.Pipeline], distilled_recipe: str, tmp_path: Path
) -> None:
    from augreg.cli import app

    raw = _raw(tiny_pipeline, recipe=distilled_recipe)
    path = tmp_path / "distilled.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = CliRunner().invoke(app, ["validate", str(path)])
    assert out.exit_code == 0, out.output
    assert "a teacher trained first (core.label_smoothing), then this model from it" in (
        " ".join(out.output.split())
    )


@pytest.fixture
def soup_teacher_recipe() -> Iterator[str]:
    """A distilled recipe whose teacher is a soup recipe; one member's recipe sets
    train.weight_decay, which the config leaves unset."""
    made = [
        Recipe(
            "tiny_decay_test",
            "",
            (("core.label_smoothing", {}),),
            settings={"train": {"weight_decay": 0.05}},
        ),
        Recipe(
            "tiny_soup_teacher_test",
            "",
            soup=(
                recipes.SoupMember("smooth", 2.0, recipe="tiny_decay_test"),
                recipes.SoupMember("rdrop", 1.0, components=(("core.rdrop", {}),)),
            ),
        ),
        Recipe(
            "tiny_distilled_soup_test",
            "",
            ((DISTIL, {"unlabeled": True}),),
            teacher=Teacher(recipe="tiny_soup_teacher_test"),
        ),
    ]
    for r in made:
        recipes.register(r, replace=True)
    yield made[-1].name
    for r in made:
        recipes._RECIPES.pop(r.name, None)


def test_a_soup_teacher_is_resolved_against_the_config_and_benched(
    tiny_pipeline: Callable[..., augreg.Pipeline], soup_teacher_recipe: str, tmp_path: Path
) -> None:
    """A teacher's recipe is resolved like the config's own (a soup recipe's members, the
    settings the config leaves unset), also for a bench variant, whose config states every
    option; the bench record keeps the teacher's metrics and its members', and the summary
    pairs each with the base."""
    from augreg.bench import load_records, load_spec, run_bench, write_reports
    from augreg.bench.runner import plan_jobs

    raw = _raw(tiny_pipeline)
    del raw["train"]["weight_decay"]  # unstated: the member's recipe fills it
    cfg = augreg.config.validate({**raw, "recipe": soup_teacher_recipe})
    assert cfg.teacher is not None and cfg.teacher.label == "tiny_soup_teacher_test"
    assert [m.name for m in cfg.teacher.soup] == ["smooth", "rdrop"]
    assert cfg.teacher.soup[0].settings == {"train": {"weight_decay": 0.05}}
    assert cfg.train.weight_decay == 0.01  # the student keeps the default
    teacher = teacher_config(cfg)
    assert [m["name"] for m in teacher["soup"]] == ["smooth", "rdrop"]

    spec = _student_bench(
        raw,
        "tiny_teacher_bench",
        2,
        tmp_path / "bench",
        distilled=(soup_teacher_recipe, {}),
        distilled_hot=(soup_teacher_recipe, {DISTIL: {"temperature": 4.0}}),
    )
    plan = load_spec(spec)
    variant = plan.variant("distilled")
    assert variant.components == ["teacher(tiny_soup_teacher_test)", DISTIL]
    assert variant.config.teacher is not None
    assert variant.config.teacher.soup[0].settings == {"train": {"weight_decay": 0.05}}
    # Both distilled variants learn from one teacher: its run of each seed is a run of the
    # bench of its own, trained once, before the students, with its model saved.
    hot = plan.variant("distilled_hot")
    assert hot.hash != variant.hash and hot.teacher_hash == variant.teacher_hash is not None
    jobs = plan_jobs(plan)
    taught = [j for j in jobs if j.config_hash == variant.teacher_hash]
    assert [j.seed for j in taught] == [1, 2]
    assert taught[0].variants == ("teacher of distilled", "teacher of distilled_hot")
    assert taught[0].config["train"]["save_model"] is True
    student = next(j for j in jobs if j.config_hash == variant.hash and j.seed == 1)
    assert student.needs == [taught[0].key]
    assert jobs.index(taught[0]) < jobs.index(student)
    # one student chosen (--variant): its teacher comes along, named by its students
    only = plan_jobs(plan, ["distilled"])
    assert next(j.variants for j in only if j.config_hash == variant.teacher_hash) == (
        "teacher of distilled",
        "teacher of distilled_hot",
    )
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    from augreg.cli import app

    dry = CliRunner().invoke(app, ["bench", str(spec_file), "--dry-run"], terminal_width=200)
    assert dry.exit_code == 0, dry.output
    assert "(teacher of" in dry.output and "8 run(s) to do" in dry.output
    outcome = run_bench(plan, isolate=False)
    assert not outcome.failed
    records, _ = load_records(plan.folder)
    record = records[f"{variant.hash}-s1"]
    teacher_record = records[taught[0].key]
    entry = record["teacher"]
    assert entry["run"] == teacher_record["run_dir"] == records[f"{hot.hash}-s1"]["teacher"]["run"]
    assert set(entry["metrics"]) == set(record["metrics"]) == {"ood"}
    assert entry["metrics"] == teacher_record["metrics"]
    assert entry["soup"]["members"] == ["smooth", "rdrop"]
    assert not (Path(record["run_dir"]) / "teacher").exists()  # not trained again
    saved = json.loads((Path(record["run_dir"]) / "metrics.json").read_text())["train"]
    assert record["steps"] == saved["teacher"]["steps"] + saved["student"]["steps"]
    assert record["steps"] == teacher_record["steps"] + saved["student"]["steps"]
    summary, paths = write_reports(plan)
    row = next(v for v in summary["variants"] if v["name"] == "distilled")
    assert set(row["members"]) == {"teacher", "teacher/smooth", "teacher/rdrop"}
    assert row["members"]["teacher"]["sets"]["ood"]["diff"]["n"] == 2
    md = paths["summary.md"].read_text()
    assert "| distilled / teacher | 2/2 |" in md and "| distilled / teacher/rdrop | 2/2 |" in md


def test_the_docs_teacher_stage_example_validates(
    tiny_pipeline: Callable[..., augreg.Pipeline],
) -> None:
    """docs/hooks.md's [teacher] block, on the tiny config: the soup teacher resolves."""
    import re

    import tomllib

    host = default_host()
    if host.find("adversarial.fgm") is None or host.find("counterfactual.negation") is None:
        pytest.skip("augreg-adversarial and augreg-counterfactual are not installed")
    text = (Path(__file__).resolve().parents[1] / "docs" / "hooks.md").read_text()
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", text, flags=re.S) if "[teacher]" in b]
    block, nested = blocks
    raw = _raw(tiny_pipeline)
    for unstated in ("augmentation", "keep_original"):  # the member recipes fill them
        del raw["data"][unstated]
    cfg = augreg.config.validate({**raw, **tomllib.loads(block)})
    assert cfg.teacher is not None and cfg.teacher.label == "small_data_soup"
    assert [m.name for m in cfg.teacher.soup] == ["small_data_fgm", "negation"]
    assert cfg.objectives[0].options["teacher"] == TEACHER_STAGE
    # the iterated form: the soup teaches a distilled student, which teaches this model
    cfg = augreg.config.validate(
        {**raw, **tomllib.loads(nested), "objectives": [_distil(unlabeled=True)]}
    )
    assert cfg.teacher is not None and cfg.teacher.teacher is not None
    assert [m.name for m in cfg.teacher.teacher.soup] == ["small_data_fgm", "negation"]
    assert augreg.config.validate(teacher_config(cfg)).data.unlabelled == "train:rest"


def test_the_distilled_example_config_validates() -> None:
    """examples/sst2_distilled.toml: the small_data_distilled recipe on the shared data."""
    from augreg.config import load_config

    host = default_host()
    if host.find("adversarial.fgm") is None or host.find("counterfactual.negation") is None:
        pytest.skip("augreg-adversarial and augreg-counterfactual are not installed")
    root = Path(__file__).resolve().parents[1]
    if not (root.parent / "shared" / "data").exists():
        pytest.skip("../shared/data is not beside the checkout")
    cfg = load_config(root / "examples" / "sst2_distilled.toml")
    assert cfg.teacher is not None and cfg.teacher.label == "small_data_soup"
    assert cfg.data.unlabelled == "train:rest" and cfg.data.unlabelled_ratio == 2
    (spec,) = cfg.objectives
    assert spec.name == DISTIL and spec.options["unlabeled"] is True
    teacher = augreg.config.validate(teacher_config(cfg))
    assert [m.name for m in teacher.soup] == ["small_data_fgm", "negation"]
    assert teacher.data.unlabelled is None


def test_the_noisy_student_recipe_puts_its_noise_on_the_student_only(
    tiny_pipeline: Callable[..., augreg.Pipeline],
) -> None:
    """small_data_noisy_student: FGM trains the student only; its teacher is small_data_
    distilled's, so a bench with both trains one teacher per seed."""
    from augreg.bench.spec import teacher_hash

    host = default_host()
    if host.find("adversarial.fgm") is None or host.find("counterfactual.negation") is None:
        pytest.skip("augreg-adversarial and augreg-counterfactual are not installed")

    def raw(recipe: str) -> dict[str, Any]:
        out = _raw(tiny_pipeline, recipe=recipe)
        for unstated in ("augmentation", "keep_original"):  # the soup's recipes set them
            out["data"].pop(unstated, None)
        return out

    noisy = augreg.config.validate(raw("small_data_noisy_student"))
    plain = augreg.config.validate(raw("small_data_distilled"))
    assert [s.name for s in noisy.objectives] == [DISTIL]
    assert [s.name for s in noisy.regularize] == ["adversarial.fgm"]
    assert noisy.data.unlabelled_ratio == 2
    teacher = augreg.config.validate(teacher_config(noisy))
    assert teacher.regularize == [] and teacher.objectives == []
    assert [m.name for m in teacher.soup] == ["small_data_fgm", "negation"]
    assert teacher_hash(noisy) == teacher_hash(plain) is not None


@pytest.fixture
def iterated_recipe(distilled_recipe: str) -> Iterator[str]:
    """Iterated self-training: the distilled recipe's student is the next student's teacher."""
    recipe = Recipe(
        "tiny_iterated_test",
        "for tests",
        ((DISTIL, {"unlabeled": True, "temperature": 3.0}),),
        teacher=Teacher(recipe=distilled_recipe),
    )
    recipes.register(recipe, replace=True)
    yield recipe.name
    recipes._RECIPES.pop(recipe.name, None)


def test_a_teacher_may_have_a_teacher_of_its_own(
    tiny_pipeline: Callable[..., augreg.Pipeline], distilled_recipe: str, iterated_recipe: str
) -> None:
    """A teacher recipe with a teacher stage resolves into a nested stage; the teacher's
    config is then a student itself (it keeps the unlabelled data it distils on), and its
    hash is the hash of the same recipe used as a config's own, so a bench shares it."""
    from augreg.bench.spec import config_hash, teacher_hash

    cfg = augreg.config.validate(_raw(tiny_pipeline, recipe=iterated_recipe))
    assert cfg.teacher is not None and cfg.teacher.label == distilled_recipe
    assert [c["name"] for c in cfg.teacher.components] == [DISTIL]
    inner = cfg.teacher.teacher
    assert inner is not None and inner.teacher is None
    assert [c["name"] for c in inner.components] == ["core.label_smoothing"]
    assert cfg.teacher.settings == {"data": {"unlabelled_ratio": 2}}
    teacher = teacher_config(cfg)
    assert teacher["data"]["unlabelled"] == "train:rest" and "teacher" in teacher
    taught = augreg.config.validate(teacher)
    assert taught.objectives[0].options["teacher"] == TEACHER_STAGE
    assert taught.data.unlabelled_ratio == 2 and taught.objectives[0].options["temperature"] == 2
    grand = teacher_config(taught)
    assert "unlabelled" not in grand["data"] and "teacher" not in grand
    assert teacher_hash(cfg) == config_hash(
        augreg.config.validate(_raw(tiny_pipeline, recipe=distilled_recipe))
    )
    # a resolved config validates to itself; the stated form (no recipe) resolves alike
    assert config_hash(augreg.config.validate(cfg.to_dict())) == config_hash(cfg)
    stated = _raw(
        tiny_pipeline,
        objectives=[_distil(unlabeled=True, temperature=3.0)],
        teacher={
            "components": [_distil(unlabeled=True)],
            "settings": {"data": {"unlabelled_ratio": 2}},
            "teacher": {"recipe": "core_regularizers"},
        },
    )
    by_hand = augreg.config.validate(stated)
    assert by_hand.teacher is not None and by_hand.teacher.teacher is not None
    assert by_hand.teacher.teacher.label == "core_regularizers"
    assert [c["name"] for c in by_hand.teacher.teacher.components] == [
        s["name"] for s in recipes.get("core_regularizers").specs()
    ]


def test_a_chain_of_teachers_must_end(
    tiny_pipeline: Callable[..., augreg.Pipeline], distilled_recipe: str
) -> None:
    looped = Recipe(
        "tiny_loop_test", "", ((DISTIL, {"unlabeled": True}),), teacher=Teacher("tiny_loop_test")
    )
    recipes.register(looped, replace=True)
    try:
        with pytest.raises(ConfigError, match=r"'tiny_loop_test' is its own teacher \(") as err:
            augreg.config.validate(_raw(tiny_pipeline, recipe="tiny_loop_test"))
        assert "tiny_loop_test -> tiny_loop_test" in str(err.value)
    finally:
        recipes._RECIPES.pop(looped.name, None)
    # a stated inner stage and a recipe with a teacher: one stage per teacher
    with pytest.raises(ConfigError, match="has a teacher stage already"):
        augreg.config.validate(
            _raw(
                tiny_pipeline,
                objectives=[_distil(unlabeled=True)],
                teacher={"recipe": distilled_recipe, "teacher": {"recipe": "core_regularizers"}},
            )
        )


def test_an_iterated_teacher_stage_trains_each_teacher_in_turn(
    tiny_pipeline: Callable[..., augreg.Pipeline], iterated_recipe: str
) -> None:
    result = augreg.Pipeline.from_validated(
        augreg.config.validate(_raw(tiny_pipeline, recipe=iterated_recipe))
    ).run()
    run = result.run_dir
    for folder in (run / "teacher", run / "teacher" / "teacher"):
        assert (folder / "model" / "config.json").is_file(), folder
    first = yaml.safe_load((run / "teacher" / "student.yaml").read_text())
    assert first["objectives"][0]["teacher"] == str(run / "teacher" / "teacher")
    student = yaml.safe_load((run / "student.yaml").read_text())
    assert student["objectives"][0]["teacher"] == str(run / "teacher")
    train = json.loads((run / "metrics.json").read_text())["train"]
    middle = json.loads((run / "teacher" / "metrics.json").read_text())["train"]
    grand = json.loads((run / "teacher" / "teacher" / "metrics.json").read_text())["train"]
    assert (
        train["steps"] == grand["steps"] + middle["student"]["steps"] + (train["student"]["steps"])
    )
    assert middle["steps"] == grand["steps"] + middle["student"]["steps"]


def test_a_bench_shares_an_iterated_teacher_with_the_variant_it_is(
    tiny_pipeline: Callable[..., augreg.Pipeline],
    distilled_recipe: str,
    iterated_recipe: str,
    tmp_path: Path,
) -> None:
    """Variants "distilled" and "iterated" (taught by a "distilled" student): per seed the
    first teacher trains once, the distilled run learns from it, and the iterated run from
    the distilled run."""
    from augreg.bench import load_records, load_spec, run_bench
    from augreg.bench.runner import plan_jobs

    spec = _student_bench(
        _raw(tiny_pipeline),
        "tiny_iterated_bench",
        1,
        tmp_path / "bench",
        distilled=(distilled_recipe, {}),
        iterated=(iterated_recipe, {}),
    )
    plan = load_spec(spec)
    distilled, iterated = plan.variant("distilled"), plan.variant("iterated")
    assert iterated.teacher_hash == distilled.hash
    assert distilled.teacher_hash is not None
    jobs = {j.config_hash: j for j in plan_jobs(plan)}
    assert jobs[iterated.hash].needs == [jobs[distilled.hash].key]
    assert jobs[distilled.hash].needs == [jobs[distilled.teacher_hash].key]
    assert jobs[distilled.hash].config["train"]["save_model"] is True
    outcome = run_bench(plan, isolate=False)
    assert not outcome.failed
    records, _ = load_records(plan.folder)
    record = records[f"{iterated.hash}-s1"]
    assert record["teacher"]["run"] == records[f"{distilled.hash}-s1"]["run_dir"]
    assert record["teacher"]["metrics"] == records[f"{distilled.hash}-s1"]["metrics"]
    assert not (Path(record["run_dir"]) / "teacher").exists()
    assert not (Path(records[f"{distilled.hash}-s1"]["run_dir"]) / "teacher").exists()
    # its cost counts every model trained for it: both teachers and itself
    first = records[f"{distilled.teacher_hash}-s1"]
    assert record["steps"] > records[f"{distilled.hash}-s1"]["steps"] > first["steps"]


def test_validate_names_each_teacher_of_an_iterated_stage(
    tiny_pipeline: Callable[..., augreg.Pipeline], iterated_recipe: str, tmp_path: Path
) -> None:
    from augreg.cli import app

    path = tmp_path / "iterated.yaml"
    path.write_text(yaml.safe_dump(_raw(tiny_pipeline, recipe=iterated_recipe)))
    out = CliRunner().invoke(app, ["validate", str(path)])
    assert out.exit_code == 0, out.output
    assert (
        "a teacher trained first (tiny_distilled_test, itself taught by core.label_smoothing), "
        "then this model from it"
    ) in " ".join(out.output.split())
