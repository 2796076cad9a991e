"""Audits of text-to-image pipelines: what they run on, and the concept rate they measure.

A pipeline audit works on latents labelled with prompt ids, like t2i unlearning
(:mod:`unlearn.data.prompts`): the relearning attack fine-tunes a copy of the pipeline's UNet
on (forget prompt, forget image) pairs or on (retain prompt, retain image) pairs; membership
inference scores the fixed-noise denoising loss of training latents against held-out latents
under the same prompts. The rate an attack tries to bring back is the *concept rate*: the
fraction of ``audit.prompt_samples`` images per prompt in which the evaluation classifier
(or the attribute measurement) sees the erased concept.

Base and unlearned pipeline must share their VAE (unlearning never trains it), so one set of
latents serves both.
"""

from __future__ import annotations

import dataclasses

import torch

from unlearn.audit.membership import MembershipSets, take, with_retain
from unlearn.config import AuditConfig, Config, ConfigError
from unlearn.data import ForgetSplit
from unlearn.data.captions import AttributeThresholds
from unlearn.data.prompts import Memorised, PromptSpec, prompt_split


def check_pair(model, base, where: str) -> None:
    """Same image and latent shape, same VAE weights; ConfigError otherwise."""
    shape = (model.image_channels, model.image_resolution, model.channels, model.resolution)
    other = (base.image_channels, base.image_resolution, base.channels, base.resolution)
    if shape != other:
        raise ConfigError(
            f"{where}: makes {other[0]}x{other[1]}x{other[1]} images from {other[2]}x{other[3]}"
            f"x{other[3]} latents, the audited pipeline {shape[0]}x{shape[1]}x{shape[1]} from "
            f"{shape[2]}x{shape[3]}x{shape[3]}; audit a pipeline beside its own base"
        )
    a, b = model.vae.state_dict(), base.vae.state_dict()
    if a.keys() != b.keys() or any(not torch.equal(a[k], b[k].to(a[k].device)) for k in a):
        raise ConfigError(
            f"{where}: its VAE differs from the audited pipeline's; unlearning never trains "
            "the VAE, so this is not the pipeline it was unlearned from"
        )


def held_split(model, cfg: Config, spec: PromptSpec, thresholds: AttributeThresholds):
    """Held-out images as latents with prompt ids (the forget prompts on concept images).

    A memorised caption reproduces training images no held-out image is a copy of; its
    non-members are the held-out images of the same digit(s), under the caption."""
    from unlearn.data import load_splits

    held = load_splits(cfg.data).heldout
    ids = {p: i for i, p in enumerate(model.prompts) if i}
    latents = model.encode_images(held.images).cpu()
    kind, value = spec.target
    if kind == "copy" and isinstance(value, Memorised) and value.labels:
        spec = dataclasses.replace(spec, target=("digit", tuple(sorted(set(value.labels)))))
    try:
        return prompt_split(spec, held, latents, ids, thresholds).split
    except ConfigError as e:
        raise ConfigError(f"{str(e).replace('training image', 'held-out image')}") from None


def prompt_membership_sets(
    train: ForgetSplit, held: ForgetSplit, a: AuditConfig, memorised: bool = False
) -> MembershipSets:
    """Forget latents vs held-out concept latents (same prompts), then the retain sets.

    ``memorised``: the forget latents are a memorised caption's few images; they are
    repeated (each copy meets its own noise draw) to as many as the held-out side has."""
    g = torch.Generator().manual_seed(a.seed * 104_729 + 17)
    n_f = min(a.mia_samples, len(held.forget), *(() if memorised else (len(train.forget),)))
    if n_f < 2 or len(train.forget) == 0:
        raise ConfigError(
            "audit.mia_samples: membership inference needs at least 2 held-out images of the "
            f"concept; found {len(held.forget)}"
        )
    if memorised:
        members = train.forget.subset(torch.arange(n_f) % len(train.forget))
    else:
        members = take(train.forget, n_f, g)
    forget = (members, take(held.forget, n_f, g))
    return with_retain(forget, train.retain, held.retain, a, g)
