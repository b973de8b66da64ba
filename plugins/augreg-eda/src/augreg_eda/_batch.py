"""Random swap and random deletion on a whole batch of texts at once, with numpy.

Written by hand because nothing fast enough exists: nlpaug's ``RandomWordAug`` (and our own
one-sentence-at-a-time code on :class:`~augreg_eda._seq.Seq`) pay tens of Python operations
per token to split, classify, edit and rejoin: 60 (nlpaug) and 11-13 (ours) microseconds a
sentence on SST-2. Here the batch is one array of characters: tokens, words and word cores
come from a few whole-array passes, the random choices from a counter-based hash, and the new
texts from one rewritten array decoded and split in one go. About 2 microseconds a sentence
in large batches (``benchmarks/augment_speed.py``); a call also pays a fixed 0.1-0.2 ms of
numpy set-up, so one-example calls are slower than the old per-sentence code.

The rules are those of :mod:`augreg_eda._seq` (text mode): tokens are separated by whitespace,
a word is a token with a letter or digit, its core runs from its first to its last letter or
digit. Swap exchanges cores and leaves punctuation and separators where they are. Deletion
removes a word with the separator before it (after it, for words before the first token that
stays); a word with leading punctuation keeps its punctuation; a word's trailing punctuation
joins the token before unless that token already ends with it. ``tests/test_batch.py`` checks
the output against :class:`Seq`'s edits with the same choices.

Randomness: one 64-bit key per text, drawn by the caller from the example's own
``random.Random``; the ``k``-th uniform of a text is SplitMix64 at ``key + (k + 1) * golden``.
A text's output depends on its key only, never on the batch it came in.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["delete_texts", "swap_texts", "uniform"]

IArr = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
BArr = npt.NDArray[np.bool_]

_SPACE, _ALNUM, _OTHER = 0, 1, 2
_SEP = "\0"
_CHUNK = 1024
_MASK64 = (1 << 64) - 1


def _char_class(ch: str) -> int:
    # Seq's classes: \s (str.isspace) separates tokens, [^\W_] (str.isalnum) makes a word
    return _SPACE if ch.isspace() else _ALNUM if ch.isalnum() else _OTHER


_LATIN1 = np.array([_char_class(chr(c)) for c in range(256)], dtype=np.uint8)
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))


def uniform(key: U64, counter: IArr | int) -> npt.NDArray[np.float64]:
    """The ``counter``-th uniform in [0, 1) of each ``key`` (SplitMix64, element-wise).

    Example:
        >>> u = uniform(np.array([1, 1], dtype=np.uint64), np.array([0, 1]))
        >>> bool((0 <= u).all() and (u < 1).all() and u[0] != u[1])
        True
    """
    if isinstance(counter, int):  # Python ints: numpy scalars would warn on wrap-around
        x = key + np.uint64((counter + 1) * _GOLDEN & _MASK64)
    else:
        x = key + (counter.astype(np.uint64) + np.uint64(1)) * np.uint64(_GOLDEN)
    x ^= x >> _S30
    x *= _MIX1
    x ^= x >> _S27
    x *= _MIX2
    x ^= x >> _S31
    return (x >> _S11).astype(np.float64) * 2.0**-53


def _ranges(start: IArr, length: IArr) -> IArr:
    """Concatenated ``arange(start[k], start[k] + length[k])`` for every k."""
    ends = np.cumsum(length)
    idx = np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64)
    idx += np.repeat(start - (ends - length), length)
    return idx


def _pick(u: npt.NDArray[np.float64], n: IArr) -> IArr:
    return (u * n).astype(np.int64)  # int(u * n) as random.Random does; always < n


class _Batch:
    """The texts of a batch in one character array, with their tokens and words.

    Each text is followed by a separator (NUL, classed as a space), so no token crosses into
    the next text; text ``s`` is characters ``[start[s], end[s])``. Token ``t`` covers
    ``[ts[t], te[t])``; word ``w`` (a token with a letter or digit) is token ``widx[w]``, its
    core ``[cs[widx[w]], ce[widx[w]])``. The tokens of text ``s`` are
    ``tok_off[s]:tok_off[s + 1]``, its words ``word_off[s]:word_off[s + 1]`` (``words[s]``
    of them); ``wsent[w]`` is word ``w``'s text.
    """

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = texts
        n = len(texts)
        self.lens = np.fromiter(map(len, texts), dtype=np.int64, count=n)
        self.start = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(self.lens + 1, out=self.start[1:])
        self.end = self.start[:-1] + self.lens
        self.joined = joined = _SEP.join([*texts, ""])
        try:  # one byte a character when they all fit (ASCII, Latin-1)
            self.chars: npt.NDArray[np.unsignedinteger] = np.frombuffer(
                joined.encode("latin-1"), dtype=np.uint8
            )
            self.encoding = "latin-1"
            cls = np.take(_LATIN1, self.chars)
        except UnicodeEncodeError:
            self.chars = np.frombuffer(joined.encode("utf-32-le"), dtype="<u4")
            self.encoding = "utf-32-le"
            cls = np.take(_LATIN1, np.minimum(self.chars, 255))
            wide = (self.chars > 255).nonzero()[0]
            codes, inverse = np.unique(self.chars[wide], return_inverse=True)
            table = np.array([_char_class(chr(c)) for c in codes.tolist()], dtype=np.uint8)
            cls[wide] = table[inverse]
        cls[self.end] = _SPACE  # the separators (a NUL inside a text stays punctuation)
        size = len(cls)
        # token edges: where "not a space" changes (bool arrays take numpy's fastest paths)
        solid = np.zeros(size + 2, dtype=bool)
        np.not_equal(cls, _SPACE, out=solid[1:-1])
        edges = (solid[1:] != solid[:-1]).nonzero()[0]
        ts, te = edges[0::2], edges[1::2]
        # letters and digits before each character: per token, > 0 for a word, fewer than its
        # length when the word has punctuation; then its core runs from the character where
        # the count first goes up to the one where it last does
        before = np.zeros(size + 1, dtype=np.int32)
        np.cumsum(cls == _ALNUM, dtype=np.int32, out=before[1:])
        count = before[te] - before[ts]
        cs, ce = ts.copy(), te.copy()
        mixed = ((count > 0) & (count < te - ts)).nonzero()[0]
        cs[mixed] = np.searchsorted(before, before[ts[mixed]] + 1) - 1
        ce[mixed] = np.searchsorted(before, before[te[mixed]])
        self.ts, self.te, self.cs, self.ce = ts, te, cs, ce
        self.tok_off = np.searchsorted(ts, self.start)
        self.widx = (count > 0).nonzero()[0]
        self.word_off = np.searchsorted(self.widx, self.tok_off)
        self.words = self.word_off[1:] - self.word_off[:-1]
        self.wsent = np.repeat(np.arange(n, dtype=np.int64), self.words)

    def decode(self, chars: npt.NDArray[np.unsignedinteger], lens: IArr) -> list[str]:
        """The texts of ``chars`` (laid out like :attr:`chars`), ``lens`` characters long."""
        parts = chars.tobytes().decode(self.encoding).split(_SEP)
        if len(parts) == len(lens) + 1:
            return parts[:-1]
        joined = _SEP.join(parts)  # a text has a NUL of its own: cut by length instead
        bounds = np.cumsum(lens + 1).tolist()
        return [joined[a : b - 1] for a, b in zip([0, *bounds], bounds, strict=False)]


def _in_chunks(
    edit: Callable[..., list[str | None]], texts: Sequence[str], keys: Sequence[int], *args: Any
) -> list[str | None]:
    # About 1,000 texts a pass keep the arrays (a few MB) in the CPU cache: 1.5 against 2.2
    # microseconds a sentence for 7,000 texts at once on SST-2.
    out: list[str | None] = []
    for i in range(0, len(texts), _CHUNK):
        out.extend(edit(texts[i : i + _CHUNK], keys[i : i + _CHUNK], *args))
    return out


def swap_texts(texts: Sequence[str], keys: Sequence[int], alpha: float) -> list[str | None]:
    """Random swap of each text: ``n = max(1, int(alpha * words))`` swaps of two word cores.

    ``keys[i]`` (a 64-bit int from the example's rng) drives text ``i``: swap ``k`` takes
    words ``a = int(u[2k] * m)`` and ``b`` (``int(u[2k + 1] * (m - 1))``, skipping ``a``),
    ``m`` being the text's words. ``None`` for texts with fewer than two words, or whose
    swaps cancel out.

    Example:
        >>> swap_texts(["a b", "one"], [7, 7], 0.1)
        ['b a', None]
    """
    if len(texts) > _CHUNK:
        return _in_chunks(swap_texts, texts, keys, alpha)
    if not texts:
        return []
    b = _Batch(texts)
    m = b.words
    n = np.where(m >= 2, np.maximum(1, (alpha * m).astype(np.int64)), 0)
    key = np.fromiter(keys, dtype=np.uint64, count=len(texts))
    # all swaps at once, then applied round by round (a text's k-th swap in round k)
    swaps = int(n.sum())
    sent = np.repeat(np.arange(len(texts)), n)
    k = np.arange(swaps) - np.repeat(np.cumsum(n) - n, n)
    ms = m[sent]
    first = _pick(uniform(key[sent], 2 * k), ms)
    second = _pick(uniform(key[sent], 2 * k + 1), ms - 1)
    second += second >= first
    order = np.argsort(k, kind="stable")
    ga = (b.word_off[sent] + first)[order]
    gb = (b.word_off[sent] + second)[order]
    rounds = np.searchsorted(k[order], np.arange(int(n.max(initial=0)) + 1)).tolist()
    perm = np.arange(len(b.widx), dtype=np.int64)
    for lo, hi in itertools.pairwise(rounds):
        a, z = ga[lo:hi], gb[lo:hi]
        perm[a], perm[z] = perm[z], perm[a]
    moved = (perm != np.arange(len(perm))).nonzero()[0]
    if not len(moved):
        return [None] * len(texts)
    # Each text keeps its length: rewrite the stretch from its first to its last moved core
    # as moved core, kept gap, moved core, ..., moved core.
    dst, src = b.widx[moved], b.widx[perm[moved]]
    at = b.wsent[moved]
    last = np.ones(len(moved), dtype=bool)
    last[:-1] = at[1:] != at[:-1]
    first_moved = np.ones(len(moved), dtype=bool)
    first_moved[1:] = last[:-1]
    next_start = np.zeros(len(moved), dtype=np.int64)
    next_start[:-1] = b.cs[dst[1:]]
    pieces = np.empty((len(moved), 2), dtype=np.int64)
    sizes = np.empty_like(pieces)
    pieces[:, 0], sizes[:, 0] = b.cs[src], b.ce[src] - b.cs[src]
    pieces[:, 1], sizes[:, 1] = b.ce[dst], np.where(last, 0, next_start - b.ce[dst])
    region = b.cs[dst[first_moved]]
    chars = b.chars.copy()
    chars[_ranges(region, b.ce[dst[last]] - region)] = np.take(
        b.chars, _ranges(pieces.ravel(), sizes.ravel())
    )
    changed = np.zeros(len(texts), dtype=bool)
    changed[at] = True
    return [
        t if c else None for t, c in zip(b.decode(chars, b.lens), changed.tolist(), strict=True)
    ]


def delete_texts(
    texts: Sequence[str], keys: Sequence[int], p: float, at_least_one: bool = True
) -> list[str | None]:
    """Random deletion of each text: each word goes with probability ``p``; one word stays.

    ``keys[i]`` drives text ``i``: word ``j`` (of ``m``) is deleted when ``u[j] < p``; if all
    are, word ``int(u[m] * m)`` stays; if none is, word ``int(u[m + 1] * m)`` goes
    (``at_least_one``) or the text gets ``None``. ``None`` also for texts with fewer than two
    words.

    Example:
        >>> delete_texts(["a b", "one"], [7, 7], 0.01)
        ['a', None]
    """
    if len(texts) > _CHUNK:
        return _in_chunks(delete_texts, texts, keys, p, at_least_one)
    if not texts:
        return []
    b = _Batch(texts)
    m = b.words
    key = np.fromiter(keys, dtype=np.uint64, count=len(texts))
    ok = m >= 2
    wpos = np.arange(len(b.widx), dtype=np.int64) - b.word_off[b.wsent]
    drop = (uniform(key[b.wsent], wpos) < p) & ok[b.wsent]
    dropped = np.bincount(b.wsent[drop], minlength=len(texts))
    every = (ok & (dropped == m)).nonzero()[0]
    drop[b.word_off[every] + _pick(uniform(key[every], m[every]), m[every])] = False
    none = (ok & (dropped == 0)).nonzero()[0]
    if at_least_one:
        drop[b.word_off[none] + _pick(uniform(key[none], m[none] + 1), m[none])] = True
    else:
        ok[none] = False
    t = b.widx[drop]  # the deleted tokens, in order
    sent = b.wsent[drop]
    ts, te, cs, ce = b.ts, b.te, b.cs, b.ce
    pure = (cs[t] == ts[t]) & (ce[t] == te[t])
    # the first token that stays (kept, or deleted down to its punctuation) in each text
    gone = np.zeros(len(ts), dtype=bool)
    gone[t[pure]] = True
    stays = (~gone).nonzero()[0]
    lead = stays[np.searchsorted(stays, b.tok_off[sent])]
    before = t < lead
    core_only = ~before & ((cs[t] > ts[t]) | (t == lead))
    glued = ~before & ~core_only & ~pure
    # characters removed: the word and the separator after it (before the first token that
    # stays), the core (the word keeps its punctuation), or the separator before and the word
    # (a word with trailing punctuation only: that punctuation stays, glued to the token before)
    start = np.where(before, ts[t], np.where(core_only, cs[t], te[t - 1]))
    after = ts[np.minimum(t + 1, len(ts) - 1)]
    end = np.where(before, after, np.where(core_only, ce[t], np.where(pure, te[t], ce[t])))
    if glued.any():
        _unglue(b, t, core_only, glued, end)
    keep = np.ones(len(b.chars), dtype=bool)
    keep[_ranges(start, end - start)] = False
    removed = np.bincount(sent, weights=end - start, minlength=len(texts)).astype(np.int64)
    new = b.decode(b.chars[keep], b.lens - removed)
    return [t if k else None for t, k in zip(new, ok.tolist(), strict=True)]


def _unglue(b: _Batch, t: IArr, core_only: BArr, glued: BArr, end: IArr) -> None:
    """Leave out a glued suffix that its host token already ends with, as ``Seq.delete`` does.

    ``"great! movie!"`` without ``movie`` gives ``"great!"``: the ``end`` of such a deleted
    token (of ``t``) moves past its suffix. Glued tokens are visited in order, each checked
    against the text its host (the token before that stays) has by then: its own, minus its
    core if deleted, plus the suffixes glued to it so far.
    """
    stays = np.ones(len(b.ts), dtype=bool)
    stays[t[~core_only]] = False
    stay = stays.nonzero()[0]
    at = glued.nonzero()[0]
    g = t[at]
    host = stay[np.searchsorted(stay, g) - 1]
    deleted = np.zeros(len(b.ts), dtype=bool)
    deleted[t] = True
    text = b.joined
    current: dict[int, str] = {}
    for k, j, core_end, tok_end, h_start, h_core, h_core_end, h_end, h_deleted in zip(
        at.tolist(),
        host.tolist(),
        b.ce[g].tolist(),
        b.te[g].tolist(),
        b.ts[host].tolist(),
        b.cs[host].tolist(),
        b.ce[host].tolist(),
        b.te[host].tolist(),
        deleted[host].tolist(),
        strict=True,
    ):
        if j not in current:
            current[j] = (
                text[h_start:h_core] + text[h_core_end:h_end] if h_deleted else text[h_start:h_end]
            )
        suffix = text[core_end:tok_end]
        if current[j].endswith(suffix):
            end[k] = tok_end
        else:
            current[j] += suffix
