"""Diffusion models on a diffusers ``UNet2DModel``: DDPM, class-conditional DDPM, VP-SDE.

One wrapper serves the three families. All of them predict the noise ε; they differ in how
timesteps are drawn and embedded:

- ``ddpm``: integer t in [0, T) with the ``DDPMScheduler`` noise schedule.
- ``cond_ddpm``: as ddpm, plus a class embedding with ``num_classes + 1`` entries; the last
  one is the null class used for classifier-free guidance.
- ``vpsde``: continuous t in (0, 1] with the VP-SDE of Song et al. (linear β(t)); the UNet
  sees ``t * (T - 1)`` so the same network and DDIM sampler run on the discretised grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from torch import nn

VPSDE_BETA_MIN = 0.1
VPSDE_BETA_MAX = 20.0
VPSDE_T_EPS = 1e-3


@dataclass(frozen=True)
class NoiseLevel:
    """x_t = gamma * x0 + sigma * eps, shapes broadcastable to the images."""

    gamma: torch.Tensor
    sigma: torch.Tensor


def build_unet(
    kind: str,
    channels: int,
    resolution: int,
    num_classes: int,
    block_out_channels: tuple[int, ...],
    layers_per_block: int,
    attention: bool,
    norm_num_groups: int,
) -> UNet2DModel:
    """A small diffusers UNet for the given image shape."""
    n = len(block_out_channels)
    down = ["DownBlock2D"] * n
    up = ["UpBlock2D"] * n
    if attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return UNet2DModel(
        sample_size=resolution,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=norm_num_groups,
        num_class_embeds=num_classes + 1 if kind == "cond_ddpm" else None,
    )


class Denoiser:
    """The noising and the ε-prediction loss shared by every diffusion family (mixed into
    ``nn.Module`` wrappers that hold ``unet`` and ``alphas_cumprod`` and define ``eps``); the
    noise schedule is the discrete one of ``alphas_cumprod`` unless a family overrides it."""

    @property
    def channels(self) -> int:
        """Channels of what the UNet denoises (images, or latents for t2i)."""
        return int(self.unet.config.in_channels)

    @property
    def resolution(self) -> int:
        """Side of what the UNet denoises."""
        return int(self.unet.config.sample_size)

    @property
    def num_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def sample_t(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random integer timesteps in [0, T)."""
        return torch.randint(0, self.num_timesteps, (n,), generator=generator).to(
            self.alphas_cumprod.device
        )

    def noise_level(self, t: torch.Tensor) -> NoiseLevel:
        ab = self.alphas_cumprod[t.long()]
        return NoiseLevel(ab.sqrt().view(-1, 1, 1, 1), (1 - ab).sqrt().view(-1, 1, 1, 1))

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        nl = self.noise_level(t)
        return nl.gamma * x0 + nl.sigma * eps

    def denoise_loss(
        self,
        x0: torch.Tensor,
        t: torch.Tensor | None = None,
        eps: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        reduce: bool = True,
    ) -> torch.Tensor:
        """||ε_θ(x_t, t) - ε||² (mean, or per sample when ``reduce`` is False)."""
        if t is None:
            t = self.sample_t(x0.shape[0], generator)
        if eps is None:
            eps = torch.randn(x0.shape, generator=generator).to(x0.device)
        err = (self.eps(self.add_noise(x0, t, eps), t, labels) - eps).pow(2)
        per = err.flatten(1).mean(1)
        return per.mean() if reduce else per


