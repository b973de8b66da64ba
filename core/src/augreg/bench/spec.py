"""The bench spec: a base pipeline, variants, seeds and evaluation sets, validated as a whole.

A spec file (TOML or YAML)::

    name = "sst2_500"
    base = "../../examples/sst2_minilm.toml"   # a pipeline config, or an inline [base] table
    base_name = "plain"
    seeds = 5                                  # seeds 1..5, or a list: [1, 2, 7]
    metric = "accuracy"                        # default: the task's (accuracy, or f1 for NER)
    also_metrics = ["roc_auc"]                 # more at-a-glance tables (default: none)
    output_dir = "../../runs/bench/sst2_500"   # the bench folder (relative to this file)

    [eval]                                     # replaces the base's test and extra sets
    test = "../../../shared/data/sst2/test.jsonl"
    cr = "../../../shared/data/cr/test.jsonl"

    [[variants]]
    name = "rdrop"
    add = [{ name = "core.rdrop", weight = 1.0 }]

    [[variants]]
    name = "rdrop_light"
    add = ["core.rdrop"]
    replace = { "core.rdrop" = { weight = 0.3 }, train = { epochs = 3 } }

    [[variants]]
    name = "recipe"
    recipe = "core_regularizers"

    [[variants]]
    name = "soup"
    soup = ["rdrop", "recipe"]                 # average the weights of these variants' models
    soup_weights = [0.5, 0.5]                  # optional; default: equal

A variant starts from the base and, in this order, removes components by name (``remove``),
appends a recipe's components (``recipe``), appends components (``add``, each to the section of
its kind) and merges options (``replace``: a component's options, or ``train``, ``data``,
``model``, ``task`` settings). ``ablate = true`` (or ``augreg bench --ablate``) adds one
variant per component of the base with that component removed (``without_<component>``).

A *soup* variant (``soup = [...]``) trains nothing of its own: for each seed it averages the
weights of the models its member variants (two or more trained variants of this bench, the
base included) trained with that seed, and evaluates the average (:func:`augreg.soup_runs`;
Wortsman et al. 2022, Ramé et al. 2022). Members of a soup save their models in the bench
folder; a soup's runs are keyed by its members' hashes and weights, and cost the sum of its
members' training.

Every problem of the spec, the base and every variant is reported at once, in the format of
:class:`augreg.ConfigError`. A variant whose components come from a plugin that is not installed
is an error that names what to install, or, with ``skip_missing = true`` (``--skip-missing``),
is skipped with a warning. Validation loads no model.

Each (variant, seed) run is identified by the hash of the variant's resolved config (seed and
bookkeeping settings left out, local data files by content: sha256 and size, not path) and the
seed; variants with the same config share their runs, and a run keeps its key wherever the
checkout or the data files are moved.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from augreg.config import (
    SECTIONS,
    PipelineConfig,
    expand_recipes,
    read_config_file,
    teacher_config,
    teacher_label,
    validate,
)
from augreg.errors import ConfigError, Problem
from augreg.host import PluginHost, default_host, install_hint
from augreg.options import describe_validation_error
from augreg.pipeline import DATA_SOURCES, absolute_config, absolute_source

__all__ = [
    "BenchPlan",
    "BenchSpec",
    "Variant",
    "VariantSpec",
    "config_hash",
    "file_fingerprint",
    "hashed_config",
    "load_spec",
    "soup_hash",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
#: Settings that do not change what a run computes: left out of the config hash.
UNHASHED_TRAIN = (
    "seed",
    "run_name",
    "output_dir",
    "progress",
    "save_model",
    "logging_steps",
    "dataloader_workers",
)
HASHED_UNLESS_DEFAULT: dict[str, Any] = {"expand_first": []}
"""``data`` options added after runs were first keyed, with the default that keeps the old
behaviour: at that default they are left out of the hash, so a run made before the option
existed keeps its key (the bench does not run it again, ``--adopt`` still finds it). Add each
new ``data`` option here with its default."""
REPLACEABLE = ("train", "data", "model", "task")
DEFAULT_METRIC = {"sequence_classification": "accuracy", "token_classification": "f1"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariantSpec(_Strict):
    """One variant: what changes relative to the base."""

    name: str = Field(pattern=NAME_PATTERN, max_length=80, description="Variant name.")
    description: str = Field("", description="One line shown in the summary.")
    remove: list[str] = Field(default_factory=list, description="Base components to remove.")
    recipe: str | None = Field(None, description="A named recipe whose components are added.")
    add: list[str | dict[str, Any]] = Field(
        default_factory=list, description="Components to add: names or {name = ..., options}."
    )
    replace: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Options to merge: per component name, or train/data/model/task settings.",
    )
    soup: list[str] = Field(
        default_factory=list,
        description="Names of two or more trained variants whose models (of one seed) are "
        "averaged: a model soup. Nothing else may be set on a soup variant.",
    )
    soup_weights: list[float] | None = Field(
        None, description="One positive weight per soup member, in order (default: equal)."
    )


class BenchSpec(_Strict):
    """A whole bench: base pipeline, variants, seeds, evaluation sets and the bench folder."""

    name: str = Field(pattern=NAME_PATTERN, max_length=80, description="Bench name.")
    description: str = Field("", description="What the bench measures (shown in the summary).")
    base: str | dict[str, Any] = Field(
        description="Path of a pipeline config, or an inline pipeline config table."
    )
    base_name: str = Field("base", pattern=NAME_PATTERN, description="Name of the base variant.")
    seeds: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5],
        description="A number of seeds (1..n) or a list of seeds.",
    )
    eval: dict[str, str | dict[str, Any]] | None = Field(
        None, description="Evaluation sets: 'test' (in domain) and named extra sets."
    )
    metric: str | None = Field(None, description="Primary metric (default: the task's).")
    also_metrics: list[str] = Field(
        default_factory=list,
        description="More metrics to summarize at a glance (e.g. roc_auc beside accuracy).",
    )
    percent: bool = Field(True, description="Show metrics x 100.")
    variants: list[VariantSpec] = Field(default_factory=list, description="The variants.")
    ablate: bool = Field(False, description="Add one variant per base component, removed.")
    skip_missing: bool = Field(
        False, description="Skip variants whose plugin is not installed, with a warning."
    )
    output_dir: str | None = Field(
        None,
        description="Bench folder, relative to the spec (default: runs/bench/<name> in the "
        "current folder).",
    )

    @field_validator("also_metrics")
    @classmethod
    def _also(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v) or any(not m.strip() for m in v):
            raise ValueError('also_metrics: name each metric once (e.g. ["roc_auc"])')
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            if v < 1 or v > 1000:
                raise ValueError("a number of seeds must be between 1 and 1000")
            return list(range(1, v + 1))
        return v

    @field_validator("seeds")
    @classmethod
    def _seed_list(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("give at least one seed")
        if any(s < 0 for s in v):
            raise ValueError("seeds must be >= 0")
        if len(set(v)) != len(v):
            raise ValueError("seeds repeat; list each seed once")
        return v


@dataclass(frozen=True)
class Variant:
    """A validated variant: its resolved pipeline config and the hash that keys its runs."""

    name: str
    description: str
    config: PipelineConfig
    hash: str
    soup: tuple[str, ...] = ()
    soup_hashes: tuple[str, ...] = ()
    soup_weights: tuple[float, ...] = ()
    teacher_hash: str | None = None

    @property
    def is_soup(self) -> bool:
        """A weight average of other variants' models (``config`` is its first member's)."""
        return bool(self.soup)

    @property
    def components(self) -> list[str]:
        """What the variant trains with, for the summary: component names, or for a soup
        (a soup variant, or a soup recipe's members set on the config) ``soup(0.67 a + 0.33
        b)``, the weights normalised."""
        if self.soup:
            return [soup_label(self.soup, self.soup_weights)]
        return config_components(self.config)


def soup_label(names: Sequence[str], weights: Sequence[float]) -> str:
    """``soup(a + b)`` for equal weights, else ``soup(0.67 a + 0.33 b)`` (normalised)."""
    total = sum(weights)
    equal = len(set(weights)) <= 1
    parts = [
        name if equal else f"{w / total:.2f} {name}" for name, w in zip(names, weights, strict=True)
    ]
    return f"soup({' + '.join(parts)})"


def config_components(cfg: PipelineConfig) -> list[str]:
    """A config's component names in section order; for a config whose ``soup`` is set (a
    soup recipe), the soup's label followed by the components every member shares; for one
    with a teacher stage, ``teacher(<its recipe or components>)`` first."""
    shared = [s.name for section in SECTIONS for s in getattr(cfg, section)]
    if cfg.soup:
        label = soup_label([m.name for m in cfg.soup], [m.weight for m in cfg.soup])
        return [label, *shared]
    if cfg.teacher is not None:
        return [f"teacher({teacher_label(cfg.teacher)})", *shared]
    return shared


@dataclass
class BenchPlan:
    """What a bench runs: variants (the base first), seeds, metric and the bench folder."""

    name: str
    source: str
    folder: Path
    seeds: list[int]
    metric: str
    percent: bool
    description: str
    variants: list[Variant]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    also_metrics: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def base(self) -> Variant:
        return self.variants[0]

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        close = difflib.get_close_matches(name, [v.name for v in self.variants], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(
            f"augreg: no variant {name!r} in {self.source}.{hint} "
            f"Variants: {', '.join(v.name for v in self.variants)}"
        )

    def runs(self, only: Sequence[str] | None = None) -> list[tuple[str, int, list[str]]]:
        """Unique (config hash, seed, variant names) to run, seed-major.

        Seed-major: a bench stopped early has every variant on its first seeds, so its pairs
        are complete. ``only`` limits the variants (the base is always included).
        """
        wanted = None if only is None else set(only)
        if wanted is not None:
            for v in self.variants:
                if v.name in wanted:
                    wanted.update(v.soup)  # a soup needs its members' runs
        chosen = [
            v for v in self.variants if wanted is None or v.name in wanted or v is self.variants[0]
        ]
        # Teachers before the runs that learn from them, and soups after every trained run of
        # their seed: they average those runs' models.
        chosen.sort(key=lambda v: v.is_soup)
        out: list[tuple[str, int, list[str]]] = []
        for seed in self.seeds:
            by_hash: dict[str, list[str]] = {}
            for v in chosen:
                if v.teacher_hash is not None:
                    by_hash.setdefault(v.teacher_hash, [])
                by_hash.setdefault(v.hash, []).append(v.name)
            out.extend((h, seed, names) for h, names in by_hash.items())
        return out

    @property
    def teachers(self) -> dict[str, dict[str, Any]]:
        """The teacher stages of the plan's variants, by config hash: each teacher's raw
        config (:func:`augreg.config.teacher_config`). A teacher trains once per seed, as a
        run of the bench (the run of a variant with the same config when there is one), and
        every variant with that teacher learns from its saved model."""
        out: dict[str, dict[str, Any]] = {}
        for v in self.variants:
            if v.teacher_hash is not None and v.teacher_hash not in out:
                out[v.teacher_hash] = teacher_config(v.config)
        return out

    @property
    def soup_members(self) -> set[str]:
        """Config hashes of the variants some soup averages: their runs save their models."""
        return {h for v in self.variants for h in v.soup_hashes}


def teacher_hash(cfg: PipelineConfig, host: PluginHost | None = None) -> str | None:
    """The config hash of a config's teacher stage (None without one): a bench keys the
    teacher's runs by it, so variants with the same teacher share its run of each seed.

    Raises:
        ConfigError: the teacher's config does not validate (names the problem).
    """
    if cfg.teacher is None:
        return None
    return config_hash(validate(teacher_config(cfg, host), source="teacher", host=host))


def soup_hash(member_hashes: Sequence[str], weights: Sequence[float]) -> str:
    """The key of a soup's runs: its members' config hashes and normalised weights, in order."""
    blob = json.dumps(
        {"soup": [[h, round(w, 6)] for h, w in zip(member_hashes, weights, strict=True)]},
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def config_hash(cfg: PipelineConfig) -> str:
    """A 16-hex-digit hash of what a run computes: the resolved config without the seed.

    Local data files enter by content, not by path (see :func:`file_fingerprint`): the same
    pipeline on the same data hashes alike from any folder or checkout, and editing a data file
    changes the hash. Hub data set names and other sources enter as they are. Left out: the
    seed, the name, the base folder and bookkeeping (run name, output folder, progress bars,
    saving the weights, logging steps, data loader workers, cache folder), and the ``data``
    options of :data:`HASHED_UNLESS_DEFAULT` at their defaults.

    Raises:
        ConfigError: a local data file does not exist (names the file and the base folder).
    """
    blob = json.dumps(hashed_config(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def hashed_config(cfg: PipelineConfig) -> dict[str, Any]:
    """What :func:`config_hash` hashes: the file layout, data files as fingerprints, no seed.

    Raises:
        ConfigError: a local data file does not exist.
    """
    d = cfg.to_dict()
    for key in ("name", "base_dir"):
        d.pop(key, None)
    for key in UNHASHED_TRAIN:
        d["train"].pop(key, None)
    base = Path(cfg.base_dir)
    problems: list[Problem] = []
    tables = [("data", d["data"])] if "data" in d else []
    tables += [(f"tasks[{i}].data", t["data"]) for i, t in enumerate(d.get("tasks") or [])]
    for where, data in tables:
        data.pop("cache_dir", None)
        for key, default in HASHED_UNLESS_DEFAULT.items():
            if key in data and data[key] == default:
                del data[key]
        sources = [(key, data, key) for key in DATA_SOURCES if data.get(key) is not None]
        sources += [(f"eval.{k}", data["eval"], k) for k in data.get("eval") or {}]
        for name, parent, key in sources:
            try:
                parent[key] = _fingerprinted(parent[key], base)
            except FileNotFoundError as exc:
                problems.append(
                    Problem(
                        f"{where}.{name}",
                        f"file not found: {exc.filename} (relative paths are resolved from "
                        f"{base}). Check the path.",
                    )
                )
    if problems:
        raise ConfigError(f"pipeline {cfg.name!r}", problems)
    return d


def _fingerprinted(source: Any, base: Path) -> Any:
    """A data source (file layout) with its local path replaced by the file's fingerprint.

    Anything else enters the hash as it is: a hub data set, or ``"train:rest"`` (a value:
    the rows of ``data.train`` outside the subset, which is fingerprinted itself).
    """
    if isinstance(source, Mapping) and isinstance(source.get("path"), str):
        path = Path(source["path"]).expanduser()
        return {**source, "path": file_fingerprint(path if path.is_absolute() else base / path)}
    return source


_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """What a data file is, whatever its name or folder: the sha256 of its bytes and its size.

    Memoised in the process per (resolved path, size, modification time), so a plan reads each
    file once however many variants use it, and an edited file is read again.

    Raises:
        FileNotFoundError: ``path`` is not a file.

    Example:
        >>> file_fingerprint("data/sst2/train.jsonl")  # doctest: +SKIP
        {'sha256': '9f2c...', 'size': 4183230}
    """
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise FileNotFoundError(2, "no such file", str(p))
    stat = p.stat()
    memo = (str(p), stat.st_size, stat.st_mtime_ns)
    digest = _FINGERPRINTS.get(memo)
    if digest is None:
        h = hashlib.sha256()
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        digest = _FINGERPRINTS[memo] = h.hexdigest()
    return {"sha256": digest, "size": stat.st_size}


def _prefix(problems: Sequence[Problem], where: str) -> list[Problem]:
    return [
        Problem(f"{where} {p.where}", p.message, p.component, p.origin, p.hint) for p in problems
    ]


def _missing_plugin(name: str, host: PluginHost) -> str | None:
    """What to install when ``name`` belongs to a plugin that is not loaded, else None."""
    if host.find(name) is not None or name.split(".", 1)[0] in host.plugins:
        return None
    return f"{name} is not installed ({install_hint(name)})"


def _names_in(raw: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for section in SECTIONS:
        for item in raw.get(section) or []:
            name = item.get("name") if isinstance(item, Mapping) else item
            if isinstance(name, str) and name not in out:
                out.append(name)
    return out


def _compose(
    base_raw: Mapping[str, Any],
    v: VariantSpec,
    host: PluginHost,
    problems: list[Problem],
    stated: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any] | None:
    """Apply a variant to the base (remove, recipe, add, replace); None if a step failed."""
    from augreg.host import _SECTION

    where = f"variant {v.name!r}"
    raw = copy.deepcopy(dict(base_raw))
    ok = True
    base_names = _names_in(raw)
    for j, name in enumerate(v.remove):
        if name not in base_names:
            close = difflib.get_close_matches(name, base_names, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            problems.append(
                Problem(
                    f"{where} remove[{j}]",
                    f"{name!r} is not a component of the base.{hint} Base components: "
                    f"{', '.join(base_names) or '(none)'}",
                )
            )
            ok = False
            continue
        for section in SECTIONS:
            raw[section] = [
                item
                for item in raw.get(section) or []
                if (item.get("name") if isinstance(item, Mapping) else item) != name
            ]
    if v.recipe is not None:
        raw["recipe"] = v.recipe
        found = _prefix(expand_recipes(raw, host, stated), where)
        problems.extend(found)
        ok = ok and not found
    for j, item in enumerate(v.add):
        spec = {"name": item} if isinstance(item, str) else dict(item)
        comp = spec.get("name")
        if not isinstance(comp, str):
            problems.append(
                Problem(f"{where} add[{j}]", f'needs a component name (name = "..."), got {item!r}')
            )
            ok = False
            continue
        info = host.find(comp)
        if info is None:
            msg, lines = host.unknown_hint(None, comp)
            if _missing_plugin(comp, host):
                lines = [*lines, "Or skip this variant: skip_missing = true (--skip-missing)."]
            problems.append(Problem(f"{where} add[{j}]", msg, component=comp, hint=tuple(lines)))
            ok = False
            continue
        section = _SECTION[info.kind]
        raw[section] = [*(raw.get(section) or []), spec]
    names = _names_in(raw)
    for key, options in v.replace.items():
        if key in REPLACEABLE:
            current = raw.get(key) or {}
            raw[key] = {**(current if isinstance(current, Mapping) else {}), **options}
            continue
        if key not in names:
            close = difflib.get_close_matches(key, [*REPLACEABLE, *names], n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            problems.append(
                Problem(
                    f"{where} replace.{key}",
                    f"is neither {'/'.join(REPLACEABLE)} nor a component of this variant.{hint} "
                    f"Its components: {', '.join(names) or '(none)'}",
                )
            )
            ok = False
            continue
        for section in SECTIONS:
            raw[section] = [
                {**item, **options}
                if isinstance(item, Mapping) and item.get("name") == key
                else item
                for item in raw.get(section) or []
            ]
    return raw if ok else None


def _ablations(
    spec: BenchSpec, base_raw: Mapping[str, Any], warnings: list[str]
) -> list[VariantSpec]:
    names = _names_in(base_raw)
    if not names:
        warnings.append("ablate: the base has no components; no ablation variant added")
    taken = {v.name for v in spec.variants} | {spec.base_name}
    out: list[VariantSpec] = []
    for name in names:
        vname = f"without_{name}"
        if vname in taken:
            warnings.append(f"ablate: a variant named {vname!r} exists already; kept that one")
            continue
        out.append(VariantSpec(name=vname, description=f"the base without {name}", remove=[name]))
    return out


def _soup_variant(
    v: VariantSpec,
    i: int,
    variants: Sequence[Variant],
    skipped: set[str],
    problems: list[Problem],
) -> Variant | str | None:
    """A soup variant from its spec; a reason to skip it (a member was skipped), or None
    after adding its problems."""
    where = f"variants[{i}]"
    found: list[Problem] = []
    if not v.soup:
        found.append(Problem(where, "soup_weights without soup: name the variants to average"))
    others = [k for k in ("remove", "recipe", "add", "replace") if getattr(v, k)]
    if others:
        found.append(
            Problem(
                where,
                f"a soup variant averages trained variants and trains nothing itself; remove "
                f"{', '.join(others)} (make a variant with them and name it in soup)",
            )
        )
    if v.soup and len(v.soup) < 2:
        found.append(Problem(f"{where} soup", "name two or more variants to average"))
    if len(set(v.soup)) != len(v.soup):
        found.append(Problem(f"{where} soup", "names a variant twice; name each member once"))
    if v.soup_weights is not None and len(v.soup_weights) != len(v.soup):
        found.append(
            Problem(
                f"{where} soup_weights",
                f"{len(v.soup_weights)} weight(s) for {len(v.soup)} members; give one per "
                "member, in the same order",
            )
        )
    if v.soup_weights is not None and not all(math.isfinite(w) and w > 0 for w in v.soup_weights):
        found.append(
            Problem(f"{where} soup_weights", f"must be positive numbers, got {v.soup_weights}")
        )
    by_name = {m.name: m for m in variants}
    members: list[Variant] = []
    missing = [name for name in v.soup if name in skipped]
    for name in v.soup:
        member = by_name.get(name)
        if name in skipped:
            continue
        if member is None:
            close = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            found.append(
                Problem(
                    f"{where} soup",
                    f"{name!r} is not a trained variant of this bench.{hint} Variants: "
                    f"{', '.join(n for n, m in by_name.items() if not m.is_soup)}",
                )
            )
        elif member.is_soup:
            found.append(Problem(f"{where} soup", f"{name!r} is a soup; name trained variants"))
        elif member.config.adapters:
            found.append(
                Problem(
                    f"{where} soup",
                    f"{name!r} trains adapters, whose runs save only what the adapters train; "
                    "soup variants without adapters",
                )
            )
        else:
            members.append(member)
    if found:
        problems.extend(found)
        return None
    if missing:
        return f"its members {', '.join(missing)} are skipped"
    weights = v.soup_weights or [1.0] * len(members)
    total = sum(weights)
    norm = tuple(w / total for w in weights)
    hashes = tuple(m.hash for m in members)
    description = v.description or (
        "the average of the weights of "
        + " and ".join(f"{m.name} ({w:.2f})" for m, w in zip(members, norm, strict=True))
        + ", per seed (model soup)"
    )
    return Variant(
        v.name,
        description,
        members[0].config,
        soup_hash(hashes, norm),
        soup=tuple(m.name for m in members),
        soup_hashes=hashes,
        soup_weights=norm,
    )


def load_spec(
    path_or_spec: str | Path | Mapping[str, Any],
    *,
    source: str | None = None,
    spec_dir: str | Path | None = None,
    host: PluginHost | None = None,
    ablate: bool | None = None,
    seeds: Sequence[int] | int | None = None,
    skip_missing: bool | None = None,
    output_dir: str | Path | None = None,
) -> BenchPlan:
    """Validate a spec (a TOML/YAML file, or a mapping) and build its plan.

    Relative paths in the spec (base config, evaluation sets, bench folder) resolve from the
    spec file's folder (``spec_dir`` for a mapping, default the current folder). The keyword
    arguments ``ablate``, ``seeds``, ``skip_missing`` and ``output_dir`` override the spec's.

    Raises:
        ConfigError: the file is unreadable, or every problem of the spec, its base and its
            variants, at once.
    """
    if isinstance(path_or_spec, Mapping):
        raw = dict(path_or_spec)
        source = source or "bench spec"
    else:
        raw = read_config_file(path_or_spec)
        source = source or str(path_or_spec)
        spec_dir = spec_dir or Path(path_or_spec).resolve().parent
    host = host or default_host()
    folder = Path(spec_dir or ".").resolve()
    data = raw
    if ablate is not None:
        data["ablate"] = ablate
    if seeds is not None:
        data["seeds"] = seeds
    if skip_missing is not None:
        data["skip_missing"] = skip_missing
    try:
        spec = BenchSpec.model_validate(data)
    except ValidationError as exc:
        found: list[Problem] = []
        for line in describe_validation_error(exc, BenchSpec):
            head, _, rest = line.partition(" ")
            rest = rest.replace("value error, ", "")
            where, dot, inner = head.partition(".")  # variants[0].ad -> variants[0]: ad ...
            if dot:
                found.append(Problem(where, f"{inner.rstrip(':')} {rest}"))
            else:
                found.append(Problem(where.rstrip(":"), rest))
        raise ConfigError(source, found) from None

    problems: list[Problem] = []
    warnings: list[str] = []
    # The base: a pipeline config file (paths relative to it) or a table (relative to the spec).
    if isinstance(spec.base, str):
        base_path = Path(spec.base).expanduser()
        base_path = base_path if base_path.is_absolute() else folder / base_path
        try:
            base_in = read_config_file(base_path)
        except ConfigError as exc:
            raise ConfigError(source, _prefix(exc.problems, "base")) from None
        base_in.setdefault("base_dir", str(base_path.resolve().parent))
    else:
        base_in = copy.deepcopy(dict(spec.base))
        base_in.setdefault("base_dir", str(folder))
    if spec.eval is not None:
        data_in = dict(base_in.get("data") or {})
        data_in["test"] = (
            absolute_source(spec.eval["test"], folder) if "test" in spec.eval else None
        )
        data_in["eval"] = {
            k: absolute_source(s, folder) for k, s in spec.eval.items() if k != "test"
        }
        base_in["data"] = data_in
    if base_in.get("tasks"):
        problems.append(
            Problem(
                "base",
                "is a multi-task pipeline ([[tasks]]); augreg bench compares single-task "
                "pipelines only for now. Compare multi-task variants with benchmarks/quality.py "
                "(study multitask) or bench each task's single-task pipeline",
            )
        )
        raise ConfigError(source, problems)
    try:
        base_cfg = validate(base_in, source=source, host=host)
    except ConfigError as exc:
        problems.extend(_prefix(exc.problems, "base"))
        raise ConfigError(source, problems) from None
    if base_cfg.data.test is None and not base_cfg.data.eval:
        problems.append(
            Problem("eval", "the bench has no evaluation set: add [eval] test = <path> (and more)")
        )
    base_raw = absolute_config(base_cfg)
    base_cfg = validate(base_raw, source=source, host=host)
    # A recipe's settings fill what the base file leaves unset (base_raw states everything).
    stated = {
        sec: list(base_in.get(sec) or {})
        for sec in ("data", "train")
        if isinstance(base_in.get(sec) or {}, Mapping)
    }
    metric = spec.metric or DEFAULT_METRIC[base_cfg.task.type]

    specs = list(spec.variants)
    if spec.ablate:
        specs += _ablations(spec, base_raw, warnings)
    variants = [
        Variant(
            spec.base_name,
            "the base pipeline",
            base_cfg,
            config_hash(base_cfg),
            teacher_hash=teacher_hash(base_cfg, host),
        )
    ]
    seen = {spec.base_name: "base_name"}
    skipped: list[tuple[str, str]] = []
    for i, v in enumerate(specs):
        if v.name in seen:
            problems.append(
                Problem(f"variants[{i}]", f"name {v.name!r} is used twice ({seen[v.name]}); rename")
            )
            continue
        seen[v.name] = f"variants[{i}]"
        if v.soup or v.soup_weights is not None:
            continue  # resolved below, once every trained variant is known
        wanted = [item if isinstance(item, str) else item.get("name", "") for item in v.add]
        if v.recipe is not None:
            from augreg import recipes

            if v.recipe in recipes.names():
                wanted += [n for n, _ in recipes.get(v.recipe).components]
        missing = [m for m in (_missing_plugin(str(n), host) for n in wanted) if m]
        if missing and spec.skip_missing:
            skipped.append((v.name, "; ".join(missing)))
            continue
        composed = _compose(base_raw, v, host, problems, stated)
        if composed is None:
            continue
        try:
            cfg = validate(composed, source=source, host=host)
        except ConfigError as exc:
            problems.extend(_prefix(exc.problems, f"variant {v.name!r}"))
            continue
        try:
            teacher = teacher_hash(cfg, host)
        except ConfigError as exc:
            problems.extend(_prefix(exc.problems, f"variant {v.name!r} teacher"))
            continue
        variants.append(Variant(v.name, v.description, cfg, config_hash(cfg), teacher_hash=teacher))
    skipped_names = {name for name, _ in skipped}
    for i, v in enumerate(specs):
        if (v.soup or v.soup_weights is not None) and seen.get(v.name) == f"variants[{i}]":
            soup = _soup_variant(v, i, variants, skipped_names, problems)
            if isinstance(soup, Variant):
                variants.append(soup)
            elif soup is not None:
                skipped.append((v.name, soup))
    position = {v.name: i for i, v in enumerate(specs)}  # soups back in the spec's order
    variants[1:] = sorted(variants[1:], key=lambda v: position[v.name])
    if problems:
        raise ConfigError(source, problems)
    out = Path(spec.output_dir).expanduser() if spec.output_dir else None
    if output_dir is not None:
        bench_folder = Path(output_dir).resolve()
    elif out is not None:
        bench_folder = (out if out.is_absolute() else folder / out).resolve()
    else:
        bench_folder = (Path("runs") / "bench" / spec.name).resolve()
    return BenchPlan(
        name=spec.name,
        source=source,
        folder=bench_folder,
        seeds=list(spec.seeds),
        metric=metric,
        also_metrics=[m for m in spec.also_metrics if m != metric],
        percent=spec.percent,
        description=spec.description,
        variants=variants,
        skipped=skipped,
        warnings=warnings,
    )
