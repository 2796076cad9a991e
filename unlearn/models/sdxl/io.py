"""SDXL pipelines in and out: ``StableDiffusionXLPipeline`` directories (safetensors only),
saved like the t2i family's (:func:`~unlearn.models.t2i.save_t2i`: ``save_pretrained``, LoRA
as an adapter file or merged)."""

from __future__ import annotations

from pathlib import Path

from unlearn.models.sdxl.model import SDXLModel
from unlearn.models.t2i.io import (
    PipelineLoadError,
    fuse_lora_file,
    open_pipeline,
    pipeline_class,
)

COMPONENTS = (
    "unet",
    "vae",
    "text_encoder",
    "text_encoder_2",
    "tokenizer",
    "tokenizer_2",
    "scheduler",
)
WEIGHTED = ("unet", "vae", "text_encoder", "text_encoder_2")


def is_sdxl_dir(p: Path) -> bool:
    """Whether ``p`` holds a ``StableDiffusionXLPipeline``."""
    return pipeline_class(p) == SDXLModel.pipeline_class


def load_sdxl(path: str | Path) -> SDXLModel:
    """An :class:`SDXLModel` from a ``StableDiffusionXLPipeline`` directory (or hub id),
    float32; a LoRA adapter file saved next to it is merged into the UNet."""
    pipe, local = open_pipeline(path, "sdxl", COMPONENTS, WEIGHTED)
    if pipe.unet.config.addition_embed_type != "text_time":
        raise PipelineLoadError(
            f"model: the UNet of {str(path)!r} has addition_embed_type="
            f"{pipe.unet.config.addition_embed_type!r}; model.kind=sdxl needs 'text_time'"
        )
    model = SDXLModel(
        pipe.unet,
        pipe.vae,
        pipe.text_encoder,
        pipe.text_encoder_2,
        pipe.tokenizer,
        pipe.tokenizer_2,
        pipe.scheduler,
        bool(pipe.config.get("force_zeros_for_empty_prompt", True)),
    )
    fuse_lora_file(pipe, local)
    return model.eval()
