"""The conformance kit: base test classes a plugin subclasses, one per component kind.

A plugin's test names its component and options; pytest collects the inherited checks and
their fixtures (methods of the class, so no conftest is needed)::

    from augreg.testing import AugmenterContract

    class TestShout(AugmenterContract):
        component = "hello.shout"
        options = {"copies": 2}

Class attributes a subclass may set:

* ``component`` (required): the registered name, ``<plugin>.<component>``.
* ``options``: options to build it with (default: its defaults). ``augreg check-plugin``
  sets them from the component's :meth:`~augreg.Component.conformance_options`.
* ``tasks``: the tasks to check (default: every task in ``supports_tasks``); set it when
  the options fit one task only (a teacher with the sequence labels).
* ``plugins``: ``{name: module}`` of in-code plugins to register instead of loading the
  installed entry points (for components not installed as a distribution).
* ``heavy_import_ok``: set True only if importing the component's module must import torch.
* ``seed``: the seed of the rng fixture and of torch (default 13).

Fixtures a subclass may override (same name): ``examples`` (inputs of the data checks, given
``task``), ``model`` and ``batch``.

A check is skipped only when the component's declared capabilities make it inapplicable
(``supports_tasks``, ``changes_labels``, ``heavy_import_ok``); the skip says why. Every check
that runs the component runs with the network blocked (:func:`augreg.testing.no_network`).
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import pickle
import random
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from augreg.components import TASKS, Component, Example, Kind, ModelContext, SetupContext
from augreg.errors import AugregError, OptionsError
from augreg.hookspecs import ENTRY_POINT_GROUP
from augreg.host import NAME_RE, ComponentInfo, PluginHost
from augreg.options import Options
from augreg.seeding import derive_seed
from augreg.testing.helpers import (
    DEFAULT_TAGS,
    NetworkAccessError,
    entity_spans,
    isolated_host,
    make_batch,
    no_network,
    sequence_examples,
    token_examples,
)
from augreg.testing.models import tiny_model, tiny_tokenizer

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = [
    "AdapterContract",
    "AugmenterContract",
    "ComponentContract",
    "InjectorContract",
    "ObjectiveContract",
    "RegularizerContract",
    "heavy_imports_of",
    "model_context",
]

SEQUENCE_LABELS: tuple[str, ...] = ("negative", "positive")
HEAVY_MODULES: tuple[str, ...] = ("torch", "transformers", "tensorflow", "jax")

# -- light import ----------------------------------------------------------------------------

_LIGHT_IMPORT_SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.abc, importlib.util, json, sys, traceback

    HEAVY = {heavy!r}
    first = {{}}

    class Watch(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            top = fullname.split(".")[0]
            if top in HEAVY and top not in first:
                stack = [f for f in traceback.extract_stack()[:-1]
                         if "importlib" not in f.filename and f.filename != "<string>"]
                first[top] = [f"{{f.filename}}:{{f.lineno}}" for f in stack[-3:]]
            return None

    sys.meta_path.insert(0, Watch())
    name, path = sys.argv[1], sys.argv[2]
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        if not path:
            raise
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    print(json.dumps({{m: first.get(m, []) for m in HEAVY if m in sys.modules}}))
    """
)

_light_cache: dict[tuple[str, str], dict[str, list[str]]] = {}


def heavy_imports_of(module: str, path: str = "") -> dict[str, list[str]]:
    """Import ``module`` in a fresh interpreter; return the heavy modules it pulled in.

    The answer maps each heavy module (``torch``, ``transformers``, ...) to the last frames
    that imported it first, so the message can point at the offending line. Results are cached
    per process.

    Args:
        module: Dotted module name.
        path: Its file, used when the name is not importable as is (a test module).

    Raises:
        AssertionError: the module cannot be imported in a fresh interpreter.
    """
    key = (module, path)
    if key not in _light_cache:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        script = _LIGHT_IMPORT_SCRIPT.format(heavy=HEAVY_MODULES)
        proc = subprocess.run(
            [sys.executable, "-c", script, module, path],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"augreg: importing {module} in a fresh interpreter failed:\n{proc.stderr[-2000:]}"
            )
        _light_cache[key] = json.loads(proc.stdout.strip().splitlines()[-1])
    return _light_cache[key]


def _module_file(name: str) -> str:
    module = sys.modules.get(name)
    return str(getattr(module, "__file__", "") or "")


# -- weight watching -------------------------------------------------------------------------


