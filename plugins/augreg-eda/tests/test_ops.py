"""What each op promises: which words change, how many, and that text and spans stay intact."""

from __future__ import annotations

import copy
import pickle
import random
from collections import Counter
from typing import Any

import pytest

import augreg
from augreg.tasks import spans
from augreg.testing import token_examples
from augreg_eda._seq import Seq, split_core
from augreg_eda.eda import (
    Eda,
    MentionReplacement,
    RandomDeletion,
    RandomInsertion,
    RandomSwap,
    SynonymReplacement,
)
from augreg_eda.lexicon import Lexicon
from augreg_eda.noise import CharRandom, Keyboard, Ocr, Spelling

SEQ = augreg.SetupContext(task="sequence_classification")
TOK = augreg.SetupContext(task="token_classification", train_examples=token_examples())
TEXT = "The movie, frankly, was great!  Really good acting\tand a moving story."
SST = "a gripping , well acted film with a haunting score and a clever , sad ending ."
NER = {
    "tokens": ["Yesterday", "John", "Smith", "visited", "New", "York", "City", "with",
               "his", "old", "friends", "from", "Acme", "Corp", "."],
    "tags": ["O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC", "O",
             "O", "O", "O", "O", "B-ORG", "I-ORG", "O"],
}  # fmt: skip


def built(cls: type[augreg.Augmenter], ctx: augreg.SetupContext = SEQ, **opts: Any) -> Any:
    comp = cls(**opts)
    comp.setup(ctx)
    return comp


def one(comp: Any, example: dict[str, Any], seed: int) -> dict[str, Any] | None:
    out = comp.augment(copy.deepcopy(example), random.Random(seed))
    assert len(out) <= 1
    return out[0] if out else None


def words(text: str) -> list[str]:
    return [split_core(t)[1] for t in text.split() if split_core(t)[1]]


def skeleton(text: str) -> list[tuple[str, str]]:
    """Each whitespace token's punctuation, i.e. the text with its words blanked out."""
    return [(p, s) for p, _, s in map(split_core, text.split())]


def mentions(example: dict[str, Any]) -> Counter[tuple[str, tuple[str, ...]]]:
    toks = example["tokens"]
    return Counter((kind, tuple(toks[a:b])) for a, b, kind in spans(example["tags"]))


class FakeLex(Lexicon):
    """Every word has exactly one synonym: itself + 'z'; no stopwords. No WordNet."""

    def __init__(self) -> None:
        self.stopwords = frozenset()
        self._cache = {}

    def synonyms(self, word: str) -> tuple[str, ...]:
        return (word.lower() + "z",)


def with_fake(comp: Any) -> Any:
    comp._lexicon = FakeLex()
    return comp


# -- random swap -----------------------------------------------------------------------------


def test_swap_keeps_the_words_punctuation_and_spacing() -> None:
    swap = built(RandomSwap, alpha=0.3)
    changed = 0
    for seed in range(30):
        out = one(swap, {"text": TEXT, "label": 1}, seed)
        if out is None:
            continue
        changed += 1
        assert Counter(words(out["text"])) == Counter(words(TEXT))
        assert skeleton(out["text"]) == skeleton(TEXT)
        # separators stay where they were: the double space and the tab
        assert out["text"].split(" ")[0] in {w for w in words(TEXT)}
        assert "!  " in out["text"] and "\t" in out["text"]
        assert out["label"] == 1
    assert changed >= 25


def test_swap_and_deletion_on_one_word_or_empty_write_nothing() -> None:
    for cls in (RandomSwap, RandomDeletion):
        comp = built(cls)
        for text in ("", "   ", "great", "great !", "!"):
            assert comp.augment({"text": text, "label": 0}, random.Random(0)) == [], (cls, text)
        assert comp.augment({"tokens": ["Paris"], "tags": ["B-LOC"]}, random.Random(0)) == []
        assert comp.augment({"tokens": [], "tags": []}, random.Random(0)) == []


