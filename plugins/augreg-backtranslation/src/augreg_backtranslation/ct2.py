"""The CTranslate2 backend: the same translation direction, run by CTranslate2 instead of torch.

CTranslate2 (OpenNMT, https://github.com/OpenNMT/CTranslate2) is an inference engine for
Transformer models written in C++: fused kernels, a cache-friendly decoder and optional int8
weights make greedy and beam decoding of a MarianMT model several times faster on a CPU than
``transformers``' ``generate``. It runs its own model format, so a model (hub name, local
folder or ``pkg:<module>``) is converted once with ``ctranslate2.converters.
TransformersConverter`` into a folder of the conversion cache, keyed by (model fingerprint,
revision, compute type, ctranslate2 version, converter version), written to a temporary folder
and renamed into place (two processes converting at once both succeed; one folder is kept).

**Marian conversion as transformers runs it.** CTranslate2's own Marian converter targets
models trained by Marian (C++): it drops ``<pad>`` from the vocabulary and starts the decoder
from a zero vector, which equals ``transformers``' start (the embedding of ``<pad>``, the
``decoder_start_token_id``) only while that embedding row is zero. That holds for the
converted opus-mt checkpoints, not for a Marian model trained or fine-tuned in
``transformers``: the input embedding is tied to the output projection, and the projection's
gradient (``<pad>``'s logit pushed down) trains the ``<pad>`` row although ``nn.Embedding``'s
``padding_idx`` freezes it for the lookup. With the zero start such a model decodes a different
first token, and everything after it differs. :class:`_TransformersMarianLoader` keeps
``<pad>`` and its weights and starts the decoder from ``decoder_start_token_id`` as
``transformers`` does; ``<pad>`` is kept from being generated through
``suppress_sequences`` from the model's ``bad_words_ids``, as ``generate`` does. Greedy
decoding in float32 then gives ``generate``'s output (tested).

**Seeded sampling depends on the batch.** CTranslate2 4.x draws all samples of a worker thread
from one thread-local generator, seeded once when that thread first samples
(``set_random_seed`` does not reseed it later, and there is no per-row generator or logits
hook). So each :class:`CT2Translator` seeds its own worker when it first samples, from the
first sampled batch's seeds: the same data in the same batches with the same seeds gives the
same samples, but a text's sample also depends on its batch-mates and on earlier batches, so
sampled output is not equal to one-by-one output (it is with ``backend = "transformers"``).

Cost: conversion once per model and compute type (seconds for opus-mt); then per batch one
``translate_batch`` call; int8 compute types quantize the weights (faster, outputs can differ
slightly from float32).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal, get_args

from augreg import AugregError
from augreg_backtranslation.translate import Translator

__all__ = [
    "COMPUTE_TYPES",
    "CONVERTER_VERSION",
    "CT2Translator",
    "ComputeType",
    "convert",
    "import_ctranslate2",
]

ComputeType = Literal[
    "default",
    "auto",
    "float32",
    "int8",
    "int8_float32",
    "int16",
    "float16",
    "int8_float16",
    "bfloat16",
    "int8_bfloat16",
]
COMPUTE_TYPES: tuple[str, ...] = get_args(ComputeType)
"""CTranslate2's compute types; which of them a device supports is checked at set-up."""

CONVERTER_VERSION = "1"
"""Changes whenever the conversion below changes, so that old converted folders are not used."""

_INSTALL = "pip install 'augreg-backtranslation[ctranslate2]'"


def import_ctranslate2() -> Any:
    """``import ctranslate2``, or an ``AugregError`` that says how to install it."""
    try:
        import ctranslate2
    except ImportError as exc:
        raise AugregError(
            f"augreg-backtranslation: backend = 'ctranslate2' needs the ctranslate2 package, "
            f"which is not installed ({exc}). Install it with {_INSTALL}, or set backend = "
            "'transformers'."
        ) from None
    return ctranslate2