class _WeightWrites:
    """Records in-place writes to the storage of given tensors (``p.data.copy_`` included).

    Weight edits that are restored afterwards leave ``torch.equal`` true, so the kit watches
    the dispatcher for any op that writes into a parameter's storage while a term is computed.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.by_ptr = {t.untyped_storage().data_ptr(): n for n, t in tensors.items()}
        self.hits: list[str] = []
        self._mode: Any = None

    def __enter__(self) -> _WeightWrites:
        try:
            from torch.utils._python_dispatch import TorchDispatchMode
        except ImportError:  # pragma: no cover - very old torch: equality checks still run
            return self
        watcher = self

        class Mode(TorchDispatchMode):  # type: ignore[misc,no-untyped-call,unused-ignore]
            def __torch_dispatch__(
                self, func: Any, types: Any, args: Any = (), kwargs: Any = None
            ) -> Any:
                kwargs = kwargs or {}
                import torch

                for i, arg in enumerate(func._schema.arguments):
                    alias = arg.alias_info
                    if alias is None or not alias.is_write:
                        continue
                    value = args[i] if i < len(args) else kwargs.get(arg.name)
                    if isinstance(value, torch.Tensor):
                        name = watcher.by_ptr.get(value.untyped_storage().data_ptr())
                        if name is not None:
                            watcher.hits.append(f"{func} on {name}")
                return func(*args, **kwargs)

        self._mode = Mode()  # type: ignore[no-untyped-call,unused-ignore]
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._mode is not None:
            self._mode.__exit__(*exc)


# -- the base contract -----------------------------------------------------------------------


class ComponentContract:
    """Checks every component must pass, whatever its kind.

    Subclass a kind's contract (``AugmenterContract``, ...) rather than this class.
    """

    kind: ClassVar[Kind]
    component: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Any]] = {}
    tasks: ClassVar[frozenset[str] | None] = None
    plugins: ClassVar[Mapping[str, Any] | None] = None
    heavy_import_ok: ClassVar[bool] = False
    seed: ClassVar[int] = 13

    # -- fixtures ----------------------------------------------------------------------------

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _augreg_no_network(cls) -> Iterator[None]:
        """Every check of the class, its set-up included, runs with the network blocked."""
        with no_network():
            yield

    @pytest.fixture(scope="class")
    @classmethod
    def host(cls) -> PluginHost:
        """An isolated host: installed entry points, or ``plugins`` when the class sets it."""
        return isolated_host(cls.plugins)

    @pytest.fixture(scope="class")
    @classmethod
    def info(cls, host: PluginHost) -> ComponentInfo:
        """The registration of the component under test."""
        if not cls.component:
            pytest.fail(f"{cls.__name__}: set component = '<plugin>.<component>'")
        found = host.find(cls.component)
        if found is None:
            failures = "".join(f"\n  {f.render()}" for f in host.failures)
            pytest.fail(
                f"augreg: {cls.component!r} is not registered. Is its distribution installed "
                f"(pip install -e .) and its entry point in the {ENTRY_POINT_GROUP!r} group? "
                f"Registered: {', '.join(host.names()) or '(none)'}{failures}"
            )
        return found

    @pytest.fixture(scope="class")
    @classmethod
    def component_cls(cls, info: ComponentInfo) -> type[Component]:
        """The component class."""
        return info.cls

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer(cls) -> Any:
        """The tiny local tokenizer."""
        return tiny_tokenizer()

    @pytest.fixture(scope="class", params=sorted(TASKS))
    @classmethod
    def task(cls, request: pytest.FixtureRequest, component_cls: type[Component]) -> str:
        """Each task type the component declares in ``supports_tasks``."""
        task: str = request.param
        if task not in component_cls.supports_tasks:
            pytest.skip(
                f"{cls.component} does not support {task} "
                f"(supports_tasks = {sorted(component_cls.supports_tasks)})"
            )
        if cls.tasks is not None and task not in cls.tasks:
            pytest.skip(f"the contract checks {sorted(cls.tasks)} only (tasks = ...)")
        return task

    @pytest.fixture
    def rng(self) -> random.Random:
        """A seeded ``random.Random``."""
        return random.Random(self.seed)

    @pytest.fixture
    def examples(self, task: str) -> list[Example]:
        """Fresh sample examples of the task (override to feed domain-specific inputs)."""
        return sequence_examples() if task == "sequence_classification" else token_examples()

    @pytest.fixture
    def label_names(self, task: str) -> list[str]:
        """Class names (sequence) or IOB2 tags (token) of the sample data."""
        return list(SEQUENCE_LABELS if task == "sequence_classification" else DEFAULT_TAGS)

    # -- helpers -----------------------------------------------------------------------------

    @classmethod
    def build(cls, component_cls: type[Component], **overrides: Any) -> Component:
        """Build the component with the class's ``options`` (and overrides), not set up.

        When the options alone are refused (a required option is missing), the check fails
        with a message saying how to give the kit options.
        """
        try:
            return component_cls({**dict(cls.options), **overrides})
        except AugregError as exc:
            if overrides:
                try:
                    component_cls(dict(cls.options))
                except AugregError:
                    pass
                else:
                    raise  # the overrides are at fault: the check expects the error
            pytest.fail(cls._options_hint(f"cannot be built with {cls._which_options()}", exc))

    @classmethod
    def _which_options(cls) -> str:
        return f"the options {dict(cls.options)!r}" if cls.options else "its default options"

    @classmethod
    def _options_hint(cls, what: str, exc: BaseException) -> str:
        """Why the component failed with the contract's options, and how to give others."""
        return (
            f"augreg: {cls.component} {what}: {exc}\n"
            "Give the conformance kit options that run offline: declare a classmethod "
            "conformance_options(cls, folder, task) on the component (used by augreg "
            "check-plugin; it may save a tiny model or a small file under folder), and in "
            "a contract of your own set options = {...}. See docs/writing-plugins.md."
        )

    @classmethod
    def set_up(cls, built: Component, task: str, tokenizer: Any, cache_dir: Path) -> None:
        """Run ``setup()`` as the kit does; a failure says how to give the kit options."""
        try:
            built.setup(cls.setup_context(task, tokenizer, cache_dir))
        except (AugregError, OSError, NetworkAccessError) as exc:
            # OSError: a hub model that is not in the local cache
            pytest.fail(cls._options_hint(f"cannot be set up with {cls._which_options()}", exc))

    @classmethod
    def setup_context(cls, task: str, tokenizer: Any, cache_dir: Path) -> SetupContext:
        """The set-up context the kit gives components."""
        train = sequence_examples() if task == "sequence_classification" else token_examples()
        labels = SEQUENCE_LABELS if task == "sequence_classification" else DEFAULT_TAGS
        return SetupContext(
            task=task,
            labels=list(labels),
            seed=cls.seed,
            cache_dir=cache_dir,
            tokenizer=tokenizer,
            train_examples=train,
            device="cpu",
        )

    # -- checks ------------------------------------------------------------------------------

    def test_name_format(self, info: ComponentInfo) -> None:
        """The name is ``<plugin>.<component>`` in lower case, prefixed by its plugin's name."""
        assert NAME_RE.match(info.name), f"{info.name!r} is not '<plugin>.<component>'"
        assert info.name.split(".", 1)[0] == info.plugin.name, (
            f"{info.name!r} is registered by plugin {info.plugin.name!r}; name it "
            f"'{info.plugin.name}.<component>'"
        )

    def test_registered_with_its_kind(self, info: ComponentInfo, host: PluginHost) -> None:
        """Registered under its own name, through the hook of its kind."""
        assert info.kind == self.kind, (
            f"{info.name} is registered as a {info.kind}; test it with the {info.kind} contract"
        )
        assert info.cls.name == self.component
        assert host.get(self.kind, self.component).cls is info.cls

    def test_registered_through_entry_point(self, info: ComponentInfo) -> None:
        """An installed component comes from an ``augreg`` entry point of its distribution."""
        if self.plugins is not None:
            pytest.skip("registered in code (the contract sets plugins = {...})")
        eps = [
            ep
            for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
            if ep.name == info.plugin.name
        ]
        assert eps, (
            f"no entry point {info.plugin.name!r} in group {ENTRY_POINT_GROUP!r}; add "
            f'[project.entry-points.augreg] {info.plugin.name} = "<package>.hooks"'
        )
        dists = {ep.dist.name for ep in eps if ep.dist is not None}
        assert info.plugin.distribution in dists, (
            f"{info.name} is provided by {info.plugin.distribution}, but the entry point "
            f"{info.plugin.name!r} belongs to {sorted(dists)}"
        )

    def test_options_forbid_unknown_keys(self, component_cls: type[Component]) -> None:
        """``Options`` derives from ``augreg.Options``; an unknown option raises OptionsError."""
        assert issubclass(component_cls.Options, Options), (
            f"{component_cls.__qualname__}.Options must subclass augreg.Options "
            "(or the kind's Options)"
        )
        assert component_cls.Options.model_config.get("extra") == "forbid"
        with pytest.raises(OptionsError) as excinfo:
            self.build(component_cls, augreg_not_an_option=1)
        assert "augreg_not_an_option" in str(excinfo.value)

    def test_options_are_frozen(self, component_cls: type[Component]) -> None:
        """Options cannot change after the component is built (its fingerprint relies on it)."""
        assert component_cls.Options.model_config.get("frozen") is True

    def test_every_option_is_described(self, component_cls: type[Component]) -> None:
        """Every option field has a description (shown by ``augreg plugins`` and in errors)."""
        fields = component_cls.Options.model_fields
        missing = [n for n, f in fields.items() if not (f.description or "").strip()]
        assert not missing, (
            f"options without a description: {missing}; use Field(..., description='...')"
        )

    def test_builds_with_the_given_options(self, component_cls: type[Component]) -> None:
        """The contract's options are accepted and kept (compared after validation, so a
        list given for a tuple field or a dict for a nested model counts as kept)."""
        built = self.build(component_cls)
        expected = component_cls.Options.model_validate(dict(self.options))
        for key in self.options:
            assert getattr(built.options, key) == getattr(expected, key), (
                f"option {key!r}: built with {getattr(built.options, key)!r}, "
                f"the contract gave {getattr(expected, key)!r}"
            )

    def test_light_import(self, info: ComponentInfo) -> None:
        """Importing the component's module (and its plugin's hooks) does not import torch."""
        if self.heavy_import_ok:
            pytest.skip("the contract declares heavy_import_ok = True")
        modules = [info.cls.__module__]
        if info.plugin.distribution != "(in code)":
            modules.append(info.plugin.module.split(":", 1)[0])
        for module in dict.fromkeys(modules):
            heavy = heavy_imports_of(module, _module_file(module))
            assert not heavy, (
                f"importing {module} imports {', '.join(heavy)} (first imported at "
                f"{heavy[next(iter(heavy))]}); import heavy libraries inside setup() or the "
                "methods that use them, so that `augreg plugins` stays fast"
            )

    def test_picklable(self, component_cls: type[Component]) -> None:
        """A built (not yet set up) component survives a pickle round trip (worker processes)."""
        built = self.build(component_cls)
        clone = pickle.loads(pickle.dumps(built))
        assert type(clone) is type(built)
        assert clone == built
        assert clone.fingerprint() == built.fingerprint()

    def test_has_docstring(self, component_cls: type[Component]) -> None:
        """The class has its own docstring (what it does; shown by ``augreg plugins``)."""
        doc = component_cls.__dict__.get("__doc__") or ""
        assert doc.strip(), f"{component_cls.__qualname__} has no docstring"

    def test_docstring_states_cost(self, component_cls: type[Component]) -> None:
        """The docstring (class or module) states the cost, e.g. ``Cost: one extra pass``."""
        doc = component_cls.__dict__.get("__doc__") or ""
        module_doc = inspect.getdoc(sys.modules.get(component_cls.__module__)) or ""
        assert "cost" in (doc + module_doc).lower(), (
            f"{component_cls.__qualname__}'s docstring does not state its cost; add a line "
            "such as 'Cost: one extra forward and backward pass per step.'"
        )

    def test_setup_runs_offline(
        self,
        component_cls: type[Component],
        task: str,
        tokenizer: Any,
        tmp_path: Path,
    ) -> None:
        """``setup()`` succeeds with the network blocked and only writes to ``cache_dir``."""
        built = self.build(component_cls)
        self.set_up(built, task, tokenizer, tmp_path)


