"""Image-completion models: a masked image in, the hidden region filled in.

Two kinds share one interface (:class:`I2IModel`), so the i2i methods and metrics never ask
which one they hold:

- ``inpaint_ddpm`` (:class:`Inpainter`): a diffusers ``UNet2DModel`` whose input is the noisy
  target concatenated with the masked image and the mask (Palette); completions are DDIM
  samples with the known pixels pasted back. Its encoder is the UNet's ``conv_in``, down
  path and mid block.
- ``mae`` (:class:`MaskedAutoencoder`): transformers' ``ViTMAEForPreTraining`` built from a
  small ``ViTMAEConfig``, whose hidden patches are chosen by the mask (not at random). Its
  encoder is ``.vit``.

Masks are 1 where the model must fill in, aligned to a grid of ``patch`` pixels: ``inpaint``
hides a centre square, ``outpaint`` hides the border around a visible centre square; the
hidden fraction is ``mask_ratio`` rounded to whole patches.
"""

from __future__ import annotations

import math

import torch
from torch import nn

TASKS = ("inpaint", "outpaint")


def square_side(cells: int, fraction: float) -> int:
    """The side (in cells) of the square covering ``fraction`` of a ``cells``² grid, kept
    within [1, cells - 1] so that some pixels stay hidden and some visible."""
    return max(1, min(cells - 1, round(cells * math.sqrt(fraction))))


def make_mask(task: str, ratio: float, resolution: int, patch: int) -> torch.Tensor:
    """The (1, 1, R, R) mask of ``task``: 1 = hidden (to be filled), 0 = given."""
    if task not in TASKS:
        raise ValueError(f"task {task!r}; expected one of {', '.join(TASKS)}")
    cells = resolution // patch
    if task == "inpaint":
        side = square_side(cells, ratio)
    else:
        side = square_side(cells, 1.0 - ratio)
    lo = (cells - side) // 2
    grid = torch.zeros(cells, cells)
    grid[lo : lo + side, lo : lo + side] = 1.0
    if task == "outpaint":
        grid = 1.0 - grid
    return grid.repeat_interleave(patch, 0).repeat_interleave(patch, 1)[None, None]


