"""What the consistency regularizers share: the unlabelled batch, its augmented views, warm-up.

Where the augmented view is written: in the training step, from the raw unlabelled examples
the Trainer draws (``ctx.unlabelled.examples``), by the augmenter named in the options, built
through the plugin host like any component. Each view's ``random.Random`` is derived from
(pipeline seed, component, augmenter, example id, step), so the same seed gives the same
views whatever the batch size. Writing views per step keeps them fresh at every draw (as in
UDA and FixMatch, where each draw of an unlabelled example gets a new augmentation) and needs
no new core stage; the price is that the augmenter runs in the training process: cheap for
EDA (well under a millisecond per sentence), expensive for back-translation (a translation
model per step, which ``backtranslation.round_trip``'s own cache softens once views repeat).

Cost: see each component; views cost one augmenter call and one tokenization per unlabelled
example per step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from augreg.components import Augmenter, Regularizer, SetupContext
from augreg.errors import AugregError, OptionsError
from augreg.seeding import derive_rng

if TYPE_CHECKING:
    import torch

    from augreg.context import StepContext

SEQUENCE = frozenset({"sequence_classification"})


def _augmenter_problems(name: str, options: dict[str, Any]) -> list[str]:
    """Why ``name`` with ``options`` cannot write label-preserving views (empty when it can)."""
    from augreg.host import default_host

    host = default_host()
    info = host.components["augmenter"].get(name)
    if info is None:
        msg, hint = host.unknown_hint("augmenter", name)
        return [f"augmenter: {msg}" + (f" {' '.join(hint)}" if hint else "")]
    cls = info.cls
    problems: list[str] = []
    if cls.changes_labels:
        problems.append(
            f"augmenter: {name} may change labels; a view must keep the example's label "
            "(pick a label-preserving augmenter such as eda.eda)"
        )
    if getattr(cls, "needs_model", False):
        problems.append(
            f"augmenter: {name} writes its views against the model once per epoch and cannot "
            "write per-step views; pick another augmenter"
        )
    if "sequence_classification" not in cls.supports_tasks:
        problems.append(f"augmenter: {name} does not support sequence_classification")
    try:
        cls.validate_options(dict(options))
    except OptionsError as exc:
        problems.extend(f"augmenter_options: {line}" for line in exc.problems)
    return problems


class ConsistencyRegularizer(Regularizer):
    """Base of the regularizers that train on unlabelled text (``needs_unlabelled``).

    Subclasses implement :meth:`loss` with :meth:`unlabelled_batch`, :meth:`views` and
    :meth:`ramp`. Cost: as declared by the subclass.
    """

    needs_unlabelled: ClassVar[bool] = True
    supports_tasks: ClassVar[frozenset[str]] = SEQUENCE

    class Options(Regularizer.Options):
        augmenter: str = Field(
            "eda.eda",
            min_length=1,
            description="Installed augmenter that writes the augmented view (eda.eda, "
            "eda.synonym_replacement, backtranslation.round_trip, ...); must keep labels.",
        )
        augmenter_options: dict[str, Any] = Field(
            default_factory=dict,
            description="Options of the augmenter (e.g. {n_aug = 1} for eda.eda: one view "
            "is kept per example, extra outputs are wasted work).",
        )
        warmup_steps: int = Field(
            0,
            ge=0,
            le=10_000_000,
            description="Steps over which the term's weight ramps linearly from 0 to weight.",
        )
        use_labelled: bool = Field(
            False,
            description="Also use the labelled batch's texts (decoded from its tokens) as "
            "unlabelled examples, as FixMatch does; the only source when a step has no "
            "unlabelled batch (custom loops).",
        )

    options: Options

    _augmenter: Augmenter | None = None
    _tokenizer: Any = None
    _max_length: int = 128
    _seed: int = 0

    @classmethod
    def validate_options(cls, values: dict[str, Any]) -> Any:
        """Validate the options, including the augmenter's name and options (installed host)."""
        opts = super().validate_options(values)
        assert isinstance(opts, ConsistencyRegularizer.Options)
        problems = _augmenter_problems(opts.augmenter, opts.augmenter_options)
        if problems:
            raise OptionsError(cls.name, problems)
        return opts

    @classmethod
    def conformance_options(cls, folder: Any, task: str) -> dict[str, Any] | None:
        """The kit's batch has no unlabelled part and its tiny model is unsure of everything:
        use the labelled batch, keep every example, and a view that needs no WordNet."""
        return {"use_labelled": True, "threshold": 0.0, "augmenter": "eda.random_swap"}

    def setup(self, ctx: SetupContext) -> None:
        """Build and set up the augmenter; keep the tokenizer for encoding views."""
        from augreg.host import default_host

        if ctx.task not in self.supports_tasks:
            raise AugregError(
                f"augreg: {self.name} supports {', '.join(sorted(self.supports_tasks))} only, "
                f"not {ctx.task} (per-token pseudo-labels are not written yet)."
            )
        opts = self.options
        aug = default_host().create("augmenter", opts.augmenter, opts.augmenter_options)
        assert isinstance(aug, Augmenter)
        aug.setup(ctx)
        self._augmenter = aug
        self._tokenizer = ctx.tokenizer
        self._max_length = int(ctx.max_length or 128)
        self._seed = ctx.seed

    # -- helpers for subclasses ------------------------------------------------------------

    def _need_setup(self) -> tuple[Augmenter, Any]:
        if self._augmenter is None or self._tokenizer is None:
            raise AugregError(
                f"augreg: {self.name} was not set up with a tokenizer; call "
                "setup(augreg.SetupContext(tokenizer=..., ...)) first (the pipeline does)."
            )
        return self._augmenter, self._tokenizer

    def ramp(self, ctx: StepContext) -> float:
        """The warm-up factor of this step: ``min(1, (step + 1) / warmup_steps)``."""
        steps = self.options.warmup_steps
        return 1.0 if steps == 0 else min(1.0, (ctx.step + 1) / steps)

    def encode(self, texts: Sequence[str], device: Any) -> dict[str, torch.Tensor]:
        """Tokenize and pad ``texts`` as training does; tensors on ``device``."""
        _, tok = self._need_setup()
        enc = tok(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self._max_length,
            return_tensors="pt",
        )
        return {k: v.to(device) for k, v in enc.items()}

    def unlabelled_batch(self, ctx: StepContext) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Model inputs and raw examples (``augreg_id``, ``text``) of the step's unlabelled data.

        Raises:
            AugregError: the step has no unlabelled batch and ``use_labelled`` is off.
        """
        part = ctx.unlabelled
        if not self.options.use_labelled:
            if part is None or len(part) == 0:
                raise AugregError(
                    f"augreg: {self.name} needs unlabelled examples and this step has none. "
                    "In a pipeline give data.unlabelled; in a custom loop put them in the "
                    "batch (augreg.context.UNLABELLED) or set use_labelled = true."
                )
            return dict(part.inputs), list(part.examples)
        _, tok = self._need_setup()
        n = int(ctx.labels.shape[0]) // max(ctx.copies, 1)
        texts = tok.batch_decode(ctx.inputs["input_ids"][:n], skip_special_tokens=True)
        examples = [
            {"augreg_id": "labelled:" + hashlib.sha1(t.encode()).hexdigest()[:16], "text": t}
            for t in texts
        ]
        if part is not None:
            examples += list(part.examples)
        device = ctx.inputs["input_ids"].device
        return self.encode([ex["text"] for ex in examples], device), examples

    def views(
        self, ctx: StepContext, examples: Sequence[dict[str, Any]], device: Any
    ) -> dict[str, torch.Tensor]:
        """The augmented view of each example, tokenized; the original where none is written.

        Rngs are ``derive_rng(seed, "<component>/<augmenter>", augreg_id, step)``; of several
        outputs one is picked with the same rng.
        """
        aug, _ = self._need_setup()
        key = f"{self.name}/{aug.name}"
        rngs = [derive_rng(self._seed, key, ex["augreg_id"], ctx.step) for ex in examples]
        outs = aug.augment_batch([{**ex, "label": 0} for ex in examples], rngs)
        texts: list[str] = []
        kept = 0
        for ex, out, rng in zip(examples, outs, rngs, strict=True):
            if out:
                texts.append(str(out[rng.randrange(len(out))]["text"]))
                kept += 1
            else:
                texts.append(str(ex["text"]))
        stats = ctx.state.setdefault(self.name, {})
        stats["views_written"] = stats.get("views_written", 0) + kept
        stats["views_fallback"] = stats.get("views_fallback", 0) + len(examples) - kept
        return self.encode(texts, device)
