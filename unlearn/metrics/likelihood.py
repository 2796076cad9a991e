"""Negative ELBO in bits/dim for the diffusion models and the VAE.

Images live in [-1, 1] with 256 levels; continuous densities are turned into discrete
probabilities with the bin width 2/256, so the numbers compare across model families.
"""

from __future__ import annotations

import math

import torch

from unlearn.models import ConvVAE, DiffusionModel

_BIN = math.log(2 / 256)


def _at_index(model: DiffusionModel, x: torch.Tensor, idx: int) -> torch.Tensor:
    t = torch.full((x.shape[0],), idx, device=x.device, dtype=torch.long)
    if model.continuous_time:
        return model.eps(x, t.float() / (model.num_timesteps - 1))
    return model.eps(x, t)


@torch.no_grad()
def diffusion_nelbo(
    model: DiffusionModel, x0: torch.Tensor, timesteps: int, seed: int
) -> torch.Tensor:
    """Per-image negative ELBO (nats) of the DDPM variational bound on the discrete grid.

    L = L_T + Σ_{t≥1} KL(q(x_{t-1}|x_t,x0) || p_θ(x_{t-1}|x_t)) + L_0, the middle sum estimated
    from ``timesteps`` evenly spaced t (times (T-1)/timesteps), with fixed noise.
    """
    g = torch.Generator().manual_seed(seed)
    dev = x0.device
    ab = model.alphas_cumprod.double().to(dev)
    T = ab.shape[0]
    D = x0[0].numel()
    x0d = x0.double()
    abT = ab[-1]
    l_T = 0.5 * (abT * x0d.pow(2) + (1 - abT) - 1 - torch.log(1 - abT)).flatten(1).sum(1)

    def x0_hat(xt: torch.Tensor, i: int) -> torch.Tensor:
        e = _at_index(model, xt.float(), i).double()
        return (xt - (1 - ab[i]).sqrt() * e) / ab[i].sqrt()

    ts = torch.linspace(1, T - 1, min(timesteps, T - 1)).round().long().unique().tolist()
    mid = torch.zeros(x0.shape[0], dtype=torch.float64, device=dev)
    for i in ts:
        eps = torch.randn(x0.shape, generator=g).to(dev).double()
        xt = ab[i].sqrt() * x0d + (1 - ab[i]).sqrt() * eps
        beta = 1 - ab[i] / ab[i - 1]
        var = (1 - ab[i - 1]) / (1 - ab[i]) * beta
        coef1 = ab[i - 1].sqrt() * beta / (1 - ab[i])
        mid += (coef1**2 * (x0d - x0_hat(xt, i)).pow(2)).flatten(1).sum(1) / (2 * var)
    mid *= (T - 1) / len(ts)
    eps = torch.randn(x0.shape, generator=g).to(dev).double()
    var0 = 1 - ab[0]
    x1 = ab[0].sqrt() * x0d + var0.sqrt() * eps
    l_0 = 0.5 * D * torch.log(2 * math.pi * var0) + (x0d - x0_hat(x1, 0)).pow(2).flatten(1).sum(
        1
    ) / (2 * var0)
    return (l_T + mid + l_0).float()


@torch.no_grad()
def nelbo_bpd(
    model: torch.nn.Module, x0: torch.Tensor, timesteps: int = 50, seed: int = 0
) -> float:
    """Mean negative ELBO in bits/dim of ``x0`` (images in [-1, 1])."""
    D = x0[0].numel()
    if isinstance(model, ConvVAE):
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(model.encode(x0)[0].shape, generator=g).to(x0.device)
        nats = model.neg_elbo(x0, noise)
    else:
        nats = diffusion_nelbo(model, x0, timesteps, seed)
    return float(((nats - D * _BIN) / (D * math.log(2))).mean())
