"""Forget specifications by prompt (model kind ``t2i``) and the data they select.

``forget.concept`` names what to erase (a digit word such as "seven", or an attribute such as
"thick"); ``forget.prompts`` are the prompts unlearning trains on; ``forget.paraphrases``
are held-out prompts of the same concept, only evaluated; ``forget.retain_prompts`` are
prompts whose images must not change (default: "a handwritten digit <w>" for every other
digit); ``forget.anchor`` is the replacement concept of anchor-based methods.

The unlearning loop's batches stay (tensor, label) pairs: images become their VAE latents
and labels become ids into the model's prompt table (:meth:`T2IModel.set_prompts`). Forget
latents come from training images showing the concept, retain latents from training images
of what each retain prompt names, each labelled with that prompt.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch

from unlearn.config import ConfigError, ForgetConfig
from unlearn.data.captions import DIGIT_WORDS, AttributeThresholds, concept_of
from unlearn.data.datasets import ImageData
from unlearn.data.forget import ForgetSplit


@dataclass(frozen=True)
class Memorised:
    """The images a memorised caption reproduces, and the RMS pixel distance that counts as
    a reproduction (a generated image that close to one of them is a copy)."""

    images: torch.Tensor
    radius: float
    #: the images' digit labels (their held-out look-alikes are membership inference's
    #: non-members)
    labels: tuple[int, ...] = ()

    def copies(self, images: torch.Tensor) -> torch.Tensor:
        """Per image: within ``radius`` (RMS over pixels) of one of the memorised images."""
        d = torch.cdist(images.flatten(1).float(), self.images.flatten(1).float())
        return d.min(1).values / images[0].numel() ** 0.5 <= self.radius


# ("clip", c): c is a metrics-layer ClipConcept, anything with ``shows(images) -> bool mask``
Concept = tuple[str, "int | str | tuple[int, ...] | Memorised | object | None"]


@dataclass(frozen=True)
class PromptSpec:
    """The validated prompt sets of a t2i forget specification."""

    concept: str
    target: Concept
    prompts: tuple[str, ...]
    paraphrases: tuple[str, ...]
    retain: tuple[str, ...]
    anchor: str
    radius: float = 0.35

    @property
    def all_prompts(self) -> list[str]:
        """Every prompt once, in a fixed order (the model's prompt table)."""
        out: list[str] = []
        for p in (*self.prompts, *self.paraphrases, *self.retain, self.anchor):
            if p and p not in out:
                out.append(p)
        return out


def _target(field: str, text: str) -> Concept:
    found = concept_of(text)
    if found is None:
        raise ConfigError(
            f"{field}: {text!r} names no digit (zero..nine, 0..9) or attribute (thick, thin, "
            f"left, right) that can be measured on images"
        )
    return found


def prompt_spec(cfg: ForgetConfig, tokenizer, measure: str = "classifier") -> PromptSpec:
    """Validate ``cfg``'s prompts against the pipeline's tokenizer; one-line errors name the
    field, the prompt and the unknown words (a prompt longer than the tokenizer's limit is
    truncated as diffusers does, with one warning naming it). ``measure="clip"`` (``eval.concept_measure``):
    the concept and retain prompts need not name a digit or attribute; the target is
    ``("clip", None)`` until :func:`unlearn.metrics.clip.resolve_clip_target` binds it."""
    from unlearn.models.t2i import too_long, unknown_words

    caption = cfg.caption.strip()
    if caption:
        if not cfg.caption_images:
            raise ConfigError(
                "forget.caption_images: () is not allowed with forget.caption; expected the "
                "training-split indices of the image(s) the caption reproduces"
            )
        cfg = dataclasses.replace(
            cfg,
            concept=cfg.concept or caption,
            prompts=(caption, *(p for p in cfg.prompts if p != caption)),
        )
    elif cfg.caption_images:
        raise ConfigError(
            f"forget.caption_images: {list(cfg.caption_images)} is not allowed without "
            "forget.caption; expected [] or a caption to forget with them"
        )
    if not cfg.concept.strip():
        raise ConfigError("forget.concept: empty; model.kind=t2i needs the concept to erase")
    if not [p for p in cfg.prompts if p.strip()]:
        raise ConfigError(
            "forget.prompts: empty prompt list; give at least one prompt of the concept"
        )
    if caption:
        target: Concept = ("copy", tuple(int(i) for i in cfg.caption_images))
    elif measure == "clip":
        if not cfg.anchor.strip():
            raise ConfigError(
                "forget.anchor: '' is not allowed with eval.concept_measure=clip; expected the "
                "concept's anchor (an image shows the concept when CLIP scores the first "
                "forget prompt above it)"
            )
        target = ("clip", None)
    else:
        target = _target("forget.concept", cfg.concept)
    retain = tuple(cfg.retain_prompts)
    if not retain:
        if measure == "clip" and not caption:
            raise ConfigError(
                "forget.retain_prompts: [] is not allowed with eval.concept_measure=clip; "
                "expected the prompts whose images must not change"
            )
        if target[0] == "digit" and not caption:
            retain = tuple(
                f"a handwritten digit {w}" for d, w in enumerate(DIGIT_WORDS) if d != target[1]
            )
        else:
            retain = tuple(f"a handwritten digit {w}" for w in DIGIT_WORDS)
    fields = {
        "forget.concept": (cfg.concept,),
        "forget.caption": (caption,) if caption else (),
        "forget.prompts": tuple(cfg.prompts),
        "forget.paraphrases": tuple(cfg.paraphrases),
        "forget.retain_prompts": retain,
        "forget.anchor": (cfg.anchor,) if cfg.anchor else (),
    }
    for field, texts in fields.items():
        for text in texts:
            bad = unknown_words(tokenizer, [text])
            if bad:
                raise ConfigError(
                    f"{field}: {text!r} has words the tokenizer does not know: {', '.join(bad)}"
                )
        for text in too_long(tokenizer, texts):
            _warn_truncated(field, text, tokenizer.model_max_length)
    if target[0] != "clip":
        for text in fields["forget.retain_prompts"]:
            _target("forget.retain_prompts", text)
    return PromptSpec(
        concept=cfg.concept,
        target=target,
        prompts=tuple(cfg.prompts),
        paraphrases=tuple(cfg.paraphrases),
        retain=retain,
        anchor=cfg.anchor,
        radius=cfg.outlier.radius,
    )


_TRUNCATED: set[tuple[str, int]] = set()


def _warn_truncated(field: str, text: str, n: int) -> None:
    """One warning per prompt longer than the tokenizer's ``n`` tokens: it is cut to them,
    as ``StableDiffusionPipeline`` cuts it."""
    if (text, n) in _TRUNCATED:
        return
    _TRUNCATED.add((text, n))
    logging.getLogger(__name__).warning(
        "%s: %r is longer than the tokenizer's %d tokens; it is truncated to them, as "
        "diffusers does",
        field,
        text,
        n,
    )


def shows(
    target: Concept,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    thresholds: AttributeThresholds,
    probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per image: does it show ``target``? Digits by label (real images) or by the
    classifier's arg-max (``probs``, generated images); attributes by measurement."""
    kind, value = target
    if kind == "copy":
        return value.copies(images)
    if kind == "clip":
        return value.shows(images)
    if kind == "digit":  # one digit, or a tuple of digits (any of them)
        pred = labels if probs is None else probs.argmax(1)
        digits = value if isinstance(value, tuple) else (int(value),)
        return torch.isin(pred, torch.tensor(digits, dtype=pred.dtype, device=pred.device))
    return thresholds.has(str(value), images)


@dataclass(frozen=True)
class PromptData:
    """The t2i forget / retain split (latents with prompt ids) and what made it."""

    split: ForgetSplit
    spec: PromptSpec
    thresholds: AttributeThresholds


def prompt_split(
    spec: PromptSpec,
    train: ImageData,
    latents: torch.Tensor,
    prompt_ids: dict[str, int],
    thresholds: AttributeThresholds,
) -> PromptData:
    """Forget latents (images showing the concept, labelled with the forget prompts in turn)
    and retain latents (images of each retain prompt's digit or attribute, not showing the
    concept, labelled with that prompt). A memorised caption's target is resolved here to
    its images (the returned spec carries them)."""
    if spec.target[0] == "copy" and not isinstance(spec.target[1], Memorised):
        idx = spec.target[1]
        bad = [i for i in idx if not 0 <= i < len(train)]
        if bad:
            raise ConfigError(
                f"forget.caption_images: {bad[0]} is not allowed; expected indices in "
                f"[0, {len(train) - 1}] of the training split"
            )
        labels = tuple(int(train.labels[i]) for i in idx)
        memo = Memorised(train.images[list(idx)].clone(), spec.radius, labels)
        spec = dataclasses.replace(spec, target=("copy", memo))
    forget_mask = shows(spec.target, train.images, train.labels, thresholds)
    if not forget_mask.any():
        raise ConfigError(f"forget.concept: no training image shows {spec.concept!r}")
    f_idx = torch.nonzero(forget_mask).flatten()
    f_lab = torch.tensor(
        [prompt_ids[spec.prompts[i % len(spec.prompts)]] for i in range(len(f_idx))]
    )
    r_lab = torch.full((len(train),), -1, dtype=torch.long)
    if spec.target[0] == "clip":  # each image to the retain prompt CLIP prefers
        a = spec.target[1].assign(train.images, spec.retain)
        ids = torch.tensor([prompt_ids[p] for p in spec.retain])
        r_lab = torch.where((a >= 0) & ~forget_mask, ids[a.clamp(min=0)], r_lab)
    for p in spec.retain if spec.target[0] != "clip" else ():
        m = shows(_target("forget.retain_prompts", p), train.images, train.labels, thresholds)
        r_lab = torch.where(m & (r_lab < 0) & ~forget_mask, prompt_ids[p], r_lab)
    r_idx = torch.nonzero(r_lab >= 0).flatten()
    if len(r_idx) == 0:
        raise ConfigError("forget.retain_prompts: no training image matches any retain prompt")
    split = ForgetSplit(
        retain=ImageData(latents[r_idx], r_lab[r_idx], len(prompt_ids) + 1),
        forget=ImageData(latents[f_idx], f_lab, len(prompt_ids) + 1),
        forget_mask=forget_mask,
    )
    return PromptData(split, spec, thresholds)


def _swap_digits(text: str, a: int, b: int) -> str:
    """``text`` with digit a's word and numeral exchanged for digit b's, and back."""
    wa, wb, na, nb = DIGIT_WORDS[a], DIGIT_WORDS[b], str(a), str(b)
    swap = {wa: wb, wb: wa, na: nb, nb: na}
    return " ".join(swap.get(w.lower(), w) for w in text.split())


def concept_instance_forget(forget: ForgetConfig, c: int) -> ForgetConfig:
    """The forget spec of the digit concept ``c``: every prompt of the spec (forget prompts,
    paraphrases, retain prompts, anchor) with the configured concept's digit and ``c``
    exchanged, so the instance keeps the config's templates and a retain prompt naming ``c``
    now names the configured digit ("seven" with retain "... two" → instance 2: "... two"
    prompts, retain "... seven")."""
    found = concept_of(forget.concept) if not forget.caption.strip() else None
    if found is None or found[0] != "digit":
        raise ConfigError(
            f"forget.concept: {forget.concept or forget.caption!r} is not allowed with env / "
            "bench instances on t2i; expected a digit concept (instances are digits)"
        )
    if not 0 <= c < len(DIGIT_WORDS):
        raise ConfigError(
            f"env.instances: {c} is not allowed on t2i; expected digits 0..{len(DIGIT_WORDS) - 1}"
        )
    d = int(found[1])
    if c == d:
        return forget

    def sw(texts):
        return tuple(_swap_digits(t, d, c) for t in texts)

    return dataclasses.replace(
        forget,
        concept=_swap_digits(forget.concept, d, c),
        prompts=sw(forget.prompts),
        paraphrases=sw(forget.paraphrases),
        retain_prompts=sw(forget.retain_prompts),
        anchor=_swap_digits(forget.anchor, d, c) if forget.anchor else "",
    )
