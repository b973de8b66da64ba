"""Unlabelled data (``data.unlabelled``): config checks, loading, drawing, the step context."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from datasets import Dataset

import augreg
from augreg.config import validate
from augreg.context import UNLABELLED, StepContext
from augreg.data import UnlabelledCollator, WithUnlabelled, load_data
from augreg.host import PluginHost
from augreg.testing import make_batch, tiny_model, tiny_tokenizer


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


SEEN: list[tuple[int, int, list[str]]] = []
"""(labelled batch size, unlabelled batch size, unlabelled ids) per training step."""


class _Consistency(augreg.Regularizer):
    """Records the unlabelled batch of every step; its term is the mean unlabelled logit.

    Cost: one extra forward pass on the unlabelled batch.
    """

    name = "test.consistency"
    needs_unlabelled: ClassVar[bool] = True
    extra_passes: ClassVar[float] = 1.0

    def loss(self, ctx: StepContext) -> torch.Tensor:
        assert ctx.unlabelled is not None
        SEEN.append(
            (
                int(ctx.labels.shape[0]),
                len(ctx.unlabelled),
                [ex["augreg_id"] for ex in ctx.unlabelled.examples],
            )
        )
        assert UNLABELLED not in ctx.inputs
        return ctx.forward(inputs=ctx.unlabelled.inputs).logits.mean() * 0.0


class _Plugin:
    @augreg.hookimpl
    def augreg_register_regularizers(self, register: augreg.Register) -> None:
        register(_Consistency)


def _host() -> PluginHost:
    return PluginHost(entry_points=False, plugins={"test": _Plugin()})


def _pipeline(
    model: Path, data: dict[str, Any], tmp_path: Path, batch_size: int = 4, **kw: Any
) -> augreg.Pipeline:
    return augreg.Pipeline(
        model={"name": str(model), "max_length": 32},
        data=data,
        train={
            "epochs": 1,
            "batch_size": batch_size,
            "learning_rate": 1e-3,
            "seed": 3,
            "output_dir": str(tmp_path / "runs"),
            "progress": False,
            "eval_strategy": "no",
            "save_model": False,
        },
        host=_host(),
        **kw,
    )


def _unlabelled_file(tmp_path: Path, n: int = 30) -> Path:
    rows = [{"text": f"some unlabelled sentence number {i}", "label": i % 2} for i in range(n)]
    return write_jsonl(tmp_path / "data" / "unlabelled.jsonl", rows)


def test_component_without_unlabelled_data_fails_before_the_model_loads(tmp_path: Path) -> None:
    with pytest.raises(augreg.ConfigError) as info:
        _pipeline(
            tmp_path / "no-model",
            {"train": [{"text": "a", "label": 0}]},
            tmp_path,
            regularize=["test.consistency"],
        )
    text = str(info.value)
    assert "regularize[0] test.consistency" in text
    assert "add data.unlabelled" in text


def test_unlabelled_data_without_a_component_is_an_error(tmp_path: Path) -> None:
    data = {"train": [{"text": "a", "label": 0}], "unlabelled": str(_unlabelled_file(tmp_path))}
    with pytest.raises(augreg.ConfigError) as info:
        _pipeline(tmp_path / "no-model", data, tmp_path)
    assert "data.unlabelled" in str(info.value) and "no component" in str(info.value)


def test_missing_unlabelled_file_is_reported(tmp_path: Path) -> None:
    data = {"train": [{"text": "a", "label": 0}], "unlabelled": str(tmp_path / "none.jsonl")}
    with pytest.raises(augreg.ConfigError) as info:
        _pipeline(tmp_path / "no-model", data, tmp_path, regularize=["test.consistency"])
    assert "data.unlabelled" in str(info.value) and "file not found" in str(info.value)


def test_ratio_is_validated(tmp_path: Path) -> None:
    data = {
        "train": [{"text": "a", "label": 0}],
        "unlabelled": str(_unlabelled_file(tmp_path)),
        "unlabelled_ratio": 0,
    }
    with pytest.raises(augreg.ConfigError) as info:
        _pipeline(tmp_path / "no-model", data, tmp_path, regularize=["test.consistency"])
    assert "unlabelled_ratio" in str(info.value)


def test_loading_keeps_text_only(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    pipe = _pipeline(
        tiny_seq_model,
        {"train": str(sentiment_files["train"]), "unlabelled": str(_unlabelled_file(tmp_path))},
        tmp_path,
        regularize=["test.consistency"],
    )
    bundle = load_data(pipe.config)
    assert bundle.unlabelled is not None
    assert bundle.unlabelled.column_names == ["augreg_id", "text"]
    assert len(bundle.unlabelled) == 30
    assert bundle.unlabelled[0]["augreg_id"] == "unlabelled:0"


def test_in_memory_unlabelled_data_set(tiny_seq_model: Path, tmp_path: Path) -> None:
    texts = Dataset.from_dict({"text": ["one text", "two texts"], "other": [1, 2]})
    pipe = _pipeline(
        tiny_seq_model,
        {"train": [{"text": "a b", "label": 0}, {"text": "c d", "label": 1}], "unlabelled": texts},
        tmp_path,
        regularize=["test.consistency"],
    )
    bundle = load_data(pipe.config)
    assert bundle.unlabelled is not None and bundle.unlabelled["text"] == ["one text", "two texts"]


def test_empty_unlabelled_set_is_an_error_naming_the_fix(
    tiny_seq_model: Path, tmp_path: Path
) -> None:
    pipe = _pipeline(
        tiny_seq_model,
        {
            "train": [{"text": "a b", "label": 0}, {"text": "c d", "label": 1}],
            "unlabelled": Dataset.from_dict({"text": []}),
        },
        tmp_path,
        regularize=["test.consistency"],
    )
    with pytest.raises(augreg.DataError) as info:
        pipe.run()
    assert "data.unlabelled" in str(info.value) and "has no rows" in str(info.value)
    assert "give at least one example" in str(info.value)


def test_empty_unlabelled_text_is_an_error(tiny_seq_model: Path, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "u.jsonl", [{"text": "fine"}, {"text": "  "}])
    pipe = _pipeline(
        tiny_seq_model,
        {"train": [{"text": "a b", "label": 0}], "unlabelled": str(path)},
        tmp_path,
        regularize=["test.consistency"],
    )
    with pytest.raises(augreg.DataError, match="unlabelled:1"):
        load_data(pipe.config)


def _tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    enc = tiny_tokenizer()(list(batch["text"]), truncation=True, max_length=16)
    return {**{k: list(v) for k, v in enc.items()}, "labels": list(batch["label"])}


def _with_unlabelled(n_labelled: int, n_unlabelled: int, ratio: int, seed: int = 1) -> Any:
    labelled = Dataset.from_dict(
        _tokenize({"text": ["a b"] * n_labelled, "label": [0] * n_labelled})
    )
    unlabelled = Dataset.from_dict(
        {
            "augreg_id": [f"u:{i}" for i in range(n_unlabelled)],
            "text": [f"text {i}" for i in range(n_unlabelled)],
        }
    )
    return WithUnlabelled(labelled, unlabelled, _tokenize, ratio, seed)


def test_draws_the_ratio_and_covers_the_set() -> None:
    ds = _with_unlabelled(10, 30, 3)
    drawn = [u["augreg_id"] for i in range(len(ds)) for u in ds[i][UNLABELLED]]
    assert all(len(ds[i][UNLABELLED]) == 3 for i in range(len(ds)))
    assert Counter(drawn) == Counter(f"u:{i}" for i in range(30))  # each once per epoch
    assert "input_ids" in ds[0][UNLABELLED][0] and "labels" not in ds[0][UNLABELLED][0]
    first = [ds.drawn(i) for i in range(10)]
    assert first == [_with_unlabelled(10, 30, 3).drawn(i) for i in range(10)]  # same seed
    ds.set_epoch(1)
    assert [ds.drawn(i) for i in range(10)] != first  # a new draw each epoch
    assert [_with_unlabelled(10, 30, 3, seed=2).drawn(i) for i in range(10)] != first


def test_small_unlabelled_set_wraps_around() -> None:
    ds = _with_unlabelled(10, 4, 2)
    drawn = Counter(u["augreg_id"] for i in range(len(ds)) for u in ds[i][UNLABELLED])
    assert sum(drawn.values()) == 20 and set(drawn.values()) == {5}


def test_collator_pads_the_unlabelled_part_apart() -> None:
    from transformers import DataCollatorWithPadding

    ds = _with_unlabelled(3, 9, 2)
    batch = UnlabelledCollator(DataCollatorWithPadding(tiny_tokenizer()))([ds[0], ds[1]])
    assert batch["input_ids"].shape[0] == 2 and batch["labels"].shape == (2,)
    part = batch[UNLABELLED]
    assert part["inputs"]["input_ids"].shape[0] == 4 and "labels" not in part["inputs"]
    assert [ex["augreg_id"] for ex in part["examples"]] == [
        u["augreg_id"] for i in (0, 1) for u in ds[i][UNLABELLED]
    ]


def test_step_context_takes_the_unlabelled_part_out_of_the_model_inputs() -> None:
    tok = tiny_tokenizer()
    batch = make_batch("sequence_classification", tok, [{"text": "good", "label": 1}])
    plain = StepContext(tiny_model("sequence_classification"), batch)
    assert plain.unlabelled is None
    inputs = dict(tok(["x y", "z"], padding=True, return_tensors="pt"))
    batch[UNLABELLED] = {"inputs": inputs, "examples": [{"augreg_id": "u:0", "text": "x y"}]}
    ctx = StepContext(tiny_model("sequence_classification"), batch)
    assert ctx.unlabelled is not None and len(ctx.unlabelled) == 2
    assert UNLABELLED not in ctx.inputs
    assert ctx.logits.shape[0] == 1


def test_trainer_draws_the_configured_ratio(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    SEEN.clear()
    pipe = _pipeline(
        tiny_seq_model,
        {
            "train": str(sentiment_files["train"]),
            "unlabelled": str(_unlabelled_file(tmp_path, 50)),
            "unlabelled_ratio": 3,
        },
        tmp_path,
        regularize=["test.consistency"],
    )
    result = pipe.run()
    assert result.train["unlabelled_examples"] == 50
    assert result.train["steps"] == 10  # 40 labelled examples in batches of 4
    assert [(n, u) for n, u, _ in SEEN] == [(4, 12)] * 10
    drawn = Counter(i for _, _, step in SEEN for i in step)
    assert len(drawn) == 50 and set(drawn.values()) == {2, 3}  # 120 draws over 50 texts
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["train"]["unlabelled_ratio"] == 3
    assert metrics["train"]["extra_passes"] == 3.0  # one pass per labelled-sized batch x 3


def test_token_classification_draws_unlabelled_token_lists(
    tiny_tok_model: Path, ner_files: dict[str, Path], tmp_path: Path
) -> None:
    SEEN.clear()
    unlabelled = write_jsonl(
        tmp_path / "ner" / "unlabelled.jsonl",
        [
            {"tokens": ["Anna", "visited", "Rome", str(i)], "ner_tags": ["B-X"] * 4}
            for i in range(12)
        ],
    )
    pipe = _pipeline(
        tiny_tok_model,
        {"train": str(ner_files["train"]), "unlabelled": str(unlabelled)},
        tmp_path,
        batch_size=8,
        regularize=["test.consistency"],
        task="token_classification",
    )
    bundle = load_data(pipe.config)
    assert bundle.unlabelled is not None
    assert bundle.unlabelled.column_names == ["augreg_id", "tokens"]  # tags ignored
    result = pipe.run()
    assert result.train["unlabelled_examples"] == 12
    assert [(n, u) for n, u, _ in SEEN] == [(8, 24), (8, 24)]


def test_empty_token_list_in_unlabelled_data_is_an_error(
    tiny_tok_model: Path, ner_files: dict[str, Path], tmp_path: Path
) -> None:
    unlabelled = write_jsonl(tmp_path / "u.jsonl", [{"tokens": ["a"]}, {"tokens": []}])
    pipe = _pipeline(
        tiny_tok_model,
        {"train": str(ner_files["train"]), "unlabelled": str(unlabelled)},
        tmp_path,
        regularize=["test.consistency"],
        task="token_classification",
    )
    with pytest.raises(augreg.DataError, match="unlabelled:1"):
        load_data(pipe.config)


# -- data.unlabelled = "train:rest" -----------------------------------------------------------


def _rest_data(train: Path, train_size: int | None = 12, **extra: Any) -> dict[str, Any]:
    return {"train": str(train), "unlabelled": "train:rest", "train_size": train_size, **extra}


def _rest_pipeline(
    model: Path, train: Path, tmp_path: Path, train_size: int | None = 12, **kw: Any
) -> augreg.Pipeline:
    """A pipeline on ``train`` with ``unlabelled = "train:rest"`` and a component using it."""
    data = _rest_data(train, train_size, **kw.pop("data", {}))
    return _pipeline(model, data, tmp_path, regularize=["test.consistency"], **kw)


def test_train_rest_without_train_size_fails_before_the_model_loads(
    sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(augreg.ConfigError) as info:
        _rest_pipeline(tmp_path / "no-model", sentiment_files["train"], tmp_path, None)
    text = str(info.value)
    assert "data.unlabelled" in text and "train:rest" in text
    assert "set data.train_size" in text
    assert "file not found" not in text  # a value, not a path


@pytest.mark.parametrize("balanced", [True, False])
def test_train_rest_is_the_training_rows_outside_the_labelled_subset(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path, balanced: bool
) -> None:
    rows = [json.loads(x) for x in sentiment_files["train"].read_text().splitlines()]
    every = [f"train:{i}" for i in range(len(rows))]
    picks: dict[int, list[str]] = {}
    for seed in (3, 4):
        pipe = _rest_pipeline(
            tiny_seq_model, sentiment_files["train"], tmp_path, data={"balanced": balanced}
        )
        cfg = pipe.config.model_copy(
            update={"train": pipe.config.train.model_copy(update={"seed": seed})}
        )
        bundle = load_data(cfg)
        assert bundle.unlabelled is not None
        assert bundle.unlabelled.column_names == ["augreg_id", "text"]  # labels dropped
        labelled = list(bundle.train["augreg_id"])
        rest = [x.removeprefix("unlabelled:") for x in bundle.unlabelled["augreg_id"]]
        assert len(labelled) == 12 and not set(labelled) & set(rest)
        assert sorted(labelled + rest, key=every.index) == every  # together: the whole file
        assert rest == sorted(rest, key=every.index)  # in file order
        assert bundle.unlabelled["text"] == [rows[every.index(x)]["text"] for x in rest]
        again = load_data(cfg).unlabelled
        assert again is not None and list(again["augreg_id"]) == list(
            bundle.unlabelled["augreg_id"]
        )
        picks[seed] = labelled
    assert picks[3] != picks[4]  # another seed, another subset, another rest


def test_train_rest_of_token_classification_keeps_tokens_only(
    tiny_tok_model: Path, ner_files: dict[str, Path], tmp_path: Path
) -> None:
    pipe = _rest_pipeline(
        tiny_tok_model, ner_files["train"], tmp_path, 5, task="token_classification"
    )
    bundle = load_data(pipe.config)
    assert bundle.unlabelled is not None
    assert bundle.unlabelled.column_names == ["augreg_id", "tokens"]
    assert len(bundle.train) == 5 and len(bundle.unlabelled) == 11


def test_train_rest_with_a_subset_of_every_row_is_an_error(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    pipe = _rest_pipeline(tiny_seq_model, sentiment_files["train"], tmp_path, 40)
    with pytest.raises(augreg.DataError) as info:
        load_data(pipe.config)
    assert "train:rest" in str(info.value) and "Lower data.train_size" in str(info.value)


def test_train_rest_run_reports_the_rest_and_keeps_the_value(
    tiny_seq_model: Path, sentiment_files: dict[str, Path], tmp_path: Path
) -> None:
    import yaml

    from augreg.bench.adopt import _data_paths
    from augreg.bench.spec import config_hash, hashed_config

    pipe = _rest_pipeline(tiny_seq_model, sentiment_files["train"], tmp_path)
    assert hashed_config(pipe.config)["data"]["unlabelled"] == "train:rest"
    assert config_hash(pipe.config)  # not looked up as a file
    result = pipe.run()
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["train"]["unlabelled_examples"] == 28  # 40 rows, 12 labelled
    written = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert written["data"]["unlabelled"] == "train:rest"
    assert Path(written["data"]["train"]["path"]).is_absolute()
    reread = validate(written, host=_host())
    assert reread.data.unlabelled == "train:rest"
    assert _data_paths(written) == [written["data"]["train"]["path"]]  # bench --adopt


def test_train_rest_follows_the_single_task_rule_of_unlabelled_data(
    sentiment_files: dict[str, Path],
) -> None:
    train = str(sentiment_files["train"])
    raw = {
        "model": {"name": "no-model"},
        "tasks": [
            {"name": "a", "data": _rest_data(sentiment_files["train"])},
            {"name": "b", "data": {"train": train}},
        ],
    }
    with pytest.raises(augreg.ConfigError) as info:
        validate(raw, host=_host())
    assert "tasks[0].data.unlabelled" in str(info.value)
    assert "single-task" in str(info.value)
