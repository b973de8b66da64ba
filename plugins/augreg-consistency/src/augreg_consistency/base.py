"""What the consistency regularizers share: the unlabelled batch, its augmented views, warm-up.

Both regularizers compare, row by row, a target prediction (no gradient) with the model's
prediction on an augmented view: a row is an unlabelled example (sequence classification) or
a word present in both the text and its view (token classification, first sub-token of each
word; see :func:`align_words`).

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

import difflib
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

TOKEN = "token_classification"


def align_words(clean: Sequence[str], view: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``: word ``i`` of the text is word ``j`` of its view.

    Found with ``difflib.SequenceMatcher``: words kept as they are (in order), and words
    substituted one for one (a run of replaced words as long in both). Inserted and deleted
    words, and runs replaced by a run of another length, are left unpaired: they get no
    consistency term. Swapped words pair with themselves where the longest common
    subsequence keeps them.

    Example:
        >>> align_words(["a", "big", "cat"], ["a", "huge", "cat", "!"])
        [(0, 0), (1, 1), (2, 2)]
    """
    pairs: list[tuple[int, int]] = []
    matcher = difflib.SequenceMatcher(a=list(clean), b=list(view), autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal" or (op == "replace" and i2 - i1 == j2 - j1):
            pairs.extend(zip(range(i1, i2), range(j1, j2), strict=True))
    return pairs


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
    try:
        cls.validate_options(dict(options))
    except OptionsError as exc:
        problems.extend(f"augmenter_options: {line}" for line in exc.problems)
    return problems


class ConsistencyRegularizer(Regularizer):
    """Base of the regularizers that train on unlabelled text (``needs_unlabelled``).

    Subclasses implement :meth:`loss` with :meth:`paired_logits` (or :meth:`unlabelled_batch`
    and :meth:`view_examples`) and :meth:`ramp`. Cost: as declared by the subclass.
    """

    needs_unlabelled: ClassVar[bool] = True

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
    _task: str = "sequence_classification"

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
        """Build and set up the augmenter; keep the tokenizer for encoding views.

        Raises:
            AugregError: the augmenter does not support the task (before any model loads).
        """
        from augreg.host import default_host

        opts = self.options
        aug = default_host().create("augmenter", opts.augmenter, opts.augmenter_options)
        assert isinstance(aug, Augmenter)
        if ctx.task not in aug.supports_tasks:
            raise AugregError(
                f"augreg: {self.name}: the augmenter {aug.name} does not support {ctx.task} "
                f"(it supports {', '.join(sorted(aug.supports_tasks))}); pick one that does, "
                "e.g. eda.synonym_replacement or eda.keyboard."
            )
        aug.setup(ctx)
        self._augmenter = aug
        self._tokenizer = ctx.tokenizer
        self._max_length = int(ctx.max_length or 128)
        self._seed = ctx.seed
        self._task = ctx.task

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

    def encode(self, texts: Sequence[Any], device: Any) -> Any:
        """Tokenize and pad texts (or, for token classification, word lists) as training
        does; a ``BatchEncoding`` of tensors on ``device`` (``word_ids`` available)."""
        _, tok = self._need_setup()
        enc = tok(
            [list(t) for t in texts] if self._task == TOKEN else list(texts),
            is_split_into_words=self._task == TOKEN,
            padding=True,
            truncation=True,
            max_length=self._max_length,
            return_tensors="pt",
        )
        return enc.to(device)

    def unlabelled_batch(self, ctx: StepContext) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Model inputs and raw examples (``augreg_id`` and ``text`` or ``tokens``) of the
        step's unlabelled data.

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
        examples: list[dict[str, Any]] = []
        for t in texts:
            rid = "labelled:" + hashlib.sha1(t.encode()).hexdigest()[:16]
            if self._task == TOKEN:
                examples.append({"augreg_id": rid, "tokens": t.split() or ["."]})
            else:
                examples.append({"augreg_id": rid, "text": t})
        if part is not None:
            examples += list(part.examples)
        device = ctx.inputs["input_ids"].device
        enc = self.encode([_words_or_text(ex) for ex in examples], device)
        return dict(enc), examples

    def view_examples(self, ctx: StepContext, examples: Sequence[dict[str, Any]]) -> list[Any]:
        """The augmented view of each example (its text, or its word list); the example's own
        where the augmenter writes nothing (counted in ``ctx.state[name]["views_fallback"]``).

        Rngs are ``derive_rng(seed, "<component>/<augmenter>", augreg_id, step)``; of several
        outputs one is picked with the same rng.
        """
        aug, _ = self._need_setup()
        key = f"{self.name}/{aug.name}"
        rngs = [derive_rng(self._seed, key, ex["augreg_id"], ctx.step) for ex in examples]
        if self._task == TOKEN:  # no tags: every word is outside any span
            given = [{**ex, "tags": ["O"] * len(ex["tokens"])} for ex in examples]
        else:
            given = [{**ex, "label": 0} for ex in examples]
        outs = aug.augment_batch(given, rngs)
        views: list[Any] = []
        kept = 0
        for ex, out, rng in zip(examples, outs, rngs, strict=True):
            if out:
                views.append(_words_or_text(out[rng.randrange(len(out))]))
                kept += 1
            else:
                views.append(_words_or_text(ex))
        stats = ctx.state.setdefault(self.name, {})
        stats["views_written"] = stats.get("views_written", 0) + kept
        stats["views_fallback"] = stats.get("views_fallback", 0) + len(examples) - kept
        return views

    def views(
        self, ctx: StepContext, examples: Sequence[dict[str, Any]], device: Any
    ) -> dict[str, torch.Tensor]:
        """The augmented views of ``examples``, tokenized and padded on ``device``."""
        return dict(self.encode(self.view_examples(ctx, examples), device))

    def paired_logits(
        self, ctx: StepContext, teacher: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Target logits (no gradient, no dropout, by ``teacher`` or the model) and the model's
        logits on the augmented view, row by row, with an id per row.

        Sequence classification: one row per unlabelled example (id ``augreg_id``). Token
        classification: one row per word paired by :func:`align_words` between the text and
        its view, at each word's first sub-token (id ``augreg_id#word``); words cut off by
        ``max_length`` are left out.
        """
        import torch

        inputs, examples = self.unlabelled_batch(ctx)
        device = inputs["input_ids"].device
        views = self.view_examples(ctx, examples)
        if self._task != TOKEN:
            with torch.no_grad():
                target = ctx.forward(inputs=inputs, dropout=False, model=teacher).logits
            encoded = dict(self.encode(views, device))
            view = ctx.forward(inputs=encoded).logits
            return target.float(), view.float(), [str(ex["augreg_id"]) for ex in examples]
        clean_words = [list(ex["tokens"]) for ex in examples]
        clean, seen = self.encode(clean_words, device), self.encode(views, device)
        rows: list[tuple[int, int, int]] = []
        ids: list[str] = []
        for b, (words, view_words) in enumerate(zip(clean_words, views, strict=True)):
            first_c, first_v = _first_subtokens(clean, b), _first_subtokens(seen, b)
            for i, j in align_words(words, view_words):
                if i in first_c and j in first_v:
                    rows.append((b, first_c[i], first_v[j]))
                    ids.append(f"{examples[b]['augreg_id']}#{i}")
        stats = ctx.state.setdefault(self.name, {})
        stats["aligned_words"] = len(rows)
        batch_idx = torch.tensor([r[0] for r in rows], dtype=torch.long, device=device)
        at_c = torch.tensor([r[1] for r in rows], dtype=torch.long, device=device)
        at_v = torch.tensor([r[2] for r in rows], dtype=torch.long, device=device)
        with torch.no_grad():
            target = ctx.forward(inputs=dict(clean), dropout=False, model=teacher).logits
        view = ctx.forward(inputs=dict(seen)).logits
        return target[batch_idx, at_c].float(), view[batch_idx, at_v].float(), ids


def _words_or_text(example: dict[str, Any]) -> Any:
    return list(example["tokens"]) if "tokens" in example else str(example["text"])


def _first_subtokens(encoding: Any, row: int) -> dict[int, int]:
    """Word index -> position of its first sub-token in row ``row`` of a fast encoding."""
    first: dict[int, int] = {}
    for pos, word in enumerate(encoding.word_ids(row)):
        if word is not None and word not in first:
            first[word] = pos
    return first
