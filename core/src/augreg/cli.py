"""The ``augreg`` command line (typer + rich).

Commands: ``run`` (train and evaluate a pipeline config, write a run folder), ``validate``
(check a config without loading any model), ``plugins`` (installed components by kind),
``augment`` (apply a config's data stage, or one component, to a file), ``bench`` (compare
variants of a pipeline over seeds) and ``check-plugin`` (run the conformance kit against an
installed plugin distribution).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from augreg.errors import AugregError

app = typer.Typer(
    name="augreg",
    help="Make fine-tuned language models generalize better: compose augmenters, knowledge "
    "injectors, objectives, regularizers and adapters into one training pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def _parse_assignments(items: list[str] | None, flag: str) -> dict[str, Any]:
    import yaml

    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{flag} takes key=value, got {item!r}")
        try:
            values[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            values[key.strip()] = raw
    return values


def _fail(exc: BaseException, code: int = 1) -> None:
    err.print(f"[red]{exc}[/red]" if not isinstance(exc, AugregError) else str(exc))
    raise typer.Exit(code)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Pipeline config (TOML or YAML).")],
    seed: Annotated[int | None, typer.Option(help="Override train.seed.")] = None,
    output: Annotated[Path | None, typer.Option(help="Folder of run folders.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value: --set train.epochs=3 (repeatable)."),
    ] = None,
    teacher_run: Annotated[
        Path | None,
        typer.Option(
            help="For a config with a teacher stage: a finished run of the teacher (its "
            "config and seed, model saved) to learn from instead of training it again."
        ),
    ] = None,
) -> None:
    """Train and evaluate a pipeline; write a run folder (config, metrics, weights, lock)."""
    from augreg.pipeline import Pipeline

    overrides = _parse_assignments(set_, "--set")
    if seed is not None:
        overrides["train.seed"] = seed
    try:
        pipe = Pipeline.from_config(config, overrides=overrides)
        result = pipe.run(output_dir=output, teacher_run=teacher_run)
    except AugregError as exc:
        _fail(exc, 2)
        return
    out.print(_metrics_table(f"augreg run: {result.run_dir}", result.metrics))
    t = result.train
    out.print(
        f"{t['steps']} steps in {t['train_seconds']:.1f} s ({t['seconds_per_step']:.3f} s/step); "
        f"wall {t['wall_seconds']:.1f} s; peak memory {t['peak_memory_mb']:.0f} MB"
    )


_SKIP_KEYS = {"runtime", "samples_per_second", "steps_per_second", "loss"}


def _metrics_table(title: str, metrics: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    table.add_column("evaluation set")
    keys = sorted({k for m in metrics.values() for k in m if k not in _SKIP_KEYS})
    for k in keys:
        table.add_column(k, justify="right")
    for name, values in metrics.items():
        table.add_row(name, *(f"{values[k]:.4f}" if k in values else "" for k in keys))
    return table


@app.command()
def evaluate(
    runs: Annotated[
        list[Path], typer.Argument(help="Run folders (each holds config.yaml and model/).")
    ],
    eval_: Annotated[
        list[str] | None,
        typer.Option(
            "--eval",
            help="An evaluation set instead of the run's own: --eval cr=data/cr.jsonl "
            "(repeatable; 'test' is the in-domain test set).",
        ),
    ] = None,
    write: Annotated[
        bool,
        typer.Option(
            "--write/--no-write",
            help="Add new metrics and sets to the run's metrics.json (never overwrites).",
        ),
    ] = True,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Evaluation batch size.")] = None,
) -> None:
    """Evaluate finished runs' saved models again: their own sets with today's metrics
    (roc_auc for runs made before it), or new sets (--eval name=path)."""
    from augreg.evaluate import evaluate_run

    sets = _parse_assignments(eval_, "--eval") if eval_ else None
    failed = 0
    for run_dir in runs:
        try:
            result = evaluate_run(run_dir, sets, write=write, batch_size=batch_size)
        except AugregError as exc:
            err.print(str(exc), markup=False)
            failed += 1
            continue
        out.print(_metrics_table(f"augreg evaluate: {run_dir}", result.metrics))
        if result.added:
            added = "; ".join(f"{k}: {', '.join(v)}" for k, v in result.added.items())
            out.print(f"added to {run_dir / 'metrics.json'}: {added}")
        for name, keys in result.differs.items():
            for key, (old, new) in keys.items():
                out.print(
                    f"[yellow]{name} {key}: recorded {old:.6g}, now {new:.6g}; the recorded "
                    "value is kept[/yellow]"
                )
    if failed:
        raise typer.Exit(2)


@app.command()
def soup(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders of one seed, with whole saved models (two or more without --greedy)."
        ),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="The soup's run folder (new or empty).")
    ],
    weight: Annotated[
        list[float] | None,
        typer.Option("--weight", help="One weight per run, in order (repeat); default equal."),
    ] = None,
    any_seed: Annotated[
        bool,
        typer.Option("--any-seed", help="Average runs of different seeds (unrelated heads)."),
    ] = False,
    evaluate: Annotated[
        bool,
        typer.Option("--evaluate/--no-evaluate", help="Measure the soup on the runs' sets."),
    ] = True,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Evaluation batch size.")] = None,
    greedy: Annotated[
        str | None,
        typer.Option(
            help="NAME=FILE: a greedy soup (Wortsman et al. 2022), the runs added best first "
            "while the average scores no worse on this held-out set (never the test set)."
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="What --greedy compares (default accuracy; f1 for tagging)."),
    ] = None,
) -> None:
    """Average finished runs' weights into a new run folder (a model soup, Wortsman et al.
    2022) and evaluate it on their sets; no training, one model's inference cost."""
    from augreg.soup import greedy_soup, soup_runs

    try:
        if greedy is not None:
            if weight:
                raise AugregError(
                    "augreg: soup: --greedy weighs the runs it keeps equally; drop --weight"
                )
            name, sep, file = greedy.partition("=")
            if not sep or not name or not file:
                raise AugregError(
                    f"augreg: soup: --greedy takes NAME=FILE (validation=data/dev.jsonl), "
                    f"got {greedy!r}"
                )
            result = greedy_soup(
                runs,
                out_dir,
                held_out={name: file},
                metric=metric,
                any_seed=any_seed,
                evaluate=evaluate,
                batch_size=batch_size,
            )
        elif metric is not None:
            raise AugregError("augreg: soup: --metric is what --greedy compares; add --greedy")
        else:
            result = soup_runs(
                runs,
                out_dir,
                weights=weight,
                any_seed=any_seed,
                evaluate=evaluate,
                batch_size=batch_size,
            )
    except AugregError as exc:
        _fail(exc, 2)
        return
    if greedy is not None:
        choice = json.loads((result.run_dir / "soup.json").read_text(encoding="utf-8"))["greedy"]
        for step in choice["steps"]:
            out.print(
                f"augreg soup: {'kept   ' if step['kept'] else 'dropped'} {step['run']}: "
                f"{choice['metric']} on {choice['set']} {step['alone']:.4f} alone, "
                f"{step['soup']:.4f} in the soup"
            )
    parts = ", ".join(f"{m} ({w:.2f})" for m, w in zip(result.members, result.weights, strict=True))
    out.print(f"augreg soup: {result.run_dir} from {parts}")
    if result.metrics:
        out.print(_metrics_table(f"augreg soup: {result.run_dir}", result.metrics))


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="Pipeline config (TOML or YAML).")],
) -> None:
    """Check a config (structure, components, options, conflicts, files) without loading models."""
    from augreg.config import load_config, teacher_label

    try:
        cfg = load_config(config)
    except AugregError as exc:
        _fail(exc, 2)
        return
    comps = [
        s.name
        for section in ("inject", "augment", "objectives", "regularize", "adapters")
        for s in getattr(cfg, section)
    ]
    tasks = f"; tasks: {', '.join(t.name for t in cfg.tasks)}" if cfg.tasks else ""
    if cfg.soup:
        tasks += "; a soup of " + ", ".join(
            f"{m.name} (weight {m.weight:g}: {', '.join(c['name'] for c in m.components)})"
            for m in cfg.soup
        )
    stage = cfg.teacher
    if stage is not None:
        tasks += f"; a teacher trained first ({teacher_label(stage)}"
        while stage.teacher is not None:  # iterated: each teacher a student of the next
            stage = stage.teacher
            tasks += f", itself taught by {teacher_label(stage)}"
        tasks += "), then this model from it"
    out.print(
        f"augreg: {config} is valid ({len(comps)} component{'' if len(comps) == 1 else 's'}: "
        f"{', '.join(comps) or 'none'}{tasks})"
    )


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List installed components by kind, with distribution and version."""
    from augreg.components import KINDS
    from augreg.host import default_host

    host = default_host()
    if as_json:
        data: dict[str, list[dict[str, Any]]] = {
            kind: [
                {
                    "name": i.name,
                    "distribution": i.plugin.distribution,
                    "version": i.plugin.version,
                    "extra_passes": i.cls.extra_passes,
                }
                for i in sorted(host.components[kind].values(), key=lambda i: i.name)
            ]
            for kind in KINDS
        }
        data["failures"] = [dict(f.__dict__) for f in host.failures]
        out.print_json(json.dumps(data))
        return
    table = Table(title="augreg components")
    for col in ("kind", "name", "distribution", "version"):
        table.add_column(col, no_wrap=True)
    table.add_column("summary")
    for kind in KINDS:
        for info in sorted(host.components[kind].values(), key=lambda i: i.name):
            doc = (info.cls.__doc__ or "").strip().splitlines()
            table.add_row(
                kind,
                info.name,
                info.plugin.distribution,
                info.plugin.version,
                doc[0] if doc else "",
            )
    out.print(table)
    for failure in host.failures:
        err.print(f"[yellow]warning:[/yellow] {failure.render()}")


def _first_sentence(text: str) -> str:
    """The first sentence of a description (not cut at "et al." or "e.g.")."""
    match = re.search(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)\.(\s|$)", text)
    return text[: match.start() + 1] if match else text


@app.command()
def recipes(
    name: Annotated[
        str | None, typer.Argument(help="One recipe: its description, needs and config.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the named recipes: what each trains, what it needs installed, what it is for."""
    from augreg import recipes as registry
    from augreg.host import default_host, install_hint

    host = default_host()
    if name is not None:
        try:
            chosen = [registry.get(name)]
        except registry.UnknownRecipeError as exc:
            _fail(exc, 2)
            return
    else:
        chosen = [registry.get(n) for n in registry.names()]

    def trains(r: registry.Recipe) -> str:
        parts = [n for n, _ in r.components]
        if r.soup:
            members = [f"{m.weight:g} {m.name}" for m in r.soup]
            parts.insert(0, f"soup({' + '.join(members)})")
        if r.teacher is not None:
            taught = r.teacher.recipe or ", ".join(n for n, _ in r.teacher.components)
            parts.insert(0, f"teacher({taught})")
        return ", ".join(parts)

    def missing(r: registry.Recipe) -> list[str]:
        needed = registry.needed_components(r)
        return [f"{c} ({install_hint(c)})" for c in needed if host.find(c) is None]

    if as_json:
        data = [
            {
                "name": r.name,
                "trains": trains(r),
                "needs": registry.needed_components(r),
                "missing": missing(r),
                "settings": {k: dict(v) for k, v in r.settings.items()},
                "description": r.description,
            }
            for r in chosen
        ]
        out.print_json(json.dumps(data))
        return
    if name is None:
        table = Table(title="augreg recipes (augreg recipes NAME for one)")
        for col in ("name", "trains", "installed"):
            table.add_column(col)
        table.add_column("what it is for")
        for r in chosen:
            lack = missing(r)
            table.add_row(
                r.name,
                trains(r),
                "yes" if not lack else "no: " + "; ".join(lack),
                _first_sentence(r.description),
            )
        out.print(table)
        return
    (r,) = chosen
    lack = missing(r)
    out.print(f"[bold]{r.name}[/bold]: {trains(r)}\n")
    out.print(r.description + "\n")
    out.print(f"needs: {', '.join(registry.needed_components(r))}")
    out.print("installed: yes" if not lack else "missing: " + "; ".join(lack))
    for section, values in r.settings.items():
        shown = ", ".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
        out.print(f"sets [{section}] {shown} (unless the config states them)", markup=False)
    out.print(
        f'\nuse it: recipe = "{r.name}" at the top of a config, or '
        f'augreg.Pipeline(..., recipe="{r.name}") in code',
        markup=False,
    )


