"""Tiny Marian translation models built and trained locally, for tests and benchmarks.

No real translation model can be downloaded where augreg's tests run, so the plugin's tests
and ``benchmarks/backtranslation_speed.py`` use models built from a ``MarianConfig`` with a
SentencePiece tokenizer trained here (the same ``MarianTokenizer`` files a hub MarianMT model
ships: ``source.spm``, ``target.spm``, ``vocab.json``). They load through the same code path
as ``Helsinki-NLP/opus-mt-en-de`` (``AutoTokenizer`` / ``AutoModelForSeq2SeqLM`` on a folder).

Two kinds:

* ``random``: untrained weights. Outputs are arbitrary (and rarely stop before the length
  limit), which is what the batching, caching and seeding tests need: every text gives a
  different, input-dependent output. Built in well under a second.
* ``trained``: a "pivot language" model trained for a few seconds on a toy task: copy the
  sentence, replacing a few words along a cycle (``movie -> film -> picture -> movie``,
  ``great -> good -> fine -> great``, ...). Used as both directions of a round trip it writes
  real paraphrases that keep names verbatim, so the token-classification path (keep a
  paraphrase only when every entity mention survives) can be tested end to end.

Cost: ``random`` about 0.2 s; ``trained`` a few seconds of CPU training (once per session in
the tests; folders are removed by the caller).

Example:
    >>> folder = build_tiny_model(tmp_path / "tiny", kind="trained")  # doctest: +SKIP
    >>> RoundTrip(pivots=[{"forward": str(folder), "back": str(folder)}])  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import json
import random
import shutil
import string
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Literal

__all__ = ["CYCLES", "NAMES", "build_tiny_model", "tiny_models", "toy_corpus", "toy_translate"]

CYCLES: tuple[tuple[str, ...], ...] = (
    ("movie", "film", "picture"),
    ("great", "good", "fine"),
    ("boring", "dull", "tedious"),
    ("said", "stated", "told"),
    ("went", "travelled", "moved"),
    ("loves", "adores", "likes"),
    ("really", "truly", "very"),
)
"""Word cycles of the toy pivot language: each word is replaced by the next one."""

NAMES: tuple[str, ...] = (
    "John", "Smith", "Mary", "Paris", "London", "New", "York", "City", "Bank", "France",
    "Germany", "Europe", "United", "States", "President", "Berlin", "Anna", "Peter",
)  # fmt: skip

_WORDS: tuple[str, ...] = (
    "the", "a", "an", "and", "but", "not", "is", "was", "were", "it", "this", "that", "he",
    "she", "they", "we", "i", "to", "in", "of", "on", "at", "for", "with", "from", "plot",
    "acting", "story", "phone", "battery", "broke", "after", "week", "what", "wonderful",
    "beautiful", "hate", "poor", "frankly", "no", "so", "very", "city", "people", "new",
)  # fmt: skip

_NEXT: dict[str, str] = {w: c[(i + 1) % len(c)] for c in CYCLES for i, w in enumerate(c)}


def toy_translate(text: str) -> str:
    """The toy pivot language: each cycle word (any casing kept) becomes the next one."""
    out = []
    for word in text.split(" "):
        core = word.rstrip(".,!?;")
        tail = word[len(core) :]
        nxt = _NEXT.get(core.lower())
        if nxt is not None:
            core = nxt.capitalize() if core[:1].isupper() else nxt
        out.append(core + tail)
    return " ".join(out)


def toy_corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` random toy sentences mixing cycle words, names, common words and punctuation."""
    rng = random.Random(seed)
    vocab = [w for c in CYCLES for w in c] + list(NAMES) + list(_WORDS)
    out = []
    for _ in range(n):
        words = [rng.choice(vocab) for _ in range(rng.randint(2, 12))]
        words[0] = words[0].capitalize()
        out.append(" ".join(words) + rng.choice([".", "!", "?", ",", ""]))
    return out


