"""Run the conformance kit against an installed plugin distribution.

``augreg check-plugin augreg-eda`` calls :func:`check_plugin`: it finds every component the
distribution registers, writes a temporary test module with one contract subclass per
component, and runs pytest on it. A component is built with its default options, unless it
declares :meth:`augreg.Component.conformance_options`: then it gets one contract per task it
supports, built with the options that classmethod returns for that task.

Example:
    >>> from augreg.testing.runner import check_plugin
    >>> check_plugin("augreg-hello", ["-q"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import re
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from augreg.components import TASKS, Component
from augreg.errors import AugregError
from augreg.hookspecs import ENTRY_POINT_GROUP
from augreg.host import ComponentInfo, PluginHost

__all__ = ["check_plugin", "components_of", "conformance_options", "contract_module"]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_distributions() -> list[str]:
    names = {
        ep.dist.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.dist is not None
    }
    return sorted(names)


def components_of(distribution: str, host: PluginHost | None = None) -> list[ComponentInfo]:
    """The components an installed distribution registers, sorted by name.

    Raises:
        AugregError: the distribution is unknown, failed to load, or registers nothing; the
            message lists the installed augreg distributions.
    """
    host = host or PluginHost(env={})
    wanted = _normalize(distribution)
    installed = _installed_distributions()
    listing = ", ".join(installed) or "(none)"
    failed = [f for f in host.failures if _normalize(f.distribution) == wanted]
    if failed:
        raise AugregError("augreg: " + "; ".join(f.render() for f in failed))
    found = [
        info
        for kind in host.components.values()
        for info in kind.values()
        if _normalize(info.plugin.distribution) == wanted
    ]
    if not found:
        if wanted not in {_normalize(d) for d in installed}:
            raise AugregError(
                f"augreg: no installed distribution {distribution!r} registers augreg plugins. "
                f"Install it (pip install {distribution}) or pick one of: {listing}"
            )
        raise AugregError(
            f"augreg: {distribution} is installed but registers no components; check its "
            f"hooks.py (augreg_register_* hooks). Installed augreg distributions: {listing}"
        )
    return sorted(found, key=lambda info: info.name)


def _class_name(component: str) -> str:
    return "Test" + "".join(part.capitalize() for part in re.split(r"[._]", component))


def declares_conformance_options(cls: type[Component]) -> bool:
    """Whether a component class overrides :meth:`Component.conformance_options`."""
    own = getattr(cls.conformance_options, "__func__", None)
    return own is not getattr(Component.conformance_options, "__func__", None)


@lru_cache(maxsize=1)
def _host() -> PluginHost:
    return PluginHost(env={})


def conformance_options(component: str, task: str, folder: str | Path) -> dict[str, Any]:
    """The options a component declares for the conformance kit on ``task`` ({} = defaults).

    Calls the component's :meth:`~augreg.Component.conformance_options` with the network
    blocked and ``folder`` created empty (the generated contracts call this at import).

    Raises:
        AugregError: the component is not registered, or its conformance_options failed or
            returned something other than a dict or None.
    """
    from augreg.testing.helpers import no_network

    info = _host().find(component)
    if info is None:
        raise AugregError(f"augreg: {component!r} is not registered")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    where = f"{info.cls.__module__}.{info.cls.__qualname__}.conformance_options"
    try:
        with no_network():
            options = info.cls.conformance_options(folder, task)
    except Exception as exc:
        raise AugregError(
            f"augreg: {component} ({info.plugin.distribution}): {where}(folder, {task!r}) "
            f"failed: {type(exc).__name__}: {exc}. It must build what the options point at "
            "under folder, offline (augreg.testing.save_tiny_model for a tiny model)."
        ) from exc
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise AugregError(
            f"augreg: {component}: {where} returned {type(options).__name__}; return a dict "
            "of options, or None for the defaults"
        )
    return options


def contract_module(components: list[ComponentInfo]) -> str:
    """Source of a test module with the contract subclasses of the components.

    One class per component, with default options; a component that declares
    ``conformance_options`` gets one class per task it supports, with those options.
    """
    lines = [
        '"""Generated by augreg check-plugin: the conformance kit for each component."""',
        "",
        "from pathlib import Path",
        "",
        "from augreg.testing import CONTRACTS",
        "from augreg.testing.runner import conformance_options",
        "",
        'OPTIONS = Path(__file__).parent / "conformance_options"',
        "",
    ]
    for info in components:
        base = f"CONTRACTS[{info.kind!r}]"
        if not declares_conformance_options(info.cls):
            lines += [
                "",
                f"class {_class_name(info.name)}({base}):  # type: ignore[misc]",
                f"    component = {info.name!r}",
                "",
            ]
            continue
        for task in sorted(info.cls.supports_tasks & TASKS):
            folder = f"OPTIONS / {info.name!r} / {task!r}"
            name = _class_name(info.name) + _class_name(task)[len("Test") :]
            lines += [
                "",
                f"class {name}({base}):  # type: ignore[misc]",
                f"    component = {info.name!r}",
                f"    tasks = frozenset({{{task!r}}})",
                f"    options = conformance_options({info.name!r}, {task!r}, {folder})",
                "",
            ]
    return "\n".join(lines)


def check_plugin(distribution: str, pytest_args: list[str] | None = None) -> int:
    """Run the conformance kit on every component of an installed distribution.

    Args:
        distribution: The distribution name, e.g. ``"augreg-hello"`` (``_``/``-`` alike).
        pytest_args: Extra pytest arguments (``["-x", "-k", "pickl"]``).

    Returns:
        pytest's exit code (0 when every check passes).

    Raises:
        AugregError: the distribution is unknown or registers no components.
    """
    import pytest

    components = components_of(distribution)
    with tempfile.TemporaryDirectory(prefix="augreg-check-") as tmp:
        folder = Path(tmp)
        # An ini file of its own makes the temp folder the rootdir, so that the user's
        # pytest configuration (addopts, testpaths) does not leak into the run.
        (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        module = folder / f"test_check_{_normalize(distribution).replace('-', '_')}.py"
        module.write_text(contract_module(components), encoding="utf-8")
        args = [
            str(module),
            "-p",
            "no:cacheprovider",
            "--import-mode=importlib",
            "--rootdir",
            str(folder),
            "-c",
            str(folder / "pytest.ini"),
            *(pytest_args or []),
        ]
        return int(pytest.main(args))