def test_alpha_sets_the_number_of_swaps() -> None:
    text = " ".join(f"w{i}" for i in range(20))

    def moved(alpha: float) -> float:
        swap = built(RandomSwap, alpha=alpha)
        total = 0
        for seed in range(50):
            out = one(swap, {"text": text, "label": 0}, seed)
            assert out is not None
            total += sum(a != b for a, b in zip(text.split(), out["text"].split(), strict=True))
        return total / 50

    # n = 1 swap moves 2 words; n = 10 swaps move most of them
    assert moved(0.05) == 2
    assert moved(0.5) > 10


# -- random deletion -------------------------------------------------------------------------


def test_deletion_only_deletes_and_keeps_punctuation() -> None:
    rd = built(RandomDeletion, alpha=0.3)
    for seed in range(30):
        out = one(rd, {"text": SST, "label": 1}, seed)
        assert out is not None
        src, new = SST.split(), out["text"].split()
        it = iter(src)
        assert all(tok in it for tok in new), "output is not a subsequence of the input"
        assert [t for t in new if not t.isalnum()] == [t for t in src if not t.isalnum()]
        assert len(new) < len(src) and words(out["text"])


def test_deletion_rate_follows_p() -> None:
    text = " ".join(f"w{i}" for i in range(40))
    for p in (0.1, 0.3):
        rd = built(RandomDeletion, alpha=p)
        deleted = [
            40 - len(one(rd, {"text": text, "label": 0}, s)["text"].split()) for s in range(200)
        ]  # type: ignore[index]
        assert abs(sum(deleted) / (200 * 40) - p) < 0.03


def test_deletion_keeps_attached_punctuation() -> None:
    rd = built(RandomDeletion, alpha=0.99)
    out = one(rd, {"text": "Wow, so great!", "label": 1}, 0)
    assert out is not None
    assert out["text"].count(",") == 1 and out["text"].endswith("!")
    assert len(words(out["text"])) == 1


def test_deletion_without_at_least_one_can_write_nothing() -> None:
    rd = built(RandomDeletion, alpha=0.01, at_least_one=False)
    outs = [rd.augment({"text": "a b c d", "label": 0}, random.Random(s)) for s in range(20)]
    assert [] in outs
    strict = built(RandomDeletion, alpha=0.01)
    assert all(strict.augment({"text": "a b c d", "label": 0}, random.Random(s)) for s in range(20))


# -- synonym replacement ---------------------------------------------------------------------


def test_synonym_replacement_uses_wordnet_synonyms_never_stopwords(lex: Lexicon) -> None:
    sr = built(SynonymReplacement, alpha=0.3)
    replaced = 0
    for seed in range(20):
        out = one(sr, {"text": TEXT, "label": 1}, seed)
        assert out is not None
        before = TEXT.split()
        after = out["text"].split()
        if len(before) != len(after):  # a multi-word synonym: compare word sets instead
            continue
        for a, b in zip(before, after, strict=True):
            if a == b:
                continue
            pa, ca, sa = split_core(a)
            pb, cb, sb = split_core(b)
            assert (pa, sa) == (pb, sb), "punctuation moved"
            assert ca.lower() not in lex.stopwords
            assert cb.lower() in lex.synonyms(ca), f"{cb} is not a WordNet synonym of {ca}"
            assert ca[0].isupper() == cb[0].isupper(), "casing not kept"
            replaced += 1
    assert replaced >= 10


def test_synonym_replacement_keeps_capitalization(lex: Lexicon) -> None:
    sr = built(SynonymReplacement, alpha=0.01)
    out = one(sr, {"text": "Movie", "label": 1}, 0)
    assert (
        out is not None
        and out["text"][0].isupper()
        and out["text"].lower() in lex.synonyms("movie")
    )
    assert one(sr, {"text": "MOVIE", "label": 1}, 0)["text"].isupper()  # type: ignore[index]


def test_only_stopwords_or_no_synonyms_write_nothing(lex: Lexicon) -> None:
    for cls in (SynonymReplacement, RandomInsertion):
        comp = built(cls)
        assert comp.augment({"text": "the and of , it", "label": 0}, random.Random(0)) == []
        assert comp.augment({"text": "xqzzt , 1234", "label": 0}, random.Random(0)) == []


