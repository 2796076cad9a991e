"""Unlearning for image-to-image (completion) models: encoder-level unlearning as published
by Li et al. ("Machine Unlearning for Image-to-Image Generative Models", ICLR 2024) and its
four baselines.

Every method trains only the model's encoder (the inpainter's ``conv_in`` + down path + mid
block, the masked autoencoder's ``.vit``); the decoder stays frozen. λ weighs the forget term
against the retain term: ``total = (1 - λ)·L_r + λ·L_f`` (the paper's α_r = 1 - λ, α_f = λ),
so every λ agent drives each of them. ``x_r`` / ``x_f`` are retain / forget images, masked by
the model's active task and ratio; E the encoder being trained, E₀ a frozen copy taken at
:meth:`setup`; for the diffusion inpainter every term uses the same timestep and noise per
row for both encoders.

======================  =================================================================
method                  forget term L_f (retain term: L_r as in the first row unless noted)
======================  =================================================================
``i2i_encoder``         ``‖E(x_f) - E₀(n)‖²``, n noise with each image's statistics
                        (``method.options.noise``); L_r = ``‖E(x_r) - E₀(x_r)‖²``
``i2i_max_loss``        minus the training loss on the forget images (ascent); L_r = the
                        training loss on the retain images
``i2i_noisy_label``     the training loss with the noise n as the forget images' target
``i2i_retain_label``    the training loss with retain images as the forget images' target
``i2i_random_encoder``  ``‖E(x_f) - z‖²``, z ~ N(0, I) in the encoder's output space;
                        L_r = ``‖E(x_r) - E₀(x_r)‖²``
======================  =================================================================
"""

from __future__ import annotations

from typing import ClassVar

import torch

from unlearn.data import ForgetSplit
from unlearn.methods.base import UnlearningMethod
from unlearn.methods.common import as_lam, frozen_copy
from unlearn.methods.options import Opt
from unlearn.types import Batch, LossTerms

#: the model kinds these methods serve (image-completion models)
I2I_KINDS = ("inpaint_ddpm", "mae")
NOISE = ("gaussian", "uniform", "constant")


def matched_noise(x: torch.Tensor, kind: str, g: torch.Generator) -> torch.Tensor:
    """Noise images with each image's own mean and standard deviation: Gaussian (the
    paper's), uniform with the same mean and std, or the constant mean."""
    dims = tuple(range(1, x.dim()))
    mu = x.mean(dim=dims, keepdim=True)
    sd = x.std(dim=dims, keepdim=True)
    if kind == "constant":
        return mu.expand_as(x).clone()
    if kind == "uniform":
        u = torch.rand(x.shape, generator=g).to(x.device) * 2 - 1
        return mu + sd * (3.0**0.5) * u
    return mu + sd * torch.randn(x.shape, generator=g).to(x.device)


