"""``unlearn pretrain`` for model kind ``sdxl``: the demo SDXL-format pipeline from scratch.

The t2i family's three resumable stages (:func:`unlearn.families.t2i.pretrain.train_t2i`:
the VAE, then the UNet with both text encoders on captioned latents, then
``save_pretrained``) on an SDXL-format pipeline (:func:`unlearn.models.sdxl.build_sdxl`).
Empty captions (``t2i.cond_drop``) condition with zeros, as the saved pipeline's
``force_zeros_for_empty_prompt`` makes its unconditional branch.
"""

from __future__ import annotations

from pathlib import Path

from unlearn.config import Config
from unlearn.families.t2i.pretrain import t2i_model_key, train_t2i
from unlearn.models.sdxl import build_sdxl
from unlearn.runtime import ProgressFn, no_progress


def sdxl_model_key(cfg: Config) -> str:
    """The cache key of the demo SDXL pipeline ``cfg`` describes (the t2i key's fields)."""
    return t2i_model_key(cfg, prefix="sdxl")


def train_sdxl(
    cfg: Config, out: Path, progress: ProgressFn = no_progress, force: bool = False
) -> Path:
    """Train (or resume, or reuse) the demo SDXL pipeline into ``out``; returns ``out``."""
    return train_t2i(cfg, out, progress, force, build=build_sdxl, key=sdxl_model_key)
