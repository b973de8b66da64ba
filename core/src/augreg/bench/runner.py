"""Running a bench: every (variant, seed) once, in fresh processes, resumable, in parallel.

The bench folder holds, under ``runs/``, one record per finished run, ``<hash>-s<seed>.json``,
written atomically after the run's metrics: a run that was killed or failed leaves no record,
so it is run again next time, and a second invocation runs only what has no record (adding
seeds adds only the new runs). Beside each record: the run folder ``<hash>-s<seed>/`` (config,
metrics, lock; no weights), the run's log ``<hash>-s<seed>.log`` and, after a failure,
``<hash>-s<seed>.error.txt``.

A soup variant's run (:mod:`augreg.soup`) averages the models its members saved for that seed
(members of a soup run with ``train.save_model``) and evaluates the average; it starts once
its members' runs are finished. A member recorded without its model (run before the soup was
added to the spec, or adopted from a folder without one) is trained again with its model, in
``<hash>-s<seed>.model/``; its record is kept as it is.

A variant with a teacher stage (``[teacher]``, or a recipe with a teacher) does not train its
teacher in its own run: the teacher's config is a run of the bench of its own, keyed by its
config hash like any run (the run of a variant with the same config when the spec has one,
e.g. the soup recipe a distilled recipe learns from), trained once per seed with its model
saved, and every variant with that teacher learns from it. Its record counts the teacher's
training in the cost, as a run that trained it would.

Each run goes in a fresh process (``spawn``): its peak memory is its own, and a crash or a leak
stays there. ``jobs`` runs go at once; on CPU the cores are split between them (torch threads);
with GPUs, each run gets one GPU (``CUDA_VISIBLE_DEVICES``) and at most one run per GPU goes.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from augreg.bench.spec import BenchPlan, config_components, config_hash
from augreg.config import PipelineConfig, set_dotted, validate
from augreg.errors import AugregError

__all__ = ["BenchOutcome", "RunJob", "execute", "load_records", "plan_jobs", "run_bench"]


@dataclass(frozen=True)
class RunJob:
    """One (config, seed) run of a bench; plain data, so it crosses process boundaries.

    Attributes:
        config_hash: Hash of the variant's resolved config (see :func:`config_hash`).
        seed: The seed: training subset, head initialisation, data order, augmentation rng.
        variants: Names of the variants that share this config.
        config: The variant's resolved config, file layout, data paths absolute.
        folder: The bench's ``runs`` folder.
        threads: torch threads of the run process (None: torch's default).
        device: The GPU given to the run process (None: CPU, or every visible GPU).
        soup: For a soup's run, its members' config hashes (empty for a trained run).
        soup_weights: The members' weights, summing to 1.
        soup_configs: The members' configs, to train a member again whose model is missing.
    """

    config_hash: str
    seed: int
    variants: tuple[str, ...]
    config: dict[str, Any]
    folder: str
    threads: int | None = None
    device: str | None = None
    soup: tuple[str, ...] = ()
    soup_weights: tuple[float, ...] = ()
    soup_configs: tuple[dict[str, Any], ...] = ()
    teacher: str | None = None
    teacher_config: dict[str, Any] | None = None

    @property
    def needs(self) -> list[str]:
        """Keys of the runs this run needs finished first (a soup's members, the teacher)."""
        hashes = [*self.soup, *([self.teacher] if self.teacher else [])]
        return [f"{h}-s{self.seed}" for h in hashes]

    @property
    def key(self) -> str:
        return f"{self.config_hash}-s{self.seed}"

    @property
    def run_dir(self) -> Path:
        return Path(self.folder) / self.key

    @property
    def record_path(self) -> Path:
        return Path(self.folder) / f"{self.key}.json"

    @property
    def error_path(self) -> Path:
        return Path(self.folder) / f"{self.key}.error.txt"

    @property
    def log_path(self) -> Path:
        return Path(self.folder) / f"{self.key}.log"

    @property
    def label(self) -> str:
        return f"{'='.join(self.variants)} s{self.seed}"


@dataclass
class BenchOutcome:
    """What one invocation did: runs finished now, failed (key -> error), already done."""

    ran: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    already_done: int = 0


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # a record is whole or absent, never half written


def load_records(folder: str | Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Finished runs of a bench folder, by key, and warnings about unreadable records."""
    runs = Path(folder) / "runs"
    records: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    for path in sorted(runs.glob("*-s*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            warnings.append(f"{path}: unreadable record ({exc}); it will be run again")
            continue
        if not isinstance(record, dict) or record.get("key") != path.stem:
            warnings.append(f"{path}: not a bench record of this name; ignored")
            continue
        records[path.stem] = record
    return records, warnings


def plan_jobs(plan: BenchPlan, only: Sequence[str] | None = None) -> list[RunJob]:
    """Every run of the plan (finished or not), seed-major; ``only`` limits the variants."""
    by_hash = {v.hash: v for v in plan.variants}
    teachers = plan.teachers
    keep = plan.soup_members | set(teachers)
    folder = str(plan.folder / "runs")
    jobs = []
    for h, seed, names in plan.runs(only):
        v = by_hash.get(h)
        if not names:  # a teacher no chosen variant trains on its own: named by its students
            names = [f"teacher of {s.name}" for s in plan.variants if s.teacher_hash == h]
        if v is None:  # ... and no variant at all: a run of the bench all the same
            config = _job_config(copy.deepcopy(teachers[h]), save_model=True)
            jobs.append(RunJob(h, seed, tuple(names), config, folder))
        elif v.is_soup:
            configs = tuple(
                _job_config(by_hash[m].config.to_dict(), save_model=True) for m in v.soup_hashes
            )
            jobs.append(
                RunJob(
                    h,
                    seed,
                    tuple(names),
                    _soup_config(v),
                    folder,
                    soup=v.soup_hashes,
                    soup_weights=v.soup_weights,
                    soup_configs=configs,
                )
            )
        else:
            config = _job_config(v.config.to_dict(), save_model=h in keep)
            t = v.teacher_hash
            taught = _job_config(copy.deepcopy(teachers[t]), save_model=True) if t else None
            jobs.append(
                RunJob(h, seed, tuple(names), config, folder, teacher=t, teacher_config=taught)
            )
    return jobs


def _job_config(raw: dict[str, Any], *, save_model: bool = False) -> dict[str, Any]:
    # Bookkeeping only: none of these is in the config hash. A soup's members keep their
    # models (about 90 MB each for MiniLM); other runs keep none.
    train = raw.setdefault("train", {})
    train.update(progress=False, save_model=save_model)
    return raw


def _soup_config(v: Any) -> dict[str, Any]:
    """What a soup's record shows as its config: its members and their weights."""
    return {
        "soup": [
            {"variant": name, "config_hash": h, "weight": w}
            for name, h, w in zip(v.soup, v.soup_hashes, v.soup_weights, strict=True)
        ]
    }


#: What a record takes from a run's training report (``metrics.json`` ``train``).
RECORD_TRAIN_FIELDS = (
    "wall_seconds",
    "train_seconds",
    "seconds_per_step",
    "steps",
    "peak_memory_mb",
    "train_examples",
    "extra_passes",
    "trainable_parameters",
)


class LoadSampler:
    """The machine's mean 1-minute load average while a run trains (sampled every few seconds).

    A time ratio between two runs is only like for like when they ran under similar loads;
    the bench records the load with each run and the summary marks ratios whose loads differ.
    ``value`` is None where the platform has no load average (Windows).
    """

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _load() -> float | None:
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            load = self._load()
            if load is not None:
                self.samples.append(load)

    def __enter__(self) -> LoadSampler:
        first = self._load()
        if first is not None:
            self.samples.append(first)
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            last = self._load()
            if last is not None:
                self.samples.append(last)

    @property
    def value(self) -> float | None:
        """Mean of the samples, or None without any."""
        if not self.samples:
            return None
        return round(sum(self.samples) / len(self.samples), 2)


def make_record(
    config_hash: str,
    seed: int,
    variants: Sequence[str],
    cfg: PipelineConfig | Sequence[str],
    metrics: Mapping[str, Any],
    train: Mapping[str, Any],
    *,
    run_dir: str | Path,
    started: datetime | None,
    finished: datetime | None,
    versions: Mapping[str, str] | None,
    config: Mapping[str, Any],
    threads: int | None = None,
    device: str | None = None,
    load_average: float | None = None,
) -> dict[str, Any]:
    """A bench record of one finished run; what the run did not measure is None.

    ``cfg`` is the run's config, or the component names to record (a soup has no config of
    its own). ``metrics`` are the metrics per evaluation set and ``train`` the training report
    of the run (in a run folder's ``metrics.json``: ``eval`` and ``train``); ``config`` is what
    the record shows as the run's config; ``load_average`` is the machine's mean load while it ran
    (:class:`LoadSampler`), with ``cpu_count`` beside it to read it by.
    """

    def iso(t: datetime | None) -> str | None:
        return None if t is None else t.isoformat(timespec="seconds")

    return {
        "key": f"{config_hash}-s{seed}",
        "config_hash": config_hash,
        "seed": seed,
        "variants": list(variants),
        "components": config_components(cfg) if isinstance(cfg, PipelineConfig) else list(cfg),
        "metrics": dict(metrics),
        **{name: train.get(name) for name in RECORD_TRAIN_FIELDS},
        "threads": threads,
        "device": device,
        "load_average": load_average,
        "cpu_count": None if load_average is None else os.cpu_count(),
        "run_dir": str(run_dir),
        "started": iso(started),
        "finished": iso(finished),
        "versions": None if versions is None else dict(versions),
        "config": dict(config),
    }


def execute(job: RunJob) -> dict[str, Any]:
    """Run one job in this process and write its record; return the record.

    A run folder left by a killed run is removed first. The record is written last, and
    atomically, so a run stopped at any point before leaves none.
    """
    from augreg.pipeline import Pipeline

    if job.run_dir.exists():
        shutil.rmtree(job.run_dir)
    job.error_path.unlink(missing_ok=True)
    if job.soup:
        return _execute_soup(job)
    cfg = _job_validated(job.config, job.config_hash, job.seed, job.key, job.folder)
    started = datetime.now(timezone.utc)
    teacher_run = None
    if job.teacher is not None and job.teacher_config is not None:
        teacher_run, _ = _saved_model(job, job.teacher, job.teacher_config, "teacher")
    with LoadSampler() as load:
        result = Pipeline.from_validated(cfg).run(job.folder, teacher_run=teacher_run)
    record = _job_record(job, cfg, result.metrics, result.train, result.run_dir, started, load)
    if cfg.soup:
        record["soup"] = recipe_soup_entry(result.run_dir)
    if cfg.teacher is not None:
        record["teacher"] = teacher_entry(result.run_dir)
    _write_json_atomic(job.record_path, record)
    return record


def teacher_entry(run_dir: str | Path) -> dict[str, Any]:
    """The ``teacher`` entry of the record of a run with a teacher stage: the teacher's run
    folder (``<run>/teacher/``, or the run the report's ``teacher_run`` names when the
    teacher was trained before) and metrics per evaluation set, and for a soup teacher its
    members (:func:`recipe_soup_entry`). The summary pairs the teacher, and its members,
    with the base too.

    Raises:
        AugregError: the run folder has no trained teacher.
    """
    from augreg.soup import SOUP_FILE

    folder = Path(run_dir) / "teacher"
    report = Path(run_dir) / "metrics.json"
    if report.is_file():
        named = (json.loads(report.read_text(encoding="utf-8")).get("train") or {}).get(
            "teacher_run"
        )
        folder = Path(named) if named else folder
    file = folder / "metrics.json"
    if not file.is_file():
        raise AugregError(f"augreg: {run_dir} has no teacher/metrics.json: no teacher stage ran")
    entry: dict[str, Any] = {
        "run": str(folder),
        "metrics": json.loads(file.read_text(encoding="utf-8")).get("eval"),
    }
    if (folder / SOUP_FILE).is_file():
        entry["soup"] = recipe_soup_entry(folder)
    return entry


def recipe_soup_entry(run_dir: str | Path) -> dict[str, Any]:
    """The ``soup`` entry of the record of a run whose config has a soup (a soup recipe): its
    members' names, normalised weights, run folders, and each member's metrics per evaluation
    set, read from the run's ``soup.json`` and the members' ``metrics.json``. The summary pairs
    each member with the base as well, so a soup's gain can be read against its members'.

    Raises:
        AugregError: the run folder has no ``soup.json`` (not a soup recipe's run).
    """
    from augreg.soup import SOUP_FILE

    path = Path(run_dir) / SOUP_FILE
    if not path.is_file():
        raise AugregError(f"augreg: {run_dir} has no {SOUP_FILE}: it is not a soup recipe's run")
    members = json.loads(path.read_text(encoding="utf-8")).get("members") or []
    metrics: list[dict[str, Any] | None] = []
    for m in members:
        file = Path(m["run"]) / "metrics.json"
        data = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
        metrics.append(data.get("eval"))
    return {
        "members": [Path(m["run"]).name for m in members],
        "weights": [m["weight"] for m in members],
        "models": [m["run"] for m in members],
        "metrics": metrics,
    }


def _job_record(
    job: RunJob,
    cfg: PipelineConfig | Sequence[str],
    metrics: Mapping[str, Any],
    train: Mapping[str, Any],
    run_dir: str | Path,
    started: datetime,
    load: LoadSampler,
) -> dict[str, Any]:
    """:func:`make_record` of a job that ran here, finished now."""
    from augreg.pipeline import installed_distributions

    return make_record(
        job.config_hash,
        job.seed,
        job.variants,
        cfg,
        metrics,
        train,
        run_dir=run_dir,
        started=started,
        finished=datetime.now(timezone.utc),
        versions=installed_distributions(),
        config=job.config,
        threads=job.threads,
        device=job.device,
        load_average=load.value,
    )


def _job_validated(
    config: Mapping[str, Any], expected: str, seed: int, run_name: str, folder: str
) -> PipelineConfig:
    """A job's config with its seed and run folder set, validated, its hash checked."""
    raw = json.loads(json.dumps(config))
    set_dotted(raw, "train.seed", seed)
    set_dotted(raw, "train.run_name", run_name)
    set_dotted(raw, "train.output_dir", folder)
    cfg = validate(raw, source=f"bench run {run_name}")
    if config_hash(cfg) != expected:
        raise RuntimeError(
            f"augreg: bench run {run_name}: the config hashes to {config_hash(cfg)}, not "
            f"{expected}; a data file or an installed plugin's option defaults changed "
            "since the plan was made. Run the bench again."
        )
    return cfg


def _saved_model(
    job: RunJob, needed_hash: str, config: Mapping[str, Any], role: str = "member"
) -> tuple[Path, float]:
    """The run folder holding the saved model of a run the job needs (a soup ``member``, a
    ``teacher``) for the job's seed, and the seconds spent training it again here (0 when
    its bench run kept its model)."""
    from augreg.pipeline import Pipeline

    key = f"{needed_hash}-s{job.seed}"
    record_path = Path(job.folder) / f"{key}.json"
    if not record_path.is_file():
        raise AugregError(
            f"augreg: run {job.key}: its {role} run {key} has no record (it failed or has not "
            f"run; see {Path(job.folder) / (key + '.error.txt')}); run the bench again"
        )
    record = json.loads(record_path.read_text(encoding="utf-8"))
    again = Path(job.folder) / f"{key}.model"
    places = [Path(str(record["run_dir"]))] if record.get("run_dir") else []
    for folder in [*places, Path(job.folder) / key, again]:
        if (folder / "model" / "config.json").is_file():
            return folder, 0.0
    if again.exists():
        shutil.rmtree(again)
    cfg = _job_validated(config, needed_hash, job.seed, again.name, job.folder)
    t0 = time.perf_counter()
    result = Pipeline.from_validated(cfg).run(job.folder)
    return Path(result.run_dir), time.perf_counter() - t0


def _execute_soup(job: RunJob) -> dict[str, Any]:
    """A soup's run: average its members' models of the seed, evaluate, write the record.

    Cost fields add up the members' (training every member is what the soup costs); peak
    memory is the largest member's.
    """
    from augreg.soup import soup_runs, summed_training

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    folders: list[Path] = []
    again = 0.0
    for member_hash, config in zip(job.soup, job.soup_configs, strict=True):
        folder, seconds = _saved_model(job, member_hash, config)
        folders.append(folder)
        again += seconds
    with LoadSampler() as load:
        soup = soup_runs(folders, job.run_dir, weights=job.soup_weights)
    members = [
        json.loads((Path(job.folder) / f"{key}.json").read_text(encoding="utf-8"))
        for key in job.needs
    ]
    train = summed_training(members)
    if train["wall_seconds"] is not None:  # the members' training, then the averaging here
        train["wall_seconds"] += time.perf_counter() - t0 - again
    label = [f"soup({' + '.join(m.get('key', '?') for m in members)})"]
    record = _job_record(job, label, soup.metrics, train, job.run_dir, started, load)
    record["soup"] = {
        "members": [m.get("key") for m in members],
        "weights": list(job.soup_weights),
        "models": [str(f) for f in folders],
    }
    _write_json_atomic(job.record_path, record)
    return record


def _child(job: RunJob) -> None:
    """Entry of a run process: pin the device and threads, send output to the log, run."""
    if job.device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = job.device  # before torch is imported
    if job.threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(job.threads)
    log = job.log_path.open("w", encoding="utf-8")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    try:
        if job.threads is not None:
            import torch

            torch.set_num_threads(job.threads)
        execute(job)
    except BaseException as exc:
        job.error_path.write_text(
            f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}", encoding="utf-8"
        )
        log.flush()
        raise SystemExit(1) from None
    log.flush()


def _visible_gpus() -> list[str]:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return []
    if not torch.cuda.is_available():
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:
        return [d.strip() for d in env.split(",") if d.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def slots_for(jobs: int, gpus: Sequence[str] | None = None) -> list[tuple[str | None, int | None]]:
    """(device, torch threads) of each parallel slot.

    With GPUs: one slot per GPU, at most ``jobs``. On CPU: ``jobs`` slots sharing the cores
    (one slot keeps torch's default threads).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    gpus = _visible_gpus() if gpus is None else list(gpus)
    if gpus:
        return [(g, None) for g in gpus[:jobs]]
    if jobs == 1:
        return [(None, None)]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    return [(None, threads)] * jobs


Reporter = Callable[[str, RunJob, str], None]


def run_bench(
    plan: BenchPlan,
    *,
    jobs: int = 1,
    only: Sequence[str] | None = None,
    isolate: bool = True,
    report: Reporter | None = None,
    gpus: Sequence[str] | None = None,
) -> BenchOutcome:
    """Run every (variant, seed) of the plan that has no record yet.

    Args:
        plan: The validated plan (:func:`augreg.bench.load_spec`).
        jobs: Runs at once (each in its own process; on GPUs at most one per GPU).
        only: Run only these variants (the base always runs: the comparisons need it).
        isolate: Run each in a fresh process (default). False runs them one after the other
            in this process (debugging and fast tests): peak memory then counts the whole
            process, and ``jobs`` must be 1.
        report: Called with ``(event, job, detail)``: ``start``, ``done`` (detail: the record's
            seconds) or ``failed`` (detail: the error).
        gpus: GPU ids to use (default: the visible ones); ``[]`` forces CPU.

    Returns:
        What ran now, what failed and how many were done before.
    """
    if not isolate and jobs != 1:
        raise ValueError("run_bench: isolate=False runs in this process; use jobs=1")
    (plan.folder / "runs").mkdir(parents=True, exist_ok=True)
    with _bench_lock(plan.folder):
        return _run_pending(plan, jobs, only, isolate, report, gpus)


@contextmanager
def _bench_lock(folder: Path) -> Iterator[None]:
    """One invocation per bench folder at a time: two would run the same pending runs."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    with (folder / "bench.lock").open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise AugregError(
                f"augreg: another augreg bench is running in {folder}; wait for it to finish "
                "(its finished runs will be kept) or give this one another --output"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_pending(
    plan: BenchPlan,
    jobs: int,
    only: Sequence[str] | None,
    isolate: bool,
    report: Reporter | None,
    gpus: Sequence[str] | None,
) -> BenchOutcome:
    records, _ = load_records(plan.folder)
    every = plan_jobs(plan, only)
    pending = [j for j in every if j.key not in records]
    outcome = BenchOutcome(already_done=len(every) - len(pending))
    _write_json_atomic(plan.folder / "plan.json", _plan_json(plan))

    def emit(event: str, job: RunJob, detail: str = "") -> None:
        if report is not None:
            report(event, job, detail)

    if not isolate:
        for job in pending:
            emit("start", job)
            try:
                record = execute(job)
            except Exception as exc:
                job.error_path.write_text(
                    f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}", encoding="utf-8"
                )
                outcome.failed[job.key] = f"{type(exc).__name__}: {exc}"
                emit("failed", job, outcome.failed[job.key])
                continue
            outcome.ran.append(job.key)
            emit("done", job, f"{record['wall_seconds']:.1f}")
        return outcome
    _run_processes(pending, slots_for(jobs, gpus), outcome, emit)
    return outcome


def next_ready(queue: Sequence[RunJob], running: Sequence[RunJob]) -> int | None:
    """The index of the first queued run that can start now, or None.

    A soup waits for its members' runs, a run with a teacher stage for its teacher's (queued
    or running). It also waits while a run of the same seed that needs one of the same runs
    is going: a needed run whose model is missing is trained again by the run that needs it,
    into one folder, and two runs must not write it at once (the second finds the model the
    first saved).
    """
    waiting = {j.key for j in queue} | {j.key for j in running}
    for i, job in enumerate(queue):
        if waiting.intersection(job.needs):
            continue
        if any(set(r.needs).intersection(job.needs) for r in running):
            continue
        return i
    return None


def _run_processes(
    pending: list[RunJob],
    slots: list[tuple[str | None, int | None]],
    outcome: BenchOutcome,
    emit: Callable[[str, RunJob, str], None],
) -> None:
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")  # fresh interpreters: no inherited torch or CUDA state
    queue = list(pending)
    free = list(range(len(slots)))
    running: dict[int, tuple[Any, RunJob, int, float]] = {}
    previous = _exit_on_sigterm()
    try:
        while queue or running:
            while queue and free:
                ready = next_ready(queue, [j for _, j, _, _ in running.values()])
                if ready is None:
                    break  # every queued run is a soup waiting (see next_ready)
                slot = free.pop(0)
                device, threads = slots[slot]
                job = RunJob(**{**asdict(queue.pop(ready)), "device": device, "threads": threads})
                proc = ctx.Process(target=_child, args=(job,), name=f"augreg-bench-{job.key}")
                proc.start()
                running[proc.sentinel] = (proc, job, slot, time.perf_counter())
                emit("start", job, "")
            for sentinel in wait(list(running)):
                assert isinstance(sentinel, int)
                proc, job, slot, t0 = running.pop(sentinel)
                proc.join()
                free.append(slot)
                if job.record_path.exists() and proc.exitcode == 0:
                    outcome.ran.append(job.key)
                    emit("done", job, f"{time.perf_counter() - t0:.1f}")
                    continue
                detail = (
                    job.error_path.read_text(encoding="utf-8").splitlines()[0]
                    if job.error_path.exists()
                    else f"the run process exited with code {proc.exitcode} (see {job.log_path})"
                )
                outcome.failed[job.key] = detail
                emit("failed", job, detail)
    finally:
        for proc, _, _, _ in running.values():  # interrupted: stop the runs, no record stays
            proc.terminate()
        for proc, _, _, _ in running.values():
            proc.join(timeout=30)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm() -> Any:
    """Make SIGTERM (``kill``, a scheduler's stop) raise SystemExit, so the run processes are
    stopped like on Ctrl-C instead of left running without their parent. Returns the previous
    handler, or None when not on the main thread (signals cannot be set there)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop)


def _plan_json(plan: BenchPlan) -> dict[str, Any]:
    return {
        "name": plan.name,
        "source": plan.source,
        "seeds": plan.seeds,
        "metric": plan.metric,
        "variants": [
            {
                "name": v.name,
                "description": v.description,
                "config_hash": v.hash,
                "components": v.components,
            }
            for v in plan.variants
        ],
        "skipped": [{"name": n, "reason": r} for n, r in plan.skipped],
    }
