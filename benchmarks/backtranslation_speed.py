"""Back-translation speed: backtranslation.round_trip (batched, cached) against nlpaug.

One process, one tiny Marian model pair (the trained toy model of
``augreg_backtranslation.tiny``, used both ways: no real translation model can be downloaded
here), the first ``--n`` SST-2 training sentences. Sentences per second of a full round trip:

* ``ours``: ``RoundTrip.augment_batch`` over the sentences, greedy decoding, ``batch_size``
  32, an empty translation cache (cold);
* ``ours, ctranslate2``: the same with ``backend = "ctranslate2"`` (``compute_type``
  default: the model's float32 weights) and ``int8``, cold translation cache, as many
  CTranslate2 threads as torch's one. The one-time conversion of the model is timed apart
  and not counted in sentences/s (it is cached once per model and compute type);
* ``nlpaug``: ``nlpaug.augmenter.word.BackTranslationAug`` with the same model folders,
  ``batch_size`` 32 and the same length limit, on the same list (its batched path); when it
  cannot run on the installed transformers, the row says so and the comparison falls back
  to ``loop``;
* ``loop``: a plain one-sentence-at-a-time ``model.generate`` loop, both directions;
* ``ours, warm cache``: a second ``RoundTrip`` on the same cache (what a second run costs).

Runs alternate (best of ``--repeats``) so that all meet the same load from other jobs; torch
uses one thread for all (the machine is shared). Target: ours >= 8x nlpaug (the best of our
cold runs counts).

Run:  python benchmarks/backtranslation_speed.py [--n 512] [--repeats 2]
Writes benchmarks/results/backtranslation_speed.json and .md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SST2 = ROOT.parent / "shared" / "data" / "sst2" / "train.jsonl"
MAX_NEW = 64


def sentences(n: int) -> list[str]:
    """The first ``n`` SST-2 training sentences (toy sentences when SST-2 is absent)."""
    if SST2.is_file():
        lines = SST2.read_text(encoding="utf-8").splitlines()[:n]
        return [json.loads(line)["text"] for line in lines]
    from augreg_backtranslation.tiny import toy_corpus

    return toy_corpus(n)


def run_ours(
    model: str, cache: Path, texts: list[str], **options: Any
) -> tuple[float, Any, float, list[list[Any]]]:
    """Seconds of ``augment_batch``, counts, seconds of model conversion, outputs."""
    import augreg
    from augreg_backtranslation.round_trip import RoundTrip

    aug = RoundTrip(
        pivots=[{"forward": model, "back": model}],
        num_beams=1,
        batch_size=32,
        max_new_tokens=MAX_NEW,
        length_ratio=None,
        drop_identical=False,
        progress=False,
        **options,
    )
    aug.setup(augreg.SetupContext(cache_dir=cache))
    translators = {id(t): t for pair in aug._steps or [] for t in pair}.values()
    converting = sum(getattr(t, "convert_seconds", 0.0) for t in translators)
    examples = [{"text": t, "label": 0, "augreg_id": str(i)} for i, t in enumerate(texts)]
    rngs = [random.Random(i) for i in range(len(texts))]
    t0 = time.perf_counter()
    out = aug.augment_batch(examples, rngs)
    return time.perf_counter() - t0, aug.counts(), converting, out


def run_nlpaug(model: str, texts: list[str]) -> float:
    import nlpaug.augmenter.word as naw

    aug = naw.BackTranslationAug(
        from_model_name=model, to_model_name=model, device="cpu", batch_size=32,
        max_length=MAX_NEW + 1,
    )  # fmt: skip
    t0 = time.perf_counter()
    out = aug.augment(texts)
    elapsed = time.perf_counter() - t0
    if len(out) != len(texts):
        raise RuntimeError(f"nlpaug returned {len(out)} outputs for {len(texts)} texts")
    return elapsed


def run_loop(model: str, texts: list[str]) -> float:
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    net = AutoModelForSeq2SeqLM.from_pretrained(model).eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for text in texts:
            mid = tok.decode(
                net.generate(**tok([text], return_tensors="pt"), max_new_tokens=MAX_NEW)[0],
                skip_special_tokens=True,
            )
            net.generate(**tok([mid], return_tensors="pt"), max_new_tokens=MAX_NEW)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="sentences (SST-2 train)")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs each")
    args = parser.parse_args()

    import torch

    from augreg_backtranslation.tiny import build_tiny_model

    torch.set_num_threads(1)
    texts = sentences(args.n)
    work = Path(tempfile.mkdtemp(prefix="augreg-bt-bench-"))
    model = str(build_tiny_model(work / "model", "trained"))
    keys = ("ours", "ct2", "ct2_int8", "nlpaug", "loop", "warm")
    times: dict[str, list[float]] = {k: [] for k in keys}
    converting: dict[str, list[float]] = {"ct2": [], "ct2_int8": []}
    nlpaug_error = ""
    counts: dict[str, int] = {}
    same_as_transformers = True
    for r in range(args.repeats):
        cache = work / f"cache{r}"
        elapsed, counts, _, reference = run_ours(model, cache, texts)
        times["ours"].append(elapsed)
        times["warm"].append(run_ours(model, cache, texts)[0])
        for key, compute_type in (("ct2", "default"), ("ct2_int8", "int8")):
            # a fresh folder: cold translation cache, and the conversion is timed apart
            elapsed, _, seconds, out = run_ours(
                model, work / f"{key}{r}", texts, backend="ctranslate2", compute_type=compute_type
            )
            times[key].append(elapsed)
            converting[key].append(seconds)
            if key == "ct2":
                same_as_transformers = same_as_transformers and out == reference
        if not nlpaug_error:
            try:
                times["nlpaug"].append(run_nlpaug(model, texts))
            except Exception as exc:  # report why, and compare with the loop instead
                nlpaug_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        times["loop"].append(run_loop(model, texts))
    best = {k: min(v) for k, v in times.items() if v}
    rate = {k: len(texts) / v for k, v in best.items()}
    baseline = "nlpaug" if "nlpaug" in best else "loop"
    fastest = max(("ours", "ct2", "ct2_int8"), key=lambda k: rate[k])
    result = {
        "sentences": len(texts),
        "data": "SST-2 train (first n)" if SST2.is_file() else "toy sentences",
        "model": "tiny trained Marian (d_model 64, 2+2 layers), same folder both ways",
        "decoding": f"greedy, max_new_tokens {MAX_NEW}, batch_size 32, torch 1 thread",
        "seconds_best": {k: round(v, 3) for k, v in best.items()},
        "sentences_per_second": {k: round(v, 1) for k, v in rate.items()},
        "baseline": baseline,
        "nlpaug_error": nlpaug_error,
        "speedup_vs_baseline": round(rate["ours"] / rate[baseline], 2),
        "ctranslate2_speedup_vs_baseline": round(rate["ct2"] / rate[baseline], 2),
        "ctranslate2_int8_speedup_vs_baseline": round(rate["ct2_int8"] / rate[baseline], 2),
        "best_cold_speedup_vs_baseline": round(rate[fastest] / rate[baseline], 2),
        "conversion_seconds_best": {k: round(min(v), 3) for k, v in converting.items()},
        "ctranslate2_output_equals_transformers": same_as_transformers,
        "speedup_vs_loop": round(rate["ours"] / rate["loop"], 2),
        "warm_cache_speedup_vs_cold": round(rate["warm"] / rate["ours"], 1),
        "target": "ours >= 8x nlpaug (or the loop when nlpaug cannot run)",
        "our_counts_cold": counts,
        "repeats": args.repeats,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ctranslate2": __import__("ctranslate2").__version__,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "backtranslation_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    names = {
        "ours": "ours (batched, cold cache)",
        "ct2": "ours, backend ctranslate2 (float32, cold cache)",
        "ct2_int8": "ours, backend ctranslate2 (int8, cold cache)",
        "warm": "ours (second run, warm cache)",
        "nlpaug": "nlpaug BackTranslationAug (batched)",
        "loop": "one-sentence-at-a-time generate loop",
    }
    lines = [
        "# Back-translation speed",
        "",
        f"{len(texts)} sentences ({result['data']}), {result['model']}; {result['decoding']}. "
        f"Best of {args.repeats}. Written by benchmarks/backtranslation_speed.py.",
        "",
        "| run | seconds | sentences/s | speed relative to ours (cold) |",
        "|---|---|---|---|",
    ]
    for key in ("ours", "ct2", "ct2_int8", "warm", "nlpaug", "loop"):
        if key in best:
            lines.append(
                f"| {names[key]} | {best[key]:.2f} | {rate[key]:.1f} | "
                f"{rate[key] / rate['ours']:.3g}x |"
            )
    if nlpaug_error:
        lines += ["", f"nlpaug did not run on the installed transformers: `{nlpaug_error}`."]
    conv = result["conversion_seconds_best"]
    best_ratio = result["best_cold_speedup_vs_baseline"]
    verdict = "met" if best_ratio >= 8 else f"not met: {best_ratio / 8:.0%} of the target"
    lines += [
        "",
        f"ctranslate2 rows exclude the one-time model conversion ({conv['ct2']:.2f} s float32, "
        f"{conv['ct2_int8']:.2f} s int8, cached once per model and compute type). Greedy "
        "float32 output of the ctranslate2 backend equals the transformers backend's: "
        f"{'yes' if same_as_transformers else 'NO'}.",
        "",
        f"Target ours >= 8x {baseline}: {best_ratio}x cold with {names[fastest]} ({verdict}); "
        f"transformers backend {result['speedup_vs_baseline']}x, ctranslate2 float32 "
        f"{result['ctranslate2_speedup_vs_baseline']}x, int8 "
        f"{result['ctranslate2_int8_speedup_vs_baseline']}x; "
        f"{round(rate['warm'] / rate[baseline])}x with a warm cache; "
        f"{result['speedup_vs_loop']}x the one-at-a-time loop (transformers backend).",
    ]
    (RESULTS / "backtranslation_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