def test_alpha_sets_the_number_of_replacements_and_insertions() -> None:
    text = (
        " ".join(["alpha", "bravo", "charlie", "delta", "echo"] * 1)
        + " "
        + " ".join(f"word{c}" for c in "abcdefghijklmno")
    )  # 20 distinct words
    for alpha, n in ((0.05, 1), (0.1, 2), (0.25, 5), (0.5, 10)):
        sr = with_fake(built(SynonymReplacement, alpha=alpha))
        ri = with_fake(built(RandomInsertion, alpha=alpha))
        for seed in range(5):
            out = one(sr, {"text": text, "label": 0}, seed)
            assert out is not None
            assert sum(w.endswith("z") for w in out["text"].split()) == n
            out = one(ri, {"text": text, "label": 0}, seed)
            assert out is not None
            assert len(out["text"].split()) == 20 + n


def test_synonym_replacement_replaces_every_occurrence() -> None:
    sr = with_fake(built(SynonymReplacement, alpha=0.01))
    out = one(sr, {"text": "Good good GOOD", "label": 1}, 0)
    assert out is not None and out["text"] == "Goodz goodz GOODZ"


# -- random insertion ------------------------------------------------------------------------


def test_insertion_inserts_synonyms_of_words_in_the_sentence(lex: Lexicon) -> None:
    ri = built(RandomInsertion, alpha=0.2)
    source = [w for w in words(SST) if w.isalpha() and w not in lex.stopwords]
    for seed in range(20):
        out = one(ri, {"text": SST, "label": 1}, seed)
        assert out is not None
        extra = Counter(out["text"].split()) - Counter(SST.split())
        assert extra, "nothing inserted"
        assert not Counter(SST.split()) - Counter(out["text"].split()), "a token was lost"
        synonyms = {part for w in source for s in lex.synonyms(w) for part in s.split()}
        assert set(extra) <= synonyms


# -- token classification --------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls", [SynonymReplacement, RandomInsertion, RandomSwap, RandomDeletion, Eda]
)
def test_entity_spans_stay_whole_and_tags_aligned(cls: type[augreg.Augmenter]) -> None:
    comp = built(cls, TOK, alpha=0.3)
    examples = [NER, *token_examples()]
    written = 0
    for seed in range(15):
        for ex in examples:
            for out in comp.augment(copy.deepcopy(ex), random.Random(seed)):
                written += 1
                assert len(out["tokens"]) == len(out["tags"])
                assert mentions(out) == mentions(ex), "an entity span changed"
                for tag in out["tags"]:
                    assert tag == "O" or tag[:2] in ("B-", "I-")
                # every tag I-X continues an X span (valid IOB2)
                for prev, tag in zip(["O", *out["tags"]], out["tags"], strict=False):
                    if tag.startswith("I-"):
                        assert prev[2:] == tag[2:]
                if cls is RandomDeletion:
                    it = iter(ex["tokens"])
                    assert all(t in it for t in out["tokens"])
    assert written > 30


def test_insertion_never_inside_a_span() -> None:
    ri = with_fake(built(RandomInsertion, TOK, alpha=0.9))
    for seed in range(30):
        out = one(ri, NER, seed)
        assert out is not None
        for tok, tag in zip(out["tokens"], out["tags"], strict=True):
            if tok.endswith("z"):
                assert tag == "O"
        assert mentions(out) == mentions(NER)


def test_swap_moves_whole_spans() -> None:
    swap = built(RandomSwap, TOK, alpha=0.5)
    moved = False
    for seed in range(20):
        out = one(swap, NER, seed)
        assert out is not None
        assert Counter(out["tokens"]) == Counter(NER["tokens"])
        starts = [a for a, _, _ in spans(out["tags"])]
        moved |= starts != [a for a, _, _ in spans(NER["tags"])]
    assert moved


def test_multiword_synonyms_become_o_tokens() -> None:
    class TwoWords(FakeLex):
        def synonyms(self, word: str) -> tuple[str, ...]:
            return ("very " + word.lower(),)

    sr = built(SynonymReplacement, TOK, alpha=0.01)
    sr._lexicon = TwoWords()
    out = one(sr, NER, 0)
    assert out is not None and len(out["tokens"]) == len(NER["tokens"]) + 1
    i = out["tokens"].index("very")
    assert out["tags"][i] == out["tags"][i + 1] == "O"


