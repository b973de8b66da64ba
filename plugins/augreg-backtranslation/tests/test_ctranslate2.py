"""The CTranslate2 backend (backend = "ctranslate2") with the tiny local Marian models."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

import augreg
from augreg import AugregError, OptionsError
from augreg_backtranslation import ct2
from augreg_backtranslation.round_trip import RoundTrip
from augreg_backtranslation.tiny import toy_corpus

needs_ct2 = pytest.mark.skipif(
    find_spec("ctranslate2") is None,
    reason="ctranslate2 is not installed (pip install 'augreg-backtranslation[ctranslate2]')",
)

TEXTS = [
    "The movie, frankly, was great!",
    "Good.",
    "John Smith said the plot was boring and the acting was poor.",
    "Paris",
    *toy_corpus(40, seed=3),
]


def _examples(texts: list[str] = TEXTS) -> list[augreg.Example]:
    return [{"text": t, "label": 0, "augreg_id": f"s:{i}"} for i, t in enumerate(texts)]


def _rngs(n: int, seed: int) -> list[random.Random]:
    return [random.Random(seed * 1000 + i) for i in range(n)]


@pytest.mark.parametrize(
    ("options", "fix"),
    [
        ({"backend": "onnx"}, "backend"),
        ({"backend": "ctranslate2", "compute_type": "int4"}, "compute_type"),
        ({"compute_type": "int8"}, "applies only to backend = 'ctranslate2'"),
    ],
)
def test_bad_backend_options_name_the_fix(options: dict[str, object], fix: str) -> None:
    with pytest.raises(OptionsError, match=fix):
        RoundTrip(options)


def test_missing_package_names_the_install_command(
    models: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 -> ImportError
    aug = RoundTrip(pivots=[{"forward": models["random"], "back": models["random"]}],
                    backend="ctranslate2")  # fmt: skip
    with pytest.raises(AugregError) as err:
        aug.setup(augreg.SetupContext(cache_dir=tmp_path))
    msg = str(err.value)
    assert "pip install 'augreg-backtranslation[ctranslate2]'" in msg
    assert "backend = 'transformers'" in msg


@needs_ct2
def test_unsupported_compute_type_lists_the_supported_ones(
    make: Callable[..., RoundTrip], models: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(AugregError, match=r"supported there: default, auto, .*float32"):
        make(models["random"], tmp_path, backend="ctranslate2", compute_type="float16")


@needs_ct2
@pytest.mark.parametrize("kind", ["trained", "random"])
def test_greedy_output_equals_transformers(
    make: Callable[..., RoundTrip], models: dict[str, str], kind: str, tmp_path: Path
) -> None:
    """float32 greedy decoding: the transformers backend's exact outputs.

    The trained model's <pad> embedding (its decoder start) is not zero, so this fails with
    ctranslate2's own Marian conversion (zero start embedding); the random model's outputs
    often hit the length limit or stop at once, which checks max_new_tokens and the EOS rules.
    """
    opts: dict[str, Any] = {"num_beams": 1, "length_ratio": None, "drop_identical": False}
    hf = make(models[kind], None, **opts)
    fast = make(models[kind], tmp_path, backend="ctranslate2", compute_type="float32", **opts)
    ((hf_fwd, _),) = hf._steps  # type: ignore[misc]
    ((ct_fwd, _),) = fast._steps  # type: ignore[misc]
    expected = hf_fwd.translate(TEXTS)
    assert ct_fwd.translate(TEXTS) == expected
    assert len({o[0] for o in expected}) > len(TEXTS) // 2  # outputs depend on the input
    # the way back, from the pivot texts; an empty pivot text (only the EOS token) is the one
    # documented difference: ctranslate2 returns an empty translation without decoding
    pivots = [o[0] for o in expected]
    back_hf, back_ct = hf_fwd.translate(pivots), ct_fwd.translate(pivots)
    for pivot, want, got in zip(pivots, back_hf, back_ct, strict=True):
        assert got == ([""] if not pivot else want)
    if kind == "trained":  # no empty pivot text: whole round trips are equal
        assert all(pivots)
        want_trips = hf.augment_batch(_examples(), _rngs(len(TEXTS), 0))
        assert fast.augment_batch(_examples(), _rngs(len(TEXTS), 0)) == want_trips
    else:
        assert not all(pivots)  # the exception above is exercised


@needs_ct2
def test_conversion_is_cached_and_reused(
    make: Callable[..., RoundTrip],
    models: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = make(models["trained"], tmp_path, backend="ctranslate2")
    ((fwd, _),) = first._steps  # type: ignore[misc]
    assert fwd.converted
    out = first.augment_batch(_examples(), _rngs(len(TEXTS), 0))

    def no_conversion(*args: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(ct2, "_converter", no_conversion)
    second = make(models["trained"], tmp_path, backend="ctranslate2", cache=False)
    ((fwd2, _),) = second._steps  # type: ignore[misc]
    assert not fwd2.converted
    assert second.augment_batch(_examples(), _rngs(len(TEXTS), 0)) == out
    folders = [p for p in (tmp_path / "backtranslation" / "ctranslate2").iterdir()]
    assert len(folders) == 1 and (folders[0] / "model.bin").is_file()  # no temporary left
    # another compute type is another conversion
    monkeypatch.undo()
    third = make(models["trained"], tmp_path, backend="ctranslate2", compute_type="int8")
    assert third._steps[0][0].converted  # type: ignore[index]


@needs_ct2
def test_conversion_lost_race_uses_the_winner(models: dict[str, str], tmp_path: Path) -> None:
    """Another process renames its finished folder into place while this one converts."""
    real = ct2._converter

    class Racing:
        def __init__(self, path: str, revision: str | None) -> None:
            self.inner = real(path, revision)

        def convert(self, out: str, quantization: str | None) -> None:
            self.inner.convert(out, quantization=quantization)
            winner = next(tmp_path.glob(".*")).name.split("-")[0][1:]
            self.inner.convert(str(tmp_path / winner), quantization=quantization)
            (tmp_path / winner / "winner").touch()

    original, ct2._converter = ct2._converter, Racing  # type: ignore[assignment]
    try:
        folder, converted = ct2.convert(models["random"], None, "fp", "default", tmp_path)
    finally:
        ct2._converter = original
    assert not converted and (folder / "winner").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # the loser's temp is gone


_CONVERT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from augreg_backtranslation.ct2 import convert
    folder, converted = convert(sys.argv[1], None, "fp", "default", Path(sys.argv[2]))
    print(folder, converted)
    """
)


