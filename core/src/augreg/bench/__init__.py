"""``augreg bench``: what each component buys, over seeds, with confidence intervals and costs.

A bench spec (TOML or YAML) names a base pipeline, variants (components added or removed,
options replaced, named recipes), seeds and evaluation sets. Every (variant, seed) runs once in
its own process; finished runs are kept as records keyed by config hash (data files by content)
and seed, so a bench resumes and more seeds add only the new runs; finished runs made elsewhere
(``augreg run``, a study, another bench) are adopted with ``--adopt DIR`` when their config and
seed match. The summary gives, per variant and evaluation set, the mean, standard deviation and
95% interval over seeds, the paired difference to the base with a paired t-test, the cost
relative to the base, and plots.

Example:
    >>> from augreg.bench import load_spec, run_bench, write_reports
    >>> plan = load_spec("benchmarks/generalization/sst2_500.toml")  # doctest: +SKIP
    >>> run_bench(plan, jobs=2)  # doctest: +SKIP
    >>> summary, paths = write_reports(plan)  # doctest: +SKIP

See docs/bench.md. The plots need matplotlib: ``pip install "augreg[bench]"``.
"""

from __future__ import annotations

from augreg.bench.adopt import AdoptOutcome, adopt_runs
from augreg.bench.report import require_matplotlib, summarize, write_reports
from augreg.bench.runner import BenchOutcome, RunJob, execute, load_records, plan_jobs, run_bench
from augreg.bench.spec import (
    BenchPlan,
    BenchSpec,
    Variant,
    VariantSpec,
    config_hash,
    load_spec,
)
from augreg.bench.stats import mean_ci, paired_test

__all__ = [
    "AdoptOutcome",
    "BenchOutcome",
    "BenchPlan",
    "BenchSpec",
    "RunJob",
    "Variant",
    "VariantSpec",
    "adopt_runs",
    "config_hash",
    "execute",
    "load_records",
    "load_spec",
    "mean_ci",
    "paired_test",
    "plan_jobs",
    "require_matplotlib",
    "run_bench",
    "summarize",
    "write_reports",
]
