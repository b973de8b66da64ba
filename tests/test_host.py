"""The plugin host: built-ins, entry points, environment switches, registration rules."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest

import augreg
from augreg import host as host_module
from augreg.host import PluginHost

CORE = [
    "core.cross_entropy",
    "core.embedding_noise",
    "core.freeze",
    "core.l2sp",
    "core.label_smoothing",
    "core.layerwise_lr",
    "core.rdrop",
    "core.sum",
]


class FakeDist:
    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version


class FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint (name, value, dist, load)."""

    def __init__(self, name: str, target: Any, dist: str, version: str = "1.2.3") -> None:
        self.name = name
        self.value = f"augreg_{name}.hooks"
        self.dist = FakeDist(dist, version)
        self._target = target

    def load(self) -> Any:
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


def _plugin(name: str, **hooks: Callable[..., None]) -> types.ModuleType:
    module = types.ModuleType(f"augreg_{name}.hooks")
    for hook, fn in hooks.items():
        setattr(module, hook, augreg.hookimpl(fn))
    return module


def _augmenter(name: str, module: str = "augreg_fake.ops") -> type[augreg.Augmenter]:
    def augment(self: Any, example: Any, rng: Any) -> list[Any]:
        return [dict(example)]

    cls = type("Op", (augreg.Augmenter,), {"name": name, "augment": augment, "__doc__": "Op."})
    cls.__module__ = module
    return cls