def feature_mse(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Mean squared distance of two encoders' outputs, averaged over the output tensors."""
    return torch.stack(
        [(x.float() - y.float()).pow(2).mean() for x, y in zip(a, b, strict=True)]
    ).mean()


def _draw(model, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One (t, ε) per row: the diffusion step and noise every encoder sees for ``x``."""
    t = model.sample_t(x.shape[0], g).to(x.device)
    eps = torch.randn(x.shape, generator=g).to(x.device)
    return t, eps


class _I2IMethod(UnlearningMethod):
    """Shared: the encoder as the trainable part, a frozen original taken at setup."""

    families: ClassVar[tuple[str, ...]] = I2I_KINDS

    def __init__(self, cfg=None):
        super().__init__(cfg)
        self.original: torch.nn.Module | None = None

    def trainable_parameters(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        return model.encoder_parameters()

    def setup(self, model: torch.nn.Module, split: ForgetSplit) -> None:
        self.original = frozen_copy(model)

    def _e0(self) -> torch.nn.Module:
        if self.original is None:
            raise RuntimeError("call setup(model, split) before loss(): needs the original")
        return self.original

    @staticmethod
    def _terms(l_r: torch.Tensor, l_f: torch.Tensor, lam, sign: float = 1.0) -> LossTerms:
        lam_t = as_lam(lam, l_r.device)
        return LossTerms(retain=l_r, forget=l_f, total=(1 - lam_t) * l_r + sign * lam_t * l_f)


class I2IEncoderUnlearning(_I2IMethod):
    """Encoder-level unlearning (Li et al., ICLR 2024): retain inputs keep the original
    encoder's outputs, forget inputs are sent to the original encoder's outputs of noise
    with each forget image's mean and std (``noise``: gaussian, uniform, constant).

    Args:
        cfg: the method config; option ``noise``.
    """

    name = "i2i_encoder"
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "noise": Opt(
            "gaussian",
            "the forget target's input: noise with each image's mean and std (gaussian, "
            "uniform) or its constant mean",
            kind=str,
            choices=NOISE,
        )
    }

    def loss(self, model, retain: Batch, forget: Batch, lam, generator) -> LossTerms:
        x, a = retain.images, forget.images
        n = matched_noise(a, self.options["noise"], generator)
        # one batch through each encoder: retain and forget rows share every forward
        both = torch.cat([x, a])
        t, eps = _draw(model, both, generator)
        with torch.no_grad():
            target = self._e0().encode(torch.cat([x, n]), t, eps)
        feats = model.encode(both, t, eps)
        k = x.shape[0]
        l_r = feature_mse([f[:k] for f in feats], [y[:k] for y in target])
        l_f = feature_mse([f[k:] for f in feats], [y[k:] for y in target])
        return self._terms(l_r, l_f, lam)


class I2IMaxLoss(_I2IMethod):
    """Baseline: descend the training loss on retain images, ascend it on forget images
    (``total = (1-λ)·L_r - λ·L_f``; unbounded: the step budget and the divergence guard
    limit it)."""

    name = "i2i_max_loss"

    def loss(self, model, retain: Batch, forget: Batch, lam, generator) -> LossTerms:
        x, a = retain.images, forget.images
        l_r = model.recon_loss(x, x, *_draw(model, x, generator))
        l_f = model.recon_loss(a, a, *_draw(model, a, generator))
        return self._terms(l_r, l_f, lam, sign=-1.0)


class I2INoisyLabel(_I2IMethod):
    """Baseline: train the forget images to complete into Gaussian noise (each image's mean
    and std) while the retain images keep their own completions."""

    name = "i2i_noisy_label"

    def loss(self, model, retain: Batch, forget: Batch, lam, generator) -> LossTerms:
        x, a = retain.images, forget.images
        l_r = model.recon_loss(x, x, *_draw(model, x, generator))
        n = matched_noise(a, "gaussian", generator)
        l_f = model.recon_loss(a, n, *_draw(model, a, generator))
        return self._terms(l_r, l_f, lam)


class I2IRetainLabel(_I2IMethod):
    """Baseline: train the forget images to complete into retain images (the forget batch's
    targets are the retain batch's images, recycled to its length)."""

    name = "i2i_retain_label"

    def loss(self, model, retain: Batch, forget: Batch, lam, generator) -> LossTerms:
        x, a = retain.images, forget.images
        l_r = model.recon_loss(x, x, *_draw(model, x, generator))
        idx = torch.arange(a.shape[0], device=x.device) % x.shape[0]
        l_f = model.recon_loss(a, x[idx], *_draw(model, a, generator))
        return self._terms(l_r, l_f, lam)


class I2IRandomEncoder(_I2IMethod):
    """Baseline: send the forget images' encoder outputs to standard Gaussian noise in the
    encoder's output space; retain outputs stay the original encoder's."""

    name = "i2i_random_encoder"

    def loss(self, model, retain: Batch, forget: Batch, lam, generator) -> LossTerms:
        x, a = retain.images, forget.images
        both = torch.cat([x, a])
        t, eps = _draw(model, both, generator)
        k = x.shape[0]
        with torch.no_grad():
            keep = self._e0().encode(x, t[:k], eps[:k])
        feats = model.encode(both, t, eps)
        z = [torch.randn(f[k:].shape, generator=generator).to(f.device) for f in feats]
        l_r = feature_mse([f[:k] for f in feats], keep)
        l_f = feature_mse([f[k:] for f in feats], z)
        return self._terms(l_r, l_f, lam)


I2I_METHODS = (I2IEncoderUnlearning, I2IMaxLoss, I2INoisyLabel, I2IRetainLabel, I2IRandomEncoder)

__all__ = [
    "I2I_KINDS",
    "I2I_METHODS",
    "I2IEncoderUnlearning",
    "I2IMaxLoss",
    "I2INoisyLabel",
    "I2IRandomEncoder",
    "I2IRetainLabel",
    "feature_mse",
    "matched_noise",
]