def test_mention_replacement_uses_same_type_training_mentions() -> None:
    train = [
        NER,
        {"tokens": ["Mary", "Ann", "Lee", "left", "Paris", "."],
         "tags": ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "O"]},
        {"tokens": ["IBM", "hired", "Bob"], "tags": ["B-ORG", "O", "B-PER"]},
    ]  # fmt: skip
    known: dict[str, set[tuple[str, ...]]] = {}
    for ex in train:
        for (kind, m), _ in mentions(ex).items():
            known.setdefault(kind, set()).add(m)
    mr = built(MentionReplacement, augreg.SetupContext(task="token_classification",
                                                       train_examples=train), p=0.5)  # fmt: skip
    changed = 0
    for seed in range(30):
        out = one(mr, NER, seed)
        assert out is not None
        assert [k for _, _, k in spans(out["tags"])] == [k for _, _, k in spans(NER["tags"])]
        for (kind, m), _ in mentions(out).items():
            assert m in known[kind], f"{m} is not a training {kind} mention"
        changed += mentions(out) != mentions(NER)
        outside = [t for t, g in zip(out["tokens"], out["tags"], strict=True) if g == "O"]
        assert outside == [t for t, g in zip(NER["tokens"], NER["tags"], strict=True) if g == "O"]
    assert changed == 30


def test_mention_replacement_needs_training_mentions() -> None:
    mr = MentionReplacement()
    with pytest.raises(augreg.AugregError, match="training examples"):
        mr.setup(augreg.SetupContext(task="token_classification"))
    with pytest.raises(augreg.AugregError, match="token classification"):
        mr.setup(augreg.SetupContext(task="sequence_classification", train_examples=[]))
    lonely = built(MentionReplacement, augreg.SetupContext(
        task="token_classification", train_examples=[NER]))  # fmt: skip
    assert lonely.augment(copy.deepcopy(NER), random.Random(0)) == []  # no other mention


# -- normalization and text faithfulness -----------------------------------------------------


def test_text_is_kept_as_written_unless_normalize() -> None:
    swap = built(RandomSwap)
    out = one(swap, {"text": TEXT, "label": 1}, 3)
    assert out is not None and any(c.isupper() for c in out["text"]) and "," in out["text"]
    norm = built(RandomSwap, normalize=True)
    out = one(norm, {"text": TEXT, "label": 1}, 3)
    assert out is not None
    assert out["text"] == out["text"].lower() and set(out["text"]) <= set(
        "abcdefghijklmnopqrstuvwxyz "
    )
    with pytest.raises(augreg.AugregError, match="normalize"):
        RandomSwap(normalize=True).setup(TOK)


def test_seq_rejoins_text_exactly() -> None:
    for text in [TEXT, " lead and trail ", "tab\tsep\n new line", "one", "", "   "]:
        assert Seq.from_text(text).text() == text


# -- eda and presets -------------------------------------------------------------------------


def test_presets_and_auto() -> None:
    def params(ctx: augreg.SetupContext, **opts: Any) -> tuple[float, int]:
        eda = Eda(**opts)
        eda.setup(ctx)
        return eda.params

    assert params(SEQ, preset="paper-500") == (0.05, 16)
    assert params(SEQ, preset="paper-2000") == (0.05, 8)
    assert params(SEQ, preset="paper-5000") == (0.1, 4)
    assert params(SEQ, preset=None) == (0.1, 9)
    sized = {n: augreg.SetupContext(train_examples=[{}] * n) for n in (500, 2000, 5000, 20000)}
    assert params(sized[500]) == (0.05, 16)
    assert params(sized[2000]) == (0.05, 8)
    assert params(sized[5000]) == params(sized[20000]) == (0.1, 4)
    assert params(sized[500], alpha=0.2) == (0.2, 16)
    assert params(sized[5000], n_aug=2) == (0.1, 2)
    with pytest.raises(augreg.AugregError, match="preset='auto'"):
        Eda().setup(SEQ)


