"""Behaviour of each adapter on tiny local models: what trains, what is frozen, what it computes."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import augreg
from augreg.testing import make_batch, sequence_examples, tiny_model, tiny_tokenizer
from augreg.testing.helpers import DEFAULT_TAGS, token_examples
from augreg_adapters import (
    IA3,
    LPFT,
    Bottleneck,
    LoRA,
    PrefixTuning,
    PromptTuning,
    head_modules,
    merge,
    trainable_summary,
)
from augreg_adapters.lp_ft_callback import switch_step
from augreg_adapters.peft_adapters import infer_lora_targets


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return tiny_tokenizer()


@pytest.fixture()
def batch(tokenizer: Any) -> dict[str, Any]:
    return make_batch(
        "sequence_classification", tokenizer, sequence_examples(), label_names=["neg", "pos"]
    )


def _trainable(model: torch.nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def _randomize_lora(model: torch.nn.Module) -> None:
    """lora_B starts at zero (the update is zero); give it values as training would."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


# -- LoRA ---------------------------------------------------------------------------------------


def test_lora_targets_bert_query_and_value_and_keeps_the_head_trainable() -> None:
    model = LoRA(r=4).prepare_model(tiny_model(seed=1))
    names = _trainable(model)
    assert names, "nothing trains"
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names if ".lora_" in n}
    assert adapted == {"query", "value"}
    head = [n for n in names if "classifier" in n]
    assert head and all("modules_to_save" in n for n in head)
    assert not [n for n in names if "lora_" not in n and "classifier" not in n]
    summary = trainable_summary(model)
    assert 0 < summary["trainable_share"] < 0.2