def _marian_loader(ct2_transformers: Any) -> Any:
    """The Marian loader of :mod:`ctranslate2.converters.transformers`, made exact."""
    bart = ct2_transformers.BartLoader

    # ctranslate2 has no type hints: its classes are Any, and subclassing Any needs the ignore
    class _TransformersMarianLoader(ct2_transformers.MarianMTLoader):  # type: ignore[misc]
        """Marian as ``transformers`` runs it: ``<pad>`` kept, decoder start token used."""

        def get_model_spec(self, model: Any) -> Any:
            model.config.normalize_before = False
            model.config.normalize_embedding = False
            return bart.get_model_spec(self, model)  # no _remove_pad_weights

        def set_config(self, config: Any, model: Any, tokenizer: Any) -> None:
            config.eos_token = tokenizer.eos_token
            config.unk_token = tokenizer.unk_token
            config.decoder_start_token = tokenizer.convert_ids_to_tokens(
                model.config.decoder_start_token_id
            )

        def set_decoder(self, spec: Any, decoder: Any) -> None:
            bart.set_decoder(self, spec, decoder)  # start_from_zero_embedding stays False

        def get_vocabulary(self, model: Any, tokenizer: Any) -> list[str]:
            return list(bart.get_vocabulary(self, model, tokenizer))  # <pad> kept

    return _TransformersMarianLoader()


def _converter(path: str, revision: str | None) -> Any:
    """A ``TransformersConverter`` whose Marian models use :func:`_marian_loader`."""
    from ctranslate2.converters import transformers as ct2_transformers

    class _Converter(ct2_transformers.TransformersConverter):  # type: ignore[misc]  # no hints
        def _load(self) -> Any:
            import torch
            import transformers

            kwargs: dict[str, Any] = {"revision": revision} if revision else {}
            config = transformers.AutoConfig.from_pretrained(path, **kwargs)
            if type(config).__name__ != "MarianConfig":
                return super()._load()
            with torch.no_grad():
                model = transformers.MarianMTModel.from_pretrained(
                    path, config=config, dtype=torch.float32, **kwargs
                )
                tokenizer = transformers.AutoTokenizer.from_pretrained(path, **kwargs)
                return _marian_loader(ct2_transformers)(model, tokenizer)

    return _Converter(path, revision=revision)


_LOCAL = threading.Lock()


def convert(
    name: str,
    revision: str | None,
    fingerprint: str,
    compute_type: str,
    root: Path,
    label: str = "",
) -> tuple[Path, bool]:
    """The converted model folder for (model, revision, compute type), converting if needed.

    Args:
        name: Hub name, local folder or ``pkg:<module>``.
        revision: Hub revision.
        fingerprint: :func:`augreg_backtranslation.translate.model_fingerprint` of the model.
        compute_type: Weights are stored quantized to it (``"default"``: as they are).
        root: The conversion cache folder.
        label: Shown in errors.

    Returns:
        The folder and whether this call converted (False: reused).

    Raises:
        AugregError: the model cannot be converted (unsupported architecture) or written.
    """
    ctranslate2 = import_ctranslate2()
    from augreg.tasks import resolve_model_path

    parts = repr((fingerprint, revision, compute_type, ctranslate2.__version__, CONVERTER_VERSION))
    digest = hashlib.sha256(parts.encode()).hexdigest()[:24]
    final = root / digest
    if (final / "model.bin").is_file():
        return final, False
    with _LOCAL:  # threads of one process: convert once; processes: rename below decides
        if (final / "model.bin").is_file():
            return final, False
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=root))
        try:
            out = work / "model"
            try:
                _converter(resolve_model_path(name), revision).convert(
                    str(out),
                    quantization=None if compute_type in ("default", "auto") else compute_type,
                )
            except (ValueError, NotImplementedError, OSError) as exc:
                raise AugregError(
                    f"augreg-backtranslation: {label or 'translation'} model {name!r}: "
                    f"ctranslate2 {ctranslate2.__version__} cannot convert it ({exc}). Set "
                    "backend = 'transformers' for this model."
                ) from None
            (out / "source.txt").write_text(f"{name}\n{revision or ''}\n{fingerprint}\n")
            try:
                os.rename(out, final)  # atomic; fails when another process renamed first
            except OSError:
                if not (final / "model.bin").is_file():
                    raise
                return final, False
            return final, True
        finally:
            shutil.rmtree(work, ignore_errors=True)


