"""consistency.uda: masking, the target's gradient, sharpening, views, warm-up, errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import augreg
from augreg.components import SetupContext
from augreg.context import StepContext
from augreg.testing import make_batch, tiny_model, tiny_tokenizer
from augreg_consistency.uda import Uda


@pytest.fixture()
def make(setup_ctx: SetupContext) -> Any:
    def build(**options: Any) -> Uda:
        uda = Uda({"augmenter": "eda.random_swap", **options})
        uda.setup(setup_ctx)
        return uda

    return build


def test_zero_when_every_prediction_is_below_the_threshold(make: Any, step_ctx: Any) -> None:
    uda = make(threshold=0.99)  # an untrained 2-class model is never that sure
    ctx = step_ctx()
    term = uda.loss(ctx)
    assert float(term.detach()) == 0.0
    assert ctx.state["consistency.uda"]["mask_rate"] == 0.0
    term.backward()  # type: ignore[no-untyped-call]
    assert all(p.grad is None or not p.grad.any() for p in ctx.model.parameters())


def test_threshold_zero_keeps_every_example_and_trains(make: Any, step_ctx: Any) -> None:
    uda = make(threshold=0.0)
    ctx = step_ctx()
    term = uda.loss(ctx)
    assert float(term.detach()) > 0 and ctx.state["consistency.uda"]["mask_rate"] == 1.0
    term.backward()  # type: ignore[no-untyped-call]
    assert ctx.model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_the_sharpened_target_carries_no_gradient(
    make: Any, step_ctx: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    uda = make(threshold=0.0)
    ctx = step_ctx()
    passes: list[tuple[bool, torch.Tensor]] = []
    real = StepContext.forward

    def spy(self: StepContext, *args: Any, **kwargs: Any) -> Any:
        out = real(self, *args, **kwargs)
        passes.append((bool(kwargs.get("dropout", True)), out.logits))
        return out

    monkeypatch.setattr(StepContext, "forward", spy)
    uda.loss(ctx)
    (target_dropout, target_logits), (view_dropout, view_logits) = passes
    assert not target_logits.requires_grad and not target_dropout  # clean pass: no grad, eval
    assert view_logits.requires_grad and view_dropout  # the view trains, with dropout
    logits = torch.tensor([[2.0, 0.0], [0.1, 0.0]], requires_grad=True)
    target, mask = uda.target(logits)
    assert not target.requires_grad and not mask.requires_grad


def test_target_is_sharpened_by_the_temperature(make: Any, step_ctx: Any) -> None:
    logits = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    sharp, _ = make(temperature=0.4).target(logits)
    plain, _ = make(temperature=1.0).target(logits)
    assert torch.allclose(plain, torch.softmax(logits, -1))
    assert bool((sharp.amax(-1) > plain.amax(-1)).all())
    _, mask = make(threshold=0.8).target(logits)  # confidence 0.73 and 0.95
    assert mask.tolist() == [0.0, 1.0]


def test_views_are_seeded_by_example_and_step(
    make: Any, step_ctx: Any, unlabelled_texts: list[str]
) -> None:
    uda = make(augmenter="eda.random_swap", augmenter_options={"alpha": 0.5})
    examples = [{"augreg_id": f"u:{i}", "text": t} for i, t in enumerate(unlabelled_texts)]
    at0 = uda.views(step_ctx(step=0), examples, "cpu")["input_ids"]
    again = make(augmenter_options={"alpha": 0.5})
    assert torch.equal(at0, again.views(step_ctx(step=0), examples, "cpu")["input_ids"])
    assert not torch.equal(at0, uda.views(step_ctx(step=1), examples, "cpu")["input_ids"])
    clean = tiny_tokenizer()(unlabelled_texts, padding=True, return_tensors="pt")["input_ids"]
    assert not torch.equal(at0, clean)  # the view differs from the text


def test_views_fall_back_to_the_text_when_the_augmenter_writes_nothing(
    make: Any, step_ctx: Any
) -> None:
    uda = make(augmenter="eda.random_swap")
    ctx = step_ctx()
    one_word = [{"augreg_id": "u:0", "text": "film"}]  # nothing to swap
    uda.views(ctx, one_word, "cpu")
    assert ctx.state["consistency.uda"]["views_fallback"] == 1


def test_warmup_ramps_the_term(make: Any, step_ctx: Any) -> None:
    full = make(threshold=0.0)
    ramped = make(threshold=0.0, warmup_steps=4)
    torch.manual_seed(1)
    a = float(full.loss(step_ctx(step=0)).detach())
    torch.manual_seed(1)
    b = float(ramped.loss(step_ctx(step=0)).detach())
    assert b == pytest.approx(a / 4, rel=1e-5)
    assert ramped.ramp(step_ctx(step=10)) == 1.0


def test_no_unlabelled_batch_is_an_error_unless_the_labelled_one_is_used(
    make: Any, step_ctx: Any
) -> None:
    tok = tiny_tokenizer()
    batch = make_batch("sequence_classification", tok, [{"text": "great film", "label": 1}])
    ctx = StepContext(tiny_model("sequence_classification"), batch)
    with pytest.raises(augreg.AugregError, match=r"data\.unlabelled"):
        make().loss(ctx)
    uda = make(use_labelled=True, threshold=0.0)
    assert float(uda.loss(ctx).detach()) >= 0.0
    _, examples = uda.unlabelled_batch(ctx)
    assert [ex["text"] for ex in examples] == ["great film"]


def test_augmenter_is_checked_with_the_options() -> None:
    with pytest.raises(augreg.OptionsError, match=r"Did you mean 'eda\.eda'"):
        Uda(augmenter="eda.edaa")
    with pytest.raises(augreg.OptionsError, match="augmenter_options: nope"):
        Uda(augmenter="eda.random_swap", augmenter_options={"nope": 1})
    with pytest.raises(augreg.OptionsError, match="per-step views"):
        Uda(augmenter="adversarial.word_substitution")
    with pytest.raises(augreg.OptionsError, match="threshold"):
        Uda(threshold=1.0)


def test_an_augmenter_that_may_change_labels_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from augreg_eda.eda import RandomSwap

    monkeypatch.setattr(RandomSwap, "changes_labels", True)
    with pytest.raises(augreg.OptionsError, match="may change labels"):
        Uda(augmenter="eda.random_swap")


def test_an_augmenter_without_the_task_is_refused_at_setup(setup_ctx: SetupContext) -> None:
    uda = Uda(augmenter="eda.mention_replacement")  # token classification only
    with pytest.raises(augreg.AugregError, match="does not support sequence_classification"):
        uda.setup(setup_ctx)