def _tokenizer_files(folder: Path, corpus: list[str], vocab_size: int) -> int:
    """Train a SentencePiece model; write source.spm, target.spm, vocab.json; return its size."""
    import sentencepiece as spm

    prefix = folder / "spm"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        byte_fallback=False,
        unk_id=0,
        bos_id=-1,
        eos_id=1,
        pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
        num_threads=1,
    )
    model_file = prefix.with_suffix(".model")
    data = model_file.read_bytes()
    (folder / "source.spm").write_bytes(data)
    (folder / "target.spm").write_bytes(data)
    model_file.unlink()
    prefix.with_suffix(".vocab").unlink()
    sp = spm.SentencePieceProcessor(model_proto=data)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    vocab = {"</s>": 0, "<unk>": 1}
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    vocab["<pad>"] = len(vocab)  # last, as in the opus-mt models
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "MarianTokenizer",
                "source_lang": "en",
                "target_lang": "en",
                "model_max_length": 512,
                "separate_vocabs": False,
            }
        ),
        encoding="utf-8",
    )
    return len(vocab)


def build_tiny_model(
    folder: str | Path,
    kind: Literal["random", "trained"] = "random",
    *,
    seed: int = 0,
    steps: int = 400,
) -> Path:
    """Build a tiny MarianMT model and its tokenizer in ``folder``; return the folder.

    Args:
        folder: Where to save (created).
        kind: ``"random"`` (untrained) or ``"trained"`` (the toy pivot task, see module doc).
        seed: Seed of the weights, the corpus and the training order.
        steps: Training steps for ``"trained"`` (400: about 15 s on one CPU core; at 200 the
            toy task is learnt or not depending on library versions).
    """
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = toy_corpus(2000, seed)
    # every printable ASCII character gets a piece, so any English text tokenizes without <unk>
    chars = " ".join(string.ascii_letters + string.digits + string.punctuation)
    size = _tokenizer_files(
        folder, [*corpus, *[toy_translate(s) for s in corpus[:200]], chars], 300
    )
    tokenizer = MarianTokenizer.from_pretrained(str(folder))
    torch.manual_seed(seed)
    config = MarianConfig(
        vocab_size=size,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_position_embeddings=512,
        pad_token_id=size - 1,
        eos_token_id=0,
        decoder_start_token_id=size - 1,
        forced_eos_token_id=0,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        # random weights at the usual 0.02 ignore the input (every text gives the same
        # output); at 0.2 outputs depend on the input, as the tests need
        init_std=0.02 if kind == "trained" else 0.2,
    )
    model = MarianMTModel(config)
    if kind == "trained":
        _train(model, tokenizer, corpus, steps, seed)
    model.eval()  # type: ignore[no-untyped-call]  # transformers leaves eval unannotated
    model.generation_config.num_beams = 1
    model.generation_config.bad_words_ids = [[size - 1]]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _train(model: object, tokenizer: object, corpus: list[str], steps: int, seed: int) -> None:
    import torch

    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)  # type: ignore[attr-defined]
    model.train()  # type: ignore[attr-defined]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model trains faster on one thread, and shares the machine
    for _ in range(steps):
        src = [corpus[rng.randrange(len(corpus))] for _ in range(32)]
        batch = tokenizer(
            src, text_target=[toy_translate(s) for s in src], padding=True, return_tensors="pt"
        )  # type: ignore[operator]
        labels = batch["labels"]
        labels[labels == model.config.pad_token_id] = -100  # type: ignore[attr-defined]
        loss = model(**batch).loss  # type: ignore[operator]
        loss.backward()
        opt.step()
        opt.zero_grad()
    torch.set_num_threads(threads)


@lru_cache(maxsize=1)
def tiny_models() -> dict[str, str]:
    """A ``random`` and a ``trained`` tiny model, built once per process in a temporary
    folder that is removed when the process exits: ``{"random": path, "trained": path}``."""
    folder = Path(tempfile.mkdtemp(prefix="augreg-tiny-marian-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return {
        "random": str(build_tiny_model(folder / "random", "random")),
        "trained": str(build_tiny_model(folder / "trained", "trained")),
    }
