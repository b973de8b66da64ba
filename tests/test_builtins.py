"""The built-in components: the conformance kit, plus the behaviour each one promises."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import augreg
from augreg.builtins.adapters import Freeze, LayerwiseLR, encoder_layers
from augreg.builtins.objectives import CrossEntropy, LabelSmoothing
from augreg.builtins.regularizers import L2SP, EmbeddingNoise, RDrop
from augreg.step import compute_loss
from augreg.testing import (
    AdapterContract,
    CombinerContract,
    ObjectiveContract,
    RegularizerContract,
    make_batch,
    sequence_examples,
    token_examples,
)
from augreg.testing.models import tiny_model, tiny_tokenizer

# -- the conformance kit ---------------------------------------------------------------------


class TestCrossEntropy(ObjectiveContract):
    component = "core.cross_entropy"


class TestLabelSmoothing(ObjectiveContract):
    component = "core.label_smoothing"
    options = {"epsilon": 0.2}


class TestWeightedSum(CombinerContract):
    component = "core.sum"


class TestL2SP(RegularizerContract):
    component = "core.l2sp"
    options = {"weight": 0.1, "head_weight": 0.01}


class TestRDrop(RegularizerContract):
    component = "core.rdrop"


class TestEmbeddingNoise(RegularizerContract):
    component = "core.embedding_noise"
    options = {"std": 0.05, "scale": "relative"}


class TestEmbeddingNoiseExtraPass(RegularizerContract):
    component = "core.embedding_noise"
    options = {"std": 0.05, "where": "extra_pass"}


class TestEmbeddingNoiseNEFTune(RegularizerContract):
    component = "core.embedding_noise"
    options = {"std": 5.0, "scale": "neftune"}


class TestFreeze(AdapterContract):
    component = "core.freeze"
    options = {"layers": 1}


class TestLayerwiseLR(AdapterContract):
    component = "core.layerwise_lr"
    options = {"decay": 0.8, "head_scale": 10.0}


# -- behaviour -------------------------------------------------------------------------------


def _seq_batch() -> dict[str, torch.Tensor]:
    return make_batch("sequence_classification", tiny_tokenizer(), sequence_examples())


def test_label_smoothing_equals_the_manual_formula() -> None:
    torch.manual_seed(0)
    model = tiny_model(num_labels=3).eval()
    with torch.no_grad():  # confident logits, so that smoothing visibly changes the loss
        model.classifier.weight.mul_(200.0)
    batch = _seq_batch()
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.detach()
    batch["labels"] = logits.argmax(-1)  # all correct: smoothing must raise the loss
    eps = 0.3
    result = compute_loss(model, batch, [LabelSmoothing(epsilon=eps)])
    logp = F.log_softmax(logits, -1)
    classes = logp.size(-1)
    target = torch.full_like(logp, eps / classes)
    target[torch.arange(len(logp)), batch["labels"]] += 1 - eps
    manual = float(-(target * logp).sum(-1).mean())
    assert math.isclose(float(result.loss.detach()), manual, rel_tol=1e-5)
    plain = float(compute_loss(model, batch, [CrossEntropy()]).loss.detach())
    assert manual > plain + 1e-2


def test_label_smoothing_ignores_minus_100_in_token_classification() -> None:
    batch = make_batch("token_classification", tiny_tokenizer(), token_examples())
    model = tiny_model("token_classification", num_labels=9).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(200.0)
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.detach()
    keep = batch["labels"] != -100
    eps = 0.1
    logp = F.log_softmax(logits[keep], -1)
    target = torch.full_like(logp, eps / logp.size(-1))
    target[torch.arange(len(logp)), batch["labels"][keep]] += 1 - eps
    manual = float(-(target * logp).sum(-1).mean())
    got = compute_loss(model, batch, [LabelSmoothing(epsilon=eps)], task="token_classification")
    assert math.isclose(float(got.loss.detach()), manual, rel_tol=1e-5)


def test_rdrop_is_zero_without_dropout_and_positive_with_it() -> None:
    batch = _seq_batch()
    off = tiny_model(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
    parts = compute_loss(off, batch, [CrossEntropy()], [RDrop()]).parts
    assert parts["core.rdrop"] == pytest.approx(0.0, abs=1e-6)
    on = tiny_model(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3).train()
    with torch.no_grad():  # logits far from zero, so that two dropout views disagree visibly
        on.classifier.weight.mul_(100.0)
    torch.manual_seed(1)
    assert compute_loss(on, batch, [CrossEntropy()], [RDrop()]).parts["core.rdrop"] > 1e-5


def test_l2sp_is_zero_at_step_0_positive_after_a_step_and_skips_the_head() -> None:
    torch.manual_seed(0)
    model = tiny_model().train()
    batch = _seq_batch()
    reg = L2SP(weight=1.0)
    state: dict[str, object] = {}
    first = compute_loss(model, batch, [CrossEntropy()], [reg], state=state)
    assert first.parts["core.l2sp"] == 0.0
    assert reg._anchor is not None
    assert not any(name.startswith("classifier") for name in reg._anchor)
    assert any(name.startswith("bert.") for name in reg._anchor)
    first.loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    model.zero_grad(set_to_none=True)
    after = compute_loss(model, batch, [CrossEntropy()], [reg], step=1, state=state)
    assert after.parts["core.l2sp"] > 0.0
    # Only the head moved: the anchored base is where it started, so the term is zero again.
    head_only = tiny_model().train()
    reg2 = L2SP(weight=1.0)
    compute_loss(head_only, batch, [CrossEntropy()], [reg2])
    with torch.no_grad():
        head_only.classifier.weight.add_(1.0)
    assert compute_loss(head_only, batch, [CrossEntropy()], [reg2]).parts["core.l2sp"] == 0.0
    # With head_weight the head is penalised by plain L2.
    reg3 = L2SP(weight=1.0, head_weight=1.0)
    assert compute_loss(head_only, batch, [CrossEntropy()], [reg3]).parts["core.l2sp"] > 0.0


def test_embedding_noise_extra_pass_increases_the_loss() -> None:
    model = tiny_model(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
    batch = _seq_batch()
    torch.manual_seed(0)
    noisy_reg = EmbeddingNoise(std=2.0, where="extra_pass")
    result = compute_loss(model, batch, [CrossEntropy()], [noisy_reg])
    clean = result.parts["core.cross_entropy"]
    noisy = result.parts["core.embedding_noise"]
    assert noisy > clean + 1e-3
    assert noisy_reg.extra_passes == 1.0
    torch.manual_seed(0)
    small = EmbeddingNoise(std=1e-4, where="extra_pass")
    out = compute_loss(model, batch, [CrossEntropy()], [small])
    assert out.parts["core.embedding_noise"] == pytest.approx(clean, abs=1e-3)


def test_embedding_noise_in_the_training_pass_costs_no_pass() -> None:
    """NEFTune style: the training pass itself is noisy; no term, no extra forward."""
    model = tiny_model(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
    batch = _seq_batch()
    reg = EmbeddingNoise(std=2.0)
    assert reg.extra_passes == 0.0 and not reg.has_term()
    calls = []
    handle = model.get_input_embeddings().register_forward_hook(lambda *a: calls.append(1))
    try:
        torch.manual_seed(0)
        noisy = compute_loss(model, batch, [CrossEntropy()], [reg])
    finally:
        handle.remove()
    assert len(calls) == 1, "a training-pass regularizer must not run a second forward"
    assert list(noisy.parts) == ["core.cross_entropy"]
    plain = compute_loss(model, batch, [CrossEntropy()])
    assert float(noisy.loss.detach()) > float(plain.loss.detach()) + 1e-3
    # Seeded: the same noise again; evaluation is never noisy.
    torch.manual_seed(0)
    again = compute_loss(model, batch, [CrossEntropy()], [reg])
    assert float(again.loss) == float(noisy.loss)
    model.eval()
    assert float(compute_loss(model, batch, [CrossEntropy()], [reg]).loss) == float(
        compute_loss(model, batch, [CrossEntropy()]).loss
    )
    with pytest.raises(RuntimeError, match="extra_pass"):
        reg.loss(None)  # type: ignore[arg-type]


def test_embedding_noise_never_on_padding_and_neftune_scale() -> None:
    from augreg.context import StepContext

    model = tiny_model().train()
    batch = _seq_batch()
    batch["attention_mask"][0, -2:] = 0
    seen: dict[str, torch.Tensor] = {}
    base = model.get_input_embeddings()
    handle = base.register_forward_hook(lambda _m, _a, out: seen.__setitem__("raw", out))
    try:
        ctx = StepContext(
            model,
            batch,
            clean_perturbers=[EmbeddingNoise(std=5.0, scale="neftune").clean_perturbation],
        )
        delta = ctx.embeddings - seen["raw"]
    finally:
        handle.remove()
    assert torch.count_nonzero(delta[0, -2:]) == 0
    assert torch.count_nonzero(delta[0, :-2]) > 0
    # NEFTune: |noise| <= alpha / sqrt(L d) entrywise, L the real length.
    length = int(batch["attention_mask"][0].sum())
    bound = 5.0 / (length * delta.size(-1)) ** 0.5
    assert float(delta[0].abs().max()) <= bound + 1e-6
    assert float(delta[0].abs().max()) > bound / 2


def test_freeze_embeddings_and_first_layers_is_idempotent() -> None:
    model = tiny_model()
    frozen = Freeze(embeddings=True, layers=1).prepare_model(model)
    emb = [n for n, p in frozen.named_parameters() if n.startswith("bert.embeddings.")]
    assert emb and all(not p.requires_grad for n, p in frozen.named_parameters() if n in emb)
    blocks = encoder_layers(frozen)
    assert all(not p.requires_grad for p in blocks[0].parameters())
    assert all(p.requires_grad for p in blocks[1].parameters())
    assert all(p.requires_grad for p in frozen.classifier.parameters())
    state = [(n, p.requires_grad) for n, p in frozen.named_parameters()]
    again = Freeze(embeddings=True, layers=1).prepare_model(frozen)
    assert [(n, p.requires_grad) for n, p in again.named_parameters()] == state


def test_freeze_only_layers_keeps_embeddings_trainable() -> None:
    model = Freeze(embeddings=False, layers=2).prepare_model(tiny_model())
    assert model.get_input_embeddings().weight.requires_grad
    assert all(not p.requires_grad for b in encoder_layers(model) for p in b.parameters())


def test_freeze_more_layers_than_the_model_has_is_an_error() -> None:
    with pytest.raises(augreg.OptionsError, match=r"layers must be <= 2 .*got 3"):
        Freeze(layers=3).prepare_model(tiny_model())


def _lr_scales(model: torch.nn.Module) -> dict[str, float]:
    from augreg.step import LR_SCALE

    return {n: float(getattr(p, LR_SCALE, 1.0)) for n, p in model.named_parameters()}


def test_layerwise_lr_decays_from_the_top_layer_down_and_scales_the_head() -> None:
    model = LayerwiseLR(decay=0.5, head_scale=20.0).prepare_model(tiny_model())
    scales = _lr_scales(model)
    # tiny_model has 2 blocks: layer 1 at the rate, layer 0 at 0.5, embeddings at 0.25.
    assert {s for n, s in scales.items() if n.startswith("bert.embeddings.")} == {0.25}
    assert {s for n, s in scales.items() if ".layer.0." in n} == {0.5}
    assert {s for n, s in scales.items() if ".layer.1." in n} == {1.0}
    assert {s for n, s in scales.items() if n.startswith("bert.pooler.")} == {1.0}
    assert {s for n, s in scales.items() if n.startswith("classifier.")} == {20.0}


def test_layerwise_lr_twice_gives_the_same_scales_and_keeps_another_components_scale() -> None:
    from augreg.step import aux_modules, set_lr_scale

    model = tiny_model()
    aux = aux_modules(model)
    aux["gate"] = torch.nn.Linear(4, 4)
    set_lr_scale(aux["gate"], 7.0)
    set_lr_scale([model.classifier.weight], 3.0)  # e.g. a component that marked the head
    adapter = LayerwiseLR(decay=0.5, head_scale=2.0)
    first = _lr_scales(adapter.prepare_model(model))
    assert _lr_scales(adapter.prepare_model(model)) == first
    assert first["classifier.weight"] == 6.0  # 3 x 2, once
    assert first["classifier.bias"] == 2.0
    assert {s for n, s in first.items() if "augreg_aux" in n} == {7.0}


def test_layerwise_lr_makes_optimizer_groups_at_the_scaled_rates() -> None:
    from augreg.step import split_lr_groups

    model = LayerwiseLR(decay=0.5, head_scale=20.0).prepare_model(tiny_model())
    optimizer = split_lr_groups(torch.optim.AdamW(model.parameters(), lr=1e-4))
    rates = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            rates[id(p)] = group["lr"]
    named = dict(model.named_parameters())
    assert rates[id(named["classifier.weight"])] == pytest.approx(2e-3)
    assert rates[id(named["bert.encoder.layer.1.output.dense.weight"])] == pytest.approx(1e-4)
    assert rates[id(named["bert.encoder.layer.0.output.dense.weight"])] == pytest.approx(5e-5)
    assert rates[id(named["bert.embeddings.word_embeddings.weight"])] == pytest.approx(2.5e-5)
    assert len(rates) == len(named)  # every parameter still trained, once


def test_layerwise_lr_without_transformer_blocks_is_an_error() -> None:
    with pytest.raises(augreg.OptionsError, match="no list of transformer blocks"):
        LayerwiseLR().prepare_model(torch.nn.Linear(3, 2))


@pytest.mark.parametrize("options", [{"decay": 0.0}, {"decay": 1.5}, {"head_scale": 0.0}])
def test_layerwise_lr_rejects_out_of_range_options(options: dict[str, float]) -> None:
    with pytest.raises(augreg.OptionsError):
        augreg.create("core.layerwise_lr", **options)
