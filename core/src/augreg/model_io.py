"""The pipeline's model: built in one place, saved as what it trains, loaded back from a run.

:func:`build_model` is the one place the model's order lives: the pretrained model with a fresh
task head, then the knowledge injectors' modules, then the adapters. Parameters that an
injector adds stay trainable whatever the adapters freeze: they start untrained, so freezing
them would leave a random module in the model.

:func:`save_trained` writes a run folder's ``model/`` when the pipeline has adapters: only the
tensors they train (``trained.safetensors``) and what is needed to rebuild the rest
(``augreg_model.json``: base model reference, task and labels, seed, injectors and adapters with
their options). A LoRA run of MiniLM is then about 1% of a full-model folder. Without adapters
the run folder keeps the whole model (``Trainer.save_model``).

:func:`load_model` rebuilds either kind of folder::

    model = augreg.load_model("runs/sst2-minilm-s42-20250101-120000")
    logits = model(**tokenizer("a fine film", return_tensors="pt")).logits

This module imports torch only inside its functions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from augreg.components import Adapter, Component, Kind, KnowledgeInjector, SetupContext
from augreg.errors import AugregError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from augreg.config import ModelConfig
    from augreg.host import PluginHost
    from augreg.tasks import Task

MANIFEST = "augreg_model.json"
"""Name of the rebuild manifest in a run folder's ``model/``."""
WEIGHTS = "trained.safetensors"
"""Name of the trained tensors in a run folder's ``model/``."""
FORMAT = "augreg-trained/1"
_C = TypeVar("_C", bound=Component)


def build_model(
    task: Task,
    model_cfg: ModelConfig,
    injectors: Sequence[KnowledgeInjector] = (),
    adapters: Sequence[Adapter] = (),
    tokenizer: Any = None,
) -> nn.Module:
    """Load the pretrained model, attach injector modules, apply the adapters, in that order.

    Parameters an injector adds (new names) are left trainable after the adapters run, since
    they start untrained. Parameters an injector only replaces (a resized embedding matrix keeps
    its name) follow the adapters. Seed the process first (``transformers.set_seed``): the task
    head and any adapter weights are initialised from the global generator.

    Args:
        task: The task (labels, head).
        model_cfg: The pretrained model reference.
        injectors: Knowledge injectors whose ``prepare_model`` attaches modules.
        adapters: Adapters whose ``prepare_model`` changes what is trained.
        tokenizer: Passed to the injectors.

    Returns:
        The model ready for training.
    """
    model: nn.Module = task.load_model(model_cfg)
    pretrained = {name for name, _ in model.named_parameters()}
    for injector in injectors:
        model = injector.prepare_model(model, tokenizer)
    injected = [p for name, p in model.named_parameters() if name not in pretrained]
    for adapter in adapters:
        model = adapter.prepare_model(model)
    if adapters:
        for p in injected:
            p.requires_grad_(True)
    return model


def trained_state(model: nn.Module, adapters: Sequence[Adapter]) -> dict[str, torch.Tensor]:
    """What the adapters say they train, plus every parameter that still requires gradients."""
    state: dict[str, torch.Tensor] = {}
    for adapter in adapters:
        state.update(adapter.trainable_state_dict(model))
    for name, p in model.named_parameters():
        if p.requires_grad and name not in state:
            state[name] = p.detach().cpu()
    return state


