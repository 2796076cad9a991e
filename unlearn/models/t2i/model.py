"""The text-to-image model: a Stable-Diffusion-format set of diffusers / transformers parts
(``UNet2DConditionModel``, ``AutoencoderKL``, a text encoder and its tokenizer, a scheduler)
behind the same small interface as :class:`~unlearn.models.diffusion.DiffusionModel`.

Unlearning methods see latents and prompt ids: ``eps(x_t, t, labels)`` looks the prompt
embeddings up in a table filled by :meth:`T2IModel.set_prompts` (computed once with the
frozen text encoder), so the unlearning loop's batches stay (tensor, integer label) pairs.
Label 0 is always the empty prompt (the unconditional branch of classifier-free guidance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from unlearn.models.diffusion import Denoiser

TRAIN_MODES = ("unet", "cross_attn", "lora", "esd-u", "esd-x")


def esd_parameter_names(unet: nn.Module, which: str) -> list[str]:
    """The UNet parameters ESD trains (the authors' parameter sets): ``esd-u`` every linear
    and convolution layer outside the cross-attention ``attn2`` blocks (normalisation layers
    stay frozen), ``esd-x`` the linear layers of the cross-attention ``attn2`` blocks."""
    out = []
    for name, module in unet.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        cross = "attn2" in name.split(".")
        if (which == "esd-x") == cross:
            out += [f"{name}.{n}" if name else n for n, _ in module.named_parameters()]
    return out


@dataclass(frozen=True)
class TextCond:
    """What the UNet is conditioned on for a batch of prompts: the cross-attention context
    ``hidden`` (N, L, D) and, for a UNet with ``addition_embed_type="text_time"`` (SDXL), the
    pooled text embedding ``pooled`` (N, P). Indexes, repeats and moves like a tensor."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.hidden.shape[0]

    def __getitem__(self, idx) -> TextCond:
        return TextCond(self.hidden[idx], None if self.pooled is None else self.pooled[idx])

    def _map(self, fn) -> TextCond:
        return TextCond(fn(self.hidden), None if self.pooled is None else fn(self.pooled))

    def to(self, *args, **kw) -> TextCond:
        return self._map(lambda x: x.to(*args, **kw))

    def repeat_interleave(self, n: int, dim: int = 0) -> TextCond:
        return self._map(lambda x: x.repeat_interleave(n, dim))

    def repeat(self, n: int) -> TextCond:
        return self._map(lambda x: x.repeat(n, *([1] * (x.dim() - 1))))

    def expand(self, b: int) -> TextCond:
        return self._map(lambda x: x.expand(b, *x.shape[1:]))

    def detach(self) -> TextCond:
        return self._map(lambda x: x.detach())

    @staticmethod
    def cat(conds: Sequence[TextCond]) -> TextCond:
        pooled = None if conds[0].pooled is None else torch.cat([c.pooled for c in conds])
        return TextCond(torch.cat([c.hidden for c in conds]), pooled)


def add_token(tokenizer, encoder: nn.Module, token: str):
    """Copies of ``tokenizer`` knowing ``token`` and of ``encoder`` with one more embedding
    row for it, started at the mean of the others (no word's meaning); ValueError when the
    tokenizer already has it. Returns (tokenizer, encoder, the new row's id)."""
    import copy

    tok = copy.deepcopy(tokenizer)
    if tok.add_tokens([token]) != 1:
        raise ValueError(f"the tokenizer already has the token {token!r}")
    enc = copy.deepcopy(encoder)
    enc.resize_token_embeddings(len(tok))
    new = tok.convert_tokens_to_ids(token)
    weight = enc.get_input_embeddings().weight
    with torch.no_grad():
        weight[new] = weight[:new].mean(0)
    return tok, enc, new


def as_cond(embeds: torch.Tensor | TextCond) -> TextCond:
    """A bare context tensor as a :class:`TextCond` (a UNet without pooled conditioning)."""
    return embeds if isinstance(embeds, TextCond) else TextCond(embeds)


class T2IModel(Denoiser, nn.Module):
    """UNet, VAE, text encoder, tokenizer and scheduler of one pipeline.

    Args:
        unet: a diffusers ``UNet2DConditionModel`` predicting ε on VAE latents.
        vae: a diffusers ``AutoencoderKL``; latents are scaled by its ``scaling_factor``.
        text_encoder: a transformers text encoder (``CLIPTextModel``); its last hidden state
            conditions the UNet's cross-attention.
        tokenizer: the text encoder's tokenizer (padding to ``model_max_length``).
        scheduler: the pipeline's scheduler (its betas define the noise schedule).
    """

    kind = "t2i"
    #: conditioned on prompts (labels are prompt ids): what :func:`~unlearn.models.is_prompted`
    #: asks of a model
    prompted = True
    conditional = True
    null_class = 0

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler, **parts):
        super().__init__()
        # a subclass's further components (a second text encoder, ...), set before the
        # prompt table is first filled
        for name, part in parts.items():
            setattr(self, name, part)
        self.unet = unet
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        self.train_mode = "unet"
        self.lora_merge = False
        # the latent side it samples when not the UNet's own (data-free sets at another
        # resolution: ``data.resolution`` with ``data.source=generate``)
        self.sample_size: int | None = None
        self.register_buffer(
            "alphas_cumprod", scheduler.alphas_cumprod.clone().float(), persistent=False
        )
        self.prompts: list[str] = []
        # the prompt id of ``forget.anchor`` (0: the empty prompt), set by the t2i task
        self.anchor_id = 0
        self.register_buffer("prompt_embeds", torch.zeros(0), persistent=False)
        # the pooled embeddings of the prompt table (empty: the UNet takes none)
        self.register_buffer("prompt_pooled", torch.zeros(0), persistent=False)
        self.vae.requires_grad_(False)
        self.freeze_text()
        self.set_prompts([])

    # -- shape (channels, resolution: of the latents; num_timesteps: from Denoiser) ----------
    @property
    def image_channels(self) -> int:
        return int(self.vae.config.in_channels)

    @property
    def resolution(self) -> int:
        """Side of the latents it denoises and samples."""
        return self.sample_size or int(self.unet.config.sample_size)

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent pixel along a side."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_resolution(self) -> int:
        return self.resolution * self.vae_scale_factor

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    # -- text ------------------------------------------------------------------------------
    def token_ids(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids exactly as ``StableDiffusionPipeline`` makes them (padded, truncated)."""
        return self.tokenizer(
            list(texts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids

    def text_encoders(self) -> dict[str, nn.Module]:
        """The pipeline's text encoders by component name (pretraining trains them,
        unlearning keeps them frozen)."""
        return {"text_encoder": self.text_encoder}

    def freeze_text(self) -> None:
        for enc in self.text_encoders().values():
            enc.requires_grad_(False)

    def encode_cond(self, texts: Sequence[str]) -> TextCond:
        """What the UNet is conditioned on for ``texts``, exactly as the pipeline computes it
        (here: the text encoder's last hidden state; with gradients when the encoder trains)."""
        dev = next(self.text_encoder.parameters()).device
        return TextCond(self.text_encoder(self.token_ids(texts).to(dev))[0])

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Prompt embeddings (N, L, D): the cross-attention context the UNet's keys and
        values read (what UCE edits)."""
        return self.encode_cond(texts).hidden

    def with_token(self, token: str) -> tuple[T2IModel, list[tuple[nn.Module, int]]]:
        """A model sharing this one's UNet, VAE and scheduler whose tokenizer knows ``token``
        (:func:`add_token`); returns it and (text encoder, row id) of each embedding table
        the token was added to (textual inversion trains those rows)."""
        tok, enc, new = add_token(self.tokenizer, self.text_encoder, token)
        return T2IModel(self.unet, self.vae, enc, tok, self.scheduler), [(enc, new)]

    def unet_kwargs(self, cond: TextCond) -> dict:
        """The UNet's conditioning arguments for ``cond`` (one row per sample)."""
        return {"encoder_hidden_states": cond.hidden}

    def set_prompts(self, texts: Sequence[str]) -> list[int]:
        """Fill the prompt table with ``[""] + texts`` (frozen encoder); returns their ids."""
        self.prompts = ["", *texts]
        with torch.no_grad():
            cond = self.encode_cond(self.prompts).detach()
        self.prompt_embeds = cond.hidden
        self.prompt_pooled = torch.zeros(0) if cond.pooled is None else cond.pooled
        return list(range(1, len(self.prompts)))

    def cond_of(self, labels: torch.Tensor) -> TextCond:
        """The table's conditioning of prompt ids ``labels``."""
        idx = labels.long().to(self.prompt_embeds.device)
        pooled = self.prompt_pooled[idx] if self.prompt_pooled.numel() else None
        return TextCond(self.prompt_embeds[idx], pooled)

    def denoise(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: TextCond | torch.Tensor,
        unet: nn.Module | None = None,
    ) -> torch.Tensor:
        """The UNet's noise prediction under ``cond`` (``unet`` replaces the model's own)."""
        net = self.unet if unet is None else unet
        kw = self.unet_kwargs(as_cond(cond).to(x_t.device, x_t.dtype))
        return net(x_t, t, **kw).sample

    # -- images <-> latents ----------------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Scaled posterior means of images in [-1, 1]: the latents the UNet trains on."""
        dev = next(self.vae.parameters()).device
        out = [
            self.vae.encode(x[i : i + batch_size].to(dev)).latent_dist.mean
            for i in range(0, x.shape[0], batch_size)
        ]
        return torch.cat(out) * self.scaling_factor

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from scaled latents."""
        return self.vae.decode(z / self.scaling_factor).sample.clamp(-1, 1)

    # -- network (the noise schedule is Denoiser's discrete one) ---------------------------- ---------------------------------------------------------------------------
    def eps(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        labels: torch.Tensor | None = None,
        unet: nn.Module | None = None,
    ) -> torch.Tensor:
        """Predicted noise for prompt ids ``labels`` (None: the empty prompt); ``unet``
        replaces the model's own (a frozen reference copy)."""
        if labels is None:
            labels = torch.zeros(x_t.shape[0], dtype=torch.long, device=x_t.device)
        return self.denoise(x_t, t, self.cond_of(labels), unet)

    # -- sampling --------------------------------------------------------------------------
    @torch.no_grad()
    def sample_latents(
        self,
        embeds: torch.Tensor | TextCond,
        steps: int,
        guidance: float,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        unet: nn.Module | None = None,
        until: int | None = None,
    ) -> torch.Tensor:
        """Classifier-free-guided DDIM (η = 0) from the pipeline's own scheduler config, the
        conditional and unconditional branches in one UNet forward: the loop of
        ``StableDiffusionPipeline.__call__`` (equal to it, tested), kept here because the
        pipeline refuses image sides that are not multiples of 8 (``data.resolution`` may be
        any side) and would step the pipeline's own scheduler class, where this is DDIM.
        ``unet`` replaces the model's own (a frozen copy); ``until=k`` stops before the k-th
        step: the latents at timestep ``ddim_timesteps(steps)[k]`` of the trajectory."""
        dev = self.alphas_cumprod.device
        sched = self.ddim(steps)
        cond = as_cond(embeds)
        b = len(cond)
        shape = (b, self.channels, self.resolution, self.resolution)
        x = torch.randn(shape, generator=generator).to(dev) if latents is None else latents.to(dev)
        x = x * sched.init_noise_sigma
        null = self.cond_of(torch.zeros(b, dtype=torch.long)).to(dev)
        both = TextCond.cat([null, cond.to(dev)])
        for i, t in enumerate(sched.timesteps):
            if until is not None and i >= until:
                break
            e_u, e_c = self.denoise(torch.cat([x, x]), t, both, unet).chunk(2)
            x = sched.step(e_u + guidance * (e_c - e_u), t, x, eta=0.0).prev_sample
        return x

    def ddim(self, steps: int):
        """The pipeline's scheduler config as a DDIM scheduler set to ``steps`` steps."""
        from diffusers import DDIMScheduler

        sched = DDIMScheduler.from_config(self.scheduler.config)
        sched.set_timesteps(steps, device=self.alphas_cumprod.device)
        return sched

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        steps: int = 25,
        guidance: float = 5.0,
        generator: torch.Generator | None = None,
        batch_size: int = 250,
    ) -> torch.Tensor:
        """Images in [-1, 1], one per prompt (repeat a prompt for several); fixed
        ``generator`` → the same images."""
        out = []
        for i in range(0, len(prompts), batch_size):
            emb = self.encode_cond(prompts[i : i + batch_size])
            out.append(self.decode(self.sample_latents(emb, steps, guidance, generator)).cpu())
        return torch.cat(out)

    # -- what trains -----------------------------------------------------------------------
    def configure_training(self, mode: str, lora_rank: int = 4, lora_merge: bool = False) -> None:
        """Freeze all but what ``mode`` trains: the UNet, its cross-attention, LoRA adapters
        on its attention projections (peft; ``lora_merge``: saved merged into the UNet rather
        than as adapters), or ESD's parameter sets ``esd-u`` / ``esd-x``
        (:func:`esd_parameter_names`). VAE and text encoder stay frozen."""
        if mode not in TRAIN_MODES:
            raise ValueError(f"unknown train mode {mode!r}")
        self.vae.requires_grad_(False)
        self.freeze_text()
        if mode == "unet":
            self.unet.requires_grad_(True)
        elif mode in ("esd-u", "esd-x"):
            self.unet.requires_grad_(False)
            params = dict(self.unet.named_parameters())
            for name in esd_parameter_names(self.unet, mode):
                params[name].requires_grad_(True)
        elif mode == "cross_attn":
            self.unet.requires_grad_(False)
            for name, module in self.unet.named_modules():
                if name.endswith("attn2"):
                    module.requires_grad_(True)
        else:
            from peft import LoraConfig

            self.unet.requires_grad_(False)
            self.unet.add_adapter(
                LoraConfig(
                    r=lora_rank,
                    lora_alpha=lora_rank,
                    init_lora_weights="gaussian",
                    target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                )
            )
        self.train_mode = mode
        self.lora_merge = lora_merge

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # -- diffusers -------------------------------------------------------------------------
    #: the diffusers pipeline class of a saved model
    pipeline_class = "StableDiffusionPipeline"

    def pipeline(self, unet: nn.Module | None = None):
        """A ``StableDiffusionPipeline`` sharing these parts (no safety checker); ``unet``
        replaces the model's own."""
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=self.unet if unet is None else unet,
            scheduler=self.scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
