"""What adversarial.word_substitution promises: the attack lowers the true-label probability of
the model it is given, within the change cap, with same-POS WordNet synonyms only, never
touching stopwords; deterministic; refreshed on its schedule in training."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import augreg
from augreg.testing import model_context, save_tiny_model, tiny_model, tiny_tokenizer
from augreg_adversarial.word_substitution import WordSubstitution
from augreg_eda._seq import Seq
from augreg_eda.lexicon import pos_tagger, wordnet_pos

SEQ = "sequence_classification"


def build(model: Any, **options: Any) -> WordSubstitution:
    opts = {"start_epoch": 0, "attack_fraction": 1.0, **options}
    aug = WordSubstitution(opts)
    aug.setup(augreg.SetupContext(task=SEQ))
    aug.use_model(model_context(SEQ, model, tiny_tokenizer()))
    return aug


def true_prob(model: Any, text: str, label: int) -> float:
    ctx = model_context(SEQ, model, tiny_tokenizer())
    return float(ctx.logits([{"text": text, "label": label}]).softmax(-1)[0, label])


def test_attack_lowers_the_true_label_probability(
    trained: Any, sentiment: list[dict[str, Any]]
) -> None:
    aug = build(trained, max_change_fraction=0.5, max_candidates=10)
    statuses = []
    for ex in sentiment:
        result = aug.attack(ex, random.Random(0))
        statuses.append(result.status)
        assert result.p_final <= result.p_original  # greedy never raises it
        # the reported probability is the model's on the written text
        assert result.p_final == pytest.approx(
            true_prob(trained, result.text, ex["label"]), abs=1e-5
        )
        if result.changed:
            assert result.p_final < result.p_original
            assert result.text != ex["text"]
            view = aug.augment(ex, random.Random(0))
            assert view == [{**ex, "text": result.text}]
        if result.success:  # the prediction flipped
            assert true_prob(trained, result.text, ex["label"]) < 0.5
    assert statuses.count("success") + statuses.count("perturbed") >= len(sentiment) // 2
    assert "success" in statuses, statuses


def test_keep_successful_writes_only_flipped_views(
    trained: Any, sentiment: list[dict[str, Any]]
) -> None:
    aug = build(trained, max_change_fraction=0.5, keep="successful")
    written = 0
    for ex in sentiment:
        result = aug.attack(ex, random.Random(0))
        views = aug.augment(ex, random.Random(0))
        assert (views != []) == result.success
        for view in views:
            written += 1
            assert true_prob(trained, view["text"], ex["label"]) < 0.5
            assert view["label"] == ex["label"] and view["augreg_id"] == ex["augreg_id"]
    assert written


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.34, 1.0])
def test_at_most_the_allowed_fraction_of_words_changes(
    trained: Any, sentiment: list[dict[str, Any]], fraction: float
) -> None:
    aug = build(trained, max_change_fraction=fraction, keep="perturbed")
    for ex in sentiment:
        words = ex["text"].split()
        cap = math.floor(fraction * len(words))
        result = aug.attack(ex, random.Random(0))
        out = result.text.split()
        assert len(out) == len(words)  # one word for one word
        differ = sum(a != b for a, b in zip(words, out, strict=True))
        assert differ == len(result.changed) <= cap
        if cap == 0:
            assert result.status == "too_short" and aug.augment(ex, random.Random(0)) == []


def test_only_same_pos_wordnet_synonyms_and_never_stopwords(
    trained: Any, sentiment: list[dict[str, Any]], lexicon: Any
) -> None:
    aug = build(trained, max_change_fraction=1.0, max_candidates=20, keep="perturbed")
    tagger = pos_tagger()
    changed = 0
    for ex in sentiment:
        words = ex["text"].split()
        tags = [t for _, t in tagger.tag(words)]
        result = aug.attack(ex, random.Random(0))
        out = result.text.split()
        new_tags = [t for _, t in tagger.tag(out)]
        for i, (old, new) in enumerate(zip(words, out, strict=True)):
            if old == new:
                continue
            changed += 1
            assert not lexicon.is_stopword(old), f"stopword {old!r} changed"
            assert len(old) >= 3, f"short word {old!r} changed"
            pos = wordnet_pos(tags[i])
            assert pos is not None, f"{old!r} ({tags[i]}) has no WordNet POS"
            assert new in lexicon.sense_synonyms(old, pos), (
                f"{new!r} is no {pos} synonym of {old!r}"
            )
            assert " " not in new and not lexicon.is_stopword(new)
            assert new_tags[i] == tags[i], f"{old!r}->{new!r}: tag {tags[i]} became {new_tags[i]}"
    assert changed, "no word was changed at all"


def test_casing_and_punctuation_are_kept(trained: Any) -> None:
    aug = build(trained, max_change_fraction=1.0, keep="perturbed")
    ex = {"text": "The  Movie was great, and the story was Wonderful!", "label": 1}
    result = aug.attack(ex, random.Random(0))
    assert result.changed
    original, out = Seq.from_text(ex["text"]), Seq.from_text(result.text)
    assert out.gaps == original.gaps  # the double space is kept
    for i in result.changed:
        a, b = original.toks[i], out.toks[i]
        assert a[0].isupper() == b[0].isupper()
        assert a.endswith(("!", ",")) == b.endswith(("!", ","))


def test_misclassified_and_unsampled_examples_are_not_attacked(trained: Any) -> None:
    aug = build(trained)
    wrong = {"text": "the movie was great and the story was wonderful", "label": 0}
    assert aug.attack(wrong, random.Random(0)).status == "misclassified"
    assert aug.augment(wrong, random.Random(0)) == []
    half = build(trained, attack_fraction=0.5)
    ex = {"text": "the movie was great and the story was wonderful", "label": 1}
    seeds = range(40)
    sampled = [half.attack(ex, random.Random(s)).status != "not_sampled" for s in seeds]
    assert 5 < sum(sampled) < 35
    # the rng only decides the sampling: a sampled attack does not depend on the seed
    texts = {
        half.attack(ex, random.Random(s)).text for s, on in zip(seeds, sampled, strict=True) if on
    }
    assert len(texts) == 1


def test_deterministic_for_one_model_and_seed(
    trained: Any, sentiment: list[dict[str, Any]]
) -> None:
    first = build(trained, attack_fraction=0.7, keep="perturbed")
    twin = tiny_model(seed=99, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    twin.load_state_dict(trained.state_dict())
    second = build(twin, attack_fraction=0.7, keep="perturbed")
    rngs = lambda: [random.Random(i) for i in range(len(sentiment))]  # noqa: E731
    a = first.augment_batch([dict(e) for e in sentiment], rngs())
    random.seed(1234)
    torch.manual_seed(1234)
    b = second.augment_batch([dict(e) for e in sentiment], rngs())
    assert a == b and any(a)
    # another model, other views
    other = build(tiny_model(seed=5), attack_fraction=0.7, keep="perturbed")
    assert other.augment_batch([dict(e) for e in sentiment], rngs()) != a


def test_options_are_validated_with_the_field_named() -> None:
    for bad, field in [
        ({"copies": 2}, "copies"),
        ({"max_change_fraction": 0}, "max_change_fraction"),
        ({"max_candidates": 0}, "max_candidates"),
        ({"refresh_every": 0}, "refresh_every"),
        ({"attack_fraction": 1.5}, "attack_fraction"),
        ({"keep": "all"}, "keep"),
        ({"batch_size": 0}, "batch_size"),
    ]:
        with pytest.raises(augreg.OptionsError, match=field):
            WordSubstitution(bad)


def test_refresh_schedule() -> None:
    aug = WordSubstitution(start_epoch=1, refresh_every=2)
    assert [aug.refresh_epoch(e) for e in range(7)] == [None, 1, 1, 3, 3, 5, 5]
    every = WordSubstitution(start_epoch=0, refresh_every=1)
    assert [every.refresh_epoch(e) for e in range(3)] == [0, 1, 2]


def test_sequence_classification_only() -> None:
    aug = WordSubstitution()
    with pytest.raises(augreg.AugregError, match="sequence classification only"):
        aug.setup(augreg.SetupContext(task="token_classification"))
    with pytest.raises(augreg.ConfigError, match="does not support token_classification"):
        augreg.Pipeline(
            model="unused",
            task="token_classification",
            data={"train": str(Path(__file__)), "augmentation": "per_epoch"},
            augment=["adversarial.word_substitution"],
        )


# -- in training -----------------------------------------------------------------------------------


def test_pipeline_refreshes_on_schedule(tmp_path: Path, sentiment: list[dict[str, Any]]) -> None:
    model_dir = save_tiny_model(tmp_path / "tiny")
    train = tmp_path / "train.jsonl"
    train.write_text(
        "".join(json.dumps({"text": e["text"], "label": e["label"]}) + "\n" for e in sentiment)
    )
    pipe = augreg.Pipeline(
        model={"name": str(model_dir), "max_length": 32},
        data={"train": str(train), "augmentation": "per_epoch", "keep_original": False},
        augment=[
            {
                "name": "adversarial.word_substitution",
                "start_epoch": 1,
                "refresh_every": 2,
                "attack_fraction": 1.0,
                "max_change_fraction": 0.5,
            }
        ],
        train={
            "epochs": 4,
            "batch_size": 4,
            "learning_rate": 3e-3,
            "output_dir": str(tmp_path / "runs"),
            "progress": False,
            "eval_strategy": "no",
            "save_model": False,
        },
    )
    result = pipe.run()
    assert result.train["train_examples"] == len(sentiment)  # the views replace the originals
    report = result.train["data_report"]["adversarial.word_substitution"]
    assert [r["epoch"] for r in report["refreshes"]] == [1, 3]
    assert all(r["examples"] == len(sentiment) for r in report["refreshes"])
    # epoch 0 trained on the originals only, epochs 1-2 on the views of the refresh at 1,
    # epoch 3 on those of the refresh at 3 (the original where the attack wrote none)
    first, second = (r["written"] for r in report["refreshes"])
    assert first > 0 and report["written"] == 2 * first + second
    assert report["fallback"] == 4 * len(sentiment) - report["written"]


_DIST_SCRIPT = """
import json, os, sys
import torch.distributed as dist
import augreg
from augreg.data import DataStage
from augreg.tasks import get_task
from augreg.testing import tiny_tokenizer
from transformers import AutoModelForSequenceClassification
from datasets import Dataset