def save_trained(
    folder: str | Path,
    model: nn.Module,
    *,
    model_cfg: ModelConfig,
    task_type: str,
    labels: Sequence[str],
    seed: int,
    injectors: Sequence[KnowledgeInjector] = (),
    adapters: Sequence[Adapter] = (),
) -> Path:
    """Write the trained tensors and the rebuild manifest to ``folder``.

    Args:
        folder: The model folder (a run's ``model/``); created if missing.
        model: The trained model, as :func:`build_model` returned it.
        model_cfg: The base model reference the rebuild starts from.
        task_type: ``sequence_classification`` or ``token_classification``.
        labels: Label names in index order.
        seed: The seed the model was built with (frozen random weights, if any, are rebuilt
            from it).
        injectors: The injectors applied, rebuilt with the same options.
        adapters: The adapters applied, rebuilt with the same options.

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Tensors may share storage (tied weights) or be views; safetensors needs owners.
    state = {
        k: v.detach().cpu().contiguous().clone() for k, v in trained_state(model, adapters).items()
    }
    save_file(state, str(folder / WEIGHTS), metadata={"format": FORMAT})
    manifest = {
        "format": FORMAT,
        "model": model_cfg.model_dump(mode="json"),
        "task": task_type,
        "labels": list(labels),
        "seed": seed,
        "inject": [_spec(c) for c in injectors],
        "adapters": [_spec(c) for c in adapters],
        "weights": WEIGHTS,
        "trained_tensors": len(state),
        "trained_parameters": sum(int(t.numel()) for t in state.values()),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return folder


def _spec(component: Any) -> dict[str, Any]:
    return {"name": component.name, "options": component.options.model_dump(mode="json")}


def load_model(run_dir: str | Path, *, host: PluginHost | None = None) -> nn.Module:
    """Rebuild the trained model of a run folder (or of its ``model/`` folder).

    With adapters, the base model is loaded from the reference in ``augreg_model.json``, the
    injectors and adapters are applied again with their saved options, and the trained tensors
    are loaded over it; the plugins that provide them must be installed. Without adapters the
    whole saved model is loaded. A multi-task run gives back a
    :class:`augreg.multitask.MultiTaskModel` (``model(**inputs, augreg_task=<name>)``, or
    ``model.head(<name>)`` for one task's ``transformers`` model). The tokenizer is the base model's
    (``AutoTokenizer.from_pretrained`` on the manifest's ``model.name``, or on ``model/`` for
    a full-model folder). The model is returned in evaluation mode.

    Args:
        run_dir: A run folder (holding ``model/``) or a model folder.
        host: The plugin host to build components with (default: all installed plugins).

    Raises:
        AugregError: no saved model in the folder, a component is not installed, or the saved
            tensors do not fit the rebuilt model.
    """
    import transformers

    from augreg.config import ModelConfig, TaskConfig
    from augreg.host import default_host
    from augreg.tasks import get_task

    run_dir = Path(run_dir)
    folder = run_dir / "model" if (run_dir / "model").is_dir() else run_dir
    from augreg import multitask

    if (folder / multitask.MANIFEST).is_file():
        return multitask.load_multitask(folder)
    host = host or default_host()
    manifest_path = folder / MANIFEST
    adapters: list[Adapter]
    injectors: list[KnowledgeInjector]
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise AugregError(
                f"augreg: {manifest_path} has format {manifest.get('format')!r}; this augreg "
                f"reads {FORMAT!r}. Load it with the augreg version that wrote it."
            )
        model_cfg = ModelConfig(**manifest["model"])
        task_type = str(manifest["task"])
        labels = [str(x) for x in manifest["labels"]]
        seed = int(manifest["seed"])
        weights = folder / str(manifest["weights"])
        injectors = [_build(host, "injector", s, KnowledgeInjector) for s in manifest["inject"]]
        adapters = [_build(host, "adapter", s, Adapter) for s in manifest["adapters"]]
    elif (folder / "config.json").is_file():
        task_type, labels, seed, injectors = _full_model_settings(run_dir, folder, host)
        model_cfg = ModelConfig(name=str(folder))
        weights = folder / "model.safetensors"
        adapters = []
    else:
        raise AugregError(
            f"augreg: no saved model in {folder} (neither {MANIFEST} nor config.json). Was the "
            "run made with train.save_model = false, or did it stop before the end?"
        )
    task = get_task(TaskConfig.model_validate({"type": task_type}), labels)
    tokenizer = task.load_tokenizer(model_cfg) if injectors else None
    ctx = SetupContext(
        task=task_type,
        labels=labels,
        seed=seed,
        cache_dir=Path(os.environ.get("AUGREG_CACHE", Path.home() / ".cache" / "augreg")),
        tokenizer=tokenizer,
    )
    for comp in [*injectors, *adapters]:
        comp.setup(ctx)
    transformers.set_seed(seed)  # frozen weights a run initialised randomly come back the same
    model = build_model(task, model_cfg, injectors, adapters, tokenizer)
    if adapters or injectors:
        _load_tensors(model, weights)
    return model.eval()


def _build(host: PluginHost, kind: Kind, spec: Mapping[str, Any], cls: type[_C]) -> _C:
    built = host.create(kind, str(spec["name"]), dict(spec.get("options") or {}))
    if not isinstance(built, cls):  # pragma: no cover - the host checks kinds at registration
        raise AugregError(f"augreg: {spec['name']} is not a {kind}")
    return built


def _full_model_settings(
    run_dir: Path, folder: Path, host: PluginHost
) -> tuple[str, list[str], int, list[KnowledgeInjector]]:
    """Task, labels, seed and injectors of a full-model folder, from the run's config.yaml."""
    import yaml
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(folder))
    id2label: Mapping[Any, str] = config.id2label or {}
    labels = [str(id2label[k]) for k in sorted(id2label, key=int)]
    task_type = ""
    seed = 0
    injectors: list[KnowledgeInjector] = []
    run_config = run_dir / "config.yaml"
    if run_config.is_file():
        raw = yaml.safe_load(run_config.read_text(encoding="utf-8")) or {}
        task_type = str((raw.get("task") or {}).get("type", ""))
        seed = int((raw.get("train") or {}).get("seed", 0))
        for spec in raw.get("inject") or []:
            options = {k: v for k, v in spec.items() if k != "name"}
            spec = {"name": spec["name"], "options": options}
            injectors.append(_build(host, "injector", spec, KnowledgeInjector))
    if not task_type:
        archs = " ".join(config.architectures or [])
        task_type = (
            "token_classification" if "TokenClassification" in archs else "sequence_classification"
        )
    return task_type, labels, seed, injectors


def _load_tensors(model: nn.Module, weights: Path) -> None:
    from safetensors.torch import load_file

    from augreg.step import AUX

    if not weights.is_file():
        raise AugregError(
            f"augreg: the saved tensors {weights} are missing; the run is incomplete."
        )
    state = load_file(str(weights))
    result = model.load_state_dict(state, strict=False)
    # Modules that objectives and combiners train (an MLM head, loss weights) serve training
    # only; the rebuilt model for inference has no place for them.
    unexpected = [k for k in result.unexpected_keys if AUX not in k.split(".")]
    if unexpected:
        raise AugregError(
            f"augreg: {len(unexpected)} saved tensors of {weights} have no place in "
            f"the rebuilt model ({', '.join(unexpected[:3])}, ...). Install the "
            "plugin versions the run used (the run folder's augreg.lock lists them)."
        )
