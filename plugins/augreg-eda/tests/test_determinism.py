"""Same seed, same data: through the core data stage, any batch size, two processes."""

from __future__ import annotations

from typing import Any

import datasets
import pytest

import augreg
from augreg.data import ID, DataStage
from augreg.seeding import derive_rng
from augreg_eda.eda import Eda, RandomDeletion, RandomSwap, SynonymReplacement
from augreg_eda.noise import Keyboard

TEXTS = [
    "a gripping , well acted film with a haunting score .",
    "The plot was dull; the actors, frankly, looked bored.",
    "great",
    "",
    "An uneven but often funny and moving comedy about growing old .",
    "I hated every minute of this slow , pretentious mess !",
] * 4


def sequence_data() -> datasets.Dataset:
    return datasets.Dataset.from_list(
        [{ID: f"train:{i}", "text": t, "label": i % 2} for i, t in enumerate(TEXTS)]
    )


def one_by_one(aug: augreg.Augmenter, ds: datasets.Dataset, seed: int) -> list[dict[str, Any]]:
    rows = []
    for ex in ds:
        for copy in range(aug.options.copies):  # type: ignore[attr-defined]
            rng = derive_rng(seed, aug.name, ex[ID], 0, copy)
            rows.extend(aug.augment(dict(ex), rng))
    return rows


def mapped(
    aug: augreg.Augmenter, ds: datasets.Dataset, seed: int, batch_size: int, num_proc: int | None
) -> list[str]:
    def run(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        rows = [dict(zip(batch, vals, strict=True)) for vals in zip(*batch.values(), strict=True)]
        rngs = [derive_rng(seed, aug.name, r[ID], 0, 0) for r in rows]
        outs = aug.augment_batch(rows, rngs)
        return {"text": [o["text"] for out in outs for o in out]}

    out = ds.map(
        run,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc,
        remove_columns=ds.column_names,
        keep_in_memory=True,
        load_from_cache_file=False,
    )
    return list(out["text"])


@pytest.mark.parametrize(
    "aug",
    [
        RandomSwap(copies=2),
        RandomDeletion(),
        SynonymReplacement(alpha=0.2),
        Eda(preset="paper-500"),
    ],
    ids=lambda a: a.name,
)
def test_data_stage_equals_one_by_one(aug: augreg.Augmenter, lex: Any) -> None:
    ds = sequence_data()
    stage = DataStage([], [aug], seed=7, task="sequence_classification", cache_dir=None,
                      keep_original=False, show_progress=False)  # fmt: skip
    stage.setup(augreg.SetupContext(train_examples=list(ds)))
    expanded = stage.expand(ds)
    assert list(expanded["text"]) == [r["text"] for r in one_by_one(aug, ds, 7)]
    again = DataStage([], [aug], seed=7, task="sequence_classification", cache_dir=None,
                      keep_original=False, show_progress=False).expand(ds)  # fmt: skip
    assert list(again["text"]) == list(expanded["text"])
    other = DataStage([], [aug], seed=8, task="sequence_classification", cache_dir=None,
                      keep_original=False, show_progress=False).expand(ds)  # fmt: skip
    assert list(other["text"]) != list(expanded["text"])


def test_same_output_whatever_the_batch_size_or_processes(lex: Any) -> None:
    ds = sequence_data()
    eda = Eda(preset="paper-2000")
    eda.setup(augreg.SetupContext(train_examples=list(ds)))
    keyboard = Keyboard()
    keyboard.setup(augreg.SetupContext())
    for aug in (eda, keyboard):
        reference = mapped(aug, ds, 3, batch_size=len(ds), num_proc=None)
        assert reference
        assert mapped(aug, ds, 3, batch_size=1, num_proc=None) == reference
        assert mapped(aug, ds, 3, batch_size=5, num_proc=None) == reference
    # two worker processes: the set-up component is pickled; WordNet reloads lazily there
    assert mapped(eda, ds, 3, batch_size=4, num_proc=2) == mapped(eda, ds, 3, len(ds), None)
