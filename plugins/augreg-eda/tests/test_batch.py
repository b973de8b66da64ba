"""The numpy batch path of swap and deletion follows the one-sentence rules of Seq exactly."""

from __future__ import annotations

import random

import numpy as np
import pytest

import augreg
from augreg_eda._batch import delete_texts, swap_texts, uniform
from augreg_eda._seq import Seq
from augreg_eda.eda import Eda, RandomDeletion, RandomSwap

# words, punctuation, attached punctuation, non-Latin-1 letters and digits, a NUL inside a text
PIECES = ["a", "b", "Cc", "dé", "x1", "!", ",", ".", "'s", "n't", "well-made", "(", ")",
          '"', "great!", "etc.", "...", "¿qué?", "--", "_", "a_b", "ß", "٣", "日本", "x\0y",
          "\0"]  # fmt: skip
SEPARATORS = [" ", " ", " ", "  ", "\t", "\n", " \u00a0", "\u3000"]


def random_text(rnd: random.Random) -> str:
    toks = [rnd.choice(PIECES) for _ in range(rnd.randint(0, 25))]
    text = rnd.choice(["", "", " ", "\t"])
    for i, tok in enumerate(toks):
        text += tok + (rnd.choice(SEPARATORS) if i < len(toks) - 1 else "")
    return text + rnd.choice(["", "", " ", "  \n"])


def u(key: int, k: int) -> float:
    return float(uniform(np.array([key], dtype=np.uint64), k)[0])


def swap_by_seq(text: str, key: int, alpha: float) -> str | None:
    seq = Seq.from_text(text)
    words = seq.word_positions()
    m = len(words)
    if m < 2:
        return None
    for k in range(max(1, int(alpha * m))):
        a, b = int(u(key, 2 * k) * m), int(u(key, 2 * k + 1) * (m - 1))
        seq.swap_units([words[a]], [words[b + (b >= a)]])
    out = seq.text()
    return None if out == text else out


def delete_by_seq(text: str, key: int, p: float, at_least_one: bool) -> str | None:
    seq = Seq.from_text(text)
    words = seq.word_positions()
    m = len(words)
    if m < 2:
        return None
    drop = [i for j, i in enumerate(words) if u(key, j) < p]
    if len(drop) == m:
        drop.pop(int(u(key, m) * m))
    if not drop:
        if not at_least_one:
            return None
        drop = [words[int(u(key, m + 1) * m)]]
    seq.delete(set(drop))
    return seq.text()


@pytest.mark.parametrize("alpha", [0.1, 0.5])
def test_batch_ops_equal_seq_edits_with_the_same_choices(alpha: float) -> None:
    rnd = random.Random(0)
    for _ in range(40):
        texts = [random_text(rnd) for _ in range(rnd.randint(1, 30))]
        if rnd.random() < 0.3:  # Latin-1 batches take the one-byte path
            texts = [t.encode("latin-1", "ignore").decode("latin-1") for t in texts]
        keys = [rnd.getrandbits(64) for _ in texts]
        # equal to the input (two equal words swapped) counts as nothing written
        swapped = [
            None if s == t else s
            for s, t in zip(swap_texts(texts, keys, alpha), texts, strict=True)
        ]
        assert swapped == [swap_by_seq(t, k, alpha) for t, k in zip(texts, keys, strict=True)]
        for at_least_one in (True, False):
            deleted = delete_texts(texts, keys, alpha, at_least_one)
            assert deleted == [
                delete_by_seq(t, k, alpha, at_least_one) for t, k in zip(texts, keys, strict=True)
            ]


def test_batch_ops_do_not_depend_on_the_batch() -> None:
    rnd = random.Random(1)
    texts = [random_text(rnd) for _ in range(2500)]  # more than one internal chunk
    keys = [rnd.getrandbits(64) for _ in texts]
    for edit in (lambda t, k: swap_texts(t, k, 0.2), lambda t, k: delete_texts(t, k, 0.2)):
        whole = edit(texts, keys)
        assert whole == edit(texts[:700], keys[:700]) + edit(texts[700:], keys[700:])
        assert whole[:50] == [edit([t], [k])[0] for t, k in zip(texts[:50], keys[:50], strict=True)]
        assert sum(out is not None for out in whole) > 1500


@pytest.mark.parametrize("cls", [RandomSwap, RandomDeletion, Eda])
def test_mixed_batches_of_text_and_tokens(cls: type[augreg.Augmenter]) -> None:
    comp = cls(alpha=0.3, n_aug=4) if cls is Eda else cls(alpha=0.3)
    comp.setup(augreg.SetupContext())
    examples = [
        {"text": "The movie, frankly, was great!  Really good acting.", "label": 1},
        {"tokens": ["John", "Smith", "visited", "New", "York", "with", "his", "old", "friends"],
         "tags": ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O", "O", "O"]},
        {"text": "a gripping , well acted film with a haunting score .", "label": 0},
    ]  # fmt: skip
    seeds = [3, 4, 5]
    whole = comp.augment_batch(examples, [random.Random(s) for s in seeds])
    single = [comp.augment(ex, random.Random(s)) for ex, s in zip(examples, seeds, strict=True)]
    assert whole == single
    assert all(whole)
    for out in whole[1]:  # the spans stay whole, wherever they moved
        i, j = out["tokens"].index("New"), out["tokens"].index("John")
        assert out["tokens"][i : i + 2] == ["New", "York"]
        assert out["tags"][i : i + 2] == ["B-LOC", "I-LOC"]
        assert out["tags"][j : j + 2] == ["B-PER", "I-PER"]