# -- data-side contracts ---------------------------------------------------------------------


def _check_examples(result: Any, where: str) -> list[Example]:
    assert isinstance(result, list), f"{where} returned {type(result).__name__}, not a list"
    for item in result:
        assert isinstance(item, dict), f"{where} returned a {type(item).__name__}, not a dict"
    return result


def _assert_label_kept(task: str, source: Example, out: Example, where: str) -> None:
    if task == "sequence_classification":
        assert out.get("label") == source["label"], (
            f"{where} changed the label {source['label']!r} -> {out.get('label')!r}; declare "
            "changes_labels = True if that is intended"
        )
        return
    _assert_aligned(out, where)
    before = Counter(kind for _, _, kind in entity_spans(source["tags"]))
    after = Counter(kind for _, _, kind in entity_spans(out["tags"]))
    assert before == after, (
        f"{where} changed the entity spans: source {dict(before)}, output {dict(after)}; every "
        "span of the source must stay a contiguous span of the same type"
    )


def _assert_aligned(out: Example, where: str) -> None:
    tokens, tags = out.get("tokens"), out.get("tags")
    assert isinstance(tokens, list) and isinstance(tags, list), (
        f"{where}: a token-classification example needs list 'tokens' and 'tags'"
    )
    assert len(tokens) == len(tags), (
        f"{where}: {len(tokens)} tokens but {len(tags)} tags: {tokens} / {tags}"
    )
    for token in tokens:
        assert isinstance(token, str) and token, f"{where}: empty or non-string token {token!r}"
    try:
        entity_spans(tags)
    except ValueError as exc:
        raise AssertionError(f"{where}: tags are not valid IOB2: {exc}") from None


def model_context(task: str, model: Any, tokenizer: Any, max_length: int = 64) -> ModelContext:
    """A :class:`augreg.ModelContext` as a refresh builds it: the model in eval mode, the
    task's own tokenize function (labels of :data:`SEQUENCE_LABELS` or :data:`DEFAULT_TAGS`).

    Example:
        >>> ctx = model_context("sequence_classification", tiny_model(), tiny_tokenizer())
        >>> aug.use_model(ctx)  # doctest: +SKIP
    """
    from augreg.config import TaskConfig
    from augreg.tasks import get_task

    labels = SEQUENCE_LABELS if task == "sequence_classification" else DEFAULT_TAGS
    spec = get_task(TaskConfig(type=task), list(labels))

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return spec.tokenize_batch(batch, tokenizer, max_length)

    model.eval()
    return ModelContext(model, tokenizer, task=task, epoch=0, tokenize=tokenize)