def test_auto_preset_changes_the_cache_fingerprint() -> None:
    small, large = Eda(), Eda()
    small.setup(augreg.SetupContext(train_examples=[{}] * 500))
    large.setup(augreg.SetupContext(train_examples=[{}] * 5000))
    assert small.fingerprint() != large.fingerprint()


def test_eda_writes_n_aug_examples_spread_over_the_ops() -> None:
    eda = with_fake(built(Eda, preset="paper-500"))
    text = " ".join(f"word{c}" for c in "abcdefghijklmnopqrst")
    outs = eda.augment({"text": text, "label": 1}, random.Random(0))
    assert len(outs) == 16 and len({o["text"] for o in outs}) == 16
    kinds = Counter()
    for o in outs:
        toks = o["text"].split()
        if len(toks) > 20:
            kinds["insertion"] += 1
        elif len(toks) < 20:
            kinds["deletion"] += 1
        elif any(t.endswith("z") for t in toks):
            kinds["replacement"] += 1
        else:
            kinds["swap"] += 1
    assert kinds == {"insertion": 4, "deletion": 4, "replacement": 4, "swap": 4}
    only_swap = with_fake(built(Eda, preset="paper-2000", ops=("random_swap",)))
    outs = only_swap.augment({"text": text, "label": 1}, random.Random(0))
    # one swap among 20 words: a repeated swap is dropped, so up to 8 distinct outputs
    assert 6 <= len(outs) <= 8 and len({o["text"] for o in outs}) == len(outs)
    assert all(sorted(o["text"].split()) == sorted(text.split()) for o in outs)


# -- noise ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Keyboard, Ocr, CharRandom, Spelling])
def test_noise_is_seeded_and_leaves_global_random_state_alone(cls: type[augreg.Augmenter]) -> None:
    import numpy as np

    comp = built(cls)
    random.seed(5)
    np.random.seed(5)
    py, npy = random.getstate(), np.random.get_state()[1].copy()
    first = [comp.augment({"text": TEXT, "label": 1}, random.Random(s)) for s in range(5)]
    assert random.getstate() == py and (np.random.get_state()[1] == npy).all()
    random.seed(99)
    assert first == [comp.augment({"text": TEXT, "label": 1}, random.Random(s)) for s in range(5)]
    assert any(first)
    for outs in first:
        for out in outs:
            assert skeleton(out["text"]) == skeleton(TEXT)
            assert "!  " in out["text"] and "\t" in out["text"]
    for seed in range(5):
        for out in comp.augment(copy.deepcopy(NER), random.Random(seed)):
            assert out["tags"] == NER["tags"]
            ents = [t for t, g in zip(NER["tokens"], NER["tags"], strict=True) if g != "O"]
            assert [t for t, g in zip(out["tokens"], out["tags"], strict=True) if g != "O"] == ents


def test_spelling_draws_the_same_in_every_process_and_only_word_like_misspellings() -> None:
    """nlpaug's table is in hash-seed order and holds wiki markup ("[[realy"); ours is neither."""
    import os
    import subprocess
    import sys

    script = (
        "import json, random\n"
        "from augreg_eda.noise import Spelling\n"
        "c = Spelling(Spelling.Options())\n"
        f"print(json.dumps([c.augment({{'text': {TEXT!r}, 'label': 1}}, random.Random(s)) "
        "for s in range(40)]))\n"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": hs},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hs in ("0", "1")
    }
    assert len(outs) == 1
    table = built(Spelling).aug.model.dict
    assert "really" in table and "[[realy" not in table["really"] and "realy" in table["really"]
    assert all(v == sorted(v) and k not in v for k, v in table.items())
    assert not any(c in w for vs in table.values() for w in vs for c in "[]()\\?")


# -- pickling after set-up (worker processes) ------------------------------------------------


@pytest.mark.parametrize("cls", [SynonymReplacement, Eda, Keyboard])
def test_set_up_component_pickles_and_gives_the_same_output(cls: type[augreg.Augmenter]) -> None:
    comp = built(cls, augreg.SetupContext(train_examples=[{}] * 500))
    clone = pickle.loads(pickle.dumps(comp))
    for seed in range(5):
        ex = {"text": TEXT, "label": 1}
        assert clone.augment(ex, random.Random(seed)) == comp.augment(ex, random.Random(seed))
