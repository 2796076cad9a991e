"""The SDXL family (model kind ``sdxl``): ``StableDiffusionXLPipeline`` directories (two text
encoders and tokenizers, a UNet with the pooled text embedding and micro-conditioning time
ids as added conditioning).

Everything but loading, the cache key and the demo's pretraining is the t2i family's: the
SDXL model (:class:`unlearn.models.sdxl.SDXLModel`) is a t2i model whose prompt encoding
returns the conditioning its UNet needs, so the t2i forget task, methods, evaluation,
attacks and instances run on it unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch

from unlearn.config import MODEL_FAMILIES, Config
from unlearn.families.store import ASSETS
from unlearn.families.t2i import T2IFamily
from unlearn.runtime import ProgressFn


class SDXLFamily(T2IFamily):
    """SDXL pipelines; forget specs, rates, columns and attacks are the t2i family's."""

    name = "sdxl"
    kinds = MODEL_FAMILIES["sdxl"]
    conditional_kinds = ("sdxl",)
    description = "an SDXL pipeline"
    pipeline_class = "StableDiffusionXLPipeline"
    example_config = "configs/sdxl_demo.yaml"
    #: the config ``unlearn eval`` uses on an SDXL directory when none is given
    default_config: Path | None = ASSETS / "sdxl_demo.yaml"

    def load(self, path: str | Path) -> torch.nn.Module:
        from unlearn.models.sdxl import load_sdxl

        return load_sdxl(Path(path))

    def model_key(self, cfg: Config) -> str:
        from unlearn.families.sdxl.pretrain import sdxl_model_key

        return sdxl_model_key(cfg)

    def train_base(self, cfg: Config, out: Path, progress: ProgressFn, force: bool) -> Path:
        from unlearn.families.sdxl.pretrain import train_sdxl

        return train_sdxl(cfg, out, progress, force)


SDXL = SDXLFamily()

__all__ = ["SDXL", "SDXLFamily"]
