"""entity_linking.fusion: data alignment, identity at init, gradients, pipelines, save and load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import augreg
from augreg import AugregError, SetupContext
from augreg.config import TaskConfig
from augreg.tasks import get_task
from augreg.testing import save_tiny_model, tiny_model, tiny_tokenizer
from augreg_entity_linking.fusion import FIELD, Fusion

TAGS = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
TEXTS = [
    {"text": "Mary loves Paris and London , really", "label": 1},
    {"text": "nothing to see here", "label": 0},
    {"text": "France is large", "label": 1},
]
SENTENCES = [
    {
        "tokens": ["Mary", "visited", "Paris", "and", "London"],
        "tags": ["B-PER", "O", "B-LOC", "O", "B-LOC"],
    },
    {"tokens": ["nothing", "here"], "tags": ["O", "O"]},
]


def _fusion(kb: Path, tmp: Path, task: str, **options: Any) -> Fusion:
    comp = Fusion(kb=str(kb), **options)
    comp.setup(SetupContext(task=task, tokenizer=tiny_tokenizer(), cache_dir=tmp))
    return comp


def _batch(comp: Fusion, task: str, examples: list[dict[str, Any]]) -> dict[str, Any]:
    labels = TAGS if task == "token_classification" else ["neg", "pos"]
    spec = get_task(TaskConfig(type=task), labels)
    tok = tiny_tokenizer()
    if task == "token_classification":
        examples = [{**ex, "tags": ex["tags"]} for ex in examples]
    injected = comp.inject_batch(examples)
    cols = {k: [ex[k] for ex in injected] for k in injected[0]}
    enc = spec.tokenize_batch(cols, tok, 32, (FIELD,))
    rows = [{k: v[i] for k, v in enc.items()} for i in range(len(injected))]
    return dict(spec.collator(tok, (FIELD,))(rows))


def _examples(task: str) -> list[dict[str, Any]]:
    return SENTENCES if task == "token_classification" else TEXTS


def _model(task: str) -> torch.nn.Module:
    return tiny_model(task, num_labels=len(TAGS) if task == "token_classification" else 2, seed=1)


TASKS = ["sequence_classification", "token_classification"]


def test_fields_mark_mentions_for_both_tasks(tiny_kb: Path, tmp_path: Path) -> None:
    comp = _fusion(tiny_kb, tmp_path, "sequence_classification")
    out = comp.inject(TEXTS[0])
    index = {e.id: i for i, e in enumerate(comp.linker.kb.entities)}
    assert out[FIELD] == [[11, 16, index["paris_city"]], [21, 27, index["london"]]]
    assert out["text"] == TEXTS[0]["text"] and out["label"] == 1
    assert comp.inject(TEXTS[1])[FIELD] == []
    words = comp.inject(SENTENCES[0])
    assert words[FIELD] == [-1, -1, index["paris_city"], -1, index["london"]]
    assert words["tokens"] == SENTENCES[0]["tokens"] and words["tags"] == SENTENCES[0]["tags"]


@pytest.mark.parametrize("task", TASKS)
def test_every_sub_token_of_a_mention_gets_its_id_and_nothing_else(
    tiny_kb: Path, tmp_path: Path, task: str
) -> None:
    comp = _fusion(tiny_kb, tmp_path, task)
    batch = _batch(comp, task, _examples(task))
    tok = tiny_tokenizer()
    ids, marks = batch["input_ids"][0].tolist(), batch[FIELD][0].tolist()
    marked = "".join(
        tok.convert_ids_to_tokens([i for i, m in zip(ids, marks, strict=True) if m >= 0])
    )
    assert marked.replace("#", "") == "parislondon"
    assert len({m for m in marks if m >= 0}) == 2
    assert (batch[FIELD][batch["attention_mask"] == 0] == -1).all()  # padding never marked
    assert (batch[FIELD][1] == -1).all()


@pytest.mark.parametrize("task", TASKS)
def test_closed_gate_gives_the_base_model_outputs(tiny_kb: Path, tmp_path: Path, task: str) -> None:
    comp = _fusion(tiny_kb, tmp_path, task)
    batch = _batch(comp, task, _examples(task))
    plain = {k: v for k, v in batch.items() if k != FIELD}
    base = _model(task).eval()
    fused = comp.prepare_model(_model(task), tiny_tokenizer()).eval()
    with torch.no_grad():
        assert torch.equal(fused(**batch).logits, base(**plain).logits)
        # an open gate does change them
        fused.entity_fusion.gate.data.fill_(1.0)  # type: ignore[union-attr,operator]
        assert not torch.allclose(fused(**batch).logits, base(**plain).logits)


@pytest.mark.parametrize("task", TASKS)
def test_only_mention_token_embeddings_change(tiny_kb: Path, tmp_path: Path, task: str) -> None:
    comp = _fusion(tiny_kb, tmp_path, task, gate_init=1.0)
    batch = _batch(comp, task, _examples(task))
    model = comp.prepare_model(_model(task), tiny_tokenizer()).eval()
    seen: list[torch.Tensor] = []
    handle = model.get_input_embeddings().register_forward_hook(  # type: ignore[operator]
        lambda _m, _a, out: seen.append(out.detach())
    )
    with torch.no_grad():
        model(**batch)
        model(**{k: v for k, v in batch.items() if k != FIELD})
    handle.remove()
    changed = (seen[0] - seen[1]).abs().sum(-1) > 0
    assert torch.equal(changed, batch[FIELD] >= 0)


def test_gradients_reach_the_fusion_parameters(tiny_kb: Path, tmp_path: Path) -> None:
    task = "token_classification"
    for gate_init, expect in ((0.0, {"gate"}), (0.5, {"gate", "weight", "bias"})):
        comp = _fusion(tiny_kb, tmp_path, task, gate_init=gate_init)
        model = comp.prepare_model(_model(task), tiny_tokenizer())
        model(**_batch(comp, task, SENTENCES)).loss.backward()
        grads = {
            n.split(".")[-1]
            for n, p in model.named_parameters()
            if n.startswith("entity_fusion.") and p.grad is not None and p.grad.abs().sum() > 0
        }
        assert grads == expect, gate_init
        assert model.entity_fusion.table.grad is None  # type: ignore[union-attr]


def test_encoder_and_kb_vectors(tiny_kb: Path, tmp_path: Path) -> None:
    task = "sequence_classification"
    tok = tiny_tokenizer()
    enc = _fusion(tiny_kb, tmp_path, task, entity_vectors="encoder")
    emb = _fusion(tiny_kb, tmp_path, task)
    a = enc.prepare_model(_model(task), tok).entity_fusion.table  # type: ignore[union-attr]
    b = emb.prepare_model(_model(task), tok).entity_fusion.table  # type: ignore[union-attr]
    assert a.shape == b.shape and not torch.allclose(a, b)
    vectors = tmp_path / "vectors.jsonl"
    vectors.write_text(
        json.dumps({"id": "paris_city", "vector": [1.0, 0.0, 2.0]})
        + "\n"
        + json.dumps({"id": "london", "vector": [0.0, 1.0, 0.0]})
        + "\n"
    )
    with pytest.warns(UserWarning, match="have no vector"):
        kbv = _fusion(tiny_kb, tmp_path, task, entity_vectors="kb", vectors_file=str(vectors))
    assert kbv.inject(TEXTS[2])[FIELD] == []  # France has no vector: not fused
    model = kbv.prepare_model(_model(task), tok)
    assert model.entity_fusion.table.shape[1] == 3  # type: ignore[union-attr]
    assert model.entity_fusion.weight.shape == (32, 3)  # type: ignore[union-attr]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "nope", "vector": [1]}\n{"id": "london", "vector": []}\n')
    with pytest.raises(AugregError, match=r"line 1: id 'nope' is not in the KB(.|\n)*line 2"):
        _fusion(tiny_kb, tmp_path, task, entity_vectors="kb", vectors_file=str(bad))


def test_errors_name_the_fix(tiny_kb: Path, tmp_path: Path) -> None:
    with pytest.raises(AugregError, match="setup\\(\\) was not called"):
        Fusion(kb=str(tiny_kb)).prepare_model(_model("sequence_classification"), tiny_tokenizer())
    comp = _fusion(tiny_kb, tmp_path, "sequence_classification")
    with pytest.raises(AugregError, match="get_input_embeddings"):
        comp.prepare_model(torch.nn.Linear(2, 2))
    comp._tokenizer = None
    with pytest.raises(AugregError, match="prepare_model\\(model, tokenizer\\)"):
        comp.prepare_model(_model("sequence_classification"))
    with pytest.raises(AugregError, match="needs vectors_file"):
        augreg.create("entity_linking.fusion", kb=str(tiny_kb), entity_vectors="kb")
    with pytest.raises(AugregError, match="gate_init"):
        augreg.create("entity_linking.fusion", kb=str(tiny_kb), gate_init=9)


# -- whole pipelines -----------------------------------------------------------------------------


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _run(tmp: Path, kb: Path, task: str, **kwargs: Any) -> tuple[augreg.Pipeline, Any]:
    n = len(TAGS) if task == "token_classification" else 2
    folder = save_tiny_model(tmp / "model", task, n)
    data = _write(tmp / "train.jsonl", _examples(task) * 4)
    pipe = augreg.Pipeline(
        model={"name": str(folder), "max_length": 32},
        task={"type": task},
        data={"train": str(data), "test": str(data)},
        inject=[{"name": "entity_linking.fusion", "kb": str(kb), "gate_init": 0.5}],
        train={"epochs": 1, "batch_size": 4, "learning_rate": 1e-2, "progress": False, "seed": 3},
        **kwargs,
    )
    return pipe, pipe.run(tmp / "runs")


def _logits(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**{k: v for k, v in batch.items() if k != "labels"}).logits


def test_pipeline_token_classification_full_model_saves_and_loads(
    tiny_kb: Path, tmp_path: Path
) -> None:
    task = "token_classification"
    pipe, result = _run(tmp_path, tiny_kb, task)
    assert 0.0 <= result.metrics["test"]["f1"] <= 1.0
    model = pipe.trainer.model
    # the module trained: the gate moved from its initial value
    assert not torch.allclose(model.entity_fusion.gate, torch.full((32,), 0.5))
    batch = _batch(_fusion(tiny_kb, tmp_path, task), task, SENTENCES)
    loaded = augreg.load_model(result.run_dir)
    torch.testing.assert_close(_logits(loaded, batch), _logits(model, batch), atol=0, rtol=0)


def test_pipeline_with_lora_and_fgm_trains_fusion_and_loads_back(
    tiny_kb: Path, tmp_path: Path
) -> None:
    task = "sequence_classification"
    pipe, result = _run(
        tmp_path,
        tiny_kb,
        task,
        adapters=[{"name": "adapters.lora", "r": 2}],
        regularize=[{"name": "adversarial.fgm"}],
    )
    assert "accuracy" in result.metrics["test"]
    model = pipe.trainer.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if "entity_fusion" in n} == {
        f"base_model.model.entity_fusion.{x}" for x in ("weight", "bias", "gate")
    }
    assert not any("word_embeddings" in n for n in trainable)  # LoRA froze the base
    gate = model.base_model.model.entity_fusion.gate
    assert not torch.allclose(gate, torch.full_like(gate, 0.5))
    manifest = json.loads((result.run_dir / "model" / "augreg_model.json").read_text())
    assert manifest["inject"][0]["name"] == "entity_linking.fusion"
    batch = _batch(_fusion(tiny_kb, tmp_path, task), task, TEXTS)
    loaded = augreg.load_model(result.run_dir)
    torch.testing.assert_close(_logits(loaded, batch), _logits(model, batch), atol=0, rtol=0)
    # the fused ids matter for the trained model
    plain = {k: v for k, v in batch.items() if k != FIELD}
    assert not torch.allclose(_logits(loaded, plain), _logits(loaded, batch))


def test_gate_and_projection_train_at_the_scaled_learning_rate(
    tiny_kb: Path, tmp_path: Path
) -> None:
    """They start from scratch: the Trainer gives them lr_scale x the pipeline's rate."""
    from augreg.step import LR_SCALE

    pipe, _ = _run(tmp_path, tiny_kb, "sequence_classification")
    groups = pipe.trainer.optimizer.param_groups
    fusion = {id(p) for p in pipe.trainer.model.entity_fusion.parameters()}
    scaled = [g for g in groups if LR_SCALE in g]
    assert {id(p) for g in scaled for p in g["params"]} == fusion
    assert all(g[LR_SCALE] == 20.0 for g in scaled)
    assert not fusion & {id(p) for g in groups if LR_SCALE not in g for p in g["params"]}
    with pytest.raises(augreg.OptionsError, match="lr_scale"):
        augreg.create("entity_linking.fusion", kb=str(tiny_kb), lr_scale=0)