class AugmenterContract(ComponentContract):
    """Checks for an :class:`augreg.Augmenter`.

    Determinism given the rng, batch equals one-by-one, input not mutated, labels (and spans)
    preserved unless ``changes_labels``, explicit behaviour on empty input, keys kept.

    An augmenter with ``needs_model`` runs every check with a model handed over as a refresh
    does (the ``augmenter_model`` fixture: a tiny model of the task in eval mode; override it
    to give a trained one), plus: a clear ``AugregError`` without a model, the model left
    untouched, and a consistent ``refresh_epoch`` schedule.
    """

    kind: ClassVar[Kind] = "augmenter"

    @pytest.fixture(scope="class")
    @classmethod
    def augmenter_model(cls, task: str) -> Any:
        """For ``needs_model`` augmenters: the model handed over (a tiny one, eval mode)."""
        labels = SEQUENCE_LABELS if task == "sequence_classification" else DEFAULT_TAGS
        model = tiny_model(task, num_labels=len(labels), seed=cls.seed)
        model.eval()
        return model

    @pytest.fixture(scope="class")
    @classmethod
    def instance(
        cls,
        component_cls: type[Component],
        task: str,
        tokenizer: Any,
        tmp_path_factory: pytest.TempPathFactory,
        request: pytest.FixtureRequest,
    ) -> Any:
        """The component, built and set up once per task (augmenters keep no state).

        A ``needs_model`` augmenter also gets ``augmenter_model`` through ``use_model``.
        """
        built = cls.build(component_cls)
        cls.set_up(built, task, tokenizer, tmp_path_factory.mktemp("augreg"))
        if getattr(component_cls, "needs_model", False):
            model = request.getfixturevalue("augmenter_model")
            built.use_model(model_context(task, model, tokenizer))  # type: ignore[attr-defined]
        return built

    def _augment(self, instance: Any, example: Example, seed: int) -> list[Example]:
        out = instance.augment(example, random.Random(seed))
        return _check_examples(out, f"{self.component}.augment")

    def _seed_of(self, i: int, example: Example) -> int:
        return derive_seed(self.seed, self.component, example.get("augreg_id", i))

    def test_writes_new_examples(self, instance: Any, examples: list[Example]) -> None:
        """On ordinary inputs it writes at least one example that differs from its source."""
        changed = 0
        for i, ex in enumerate(examples):
            for out in self._augment(instance, copy.deepcopy(ex), self._seed_of(i, ex)):
                changed += out != ex
        assert changed, (
            f"{self.component} returned no new example for any of {len(examples)} ordinary inputs"
        )

    def test_deterministic_given_rng(self, instance: Any, examples: list[Example]) -> None:
        """Same rng seed, same output; no global random state involved."""
        for i, ex in enumerate(examples):
            seed = self._seed_of(i, ex)
            first = self._augment(instance, copy.deepcopy(ex), seed)
            random.seed(12345)  # global state must not matter
            second = self._augment(instance, copy.deepcopy(ex), seed)
            assert first == second, f"example {i}: two runs with one seed differ"

    def test_batch_equals_one_by_one(self, instance: Any, examples: list[Example]) -> None:
        """``augment_batch`` equals ``augment`` per example, whatever the batch split."""
        seeds = [self._seed_of(i, ex) for i, ex in enumerate(examples)]
        single = [
            self._augment(instance, copy.deepcopy(ex), s)
            for ex, s in zip(examples, seeds, strict=True)
        ]
        whole = instance.augment_batch(copy.deepcopy(examples), [random.Random(s) for s in seeds])
        assert isinstance(whole, list) and len(whole) == len(examples)
        assert whole == single, "augment_batch differs from augment one by one"
        half = len(examples) // 2
        parts = instance.augment_batch(
            copy.deepcopy(examples[:half]), [random.Random(s) for s in seeds[:half]]
        ) + instance.augment_batch(
            copy.deepcopy(examples[half:]), [random.Random(s) for s in seeds[half:]]
        )
        assert parts == single, "augment_batch output depends on the batch split"

    def test_input_not_mutated(self, instance: Any, examples: list[Example]) -> None:
        """Neither ``augment`` nor ``augment_batch`` changes its input examples."""
        before = copy.deepcopy(examples)
        for i, ex in enumerate(examples):
            self._augment(instance, ex, self._seed_of(i, ex))
        assert examples == before, "augment() mutated its input"
        instance.augment_batch(
            examples, [random.Random(self._seed_of(i, ex)) for i, ex in enumerate(examples)]
        )
        assert examples == before, "augment_batch() mutated its input"

    def test_labels_preserved(self, instance: Any, task: str, examples: list[Example]) -> None:
        """Labels are kept; token tags stay aligned and every entity span survives."""
        if type(instance).changes_labels:
            pytest.skip(f"{self.component} declares changes_labels = True")
        for i, ex in enumerate(examples):
            for out in self._augment(instance, copy.deepcopy(ex), self._seed_of(i, ex)):
                _assert_label_kept(task, ex, out, f"{self.component} on example {i}")

    def test_empty_input(self, instance: Any, task: str, rng: random.Random) -> None:
        """Empty text or no tokens: returns ``[]`` or raises ``AugregError``, nothing else."""
        if task == "sequence_classification":
            empty: Example = {"text": "", "label": 1, "augreg_id": "empty"}
        else:
            empty = {"tokens": [], "tags": [], "augreg_id": "empty"}
        try:
            out = instance.augment(empty, rng)
        except AugregError:
            return
        except Exception as exc:
            pytest.fail(
                f"{self.component} raised {type(exc).__name__}: {exc} on an empty input; "
                "return [] or raise augreg.AugregError with a message"
            )
        assert out == [], f"{self.component} wrote {out!r} from an empty input; return []"

    def test_keeps_keys_and_token_structure(
        self, instance: Any, task: str, examples: list[Example]
    ) -> None:
        """Outputs keep every key of their source (ids, provenance, extra columns); token
        outputs have one tag per token in valid IOB2, even when labels may change."""
        for i, ex in enumerate(examples):
            for out in self._augment(instance, copy.deepcopy(ex), self._seed_of(i, ex)):
                missing = set(ex) - set(out)
                assert not missing, f"example {i}: output lost the keys {sorted(missing)}"
                if task == "token_classification":
                    _assert_aligned(out, f"{self.component} on example {i}")

    # -- augmenters that need the model --------------------------------------------------------

    def _needs_model(self, component_cls: type[Component]) -> None:
        if not getattr(component_cls, "needs_model", False):
            pytest.skip(f"{self.component} does not declare needs_model = True")

    def test_needs_model_refuses_without_one(
        self,
        component_cls: type[Component],
        task: str,
        tokenizer: Any,
        examples: list[Example],
        tmp_path: Path,
    ) -> None:
        """Without a model handed over, it raises ``AugregError`` (not AttributeError)."""
        self._needs_model(component_cls)
        built = self.build(component_cls)
        self.set_up(built, task, tokenizer, tmp_path)
        with pytest.raises(AugregError):
            for i, ex in enumerate(examples):
                built.augment(copy.deepcopy(ex), random.Random(self._seed_of(i, ex)))  # type: ignore[attr-defined]

    def test_model_left_untouched(
        self,
        component_cls: type[Component],
        instance: Any,
        augmenter_model: Any,
        examples: list[Example],
    ) -> None:
        """Writing views changes no weight, no gradient and no module's train/eval mode."""
        self._needs_model(component_cls)
        before = {k: v.clone() for k, v in augmenter_model.state_dict().items()}
        modes = [m.training for m in augmenter_model.modules()]
        for i, ex in enumerate(examples):
            self._augment(instance, copy.deepcopy(ex), self._seed_of(i, ex))
        after = augmenter_model.state_dict()
        changed = [k for k, v in before.items() if not v.equal(after[k])]
        assert not changed, f"{self.component} changed the weights {changed[:5]}"
        assert all(p.grad is None for p in augmenter_model.parameters()), (
            f"{self.component} left gradients on the model; score without gradients"
        )
        assert [m.training for m in augmenter_model.modules()] == modes, (
            f"{self.component} switched modules between train and eval mode"
        )

    def test_refresh_schedule_is_consistent(self, component_cls: type[Component]) -> None:
        """``refresh_epoch``: never in the future, a refresh epoch maps to itself, never goes
        back, and once started there is always a refresh to use."""
        self._needs_model(component_cls)
        built = self.build(component_cls)
        last: int | None = None
        for epoch in range(40):
            at = built.refresh_epoch(epoch)  # type: ignore[attr-defined]
            if at is None:
                assert last is None, f"refresh_epoch({epoch}) is None after a refresh at {last}"
                continue
            assert isinstance(at, int) and 0 <= at <= epoch, (
                f"refresh_epoch({epoch}) = {at!r}; it must be an epoch <= {epoch}"
            )
            assert built.refresh_epoch(at) == at, f"refresh_epoch({at}) must be {at} itself"  # type: ignore[attr-defined]
            assert last is None or at >= last, f"refresh_epoch went back from {last} to {at}"
            last = at


