"""One translation direction: a ``transformers`` seq2seq model, batched and cached.

Batched ``generate`` over length-sorted batches (little padding, and a batch of short
sentences finishes early), outputs looked up and stored in the translation cache
(:mod:`augreg_backtranslation.cache`). Written on ``model.generate`` rather than the
``translation`` pipeline because the pipeline neither sorts by length nor tells which row of
a batch belongs to which input, and seeded sampling needs that (below).

Seeded sampling, independent of the batch: ``generate(do_sample=True)`` draws every row of a
batch from one global torch generator, so a sentence's sample depends on its batch-mates and
on global state. Here sampling is the Gumbel-max trick: the library's temperature and top-p
warpers shape the scores, :class:`RowGumbel` adds Gumbel noise drawn from a generator of the
row's own (seeded by the example's rng), and greedy decoding takes the arg-max, which is an
exact sample from the warped distribution. Same seed, same sample, whatever the batch.

Cost: one ``generate`` call per ``batch_size`` uncached texts; nothing for cached texts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augreg import AugregError
from augreg_backtranslation.cache import TranslationCache, cache_key

__all__ = ["Decoding", "RowGumbel", "Translator", "model_fingerprint", "pick_device"]


@dataclass(frozen=True)
class Decoding:
    """Decoding settings of one translation step (part of every cache key)."""

    num_beams: int = 4
    sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 200
    max_input_tokens: int = 256


def pick_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; others unchanged.

    Raises:
        AugregError: ``"cuda"`` was asked for and torch sees no GPU.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise AugregError(
            "augreg-backtranslation: device = 'cuda' but torch sees no GPU. Set device = "
            "'auto' (GPU when present, else CPU) or 'cpu'."
        )
    return device


def model_fingerprint(name: str, path: str, revision: str | None, commit: str | None) -> str:
    """Identity of a model for cache keys: hub name and resolved commit, or a local folder's
    absolute path with the size and modification time of each of its files (so a model
    re-trained into the same folder does not reuse stale translations)."""
    folder = Path(path)
    if folder.is_dir():
        files = sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.iterdir()
            if p.is_file()
        )
        digest = hashlib.sha256(repr(files).encode()).hexdigest()[:16]
        return f"path:{folder.resolve()}:{digest}"
    return f"hub:{name}@{commit or revision or 'main'}"


class RowGumbel:
    """Logits processor: adds Gumbel noise from one seeded generator per batch row.

    With greedy decoding after the temperature and top-p warpers, the arg-max of the noisy
    scores is a sample from the warped softmax (Gumbel-max trick), drawn only from the row's
    own generator, so it does not depend on the other rows of the batch.
    """

    def __init__(self, seeds: Sequence[int], device: str) -> None:
        import torch

        self.generators = []
        for seed in seeds:
            gen = torch.Generator(device=device)
            gen.manual_seed(int(seed) % (2**63))
            self.generators.append(gen)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        rows, vocab = scores.shape
        if rows != len(self.generators):
            raise AugregError(
                f"augreg-backtranslation: internal error: {rows} rows for "
                f"{len(self.generators)} sampling generators"
            )
        noise = torch.stack(
            [
                torch.rand(vocab, generator=g, device=scores.device, dtype=torch.float32)
                for g in self.generators
            ]
        )
        gumbel = -torch.log(-torch.log(noise.clamp(1e-20, 1.0 - 1e-7)))
        return scores.float() + gumbel


class Translator:
    """One direction (e.g. en->de) of a round trip: model, tokenizer, decoding, cache.

    Args:
        name: Hub name (``Helsinki-NLP/opus-mt-en-de``), local folder or ``pkg:<module>``.
        revision: Hub revision (branch, tag or commit); ignored for local folders.
        decoding: Decoding settings.
        device: ``"cpu"`` or ``"cuda"``.
        cache: The translation cache, or ``None`` for none.
        batch_size: Texts per ``generate`` call.
        progress: Show a progress bar when at least two batches are to be translated.
        label: Shown in the progress bar and in errors (``pivot 0 forward``).

    Raises:
        AugregError: the model cannot be loaded (says how to provide it).
    """

    backend = "transformers"

    def __init__(
        self,
        name: str,
        revision: str | None,
        decoding: Decoding,
        device: str,
        cache: TranslationCache | None,
        batch_size: int = 32,
        progress: bool = True,
        label: str = "",
    ) -> None:
        from transformers import AutoTokenizer

        from augreg.tasks import load_pretrained, resolve_model_path

        self.name, self.revision, self.decoding, self.device = name, revision, decoding, device
        self.cache, self.batch_size, self.progress, self.label = cache, batch_size, progress, label
        kwargs = {"revision": revision} if revision else {}
        try:
            self.tokenizer = load_pretrained(AutoTokenizer, name, **kwargs)
            config = self._load_model(name, kwargs)
        except AugregError as exc:
            raise AugregError(
                f"augreg-backtranslation: {label or 'translation'} model {name!r}: {exc}\n"
                "A round trip needs a translation model for each direction, e.g. "
                "forward = 'Helsinki-NLP/opus-mt-en-de' and back = 'Helsinki-NLP/opus-mt-de-en' "
                "(downloaded once with network access; then cached, or saved with "
                "save_pretrained and given as a local folder)."
            ) from None
        if not getattr(config, "is_encoder_decoder", False):
            raise AugregError(
                f"augreg-backtranslation: {label} model {name!r} is not a sequence-to-sequence "
                "(encoder-decoder) model; give a translation model such as MarianMT "
                "(Helsinki-NLP/opus-mt-*), M2M100 or T5."
            )
        # never past the model's position table (Marian: 512)
        positions = getattr(config, "max_position_embeddings", None)
        self.max_input = min(decoding.max_input_tokens, positions or decoding.max_input_tokens)
        commit = getattr(config, "_commit_hash", None)
        self.fingerprint = model_fingerprint(name, resolve_model_path(name), revision, commit)
        self.translated = 0
        self.cache_hits = 0
        self._prepare()

    def _load_model(self, name: str, kwargs: dict[str, Any]) -> Any:
        """Load the model (raising ``AugregError`` when it cannot); return its config."""
        from transformers import AutoModelForSeq2SeqLM

        from augreg.tasks import load_pretrained

        self.model = load_pretrained(AutoModelForSeq2SeqLM, name, **kwargs)
        return self.model.config

    def _prepare(self) -> None:
        """After the checks: put the model on its device."""
        self.model.eval().to(self.device)

    def key_settings(self) -> list[Any]:
        """What besides model and text decides an output (part of every cache key)."""
        d = self.decoding
        return [d.num_beams, d.sample, d.temperature, d.top_p, d.max_new_tokens, d.max_input_tokens]

    def keys(self, texts: Sequence[str], seeds: Sequence[int | None], n: int) -> list[str]:
        """Cache keys of (text, seed) under this model and decoding."""
        settings = self.key_settings()
        return [
            cache_key("v1", self.fingerprint, settings, n, seed, text)
            for text, seed in zip(texts, seeds, strict=True)
        ]

    def translate(
        self, texts: Sequence[str], n: int = 1, seeds: Sequence[int] | None = None
    ) -> list[list[str]]:
        """Translate texts: ``n`` beam outputs per text, or one sample per (text, seed).

        Args:
            texts: Texts to translate (duplicates are translated once).
            n: Beam search: the ``n`` best hypotheses (``n <= num_beams``). Sampling: 1.
            seeds: Sampling only: one seed per text.

        Returns:
            One list of outputs per input text, in input order.
        """
        if self.decoding.sample and (seeds is None or len(seeds) != len(texts) or n != 1):
            raise AugregError(
                "augreg-backtranslation: internal error: sampling needs one seed per text and n=1"
            )
        row_seeds: list[int | None] = list(seeds) if seeds is not None else [None] * len(texts)
        keys = self.keys(texts, row_seeds, n)
        found = self.cache.get_many(keys) if self.cache is not None else {}
        todo: dict[str, tuple[str, int | None]] = {}
        for key, text, seed in zip(keys, texts, row_seeds, strict=True):
            if key not in found and key not in todo:
                todo[key] = (text, seed)
        self.cache_hits += sum(1 for k in keys if k in found)
        if todo:
            new = self._generate(list(todo.items()), n)
            self.translated += len(new)
            if self.cache is not None:
                self.cache.put_many(new)
            found.update(new)
        return [list(found[k]) for k in keys]

    def _generate(
        self, items: list[tuple[str, tuple[str, int | None]]], n: int
    ) -> dict[str, list[str]]:
        """Translate uncached (key, (text, seed)) items in length-sorted batches."""
        # tokenized once: the lengths sort the batches, the ids feed them
        texts = [text for _, (text, _) in items]
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_input)["input_ids"]
        order = sorted(range(len(items)), key=lambda i: len(ids[i]))  # stable: ties keep order
        out: dict[str, list[str]] = {}
        bar = None
        if self.progress and len(items) >= 2 * self.batch_size:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), desc=f"backtranslation {self.label}", unit="text")
        try:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                seeds = [int(items[i][1][1] or 0) for i in idx]
                for i, outs in zip(idx, self._batch([ids[i] for i in idx], seeds, n), strict=True):
                    out[items[i][0]] = [s.strip() for s in outs]
                if bar is not None:
                    bar.update(len(idx))
        finally:
            if bar is not None:
                bar.close()
        return out

    def _batch(self, ids: list[list[int]], seeds: list[int], n: int) -> list[list[str]]:
        """One ``generate`` call on token ids (truncated): ``n`` outputs per text (one sample
        per seed when sampling)."""
        import torch

        d = self.decoding
        tok = self.tokenizer
        enc = tok.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        kwargs: dict[str, Any] = {"max_new_tokens": d.max_new_tokens}
        if d.sample:
            from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

            procs: list[Any] = []
            if d.temperature != 1.0:
                procs.append(TemperatureLogitsWarper(d.temperature))
            if d.top_p < 1.0:
                procs.append(TopPLogitsWarper(d.top_p))
            procs.append(RowGumbel(seeds, self.device))
            kwargs.update(do_sample=False, num_beams=1, logits_processor=LogitsProcessorList(procs))
        else:
            kwargs.update(do_sample=False, num_beams=d.num_beams, num_return_sequences=n)
        with torch.inference_mode():
            generated = self.model.generate(**enc, **kwargs)
        decoded = tok.batch_decode(generated, skip_special_tokens=True)
        per = 1 if d.sample else n
        return [decoded[k * per : (k + 1) * per] for k in range(len(ids))]
