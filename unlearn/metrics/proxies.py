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

    def head(self, n: int) -> ProxyBatch:
        """The first ``n`` images with their t and ε (views; the whole batch if it is smaller)."""
        if n >= len(self.images):
            return self
        return ProxyBatch(self.images[:n], self.labels[:n], self.t[:n], self.eps[:n])

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
def proxy_losses(model: torch.nn.Module, *batches: ProxyBatch) -> tuple[float, ...]:
    """Fixed-noise denoising loss of each batch (negative ELBO per dim for the VAE).

    All batches go through the model in one forward (the per-step observation of the env
    needs two of them; one call halves the fixed cost). Per-sample losses do not depend on
    the other samples of the batch, so each value is that batch's own mean; deterministic.
    """
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    x = torch.cat([b.images for b in batches]).to(dev)
    eps = torch.cat([b.eps for b in batches]).to(dev)
    if isinstance(model, ConvVAE):
        per = model.neg_elbo(x, eps) / x[0].numel()
    else:
        labels = None
        if model.conditional:
            labels = torch.cat([b.labels for b in batches]).to(dev).clamp(min=0)
        t = torch.cat([b.t for b in batches]).to(dev)
        per = model.denoise_loss(x, t, eps, labels, reduce=False)
    model.train(was)
    return tuple(float(v.mean()) for v in per.split([len(b.images) for b in batches]))
