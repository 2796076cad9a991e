"""SISS without importance sampling: two forwards, one on noisy x and one on noisy a
(Alberti et al., ICLR 2025, the "SISS (No IS)" ablation; reference code
``double_forward_with_neg_del``)."""

from __future__ import annotations

from typing import ClassVar

import torch

from unlearn.methods.common import (
    ALL_FAMILIES,
    is_vae,
    per_sample_loss,
    randn,
    resample,
    vae_latent_noise,
)
from unlearn.methods.options import Opt
from unlearn.methods.siss import SISS, siss_coefficients
from unlearn.types import Batch, LossTerms


class SISSNoIS(SISS):
    """The SISS objective estimated with two forwards instead of one importance-sampled one.

    Pairs (x, a) as in SISS share t and ε (as the reference code does); ``L_x``, ``L_a`` are
    the plain denoising losses (negative ELBO per dimension for the VAE, shared latent
    noise), combined exactly like SISS: loss form ``n/(n-k)·L_x - (1+s)·k/(n-k)·L_a``, or the
    gradient form ``g_x - (1+s)·C·g_a/||g_a||`` clipped to ``method.clip``. The expected
    value equals SISS's for every λ, which the tests use; λ is not used here.

    Args:
        cfg: the method config: ``scale`` (s), ``form``, ``clip`` and option ``C`` (gradient
            form: forget step length; null = ``||g_x||``).
    """

    name = "siss_nois"
    families = ALL_FAMILIES
    forms = ("loss", "gradient")
    # SISS's ``C`` only: x is the retain batch and both terms use their own labels
    OPTIONS: ClassVar[dict[str, Opt]] = {"C": SISS.OPTIONS["C"]}

    def loss(
        self,
        model: torch.nn.Module,
        retain: Batch,
        forget: Batch,
        lam: float | torch.Tensor,
        generator: torch.Generator,
    ) -> LossTerms:
        c_x, c_a = siss_coefficients(self.n, self.k, self.scale)
        x, a = retain, resample(forget, len(retain), generator)
        if is_vae(model):
            t, eps = None, vae_latent_noise(model, x.images, generator)
        else:
            t = model.sample_t(len(x), generator)
            eps = randn(x.images.shape, generator, x.images)
        l_x = per_sample_loss(model, x.images, x.labels, generator, t, eps).mean()
        l_a = per_sample_loss(model, a.images, a.labels, generator, t, eps).mean()
        return LossTerms(retain=l_x, forget=l_a, total=c_x * l_x - c_a * l_a)
