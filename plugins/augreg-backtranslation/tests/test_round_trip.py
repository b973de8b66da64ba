"""Behaviour of backtranslation.round_trip with tiny local Marian models."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from pathlib import Path

import pytest

import augreg
from augreg import AugregError, OptionsError
from augreg_backtranslation.align import realign
from augreg_backtranslation.round_trip import RoundTrip

TEXTS = [
    "The movie, frankly, was great!",
    "Good.",
    "I hate this phone; the battery broke after a week and nobody at the shop cared.",
    "John Smith said the plot was boring and the acting was poor.",
    "What a wonderful, beautiful film. Really.",
    "Paris",
    "They went to London and loved it.",
]


def _examples() -> list[augreg.Example]:
    return [{"text": t, "label": i % 2, "augreg_id": f"s:{i}"} for i, t in enumerate(TEXTS)]


def _rngs(n: int, seed: int = 0) -> list[random.Random]:
    return [random.Random(seed * 1000 + i) for i in range(n)]


def test_batched_equals_one_by_one_beam(
    make: Callable[..., RoundTrip], models: dict[str, str]
) -> None:
    """Length-sorted batches of 3 (padding, reordering) give the one-at-a-time outputs."""
    aug = make(models["random"], None, num_beams=2, paraphrases=2, batch_size=3, length_ratio=None)
    ((fwd, _),) = aug._steps  # type: ignore[misc]
    alone = [fwd.translate([t], n=2)[0] for t in TEXTS]
    assert fwd.translate(TEXTS, n=2) == alone
    assert len({tuple(a) for a in alone}) == len(TEXTS)  # outputs depend on the input
    batch = aug.augment_batch(_examples(), _rngs(len(TEXTS)))
    single = [aug.augment(ex, rng) for ex, rng in zip(_examples(), _rngs(len(TEXTS)), strict=True)]
    assert batch == single
    assert any(batch)


def test_cache_second_run_translates_nothing(
    make: Callable[..., RoundTrip], models: dict[str, str], tmp_path: Path
) -> None:
    first = make(models["random"], tmp_path, length_ratio=None)
    out1 = first.augment_batch(_examples(), _rngs(len(TEXTS)))
    assert first.counts()["translated"] >= len(TEXTS)  # both ways (equal outputs once)
    second = make(models["random"], tmp_path, length_ratio=None)  # a new process would do the same
    out2 = second.augment_batch(_examples(), _rngs(len(TEXTS)))
    assert out2 == out1
    assert second.counts()["translated"] == 0
    assert second.counts()["cache_hits"] == 2 * len(TEXTS)
    # other decoding options are other keys: translated again
    other = make(models["random"], tmp_path, num_beams=2, length_ratio=None)
    other.augment_batch(_examples(), _rngs(len(TEXTS)))
    assert other.counts()["translated"] >= len(TEXTS) and other.counts()["cache_hits"] == 0


def test_same_seed_same_samples(make: Callable[..., RoundTrip], models: dict[str, str]) -> None:
    aug = make(models["random"], None, sample=True, paraphrases=2, length_ratio=None, batch_size=4)
    a = aug.augment_batch(_examples(), _rngs(len(TEXTS), seed=1))
    b = aug.augment_batch(_examples(), _rngs(len(TEXTS), seed=1))
    c = aug.augment_batch(_examples(), _rngs(len(TEXTS), seed=2))
    assert a == b
    assert a != c  # another seed samples other paraphrases
    one = [aug.augment(ex, r) for ex, r in zip(_examples(), _rngs(len(TEXTS), seed=1), strict=True)]
    assert one == a  # sampling does not depend on the batch


def test_sampling_cache_is_per_seed(
    make: Callable[..., RoundTrip], models: dict[str, str], tmp_path: Path
) -> None:
    aug = make(models["random"], tmp_path, sample=True, length_ratio=None)
    aug.augment_batch(_examples(), _rngs(len(TEXTS), seed=1))
    again = make(models["random"], tmp_path, sample=True, length_ratio=None)
    again.augment_batch(_examples(), _rngs(len(TEXTS), seed=1))
    assert again.counts()["translated"] == 0
    again.augment_batch(_examples(), _rngs(len(TEXTS), seed=2))
    assert again.counts()["translated"] == 2 * len(TEXTS)


def test_filters_are_counted(make: Callable[..., RoundTrip], models: dict[str, str]) -> None:
    aug = make(models["trained"], None, num_beams=2, paraphrases=2, length_ratio=(0.9, 1.1))
    out = aug.augment_batch(_examples(), _rngs(len(TEXTS)))
    c = aug.counts()
    dropped = c["identical"] + c["duplicate"] + c["length_ratio"] + c["similarity"]
    assert c["candidates"] == 2 * len(TEXTS) == c["kept"] + dropped
    assert c["kept"] == sum(len(o) for o in out)
    assert c["length_ratio"] > 0 and c["kept"] > 0
    for ex, outs in zip(_examples(), out, strict=True):
        for new in outs:
            ratio = len(new["text"].split()) / len(ex["text"].split())
            assert 0.9 <= ratio <= 1.1 and new["text"] != ex["text"]
    loose = make(models["trained"], None, num_beams=2, paraphrases=2, length_ratio=None)
    loose.augment_batch(_examples(), _rngs(len(TEXTS)))
    assert loose.counts()["length_ratio"] == 0 and loose.counts()["kept"] > c["kept"]


def test_identical_outputs_dropped(make: Callable[..., RoundTrip], models: dict[str, str]) -> None:
    # names only: the toy model copies them, so the round trip returns the source
    # (whether the toy model copies every name exactly depends on library versions: the
    # claim is that exactly the outputs equal to their source are dropped, and counted)
    ex = [{"text": "John Smith", "label": 0}, {"text": "Paris London", "label": 1}]
    keep = make(models["trained"], None, length_ratio=None, drop_identical=False)
    outputs = [o[0]["text"] for o in keep.augment_batch(ex, _rngs(2))]
    same = [out == e["text"] for out, e in zip(outputs, ex, strict=True)]
    assert any(same), outputs
    aug = make(models["trained"], None, length_ratio=None)
    dropped = [not o for o in aug.augment_batch(ex, _rngs(2))]
    assert dropped == same
    assert aug.counts()["identical"] == sum(same)


def test_similarity_filter(
    make: Callable[..., RoundTrip], models: dict[str, str], tmp_path: Path
) -> None:
    from augreg.testing import save_tiny_model

    encoder = str(save_tiny_model(tmp_path / "encoder"))
    strict = make(models["trained"], None, length_ratio=None, min_similarity=1.0, encoder=encoder)
    assert strict.augment_batch(_examples(), _rngs(len(TEXTS))) == [[] for _ in TEXTS]
    assert strict.counts()["similarity"] > 0
    lax = make(models["trained"], None, length_ratio=None, min_similarity=-1.0, encoder=encoder)
    assert any(lax.augment_batch(_examples(), _rngs(len(TEXTS))))
    assert lax.counts()["similarity"] == 0
    assert strict.counts()["similarity"] == lax.counts()["kept"]


TOKEN_EXAMPLES = [
    {"tokens": "John Smith went to New York City .".split(),
     "tags": ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC", "O"], "augreg_id": "t:0"},
    {"tokens": "Mary loves Paris and London , really !".split(),
     "tags": ["B-PER", "O", "B-LOC", "O", "B-LOC", "O", "O", "O"], "augreg_id": "t:1"},
    {"tokens": "The Bank of France said no .".split(),
     "tags": ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O", "O"], "augreg_id": "t:2"},
    {"tokens": "Anna said the movie was great .".split(),
     "tags": ["B-PER", "O", "O", "O", "O", "O", "O"], "augreg_id": "t:3"},
    {"tokens": "Peter went to Berlin with Mary .".split(),
     "tags": ["B-PER", "O", "O", "B-LOC", "O", "B-PER", "O"], "augreg_id": "t:4"},
]  # fmt: skip


def test_token_classification_keeps_mentions(
    make: Callable[..., RoundTrip], models: dict[str, str]
) -> None:
    aug = make(models["trained"], None, "token_classification", num_beams=4, paraphrases=3,
               length_ratio=None)  # fmt: skip
    out = aug.augment_batch(copy.deepcopy(TOKEN_EXAMPLES), _rngs(len(TOKEN_EXAMPLES)))
    c = aug.counts()
    assert c["entity_kept"] == c["kept"] == sum(len(o) for o in out) > 0
    # Whether the trained toy model garbles a name depends on library versions; dropping
    # candidates that lost a mention is checked below with random weights, which keep none.
    for ex, outs in zip(TOKEN_EXAMPLES, out, strict=True):
        source = [(ex["tokens"][s:e], k) for s, e, k in _spans(ex["tags"])]
        for new in outs:
            assert len(new["tokens"]) == len(new["tags"])
            got = [(new["tokens"][s:e], k) for s, e, k in _spans(new["tags"])]
            assert sorted(map(str, got)) == sorted(map(str, source))
    # random weights keep no name: every candidate dropped and counted
    garbled = make(models["random"], None, "token_classification", length_ratio=None)
    assert garbled.augment_batch(copy.deepcopy(TOKEN_EXAMPLES), _rngs(5)) == [[]] * 5
    assert (
        garbled.counts()["entity_missing"]
        == garbled.counts()["candidates"] - garbled.counts()["identical"]
    )


def _spans(tags: list[str]) -> list[tuple[int, int, str]]:
    from augreg.testing import entity_spans

    return entity_spans(tags)


def test_realign_moves_tags_and_drops_missing() -> None:
    tokens = ["Mary", "met", "John", "Smith", "in", "Paris", "."]
    tags = ["B-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "O"]
    assert realign(tokens, tags, "In Paris, John Smith met Mary.") == (
        ["In", "Paris", ",", "John", "Smith", "met", "Mary", "."],
        ["O", "B-LOC", "O", "B-PER", "I-PER", "O", "B-PER", "O"],
    )
    assert realign(tokens, tags, "In Paris, John met Mary.") is None  # "John Smith" missing
    assert realign(tokens, tags, "Maryland met John Smith in Paris.") is None  # not a word
    assert realign(["Paris", "Paris"], ["B-LOC", "B-LOC"], "Paris only") is None


def test_realigned_count(make: Callable[..., RoundTrip], models: dict[str, str]) -> None:
    aug = make(models["trained"], None, "token_classification", length_ratio=None)
    ex = {"tokens": ["Mary", "said", "no", "."], "tags": ["B-PER", "O", "O", "O"]}
    out = aug.augment(ex, random.Random(0))
    assert out and out[0]["tags"][0] == "B-PER"
    assert aug.counts()["entity_realigned"] == 0  # Mary stayed first
    shifted = {"tokens": ["Well", ",", "Mary", "said", "no"], "tags": ["O", "O", "B-PER", "O", "O"]}
    moved = make(models["trained"], None, "token_classification", length_ratio=None)
    outs = moved.augment(shifted, random.Random(0))
    realigned = sum(o["tags"] != shifted["tags"] for o in outs)
    assert moved.counts()["entity_realigned"] == realigned


def test_empty_text_is_an_error(make: Callable[..., RoundTrip], models: dict[str, str]) -> None:
    aug = make(models["random"], None)
    with pytest.raises(AugregError, match="empty text"):
        aug.augment({"text": "  ", "label": 0, "augreg_id": "x"}, random.Random(0))
    with pytest.raises(AugregError, match="empty text"):
        aug.augment({"tokens": [], "tags": []}, random.Random(0))


def test_missing_model_says_how_to_provide_it(tmp_path: Path) -> None:
    empty = tmp_path / "no-model"
    empty.mkdir()
    aug = RoundTrip(pivots=[{"forward": str(empty), "back": str(empty)}])
    with pytest.raises(AugregError) as info:
        aug.setup(augreg.SetupContext(cache_dir=tmp_path))
    msg = str(info.value)
    assert "pivot 0 forward" in msg and "local folder" in msg and "hub name" in msg
    assert "Helsinki-NLP/opus-mt-en-de" in msg


@pytest.mark.parametrize(
    ("options", "fix"),
    [
        ({"sample": True, "num_beams": 4}, "remove num_beams"),
        ({"temperature": 0.7}, "set sample = true"),
        ({"paraphrases": 5}, "raise num_beams"),
        ({"copies": 2}, "use paraphrases = N"),
        ({"length_ratio": (2.0, 1.0)}, "0 < low < high"),
        ({"pivots": []}, "pivots"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_options_name_the_fix(options: dict[str, object], fix: str) -> None:
    with pytest.raises(OptionsError, match=fix):
        RoundTrip(options)


def test_run_report_has_the_counts(
    make: Callable[..., RoundTrip], models: dict[str, str], tmp_path: Path
) -> None:
    """The data stage puts the filter counts in the run report."""
    from datasets import Dataset

    from augreg.data import DataStage

    aug = make(models["trained"], None, num_beams=2, paraphrases=2, length_ratio=(0.9, 1.1))
    stage = DataStage([], [aug], seed=0, task="sequence_classification", cache_dir=None,
                      show_progress=False)  # fmt: skip
    out = stage.expand(Dataset.from_list(_examples()))
    report = stage.report[aug.name]
    assert report["candidates"] == 2 * len(TEXTS)
    assert report["length_ratio"] == aug.counts()["length_ratio"] > 0
    assert report["kept"] == report["written"] == len(out) - len(TEXTS)


def test_pickled_copy_reloads(
    make: Callable[..., RoundTrip], models: dict[str, str], tmp_path: Path
) -> None:
    import pickle

    aug = make(models["random"], tmp_path, length_ratio=None)
    first = aug.augment_batch(_examples(), _rngs(len(TEXTS)))
    clone = pickle.loads(pickle.dumps(aug))  # a data-loader worker
    assert clone.augment_batch(_examples(), _rngs(len(TEXTS))) == first
    assert clone.counts()["translated"] == 0  # read from the same cache
