"""A small convolutional VAE (Gaussian encoder, Gaussian decoder with fixed variance)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class VAEOutput:
    """Reconstruction, posterior parameters and the per-sample negative ELBO terms."""

    recon: torch.Tensor
    mean: torch.Tensor
    logvar: torch.Tensor
    rec_loss: torch.Tensor
    kl: torch.Tensor


class ConvVAE(nn.Module):
    """Encoder: strided convs to a (latent_channels, R/4, R/4) Gaussian; decoder mirrors it.

    Args:
        channels: image channels.
        resolution: image side, divisible by 4.
        widths: channel widths of the two conv stages.
        latent_channels: channels of the latent map.
        num_classes: kept for the saved config (the VAE itself is unconditional).
    """

    kind = "vae"

    def __init__(
        self,
        channels: int,
        resolution: int,
        widths: tuple[int, ...] = (32, 64),
        latent_channels: int = 4,
        num_classes: int = 10,
        decoder_logvar: float = math.log(0.1),
    ):
        super().__init__()
        if resolution % 4:
            raise ValueError(f"model.resolution: {resolution} must be divisible by 4 for the VAE")
        w1, w2 = widths[0], widths[min(1, len(widths) - 1)]
        self.config = dict(
            channels=channels,
            resolution=resolution,
            widths=list(widths),
            latent_channels=latent_channels,
            num_classes=num_classes,
            decoder_logvar=decoder_logvar,
        )
        self.num_classes = num_classes
        self.decoder_logvar = decoder_logvar
        act = nn.SiLU()
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, w1, 3, 2, 1),
            act,
            nn.Conv2d(w1, w2, 3, 2, 1),
            act,
            nn.Conv2d(w2, 2 * latent_channels, 3, 1, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, w2, 3, 1, 1),
            act,
            nn.ConvTranspose2d(w2, w1, 4, 2, 1),
            act,
            nn.ConvTranspose2d(w1, channels, 4, 2, 1),
        )

    @property
    def channels(self) -> int:
        return int(self.config["channels"])

    @property
    def resolution(self) -> int:
        return int(self.config["resolution"])

    @property
    def conditional(self) -> bool:
        return False

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-12, 6)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decoder(z))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> VAEOutput:
        mean, logvar = self.encode(x)
        if noise is None:
            noise = torch.randn_like(mean)
        z = mean + (0.5 * logvar).exp() * noise
        recon = self.decode(z)
        # Gaussian decoder with fixed variance: -log p(x|z) up to a constant, per sample
        rec = (recon - x).pow(2).flatten(1).sum(1) / (2 * math.exp(self.decoder_logvar))
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)
        return VAEOutput(recon, mean, logvar, rec, kl)

    def neg_elbo(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample negative ELBO in nats, including the decoder's normalising constant."""
        out = self(x, noise)
        d = x[0].numel()
        const = 0.5 * d * (math.log(2 * math.pi) + self.decoder_logvar)
        return out.rec_loss + out.kl + const

    @torch.no_grad()
    def sample(
        self, n: int, steps: int = 0, generator: torch.Generator | None = None, **_: object
    ) -> torch.Tensor:
        lc, r = self.config["latent_channels"], self.resolution // 4
        dev = next(self.parameters()).device
        z = torch.randn((n, lc, r, r), generator=generator).to(dev)
        return self.decode(z).clamp(-1, 1).cpu()