class InjectorContract(ComponentContract):
    """Checks for an :class:`augreg.KnowledgeInjector`.

    Batch equals one-by-one, input not mutated, labels kept (tags realigned), keys kept,
    ``prepare_model`` idempotent.
    """

    kind: ClassVar[Kind] = "injector"

    @pytest.fixture(scope="class")
    @classmethod
    def instance(
        cls,
        component_cls: type[Component],
        task: str,
        tokenizer: Any,
        tmp_path_factory: pytest.TempPathFactory,
    ) -> Any:
        """The component, built and set up once per task."""
        built = cls.build(component_cls)
        cls.set_up(built, task, tokenizer, tmp_path_factory.mktemp("augreg"))
        return built

    def _inject(self, instance: Any, example: Example) -> Example:
        out = instance.inject(example)
        assert isinstance(out, dict), f"inject() returned {type(out).__name__}, not a dict"
        return out

    def test_batch_equals_one_by_one(self, instance: Any, examples: list[Example]) -> None:
        """``inject_batch`` equals ``inject`` per example."""
        single = [self._inject(instance, copy.deepcopy(ex)) for ex in examples]
        whole = instance.inject_batch(copy.deepcopy(examples))
        assert whole == single, "inject_batch differs from inject one by one"

    def test_input_not_mutated(self, instance: Any, examples: list[Example]) -> None:
        """Neither ``inject`` nor ``inject_batch`` changes its input examples."""
        before = copy.deepcopy(examples)
        for ex in examples:
            self._inject(instance, ex)
        assert examples == before, "inject() mutated its input"
        instance.inject_batch(examples)
        assert examples == before, "inject_batch() mutated its input"

    def test_labels_kept(self, instance: Any, task: str, examples: list[Example]) -> None:
        """Labels are kept; inserted tokens get tags so spans stay aligned and whole."""
        for i, ex in enumerate(examples):
            out = self._inject(instance, copy.deepcopy(ex))
            _assert_label_kept(task, ex, out, f"{self.component} on example {i}")

    def test_keeps_keys(self, instance: Any, examples: list[Example]) -> None:
        """The enriched example keeps every key of its source."""
        for i, ex in enumerate(examples):
            missing = set(ex) - set(self._inject(instance, copy.deepcopy(ex)))
            assert not missing, f"example {i}: output lost the keys {sorted(missing)}"

    def test_prepare_model_idempotent(
        self, instance: Any, task: str, tokenizer: Any, label_names: list[str]
    ) -> None:
        """Preparing the model twice leaves the same parameters as preparing it once."""
        model = tiny_model(task, num_labels=len(label_names), seed=self.seed)
        once = instance.prepare_model(model, tokenizer)
        names = [n for n, _ in once.named_parameters()]
        count = sum(p.numel() for p in once.parameters())
        twice = instance.prepare_model(once, tokenizer)
        assert [n for n, _ in twice.named_parameters()] == names, "prepare_model wrapped twice"
        assert sum(p.numel() for p in twice.parameters()) == count


# -- step-side contracts ---------------------------------------------------------------------


def _finite(value: float) -> bool:
    return math.isfinite(value)


