"""Adopting finished runs made elsewhere (``augreg bench --adopt DIR``), so they are not rerun.

A finished run folder (``config.yaml`` and ``metrics.json``, as ``augreg run``, a study script
or another bench writes it) whose config hashes like a variant of the plan (see
:func:`augreg.bench.config_hash`: data files by content, seed and bookkeeping left out) and
whose seed is one of the plan's becomes a bench record of that (variant, seed), with its
metrics, its costs as measured then, and ``adopted_from``. The bench then treats it like a run
of its own.

Relative data paths of a run's config resolve, in this order, from the ``base_dir`` the config
records (as ``augreg run`` reads it), from the run folder, then from ``base`` (``--adopt-base``);
a run whose data is found in none of them is skipped and counted, never guessed. Because the
key holds the data's fingerprints, a run is adopted only when the files found are the ones
the plan uses, byte for byte. Adopting never overwrites a record; a record whose run folder
has gained metrics since (``augreg evaluate`` adds ``roc_auc`` to older runs) gets those metrics
added, and nothing else changes (:attr:`AdoptOutcome.refreshed`).

Example:
    >>> plan = load_spec("benchmarks/generalization/sst2_500.toml")  # doctest: +SKIP
    >>> outcome = adopt_runs(plan, ["/work/quality"], write=False)  # doctest: +SKIP
    >>> outcome.per_variant()  # doctest: +SKIP
    {'plain': [1, 2, 3, 4, 5]}
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from augreg.bench.runner import _bench_lock, _write_json_atomic, make_record
from augreg.bench.spec import BenchPlan, config_hash, hashed_config
from augreg.config import PipelineConfig, is_train_rest, read_config_file, validate
from augreg.errors import AugregError, ConfigError
from augreg.evaluate import add_metrics
from augreg.host import PluginHost, default_host
from augreg.pipeline import DATA_SOURCES, absolute_config
from augreg.soup import SOUP_FILE

__all__ = ["SKIP_REASONS", "AdoptOutcome", "AdoptedRun", "adopt_runs", "find_run_folders"]

#: Why a run folder was not adopted, in the order they are reported.
SKIP_REASONS = (
    "no match",
    "seed not in plan",
    "already recorded",
    "duplicate",
    "data not found",
    "invalid config",
    "unreadable",
    "unfinished",
    "model soup",
)


@dataclass(frozen=True)
class AdoptedRun:
    """A run folder adopted (or, in a dry run, to be adopted) as the record ``key``."""

    key: str
    seed: int
    variants: tuple[str, ...]
    run_dir: Path
    #: Settings the run's config.yaml lacks, given today's defaults to match (an older run).
    defaulted: tuple[str, ...] = ()


@dataclass
class AdoptOutcome:
    """What adoption found: the runs adopted, and the run folders skipped by reason."""

    adopted: list[AdoptedRun] = field(default_factory=list)
    skipped: dict[str, list[tuple[Path, str]]] = field(default_factory=dict)
    #: Records that gained metrics their run folder has and they lacked (``augreg evaluate``
    #: added them to the run since): record key -> the metric names added, as ``set/metric``.
    refreshed: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, run_dir: Path, detail: str = "") -> None:
        self.skipped.setdefault(reason, []).append((run_dir, detail))

    def per_variant(self) -> dict[str, list[int]]:
        """Seeds adopted per variant name (a run shared by variants counts for each)."""
        out: dict[str, list[int]] = {}
        for run in self.adopted:
            for name in run.variants:
                out.setdefault(name, []).append(run.seed)
        return {name: sorted(seeds) for name, seeds in out.items()}


def find_run_folders(root: str | Path) -> Iterator[Path]:
    """Folders under ``root`` (itself included) that hold a ``config.yaml``, sorted.

    A run folder's own subfolders (``model/``, ``metrics/``) are not searched; linked folders
    are, once.

    Raises:
        AugregError: ``root`` is not a folder.
    """
    top = Path(root).expanduser()
    if not top.is_dir():
        raise AugregError(
            f"augreg: --adopt {root}: no such folder; give a folder that holds run folders "
            "(config.yaml and metrics.json)"
        )
    seen: set[Path] = set()
    # Symbolic links are followed (studies link shared runs), each real folder visited once.
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real = Path(dirpath).resolve()
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        if "config.yaml" in filenames:
            dirnames[:] = []
            yield Path(dirpath)
        else:
            dirnames.sort()


def _data_paths(raw: Mapping[str, Any]) -> list[str]:
    """Local data paths of a raw config (file layout), single- or multi-task."""
    tables = [raw.get("data")] + [t.get("data") for t in raw.get("tasks") or [] if t]
    paths: list[str] = []
    for data in tables:
        if not isinstance(data, Mapping):
            continue
        eval_sets = data.get("eval")
        sources = [data.get(key) for key in DATA_SOURCES]
        sources += list(eval_sets.values()) if isinstance(eval_sets, Mapping) else []
        for src in sources:
            path = src.get("path") if isinstance(src, Mapping) else src
            if isinstance(path, str) and not is_train_rest(path):
                paths.append(path)
    return paths


def _data_base(raw: Mapping[str, Any], run_dir: Path, base: Path | None) -> Path | str:
    """The first folder from which every data path of ``raw`` exists, or what is missing."""
    paths = [Path(p).expanduser() for p in _data_paths(raw)]
    recorded = raw.get("base_dir")
    candidates = (
        [Path(recorded)] if isinstance(recorded, str) and Path(recorded).is_absolute() else []
    )
    candidates += [run_dir] + ([base] if base is not None else [])
    for folder in candidates:
        if all((p if p.is_absolute() else folder / p).is_file() for p in paths):
            return folder
    tried = ", ".join(dict.fromkeys(str(c) for c in candidates))
    missing = next((p for p in paths if not any((c / p).is_file() for c in candidates)), None)
    what = f"{missing} is" if missing is not None else "the data files are not all"
    return f"{what} in none of: {tried}"


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys (list items by index): ``regularize.0.weight``."""
    if isinstance(d, Mapping):
        return {k: v for key, sub in d.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    if isinstance(d, list):
        return {k: v for i, sub in enumerate(d) for k, v in _flat(sub, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): d}


def _difference(cfg: PipelineConfig, plan: BenchPlan) -> str:
    """How a config that matched no variant differs from the closest one (a few settings)."""
    mine = _flat(hashed_config(cfg))
    best: tuple[int, str, list[str]] | None = None
    for v in plan.variants:
        if v.is_soup:  # its config is its first member's
            continue
        theirs = _flat(hashed_config(v.config))
        keys = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if best is None or len(keys) < best[0]:
            shown = [f"{k}: {mine.get(k)!r} here, {theirs.get(k)!r} there" for k in keys[:3]]
            best = (len(keys), v.name, shown)
    if best is None:
        return ""
    more = f" and {best[0] - 3} more" if best[0] > 3 else ""
    return f"closest variant {best[1]!r} differs in {'; '.join(best[2])}{more}"


def _load(
    run_dir: Path, base: Path | None, host: PluginHost, outcome: AdoptOutcome
) -> tuple[PipelineConfig, dict[str, Any], tuple[str, ...]] | None:
    """Validated config, ``metrics.json`` and defaulted settings of a run; None if skipped."""
    if (run_dir / SOUP_FILE).is_file():
        # Its config.yaml is the first member's without training components: hashed, it
        # would pass for a run of the base. A soup is a weight average, not a run of a config.
        outcome.skip("model soup", run_dir, f"{SOUP_FILE}: a weight average of runs")
        return None
    if not (run_dir / "metrics.json").is_file():
        outcome.skip("unfinished", run_dir, "no metrics.json")
        return None
    try:
        raw = read_config_file(run_dir / "config.yaml")
        report = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (ConfigError, OSError, ValueError) as exc:
        outcome.skip("unreadable", run_dir, str(exc).splitlines()[0])
        return None
    if not isinstance(report, dict) or not isinstance(report.get("eval"), dict):
        outcome.skip("unreadable", run_dir, "metrics.json has no eval metrics")
        return None
    folder = _data_base(raw, run_dir, base)
    if isinstance(folder, str):
        outcome.skip("data not found", run_dir, folder)
        return None
    raw["base_dir"] = str(folder)
    try:
        cfg = validate(raw, source=str(run_dir / "config.yaml"), host=host)
    except ConfigError as exc:
        lines = str(exc).splitlines()
        outcome.skip("invalid config", run_dir, lines[1].strip() if len(lines) > 1 else lines[0])
        return None
    written = _flat(raw)
    defaulted = tuple(k for k in _flat(cfg.to_dict()) if k not in written)
    return cfg, report, defaulted


def _versions(run_dir: Path) -> dict[str, str] | None:
    lock = run_dir / "augreg.lock"
    if not lock.is_file():
        return None
    pairs = (line.partition("==") for line in lock.read_text(encoding="utf-8").splitlines())
    return {name: version for name, sep, version in pairs if sep}


def _new_metrics(record_path: Path, metrics: Mapping[str, Any]) -> list[str]:
    """``set/metric`` names a run folder's metrics have and its bench record lacks."""
    try:
        recorded = json.loads(record_path.read_text(encoding="utf-8")).get("metrics") or {}
    except (OSError, json.JSONDecodeError):
        return []  # an unreadable record is the runner's to report, not adoption's to mend
    added = add_metrics(copy.deepcopy(recorded), metrics)
    return [f"{name}/{key}" for name, keys in added.items() for key in keys]


def adopt_runs(
    plan: BenchPlan,
    roots: Sequence[str | Path],
    *,
    base: str | Path | None = None,
    write: bool = True,
    host: PluginHost | None = None,
) -> AdoptOutcome:
    """Write a bench record for every finished run under ``roots`` that a plan would run.

    Args:
        plan: The validated plan (:func:`augreg.bench.load_spec`).
        roots: Folders searched recursively for run folders (``config.yaml``, ``metrics.json``).
        base: Where relative data paths of a run's config resolve from when they exist neither
            from the ``base_dir`` the config records nor from the run folder (``--adopt-base``).
        write: False finds what would be adopted and writes nothing (``--dry-run``).
        host: The plugin host that validates the runs' configs (default: the installed one).

    Returns:
        The runs adopted, seed-sorted, and the run folders skipped, by reason (one of
        :data:`SKIP_REASONS`) with a detail each.

    Raises:
        AugregError: a root or ``base`` is not a folder, or another ``augreg bench`` holds the
            bench folder.
    """
    host = host or default_host()
    base_dir = Path(base).expanduser().resolve() if base is not None else None
    if base_dir is not None and not base_dir.is_dir():
        raise AugregError(
            f"augreg: --adopt-base {base}: no such folder; give the folder that the adopted "
            "runs' relative data paths start from (the folder of their original config)"
        )
    names: dict[str, tuple[str, ...]] = {}
    for v in plan.variants:
        names[v.hash] = (*names.get(v.hash, ()), v.name)
    records = plan.folder / "runs"
    outcome = AdoptOutcome()
    found: dict[str, tuple[AdoptedRun, dict[str, Any]]] = {}
    refresh: dict[str, Mapping[str, Any]] = {}
    folders = [folder.resolve() for root in roots for folder in find_run_folders(root)]
    for run_dir in dict.fromkeys(folders):
        loaded = _load(run_dir, base_dir, host, outcome)
        if loaded is None:
            continue
        cfg, report, defaulted = loaded
        try:
            key_hash = config_hash(cfg)
        except ConfigError as exc:  # a data file vanished since validation
            outcome.skip("data not found", run_dir, str(exc).splitlines()[-1].strip())
            continue
        key = f"{key_hash}-s{cfg.train.seed}"
        if key_hash not in names:
            outcome.skip("no match", run_dir, _difference(cfg, plan))
        elif cfg.train.seed not in plan.seeds:
            outcome.skip("seed not in plan", run_dir, f"seed {cfg.train.seed}")
        elif (records / f"{key}.json").exists():
            new = _new_metrics(records / f"{key}.json", report["eval"])
            if new:
                refresh[key] = report["eval"]
                outcome.refreshed[key] = new
            else:
                outcome.skip("already recorded", run_dir, key)
        elif key in found and len(found[key][0].defaulted) <= len(defaulted):
            outcome.skip("duplicate", run_dir, f"{key} is adopted from {found[key][0].run_dir}")
        else:
            if key in found:
                # A run whose config states more of today's settings wins: a setting added
                # later may have a default that differs from what an older run did (FreeLB's
                # clean_pass), so a run matched only through defaults is the weaker witness.
                older = found.pop(key)[0].run_dir
                outcome.skip("duplicate", older, f"{key} is adopted from {run_dir} (states more)")
            run = AdoptedRun(key, cfg.train.seed, names[key_hash], run_dir, defaulted)
            finished = datetime.fromtimestamp(
                (run_dir / "metrics.json").stat().st_mtime, timezone.utc
            )
            record = make_record(
                key_hash,
                cfg.train.seed,
                run.variants,
                cfg,
                report["eval"],
                report.get("train") or {},
                run_dir=run_dir,
                started=None,
                finished=finished,
                versions=_versions(run_dir),
                config=absolute_config(cfg),
            )
            found[key] = (run, {**record, "adopted_from": str(run_dir)})
    if write and (found or refresh):
        records.mkdir(parents=True, exist_ok=True)
        with _bench_lock(plan.folder):
            for key, metrics in refresh.items():
                path = records / f"{key}.json"
                record = json.loads(path.read_text(encoding="utf-8"))  # as it is now
                add_metrics(record.setdefault("metrics", {}), metrics)
                _write_json_atomic(path, record)
            for key, (run, record) in found.items():
                path = records / f"{key}.json"
                if path.exists():  # written since the check above: never overwrite
                    outcome.skip("already recorded", run.run_dir, key)
                    continue
                _write_json_atomic(path, record)
                outcome.adopted.append(run)
    elif not write:
        outcome.adopted = [run for run, _ in found.values()]
    outcome.adopted.sort(key=lambda r: (r.seed, r.variants))
    return outcome
