"""Accuracy of components against plain fine-tuning, paired over seeds.

A *study* is a base config (an example of ``examples/``) and named variants, each a set of
dotted overrides (``{"regularize": [{"name": "adversarial.fgm"}]}``). Every (variant, seed) run
goes to ``OUT/<study>/<variant>/s<seed>`` and is skipped when its ``metrics.json`` exists, so an
interrupted study resumes and more seeds add only the new runs. The summary gives, per variant
and evaluation set, mean and standard deviation over seeds and the paired difference to the
base variant (mean, std, paired t-test p-value over the seeds both have), and the cost (seconds
per step and wall time relative to the base). It is printed and saved to
``benchmarks/results/quality_<study>.json`` and ``.md``.

Run:  python benchmarks/quality.py adversarial --seeds 1 2 3 4 5 --out /tmp/quality
      python benchmarks/quality.py eda --seeds 1 2 3 4 5 --variants none eda
      python benchmarks/quality.py adversarial --summary-only --out /tmp/quality
      python benchmarks/quality.py consistency --seeds 1 2 3 4 5
      python benchmarks/quality.py multitask --seeds 1 2 3
      python benchmarks/quality.py entity_linking_ner --seeds 1 2 3
      python benchmarks/quality.py distillation --seeds 1 2 3   # trains the teacher first
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
TEACHER = "@teacher"
"""A component option: the study's teacher run folder, trained first when missing
(:func:`teacher_run`: MiniLM fine-tuned on the whole SST-2 training set, 3 epochs)."""
SETS_PREFIX = "@sets_prefix"
"""A variant key (not a config override): the run is single-task, and its evaluation sets are
compared as ``<prefix><set>`` with the multi-task variants' (``test`` -> ``sst2_test``)."""
WORDNET_KB = str(HERE.parent.parent / "shared" / "data" / "kb" / "wordnet_entities.jsonl")
"""The offline example KB (see ../shared/DATA.md), for the entity-linking studies."""
# EDA views for consistency training: one view per draw (n_aug 1), the paper's alpha 0.1.
_EDA_VIEW = {"augmenter": "eda.eda", "augmenter_options": {"n_aug": 1, "alpha": 0.1}}

_SST2_DATA = {
    "train": "../../shared/data/sst2/train.jsonl",
    "test": "../../shared/data/sst2/test.jsonl",
    "eval": {"cr": "../../shared/data/cr/test.jsonl"},
    "train_size": 500,
    "empty_rows": "skip",
}


def _trec_data(train_size: int) -> dict[str, Any]:
    return {
        "train": "../../shared/data/trec/train.jsonl",
        "test": "../../shared/data/trec/test.jsonl",
        "train_size": train_size,
    }