def _registering(*classes: type[Any]) -> Callable[..., None]:
    def augreg_register_augmenters(register: augreg.Register) -> None:
        for cls in classes:
            register(cls)

    return augreg_register_augmenters


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Replace the installed entry points with the given fakes."""

    def install(*eps: FakeEntryPoint) -> None:
        def entry_points(*, group: str) -> list[FakeEntryPoint]:
            assert group == "augreg"
            return list(eps)

        monkeypatch.setattr(host_module.metadata, "entry_points", entry_points)

    return install


def _two_plugins(fake_entry_points: Callable[..., None]) -> None:
    fake_entry_points(
        FakeEntryPoint("alpha", _plugin("alpha", augreg_register_augmenters=_registering(
            _augmenter("alpha.op"))), "augreg-alpha"),
        FakeEntryPoint("beta", _plugin("beta", augreg_register_augmenters=_registering(
            _augmenter("beta.op"))), "augreg-beta"),
    )  # fmt: skip


def test_builtins_load_as_the_core_plugin() -> None:
    host = PluginHost(entry_points=False, env={})
    assert host.names() == CORE
    info = host.get("regularizer", "core.rdrop")
    assert info.plugin.name == "core" and info.plugin.distribution == "augreg"
    assert host.names("adapter") == ["core.freeze", "core.layerwise_lr"]
    assert not host.failures


def test_entry_points_are_loaded(fake_entry_points: Callable[..., None]) -> None:
    _two_plugins(fake_entry_points)
    host = PluginHost(env={})
    assert host.names("augmenter") == ["alpha.op", "beta.op"]
    assert host.get("augmenter", "beta.op").origin == "augreg-beta 1.2.3"


def test_load_plugins_loads_only_those(fake_entry_points: Callable[..., None]) -> None:
    _two_plugins(fake_entry_points)
    host = PluginHost(env={"AUGREG_LOAD_PLUGINS": "beta"})
    assert host.names("augmenter") == ["beta.op"]
    assert "core.rdrop" in host.names()  # built-ins always load


def test_disable_plugins_blocks_one(fake_entry_points: Callable[..., None]) -> None:
    _two_plugins(fake_entry_points)
    host = PluginHost(env={"AUGREG_DISABLE_PLUGINS": "alpha, gamma"})
    assert host.names("augmenter") == ["beta.op"]


def test_broken_plugin_is_reported_and_the_others_load(
    fake_entry_points: Callable[..., None],
) -> None:
    fake_entry_points(
        FakeEntryPoint("broken", ModuleNotFoundError("No module named 'nltk'"), "augreg-broken",
                       "0.3.0"),
        FakeEntryPoint("beta", _plugin("beta", augreg_register_augmenters=_registering(
            _augmenter("beta.op"))), "augreg-beta"),
    )  # fmt: skip
    host = PluginHost(env={})
    assert host.names("augmenter") == ["beta.op"]
    (failure,) = host.failures
    assert (failure.entry_point, failure.distribution, failure.version) == (
        "broken", "augreg-broken", "0.3.0",
    )  # fmt: skip
    assert failure.render() == (
        "plugin 'broken' (augreg-broken 0.3.0) failed to load: "
        "ModuleNotFoundError: No module named 'nltk'"
    )
    # Asking for its component points at the failure.
    with pytest.raises(augreg.UnknownComponentError, match=r"augreg-broken 0\.3\.0"):
        host.get("augmenter", "broken.op")


def test_duplicate_component_names_name_both_modules() -> None:
    first = _augmenter("twin.op", "augreg_twin.first")
    second = _augmenter("twin.op", "augreg_twin.second")
    plugin = _plugin("twin", augreg_register_augmenters=_registering(first, second))
    with pytest.raises(augreg.PluginError) as excinfo:
        PluginHost(entry_points=False, plugins={"twin": plugin}, env={})
    message = str(excinfo.value)
    assert "two components are named 'twin.op'" in message
    assert "augreg_twin.first.Op" in message and "augreg_twin.second.Op" in message


def test_component_named_outside_its_plugin_prefix_raises() -> None:
    plugin = _plugin("mine", augreg_register_augmenters=_registering(_augmenter("theirs.op")))
    with pytest.raises(augreg.PluginError, match=r"'theirs.op'.*'mine.<component>'"):
        PluginHost(entry_points=False, plugins={"mine": plugin}, env={})


def test_badly_formed_name_raises() -> None:
    plugin = _plugin("mine", augreg_register_augmenters=_registering(_augmenter("Mine-Op")))
    with pytest.raises(augreg.PluginError, match=r"'<plugin>\.<component>' in lower case"):
        PluginHost(entry_points=False, plugins={"mine": plugin}, env={})


def test_wrong_kind_through_a_hook_raises() -> None:
    class Loss(augreg.Objective):
        """A loss."""

        name = "mine.loss"

    plugin = _plugin("mine", augreg_register_augmenters=_registering(Loss))
    with pytest.raises(augreg.PluginError, match="register it in augreg_register_objectives"):
        PluginHost(entry_points=False, plugins={"mine": plugin}, env={})


def test_non_component_class_raises() -> None:
    plugin = _plugin("mine", augreg_register_augmenters=_registering(dict))
    with pytest.raises(augreg.PluginError, match=r"not a subclass of augreg\.Augmenter"):
        PluginHost(entry_points=False, plugins={"mine": plugin}, env={})


def test_unknown_name_suggests_the_closest() -> None:
    host = PluginHost(entry_points=False, env={})
    with pytest.raises(augreg.UnknownComponentError) as excinfo:
        host.get("regularizer", "core.rdorp")
    message = str(excinfo.value)
    assert "Did you mean 'core.rdrop'?" in message
    assert "Installed: core.embedding_noise, core.l2sp, core.rdrop" in message


def test_unknown_name_says_which_distribution_to_install() -> None:
    host = PluginHost(entry_points=False, env={})
    with pytest.raises(augreg.UnknownComponentError, match="pip install augreg-eda"):
        host.get("augmenter", "eda.random_swap")


def test_name_of_another_kind_says_where_it_belongs() -> None:
    msg, _ = PluginHost(entry_points=False, env={}).unknown_hint("augmenter", "core.rdrop")
    assert msg == "is a regularizer, not an augmenter; move it to the regularize section."


def test_import_augreg_does_not_import_torch() -> None:
    code = (
        "import sys, augreg; augreg.PluginHost(); "
        "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)  # fmt: skip
    assert out.stdout.strip() == "[]"
