"""Encoder-level unlearning (Li et al., "Machine Unlearning for Image-to-Image Generative
Models", ICLR 2024): only the encoder is trained; retain inputs keep the original encoder's
features, forget inputs are sent to the original encoder's features of Gaussian noise."""

from __future__ import annotations

import torch

from unlearn.config import MethodConfig
from unlearn.data import ForgetSplit
from unlearn.methods.base import UnlearningMethod
from unlearn.methods.common import (
    ALL_FAMILIES,
    as_lam,
    frozen_copy,
    is_vae,
    model_labels,
    randn,
)
from unlearn.types import Batch, LossTerms


def encoder_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The trainable encoder of a model: the VAE's ``encoder``, or the UNet's down path
    (``conv_in``, ``down_blocks``, ``mid_block``)."""
    if is_vae(model):
        return [model.encoder]
    unet = model.unet
    return [m for m in (unet.conv_in, unet.down_blocks, unet.mid_block) if m is not None]


def encoder_features(
    model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor | None, labels: torch.Tensor | None
) -> list[torch.Tensor]:
    """What the decoder consumes: the VAE's posterior parameters, or every skip connection of
    the UNet's down path plus the mid-block output (diffusers ``UNet2DModel.forward`` up to
    the up blocks). The time / class embedding is computed without gradient: it belongs to
    the frozen part (it also feeds the up path)."""
    if is_vae(model):
        return [model.encoder(x)]
    unet = model.unet
    with torch.no_grad():
        tt = model._unet_time(t)
        tt = tt * torch.ones(x.shape[0], dtype=tt.dtype, device=x.device)
        emb = unet.time_embedding(unet.time_proj(tt).to(dtype=unet.dtype))
        if unet.class_embedding is not None:
            emb = emb + unet.class_embedding(labels).to(dtype=unet.dtype)
    h = unet.conv_in(x)
    feats = [h]
    for block in unet.down_blocks:
        h, res = block(hidden_states=h, temb=emb)
        feats.extend(res)
    if unet.mid_block is not None:
        h = unet.mid_block(h, emb)
    feats.append(h)
    return feats


def _feature_mse(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(
        [(x.float() - y.float()).pow(2).mean() for x, y in zip(a, b, strict=True)]
    ).mean()


class EncoderUnlearning(UnlearningMethod):
    """``total = ||E_θ(x_r) - E_0(x_r)||² + λ·||E_θ(x_f) - E_0(n)||²`` (Li et al., eq. with
    α = λ), E_0 a frozen copy of the encoder at :meth:`setup`, n ~ N(0, I) images.

    Only the encoder is trained (:meth:`trainable_parameters`): the VAE's ``encoder`` or the
    UNet's ``conv_in`` + ``down_blocks`` + ``mid_block``; decoder / up path / time embedding
    get no gradient. For diffusion models the encoder sees noisy inputs: x_r, x_f and n are
    noised with the same t and ε per row (n replaces the clean forget image), features are
    all the down path's skip tensors plus the mid-block output (mean squared error averaged
    over them). Class-conditional models embed each sample's own label (outliers: null).

    Args:
        cfg: the method config (no options).
    """

    name = "encoder"
    families = ALL_FAMILIES

    def __init__(self, cfg: MethodConfig | None = None):
        super().__init__(cfg)
        self.original: torch.nn.Module | None = None

    def trainable_parameters(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        return [p for m in encoder_modules(model) for p in m.parameters()]

    def setup(self, model: torch.nn.Module, split: ForgetSplit) -> None:
        self.original = frozen_copy(model)

    def loss(
        self,
        model: torch.nn.Module,
        retain: Batch,
        forget: Batch,
        lam: float | torch.Tensor,
        generator: torch.Generator,
    ) -> LossTerms:
        if self.original is None:
            raise RuntimeError("call setup(model, split) before loss(): needs the original encoder")
        g, e0 = generator, self.original
        x, a = retain.images, forget.images
        noise_img = randn(a.shape, g, a)
        if is_vae(model):
            t_r = t_f = None
            y_r = y_f = None
            x_in, a_in, n_in = x, a, noise_img
        else:
            t_r, t_f = model.sample_t(len(x), g), model.sample_t(len(a), g)
            eps_r, eps_f = randn(x.shape, g, x), randn(a.shape, g, a)
            x_in = model.add_noise(x, t_r, eps_r)
            a_in = model.add_noise(a, t_f, eps_f)
            n_in = model.add_noise(noise_img, t_f, eps_f)
            y_r, y_f = model_labels(model, retain.labels), model_labels(model, forget.labels)
        with torch.no_grad():
            keep = encoder_features(e0, x_in, t_r, y_r)
            away = encoder_features(e0, n_in, t_f, y_f)
        l_r = _feature_mse(encoder_features(model, x_in, t_r, y_r), keep)
        l_f = _feature_mse(encoder_features(model, a_in, t_f, y_f), away)
        return LossTerms(retain=l_r, forget=l_f, total=l_r + as_lam(lam, l_r.device) * l_f)