class CT2Translator(Translator):
    """One translation direction run by CTranslate2 (see the module docstring).

    Same arguments, batching, progress bar and cache as :class:`Translator`, plus:

    Args:
        compute_type: CTranslate2 compute type (``"default"``: the stored weights' type).
        convert_dir: The conversion cache folder.
        threads: CPU threads of one ``translate_batch`` call (``intra_threads``).
    """

    backend = "ctranslate2"

    def __init__(
        self,
        *args: Any,
        compute_type: str = "default",
        convert_dir: Path,
        threads: int = 1,
        **kwargs: Any,
    ) -> None:
        self.ctranslate2 = import_ctranslate2()
        self.compute_type, self.convert_dir, self.threads = compute_type, convert_dir, threads
        self.converted = False
        self._seeded = False
        super().__init__(*args, **kwargs)

    def _load_model(self, name: str, kwargs: dict[str, Any]) -> Any:
        from transformers import AutoConfig, GenerationConfig

        from augreg.tasks import load_pretrained

        config = load_pretrained(AutoConfig, name, **kwargs)
        try:
            self.generation = load_pretrained(GenerationConfig, name, **kwargs)
        except (AugregError, OSError):
            self.generation = GenerationConfig.from_model_config(config)
        return config

    def _prepare(self) -> None:
        ct2 = self.ctranslate2
        device = "cuda" if self.device.startswith("cuda") else "cpu"
        supported = sorted(ct2.get_supported_compute_types(device))
        if self.compute_type not in ("default", "auto", *supported):
            raise AugregError(
                f"augreg-backtranslation: compute_type = {self.compute_type!r} is not supported "
                f"by ctranslate2 {ct2.__version__} on {device}; supported there: "
                f"{', '.join(['default', 'auto', *supported])}."
            )
        start = time.perf_counter()
        folder, self.converted = convert(
            self.name,
            self.revision,
            self.fingerprint,
            self.compute_type,
            self.convert_dir,
            self.label,
        )
        self.convert_seconds = time.perf_counter() - start  # ~0 when reused
        self.model = ct2.Translator(
            str(folder),
            device=device,
            compute_type=self.compute_type,
            inter_threads=1,
            intra_threads=self.threads,
        )
        vocab = self.tokenizer.convert_ids_to_tokens
        bad = getattr(self.generation, "bad_words_ids", None) or []
        self.suppress = [vocab(list(ids)) for ids in bad]
        # generate() forces EOS as the last of max_new_tokens when forced_eos_token_id is set
        forced = getattr(self.generation, "forced_eos_token_id", None) is not None
        self.max_decoding = self.decoding.max_new_tokens - (1 if forced else 0)
        # ctranslate2's default (1) forbids an empty output; generate() allows an immediate
        # EOS unless min_length (which counts the decoder start token) or min_new_tokens say not
        gen = self.generation
        self.min_decoding = gen.min_new_tokens or max(0, (gen.min_length or 0) - 1)

    def key_settings(self) -> list[Any]:
        return [*super().key_settings(), self.backend, self.compute_type]

    def _batch(self, ids: list[list[int]], seeds: list[int], n: int) -> list[list[str]]:
        d = self.decoding
        tok = self.tokenizer
        source = [tok.convert_ids_to_tokens(row) for row in ids]
        kwargs: dict[str, Any] = {
            "max_decoding_length": max(1, self.max_decoding),
            "min_decoding_length": self.min_decoding,
            "max_input_length": 0,  # truncated above, as for generate()
            "suppress_sequences": self.suppress or None,
        }
        if d.sample:
            if not self._seeded:  # see the module docstring: one generator per worker thread
                digest = hashlib.sha256(repr(seeds).encode()).digest()
                self.ctranslate2.set_random_seed(int.from_bytes(digest[:4], "little"))
                self._seeded = True
            kwargs.update(
                beam_size=1,
                sampling_topk=0,
                sampling_topp=d.top_p,
                sampling_temperature=d.temperature,
            )
        else:
            kwargs.update(beam_size=d.num_beams, num_hypotheses=n)
        results = self.model.translate_batch(source, **kwargs)
        per = 1 if d.sample else n
        hypotheses = [r.hypotheses[:per] for r in results]
        flat = tok.batch_decode(
            [tok.convert_tokens_to_ids(h) for hyps in hypotheses for h in hyps],
            skip_special_tokens=True,
        )
        out, start = [], 0
        for hyps in hypotheses:
            # an input of only EOS gives one empty hypothesis: pad to ``per`` outputs
            out.append(flat[start : start + len(hyps)] + [""] * (per - len(hyps)))
            start += len(hyps)
        return out
