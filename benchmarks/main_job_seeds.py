"""Accuracy of the main job over seeds: examples/sst2_minilm.toml (plain fine-tuning).

Runs ``augreg run examples/sst2_minilm.toml --seed S`` for each seed (or collects finished run
folders with ``--collect DIR``) and writes mean, standard deviation and per-seed figures of
SST-2 test and CR accuracy, plus time per step and wall time, to
benchmarks/results/sst2_minilm_plain.json. Reference: 82.7 (std 1.0) on SST-2 test and 80.5
(std 1.4) on CR over 5 seeds.

Run:  python benchmarks/main_job_seeds.py --seeds 1 2 3
      python benchmarks/main_job_seeds.py --collect /tmp/main-runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "examples" / "sst2_minilm.toml"


def run_seeds(seeds: list[int], output: Path) -> list[Path]:
    import augreg

    folders = []
    for seed in seeds:
        result = augreg.Pipeline.from_config(CONFIG, overrides={"train.seed": seed}).run(output)
        folders.append(result.run_dir)
    return folders


def summarize(folders: list[Path]) -> dict[str, Any]:
    runs = []
    for folder in folders:
        data = json.loads((folder / "metrics.json").read_text())
        config = (folder / "config.yaml").read_text()
        seed = int(
            next(x for x in config.splitlines() if x.strip().startswith("seed:")).split()[-1]
        )
        runs.append(
            {
                "seed": seed,
                "sst2_test": data["eval"]["test"]["accuracy"],
                "cr": data["eval"]["cr"]["accuracy"],
                "seconds_per_step": data["train"]["seconds_per_step"],
                "wall_seconds": data["train"]["wall_seconds"],
                "peak_memory_mb": data["train"]["peak_memory_mb"],
            }
        )
    runs.sort(key=lambda r: r["seed"])

    def stats(key: str) -> dict[str, float]:
        values = [100 * r[key] for r in runs]
        return {
            "mean": round(statistics.mean(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
        }

    return {
        "benchmark": "main job, plain fine-tuning (examples/sst2_minilm.toml)",
        "seeds": [r["seed"] for r in runs],
        "sst2_test_accuracy": stats("sst2_test"),
        "cr_accuracy": stats("cr"),
        "reference": {"sst2_test": {"mean": 82.7, "std": 1.0}, "cr": {"mean": 80.5, "std": 1.4}},
        "runs": runs,
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--collect", type=Path, help="Summarize run folders found here.")
    parser.add_argument("--runs", type=Path, default=HERE.parent / "runs")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "sst2_minilm_plain.json")
    args = parser.parse_args()
    if args.collect:
        folders = sorted(p.parent for p in args.collect.glob("*/metrics.json"))
    else:
        folders = run_seeds(args.seeds, args.runs)
    summary = summarize(folders)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