class DiffusionModel(Denoiser, nn.Module):
    """A UNet plus its noise schedule; the thing every unlearning method operates on.

    Args:
        unet: the ε-prediction network.
        scheduler: a ``DDPMScheduler`` holding the discrete schedule (also for vpsde, where
            its betas are the VP-SDE discretised on T points).
        kind: ``ddpm``, ``cond_ddpm`` or ``vpsde``.
        num_classes: labels of the data; for ``cond_ddpm`` id ``num_classes`` is the null class.
    """

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler, kind: str, num_classes: int):
        super().__init__()
        self.unet = unet
        self.scheduler = scheduler
        self.kind = kind
        self.num_classes = num_classes
        self.register_buffer(
            "alphas_cumprod", scheduler.alphas_cumprod.clone().float(), persistent=False
        )

    # -- shape (channels, resolution, num_timesteps come from Denoiser) ----------------------
    @property
    def conditional(self) -> bool:
        return self.kind == "cond_ddpm"

    @property
    def null_class(self) -> int:
        return self.num_classes

    @property
    def continuous_time(self) -> bool:
        """The VP-SDE's timesteps are floats in (0, 1]; the DDPMs' are integers."""
        return self.kind == "vpsde"

    # -- noise schedule --------------------------------------------------------------------
    def sample_t(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random timesteps: integers for DDPMs, floats in (0, 1] for the VP-SDE."""
        if self.kind != "vpsde":
            return super().sample_t(n, generator)
        u = torch.rand(n, generator=generator, device="cpu").to(self.alphas_cumprod.device)
        return VPSDE_T_EPS + (1 - VPSDE_T_EPS) * u

    def noise_level(self, t: torch.Tensor) -> NoiseLevel:
        if self.kind != "vpsde":
            return super().noise_level(t)
        t = t.float()
        log_mean = -0.25 * t**2 * (VPSDE_BETA_MAX - VPSDE_BETA_MIN) - 0.5 * t * VPSDE_BETA_MIN
        gamma = torch.exp(log_mean)
        sigma = torch.sqrt(-torch.expm1(2 * log_mean))
        return NoiseLevel(gamma.view(-1, 1, 1, 1), sigma.view(-1, 1, 1, 1))

    def _unet_time(self, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "vpsde" and t.is_floating_point():
            return t * (self.num_timesteps - 1)
        return t

    # -- network ---------------------------------------------------------------------------
    def eps(
        self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predicted noise. ``labels`` is required by (and only used by) ``cond_ddpm``."""
        if self.conditional:
            if labels is None:
                labels = torch.full((x_t.shape[0],), self.null_class, device=x_t.device)
            return self.unet(x_t, self._unet_time(t), class_labels=labels.long()).sample
        return self.unet(x_t, self._unet_time(t)).sample

    # -- sampling --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        steps: int = 50,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
        guidance: float = 1.0,
        batch_size: int = 250,
    ) -> torch.Tensor:
        """Deterministic DDIM (η = 0) samples in [-1, 1]; fixed ``generator`` → same images.

        Timesteps are spaced "trailing" (the first step is at t = T - 1, where the model was
        trained on pure noise); the "leading" default starts at t = T - T/steps, a noise level
        the initial Gaussian does not match, and at 25 steps under-samples thin digits (1s).
        """
        dev = self.alphas_cumprod.device
        sched = DDIMScheduler.from_config(
            self.scheduler.config, clip_sample=True, timestep_spacing="trailing"
        )
        sched.set_timesteps(steps)
        out = []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            x = torch.randn(
                (b, self.channels, self.resolution, self.resolution), generator=generator
            ).to(dev)
            lab = None if labels is None else labels[start : start + b].to(dev)
            for t in sched.timesteps:
                tt = torch.full((b,), int(t), device=dev, dtype=torch.long)
                tm = tt.float() / (self.num_timesteps - 1) if self.kind == "vpsde" else tt
                e = self.eps(x, tm, lab)
                if self.conditional and lab is not None and guidance != 1.0:
                    e_null = self.eps(x, tm, None)
                    e = e_null + guidance * (e - e_null)
                x = sched.step(e, int(t), x, eta=0.0).prev_sample
            out.append(x.clamp(-1, 1).cpu())
        return torch.cat(out)


def make_scheduler(kind: str, num_train_timesteps: int, beta_schedule: str) -> DDPMScheduler:
    """The discrete schedule; for vpsde, the VP-SDE's ᾱ(t) on T grid points as trained betas."""
    if kind != "vpsde":
        return DDPMScheduler(
            num_train_timesteps=num_train_timesteps,
            beta_schedule=beta_schedule,
            prediction_type="epsilon",
            clip_sample=True,
        )
    T = num_train_timesteps
    t = torch.linspace(0.0, 1.0, T, dtype=torch.float64).clamp(min=VPSDE_T_EPS)
    log_ab = -0.5 * t**2 * (VPSDE_BETA_MAX - VPSDE_BETA_MIN) - t * VPSDE_BETA_MIN
    ab = torch.exp(log_ab)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    betas = (1 - ab / prev).clamp(1e-8, 0.999)
    return DDPMScheduler(
        num_train_timesteps=T,
        trained_betas=betas.tolist(),
        prediction_type="epsilon",
        clip_sample=True,
    )
