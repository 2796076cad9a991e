"""The SDXL model: a :class:`~unlearn.models.t2i.T2IModel` with SDXL's second text encoder and
tokenizer, whose UNet also takes the pooled text embedding and the micro-conditioning time
ids (``addition_embed_type="text_time"``).

Only the text side differs from the t2i model, through its extension points:
:meth:`SDXLModel.encode_cond` returns both encoders' penultimate hidden states concatenated
(the cross-attention context) and the second encoder's projected pooled embedding, exactly as
``StableDiffusionXLPipeline.encode_prompt`` makes them; :meth:`SDXLModel.unet_kwargs` adds
``added_cond_kwargs`` (pooled embedding and time ids). Everything else (the noise schedule,
sampling, what trains, the methods) is the t2i model's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unlearn.models.t2i.model import T2IModel, TextCond, add_token


class SDXLModel(T2IModel):
    """UNet, VAE, two text encoders and tokenizers and scheduler of an SDXL pipeline.

    Args:
        unet: a ``UNet2DConditionModel`` with ``addition_embed_type="text_time"``.
        vae: an ``AutoencoderKL``.
        text_encoder: ``CLIPTextModel``; its penultimate hidden state is the first part of
            the context.
        text_encoder_2: ``CLIPTextModelWithProjection``; its penultimate hidden state is the
            second part of the context, its projected pooled output the pooled embedding.
        tokenizer, tokenizer_2: the two encoders' tokenizers.
        scheduler: the pipeline's scheduler.
        force_zeros_for_empty_prompt: the pipeline's setting: the empty prompt (the
            unconditional branch of guidance) conditions with zeros, not its encoding.
    """

    kind = "sdxl"
    pipeline_class = "StableDiffusionXLPipeline"

    def __init__(
        self,
        unet,
        vae,
        text_encoder,
        text_encoder_2,
        tokenizer,
        tokenizer_2,
        scheduler,
        force_zeros_for_empty_prompt: bool = True,
    ):
        super().__init__(
            unet,
            vae,
            text_encoder,
            tokenizer,
            scheduler,
            text_encoder_2=text_encoder_2,
            tokenizer_2=tokenizer_2,
            force_zeros_for_empty_prompt=force_zeros_for_empty_prompt,
        )

    def text_encoders(self) -> dict[str, nn.Module]:
        return {"text_encoder": self.text_encoder, "text_encoder_2": self.text_encoder_2}

    def token_ids_2(self, texts: Sequence[str]) -> torch.Tensor:
        tok = self.tokenizer_2
        return tok(
            list(texts),
            padding="max_length",
            max_length=tok.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids

    def encode_cond(self, texts: Sequence[str]) -> TextCond:
        """Both encoders' penultimate hidden states, concatenated (N, L, D1 + D2), and the
        second encoder's projected pooled output (N, P), as ``encode_prompt`` computes them
        (no clip skip); empty prompts give zeros when ``force_zeros_for_empty_prompt``."""
        dev = next(self.text_encoder.parameters()).device
        out1 = self.text_encoder(self.token_ids(texts).to(dev), output_hidden_states=True)
        out2 = self.text_encoder_2(self.token_ids_2(texts).to(dev), output_hidden_states=True)
        hidden = torch.cat([out1.hidden_states[-2], out2.hidden_states[-2]], dim=-1)
        pooled = out2.text_embeds
        if self.force_zeros_for_empty_prompt:
            keep = torch.tensor([bool(t) for t in texts], device=dev, dtype=hidden.dtype)
            hidden = hidden * keep[:, None, None]
            pooled = pooled * keep[:, None]
        return TextCond(hidden, pooled)

    def with_token(self, token: str) -> tuple[SDXLModel, list[tuple[nn.Module, int]]]:
        """The token added to BOTH tokenizers and embedding tables (as SDXL textual
        inversion does): the UNet reads both encoders' states, concatenated, and the pooled
        embedding of the second, so a token in one table alone would reach only part of
        the conditioning."""
        tok, enc, new = add_token(self.tokenizer, self.text_encoder, token)
        tok2, enc2, new2 = add_token(self.tokenizer_2, self.text_encoder_2, token)
        inv = SDXLModel(
            self.unet,
            self.vae,
            enc,
            enc2,
            tok,
            tok2,
            self.scheduler,
            self.force_zeros_for_empty_prompt,
        )
        return inv, [(enc, new), (enc2, new2)]

    def time_ids(self, n: int, device, dtype) -> torch.Tensor:
        """SDXL's micro-conditioning (original size, crop top-left, target size) of
        ``n`` images at the model's resolution, uncropped: what the pipeline passes."""
        r = self.image_resolution
        return torch.tensor([[r, r, 0, 0, r, r]], device=device, dtype=dtype).expand(n, -1)

    def unet_kwargs(self, cond: TextCond) -> dict:
        h = cond.hidden
        ids = self.time_ids(h.shape[0], h.device, h.dtype)
        return {
            "encoder_hidden_states": h,
            "added_cond_kwargs": {"text_embeds": cond.pooled, "time_ids": ids},
        }

    def pipeline(self, unet: nn.Module | None = None):
        """A ``StableDiffusionXLPipeline`` sharing these parts (no watermarker)."""
        from diffusers import StableDiffusionXLPipeline

        return StableDiffusionXLPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            text_encoder_2=self.text_encoder_2,
            tokenizer=self.tokenizer,
            tokenizer_2=self.tokenizer_2,
            unet=self.unet if unet is None else unet,
            scheduler=self.scheduler,
            force_zeros_for_empty_prompt=self.force_zeros_for_empty_prompt,
            add_watermarker=False,
        )
