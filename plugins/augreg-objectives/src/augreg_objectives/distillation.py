"""Knowledge distillation from a teacher's logits (Hinton et al. 2015).

The teacher is any model of the same task and labels: a hub name, a local folder,
``pkg:<module>``, or an earlier augreg run folder (loaded with :func:`augreg.load_model`, its
adapters and injectors applied again). It must share the student's vocabulary: it reads the
student's token ids.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

import augreg
from augreg.errors import AugregError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from augreg.context import StepContext

AUX_KEY = "objectives_distillation"


def load_teacher(reference: str, task: str) -> Any:
    """Load a teacher by run folder, local folder, ``pkg:<module>`` or hub name (eval mode).

    Raises:
        AugregError: the teacher cannot be found or loaded.
    """
    path = Path(reference).expanduser()
    if path.is_dir() and (
        (path / "model").is_dir()
        or (path / "augreg_model.json").is_file()
        or (path / "config.yaml").is_file()
    ):
        return augreg.load_model(path)
    import transformers

    from augreg.tasks import load_pretrained

    loader = (
        transformers.AutoModelForTokenClassification
        if task == "token_classification"
        else transformers.AutoModelForSequenceClassification
    )
    return load_pretrained(loader, reference).eval()


class Distillation(augreg.Objective):
    """Temperature-scaled KL to a teacher's logits, mixed with the task's cross-entropy.

    ``loss = alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, labels)``
    (Hinton et al. 2015), averaged over the examples (sequence classification) or the
    labelled tokens (token classification). Positions labelled ``-100`` and padding are
    ignored. Replaces ``core.cross_entropy`` (it contains it).

    Soft labels on unlabelled text (``unlabeled = true``, sequence classification): the
    pipeline's ``data.unlabelled`` (required then) is drawn with every training batch,
    ``data.unlabelled_ratio`` examples per labelled one; the student runs on them and gets
    the KL term toward the teacher there too, averaged with the labelled examples' KL (so
    each example, labelled or not, counts once); the cross-entropy stays on the labelled
    ones. In a custom loop, sequence examples labelled ``-100`` in the batch are treated as
    unlabelled the same way.

    ``hidden_weight > 0`` adds ``hidden_weight * MSE(P h_s, h_t)`` between the last hidden
    states on real tokens, where ``P`` is a learned linear projection when the student's
    width differs from the teacher's (trained with the model, saved with it).

    Teacher logits come from the teacher in eval mode, on the fly, and are kept in memory per
    tokenized example (``cache = "memory"``): the key is the example's token ids, so a static
    data stage computes each example's logits once per run, and fresh per-epoch views simply
    miss the cache. Hidden-state matching always runs the teacher.

    Cost: one teacher forward (no backward) per step until the cache is warm; none after,
    for a static data set without hidden-state matching. With ``unlabeled = true``, per
    unlabelled batch as large as the labelled one: one student forward and backward and one
    teacher forward until its logits are cached (1.33 passes, declared; the run report
    multiplies it by the ratio).

    Example:
        >>> augreg.create("objectives.distillation", teacher="runs/teacher-s1", temperature=2.0)
        ... # doctest: +SKIP
    """

    name = "objectives.distillation"
    supports_multitask: ClassVar[bool] = False  # the teacher predicts one task's labels
    teacher_option: ClassVar[str | None] = "teacher"  # a teacher stage fills it
    paper = "Hinton et al. 2015, Distilling the Knowledge in a Neural Network"
    conflicts_with: ClassVar[frozenset[str]] = frozenset(
        {"core.cross_entropy", "core.label_smoothing"}
    )
    extra_passes: ClassVar[float] = 0.5

    class Options(augreg.Objective.Options):
        teacher: str | None = Field(
            None,
            description="Teacher: hub name, local folder, pkg:<module>, or augreg run folder; "
            "unset with a teacher stage ([teacher] in the config), which fills it.",
        )
        temperature: float = Field(2.0, gt=0, le=100, description="Softmax temperature T.")
        alpha: float = Field(
            0.5, ge=0, le=1, description="Share of the KL term; 1 - alpha goes to cross-entropy."
        )
        hidden_weight: float = Field(
            0.0, ge=0, le=1e4, description="Weight of last-layer hidden-state MSE (0: off)."
        )
        unlabeled: bool = Field(
            False,
            description="Also distil on unlabelled text: the pipeline's data.unlabelled "
            "(required), drawn with every batch (sequence classification).",
        )
        cache: Literal["memory", "none"] = Field(
            "memory", description="Keep teacher logits per tokenized example for the run."
        )
        max_cached: int = Field(
            1_000_000, ge=1, description="Most examples whose teacher logits are kept."
        )

        @model_validator(mode="after")
        def _needs_teacher(self) -> Distillation.Options:
            if not self.teacher:
                raise ValueError(
                    "teacher is missing: set teacher = a run folder of a model trained on the "
                    "same labels (runs/<run>), a local folder, pkg:<module> or a hub name, or "
                    'give the config a teacher stage ([teacher] recipe = "...") to train one first'
                )
            return self

    options: Options

    @classmethod
    def conformance_options(cls, folder: Path, task: str) -> dict[str, Any] | None:
        """A tiny teacher saved under ``folder``: there is no default teacher to check with.

        Hidden-state matching is on for token classification, so both paths are checked.
        """
        from augreg.testing import save_tiny_model

        teacher = save_tiny_model(folder / "teacher", task, seed=5)
        hidden = 0.5 if task == "token_classification" else 0.0
        return {"teacher": str(teacher), "hidden_weight": hidden}

    @classmethod
    def uses_unlabelled(cls, options: Mapping[str, Any]) -> bool:
        """With ``unlabeled = true`` the pipeline needs ``data.unlabelled``."""
        return bool(options.get("unlabeled", False))

    def __init__(self, options: Any = None, /, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        if self.options.unlabeled:
            self.extra_passes = 1.0 + 1 / 3  # type: ignore[misc]
        # hidden states only when they are matched (the step then asks every pass for them)
        self.needs_hidden_states = self.options.hidden_weight > 0  # type: ignore[misc]
        self._teacher: Any = None
        self._task = "sequence_classification"
        self._labels: list[str] = []
        self._cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._checked: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        # the teacher and the cache are rebuilt after unpickling, never shipped
        return {**self.__dict__, "_teacher": None, "_cache": OrderedDict(), "_checked": None}

    def setup(self, ctx: augreg.SetupContext) -> None:
        if self.options.unlabeled and ctx.task != "sequence_classification":
            raise AugregError(
                "augreg: objectives.distillation: unlabeled = true is for sequence "
                f"classification, and the task is {ctx.task}; set unlabeled = false."
            )
        self._task = ctx.task
        self._labels = list(ctx.labels)
        if self._teacher is None:
            assert self.options.teacher is not None
            self._teacher = load_teacher(self.options.teacher, ctx.task)
            for p in self._teacher.parameters():
                p.requires_grad_(False)
        self._check_labels()

    # -- checks ----------------------------------------------------------------------------

    def _check_labels(self) -> None:
        n = int(getattr(self._teacher.config, "num_labels", 0))
        if self._labels and n != len(self._labels):
            raise AugregError(
                f"augreg: objectives.distillation: the teacher {self.options.teacher!r} has "
                f"{n} labels and the task has {len(self._labels)} ({', '.join(self._labels)}). "
                "Distil from a teacher fine-tuned on the same labels, in the same order (an "
                "augreg run folder of this task)."
            )

    def _check_student(self, student: nn.Module) -> None:
        if self._checked == id(student):
            return
        s_cfg = getattr(student, "config", None)
        t_cfg = self._teacher.config
        sv, tv = getattr(s_cfg, "vocab_size", None), getattr(t_cfg, "vocab_size", None)
        if sv is not None and tv is not None and sv != tv:
            raise AugregError(
                f"augreg: objectives.distillation: the teacher {self.options.teacher!r} has a "
                f"vocabulary of {tv} tokens and the student {sv}; the teacher reads the "
                "student's token ids, so use a teacher with the student's tokenizer."
            )
        self._checked = id(student)

    # -- modules ---------------------------------------------------------------------------

    def prepare_model(self, model: nn.Module, tokenizer: Any = None) -> nn.Module:
        """Attach the hidden-state projection when hidden matching is on and widths differ."""
        if self._teacher is None:
            raise AugregError(
                "augreg: objectives.distillation: setup() has not run, so there is no teacher; "
                "build the pipeline with augreg.Pipeline, or call setup(ctx) first."
            )
        from augreg.context import unwrap_model

        self._check_student(unwrap_model(model))
        if self.options.hidden_weight > 0:
            self._projection(model)
        return model

    def _projection(self, model: nn.Module) -> nn.Module | None:
        from torch import nn

        from augreg.context import unwrap_model

        config: Any = unwrap_model(model).config  # a transformers config
        s_width = int(config.hidden_size)
        t_width = int(self._teacher.config.hidden_size)
        if s_width == t_width:
            return None
        aux = augreg.aux_modules(model)
        if AUX_KEY not in aux:
            proj = nn.Linear(s_width, t_width)
            aux[AUX_KEY] = proj.to(next(unwrap_model(model).parameters()).device)
        projection: nn.Module = aux[AUX_KEY]
        return projection

    # -- the loss --------------------------------------------------------------------------

    def _teacher_pass(
        self, ctx: StepContext, hidden: bool, batch: Mapping[str, Any] | None = None
    ) -> tuple[torch.Tensor, Any]:
        """Teacher logits on the step's batch (or ``batch``: the unlabelled inputs)."""
        import torch

        source = ctx.inputs if batch is None else batch
        inputs = {k: v for k, v in source.items() if k != "output_hidden_states"}
        device = ctx.labels.device
        attention = inputs.get("attention_mask")
        if attention is None:
            attention = torch.ones_like(inputs["input_ids"])
        if self._teacher.device != device:
            self._teacher.to(device)
        use_cache = self.options.cache == "memory" and not hidden
        keys: list[bytes] = []
        if use_cache:
            ids = inputs["input_ids"]
            mask = attention.bool()
            keys = [
                hashlib.blake2b(ids[i][mask[i]].cpu().numpy().tobytes(), digest_size=16).digest()
                for i in range(ids.size(0))
            ]
            if all(k in self._cache for k in keys):
                rows = [self._cache[k].to(device) for k in keys]
                length = ids.size(1)
                if rows[0].dim() == 2:  # token classification: pad each row to the batch length
                    rows = [torch.nn.functional.pad(r, (0, 0, 0, length - r.size(0))) for r in rows]
                return torch.stack(rows), None
        with torch.no_grad():
            out = self._teacher(**inputs, output_hidden_states=hidden)
        logits = out.logits.detach().float()
        if use_cache:
            mask = attention.bool()
            for i, key in enumerate(keys):
                row = logits[i][mask[i]] if logits.dim() == 3 else logits[i]
                self._cache[key] = row.cpu()
                if len(self._cache) > self.options.max_cached:
                    self._cache.popitem(last=False)
        return logits, out

    def loss(self, ctx: StepContext, outputs: Any = None) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        if self._teacher is None:
            raise AugregError(
                "augreg: objectives.distillation has no teacher loaded: call setup() first "
                "(augreg.Pipeline does)."
            )
        self._check_student(ctx.model)
        out = ctx.outputs if outputs is None else outputs
        student = out.logits.float()
        hidden = self.options.hidden_weight > 0
        teacher, t_out = self._teacher_pass(ctx, hidden)
        if teacher.shape != student.shape:
            self._check_labels()
            raise AugregError(
                f"augreg: objectives.distillation: teacher logits {tuple(teacher.shape)} do not "
                f"match the student's {tuple(student.shape)}; use a teacher of the same task "
                "and labels."
            )
        labels = ctx.labels.to(student.device)
        labelled = labels != -100
        if student.dim() == 3:  # token classification: labelled real tokens only
            keep = labelled & ctx.attention_mask.bool().to(student.device)
        else:
            keep = torch.ones_like(labelled) if self.options.unlabeled else labelled
        T = self.options.temperature
        s_kept, t_kept = student[keep], teacher[keep]
        if self.options.unlabeled and ctx.unlabelled is not None and outputs is None:
            # soft labels on the unlabelled text drawn with the batch (the clean pass only:
            # a perturbed pass of a regularizer re-uses the labelled part)
            extra = ctx.unlabelled.inputs
            s_extra = ctx.forward(inputs=extra).logits.float()
            t_extra, _ = self._teacher_pass(ctx, False, extra)
            s_kept = torch.cat([s_kept, s_extra])
            t_kept = torch.cat([t_kept, t_extra.to(s_extra.device)])
        total: torch.Tensor = student.sum() * 0.0
        if s_kept.numel():
            kl = F.kl_div(
                F.log_softmax(s_kept / T, dim=-1),
                F.log_softmax(t_kept / T, dim=-1),
                log_target=True,
                reduction="batchmean",
            )
            total = total + self.options.alpha * T * T * kl
        if self.options.alpha < 1 and bool(labelled.any()):
            ce = F.cross_entropy(student[labelled], labels[labelled])
            total = total + (1 - self.options.alpha) * ce
        if hidden:
            total = total + self.options.hidden_weight * self._hidden_loss(ctx, out, t_out)
        return total

    def _hidden_loss(self, ctx: StepContext, out: Any, t_out: Any) -> torch.Tensor:
        from augreg_objectives.pooling import last_hidden

        h_s = last_hidden(out, self.name).float()
        h_t = last_hidden(t_out, f"{self.name} (teacher)").float()
        proj = self._projection(ctx.model)
        if proj is not None:
            h_s = proj(h_s)
        mask = ctx.attention_mask.to(h_s.device, h_s.dtype).unsqueeze(-1)
        err = ((h_s - h_t) ** 2 * mask).sum()
        return err / (mask.sum() * h_s.size(-1)).clamp_min(1.0)
