"""The bench summary: statistics per variant and evaluation set, costs, tables and plots.

From the plan and the finished records, :func:`summarize` computes, per variant and evaluation
set, the mean, standard deviation and 95% t-interval over seeds, and the paired difference to
the base over the seeds both have (its t-interval and paired t-test p-value); per variant, the
cost relative to the base (median wall time per run, seconds per step, peak memory); and how
many runs were adopted from earlier run folders (``--adopt``), said in the notes.
:func:`write_reports` writes ``summary.json``, ``summary.md``, ``summary.html`` (plots embedded
as base64 PNG) and ``plots/*.png``.

Plots need matplotlib: ``pip install "augreg[bench]"``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from augreg.bench.stats import mean_ci, paired_test
from augreg.errors import AugregError

if TYPE_CHECKING:
    from augreg.bench.spec import BenchPlan

__all__ = ["require_matplotlib", "summarize", "tables", "to_html", "to_markdown", "write_reports"]

INSTALL_HINT = 'pip install "augreg[bench]"'
PLOTS = ("metric.png", "gain_cost.png")


def require_matplotlib() -> None:
    """Fail early, before hours of runs, when the plots could not be drawn.

    Raises:
        AugregError: matplotlib is not installed; names the extra to install.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise AugregError(
            "augreg: augreg bench draws its plots with matplotlib, which is not installed: "
            f"{INSTALL_HINT}"
        ) from None


def _median(values: Sequence[float]) -> float | None:
    clean = [float(v) for v in values if v is not None]
    return statistics.median(clean) if clean else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _set_order(plan: BenchPlan, records: Sequence[Mapping[str, Any]]) -> list[str]:
    found: list[str] = []
    for r in records:
        for name in r.get("metrics", {}):
            if name not in found:
                found.append(name)
    preferred = ["test", *plan.base.config.data.eval, "validation"]
    return [s for s in preferred if s in found] + sorted(s for s in found if s not in preferred)