rows = json.loads(sys.argv[2])
ds = Dataset.from_list(rows)
if os.environ.get("WORLD_SIZE"):
    dist.init_process_group("gloo")
aug = augreg.create("adversarial.word_substitution", start_epoch=0, attack_fraction=0.6,
                    keep="perturbed", max_change_fraction=0.5)
aug.setup(augreg.SetupContext())
tok = tiny_tokenizer()
task = get_task(augreg.config.TaskConfig(), ["0", "1"])
data = DataStage([], [aug], 11, "sequence_classification", None, show_progress=False
                 ).per_epoch_dataset(ds, lambda b: task.tokenize_batch(b, tok, 32))
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1])
data.set_epoch(0, model, tok)
rank = dist.get_rank() if dist.is_initialized() else "single"
views = [data.example(i)["text"] for i in range(len(data))]
with open(os.path.join(sys.argv[3], f"views-{rank}.json"), "w") as fh:
    json.dump(views, fh)
if dist.is_initialized():
    dist.destroy_process_group()
"""


@pytest.mark.distributed
def test_torchrun_processes_share_identical_views(
    tmp_path: Path, sentiment: list[dict[str, Any]]
) -> None:
    model_dir = save_tiny_model(tmp_path / "tiny", seed=4)
    rows = json.dumps(
        [{"augreg_id": e["augreg_id"], "text": e["text"], "label": e["label"]} for e in sentiment]
    )
    script = tmp_path / "views.py"
    script.write_text(_DIST_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [str(script), str(model_dir), rows, str(tmp_path)]
    single = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert single.returncode == 0, single.stderr[-3000:]
    dist_run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert dist_run.returncode == 0, dist_run.stdout[-3000:] + dist_run.stderr[-3000:]
    views = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("views-*.json")}
    assert set(views) == {"views-single", "views-0", "views-1"}
    # each process wrote half of the views; after the exchange all three agree
    assert views["views-0"] == views["views-1"] == views["views-single"]
    originals = [e["text"] for e in sentiment]
    assert views["views-single"][: len(sentiment)] == originals
    assert views["views-single"][len(sentiment) :] != originals


@pytest.mark.distributed
def test_torchrun_training_refreshes_in_every_process(
    tmp_path: Path, sentiment: list[dict[str, Any]]
) -> None:
    model_dir = save_tiny_model(tmp_path / "tiny", seed=4)
    train = tmp_path / "train.jsonl"
    train.write_text(
        "".join(json.dumps({"text": e["text"], "label": e["label"]}) + "\n" for e in sentiment)
    )
    cfg = tmp_path / "dist.toml"
    cfg.write_text(f"""
name = "dist"
[model]
name = "{model_dir}"
max_length = 32
[data]
train = "{train}"
augmentation = "per_epoch"
cache_dir = "{tmp_path / "cache"}"
[[augment]]
name = "adversarial.word_substitution"
start_epoch = 0
refresh_every = 1
attack_fraction = 1.0
max_change_fraction = 0.5
[train]
epochs = 2
batch_size = 4
output_dir = "{tmp_path / "runs"}"
progress = false
eval_strategy = "no"
save_model = false
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "augreg",
            "run",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = list((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    report = metrics["train"]["data_report"]["adversarial.word_substitution"]
    # both refreshes ran over all 12 examples (each process wrote half and received the rest)
    assert [(r["epoch"], r["examples"]) for r in report["refreshes"]] == [(0, 12), (1, 12)]
    # 24 slots (originals + views) over 2 processes, batch 4 each: 3 steps an epoch
    assert metrics["train"]["steps"] == 2 * 3
