"""consistency.self_training: thresholds, FlexMatch and distribution-alignment balancing, EMA."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from augreg.components import SetupContext
from augreg.testing import tiny_model
from augreg_consistency.self_training import (
    SelfTraining,
    align_distribution,
    flexmatch_thresholds,
)


@pytest.fixture()
def make(setup_ctx: SetupContext) -> Any:
    def build(**options: Any) -> SelfTraining:
        st = SelfTraining({"augmenter": "eda.random_swap", **options})
        st.setup(setup_ctx)
        return st

    return build


def test_zero_when_every_prediction_is_below_the_threshold(make: Any, step_ctx: Any) -> None:
    ctx = step_ctx()
    term = make(threshold=0.99, balance="none").loss(ctx)
    assert float(term.detach()) == 0.0
    assert ctx.state["consistency.self_training"]["mask_rate"] == 0.0


def test_pseudo_labels_train_the_strong_view(make: Any, step_ctx: Any) -> None:
    ctx = step_ctx()
    term = make(threshold=0.0, balance="none").loss(ctx)
    assert float(term.detach()) > 0
    term.backward()  # type: ignore[no-untyped-call]
    assert ctx.model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_fixed_threshold_keeps_confident_examples_only(make: Any, step_ctx: Any) -> None:
    st = make(threshold=0.8, balance="none")
    logits = torch.tensor([[3.0, 0.0], [0.5, 0.0], [0.0, 2.0], [0.0, 1.0]])  # p 0.95 .62 .88 .73
    pseudo, mask = st.pseudo_labels(step_ctx(), logits, ["a", "b", "c", "d"])
    assert pseudo.tolist() == [0, 0, 1, 1] and mask.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_flexmatch_thresholds_follow_the_paper() -> None:
    counts = torch.tensor([10.0, 2.0])
    t = flexmatch_thresholds(0.9, counts, unused=0)
    assert t[0] == pytest.approx(0.9)  # the best-learnt class keeps the full threshold
    assert t[1] == pytest.approx(0.2 / 1.8 * 0.9)  # M(0.2) = 0.2 / (2 - 0.2)
    warm = flexmatch_thresholds(0.9, counts, unused=20)  # most examples not yet confident
    assert warm[0] == pytest.approx(0.5 / 1.5 * 0.9)


def test_flexmatch_lowers_the_threshold_of_the_rarely_predicted_class(
    make: Any, step_ctx: Any
) -> None:
    st = make(threshold=0.9, balance="flexmatch")
    ctx = step_ctx()
    # Earlier steps: ten examples confidently class 0, two confidently class 1.
    latest = {f"x{i}": 0 for i in range(10)} | {"y0": 1, "y1": 1}
    ctx.state["consistency.self_training"] = {"latest": dict(latest)}
    logits = torch.tensor([[0.7, 0.0], [0.0, 0.7]])  # both 0.67 confident, classes 0 and 1
    pseudo, mask = st.pseudo_labels(ctx, logits, ["a", "b"])
    assert pseudo.tolist() == [0, 1]
    assert mask.tolist() == [0.0, 1.0]  # class 1 passes its lower threshold, class 0 does not
    state = ctx.state["consistency.self_training"]
    assert state["thresholds"][1] < state["thresholds"][0] == pytest.approx(0.9)
    assert state["latest"]["a"] == -1 and state["latest"]["b"] == -1  # below 0.9: not confident
    plain = make(threshold=0.9, balance="none")
    _, plain_mask = plain.pseudo_labels(step_ctx(), logits, ["a", "b"])
    assert plain_mask.tolist() == [0.0, 0.0]


def test_distribution_alignment_pulls_toward_the_labelled_prior(make: Any, step_ctx: Any) -> None:
    probs = torch.tensor([[0.7, 0.3], [0.6, 0.4]])
    running = torch.tensor([0.8, 0.2])  # the model predicts class 0 far too often
    aligned = align_distribution(probs, running, torch.tensor([0.5, 0.5]))
    assert torch.allclose(aligned.sum(-1), torch.ones(2))
    assert bool((aligned[:, 1] > probs[:, 1]).all())
    st = make(threshold=0.6, balance="distribution_alignment")
    ctx = step_ctx()
    ctx.state["consistency.self_training"] = {"running": running}
    pseudo, mask = st.pseudo_labels(ctx, torch.log(probs), ["a", "b"])
    assert pseudo.tolist() == [1, 1] and mask.tolist() == [1.0, 1.0]  # 0.7/0.8 < 0.3/0.2
    assert ctx.state["consistency.self_training"]["running"][0] < 0.8


def test_ema_teacher_is_a_separate_slowly_following_copy(make: Any, step_ctx: Any) -> None:
    st = make(threshold=0.0, balance="none", teacher="ema", ema_decay=0.5)
    model = tiny_model("sequence_classification", seed=0).train()
    state: dict[str, Any] = {}
    st.loss(step_ctx(model, step=0, state=state))
    teacher = state["consistency.self_training"]["teacher"]
    assert all(
        t.data_ptr() != s.data_ptr()
        for t, s in zip(teacher.parameters(), model.parameters(), strict=True)
    )
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    st.loss(step_ctx(model, step=0, state=state))  # same step (accumulation): no update
    w_t = teacher.classifier.weight
    w_s = model.classifier.weight
    assert torch.allclose(w_t + 1.0, w_s)
    st.loss(step_ctx(model, step=1, state=state))
    assert torch.allclose(w_t + 0.5, w_s)  # halfway with decay 0.5


def test_prior_comes_from_the_labelled_examples(setup_ctx: SetupContext) -> None:
    st = SelfTraining(augmenter="eda.random_swap")
    st.setup(setup_ctx)
    assert st._prior == [0.5, 0.5]