@app.command()
def augment(
    input_file: Annotated[Path, typer.Argument(help="Input JSONL/JSON/CSV/TSV file.")],
    output_file: Annotated[Path, typer.Argument(help="Output JSONL file.")],
    config: Annotated[
        Path | None, typer.Option(help="Apply this config's data stage (inject + augment).")
    ] = None,
    component: Annotated[
        list[str] | None, typer.Option(help="Apply this augmenter/injector (repeatable).")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option(help="Option of --component: key=value (repeatable).")
    ] = None,
    task: Annotated[str, typer.Option(help="Task type of the input.")] = "sequence_classification",
    seed: Annotated[int, typer.Option(help="Seed of the augmentation.")] = 42,
) -> None:
    """Apply a data stage to a file and write the result (with provenance columns) as JSONL."""
    from augreg.config import read_config_file, validate
    from augreg.host import default_host
    from augreg.pipeline import Pipeline

    try:
        if (config is None) == (not component):
            raise typer.BadParameter("give either --config or --component")
        if config is not None:
            raw = read_config_file(config)
            raw.setdefault("base_dir", str(config.resolve().parent))
            data = dict(raw.get("data") or {})
            tasks = raw.pop("tasks", None)
            raw.pop("multitask", None)
            if isinstance(tasks, list) and tasks and isinstance(tasks[0], dict):
                # A multi-task config: its data stage serves every task; the file is read as
                # the first task's examples (its type and tag scheme).
                first = tasks[0]
                raw["task"] = {k: first[k] for k in ("type", "tag_scheme") if k in first}
                data = {"columns": dict((first.get("data") or {}).get("columns") or {})}
        else:
            host = default_host()
            opts = _parse_assignments(option, "--option")
            raw = {
                "name": "augment",
                "model": {"name": "unused"},
                "task": {"type": task},
                "inject": [],
                "augment": [],
            }
            for name in component or []:
                info = host.find(name)
                section = "inject" if info is not None and info.kind == "injector" else "augment"
                raw[section].append({"name": name, **(opts if len(component or []) == 1 else {})})
            data = {}
        data.update(
            {
                "train": str(input_file.resolve()),
                "validation": None,
                "test": None,
                "eval": {},
                "train_size": None,
            }
        )
        raw["data"] = data
        raw.setdefault("train", {})["seed"] = seed
        _refuse_model_augmenters(raw.get("augment"))
        cfg = validate(raw, source=str(config or "augreg augment"))
        pipe = Pipeline.from_validated(cfg)
        result = pipe.augment()
    except AugregError as exc:
        _fail(exc, 2)
        return
    output_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_file.with_suffix(output_file.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in result:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(output_file)  # atomic: never a half-written output
    out.print(f"augreg: wrote {len(result)} examples to {output_file}")


def _refuse_model_augmenters(items: Any) -> None:
    """``augreg augment`` has no model: name the augmenters that need one and where they run."""
    from augreg.config import _split_spec
    from augreg.host import default_host

    host = default_host()
    items = [items] if isinstance(items, (str, dict)) else list(items or [])
    needy: list[str] = []
    for item in items:
        name, _ = _split_spec(item)
        found = host.find(name) if name else None
        if name and found is not None and getattr(found.cls, "needs_model", False):
            needy.append(name)
    if needy:
        raise AugregError(
            f"augreg augment: {', '.join(needy)} write their examples against the model being "
            "trained (they need the model), and augreg augment has none. Use them in training: "
            'augreg run with data.augmentation = "per_epoch" and the component under '
            "[[augment]] (the views are rewritten against the current weights as it trains)."
        )


def _parse_seeds(value: str | None) -> list[int] | int | None:
    if value is None:
        return None
    try:
        items = [int(x) for x in value.replace(" ", "").split(",") if x]
    except ValueError:
        raise typer.BadParameter(
            f"--seeds takes a number (5: seeds 1..5) or a list (1,2,7), got {value!r}"
        ) from None
    if not items:
        raise typer.BadParameter("--seeds is empty; give a number or a list")
    return items[0] if len(items) == 1 and "," not in value else items


@app.command()
def bench(
    spec: Annotated[Path, typer.Argument(help="Bench spec (TOML or YAML); see docs/bench.md.")],
    ablate: Annotated[
        bool, typer.Option(help="Add one variant per base component, with it removed.")
    ] = False,
    jobs: Annotated[
        int, typer.Option(min=1, help="Runs at once, each in its own process (one per GPU).")
    ] = 1,
    seeds: Annotated[
        str | None, typer.Option(help="Override the spec's seeds: 5 (1..5) or 1,2,7.")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Bench folder (default: the spec's).")] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option(help="Run only this variant (repeatable); the base always runs."),
    ] = None,
    skip_missing: Annotated[
        bool | None,
        typer.Option(
            "--skip-missing/--no-skip-missing",
            help="Skip variants whose plugin is not installed, with a warning.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Validate and show the plan (runs done and to do); run nothing.")
    ] = False,
    report_only: Annotated[
        bool, typer.Option(help="Write the summary from the finished runs; run nothing.")
    ] = False,
    in_process: Annotated[
        bool,
        typer.Option(help="Run in this process, one at a time (debugging; memory not per run)."),
    ] = False,
    adopt: Annotated[
        list[Path] | None,
        typer.Option(
            help="Adopt finished runs under this folder (repeatable): a run folder whose config "
            "(data by content) and seed are a run of the plan becomes its record, not rerun."
        ),
    ] = None,
    adopt_base: Annotated[
        Path | None,
        typer.Option(
            help="Where relative data paths of adopted runs resolve from when they exist "
            "neither from the base_dir their config records nor from the run folder."
        ),
    ] = None,
) -> None:
    """Compare variants of a pipeline over seeds: intervals, paired tests, costs, plots."""
    from augreg.bench import adopt_runs, load_records, load_spec, plan_jobs, require_matplotlib

    try:
        plan = load_spec(
            spec,
            ablate=ablate or None,
            seeds=_parse_seeds(seeds),
            skip_missing=skip_missing,
            output_dir=output,
        )
        for name in variant or []:
            plan.variant(name)
    except KeyError as exc:
        _fail(AugregError(str(exc.args[0])), 2)
        return
    except AugregError as exc:
        _fail(exc, 2)
        return
    for warning in plan.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}")
    for name, reason in plan.skipped:
        err.print(f"[yellow]warning:[/yellow] variant {name!r} skipped: {reason}")
    if adopt_base is not None and not adopt:
        _fail(AugregError("augreg: --adopt-base is for --adopt DIR; add the folder of runs"), 2)
        return
    to_adopt: set[str] = set()
    if adopt:
        try:
            adopted = adopt_runs(plan, adopt, base=adopt_base, write=not dry_run)
        except AugregError as exc:
            _fail(exc, 2)
            return
        _print_adoption(adopted, dry_run)
        to_adopt = {run.key for run in adopted.adopted} if dry_run else set()
    records, problems = load_records(plan.folder)
    for problem in problems:
        err.print(f"[yellow]warning:[/yellow] {problem}")
    jobs_all = plan_jobs(plan, variant)
    done = {j.key for j in jobs_all if j.key in records or j.key in to_adopt}
    table = Table(title=f"augreg bench {plan.name}: {plan.folder}")
    for col in ("variant", "components", "config", "runs done"):
        table.add_column(col)
    for v in plan.variants:
        mine = [j for j in jobs_all if v.name in j.variants]
        table.add_row(
            v.name,
            ", ".join(v.components) or "(none)",
            v.hash,
            f"{sum(j.key in done for j in mine)}/{len(mine)}" if mine else "not selected",
        )
    by_hash = {v.hash for v in plan.variants}
    for h in dict.fromkeys(j.config_hash for j in jobs_all if j.config_hash not in by_hash):
        mine = [j for j in jobs_all if j.config_hash == h]  # a teacher no variant trains
        table.add_row(
            f"({', '.join(mine[0].variants)})",
            "the teacher stage's config",
            h,
            f"{sum(j.key in done for j in mine)}/{len(mine)}",
        )
    out.print(table)
    todo = len(jobs_all) - len(done)
    adopting = f" ({len(done & to_adopt)} by adoption)" if to_adopt else ""
    out.print(
        f"seeds {', '.join(map(str, plan.seeds))}; {todo} run(s) to do, {len(done)} done{adopting}"
    )
    if dry_run:
        return
    try:
        require_matplotlib()
    except AugregError as exc:
        _fail(exc, 2)
        return
    failed: dict[str, str] = {}
    if not report_only and todo:
        try:
            failed = _bench_runs(plan, jobs, variant, in_process, todo)
        except AugregError as exc:
            _fail(exc, 2)
            return
    from augreg.bench import write_reports
    from augreg.bench.report import tables

    try:
        summary, paths = write_reports(plan)
    except AugregError as exc:
        _fail(exc, 2)
        return
    # The at-a-glance table (each set's paired difference per variant); the rest in the files.
    title, head, rows = tables(summary)[0]
    result = Table(title=f"{title}: {summary['metric']}")
    for i, name in enumerate(head):
        result.add_column(name, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        result.add_row(*row)
    out.print(result)
    out.print(f"augreg: wrote {paths['summary.md']} and {paths['summary.html']}")
    if failed:
        for key, detail in failed.items():
            err.print(f"[red]failed[/red] {key}: {detail}")
        err.print(
            f"augreg: {len(failed)} run(s) failed; their logs are in {plan.folder / 'runs'}. "
            "Fix the cause and run the same command again: finished runs are kept."
        )
        raise typer.Exit(1)


def _print_adoption(outcome: Any, dry_run: bool) -> None:
    """What ``--adopt`` adopted (would adopt) per variant, and what it skipped and why."""
    from augreg.bench.adopt import SKIP_REASONS

    verb = "would adopt" if dry_run else "adopted"
    table = Table(title=f"augreg bench --adopt: {verb} {len(outcome.adopted)} run(s)")
    for col in ("variant", "seeds", "from"):
        table.add_column(col)
    folders: dict[str, list[str]] = {}
    for run in outcome.adopted:
        for name in run.variants:
            folders.setdefault(name, []).append(str(run.run_dir.parent))
    for name, seeds in outcome.per_variant().items():
        table.add_row(name, ", ".join(map(str, seeds)), ", ".join(dict.fromkeys(folders[name])))
    out.print(table)
    if outcome.refreshed:
        names = sorted({m.split("/", 1)[1] for ms in outcome.refreshed.values() for m in ms})
        verb = "would add" if dry_run else "added"
        out.print(
            f"{verb} metrics to {len(outcome.refreshed)} record(s) whose run folder has "
            f"gained them: {', '.join(names)}"
        )
    skipped = sum(len(items) for items in outcome.skipped.values())
    if skipped:
        counts = [f"{r} {len(outcome.skipped[r])}" for r in SKIP_REASONS if r in outcome.skipped]
        out.print(f"skipped {skipped} run folder(s): {', '.join(counts)}")
    for reason in SKIP_REASONS:
        items = outcome.skipped.get(reason, [])
        for folder, detail in items[:3]:
            out.print(f"  {reason}: {folder}" + (f" ({detail})" if detail else ""))
        if len(items) > 3:
            out.print(f"  {reason}: ... and {len(items) - 3} more")
    defaulted = sorted({k for run in outcome.adopted for k in run.defaulted})
    if defaulted:
        err.print(
            f"[yellow]note:[/yellow] adopted run configs lack {', '.join(defaulted)}: they predate "
            "these settings and matched with today's defaults (versions in their augreg.lock)"
        )


def _bench_runs(
    plan: Any, jobs: int, variant: list[str] | None, in_process: bool, todo: int
) -> dict[str, str]:
    """Run the bench under a rich progress display; return the failed runs."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from augreg.bench import RunJob, run_bench
    from augreg.bench.runner import slots_for

    if in_process:
        out.print("runs one at a time in this process (--in-process)")
    else:
        slots = slots_for(jobs)
        gpus = [d for d, _ in slots if d is not None]
        if gpus:
            out.print(f"{len(gpus)} run(s) at once, one per GPU ({', '.join(gpus)})")
            if jobs > len(gpus):
                err.print(
                    f"[yellow]warning:[/yellow] --jobs {jobs} but {len(gpus)} GPU(s): one run per "
                    "GPU at a time"
                )
        else:
            threads = slots[0][1]
            each = f", {threads} torch thread(s) each" if threads else ""
            out.print(f"{len(slots)} run(s) at once on CPU{each}")
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as progress:
        overall = progress.add_task(f"bench {plan.name}", total=todo)
        running: dict[str, Any] = {}

        def report(event: str, job: RunJob, detail: str) -> None:
            if event == "start":
                running[job.key] = progress.add_task(f"  {job.label}", total=None)
                return
            task_id = running.pop(job.key, None)
            if task_id is not None:
                progress.remove_task(task_id)
            progress.advance(overall)
            if event == "done":
                progress.console.print(f"done {job.label} ({detail} s)")
            else:
                progress.console.print(f"[red]failed[/red] {job.label}: {detail}")

        outcome = run_bench(plan, jobs=jobs, only=variant, isolate=not in_process, report=report)
    return outcome.failed


@app.command("check-plugin")
def check_plugin(
    distribution: Annotated[str, typer.Argument(help="Installed plugin distribution name.")],
    pytest_args: Annotated[
        list[str] | None, typer.Argument(help="Extra pytest arguments (after --).")
    ] = None,
) -> None:
    """Run the conformance kit against every component of an installed plugin."""
    try:
        from augreg.testing.runner import check_plugin as run_kit
    except ImportError as exc:  # pytest missing
        _fail(
            AugregError(f"augreg: check-plugin needs pytest: pip install 'augreg[testing]' ({exc})")
        )
        return
    try:
        code = run_kit(distribution, list(pytest_args or []))
    except AugregError as exc:
        _fail(exc, 2)
        return
    raise typer.Exit(int(code))


def main() -> None:
    """Entry point of the ``augreg`` script."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        err.print("augreg: interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