def _single(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A single-task variant of the multi-task example: its tasks replaced by one [data]."""
    return {"tasks": [], "multitask": None, "data": data, SETS_PREFIX: prefix}


def _tasks(trec_size: int, sampling: str, **multitask: Any) -> dict[str, Any]:
    return {
        "tasks": [
            {"name": "sst2", "data": _SST2_DATA},
            {"name": "trec", "data": _trec_data(trec_size)},
        ],
        "multitask": {"sampling": sampling, **multitask},
    }


#: study -> (base config, primary metric, variants). "none" is the base of the comparison.
STUDIES: dict[str, tuple[str, str, dict[str, dict[str, Any]]]] = {
    "adversarial": (
        "sst2_minilm.toml",
        "accuracy",
        {
            "none": {},
            "fgm": {"regularize": [{"name": "adversarial.fgm"}]},
            "pgd": {"regularize": [{"name": "adversarial.pgd"}]},
            # Measured with the step's clean pass kept (the only form before FreeLB learned to
            # replace it); "freelb_paper" is the paper's form, the default now.
            "freelb": {"regularize": [{"name": "adversarial.freelb", "clean_pass": True}]},
            "freelb_paper": {"regularize": [{"name": "adversarial.freelb"}]},
            "smart": {"regularize": [{"name": "adversarial.smart"}]},
            # Rewritten every k epochs against the current model: needs fresh per-epoch views;
            # without the originals beside them an epoch has 500 rows, as the others.
            "word_substitution": {
                "augment": [{"name": "adversarial.word_substitution"}],
                "data.augmentation": "per_epoch",
                "data.keep_original": False,
            },
        },
    ),
    "eda": (
        "sst2_minilm.toml",
        "accuracy",
        {
            "none": {},
            # The paper's setting for 500 examples is alpha 0.05 with 16 copies (17x the
            # training steps); 4 copies is the setting measured with the reference code.
            "eda": {"augment": [{"name": "eda.eda", "alpha": 0.05, "n_aug": 4}]},
            "eda_preset": {"augment": [{"name": "eda.eda", "preset": "auto"}]},
        },
    ),
    "eda_ner": (
        "conll_minilm.toml",
        "f1",
        {
            "none": {},
            "eda": {"augment": [{"name": "eda.eda", "alpha": 0.1, "n_aug": 2}]},
            "mention_replacement": {"augment": [{"name": "eda.mention_replacement", "copies": 2}]},
        },
    ),
    "adapters": (
        "sst2_minilm.toml",
        "accuracy",
        {
            "none": {},
            # LoRA and bottleneck adapters train ~1% of the weights from a zero (or near-zero)
            # update, so they need a larger step than full fine-tuning's 5e-5: Hu et al. use
            # 4e-4 to 5e-4 for RoBERTa (r=8, query/value); Houlsby et al. 1e-4 to 1e-3. 5e-4
            # fits both over 5 epochs of 500 examples (160 steps).
            "lora": {
                "adapters": [{"name": "adapters.lora", "r": 8}],
                "train.learning_rate": 5e-4,
            },
            # LoRA on every linear layer of the encoder (Dettmers et al. 2023 find all of them
            # needed to match full fine-tuning) at 1e-3, a common rate for small encoders.
            "lora_all": {
                "adapters": [
                    {
                        "name": "adapters.lora",
                        "r": 8,
                        "target_modules": [
                            "query",
                            "key",
                            "value",
                            "attention.output.dense",
                            "intermediate.dense",
                            "output.dense",
                        ],
                    }
                ],
                "train.learning_rate": 1e-3,
            },
            "bottleneck": {
                "adapters": [{"name": "adapters.bottleneck"}],
                "train.learning_rate": 5e-4,
            },
            # Houlsby et al. search 1e-4 to 1e-3; the top of that range for 160 steps.
            "bottleneck_1e3": {
                "adapters": [{"name": "adapters.bottleneck"}],
                "train.learning_rate": 1e-3,
            },
            # LP-FT keeps full fine-tuning's rate (Kumar et al. fine-tune at the usual rate
            # after the probe); the probe (first 2 of 5 epochs, head only) runs at 20x, 1e-3,
            # since a fresh head alone at 5e-5 barely moves in 64 steps.
            "lp_ft": {
                "adapters": [{"name": "adapters.lp_ft", "switch": 0.4, "probe_lr_scale": 20}],
            },
        },
    ),
    # Semi-supervised: the 500 labelled examples plus the other 6,420 SST-2 training sentences
    # as unlabelled text (3 drawn per labelled example). UDA as in Xie et al. 2020 (TSA on the
    # labelled loss, sharpening 0.4, mask 0.8), self-training as FixMatch (threshold 0.95)
    # with FlexMatch thresholds.
    # Auxiliary objectives beside cross-entropy at their documented defaults (Gunel et al.
    # 2021 weigh supervised contrastive at 0.1 to 0.9; SimCSE and MLM as regularizers).
    "objectives": (
        "sst2_minilm.toml",
        "accuracy",
        {
            "none": {},
            "supervised_contrastive": {
                "objectives": [
                    {"name": "core.cross_entropy"},
                    {"name": "objectives.supervised_contrastive"},
                ]
            },
            "simcse": {
                "objectives": [{"name": "core.cross_entropy"}, {"name": "objectives.simcse"}]
            },
            # MiniLM's checkpoint has no masked-LM head: a new one, trained at 20x the rate
            "mlm": {"objectives": [{"name": "core.cross_entropy"}, {"name": "objectives.mlm"}]},
            # the new head at the pipeline's rate (before lr_scale)
            "mlm_lr1": {
                "objectives": [
                    {"name": "core.cross_entropy"},
                    {"name": "objectives.mlm", "lr_scale": 1.0},
                ]
            },
        },
    ),
    "consistency": (
        "sst2_minilm.toml",
        "accuracy",
        {
            "none": {},
            "uda": {
                "data.unlabelled": "train:rest",
                "data.unlabelled_ratio": 3,
                "objectives": [{"name": "consistency.tsa", "schedule": "linear"}],
                "regularize": [{"name": "consistency.uda", "warmup_steps": 20, **_EDA_VIEW}],
            },
            "self_training": {
                "data.unlabelled": "train:rest",
                "data.unlabelled_ratio": 3,
                "regularize": [{"name": "consistency.self_training", **_EDA_VIEW}],
            },
        },
    ),
    # Knowledge injection with the WordNet KB (7,730 entities with ambiguous names): ERNIE-style
    # fusion and typed markers on CoNLL-2003 NER (1,000 sentences), K-BERT-style descriptions
    # on SST-2-500. Linking at its defaults (alias matching, TF-IDF disambiguation).
    "entity_linking_ner": (
        "conll_minilm.toml",
        "f1",
        {
            "none": {},
            "fusion": {"inject": [{"name": "entity_linking.fusion", "kb": WORDNET_KB}]},
            # the gate and projection at the pipeline's learning rate (before lr_scale)
            "fusion_lr1": {
                "inject": [{"name": "entity_linking.fusion", "kb": WORDNET_KB, "lr_scale": 1.0}]
            },
            "markers": {"inject": [{"name": "entity_linking.markers", "kb": WORDNET_KB}]},
        },
    ),
    "entity_linking_sst2": (
        "sst2_minilm.toml",
        "accuracy",
        {
            "none": {},
            "describe": {"inject": [{"name": "entity_linking.describe", "kb": WORDNET_KB}]},
        },
    ),
    # Distillation (Hinton et al. 2015): a MiniLM teacher fine-tuned on all 6,920 SST-2
    # training sentences; the student learns from the 500 labelled examples plus the
    # teacher's soft labels on the other 6,420 (labels dropped, 3 per labelled example).
    "distillation": (
        "sst2_minilm.toml",
        "accuracy",
        {
            "none": {},
            "distillation": {
                "data.unlabelled": "train:rest",
                "data.unlabelled_ratio": 3,
                "objectives": [
                    {"name": "objectives.distillation", "teacher": TEACHER, "unlabeled": True}
                ],
            },
        },
    ),
    # Multi-task (MT-DNN): SST-2 500 + TREC 500 on a shared MiniLM encoder, one head each,
    # against each task alone; sampling proportional vs temperature (T = 2) when TREC is 4x
    # larger; the tasks' losses combined by sum, uncertainty weighting or PCGrad (two batches
    # per step, so that a step holds both tasks' gradients). Sets: sst2_test, sst2_cr, trec_test.
    "multitask": (
        "multitask_sst2_trec.toml",
        "accuracy",
        {
            "none": _single(_SST2_DATA, "sst2_"),
            "trec_alone": _single(_trec_data(500), "trec_"),
            "proportional": _tasks(500, "proportional"),
            "proportional_trec2000": _tasks(2000, "proportional"),
            "temperature_trec2000": _tasks(2000, "temperature", temperature=2.0),
            "uncertainty": {
                **_tasks(500, "proportional"),
                "train.combiner": "objectives.uncertainty",
            },
            "pcgrad": {
                **_tasks(500, "proportional", batches_per_step=2),
                "train.combiner": "objectives.pcgrad",
            },
        },
    ),
}


def teacher_run(config: Path, folder: Path) -> Path:
    """The distillation study's teacher: ``config`` on the whole training set (seed 0, 3
    epochs, weights saved) in ``folder``, trained once and reused."""
    import augreg

    if (folder / "metrics.json").exists():
        return folder
    overrides = {
        "data.train_size": None,
        "train.epochs": 3,
        "train.seed": 0,
        "train.run_name": folder.name,
        "train.save_model": True,
    }
    return augreg.Pipeline.from_config(config, overrides=overrides).run(folder.parent).run_dir


def _with_teacher(specs: Any, teacher: Path) -> Any:
    if not isinstance(specs, list):
        return specs
    return [
        {**c, "teacher": str(teacher)} if isinstance(c, dict) and c.get("teacher") == TEACHER else c
        for c in specs
    ]


def run_one(config: Path, overrides: dict[str, Any], seed: int, folder: Path) -> Path:
    import augreg

    flat = {"train.seed": seed, "train.run_name": folder.name, "train.save_model": False}
    flat.update({k: v for k, v in overrides.items() if k != SETS_PREFIX})
    if any(_with_teacher(v, Path()) != v for v in flat.values()):
        teacher = teacher_run(config, folder.parent.parent / "_teacher")
        flat = {k: _with_teacher(v, teacher) for k, v in flat.items()}
    pipeline = augreg.Pipeline.from_config(config, overrides=flat)
    return pipeline.run(folder.parent).run_dir


def t_test_p(diffs: list[float]) -> float | None:
    """Two-sided paired t-test p-value of the mean of ``diffs`` against 0."""
    n = len(diffs)
    if n < 2:
        return None
    sd = statistics.stdev(diffs)
    if sd == 0:
        return 0.0 if statistics.mean(diffs) != 0 else 1.0
    t = statistics.mean(diffs) / (sd / math.sqrt(n))
    try:
        from scipy import stats

        return float(2 * stats.t.sf(abs(t), n - 1))
    except ImportError:  # normal approximation
        return math.erfc(abs(t) / math.sqrt(2))


def summarize(study: str, out: Path) -> dict[str, Any]:
    config_name, metric, variants = STUDIES[study]
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for variant, overrides in variants.items():
        prefix = overrides.get(SETS_PREFIX, "")
        for metrics_file in sorted((out / study / variant).glob("s*/metrics.json")):
            seed = int(metrics_file.parent.name[1:])
            run = json.loads(metrics_file.read_text())
            run["eval"] = {prefix + k: v for k, v in run["eval"].items()}
            runs.setdefault(variant, {})[seed] = run
    base = runs.get("none", {})
    # Each set is compared with the first variant that has it: "none" for the main task, the
    # single-task run of another task for that task's sets (multitask: trec_alone).
    set_base: dict[str, str] = {}
    for variant, by_seed in runs.items():
        for run in by_seed.values():
            for name in run["eval"]:
                set_base.setdefault(name, variant)
    table: dict[str, Any] = {}
    for variant, by_seed in runs.items():
        seeds = sorted(by_seed)
        entry: dict[str, Any] = {"seeds": seeds, "sets": {}}
        sets = sorted(next(iter(by_seed.values()))["eval"])
        for name in sets:
            values = [100 * by_seed[s]["eval"][name][metric] for s in seeds]
            row: dict[str, Any] = {
                "mean": round(statistics.mean(values), 2),
                "std": round(statistics.stdev(values), 2) if len(values) > 1 else None,
                "per_seed": [round(v, 2) for v in values],
            }
            ref = runs[set_base[name]]
            paired = [s for s in seeds if s in ref and name in ref[s]["eval"]]
            if variant != set_base[name] and paired:
                diffs = [
                    100 * (by_seed[s]["eval"][name][metric] - ref[s]["eval"][name][metric])
                    for s in paired
                ]
                p = t_test_p(diffs)
                row["diff"] = {
                    "mean": round(statistics.mean(diffs), 2),
                    "std": round(statistics.stdev(diffs), 2) if len(diffs) > 1 else None,
                    "p": None if p is None else round(p, 3),
                    "seeds": paired,
                }
            entry["sets"][name] = row
        sps = statistics.median(by_seed[s]["train"]["seconds_per_step"] for s in seeds)
        wall = statistics.median(by_seed[s]["train"]["wall_seconds"] for s in seeds)
        entry["seconds_per_step"] = round(sps, 4)
        entry["wall_seconds"] = round(wall, 1)
        entry["train_examples"] = by_seed[seeds[0]]["train"]["train_examples"]
        entry["steps"] = by_seed[seeds[0]]["train"]["steps"]
        if base:
            b_sps = statistics.median(base[s]["train"]["seconds_per_step"] for s in base)
            b_wall = statistics.median(base[s]["train"]["wall_seconds"] for s in base)
            entry["step_cost"] = round(sps / b_sps, 2)
            entry["wall_cost"] = round(wall / b_wall, 2)
        table[variant] = entry
    return {
        "study": study,
        "config": f"examples/{config_name}",
        "metric": metric,
        "variants": table,
    }


def to_markdown(summary: dict[str, Any]) -> str:
    metric = summary["metric"]
    variants = summary["variants"]
    if not variants:
        return "no finished runs\n"
    sets = sorted({name for e in variants.values() for name in e["sets"]})
    head = ["variant", "seeds"]
    for name in sets:
        head += [f"{name} {metric}", f"{name} diff (p)"]
    head += ["s/step x", "wall x", "train ex."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, e in variants.items():
        cells = [variant, str(len(e["seeds"]))]
        for name in sets:
            row = e["sets"].get(name)
            if row is None:  # a single-task run of another task
                cells += ["", ""]
                continue
            std = "" if row.get("std") is None else f" ± {row['std']:.2f}"
            cells.append(f"{row['mean']:.2f}{std}")
            d = row.get("diff")
            if d:
                dstd = "" if d["std"] is None else f" ± {d['std']:.2f}"
                p = "" if d["p"] is None else f" (p={d['p']:.2f})"
                cells.append(f"{d['mean']:+.2f}{dstd}{p}")
            else:
                cells.append("-")
        cells += [
            f"{e.get('step_cost', 1.0):.2f}",
            f"{e.get('wall_cost', 1.0):.2f}",
            str(e["train_examples"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"Study `{summary['study']}` on `{summary['config']}`: mean ± std over seeds, paired "
        "difference to `none` (mean ± std, paired t-test p; a set `none` lacks is compared with "
        "the first variant that has it, e.g. `trec_alone`), cost relative to `none` "
        "(median seconds per step and wall time per run).\n\n" + "\n".join(lines) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--variants", nargs="+", help="Run only these variants.")
    parser.add_argument("--out", type=Path, default=Path("runs/quality"))
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()

    config_name, _, variants = STUDIES[args.study]
    chosen = args.variants or list(variants)
    unknown = sorted(set(chosen) - set(variants))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {sorted(variants)}")
    if not args.summary_only:
        # Seed-major order: a study stopped early still has complete pairs.
        for seed in args.seeds:
            for variant in chosen:
                folder = args.out.resolve() / args.study / variant / f"s{seed}"
                if (folder / "metrics.json").exists():
                    continue
                print(f"== {args.study}/{variant} seed {seed}", flush=True)
                run_one(EXAMPLES / config_name, variants[variant], seed, folder)
                summary = summarize(args.study, args.out.resolve())
    summary = summarize(args.study, args.out.resolve())
    text = to_markdown(summary)
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"quality_{args.study}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.results / f"quality_{args.study}.md").write_text(text)


if __name__ == "__main__":
    main()