class _StepContract(ComponentContract):
    """Fixtures shared by the objective and regularizer contracts."""

    @pytest.fixture
    def model(self, task: str, label_names: list[str]) -> nn.Module:
        """A fresh tiny model with a head for the task, in training mode."""
        import torch

        torch.manual_seed(self.seed)
        model = tiny_model(task, num_labels=len(label_names), seed=self.seed)
        model.train()
        return model  # type: ignore[no-any-return]

    @pytest.fixture
    def batch(
        self, task: str, tokenizer: Any, examples: list[Example], label_names: list[str]
    ) -> dict[str, Any]:
        """The sample examples as a padded batch with labels."""
        return make_batch(task, tokenizer, examples, label_names=label_names)

    @pytest.fixture
    def instance(
        self, component_cls: type[Component], task: str, tokenizer: Any, tmp_path: Path
    ) -> Any:
        """A fresh component per check (objectives and regularizers may keep state)."""
        built = self.build(component_cls)
        self.set_up(built, task, tokenizer, tmp_path)
        return built


def _cross_entropy() -> Any:
    from augreg.builtins.objectives import CrossEntropy

    return CrossEntropy()


class ObjectiveContract(_StepContract):
    """Checks for an :class:`augreg.Objective`.

    Finite scalar loss, gradients reach the model, label ``-100`` ignored, ``weight`` scales it.
    """

    kind: ClassVar[Kind] = "objective"

    def test_finite_scalar(
        self, instance: Any, model: nn.Module, batch: dict[str, Any], task: str
    ) -> None:
        """The loss is a finite 0-d tensor that requires grad."""
        import torch

        from augreg.step import compute_loss

        result = compute_loss(model, batch, [instance], task=task)
        assert result.context is not None
        term = instance.loss(result.context)
        assert isinstance(term, torch.Tensor) and term.dim() == 0, f"loss() returned {term!r}"
        assert _finite(float(term.detach())), f"loss is {float(term.detach())}"
        assert term.requires_grad, "the loss is detached from the model"

    def test_gradients_reach_trainable_parameters(
        self, instance: Any, model: nn.Module, batch: dict[str, Any], task: str
    ) -> None:
        """Backward reaches the input embeddings (so the whole model); every grad is finite."""
        import torch

        from augreg.step import compute_loss

        compute_loss(model, batch, [instance], task=task).loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        for name, grad in grads.items():
            if grad is not None:
                assert bool(torch.isfinite(grad).all()), f"non-finite gradient on {name}"
        emb = model.get_input_embeddings().weight  # type: ignore[operator]
        assert emb.grad is not None and bool(emb.grad.abs().sum() > 0), (
            "no gradient reached the input embeddings"
        )

    def test_ignores_label_minus_100(
        self, component_cls: type[Component], tokenizer: Any, tmp_path: Path
    ) -> None:
        """Changing the logits where the label is -100 does not change the loss."""
        if "token_classification" not in component_cls.supports_tasks:
            pytest.skip(f"{self.component} does not support token_classification")
        if self.tasks is not None and "token_classification" not in self.tasks:
            pytest.skip(f"the contract checks {sorted(self.tasks)} only (tasks = ...)")
        import torch

        from augreg.context import StepContext

        task = "token_classification"
        instance: Any = self.build(component_cls)
        self.set_up(instance, task, tokenizer, tmp_path)
        batch = make_batch(task, tokenizer, token_examples(), label_names=DEFAULT_TAGS)
        ignored = batch["labels"] == -100
        assert bool(ignored.any()) and bool((~ignored).any())
        model = tiny_model(task, num_labels=len(DEFAULT_TAGS), seed=self.seed).eval()
        ctx = StepContext(
            model,
            batch,
            task=task,
            objectives=[(instance, 1.0)],
            hidden_states=bool(getattr(instance, "needs_hidden_states", False)),
        )
        outputs = ctx.outputs
        noise = torch.randn(outputs.logits.shape, generator=torch.Generator().manual_seed(0))
        changed = outputs.logits + 5.0 * noise * ignored.unsqueeze(-1)
        other = type(outputs)(**{**outputs, "logits": changed})
        torch.manual_seed(self.seed)
        base = float(instance.loss(ctx, outputs).detach())
        torch.manual_seed(self.seed)
        moved = float(instance.loss(ctx, other).detach())
        assert math.isclose(base, moved, rel_tol=1e-5, abs_tol=1e-6), (
            f"the loss changed from {base} to {moved} when only positions labelled -100 "
            "(padding, special tokens, later sub-words) changed"
        )

    def test_weight_scales_the_loss(
        self,
        component_cls: type[Component],
        model: nn.Module,
        batch: dict[str, Any],
        task: str,
        tokenizer: Any,
        tmp_path: Path,
    ) -> None:
        """A ``weight`` option exists and the step's loss is proportional to it."""
        import torch

        from augreg.step import compute_loss

        assert "weight" in component_cls.Options.model_fields, (
            "an objective needs a 'weight' option (derive Options from Objective.Options)"
        )
        model.eval()  # no dropout: the two passes are comparable
        losses = []
        for weight in (1.0, 2.5):
            instance: Any = self.build(component_cls, weight=weight)
            self.set_up(instance, task, tokenizer, tmp_path)
            torch.manual_seed(self.seed)
            losses.append(float(compute_loss(model, batch, [instance], task=task).loss.detach()))
        assert math.isclose(losses[1], 2.5 * losses[0], rel_tol=1e-4, abs_tol=1e-6), (
            f"weight 1 gives {losses[0]}, weight 2.5 gives {losses[1]}"
        )


