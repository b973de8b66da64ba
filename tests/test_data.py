"""The data stage: loading and checking splits, injection, offline and per-epoch augmentation."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest
from datasets import Dataset
from pydantic import Field

import augreg
from augreg.config import PipelineConfig
from augreg.data import ID, PARENT, SOURCE, DataStage, load_data
from augreg.errors import DataError
from augreg.seeding import derive_rng
from augreg.tasks import get_task, spans
from augreg.testing.models import tiny_tokenizer

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SEQ = "sequence_classification"
TOK = "token_classification"


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def head_jsonl(path: Path, n: int) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(next(fh)) for _ in range(n)]


def make_cfg(
    tmp_path: Path,
    task: str = SEQ,
    labels: list[str] | None = None,
    tag_scheme: str = "iob2",
    seed: int = 0,
    **data: Any,
) -> PipelineConfig:
    data.setdefault("cache_dir", str(tmp_path / "cache"))
    return PipelineConfig(
        model={"name": "unused"},
        task={"type": task, "labels": labels, "tag_scheme": tag_scheme},
        data=data,
        train={"seed": seed, "progress": False},
        base_dir=str(tmp_path),
    )


def seq_rows(labels: list[Any]) -> list[dict[str, Any]]:
    return [{"text": f"text number {i}", "label": lab} for i, lab in enumerate(labels)]


def error_of(cfg: PipelineConfig) -> str:
    with pytest.raises(DataError) as info:
        load_data(cfg)
    return str(info.value)


# -- loading ---------------------------------------------------------------------------------


def test_jsonl_splits_in_augreg_layout_with_numeric_label_order(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", seq_rows([10, 2, 2, 10, 3]))
    write_jsonl(tmp_path / "test.jsonl", seq_rows([3, 10]))
    write_jsonl(tmp_path / "ood.jsonl", seq_rows([2]))
    bundle = load_data(
        make_cfg(tmp_path, train="train.jsonl", test="test.jsonl", eval={"ood": "ood.jsonl"})
    )
    assert bundle.labels == ["2", "3", "10"]  # numeric, not string order
    assert bundle.train.column_names == [ID, "text", "label"]
    assert bundle.train[ID] == ["train:0", "train:1", "train:2", "train:3", "train:4"]
    assert bundle.train["label"] == [2, 0, 0, 2, 1]
    assert bundle.test is not None and bundle.test["label"] == [1, 2]
    assert bundle.test[ID] == ["test:0", "test:1"]
    assert bundle.eval["ood"][ID] == ["ood:0"] and bundle.validation is None


def test_string_labels_and_given_labels(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", seq_rows(["pos", "neg", "pos"]))
    assert load_data(make_cfg(tmp_path, train="train.jsonl")).labels == ["neg", "pos"]
    bundle = load_data(make_cfg(tmp_path, labels=["pos", "neg", "neutral"], train="train.jsonl"))
    assert bundle.labels == ["pos", "neg", "neutral"]
    assert bundle.train["label"] == [0, 1, 0]


def test_integer_labels_index_named_task_labels(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", seq_rows([0, 1, 1, 0]))
    bundle = load_data(make_cfg(tmp_path, labels=["negative", "positive"], train="train.jsonl"))
    assert bundle.labels == ["negative", "positive"]
    assert bundle.train["label"] == [0, 1, 1, 0]


def test_csv_and_tsv_files(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text('text,label\n"good, really",1\nbad,0\n', encoding="utf-8")
    bundle = load_data(make_cfg(tmp_path, train="train.csv"))
    assert bundle.train["text"] == ["good, really", "bad"]
    assert bundle.train["label"] == [1, 0]
    # TSV is read unquoted: a lone '"' is part of the text.
    (tmp_path / "train.tsv").write_text(
        'sentence\tlabel\nhe said "hi\tpos\nok\tneg\n', encoding="utf-8"
    )
    bundle = load_data(make_cfg(tmp_path, train="train.tsv", columns={"text": "sentence"}))
    assert bundle.train["text"] == ['he said "hi', "ok"]
    assert bundle.labels == ["neg", "pos"]


def test_column_mapping_with_id_column_and_format_override(tmp_path: Path) -> None:
    rows = [{"uid": f"r{i}", "sentence": f"s {i}", "y": i % 2} for i in range(4)]
    write_jsonl(tmp_path / "train.data", rows)
    cfg = make_cfg(
        tmp_path,
        train={"path": "train.data", "format": "jsonl"},
        columns={"text": "sentence", "label": "y", "id": "uid"},
    )
    bundle = load_data(cfg)
    assert bundle.train[ID] == ["r0", "r1", "r2", "r3"]
    assert bundle.train["text"] == ["s 0", "s 1", "s 2", "s 3"]


def test_in_memory_sources(tmp_path: Path) -> None:
    train = Dataset.from_list(seq_rows(["a", "b"]))
    cfg = make_cfg(tmp_path, train=train, test=seq_rows(["b"]))
    bundle = load_data(cfg)
    assert bundle.train["label"] == [0, 1] and bundle.labels == ["a", "b"]
    assert bundle.test is not None and bundle.test["label"] == [1]


def test_conll_iob1_is_converted_to_iob2(tmp_path: Path) -> None:
    rows = head_jsonl(SHARED / "conll2003" / "train.jsonl", 200)
    write_jsonl(tmp_path / "train.jsonl", rows)
    bundle = load_data(make_cfg(tmp_path, task=TOK, tag_scheme="iob1", train="train.jsonl"))
    assert bundle.labels[0] == "O"
    assert bundle.labels == [
        "O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER",
    ]  # fmt: skip
    assert bundle.train.column_names == [ID, "tokens", "tags"]
    assert bundle.train[0]["tags"] == ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]
    assert bundle.train[1]["tags"] == ["B-PER", "I-PER"]
    for tags in bundle.train["tags"]:  # valid IOB2: no I-X that does not continue an X
        for prev, cur in zip(["O", *tags], tags, strict=False):
            assert not cur.startswith("I-") or prev[2:] == cur[2:]


def test_token_tags_column_and_integer_tags_with_given_labels(tmp_path: Path) -> None:
    rows = [{"tokens": ["john", "smith"], "tags": [1, 2]}, {"tokens": ["ok"], "tags": [0]}]
    write_jsonl(tmp_path / "train.jsonl", rows)
    cfg = make_cfg(tmp_path, task=TOK, labels=["O", "B-PER", "I-PER"], train="train.jsonl")
    bundle = load_data(cfg)
    assert bundle.train["tags"] == [["B-PER", "I-PER"], ["O"]]
    err = error_of(make_cfg(tmp_path, task=TOK, train="train.jsonl"))
    assert "train:0" in err and "no tag names" in err and "task.labels" in err


# -- loading errors --------------------------------------------------------------------------


def test_corrupt_jsonl_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n{"text": "c", "lab\n')
    err = error_of(make_cfg(tmp_path, train="train.jsonl"))
    assert str(path) in err and "line 3" in err and "invalid JSON" in err


def test_jsonl_with_a_non_object_line_names_the_line(tmp_path: Path) -> None:
    rows = [*seq_rows([0, 1, 0]), ["d", 1]]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    err = error_of(make_cfg(tmp_path, train="train.jsonl"))
    assert str(path) in err and "line 4: expected an object" in err


def test_mixed_label_types_are_checked_per_row(tmp_path: Path) -> None:
    # datasets reads mixed types as JSON values; the row checks still name the bad row.
    write_jsonl(tmp_path / "train.jsonl", [*seq_rows([0, 1, 0]), {"text": "d", "label": [1]}])
    err = error_of(make_cfg(tmp_path, train="train.jsonl"))
    assert "bad label in train:3 (1 row)" in err and "[1]" in err


def test_bad_json_array_names_line(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text('[\n{"text": "a", "label": 0},\n{"text": "b" "label": 1}\n]\n')
    err = error_of(make_cfg(tmp_path, train="train.json"))
    assert str(path) in err and "line 3" in err


def test_csv_with_extra_field_names_line(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("text,label\na,0\nb,1\nc,1,extra\nd,0\n")
    err = error_of(make_cfg(tmp_path, train="train.csv"))
    assert str(path) in err and "line 4" in err and "3 fields" in err


def test_missing_file_unknown_extension_and_empty_file(tmp_path: Path) -> None:
    err = error_of(make_cfg(tmp_path, train="nope.jsonl"))
    assert "no such file" in err and "nope.jsonl" in err
    (tmp_path / "train.txt").write_text("a\n")
    err = error_of(make_cfg(tmp_path, train="train.txt"))
    assert "train.txt" in err and "set format" in err
    (tmp_path / "empty.jsonl").write_text("\n")
    err = error_of(make_cfg(tmp_path, train="empty.jsonl"))
    assert "empty.jsonl is empty" in err


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", seq_rows([0, 1]))
    empty = Dataset.from_dict({"text": [], "label": []})
    err = error_of(make_cfg(tmp_path, train="train.jsonl", validation=empty))
    assert "data.validation" in err and "has no rows" in err
    assert "has no rows" in error_of(make_cfg(tmp_path, train=[]))


def test_missing_column_lists_columns_and_mapping(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", [{"sentence": "a", "label": 0}])
    err = error_of(make_cfg(tmp_path, train="train.jsonl"))
    assert "no column 'text'" in err and "['sentence', 'label']" in err
    assert "data.columns" in err and "train.jsonl" in err
    err = error_of(make_cfg(tmp_path, train="train.jsonl", columns={"text": "sent"}))
    assert "no column 'sent'" in err and "data.columns.text = 'sent'" in err
    write_jsonl(tmp_path / "ner.jsonl", [{"tokens": ["a"], "labels": ["O"]}])
    err = error_of(make_cfg(tmp_path, task=TOK, train="ner.jsonl"))
    assert "no column 'tags' or 'ner_tags'" in err and "['tokens', 'labels']" in err


def test_empty_texts_name_first_ten_row_ids_and_count(tmp_path: Path) -> None:
    rows = seq_rows([0, 1] * 10)
    for i in range(2, 14):
        rows[i]["text"] = "   " if i % 2 else ""
    rows[15]["text"] = None
    write_jsonl(tmp_path / "train.jsonl", rows)
    err = error_of(make_cfg(tmp_path, train="train.jsonl"))
    assert "empty, missing or non-string text" in err
    assert "train:2, train:3" in err and "train:11" in err
    assert "train:12" not in err and "(13 rows)" in err


def test_missing_and_non_class_labels_name_rows(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", seq_rows([0, None, 1, 0.5]))
    err = error_of(make_cfg(tmp_path, train="train.jsonl"))
    assert "missing label" in err and "train:1 (1 row)" in err
    assert "bad label in train:3" in err and "regression" in err


def test_duplicate_ids_are_an_error(tmp_path: Path) -> None:
    rows = [{"id": "x", "text": "a", "label": 0}, {"id": "x", "text": "b", "label": 1}]
    write_jsonl(tmp_path / "train.jsonl", rows)
    err = error_of(make_cfg(tmp_path, train="train.jsonl", columns={"id": "id"}))
    assert "duplicate ids" in err and "x (1 row)" in err


def test_labels_outside_given_label_set_name_rows(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", seq_rows(["pos", "neg", "meh", "pos", "meh"]))
    err = error_of(make_cfg(tmp_path, labels=["neg", "pos"], train="train.jsonl"))
    assert "['meh']" in err and "train:2, train:4" in err and "task.labels" in err
    write_jsonl(tmp_path / "int.jsonl", seq_rows([0, 1, 2]))
    err = error_of(make_cfg(tmp_path, labels=["neg", "pos"], train="int.jsonl"))
    assert "train:2 (1 row)" in err


def test_eval_labels_unseen_in_training_name_rows(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", seq_rows([0, 1, 0]))
    write_jsonl(tmp_path / "ood.jsonl", seq_rows([1, 5, 0, 7]))
    err = error_of(make_cfg(tmp_path, train="train.jsonl", eval={"ood": "ood.jsonl"}))
    assert "data.eval.ood" in err and "ood:1, ood:3" in err and "['5', '7']" in err
    assert "never occur in the training split" in err and "task.labels" in err


def test_token_rows_empty_mismatched_or_badly_tagged(tmp_path: Path) -> None:
    rows = [
        {"tokens": ["a", "b"], "ner_tags": ["O", "O"]},
        {"tokens": [], "ner_tags": []},
        {"tokens": ["a", "b"], "ner_tags": ["O"]},
        {"tokens": ["a", " "], "ner_tags": ["O", "O"]},
        {"tokens": ["a"], "ner_tags": ["E-PER"]},
    ]
    write_jsonl(tmp_path / "train.jsonl", rows)
    err = error_of(make_cfg(tmp_path, task=TOK, train="train.jsonl"))
    assert "empty, missing or non-list tokens" in err and "train:1 (1 row)" in err
    assert "differ in length in train:2 (1 row)" in err
    assert "whitespace-only" in err and "train:3 (1 row)" in err
    assert "bad tags in train:4" in err and "'E-PER'" in err


def test_token_eval_tags_unseen_in_training(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", [{"tokens": ["paris"], "ner_tags": ["B-LOC"]}])
    write_jsonl(
        tmp_path / "test.jsonl",
        [{"tokens": ["x", "y"], "ner_tags": ["B-LOC", "I-LOC"]},
         {"tokens": ["john"], "ner_tags": ["B-PER"]}],
    )  # fmt: skip
    err = error_of(make_cfg(tmp_path, task=TOK, train="train.jsonl", test="test.jsonl"))
    # I-LOC is fine (B-LOC was seen); PER was never seen.
    assert "['B-PER']" in err and "test:1 (1 row)" in err and "test:0" not in err


# -- training subset -------------------------------------------------------------------------


def test_balanced_subset_equal_per_class_and_seeded(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", seq_rows([0] * 20 + [1] * 6 + [2] * 10))

    def subset(seed: int, size: int) -> Dataset:
        return load_data(make_cfg(tmp_path, seed=seed, train="train.jsonl", train_size=size)).train

    a = subset(1, 8)
    assert sorted(Counter(a["label"]).values()) == [2, 3, 3]
    assert a[ID] == subset(1, 8)[ID]
    assert len({tuple(subset(s, 8)[ID]) for s in range(6)}) > 1
    assert sorted(Counter(subset(1, 9)["label"]).values()) == [3, 3, 3]
    # The remainder goes to different classes under different seeds, not always the first.
    bigger = {Counter(subset(s, 10)["label"]).most_common(1)[0][0] for s in range(12)}
    assert len(bigger) > 1


def test_balanced_subset_with_too_few_examples_names_the_class(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", seq_rows(["a"] * 10 + ["b"] * 2))
    err = error_of(make_cfg(tmp_path, train="train.jsonl", train_size=6))
    assert "class 'b'" in err and "only 2" in err and "needs 3" in err
    assert "data.balanced = false" in err
    bundle = load_data(make_cfg(tmp_path, train="train.jsonl", train_size=6, balanced=False))
    assert len(bundle.train) == 6


def test_subset_larger_than_data_is_an_error(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", seq_rows([0, 1, 0]))
    err = error_of(make_cfg(tmp_path, train="train.jsonl", train_size=5))
    assert "train_size is 5" in err and "only 3 rows" in err


def test_token_subset_is_a_seeded_sample(tmp_path: Path) -> None:
    rows = head_jsonl(SHARED / "conll2003" / "train.jsonl", 50)
    write_jsonl(tmp_path / "train.jsonl", rows)

    def ids(seed: int) -> list[str]:
        cfg = make_cfg(tmp_path, task=TOK, tag_scheme="iob1", seed=seed, train="train.jsonl",
                       train_size=10)  # fmt: skip
        return list(load_data(cfg).train[ID])

    assert len(ids(3)) == 10 and ids(3) == ids(3) and ids(3) != ids(4)
    assert set(ids(3)) <= {f"train:{i}" for i in range(50)}


# -- test components -------------------------------------------------------------------------


class AppendWord(augreg.Augmenter):
    """Appends a word chosen by the rng; counts its calls."""

    name = "test.append"
    calls: ClassVar[int] = 0

    class Options(augreg.Augmenter.Options):
        words: tuple[str, ...] = Field(("so", "very", "quite", "really"), description="Words.")

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        type(self).calls += 1
        return [{**example, "text": example["text"] + " " + rng.choice(self.options.words)}]


class Flip(augreg.Augmenter):
    """Flips binary labels (declares it or not, by subclass)."""

    name = "test.flip"

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        return [{**example, "label": 1 - example["label"]}]


class DeclaredFlip(Flip):
    name = "test.declared_flip"
    changes_labels = True


class LongOnly(augreg.Augmenter):
    """Writes two views of texts with at least three words, none otherwise."""

    name = "test.long_only"

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        words = example["text"].split()
        if len(words) < 3:
            return []
        rng.shuffle(words)
        return [{**example, "text": " ".join(words)}, {**example, "text": example["text"] + "!"}]


class DropTag(augreg.Augmenter):
    """Drops the first token but not its tag (a bug the stage must catch)."""

    name = "test.drop_tag"

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        return [{**example, "tokens": example["tokens"][1:]}]


class TextOnly(augreg.Augmenter):
    """Returns a new dict without the label (a bug the stage must catch)."""

    name = "test.text_only"

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        return [{"text": example["text"] + " x"}]


class Marker(augreg.KnowledgeInjector):
    """Adds a marker to the text and tries to change the id (the stage keeps ids)."""

    name = "test.marker"
    setups: ClassVar[int] = 0

    def setup(self, ctx: augreg.SetupContext) -> None:
        type(self).setups += 1

    def inject(self, example: augreg.Example) -> augreg.Example:
        return {**example, "text": "[K] " + example["text"], ID: "changed"}


class CountWords(augreg.KnowledgeInjector):
    """Adds the number of words (after earlier injectors)."""

    name = "test.count_words"

    def inject(self, example: augreg.Example) -> augreg.Example:
        return {**example, "n_words": len(example["text"].split())}


class Relabel(augreg.KnowledgeInjector):
    name = "test.relabel"

    def inject(self, example: augreg.Example) -> augreg.Example:
        return {**example, "label": 0}


def seq_dataset(n: int = 6) -> Dataset:
    texts = ["the movie was great", "so bad", "i love this film", "awful", "a nice plot", "ok"]
    return Dataset.from_dict({
        ID: [f"train:{i}" for i in range(n)],
        "text": [texts[i % len(texts)] for i in range(n)],
        "label": [i % 2 for i in range(n)],
    })  # fmt: skip


def stage(tmp_path: Path | None, augmenters: list[augreg.Augmenter], seed: int = 0,
          **kw: Any) -> DataStage:  # fmt: skip
    cache = tmp_path / "cache" if tmp_path is not None else None
    return DataStage([], augmenters, seed=seed, task=kw.pop("task", SEQ), cache_dir=cache,
                     show_progress=False, **kw)  # fmt: skip


# -- injection -------------------------------------------------------------------------------


def test_inject_runs_injectors_in_order_and_keeps_ids(tmp_path: Path) -> None:
    ds = seq_dataset()
    st = DataStage([Marker(), CountWords()], [], seed=0, task=SEQ, cache_dir=tmp_path / "c",
                   show_progress=False)  # fmt: skip
    out = st.inject(ds)
    assert out[ID] == ds[ID]
    assert out[0]["text"] == "[K] the movie was great" and out[0]["n_words"] == 5
    assert out["label"] == ds["label"]
    Marker.setups = 0
    st.setup(augreg.SetupContext())
    st.setup(augreg.SetupContext())
    assert Marker.setups == 1


def test_inject_that_changes_labels_is_an_error() -> None:
    st = DataStage([Relabel()], [], seed=0, task=SEQ, cache_dir=None, show_progress=False)
    with pytest.raises(DataError, match=r"injector test.relabel changed the label of train:1"):
        st.inject(seq_dataset())


# -- offline augmentation --------------------------------------------------------------------


def test_expand_adds_copies_with_provenance_and_matches_one_by_one(tmp_path: Path) -> None:
    ds = seq_dataset()
    aug = AppendWord(copies=2)
    out = stage(tmp_path, [aug], seed=7).expand(ds)
    assert len(out) == 6 * 3
    assert out[SOURCE].count("original") == 6 and out[SOURCE].count("test.append") == 12
    originals = out.select(range(6))
    assert originals[ID] == ds[ID] and originals[PARENT] == [""] * 6
    row = out[6]  # the first augmented row: example 0, copy 0
    assert row[ID] == "train:0/test.append/0.0.0" and row[PARENT] == "train:0"
    assert out[7][ID] == "train:0/test.append/0.1.0"
    for r in out.select(range(6, 18)):
        parent = ds[int(r[PARENT].split(":")[1])]
        copy = int(r[ID].rsplit("/", 1)[1].split(".")[1])
        expected = aug.augment(dict(parent), derive_rng(7, "test.append", parent[ID], 0, copy))
        assert r["text"] == expected[0]["text"] and r["label"] == parent["label"]


def test_expand_is_seeded(tmp_path: Path) -> None:
    ds = seq_dataset(30)
    a = stage(None, [AppendWord()], seed=1).expand(ds)["text"]
    assert a == stage(None, [AppendWord()], seed=1).expand(ds)["text"]
    assert a != stage(None, [AppendWord()], seed=2).expand(ds)["text"]
    assert a != stage(None, [AppendWord()], seed=1).expand(ds, epoch=1)["text"]


def test_expand_label_change_without_declaration_names_component(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        stage(tmp_path, [Flip()]).expand(seq_dataset())
    text = str(info.value)
    assert "test.flip changed the label of train:0" in text and "changes_labels" in text
    out = stage(tmp_path, [DeclaredFlip()]).expand(seq_dataset())
    assert out["label"][6:] == [1, 0, 1, 0, 1, 0]


def test_expand_token_tags_must_stay_aligned(tmp_path: Path) -> None:
    ds = Dataset.from_dict({ID: ["t:0"], "tokens": [["john", "went"]], "tags": [["B-PER", "O"]]})
    with pytest.raises(DataError, match=r"test.drop_tag wrote an example from t:0 with 1 tokens"):
        stage(tmp_path, [DropTag()], task=TOK).expand(ds)


def test_expand_output_without_a_field_names_component(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"test.text_only returned an example .* without \['label'\]"
    ):
        stage(tmp_path, [TextOnly()]).expand(seq_dataset())


def test_expand_counts_empty_results_and_multiple_outputs(tmp_path: Path) -> None:
    st = stage(tmp_path, [LongOnly(copies=2)])
    out = st.expand(seq_dataset())  # 3 of 6 texts have >= 3 words
    assert st.report["test.long_only"] == {"examples": 6, "copies": 2, "written": 12, "empty": 6}
    assert len(out) == 6 + 12
    assert "train:0/test.long_only/0.1.1" in out[ID]
    only_aug = stage(None, [LongOnly()], keep_original=False).expand(seq_dataset())
    assert set(only_aug[SOURCE]) == {"test.long_only"} and len(only_aug) == 6
    short = Dataset.from_dict({ID: ["s:0"], "text": ["so bad"], "label": [0]})
    with pytest.raises(DataError, match="produced no training examples"):
        stage(None, [LongOnly()], keep_original=False).expand(short)


def test_expand_is_cached_by_input_components_seed_and_epoch(tmp_path: Path) -> None:
    ds = seq_dataset()
    AppendWord.calls = 0
    first = stage(tmp_path, [AppendWord(copies=2)]).expand(ds)
    assert AppendWord.calls == 12
    again_stage = stage(tmp_path, [AppendWord(copies=2)])
    again = again_stage.expand(ds)
    assert AppendWord.calls == 12  # read from the cache, augmenter not called
    assert again["text"] == first["text"] and again[ID] == first[ID]
    assert again_stage.report["test.append"]["written"] == 12
    assert any((tmp_path / "cache" / "data").glob("*.arrow"))
    other = stage(tmp_path, [AppendWord(copies=2, words=("xyz",))]).expand(ds)
    assert AppendWord.calls == 24 and other["text"] != first["text"]
    assert all(t.endswith(" xyz") for t in other["text"][6:])
    stage(tmp_path, [AppendWord(copies=2)], seed=5).expand(ds)
    assert AppendWord.calls == 36
    changed = ds.map(lambda r: {"text": r["text"] + "."}, keep_in_memory=True)
    stage(tmp_path, [AppendWord(copies=2)]).expand(changed)
    assert AppendWord.calls == 48


def test_expand_without_cache_dir_stays_in_memory() -> None:
    out = stage(None, [AppendWord()]).expand(seq_dataset())
    assert out.cache_files == [] and len(out) == 12


def test_duplicate_components_are_rejected() -> None:
    with pytest.raises(DataError, match=r"\['test.append'\] appear more than once"):
        stage(None, [AppendWord(), AppendWord(copies=2)])


# -- per-epoch augmentation ------------------------------------------------------------------


def test_per_epoch_views_are_fresh_deterministic_and_tokenized() -> None:
    ds = seq_dataset()
    task = get_task(augreg.config.TaskConfig(), ["0", "1"])
    tok = tiny_tokenizer()

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return task.tokenize_batch(batch, tok, 32)

    st = stage(None, [AppendWord(copies=2)], seed=3)
    data = st.per_epoch_dataset(ds, tokenize)
    assert len(data) == 6 * 3
    forward = [data.example(i)["text"] for i in range(len(data))]
    backward = [data.example(i)["text"] for i in reversed(range(len(data)))][::-1]
    assert forward == backward
    assert forward[:6] == ds["text"]  # slot 0: the originals
    # The same rng derivation as expand: slot 1 = copy 0, slot 2 = copy 1.
    offline = stage(None, [AppendWord(copies=2)], seed=3).expand(ds)
    assert forward[6] == offline[6]["text"] and forward[12] == offline[7]["text"]
    data.set_epoch(1)
    epoch1 = [data.example(i)["text"] for i in range(len(data))]
    assert epoch1[:6] == forward[:6] and epoch1[6:] != forward[6:]
    item = data[7]
    assert item["labels"] == ds[1]["label"]
    assert tok.decode(item["input_ids"], skip_special_tokens=True).startswith("so bad ")


def test_per_epoch_falls_back_to_the_original_and_counts_it() -> None:
    ds = seq_dataset()
    st = stage(None, [LongOnly()], keep_original=False)
    data = st.per_epoch_dataset(ds, lambda b: b)
    texts = [data.example(i)["text"] for i in range(len(data))]
    assert len(texts) == 6
    assert texts[1] == "so bad" and texts[0] != "the movie was great"
    assert st.report["test.long_only"] == {"written": 3, "fallback": 3}
    with pytest.raises(DataError, match="changed the label of train:0"):
        stage(None, [Flip()]).per_epoch_dataset(ds, lambda b: b).example(6)


class SparseFlip(augreg.Augmenter):
    """Flips the label of texts with at least three words (a copy with the opposite label)."""

    name = "test.sparse_flip"
    changes_labels = True

    def augment(self, example: augreg.Example, rng: random.Random) -> list[augreg.Example]:
        if len(example["text"].split()) < 3:
            return []
        return [{**example, "text": "not " + example["text"], "label": 1 - example["label"]}]


def test_expand_first_runs_once_and_the_others_rewrite_the_expanded_set(tmp_path: Path) -> None:
    ds = seq_dataset()
    # Without it, the sparse augmenter's slot repeats the originals it writes nothing for.
    plain = stage(None, [SparseFlip(), AppendWord()], keep_original=False)
    data = plain.per_epoch_dataset(ds, lambda b: b)
    assert len(data) == 12
    [data.example(i) for i in range(len(data))]
    assert plain.report["test.sparse_flip"] == {"written": 3, "fallback": 3}
    # With it: the 6 originals and 3 flipped copies, each rewritten by the per-epoch augmenter.
    st = stage(tmp_path, [SparseFlip(), AppendWord()], keep_original=False,
               expand_first=["test.sparse_flip"])  # fmt: skip
    assert [a.name for a in st.per_epoch_augmenters()] == ["test.append"]
    data = st.per_epoch_dataset(ds, lambda b: b)
    assert len(data) == 9
    rows = [data.example(i) for i in range(len(data))]
    assert all(r["augreg_source"] == "test.append" for r in rows)
    flipped = [r for r in rows if r["text"].startswith("not ")]
    assert len(flipped) == 3
    for r in flipped:  # the copy's label, the copy as parent
        parent = int(r["augreg_parent"].split("/")[0].split(":")[1])
        assert r["label"] == 1 - ds[parent]["label"]
        assert r["augreg_parent"].endswith("/test.sparse_flip/0.0.0")
    assert st.report["test.sparse_flip"]["written"] == 3
    assert st.report["test.sparse_flip"]["empty"] == 3
    assert st.report["test.append"] == {"written": 9, "fallback": 0}
    # Keeping the originals keeps the expanded rows as they are, with their provenance.
    kept = stage(tmp_path, [SparseFlip(), AppendWord()], expand_first=["test.sparse_flip"])
    data = kept.per_epoch_dataset(ds, lambda b: b)
    assert len(data) == 18
    sources = [data.example(i)["augreg_source"] for i in range(9)]
    assert sources.count("original") == 6 and sources.count("test.sparse_flip") == 3
    # expand() ignores it: every augmenter expands the originals once.
    assert len(stage(None, [SparseFlip(), AppendWord()], expand_first=["test.sparse_flip"])
               .expand(ds)) == 6 + 3 + 6  # fmt: skip
    with pytest.raises(DataError, match=r"expand_first names \['test.nope'\]"):
        stage(None, [AppendWord()], expand_first=["test.nope"])


def test_spans_survive_the_token_pipeline(tmp_path: Path) -> None:
    rows = [
        {"tokens": ["John", "Smith", "in", "Paris"], "ner_tags": ["I-PER", "I-PER", "O", "I-LOC"]}
    ]
    write_jsonl(tmp_path / "train.jsonl", rows)
    bundle = load_data(make_cfg(tmp_path, task=TOK, tag_scheme="iob1", train="train.jsonl"))
    assert spans(bundle.train[0]["tags"]) == [(0, 2, "PER"), (3, 4, "LOC")]


def test_empty_rows_skip_is_explicit_and_reported(tmp_path: Path) -> None:
    from augreg.config import validate
    from augreg.data import load_data

    rows = [
        {"text": "good film", "label": 1},
        {"text": "  ", "label": 0},
        {"text": "bad film", "label": 0},
        {"text": "", "label": 1},
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw = {"model": {"name": "unused"}, "data": {"train": str(path)}}
    with pytest.raises(DataError) as info:
        load_data(validate(raw))
    assert "train:1" in str(info.value) and "train:3" in str(info.value)
    assert 'empty_rows = "skip"' in str(info.value)
    raw["data"]["empty_rows"] = "skip"
    bundle = load_data(validate(raw))
    assert bundle.train["text"] == ["good film", "bad film"]
    assert bundle.train["augreg_id"] == ["train:0", "train:2"]
    assert bundle.skipped == {"train": ["train:1", "train:3"]}


def test_cached_augmentations_follow_the_component_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changed rule in a module beside the component (same version number) changes the
    fingerprint, so the data stage does not reuse augmentations the old code wrote."""
    from augreg.components import code_digest

    pkg = tmp_path / "fp_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "rules.py").write_text("SUFFIX = ' !'\n")
    (pkg / "aug.py").write_text(
        "import augreg\n"
        "from fp_pkg import rules\n\n"
        "class Bang(augreg.Augmenter):\n"
        "    name = 'fp.bang'\n\n"
        "    def augment(self, example, rng):\n"
        "        return [{**example, 'text': example['text'] + rules.SUFFIX}]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from fp_pkg.aug import Bang  # type: ignore[import-not-found]

    before = Bang().fingerprint()
    assert before == Bang().fingerprint()  # stable
    (pkg / "rules.py").write_text("SUFFIX = ' ?'\n")
    code_digest.cache_clear()  # a new process reads the code again
    assert Bang().fingerprint() != before
    assert code_digest("no_such_package_here") == ""