@needs_ct2
@pytest.mark.slow  # two fresh interpreters import transformers and torch: 5-20 s
def test_two_processes_convert_at_once(models: dict[str, str], tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONVERT, models["random"], str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outs.append(out.split())
    assert outs[0][0] == outs[1][0]  # the same folder
    assert [p.name for p in tmp_path.iterdir()] == [Path(outs[0][0]).name]
    folder, converted = ct2.convert(models["random"], None, "fp", "default", tmp_path)
    assert not converted and str(folder) == outs[0][0]


@needs_ct2
def test_cache_keys_separate_backends(
    make: Callable[..., RoundTrip], models: dict[str, str], tmp_path: Path
) -> None:
    opts: dict[str, Any] = {"length_ratio": None, "num_beams": 1}
    hf = make(models["random"], tmp_path, **opts)
    hf.augment_batch(_examples(), _rngs(len(TEXTS), 0))
    for compute_type in ("float32", "int8"):
        fast = make(models["random"], tmp_path, backend="ctranslate2", compute_type=compute_type,
                    **opts)  # fmt: skip
        fast.augment_batch(_examples(), _rngs(len(TEXTS), 0))
        assert fast.counts()["cache_hits"] == 0 and fast.counts()["translated"] > 0
    again = make(models["random"], tmp_path, backend="ctranslate2", compute_type="int8", **opts)
    again.augment_batch(_examples(), _rngs(len(TEXTS), 0))
    assert again.counts()["translated"] == 0  # its own entries are found


@needs_ct2
def test_seeded_sampling_is_reproducible(
    make: Callable[..., RoundTrip], models: dict[str, str], tmp_path: Path
) -> None:
    opts: dict[str, Any] = {"sample": True, "temperature": 1.5, "top_p": 0.95}
    opts.update(length_ratio=None, batch_size=8, backend="ctranslate2")
    runs = [
        make(models["trained"], tmp_path, cache=False, **opts).augment_batch(
            _examples(), _rngs(len(TEXTS), seed)
        )
        for seed in (1, 1, 2)
    ]
    assert runs[0] == runs[1]  # a fresh augmenter, the same seeds: the same samples
    assert runs[0] != runs[2]
    greedy = make(
        models["trained"], tmp_path, backend="ctranslate2", length_ratio=None, num_beams=1,
        cache=False,
    ).augment_batch(_examples(), _rngs(len(TEXTS), 1))  # fmt: skip
    assert runs[0] != greedy  # it samples


@needs_ct2
def test_beam_search_gives_n_outputs_per_text(
    make: Callable[..., RoundTrip], models: dict[str, str], tmp_path: Path
) -> None:
    """n hypotheses for every text, also for one that tokenizes to EOS only (padded with '')."""
    aug = make(models["random"], tmp_path, backend="ctranslate2", num_beams=3, paraphrases=2)
    ((fwd, _),) = aug._steps  # type: ignore[misc]
    outs = fwd.translate([*TEXTS[:6], ""], n=2)
    assert [len(o) for o in outs] == [2] * 7
    assert outs[-1] == ["", ""]
    assert all(len(set(o)) == 2 for o in outs[:6])  # two different hypotheses
