"""Text-to-image pipelines in and out: diffusers ``StableDiffusionPipeline`` directories.

In: ``StableDiffusionPipeline.from_pretrained`` (safetensors only) on a directory or hub id,
after checking that every component is there. Out: ``save_pretrained`` into a temporary
sibling swapped in at the end (nothing half-written), plus ``unlearn.json``; LoRA runs
save their adapters next to the base pipeline (``pytorch_lora_weights.safetensors``, loadable
with ``pipe.load_lora_weights``) or merge them into the UNet.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from unlearn.config import ConfigError
from unlearn.models.t2i.model import T2IModel

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
META = "unlearn.json"
LORA_FILE = "pytorch_lora_weights.safetensors"


class PipelineLoadError(ConfigError):
    """A pipeline directory that is missing, incomplete or not a text-to-image pipeline."""


def quiet_hub() -> None:
    """No diffusers / transformers progress bars or import-time notices (torchvision image
    processors a text-to-image pipeline never uses): the library reports through
    ``progress`` and logging, the CLI prints."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()


def is_pipeline_dir(p: Path) -> bool:
    """Whether ``p`` holds a diffusers pipeline (its ``model_index.json``)."""
    return (p / "model_index.json").is_file()


def check_pipeline_dir(p: Path) -> None:
    """Raise a one-line error naming what is wrong with directory ``p``."""
    if not p.exists():
        raise PipelineLoadError(f"model: directory {str(p)!r} does not exist")
    if not p.is_dir():
        raise PipelineLoadError(f"model: {str(p)!r} is not a directory")
    if not is_pipeline_dir(p):
        cfg = p / "config.json"
        name = ""
        if cfg.is_file():
            try:
                name = json.loads(cfg.read_text()).get("_class_name", "")
            except (OSError, json.JSONDecodeError):
                name = ""
        what = f"a {name} directory" if name else "not a pipeline directory (no model_index.json)"
        raise PipelineLoadError(
            f"model: {str(p)!r} is {what}; model.kind=t2i needs a StableDiffusionPipeline "
            f"directory with {', '.join(c + '/' for c in COMPONENTS)}"
        )
    missing = [c for c in COMPONENTS if not (p / c).is_dir()]
    if missing:
        raise PipelineLoadError(
            f"model: pipeline {str(p)!r} is missing its {', '.join(c + '/' for c in missing)} "
            f"component{'s' if len(missing) > 1 else ''}"
        )


def load_t2i(path: str | Path) -> T2IModel:
    """A :class:`T2IModel` from a ``StableDiffusionPipeline`` directory (or hub id), float32."""
    quiet_hub()
    from diffusers import StableDiffusionPipeline

    p = Path(path).expanduser()
    src = str(path)
    if p.exists() or str(path).startswith((".", "/", "~")) or str(path).count("/") != 1:
        check_pipeline_dir(p)
        src = str(p)
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            src,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            dtype=torch.float32,
            use_safetensors=True,
        )
    except Exception as e:  # diffusers / transformers raise many kinds
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PipelineLoadError(f"model: cannot load pipeline {src!r}: {msg}") from None
    from diffusers import UNet2DConditionModel

    if not isinstance(pipe.unet, UNet2DConditionModel):
        raise PipelineLoadError(f"model: {src!r} has no UNet2DConditionModel")
    model = T2IModel(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.scheduler)
    if (p / LORA_FILE).is_file():
        pipe.load_lora_weights(str(p))
        pipe.fuse_lora()
        pipe.unload_lora_weights()
    return model.eval()


def save_t2i(
    model: T2IModel,
    path: str | Path,
    merge_lora: bool = False,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` as a pipeline directory (replaced atomically). ``dtype`` (e.g.
    ``torch.float16``) stores smaller weights; loading gives float32 again."""
    from unlearn.models.atomic import atomic_dir

    quiet_hub()
    path = Path(path).resolve()
    adapters = _adapter_state(model.unet)
    unet = model.unet
    if adapters is not None:
        unet = copy.deepcopy(model.unet)
        if merge_lora:
            unet.fuse_lora()
        unet.unload_lora()  # the base weights (merged or not) without peft layers
    pipe = model.pipeline(unet)
    with atomic_dir(path) as tmp:
        if dtype is not None:
            pipe = copy.deepcopy(pipe).to(dtype)
        pipe.save_pretrained(str(tmp), safe_serialization=True)
        if adapters is not None and not merge_lora:
            from diffusers import StableDiffusionPipeline

            StableDiffusionPipeline.save_lora_weights(
                str(tmp), unet_lora_layers=adapters, safe_serialization=True
            )
        meta = {"family": "t2i", "train": model.train_mode, "format": 1}
        meta["lora"] = (
            "merged"
            if (adapters is not None and merge_lora)
            else (LORA_FILE if adapters is not None else None)
        )
        (tmp / META).write_text(json.dumps(meta, indent=2))
    return path


def _adapter_state(unet) -> dict[str, torch.Tensor] | None:
    """The UNet's LoRA weights in diffusers' naming, or None without adapters."""
    if not getattr(unet, "_hf_peft_config_loaded", False):
        return None
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
