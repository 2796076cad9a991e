"""ESD: Erased Stable Diffusion (Gandikota et al., ICCV 2023), negative guidance from the
frozen original, plus a retain-prompt preservation term.

The forget target at a noisy latent x_t of a concept image is the frozen original's
negatively guided noise ε*(x_t, c) = ε_pre(x_t, ∅) − η·(ε_pre(x_t, c) − ε_pre(x_t, ∅)):
trained towards it, the model's prediction for the concept prompt c points away from c.
The retain term keeps ε_θ(x_t, c_r) = ε_pre(x_t, c_r) on retain latents and prompts.

Where x_t comes from (``xt``): ``images`` (default) noises the forget latents (training
images, or images generated with ``data.source: generate``) to a random timestep;
``trajectory`` is ESD as published (the authors' ``esd_sd.py``): x_t is the frozen
pipeline's own DDIM sample of the concept prompt (``steps`` DDIM steps, guidance
``guidance``: 50 and 3 in the paper) stopped at a random step, and t that step's timestep —
no images at all. The paper trains ``model.train: esd-x`` (cross-attention, for styles) or
``esd-u`` (everything else, for objects and nudity) at λ = 1.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from unlearn.config import PROMPT_KINDS
from unlearn.methods.base import UnlearningMethod
from unlearn.methods.common import as_lam, frozen_unet, randn, resample, sq_err
from unlearn.methods.options import Opt
from unlearn.types import Batch, LossTerms


class ESD(UnlearningMethod):
    """``total = λ·L_erase + (1-λ)·L_preserve``.

    λ weighs the erasure term against the preservation term: λ = 1 is ESD as published
    (the negative-guidance regression alone), λ = 0 only keeps the retain prompts where the
    original had them. Per step the forget and retain batches contribute half of
    ``unlearn.batch_size`` each; the frozen original runs once on 1.5x that batch (∅ and c
    on the forget latents, c_r on the retain latents) and the trained UNet once on the whole
    batch, so a step costs one forward+backward plus one no-grad forward of 1.5x the batch.

    Options:
        eta: the negative-guidance scale η (ESD's default 1.0).
        xt: ``images`` (noised forget latents) or ``trajectory`` (the frozen pipeline's
            DDIM trajectory of the concept prompt stopped at a random step: ESD as published).
        steps, guidance: the trajectory's DDIM steps and guidance (the paper's 50 and 3).

    Args:
        cfg: the method config.
    """

    name = "esd"
    families = PROMPT_KINDS
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "eta": Opt(
            1.0,
            "negative-guidance scale η of the erasure target",
            lo=0.0,
            hi=100.0,
            search=(0.5, 3.0),
        ),
        "xt": Opt(
            "images",
            "where x_t comes from: noised forget latents, or the frozen pipeline's DDIM "
            "trajectory of the concept prompt stopped at a random step (ESD as published)",
            kind=str,
            choices=("images", "trajectory"),
        ),
        "steps": Opt(50, "xt=trajectory: DDIM steps of the trajectory", kind=int, lo=1, hi=1000),
        "guidance": Opt(3.0, "xt=trajectory: guidance of the trajectory", lo=0.0, hi=100.0),
    }

    def setup(self, model: torch.nn.Module, split) -> None:
        self.ref_unet = frozen_unet(model.unet)

    def loss(
        self,
        model: torch.nn.Module,
        retain: Batch,
        forget: Batch,
        lam: float | torch.Tensor,
        generator: torch.Generator,
    ) -> LossTerms:
        b = max(1, len(forget) // 2)
        f, r = resample(forget, b, generator), resample(retain, b, generator)
        x0 = torch.cat([f.images, r.images])
        t = model.sample_t(2 * b, generator)
        eps = randn(x0.shape, generator, x0)
        x_t = model.add_noise(x0, t, eps)
        if self.options["xt"] == "trajectory":
            xf, tf = self.trajectory(model, f.labels, generator)
            x_t, t = torch.cat([xf.to(x_t.dtype), x_t[b:]]), torch.cat([tf, t[b:]])
        labels = torch.cat([f.labels, r.labels])
        null = torch.zeros_like(f.labels)
        with torch.no_grad():
            # one frozen forward: (x_f, ∅), (x_f, c), (x_r, c_r)
            xf, tf = x_t[:b], t[:b]
            ref = model.eps(
                torch.cat([xf, x_t]),
                torch.cat([tf, t]),
                torch.cat([null, labels]),
                unet=self.ref_unet,
            )
            e_null, e_c, e_r = ref[:b], ref[b : 2 * b], ref[2 * b :]
            target_f = e_null - self.options["eta"] * (e_c - e_null)
        pred = model.eps(x_t, t, labels)
        l_f = sq_err(pred[:b], target_f).mean()
        l_r = sq_err(pred[b:], e_r).mean()
        lam_t = as_lam(lam, l_f.device)
        return LossTerms(retain=l_r, forget=l_f, total=lam_t * l_f + (1 - lam_t) * l_r)

    @torch.no_grad()
    def trajectory(
        self, model: torch.nn.Module, labels: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t of the frozen pipeline's guided DDIM trajectory for prompt ids ``labels``
        from fresh noise, stopped before a random step k (one k per batch, as the authors'
        batch of one), and t = that step's timestep."""
        steps = int(self.options["steps"])
        k = int(torch.randint(0, steps, (1,), generator=generator))
        dev = model.alphas_cumprod.device
        shape = (len(labels), model.channels, model.resolution, model.resolution)
        noise = torch.randn(shape, generator=generator)
        emb = model.cond_of(labels)
        x = model.sample_latents(
            emb, steps, self.options["guidance"], latents=noise, unet=self.ref_unet, until=k
        )
        t = model.ddim(steps).timesteps[k].to(dev)
        return x, t.expand(len(labels)).long()
