"""The plugin host: loads plugins and holds the registry of components.

The host is an instance, not a module global, so tests build isolated hosts. It registers the
built-ins (the ``core`` plugin), then every ``augreg`` entry point, then runs pluggy's
``check_pending()`` and collects the components each plugin registers.

Environment:
    ``AUGREG_LOAD_PLUGINS=a,b``: load only these entry points (the built-ins always load).
    ``AUGREG_DISABLE_PLUGINS=x,y``: do not load these.

A plugin that fails to import is recorded in :attr:`PluginHost.failures` by distribution,
version, entry point and original error; the others still load. Two components with one
name, or a component named outside its plugin's prefix, raise :class:`PluginError`.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from augreg.components import BASES, KINDS, Component, Kind, kind_of
from augreg.errors import PluginError, UnknownComponentError
from augreg.hookspecs import ENTRY_POINT_GROUP, PROJECT, REGISTRATION_HOOKS, AugregSpecs

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")

# Components of the project's own plugins, so that an unknown name can say what to install.
KNOWN_DISTRIBUTIONS: dict[str, str] = {
    "eda": "augreg-eda",
    "backtranslation": "augreg-backtranslation",
    "entity_linking": "augreg-entity-linking",
    "adversarial": "augreg-adversarial",
    "adapters": "augreg-adapters",
    "objectives": "augreg-objectives",
    "consistency": "augreg-consistency",
    "counterfactual": "augreg-counterfactual",
}


def install_hint(name: str) -> str:
    """What to install for a component name no loaded plugin provides: ``pip install
    <distribution>`` for the project's plugins, else ``a plugin providing <prefix>.*``."""
    prefix = name.split(".", 1)[0]
    dist = KNOWN_DISTRIBUTIONS.get(prefix)
    return f"pip install {dist}" if dist else f"a plugin providing {prefix}.*"


BUILTIN_MODULE = "augreg.builtins.hooks"


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin."""

    name: str
    distribution: str
    version: str
    module: str


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded."""

    entry_point: str
    distribution: str
    version: str
    error: str

    def render(self) -> str:
        return (
            f"plugin {self.entry_point!r} ({self.distribution} {self.version}) failed to load: "
            f"{self.error}"
        )


@dataclass(frozen=True)
class ComponentInfo:
    """One registered component."""

    name: str
    kind: Kind
    cls: type[Component]
    plugin: PluginInfo

    @property
    def origin(self) -> str:
        return f"{self.plugin.distribution} {self.plugin.version}"


def _env_list(env: Mapping[str, str], key: str) -> set[str] | None:
    raw = env.get(key)
    if raw is None or not raw.strip():
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _core_version() -> str:
    try:
        return metadata.version("augreg")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


