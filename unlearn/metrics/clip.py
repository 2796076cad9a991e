"""The CLIP concept measure (``eval.concept_measure: clip``): zero-shot classification with a
``transformers.CLIPModel``, the measure of the concept-erasure literature for concepts an
image classifier cannot name (styles, objects).

- An image *shows the concept* when CLIP scores the concept text (the first of
  ``forget.prompts``, e.g. "a painting in the style of Van Gogh") above the anchor
  (``forget.anchor``, e.g. "a painting"): concept rate and paraphrase concept rate, and
  which training / held-out images count as the concept.
- A retain-prompt image is *correct* when, among the retain prompts and the concept text,
  CLIP scores its own prompt highest (retain accuracy); training images are assigned to
  retain prompts the same way.
- FID is computed on CLIP's projected image embeddings.

``eval.clip_model`` is a hub id or a local directory holding the model, its tokenizer and its
image processor (``CLIPImageProcessor``: size, mean and std of the pixel input).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearn.config import ConfigError


class ClipMeasure(torch.nn.Module):
    """A frozen CLIP model with its tokenizer and pixel normalisation; images in [-1, 1]
    (grey images are repeated to RGB), resized to the model's input size."""

    def __init__(self, model, tokenizer, mean, std, size: int, batch_size: int = 64):
        super().__init__()
        self.clip = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.size = int(size)
        self.batch_size = batch_size

    @classmethod
    def load(cls, source: str) -> ClipMeasure:
        """The CLIP model, tokenizer and image processor of ``source``; a one-line
        ConfigError naming ``eval.clip_model`` when it cannot be loaded."""
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        if not source.strip():
            raise ConfigError(
                "eval.clip_model: '' is not allowed with eval.concept_measure=clip; expected "
                "a hub id or a directory of a transformers CLIPModel"
            )
        try:
            model = CLIPModel.from_pretrained(source)
            tok = AutoTokenizer.from_pretrained(source)
            proc = CLIPImageProcessor.from_pretrained(source)
        except (OSError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(
                f"eval.clip_model: {source!r} cannot be loaded as a CLIPModel with its "
                f"tokenizer and image processor ({first[:200]})"
            ) from None
        return cls(
            model, tok, proc.image_mean, proc.image_std, model.config.vision_config.image_size
        )

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP's pixel input of images in [-1, 1]."""
        x = (images.float().to(self.mean.device) + 1) / 2
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False)
            x = x.clamp(0, 1)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def _forward(self, images: torch.Tensor, texts: list[str]):
        tok = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        tok = {
            k: v.to(self.mean.device)
            for k, v in tok.items()
            if k in ("input_ids", "attention_mask")
        }
        logits, embeds = [], []
        for i in range(0, images.shape[0], self.batch_size):
            out = self.clip(pixel_values=self.pixels(images[i : i + self.batch_size]), **tok)
            logits.append(out.logits_per_image.float().cpu())
            embeds.append(out.image_embeds.float().cpu())
        return torch.cat(logits), torch.cat(embeds)

    def logits(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """[images, texts] CLIP logits (scaled cosine similarities)."""
        return self._forward(images, texts)[0]

    def predict(self, images: torch.Tensor) -> tuple[None, torch.Tensor]:
        """(None, projected image embeddings): the features FID is computed on (the
        classifier interface; concept decisions go through :class:`ClipConcept`)."""
        return None, self._forward(images, [""])[1]


@dataclass(frozen=True)
class ClipConcept:
    """A concept decided by CLIP: ``text`` against ``anchor``."""

    measure: ClipMeasure
    text: str
    anchor: str

    def shows(self, images: torch.Tensor) -> torch.Tensor:
        """Per image: CLIP scores the concept text above the anchor."""
        s = self.measure.logits(images, [self.text, self.anchor])
        return s[:, 0] > s[:, 1]

    def assign(self, images: torch.Tensor, retain: tuple[str, ...]) -> torch.Tensor:
        """Per image: the index of the retain prompt CLIP scores highest among the retain
        prompts and the concept text, or -1 where the concept text wins."""
        s = self.measure.logits(images, [self.text, *retain])
        return s.argmax(1) - 1


def resolve_clip_target(spec, measure: ClipMeasure):
    """``spec`` with its CLIP target bound to ``measure``."""
    import dataclasses

    return dataclasses.replace(
        spec, target=("clip", ClipConcept(measure, spec.prompts[0], spec.anchor))
    )