def hide(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` with its hidden pixels set to 0 (mid grey in [-1, 1]): what the model is given."""
    return x * (1.0 - mask)


class I2IModel(nn.Module):
    """What both completion models provide.

    Attributes:
        kind: ``inpaint_ddpm`` or ``mae``.
        tasks: the tasks it was trained for.
        task, mask_ratio: the active mask (:meth:`set_mask`).
    """

    kind: str
    prompted = False
    conditional = False
    #: completes masked images (its training loss is :meth:`recon_loss`)
    completes = True

    def __init__(self, build: dict):
        super().__init__()
        self.build = dict(build)
        self.tasks: tuple[str, ...] = tuple(build["tasks"])
        self.patch = int(build["patch"])
        self.task = self.tasks[0]
        self.mask_ratio = 0.25

    @property
    def resolution(self) -> int:
        return int(self.build["resolution"])

    @property
    def channels(self) -> int:
        return int(self.build["channels"])

    @property
    def num_classes(self) -> int:
        return int(self.build.get("num_classes", 10))

    def set_mask(self, task: str, ratio: float) -> None:
        """Complete ``task`` with ``ratio`` of the image hidden from now on."""
        self.task, self.mask_ratio = task, float(ratio)

    def mask(self, like: torch.Tensor | None = None) -> torch.Tensor:
        m = make_mask(self.task, self.mask_ratio, self.resolution, self.patch)
        return m if like is None else m.to(like.device, like.dtype)

    def masked(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the model sees it: hidden pixels at 0."""
        return hide(x, self.mask(x))

    # -- subclasses ---------------------------------------------------------------------------
    def encoder_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def sample_t(self, n: int, g: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's outputs (what the decoder consumes) for images ``x`` masked by the
        active mask; ``t``, ``eps``: the diffusion step and noise (ignored by the MAE)."""
        raise NotImplementedError

    def recon_loss(
        self,
        x: torch.Tensor,
        target: torch.Tensor,
        t: torch.Tensor,
        eps: torch.Tensor,
        reduce: bool = True,
    ) -> torch.Tensor:
        """The training loss of completing masked ``x`` towards ``target`` (per image when
        ``reduce`` is False)."""
        raise NotImplementedError

    def complete(
        self, x: torch.Tensor, steps: int = 25, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Completions of ``x`` under the active mask (given pixels kept exactly)."""
        raise NotImplementedError

    def denoise_loss(self, x, t, eps, labels=None, reduce: bool = True) -> torch.Tensor:
        """The reconstruction loss of ``x`` at fixed (t, ε): the per-step proxies."""
        return self.recon_loss(x, x, t, eps, reduce=reduce)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.encoder_modules() for p in m.parameters()]


class Inpainter(I2IModel):
    """Palette-style diffusion inpainter: ``UNet2DModel(in = 2C + 1, out = C)`` predicting ε."""

    kind = "inpaint_ddpm"

    def __init__(self, build: dict):
        super().__init__(build)
        from diffusers import DDPMScheduler, UNet2DModel

        c, widths = self.channels, tuple(build["block_out_channels"])
        attn = bool(build.get("attention", False))
        down = ["DownBlock2D"] * len(widths)
        up = ["UpBlock2D"] * len(widths)
        if attn:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        self.unet = UNet2DModel(
            sample_size=self.resolution,
            in_channels=2 * c + 1,
            out_channels=c,
            block_out_channels=widths,
            layers_per_block=int(build.get("layers_per_block", 1)),
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            norm_num_groups=int(build.get("norm_num_groups", 8)),
        )
        self.scheduler = DDPMScheduler(
            num_train_timesteps=int(build["num_train_timesteps"]),
            beta_schedule=str(build.get("beta_schedule", "squaredcos_cap_v2")),
            clip_sample=True,
        )
        self.register_buffer(
            "alphas_cumprod", self.scheduler.alphas_cumprod.clone().float(), persistent=False
        )

    @property
    def num_train_timesteps(self) -> int:
        return int(self.build["num_train_timesteps"])

    def encoder_modules(self) -> list[nn.Module]:
        u = self.unet
        return [m for m in (u.conv_in, u.down_blocks, u.mid_block) if m is not None]

    def sample_t(self, n: int, g: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.num_train_timesteps, (n,), generator=g).to(
            self.alphas_cumprod.device
        )

    def add_noise(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod.to(x.device)[t.long().to(x.device)].view(-1, 1, 1, 1)
        return a.sqrt() * x + (1 - a).sqrt() * eps

    def _input(self, x: torch.Tensor, target: torch.Tensor, t, eps) -> torch.Tensor:
        m = self.mask(x).expand(x.shape[0], 1, *x.shape[2:])
        return torch.cat([self.add_noise(target, t, eps), hide(x, m), m], dim=1)

    def _temb(self, t: torch.Tensor, n: int, device) -> torch.Tensor:
        u = self.unet
        tt = t.to(device).float() * torch.ones(n, device=device)
        return u.time_embedding(u.time_proj(tt).to(dtype=u.dtype))

    def encode(self, x, t, eps) -> list[torch.Tensor]:
        """Every skip tensor of the down path and the mid block's output (what the up path
        consumes); the time embedding is frozen (it feeds the up path too)."""
        u = self.unet
        with torch.no_grad():
            emb = self._temb(t, x.shape[0], x.device)
        h = u.conv_in(self._input(x, x, t, eps))
        feats = [h]
        for block in u.down_blocks:
            h, res = block(hidden_states=h, temb=emb)
            feats.extend(res)
        if u.mid_block is not None:
            h = u.mid_block(h, emb)
        feats.append(h)
        return feats

    def recon_loss(self, x, target, t, eps, reduce=True):
        pred = self.unet(self._input(x, target, t, eps), t.to(x.device)).sample
        per = (pred.float() - eps.float()).pow(2).flatten(1).mean(1)
        return per.mean() if reduce else per

    @torch.no_grad()
    def complete(self, x, steps=25, generator=None):
        from diffusers import DDIMScheduler

        sched = DDIMScheduler.from_config(
            self.scheduler.config, timestep_spacing="trailing", clip_sample=True
        )
        sched.set_timesteps(steps)
        g = generator or torch.Generator().manual_seed(0)
        m = self.mask(x).expand(x.shape[0], 1, *x.shape[2:])
        cond = torch.cat([hide(x, m), m], dim=1)
        y = torch.randn(x.shape, generator=g).to(x.device)
        for t in sched.timesteps:
            eps = self.unet(torch.cat([y, cond], dim=1), t.to(x.device)).sample
            y = sched.step(eps, t, y).prev_sample
        y = y.clamp(-1, 1)
        return m * y + (1 - m) * x


class MaskedAutoencoder(I2IModel):
    """transformers' ``ViTMAEForPreTraining`` whose hidden patches are the mask's: the
    visible patches get the lowest ``noise`` (ViTMAE keeps the lowest), so every image of a
    batch hides the same patches and the encoder sees only the visible ones."""

    kind = "mae"

    def __init__(self, build: dict):
        super().__init__(build)
        from transformers import ViTMAEConfig, ViTMAEForPreTraining

        w, dw = int(build["width"]), int(build["decoder_width"])
        heads = int(build["heads"])
        conf = ViTMAEConfig(
            image_size=self.resolution,
            patch_size=self.patch,
            num_channels=self.channels,
            hidden_size=w,
            num_hidden_layers=int(build["layers"]),
            num_attention_heads=heads,
            intermediate_size=2 * w,
            decoder_hidden_size=dw,
            decoder_num_hidden_layers=int(build["decoder_layers"]),
            decoder_num_attention_heads=heads,
            decoder_intermediate_size=2 * dw,
            norm_pix_loss=False,
            mask_ratio=0.25,
        )
        self.mae = ViTMAEForPreTraining(conf)
        self._sincos_positions()
        # the pixels' share of a patch token at the start: ViT's default initialisation
        # (std 0.02) makes a 2x2 patch's embedding ~1/10 of its fixed position embedding, and
        # the model then learns to ignore the visible pixels and fill every hidden patch with
        # the data's mean (measured); unit-gain initialisation gives the pixels an equal say
        nn.init.kaiming_normal_(
            self.mae.vit.embeddings.patch_embeddings.projection.weight, nonlinearity="linear"
        )

    @torch.no_grad()
    def _sincos_positions(self) -> None:
        """The fixed 2-D sine-cosine position embeddings of the encoder and the decoder (MAE's;
        some transformers versions leave them at zero when building from a config, which hides
        where each patch is)."""
        from transformers.models.vit_mae.modeling_vit_mae import (
            build_2d_sinusoidal_position_embedding,
        )

        grid = self.resolution // self.patch
        for param in (
            self.mae.vit.embeddings.position_embeddings,
            self.mae.decoder.decoder_pos_embed,
        ):
            pe = build_2d_sinusoidal_position_embedding(
                height=grid, width=grid, embed_dim=param.shape[-1], cls_token=True
            )
            param.copy_(pe.reshape(param.shape).to(param.dtype))

    @property
    def vit(self) -> nn.Module:
        return self.mae.vit

    def encoder_modules(self) -> list[nn.Module]:
        return [self.mae.vit]

    def sample_t(self, n: int, g: torch.Generator) -> torch.Tensor:
        return torch.zeros(n, dtype=torch.long)

    def _noise(self, n: int, device) -> torch.Tensor:
        """Per-patch ranks: visible patches first (ViTMAE keeps the lowest ``noise``)."""
        m = self.mask()[0, 0, :: self.patch, :: self.patch].flatten()
        order = m * 2.0 + torch.linspace(0, 1, m.numel())  # stable: row-major within each
        hidden = int(m.sum())
        self.mae.config.mask_ratio = hidden / m.numel()
        return order.to(device).expand(n, -1)

    def _forward(self, x: torch.Tensor):
        noise = self._noise(x.shape[0], x.device)
        return self.mae(pixel_values=self.masked(x), noise=noise)

    def encode(self, x, t, eps) -> list[torch.Tensor]:
        noise = self._noise(x.shape[0], x.device)
        return [self.mae.vit(pixel_values=self.masked(x), noise=noise).last_hidden_state]

    def _pixels(self, out) -> torch.Tensor:
        return self.mae.unpatchify(out.logits, (self.resolution, self.resolution))

    def recon_loss(self, x, target, t, eps, reduce=True):
        pred = self._pixels(self._forward(x))
        m = self.mask(x)
        per = ((pred.float() - target.float()).pow(2) * m).flatten(1).sum(1) / (
            m.sum() * x.shape[1]
        )
        return per.mean() if reduce else per

    @torch.no_grad()
    def complete(self, x, steps=25, generator=None):
        pred = self._pixels(self._forward(x)).clamp(-1, 1)
        m = self.mask(x)
        return m * pred + (1 - m) * x


KINDS: dict[str, type[I2IModel]] = {
    Inpainter.kind: Inpainter,
    MaskedAutoencoder.kind: MaskedAutoencoder,
}


def build_i2i(build: dict) -> I2IModel:
    """A fresh model of ``build["kind"]`` from its build parameters."""
    return KINDS[build["kind"]](build)


def mask_fraction(task: str, ratio: float, resolution: int, patch: int) -> float:
    """The fraction of pixels the mask actually hides (``ratio`` rounded to whole patches)."""
    return float(make_mask(task, ratio, resolution, patch).mean())


__all__ = [
    "KINDS",
    "TASKS",
    "I2IModel",
    "Inpainter",
    "MaskedAutoencoder",
    "build_i2i",
    "hide",
    "make_mask",
    "mask_fraction",
]