class PluginHost:
    """Loads plugins and answers which components exist.

    Args:
        entry_points: Load the ``augreg`` entry points (default True).
        plugins: Extra plugin modules or objects to register, as ``{name: module}`` (tests and
            in-code plugins). They are named like entry points.
        env: Environment for ``AUGREG_LOAD_PLUGINS`` / ``AUGREG_DISABLE_PLUGINS``.

    Example:
        >>> host = PluginHost(entry_points=False)
        >>> host.get("regularizer", "core.rdrop").cls.__name__
        'RDrop'
    """

    def __init__(
        self,
        *,
        entry_points: bool = True,
        plugins: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(AugregSpecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self.components: dict[Kind, dict[str, ComponentInfo]] = {k: {} for k in KINDS}
        env = os.environ if env is None else env
        only = _env_list(env, "AUGREG_LOAD_PLUGINS")
        blocked = _env_list(env, "AUGREG_DISABLE_PLUGINS") or set()

        builtins = importlib.import_module(BUILTIN_MODULE)
        self._add("core", builtins, PluginInfo("core", "augreg", _core_version(), BUILTIN_MODULE))
        if entry_points:
            for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
                if ep.name == "core" or (only is not None and ep.name not in only):
                    continue
                if ep.name in blocked:
                    continue
                dist = ep.dist.name if ep.dist is not None else "unknown"
                version = ep.dist.version if ep.dist is not None else "unknown"
                try:
                    module = ep.load()
                except Exception as exc:  # a broken plugin must not take the others down
                    self.failures.append(
                        PluginFailure(ep.name, dist, version, f"{type(exc).__name__}: {exc}")
                    )
                    continue
                self._add(ep.name, module, PluginInfo(ep.name, dist, version, ep.value))
        for name, module in (plugins or {}).items():
            if name in blocked:
                continue
            modname = getattr(module, "__name__", type(module).__name__)
            self._add(name, module, PluginInfo(name, "(in code)", "", modname))
        self.pm.check_pending()
        self._collect()

    def _add(self, name: str, module: ModuleType | Any, info: PluginInfo) -> None:
        if name in self.plugins:
            raise PluginError(
                f"augreg: two plugins are named {name!r}: {self.plugins[name].module} and "
                f"{info.module}. Rename one entry point."
            )
        self.pm.register(module, name=name)
        self.plugins[name] = info

    def _collect(self) -> None:
        for kind in KINDS:
            hook = getattr(self.pm.hook, REGISTRATION_HOOKS[kind])
            for impl in hook.get_hookimpls():
                info = self.plugins[impl.plugin_name]

                def register(
                    cls: type[Any], /, _kind: Kind = kind, _info: PluginInfo = info
                ) -> None:
                    self._register(_kind, cls, _info)

                kwargs = {"register": register}
                impl.function(**{a: kwargs[a] for a in impl.argnames})

    def _register(self, kind: Kind, cls: type[Any], info: PluginInfo) -> None:
        where = f"plugin {info.name!r} ({info.distribution})"
        actual = kind_of(cls)
        if actual is None:
            raise PluginError(
                f"augreg: {where} registered {cls!r} as a {kind}, but it is not a subclass of "
                f"augreg.{BASES[kind].__name__}."
            )
        if actual != kind:
            raise PluginError(
                f"augreg: {where} registered {cls.__qualname__} (a {actual}) through the {kind} "
                f"hook; register it in {REGISTRATION_HOOKS[actual]} instead."
            )
        name = getattr(cls, "name", "")
        if not NAME_RE.match(name or ""):
            raise PluginError(
                f"augreg: {where}: {cls.__module__}.{cls.__qualname__} has name {name!r}; a "
                f"component name is '<plugin>.<component>' in lower case, e.g. "
                f"'{info.name}.{cls.__name__.lower()}'."
            )
        prefix = name.split(".", 1)[0]
        if prefix != info.name:
            raise PluginError(
                f"augreg: {where} registered {name!r}; its components must be named "
                f"'{info.name}.<component>' after the entry point."
            )
        for other_kind in KINDS:
            other = self.components[other_kind].get(name)
            if other is not None:
                raise PluginError(
                    f"augreg: two components are named {name!r}: "
                    f"{other.cls.__module__}.{other.cls.__qualname__} ({other.origin}) and "
                    f"{cls.__module__}.{cls.__qualname__} ({info.distribution} {info.version}). "
                    "Rename one."
                )
        self.components[kind][name] = ComponentInfo(name, kind, cls, info)

    # -- queries ---------------------------------------------------------------------------

    def names(self, kind: Kind | None = None) -> list[str]:
        """All registered component names, of one kind or all kinds, sorted."""
        kinds: Iterable[Kind] = KINDS if kind is None else (kind,)
        return sorted(n for k in kinds for n in self.components[k])

    def find(self, name: str) -> ComponentInfo | None:
        """The component with this name, of any kind, or None."""
        for kind in KINDS:
            if name in self.components[kind]:
                return self.components[kind][name]
        return None

    def get(self, kind: Kind, name: str) -> ComponentInfo:
        """The component of this kind and name.

        Raises:
            UnknownComponentError: with the closest installed name and, where known, the
                distribution to install.
        """
        info = self.components[kind].get(name)
        if info is not None:
            return info
        raise UnknownComponentError(self.unknown_message(kind, name))

    def unknown_hint(self, kind: Kind | None, name: str) -> tuple[str, list[str]]:
        """Return (message, hint lines) for an unknown component name.

        ``kind=None`` looks among components of every kind (a bench variant adds a component
        without saying its kind).
        """
        other = self.find(name)
        if other is not None and kind is not None:
            return (
                f"is {_a(other.kind)}, not {_a(kind)}; move it to the "
                f"{_SECTION[other.kind]} section.",
                [],
            )
        msg = f"unknown {kind or 'component'}."
        close = difflib.get_close_matches(name, self.names(kind), n=1, cutoff=0.6)
        if close:
            msg += f" Did you mean {close[0]!r}?"
        prefix = name.split(".", 1)[0]
        dist = KNOWN_DISTRIBUTIONS.get(prefix)
        if dist is not None and prefix not in self.plugins:
            msg += f" It is provided by {dist}: pip install {dist}"
        failed = [f for f in self.failures if f.entry_point == prefix]
        hints = [f.render() for f in failed]
        installed = self.names(kind)
        hints.append("Installed: " + (", ".join(installed) if installed else "(none)"))
        return msg, hints

    def unknown_message(self, kind: Kind | None, name: str) -> str:
        msg, hints = self.unknown_hint(kind, name)
        return "\n".join([f"augreg: {name!r}: {msg}", *(f"  {h}" for h in hints)])

    def create(self, kind: Kind, name: str, options: Mapping[str, Any] | None = None) -> Component:
        """Build a component by kind and name from a dict of options."""
        return self.get(kind, name).cls(dict(options or {}))


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


_SECTION: dict[str, str] = {
    "augmenter": "augment",
    "injector": "inject",
    "objective": "objectives",
    "regularizer": "regularize",
    "adapter": "adapters",
    "combiner": "train.combiner",
}

_default_host: PluginHost | None = None


def default_host() -> PluginHost:
    """The host of this process, built on first use (entry points included)."""
    global _default_host
    if _default_host is None:
        _default_host = PluginHost()
    return _default_host


def reset_default_host() -> None:
    """Forget the process host (after installing a plugin at run time, or in tests)."""
    global _default_host
    _default_host = None