def summarize(plan: BenchPlan, records: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Statistics of the finished runs of a plan (runs of seeds outside the plan are ignored).

    Raises:
        AugregError: the primary metric is in no record; names the metrics there are.
    """
    scale = 100.0 if plan.percent else 1.0
    metric = plan.metric

    def runs_of(h: str) -> dict[int, Mapping[str, Any]]:
        return {s: records[f"{h}-s{s}"] for s in plan.seeds if f"{h}-s{s}" in records}

    every = [r for v in plan.variants for r in runs_of(v.hash).values()]
    used = {r["key"]: r for r in every if "key" in r}  # variants with one config share runs
    sets = _set_order(plan, every)
    if every and not any(metric in m for r in every for m in r["metrics"].values()):
        there = sorted({k for r in every for m in r["metrics"].values() for k in m})
        raise AugregError(
            f"augreg: bench {plan.name}: no run reports the metric {metric!r}; set metric to one "
            f"of {', '.join(there)}"
        )

    def value(record: Mapping[str, Any], eval_set: str, name: str) -> float | None:
        v = record["metrics"].get(eval_set, {}).get(name)
        return None if v is None else scale * float(v)

    def set_rows(
        runs: Mapping[int, Mapping[str, Any]], name: str, is_base: bool
    ) -> dict[str, dict[str, Any]]:
        """Per evaluation set: the metric's mean and interval, and the paired difference."""
        out: dict[str, dict[str, Any]] = {}
        for eval_set in sets:
            values = {s: value(r, eval_set, name) for s, r in runs.items()}
            present = {s: x for s, x in values.items() if x is not None}
            if not present:
                continue
            row: dict[str, Any] = {
                **mean_ci(list(present.values())).to_dict(),
                "per_seed": present,
                "diff": None,
            }
            base_values = {s: value(r, eval_set, name) for s, r in base_runs.items()}
            paired = [s for s in present if base_values.get(s) is not None]
            if not is_base and paired:
                test = paired_test(
                    [present[s] for s in paired],
                    [float(base_values[s]) for s in paired],  # type: ignore[arg-type]
                    paired,
                )
                row["diff"] = test.to_dict()
            out[eval_set] = row
        return out

    base_runs = runs_of(plan.base.hash)
    base_cost = _cost(base_runs)
    variants: list[dict[str, Any]] = []
    first_of: dict[str, str] = {}
    for v in plan.variants:
        runs = runs_of(v.hash)
        entry: dict[str, Any] = {
            "name": v.name,
            "description": v.description,
            "config_hash": v.hash,
            "components": v.components,
            "same_as": first_of.get(v.hash),
            "seeds": sorted(runs),
            "sets": set_rows(runs, metric, v is plan.base),
            "also": {m: set_rows(runs, m, v is plan.base) for m in plan.also_metrics},
        }
        members = {
            name: {
                "sets": set_rows(m_runs, metric, False),
                "also": {m: set_rows(m_runs, m, False) for m in plan.also_metrics},
            }
            for name, m_runs in _inner_model_runs(runs).items()
        }
        if members:  # a soup recipe's runs: each member's figures, paired with the base too
            entry["members"] = members
        first_of.setdefault(v.hash, v.name)
        cost = _cost(runs)
        for key in ("wall_seconds", "seconds_per_step", "peak_memory_mb"):
            cost[f"{key}_ratio"] = _ratio(cost[key], base_cost[key])
        cost["load_differs"] = _load_differs(cost, base_cost)
        entry["cost"] = cost
        variants.append(entry)
    return {
        "name": plan.name,
        "description": plan.description,
        "source": plan.source,
        "metric": metric,
        "also_metrics": list(plan.also_metrics),
        "percent": plan.percent,
        "seeds": plan.seeds,
        "base": plan.base.name,
        "sets": sets,
        "variants": variants,
        "skipped": [{"name": n, "reason": r} for n, r in plan.skipped],
        "runs": len(used),
        "adopted": sum(1 for r in used.values() if r.get("adopted_from")),
    }


def _inner_model_runs(
    runs: Mapping[int, Mapping[str, Any]],
) -> dict[str, dict[int, dict[str, Any]]]:
    """Per model a run trained besides its own, its runs as records with only ``metrics``:
    the members of a soup recipe (the ``soup`` entry the bench adds to the record of a run
    whose config has a soup: members and each member's metrics), and the teacher of a
    teacher stage (``teacher``; ``teacher/<member>`` for a soup teacher's members). Soup
    variants' records, whose members are runs of their own, carry no member metrics and give
    nothing here."""
    out: dict[str, dict[int, dict[str, Any]]] = {}

    def add(prefix: str, soup: Mapping[str, Any], seed: int) -> None:
        for name, metrics in zip(soup.get("members", []), soup.get("metrics") or [], strict=False):
            if metrics:
                out.setdefault(f"{prefix}{name}", {})[seed] = {"metrics": metrics}

    for seed, record in runs.items():
        add("", record.get("soup") or {}, seed)
        teacher = record.get("teacher") or {}
        if teacher.get("metrics"):
            out.setdefault("teacher", {})[seed] = {"metrics": teacher["metrics"]}
        add("teacher/", teacher.get("soup") or {}, seed)
    return out


def _reported(summary: Mapping[str, Any], also: str) -> bool:
    return any(v.get("also", {}).get(also) for v in summary["variants"])


def _notes(summary: Mapping[str, Any]) -> list[str]:
    """Notes under the tables: runs adopted from earlier run folders, ratios under unlike loads,
    ``also_metrics`` no run reports."""
    notes = []
    for name in summary.get("also_metrics", []):
        if not _reported(summary, name):
            notes.append(
                f"No run reports {name} (also_metrics): check the name against the metrics "
                "in a run's metrics.json; runs made before augreg computed it lack it."
            )
    adopted = summary.get("adopted") or 0
    if adopted:
        notes.append(
            f"{adopted} of the {summary['runs']} runs were adopted from finished run folders "
            "(augreg bench --adopt; adopted_from in their records): same config and data (by "
            "content) and same seed, trained before or elsewhere. Their time and memory were "
            "measured there, so the cost ratios may mix machines or loads."
        )
    base = next((v for v in summary["variants"] if v["name"] == summary["base"]), None)
    unlike = [v for v in summary["variants"] if v["cost"].get("load_differs")]
    if unlike and base is not None:
        loads = ", ".join(f"{v['name']} {v['cost']['load_average']:.2f}" for v in unlike)
        notes.append(
            "* time ratio of runs made under another machine load than the base's (median "
            f"1-minute load average: {summary['base']} {base['cost']['load_average']:.2f}; "
            f"{loads}; {_f(base['cost']['cpu_count'], '.0f') or '?'} CPUs): not like for "
            "like. Rerun both on a quiet machine, or compare costs within one process "
            "(benchmarks/step_overhead.py)."
        )
    return notes


#: Time ratios are marked when the variant's and the base's median machine loads differ by
#: more than this share of the CPU count (a load of 2 against 1 on 2 cores halves the speed).
LOAD_TOLERANCE = 0.25


def _cost(runs: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    rs = list(runs.values())
    return {
        key: _median([r[key] for r in rs if r.get(key) is not None])
        for key in (
            "wall_seconds",
            "seconds_per_step",
            "peak_memory_mb",
            "train_examples",
            "extra_passes",
            "steps",
            "load_average",
            "cpu_count",
        )
    }


def _load_differs(cost: Mapping[str, Any], base: Mapping[str, Any]) -> bool | None:
    """Whether the two medians of machine load differ by more than :data:`LOAD_TOLERANCE`.

    None when either side has no recorded load (runs adopted or made before loads were
    recorded, or a platform without a load average).
    """
    a, b = cost.get("load_average"), base.get("load_average")
    cpus = cost.get("cpu_count") or base.get("cpu_count")
    if a is None or b is None or not cpus:
        return None
    return bool(abs(a - b) / cpus > LOAD_TOLERANCE)


def _time_ratio(cost: Mapping[str, Any]) -> str:
    """The time ratio, marked with ``*`` when the runs' machine loads differ (see the notes)."""
    text = _f(cost.get("wall_seconds_ratio"))
    return text + "*" if text and cost.get("load_differs") else text


# -- tables ----------------------------------------------------------------------------------


def _f(x: float | None, spec: str = ".2f") -> str:
    return "" if x is None else format(x, spec)


def _ci(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f"[{low:.2f}, {high:.2f}]"


def _p(p: float | None) -> str:
    """A p-value to 3 decimals; to 4 when 3 would round it onto or across 0.05 (0.0497
    and 0.0503 both read 0.050, on either side of the usual threshold)."""
    if p is None:
        return ""
    if p < 0.001:
        return "<0.001"
    return f"{p:.4f}" if 0.0495 <= p < 0.0505 else f"{p:.3f}"


def _member_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The members of the soup recipes and the teachers among the variants, as rows for
    :func:`_glance`: each model trained alone, named ``<variant> / <member>`` (``<variant> /
    teacher``), with no cost of its own."""
    return [
        {"name": f"{v['name']} / {name}", "cost": {}, **figures}
        for v in summary["variants"]
        for name, figures in (v.get("members") or {}).items()
    ]


def _glance(
    summary: Mapping[str, Any],
    also: str | None = None,
    variants: Sequence[Mapping[str, Any]] | None = None,
    title: str = "at a glance",
) -> tuple[str, list[str], list[list[str]]]:
    """One row per variant: its paired difference to the base on every set, and its cost;
    for the primary metric, or for ``also``, one of the spec's ``also_metrics``."""
    base, n_seeds = summary["base"], len(summary["seeds"])
    head = ["variant", "runs", *(f"{s}: Δ vs {base} (p)" for s in summary["sets"]), "time x"]
    rows = []
    for v in summary["variants"] if variants is None else variants:
        by_set = v["sets"] if also is None else v.get("also", {}).get(also, {})
        runs = min((by_set[s]["n"] for s in summary["sets"] if s in by_set), default=0)
        cells = []
        for eval_set in summary["sets"]:
            row = by_set.get(eval_set)
            d = (row or {}).get("diff") or {}
            if row is None:
                cells.append("")
            elif d.get("mean") is None:  # the base, or no paired seed yet
                cells.append(f"{row['mean']:.2f}" if v["name"] == base else "")
            else:
                p = _p(d.get("p"))
                p = p if not p or p.startswith("<") else f"={p}"
                cells.append(f"{d['mean']:+.2f}" + (f" (p{p})" if p else ""))
        rows.append([v["name"], f"{runs}/{n_seeds}", *cells, _time_ratio(v["cost"])])
    if also is not None:
        return (f"{title}, {also}: paired difference to {base}", head, rows)
    return (f"{title}: paired difference to {base}", head, rows)


def tables(summary: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of each table, shared by the Markdown and HTML summaries."""
    metric, base, n_seeds = summary["metric"], summary["base"], len(summary["seeds"])
    tables = [_glance(summary)]
    tables += [
        _glance(summary, m) for m in summary.get("also_metrics", []) if _reported(summary, m)
    ]
    members = _member_rows(summary)
    if members:  # what each soup member or teacher gives alone, on the same seeds
        title = "soup recipe members and teachers, each alone"
        tables.append(_glance(summary, variants=members, title=title))
        tables += [
            _glance(summary, m, members, title)
            for m in summary.get("also_metrics", [])
            if _reported(summary, m)
        ]
    for eval_set in summary["sets"]:
        head = [
            "variant",
            "runs",
            f"{metric} mean ± std",
            "95% CI",
            f"Δ vs {base}",
            "Δ 95% CI",
            "p (paired t)",
            "time x",
            "memory x",
        ]
        rows = []
        for v in summary["variants"]:
            row = v["sets"].get(eval_set)
            cost = v["cost"]
            if row is None:
                rows.append([v["name"], f"0/{n_seeds}", "no finished run", *[""] * 6])
                continue
            d = row["diff"] or {}
            std = "" if row["std"] is None else f" ± {row['std']:.2f}"
            rows.append(
                [
                    v["name"] + (f" (= {v['same_as']})" if v["same_as"] else ""),
                    f"{row['n']}/{n_seeds}",
                    f"{row['mean']:.2f}{std}",
                    _ci(row["low"], row["high"]),
                    _f(d.get("mean"), "+.2f"),
                    _ci(d.get("low"), d.get("high")),
                    _p(d.get("p")),
                    _time_ratio(cost),
                    _f(cost["peak_memory_mb_ratio"]),
                ]
            )
        tables.append((eval_set, head, rows))
    head = [
        "variant",
        "components",
        "wall s",
        "s/step",
        "peak MB",
        "train examples",
        "extra passes",
        "steps",
    ]
    rows = [
        [
            v["name"],
            ", ".join(v["components"]) or "(none)",
            _f(v["cost"]["wall_seconds"], ".1f"),
            _f(v["cost"]["seconds_per_step"], ".3f"),
            _f(v["cost"]["peak_memory_mb"], ".0f"),
            _f(v["cost"]["train_examples"], ".0f"),
            _f(v["cost"]["extra_passes"], "g"),
            _f(v["cost"]["steps"], ".0f"),
        ]
        for v in summary["variants"]
    ]
    tables.append(("cost (medians over seeds)", head, rows))
    return tables


def _legend(summary: Mapping[str, Any]) -> str:
    unit = " (x 100)" if summary["percent"] else ""
    seeds = summary["seeds"]
    return (
        f"Metric: {summary['metric']}{unit}, over seeds {', '.join(map(str, seeds))}. "
        "Mean ± sample standard deviation, with the 95% t-interval of the mean. "
        f"Δ: the paired difference to {summary['base']} over the seeds both have (same seed: "
        "same training subset, head initialisation, data order and augmentation), its 95% "
        "t-interval and the two-sided paired t-test p-value. time x and memory x: median wall "
        f"time per run and peak memory relative to {summary['base']}."
        + (
            f" Also at a glance: {', '.join(summary['also_metrics'])}{unit}."
            if summary.get("also_metrics")
            else ""
        )
    )


def to_markdown(summary: Mapping[str, Any], plots: Sequence[str] = PLOTS) -> str:
    """The summary as Markdown: an at-a-glance table (each set's paired difference per variant),
    one table per evaluation set, a cost table, the plots."""
    lines = [f"# Bench `{summary['name']}`", ""]
    if summary["description"]:
        lines += [summary["description"], ""]
    lines += [f"Spec: `{summary['source']}`. " + _legend(summary), ""]
    for title, head, rows in tables(summary):
        lines += [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
        lines.append("")
    if _notes(summary):
        lines += ["## Notes", ""]
        lines += [f"- {note}" for note in _notes(summary)]
        lines.append("")
    if summary["skipped"]:
        lines += ["## Skipped variants", ""]
        lines += [f"- {s['name']}: {s['reason']}" for s in summary["skipped"]]
        lines.append("")
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{name}](plots/{name})" for name in plots]
        lines.append("")
    return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:75em}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em}"
    "td{text-align:right}td:first-child,td:nth-child(2){text-align:left}th{background:#f3f3f3}"
    "img{max-width:100%}"
)


def to_html(summary: Mapping[str, Any], plots: Mapping[str, bytes]) -> str:
    """The summary as one self-contained HTML page, the plots embedded as base64 PNG."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>Bench {e(summary["name"])}</title>',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Bench <code>{e(summary['name'])}</code></h1>",
    ]
    if summary["description"]:
        parts.append(f"<p>{e(summary['description'])}</p>")
    parts.append(f"<p>Spec: <code>{e(summary['source'])}</code>. {e(_legend(summary))}</p>")
    for title, head, rows in tables(summary):
        parts.append(f"<h2>{e(title)}</h2><table><tr>")
        parts.append("".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
        for r in rows:
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>")
        parts.append("</table>")
    if _notes(summary):
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li>{e(note)}</li>" for note in _notes(summary)]
        parts.append("</ul>")
    if summary["skipped"]:
        parts.append("<h2>Skipped variants</h2><ul>")
        parts += [f"<li>{e(s['name'])}: {e(s['reason'])}</li>" for s in summary["skipped"]]
        parts.append("</ul>")
    if plots:
        parts.append("<h2>Plots</h2>")
        for name, png in plots.items():
            data = base64.b64encode(png).decode("ascii")
            parts.append(f'<p><img alt="{e(name)}" src="data:image/png;base64,{data}"></p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- plots -----------------------------------------------------------------------------------


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def plot_metric(summary: Mapping[str, Any]) -> bytes:
    """The metric per variant with its 95% interval, one panel per evaluation set."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    sets = summary["sets"] or ["(no runs)"]
    names = [v["name"] for v in summary["variants"]]
    fig = Figure(figsize=(3.6 * len(sets) + 1.6, 0.45 * len(names) + 1.4), layout="constrained")
    axes = fig.subplots(1, len(sets), squeeze=False, sharey=True)[0]
    unit = " (x 100)" if summary["percent"] else ""
    for ax, eval_set in zip(axes, sets, strict=True):
        for y, v in enumerate(reversed(summary["variants"])):
            row = v["sets"].get(eval_set)
            if row is None:
                continue
            color = "black" if v["name"] == summary["base"] else "tab:blue"
            if row["low"] is not None:
                err = [[row["mean"] - row["low"]], [row["high"] - row["mean"]]]
                ax.errorbar(row["mean"], y, xerr=err, fmt="o", color=color, capsize=3)
            else:
                ax.plot(row["mean"], y, "o", color=color)
            if v["name"] == summary["base"]:
                ax.axvline(row["mean"], color="gray", linestyle="--", linewidth=0.8)
        if ax is axes[0]:
            ax.set_yticks(range(len(names)), list(reversed(names)))
            ax.set_ylim(-0.7, len(names) - 0.3)
        ax.set_title(eval_set)
        ax.set_xlabel(f"{summary['metric']}{unit}, mean and 95% CI")
        ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def plot_gain_cost(summary: Mapping[str, Any]) -> bytes:
    """Paired gain over the base against time relative to it, per variant and evaluation set."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.subplots()
    markers = "osD^v<>"
    labelled: set[str] = set()
    for i, eval_set in enumerate(summary["sets"]):
        xs, ys, lo, hi, labels = [], [], [], [], []
        for v in summary["variants"]:
            d = (v["sets"].get(eval_set) or {}).get("diff")
            x = v["cost"]["wall_seconds_ratio"]
            if d is None or x is None:
                continue
            xs.append(x)
            ys.append(d["mean"])
            lo.append(d["mean"] - d["low"] if d["low"] is not None else 0.0)
            hi.append(d["high"] - d["mean"] if d["high"] is not None else 0.0)
            labels.append(v["name"])
        if not xs:
            continue
        ax.errorbar(
            xs,
            ys,
            yerr=[lo, hi],
            fmt=markers[i % len(markers)],
            color=f"C{i}",
            capsize=3,
            label=eval_set,
        )
        for x, y, label in zip(xs, ys, labels, strict=True):
            if label not in labelled:  # one name per variant, at its first set's point
                labelled.add(label)
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axhline(0.0, color="gray", linestyle="--", linewidth=0.8)
    ax.axvline(1.0, color="gray", linestyle=":", linewidth=0.8)
    unit = "points, " if summary["percent"] else ""
    ax.set_xlabel(f"time relative to {summary['base']} (median wall time per run)")
    ax.set_ylabel(f"Δ {summary['metric']} vs {summary['base']} ({unit}95% CI)")
    ax.set_title("gain against cost")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="evaluation set")
    ax.grid(alpha=0.3)
    return _png(fig)


def write_reports(plan: BenchPlan) -> tuple[dict[str, Any], dict[str, Path]]:
    """Summarize the finished runs of ``plan`` and write every report into its bench folder.

    Returns:
        The summary (see :func:`summarize`) and the paths written, by name (``summary.md``,
        ``summary.html``, ``summary.json``, ``metric.png``, ``gain_cost.png``).

    Raises:
        AugregError: matplotlib is missing (names the extra to install), or the metric is unknown.
    """
    from augreg.bench.runner import load_records

    require_matplotlib()
    records, _ = load_records(plan.folder)
    summary = summarize(plan, records)
    plots = {"metric.png": plot_metric(summary), "gain_cost.png": plot_gain_cost(summary)}
    folder = plan.folder
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, png in plots.items():
        paths[name] = folder / "plots" / name
        paths[name].write_bytes(png)
    paths["summary.json"] = folder / "summary.json"
    paths["summary.json"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    paths["summary.md"] = folder / "summary.md"
    paths["summary.md"].write_text(to_markdown(summary, list(plots)), encoding="utf-8")
    paths["summary.html"] = folder / "summary.html"
    paths["summary.html"].write_text(to_html(summary, plots), encoding="utf-8")
    return summary, paths