class RegularizerContract(_StepContract):
    """Checks for an :class:`augreg.Regularizer`.

    Finite scalar term, gradients reach the model, weights untouched while the term is
    computed (no edit-and-restore, no ``.grad`` written), works with frozen embeddings, acts
    only in training mode.
    """

    kind: ClassVar[Kind] = "regularizer"

    def _context(
        self, instance: Any, model: nn.Module, batch: dict[str, Any], task: str, **kw: Any
    ) -> Any:
        from augreg.context import StepContext

        return StepContext(
            model,
            batch,
            task=task,
            objectives=[(_cross_entropy(), 1.0)],
            copies=int(getattr(instance, "forward_copies", 1)),
            **kw,
        )

    def _term(self, instance: Any, ctx: Any) -> torch.Tensor:
        import torch

        term = instance.loss(ctx)
        assert isinstance(term, torch.Tensor) and term.dim() == 0, f"loss() returned {term!r}"
        value = float(term.detach())
        assert _finite(value), f"the term is {value}"
        return term

    @staticmethod
    def _training_pass_only(instance: Any) -> bool:
        """A regularizer with no term acts through ``clean_perturbation`` alone."""
        return not instance.has_term()

    def test_finite_scalar(
        self, instance: Any, model: nn.Module, batch: dict[str, Any], task: str
    ) -> None:
        """The term is a finite 0-d tensor, in the step and on its own.

        Without a term: the perturbation has the embeddings' shape and changes the step's
        loss, which stays finite.
        """
        import torch

        from augreg.step import compute_loss

        torch_seed(self.seed)
        result = compute_loss(model, batch, [_cross_entropy()], [instance], task=task)
        if self._training_pass_only(instance):
            assert instance.name not in result.parts, "a regularizer without a term logged one"
            assert _finite(float(result.loss.detach()))
            ctx = self._context(instance, model, batch, task)
            delta = instance.clean_perturbation(ctx, ctx.embeddings)
            assert isinstance(delta, torch.Tensor), (
                "has_term() is False, so clean_perturbation() must return a tensor in training"
            )
            assert delta.shape == ctx.embeddings.shape
            torch_seed(self.seed)
            plain = compute_loss(model, batch, [_cross_entropy()], task=task)
            torch_seed(self.seed)
            assert float(result.loss.detach()) != float(plain.loss.detach()), (
                "the training-pass perturbation does not change the loss"
            )
            return
        assert instance.name in result.parts, "compute_loss did not run the regularizer"
        assert _finite(result.parts[instance.name])
        self._term(instance, self._context(instance, model, batch, task))

    def test_gradients_reach_trainable_parameters(
        self, instance: Any, model: nn.Module, batch: dict[str, Any], task: str
    ) -> None:
        """After one optimizer step, the term alone sends finite, non-zero gradients.

        Without a term: the step's gradients are finite and differ from those without it.
        """
        import torch

        from augreg.step import compute_loss

        if self._training_pass_only(instance):
            grads = []
            for regs in ([instance], []):
                model.zero_grad(set_to_none=True)
                torch_seed(self.seed)
                compute_loss(model, batch, [_cross_entropy()], regs, task=task).loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
                grads.append(
                    {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
                )
            assert grads[0], "no trainable parameter received a gradient"
            assert all(bool(torch.isfinite(g).all()) for g in grads[0].values())
            assert any(not torch.equal(g, grads[1][n]) for n, g in grads[0].items()), (
                "the training-pass perturbation does not change the gradients"
            )
            return
        torch_seed(self.seed)
        state: dict[str, Any] = {}
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        compute_loss(
            model, batch, [_cross_entropy()], [instance], task=task, state=state
        ).loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        term = self._term(
            instance, self._context(instance, model, batch, task, step=1, state=state)
        )
        assert term.requires_grad, "the term is detached from the model"
        term.backward()  # type: ignore[no-untyped-call,unused-ignore]
        reached = []
        for name, p in model.named_parameters():
            if p.grad is not None:
                assert bool(torch.isfinite(p.grad).all()), f"non-finite gradient on {name}"
                if bool(p.grad.abs().sum() > 0):
                    reached.append(name)
        assert reached, "the term sends no gradient to any trainable parameter"

    def test_model_unchanged_by_term(
        self, instance: Any, model: nn.Module, batch: dict[str, Any], task: str
    ) -> None:
        """Computing the term neither edits (even temporarily) nor accumulates into weights."""
        import torch

        from augreg.step import compute_loss

        params = dict(model.named_parameters())
        before = {n: p.detach().clone() for n, p in params.items()}
        versions = {n: p._version for n, p in params.items()}
        pointers = {n: p.data_ptr() for n, p in params.items()}
        torch_seed(self.seed)
        with _WeightWrites(params) as writes:
            compute_loss(model, batch, [_cross_entropy()], [instance], task=task)
        assert not writes.hits, (
            f"the term wrote into model weights ({writes.hits[:3]}); perturb the embedding "
            "output through the step context instead of editing and restoring weights"
        )
        for name, p in model.named_parameters():
            assert torch.equal(p.detach(), before[name]), f"{name} changed"
            assert p._version == versions[name], f"{name} was modified in place"
            assert p.data_ptr() == pointers[name], f"{name} was replaced"
            assert p.grad is None, (
                f"{name}.grad was written while computing the term; use "
                "ctx.perturbation_grad (torch.autograd.grad), not backward()"
            )

    def test_works_with_frozen_embeddings(
        self, instance: Any, model: nn.Module, batch: dict[str, Any], task: str
    ) -> None:
        """With ``core.freeze`` on the embeddings the term is finite and trains the rest."""
        from augreg.builtins.adapters import Freeze
        from augreg.step import compute_loss

        model = Freeze({"embeddings": True}).prepare_model(model)
        frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
        assert frozen
        torch_seed(self.seed)
        if self._training_pass_only(instance):
            term = compute_loss(model, batch, [_cross_entropy()], [instance], task=task).loss
            assert _finite(float(term.detach()))
        else:
            term = self._term(instance, self._context(instance, model, batch, task))
        assert term.requires_grad, "the term is detached from the model"
        term.backward()  # type: ignore[no-untyped-call,unused-ignore]
        got = [n for n, p in model.named_parameters() if p.grad is not None]
        assert got, "no trainable parameter received a gradient"
        assert not frozen & set(got), (
            f"frozen parameters got gradients: {sorted(frozen & set(got))}"
        )
        assert {n for n, p in model.named_parameters() if not p.requires_grad} == frozen, (
            "the term unfroze parameters"
        )

    def test_only_in_training_mode(
        self,
        instance: Any,
        model: nn.Module,
        batch: dict[str, Any],
        task: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """In evaluation the step does not call the regularizer; the loss is the task loss."""
        from augreg.step import compute_loss

        calls: list[object] = []
        acting = "clean_perturbation" if self._training_pass_only(instance) else "loss"
        real = getattr(instance, acting)

        def spy(*args: Any) -> Any:
            calls.append(args)
            return real(*args)

        monkeypatch.setattr(instance, acting, spy)
        model.eval()
        with_reg = compute_loss(model, batch, [_cross_entropy()], [instance], task=task)
        plain = compute_loss(model, batch, [_cross_entropy()], task=task)
        assert not calls and instance.name not in with_reg.parts
        assert float(with_reg.loss.detach()) == float(plain.loss.detach())
        model.train()
        compute_loss(model, batch, [_cross_entropy()], [instance], task=task)
        assert calls, "the regularizer did not run in training mode"


def torch_seed(seed: int) -> None:
    """Seed torch's global generator (the trainer does the same before each run)."""
    import torch

    torch.manual_seed(seed)


# -- adapter ---------------------------------------------------------------------------------


class AdapterContract(ComponentContract):
    """Checks for an :class:`augreg.Adapter`.

    ``prepare_model`` idempotent or raising ``AugregError`` on a second call (never a silent
    double wrap), the prepared model runs and trains, ``trainable_state_dict`` holds exactly
    the trainable parameters.
    """

    kind: ClassVar[Kind] = "adapter"

    @pytest.fixture
    def instance(
        self, component_cls: type[Component], task: str, tokenizer: Any, tmp_path: Path
    ) -> Any:
        """A fresh component per check."""
        built = self.build(component_cls)
        self.set_up(built, task, tokenizer, tmp_path)
        return built

    @pytest.fixture
    def model(self, task: str, label_names: list[str]) -> nn.Module:
        """A fresh tiny model with a head for the task."""
        return tiny_model(task, num_labels=len(label_names), seed=self.seed)  # type: ignore[no-any-return]

    @pytest.fixture
    def batch(
        self, task: str, tokenizer: Any, examples: list[Example], label_names: list[str]
    ) -> dict[str, Any]:
        """The sample examples as a padded batch with labels."""
        return make_batch(task, tokenizer, examples, label_names=label_names)

    @staticmethod
    def _shape(model: nn.Module) -> tuple[list[str], list[str], int]:
        names = [n for n, _ in model.named_parameters()]
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        return names, trainable, sum(p.numel() for p in model.parameters())

    def test_prepare_model_idempotent_or_raises(self, instance: Any, model: nn.Module) -> None:
        """A second ``prepare_model`` is a no-op or raises AugregError; never wraps twice."""
        once = instance.prepare_model(model)
        shape = self._shape(once)
        modules = [n for n, _ in once.named_modules()]
        try:
            twice = instance.prepare_model(once)
        except AugregError:
            twice = once
        assert self._shape(twice) == shape, "the second prepare_model changed the parameters"
        assert [n for n, _ in twice.named_modules()] == modules, "the model was wrapped twice"

    def test_prepared_model_runs_and_trains(
        self, instance: Any, model: nn.Module, batch: dict[str, Any], label_names: list[str]
    ) -> None:
        """The prepared model runs forward; backward reaches only trainable parameters."""
        import torch

        prepared = instance.prepare_model(model)
        prepared.train()
        out = prepared(**batch)
        assert out.logits.shape[0] == batch["input_ids"].shape[0]
        assert out.logits.shape[-1] == len(label_names)
        assert bool(torch.isfinite(out.logits).all())
        assert any(p.requires_grad for p in prepared.parameters()), "nothing is left to train"
        out.loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
        for name, p in prepared.named_parameters():
            if not p.requires_grad:
                assert p.grad is None, f"frozen {name} got a gradient"
        assert any(p.grad is not None for p in prepared.parameters() if p.requires_grad)

    def test_trainable_state_dict_is_the_trainable_parameters(
        self, instance: Any, model: nn.Module
    ) -> None:
        """``trainable_state_dict`` keys are exactly the parameters that require grad."""
        prepared = instance.prepare_model(model)
        state = instance.trainable_state_dict(prepared)
        expected = {n for n, p in prepared.named_parameters() if p.requires_grad}
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        assert not missing and not extra, f"missing {missing[:5]}, extra {extra[:5]}"


class CombinerContract(_StepContract):
    """Checks for an :class:`augreg.Combiner` (``train.combiner``).

    On two loss terms (cross-entropy and label smoothing) the combined loss is a finite
    scalar, backward gives finite gradients that reach the input embeddings, and without
    gradients (evaluation) it still returns a finite value.
    """

    kind: ClassVar[Kind] = "combiner"

    @staticmethod
    def _two_terms() -> list[Any]:
        from augreg.builtins.objectives import CrossEntropy, LabelSmoothing

        return [CrossEntropy(), LabelSmoothing(weight=0.5)]

    def test_combines_two_terms(
        self, instance: Any, model: nn.Module, batch: dict[str, Any], task: str
    ) -> None:
        """A finite scalar loss whose gradients are finite and reach the input embeddings."""
        import torch

        from augreg.step import compute_loss

        objectives = self._two_terms()
        model = instance.prepare_model(model, [o.name for o in objectives])
        result = compute_loss(model, batch, objectives, task=task, combiner=instance)
        loss = result.loss
        assert isinstance(loss, torch.Tensor) and loss.dim() == 0, f"combine() gave {loss!r}"
        assert _finite(float(loss.detach())), f"the combined loss is {float(loss.detach())}"
        assert set(result.parts) == {o.name for o in objectives}, result.parts
        loss.backward()  # type: ignore[no-untyped-call,unused-ignore]
        for name, p in model.named_parameters():
            if p.grad is not None:
                assert bool(torch.isfinite(p.grad).all()), f"non-finite gradient on {name}"
        emb = model.get_input_embeddings().weight  # type: ignore[operator]
        assert emb.grad is not None and bool(emb.grad.abs().sum() > 0), (
            "no gradient reached the input embeddings"
        )

    def test_without_gradients(
        self, instance: Any, model: nn.Module, batch: dict[str, Any], task: str
    ) -> None:
        """In evaluation (eval mode, no grad) the combined loss is a finite number."""
        import torch

        from augreg.step import compute_loss

        objectives = self._two_terms()
        model = instance.prepare_model(model, [o.name for o in objectives]).eval()
        with torch.no_grad():
            loss = compute_loss(model, batch, objectives, task=task, combiner=instance).loss
        assert _finite(float(loss)), f"the combined loss in evaluation is {float(loss)}"


CONTRACTS: dict[Kind, type[ComponentContract]] = {
    "augmenter": AugmenterContract,
    "injector": InjectorContract,
    "objective": ObjectiveContract,
    "regularizer": RegularizerContract,
    "adapter": AdapterContract,
    "combiner": CombinerContract,
}
"""The contract class of each kind (used by :func:`augreg.testing.runner.check_plugin`)."""
