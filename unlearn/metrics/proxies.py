"""Cheap per-step proxies: denoising loss on fixed held-out batches with fixed t and ε."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn.data import ImageData
from unlearn.models import ConvVAE


@dataclass(frozen=True)
class ProxyBatch:
    """A fixed batch with its timesteps and noise: the same numbers every time it is used."""

    images: torch.Tensor
    labels: torch.Tensor
    t: torch.Tensor
    eps: torch.Tensor

    @staticmethod
    def make(model: torch.nn.Module, data: ImageData, n: int, seed: int) -> ProxyBatch:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(data), generator=g)[: min(n, len(data))]
        x = data.images[idx]
        if isinstance(model, ConvVAE):
            lc, r = model.config["latent_channels"], model.resolution // 4
            t = torch.zeros(len(idx))
            eps = torch.randn((len(idx), lc, r, r), generator=g)
        else:
            t = model.sample_t(len(idx), g).cpu()
            eps = torch.randn(x.shape, generator=g)
        return ProxyBatch(x, data.labels[idx], t, eps)


@torch.no_grad()
def proxy_loss(model: torch.nn.Module, batch: ProxyBatch) -> float:
    """Fixed-noise denoising loss (negative ELBO per dim for the VAE); deterministic."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    x = batch.images.to(dev)
    if isinstance(model, ConvVAE):
        value = model.neg_elbo(x, batch.eps.to(dev)).mean() / x[0].numel()
    else:
        labels = batch.labels.to(dev).clamp(min=0) if model.conditional else None
        value = model.denoise_loss(x, batch.t.to(dev), batch.eps.to(dev), labels)
    model.train(was)
    return float(value)
