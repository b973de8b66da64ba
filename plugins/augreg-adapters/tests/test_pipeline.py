"""Adapters in whole pipelines: saved runs, LP-FT's switch in the Trainer, composition."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

import augreg
from augreg.model_io import MANIFEST, WEIGHTS
from augreg.testing import isolated_host, make_batch, save_tiny_model, tiny_model, tiny_tokenizer
from augreg_adapters import LoRA, merge

POSITIVE = ["the movie was great", "i love this film", "a wonderful story", "great acting"]
NEGATIVE = ["the movie was terrible", "i hate this film", "a boring story", "bad acting"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-seq"), "sequence_classification", 2)


@pytest.fixture(scope="module")
def train_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [{"text": t, "label": 1} for t in POSITIVE] + [{"text": t, "label": 0} for t in NEGATIVE]
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows * 2), encoding="utf-8")
    return path


def _pipeline(tiny_folder: Path, train_file: Path, **kwargs: Any) -> augreg.Pipeline:
    train = {"epochs": 1, "batch_size": 4, "learning_rate": 1e-2, "progress": False, "seed": 3}
    train.update(kwargs.pop("train", {}))
    return augreg.Pipeline(
        model={"name": str(tiny_folder), "max_length": 16},
        data={"train": str(train_file), "test": str(train_file)},
        train=train,
        **kwargs,
    )


def _logits(model: torch.nn.Module) -> torch.Tensor:
    batch = make_batch(
        "sequence_classification", tiny_tokenizer(), [{"text": t, "label": 0} for t in POSITIVE]
    )
    batch.pop("labels")
    with torch.no_grad():
        return model.eval()(**batch).logits


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


@pytest.mark.parametrize(
    "adapter",
    [
        {"name": "adapters.lora", "r": 4},
        {"name": "adapters.bottleneck", "placement": "pfeiffer"},
        {"name": "adapters.prefix_tuning", "num_virtual_tokens": 3},
        {"name": "adapters.lp_ft", "switch": 0.5},
    ],
    ids=lambda a: a["name"],
)
def test_saved_run_holds_only_what_trains_and_loads_back_identical(
    tiny_folder: Path, train_file: Path, tmp_path: Path, adapter: dict[str, Any]
) -> None:
    pipe = _pipeline(tiny_folder, train_file, adapters=[adapter])
    result = pipe.run(tmp_path)
    model_dir = result.run_dir / "model"
    assert sorted(f.name for f in model_dir.iterdir()) == sorted([MANIFEST, WEIGHTS])
    manifest = json.loads((model_dir / MANIFEST).read_text())
    assert manifest["model"]["name"] == str(tiny_folder)
    assert manifest["adapters"][0]["name"] == adapter["name"]
    trained = result.train["trainable_parameters"]
    assert manifest["trained_parameters"] <= result.train["total_parameters"]
    if adapter["name"] != "adapters.lp_ft":
        assert manifest["trained_parameters"] == trained
        assert result.train["trainable_share"] < 0.5
    metrics = json.loads((result.run_dir / "metrics.json").read_text())["train"]
    assert metrics["trainable_parameters"] == trained and "trainable_share" in metrics

    loaded = augreg.load_model(result.run_dir)
    torch.testing.assert_close(_logits(loaded), _logits(pipe.trainer.model), atol=0, rtol=0)
    # The trained tensors matter: the same rebuild without them gives other logits.
    import transformers

    fresh = augreg.create(adapter["name"], **{k: v for k, v in adapter.items() if k != "name"})
    transformers.set_seed(3)
    base = transformers.AutoModelForSequenceClassification.from_pretrained(str(tiny_folder))
    rebuilt = fresh.prepare_model(base)  # type: ignore[attr-defined]
    assert not torch.allclose(_logits(rebuilt), _logits(loaded))


def test_lora_run_folder_is_a_small_share_of_a_full_run(
    tiny_folder: Path, train_file: Path, tmp_path: Path
) -> None:
    full = _pipeline(tiny_folder, train_file).run(tmp_path / "full")
    lora = _pipeline(tiny_folder, train_file, adapters=[{"name": "adapters.lora", "r": 2}]).run(
        tmp_path / "lora"
    )
    assert (full.run_dir / "model" / "model.safetensors").is_file()
    assert _folder_bytes(lora.run_dir / "model") < 0.5 * _folder_bytes(full.run_dir / "model")
    # A full-model run folder loads through the same function.
    torch.testing.assert_close(
        _logits(augreg.load_model(full.run_dir)), _logits(full_trainer_model(full)), atol=0, rtol=0
    )


def full_trainer_model(result: augreg.RunResult) -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(str(result.run_dir / "model"))


def test_loaded_lora_run_merges_to_the_same_logits(
    tiny_folder: Path, train_file: Path, tmp_path: Path
) -> None:
    result = _pipeline(tiny_folder, train_file, adapters=[{"name": "adapters.lora", "r": 4}]).run(
        tmp_path
    )
    loaded = augreg.load_model(result.run_dir)
    before = _logits(loaded)
    torch.testing.assert_close(_logits(merge(loaded)), before, atol=1e-5, rtol=1e-5)


class _Snapshots(TrainerCallback):  # type: ignore[misc]
    """Copies of one encoder weight and the head after every step."""

    def __init__(self) -> None:
        self.encoder: dict[int, torch.Tensor] = {}
        self.head: dict[int, torch.Tensor] = {}
        self.lr: dict[int, float] = {}

    def _take(self, step: int, model: Any) -> None:
        self.encoder[step] = (
            model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
        )
        self.head[step] = model.classifier.weight.detach().clone()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._take(0, kwargs["model"])

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._take(state.global_step, kwargs["model"])
        self.lr[state.global_step] = kwargs["optimizer"].param_groups[0]["lr"]


@pytest.mark.parametrize(
    ("options", "switch_at"), [({"switch": 0.5}, 4), ({"switch": 1, "unit": "epoch"}, 4)]
)
def test_lp_ft_trains_only_the_head_until_the_switch(
    tiny_folder: Path, train_file: Path, tmp_path: Path, options: dict[str, Any], switch_at: int
) -> None:
    snaps = _Snapshots()
    pipe = _pipeline(
        tiny_folder,
        train_file,
        adapters=[{"name": "adapters.lp_ft", **options}],
        train={"epochs": 2, "weight_decay": 0.1, "warmup_ratio": 0.0},  # 8 steps
    )
    pipe.run(tmp_path, callbacks=[snaps])
    assert sorted(snaps.encoder) == list(range(9))
    for step in range(1, switch_at + 1):
        # Steps 1..switch run before the switch: no update, no weight decay on the encoder.
        assert torch.equal(snaps.encoder[step], snaps.encoder[0]), f"encoder moved at step {step}"
        assert not torch.equal(snaps.head[step], snaps.head[step - 1]), f"head still at {step}"
    for step in range(switch_at + 1, 9):
        assert not torch.equal(snaps.encoder[step], snaps.encoder[step - 1]), f"frozen at {step}"
    history = json.loads((pipe.last_run.run_dir / "log_history.json").read_text())  # type: ignore[union-attr]
    assert {"lp_ft_switch": switch_at, "step": switch_at} in history
    assert all(p.requires_grad for p in pipe.trainer.model.parameters())


def test_lp_ft_probes_at_a_scaled_learning_rate(
    tiny_folder: Path, train_file: Path, tmp_path: Path
) -> None:
    snaps = _Snapshots()
    pipe = _pipeline(
        tiny_folder,
        train_file,
        adapters=[{"name": "adapters.lp_ft", "switch": 0.5, "probe_lr_scale": 10}],
        train={"epochs": 2, "warmup_ratio": 0.0},  # 8 steps, linear decay from 1e-2
    )
    pipe.run(tmp_path, callbacks=[snaps])
    for step in range(1, 8):
        # After step k the schedule holds the rate of step k + 1: 1e-2 * (1 - k / 8).
        expected = 1e-2 * (1 - step / 8) * (10 if step <= 4 else 1)
        assert snaps.lr[step] == pytest.approx(expected), f"step {step}"
    assert torch.equal(snaps.encoder[4], snaps.encoder[0])


def test_lp_ft_beside_lora_tunes_only_lora_after_the_probe(
    tiny_folder: Path, train_file: Path, tmp_path: Path
) -> None:
    snaps: dict[int, dict[str, torch.Tensor]] = {}

    class LoraSnapshots(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            snaps[state.global_step] = {
                n: p.detach().clone()
                for n, p in kwargs["model"].named_parameters()
                if "lora_B" in n or "query.base_layer.weight" in n
            }

    pipe = _pipeline(
        tiny_folder,
        train_file,
        adapters=[{"name": "adapters.lora", "r": 4}, {"name": "adapters.lp_ft", "switch": 0.5}],
        train={"epochs": 2, "warmup_ratio": 0.0},
    )
    pipe.run(tmp_path, callbacks=[LoraSnapshots()])
    lora = [n for n in snaps[1] if "lora_B" in n]
    base = [n for n in snaps[1] if "base_layer" in n]
    assert lora and base
    for n in lora:  # zero until the switch at step 4, trained after it
        assert not snaps[4][n].any(), f"{n} trained while probing"
        assert snaps[8][n].any(), f"{n} did not train after the switch"
    for n in base:
        assert torch.equal(snaps[8][n], snaps[1][n]), f"LoRA's frozen {n} moved"


def test_adversarial_training_reaches_lora_parameters() -> None:
    from augreg.step import compute_loss
    from augreg_adversarial.regularizers import FGM

    host = augreg.default_host()
    objective = host.create("objective", "core.cross_entropy", {})
    batch = make_batch(
        "sequence_classification",
        tiny_tokenizer(),
        [{"text": t, "label": i % 2} for i, t in enumerate(POSITIVE + NEGATIVE)],
    )

    def lora_grads(regularizers: list[Any]) -> dict[str, torch.Tensor]:
        model = LoRA(r=4, dropout=0.0).prepare_model(tiny_model(seed=7, hidden_dropout_prob=0.0))
        with torch.no_grad():  # as after some training: B != 0, so A gets gradients too
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.fill_(0.05)
        model.train()
        torch.manual_seed(0)
        compute_loss(model, dict(batch), [objective], regularizers).loss.backward()
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        assert frozen and all(p.grad is None for n, p in model.named_parameters() if n in frozen)
        return {
            n: p.grad.clone()
            for n, p in model.named_parameters()
            if "lora_" in n and p.grad is not None
        }

    plain = lora_grads([])
    adversarial = lora_grads([FGM(epsilon=1.0)])
    assert set(plain) == set(adversarial) and len(plain) == 8  # A and B, query and value, 2 layers
    assert all(bool(g.abs().sum() > 0) for g in adversarial.values())
    assert any(not torch.allclose(plain[n], adversarial[n]) for n in plain)


class _EntityBias(augreg.KnowledgeInjector):
    """Test injector: attaches a trainable module that adds to the embedding output."""

    name = "testinj.entity_bias"

    def inject(self, example: augreg.Example) -> augreg.Example:
        return example

    def prepare_model(self, model: torch.nn.Module, tokenizer: Any = None) -> torch.nn.Module:
        if hasattr(model, "entity_bias"):
            return model
        hidden = model.config.hidden_size
        module = torch.nn.Linear(hidden, hidden)
        torch.nn.init.zeros_(module.weight)
        torch.nn.init.zeros_(module.bias)
        model.entity_bias = module
        model.get_input_embeddings().register_forward_hook(lambda _m, _i, out: out + module(out))
        return model


class _InjectorPlugin:
    @augreg.hookimpl
    def augreg_register_injectors(self, register: augreg.Register) -> None:
        register(_EntityBias)


def test_lora_keeps_an_injected_module_trainable_and_saves_it(
    tiny_folder: Path, train_file: Path, tmp_path: Path
) -> None:
    import augreg_adapters.hooks

    host = isolated_host({"testinj": _InjectorPlugin(), "adapters": augreg_adapters.hooks})
    pipe = _pipeline(
        tiny_folder,
        train_file,
        inject=["testinj.entity_bias"],
        adapters=[{"name": "adapters.lora", "r": 4}],
        host=host,
    )
    result = pipe.run(tmp_path)
    model = pipe.trainer.model
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("entity_bias" in n for n in trainable), "LoRA froze the injected module"
    assert not any("query.base_layer" in n for n in trainable)
    bias = next(p for n, p in model.named_parameters() if n.endswith("entity_bias.bias"))
    assert bool(bias.abs().sum() > 0), "the injected module did not train"
    from safetensors.torch import load_file

    saved = load_file(str(result.run_dir / "model" / WEIGHTS))
    assert any("entity_bias" in k for k in saved)
    loaded = augreg.load_model(result.run_dir, host=host)
    torch.testing.assert_close(_logits(loaded), _logits(model), atol=0, rtol=0)