def test_lora_target_inference_for_other_architectures(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import GPT2Config, GPT2ForSequenceClassification

    gpt2 = GPT2ForSequenceClassification(
        GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    )
    assert infer_lora_targets(gpt2) == ["c_attn"]
    bert = tiny_model(seed=0)
    monkeypatch.setattr(bert.config, "model_type", "my_bert_variant")  # not in peft's table
    assert infer_lora_targets(bert) == ["query", "value"]


def test_lora_unknown_target_names_the_linear_layers() -> None:
    with pytest.raises(augreg.AugregError, match=r"target_modules \['qq'\].*'query'"):
        LoRA(target_modules=["qq"]).prepare_model(tiny_model())


def test_lora_merged_logits_equal_unmerged(batch: dict[str, Any]) -> None:
    model = LoRA(r=4, dropout=0.0).prepare_model(tiny_model(seed=2)).eval()
    _randomize_lora(model)
    with torch.no_grad():
        before = model(**batch).logits
        plain = tiny_model(seed=2).eval()(**batch).logits
        merged = merge(model)
        after = merged(**batch).logits
    assert not any("lora_" in n for n, _ in merged.named_parameters()), "not merged"
    assert type(merged).__name__ == "BertForSequenceClassification"
    assert not torch.allclose(before, plain, atol=1e-4), "the LoRA update had no effect"
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_ia3_merges_and_prefix_tuning_does_not(batch: dict[str, Any]) -> None:
    model = IA3().prepare_model(tiny_model(seed=3)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ia3_l" in name:
                p.mul_(1.5)
        before = model(**batch).logits
        after = merge(model)(**batch).logits
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    prefix = PrefixTuning(num_virtual_tokens=2).prepare_model(tiny_model())
    with pytest.raises(augreg.AugregError, match="cannot be merged"):
        merge(prefix)
    with pytest.raises(augreg.AugregError, match="no LoRA or IA3 adapter"):
        merge(tiny_model())


def test_applying_twice_is_a_no_op_and_other_options_are_an_error() -> None:
    lora = LoRA(r=4)
    once = lora.prepare_model(tiny_model())
    modules = [n for n, _ in once.named_modules()]
    assert lora.prepare_model(once) is once
    assert [n for n, _ in once.named_modules()] == modules
    with pytest.raises(augreg.AugregError, match="other options"):
        LoRA(r=8).prepare_model(once)
    with pytest.raises(augreg.AugregError, match="already has a peft adapter"):
        IA3().prepare_model(once)
    bottleneck = Bottleneck()
    adapted = bottleneck.prepare_model(tiny_model())
    blocks = [n for n, _ in adapted.named_modules() if n.endswith("augreg_bottleneck")]
    assert bottleneck.prepare_model(adapted) is adapted
    assert [n for n, _ in adapted.named_modules() if n.endswith("augreg_bottleneck")] == blocks
    with pytest.raises(augreg.AugregError, match="already has a bottleneck"):
        # A fresh instance on a model whose record was lost still finds the blocks.
        adapted.augreg_adapters = {}
        Bottleneck().prepare_model(adapted)


def test_peft_adapters_conflict_in_a_config() -> None:
    with pytest.raises(augreg.ConfigError, match=r"conflicts with adapters\.ia3"):
        augreg.Pipeline(
            model="unused",
            data={"train": __file__},
            adapters=["adapters.lora", "adapters.ia3"],
        )


# -- prefix and prompt tuning -------------------------------------------------------------------


def test_prefix_tuning_changes_attention_and_keeps_token_outputs_aligned(tokenizer: Any) -> None:
    task = "token_classification"
    batch = make_batch(task, tokenizer, token_examples(), label_names=DEFAULT_TAGS)
    plain = tiny_model(task, num_labels=len(DEFAULT_TAGS), seed=4).eval()
    model = PrefixTuning(num_virtual_tokens=3).prepare_model(
        tiny_model(task, num_labels=len(DEFAULT_TAGS), seed=4)
    )
    model.eval()
    out = model(**batch)
    assert out.logits.shape == plain(**batch).logits.shape
    out.loss.backward()
    prefix = [p for n, p in model.named_parameters() if "prompt_encoder" in n]
    assert prefix and all(p.grad is not None and p.grad.abs().sum() > 0 for p in prefix)


def test_prompt_tuning_is_for_sequence_classification_only() -> None:
    assert PromptTuning.supports_tasks == frozenset({"sequence_classification"})
    with pytest.raises(augreg.AugregError, match="sequence classification only"):
        PromptTuning().prepare_model(tiny_model("token_classification", num_labels=3))


def test_prompt_tuning_from_text_needs_a_tokenizer() -> None:
    with pytest.raises(augreg.AugregError, match="needs a tokenizer"):
        PromptTuning(init_text="a movie review").prepare_model(tiny_model())


# -- bottleneck ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("placement", "per_layer"), [("houlsby", 2), ("pfeiffer", 1)])
def test_bottleneck_places_blocks_and_freezes_the_encoder(placement: str, per_layer: int) -> None:
    model = Bottleneck(placement=placement, size=4).prepare_model(tiny_model())
    blocks = [n for n, _ in model.named_modules() if n.endswith("augreg_bottleneck")]
    assert len(blocks) == 2 * per_layer  # the tiny model has 2 layers
    assert all(n.endswith("output.dense.augreg_bottleneck") for n in blocks)
    trainable = _trainable(model)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any("query" in n for n in frozen) and "bert.embeddings.word_embeddings.weight" in frozen
    assert {n.split(".")[0] for n in trainable if "augreg_bottleneck" not in n} == {
        "bert",
        "classifier",
    }
    assert all(
        "LayerNorm" in n for n in trainable if n.startswith("bert.") and "bottleneck" not in n
    )


def test_bottleneck_starts_near_identity_and_learns(batch: dict[str, Any]) -> None:
    plain = tiny_model(seed=5).eval()
    model = Bottleneck(size=8).prepare_model(tiny_model(seed=5)).eval()
    with torch.no_grad():
        base, adapted = plain(**batch).logits, model(**batch).logits
    gap = float((base - adapted).abs().max())
    assert 0 < gap < 1e-2, f"logits moved by {gap} at initialisation"
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    blocks = {n: p.detach().clone() for n, p in model.named_parameters() if "bottleneck" in n}
    for _ in range(3):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), f"frozen {name} moved"
    assert any(not torch.equal(p, blocks[n]) for n, p in model.named_parameters() if n in blocks)


def test_bottleneck_names_what_is_missing_on_other_architectures() -> None:
    from transformers import GPT2Config, GPT2ForSequenceClassification

    def gpt2() -> Any:
        config = GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=32)
        config.pad_token_id = 0
        return GPT2ForSequenceClassification(config)

    with pytest.raises(
        augreg.AugregError, match=r"no module 'attention.output.dense'.*attn.c_proj"
    ):
        Bottleneck().prepare_model(gpt2())
    model = Bottleneck(attention_output="attn.c_proj", ffn_output="mlp.c_proj").prepare_model(
        gpt2()
    )
    out = model(input_ids=torch.tensor([[5, 6, 7]]), labels=torch.tensor([1]))
    out.loss.backward()
    assert len([n for n, _ in model.named_modules() if n.endswith("augreg_bottleneck")]) == 4


# -- LP-FT --------------------------------------------------------------------------------------


def test_lp_ft_switch_step() -> None:
    assert switch_step(0.5, "fraction", 10, 2) == 5
    assert switch_step(1.0, "epoch", 30, 3) == 10
    assert switch_step(0.01, "fraction", 10, 1) == 1


def test_lp_ft_keeps_everything_in_the_optimizer() -> None:
    model = LPFT().prepare_model(tiny_model())
    assert all(p.requires_grad for p in model.parameters())
    assert head_modules(model) == ["classifier"]


# -- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "options", "message"),
    [
        (LoRA, {"r": 0}, "r"),
        (LoRA, {"rank": 4}, "rank"),
        (LoRA, {"dropout": 1.0}, "dropout"),
        (Bottleneck, {"init_std": 0}, "init_std"),
        (Bottleneck, {"placement": "middle"}, "placement"),
        (LPFT, {"switch": 1.5}, "unit = 'epoch'"),
        (PrefixTuning, {"num_virtual_tokens": 0}, "num_virtual_tokens"),
    ],
)
def test_bad_options_are_named(
    cls: type[augreg.Adapter], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(augreg.OptionsError, match=message):
        cls(options)


def test_lp_ft_epoch_switch_may_exceed_one() -> None:
    assert LPFT(switch=1.5, unit="epoch").options.switch == 1.5


def test_head_override_must_name_a_top_level_module() -> None:
    with pytest.raises(augreg.AugregError, match="Fix the 'head' option"):
        LoRA(head=["clasifier"]).prepare_model(tiny_model())
