"""Text-to-image pipelines in and out: diffusers ``StableDiffusionPipeline`` directories.

In: ``StableDiffusionPipeline.from_pretrained`` (safetensors only) on a directory or hub id,
after checking that every component is there. Out: ``save_pretrained`` into a temporary
sibling swapped in at the end (nothing half-written), plus ``unlearn.json``; LoRA runs
save their adapters next to the base pipeline (``pytorch_lora_weights.safetensors``, loadable
with ``pipe.load_lora_weights``) or merge them into the UNet.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from unlearn.config import ConfigError
from unlearn.models.files import pickle_files
from unlearn.models.t2i.model import T2IModel

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
META = "unlearn.json"
LORA_FILE = "pytorch_lora_weights.safetensors"
#: weight files that are pickles (never loaded: unpickling runs arbitrary code)
WEIGHTED = ("unet", "vae", "text_encoder")


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


#: the pipeline class of each text-to-image model kind (a directory of another class is
#: refused, naming the kind that loads it)
PIPELINE_KINDS = {"StableDiffusionPipeline": "t2i", "StableDiffusionXLPipeline": "sdxl"}


def pipeline_class(p: Path) -> str:
    """The ``_class_name`` of ``p``'s ``model_index.json`` ('' when unreadable)."""
    try:
        return str(json.loads((p / "model_index.json").read_text()).get("_class_name", ""))
    except (OSError, json.JSONDecodeError, AttributeError):
        return ""


def check_pipeline_dir(
    p: Path,
    kind: str = "t2i",
    components: tuple[str, ...] = COMPONENTS,
) -> None:
    """Raise a one-line error naming what is wrong with directory ``p`` as a pipeline of
    model kind ``kind`` (with ``components``)."""
    want = next(c for c, k in PIPELINE_KINDS.items() if k == kind)
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
            f"model: {str(p)!r} is {what}; model.kind={kind} needs a {want} "
            f"directory with {', '.join(c + '/' for c in components)}"
        )
    cls = pipeline_class(p)
    if cls != want and cls in PIPELINE_KINDS:
        raise PipelineLoadError(
            f"model: {str(p)!r} is a {cls} directory; model.kind={kind} needs a {want} "
            f"(set model.kind={PIPELINE_KINDS[cls]})"
        )
    missing = [c for c in components if not (p / c).is_dir()]
    if missing:
        raise PipelineLoadError(
            f"model: pipeline {str(p)!r} is missing its {', '.join(c + '/' for c in missing)} "
            f"component{'s' if len(missing) > 1 else ''}"
        )


def load_t2i(path: str | Path) -> T2IModel:
    """A :class:`T2IModel` from a ``StableDiffusionPipeline`` directory (or hub id), float32."""
    pipe, local = open_pipeline(
        path, "t2i", safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    model = T2IModel(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.scheduler)
    fuse_lora_file(pipe, local)
    return model.eval()


def open_pipeline(
    path: str | Path,
    kind: str,
    components: tuple[str, ...] = COMPONENTS,
    weighted: tuple[str, ...] = WEIGHTED,
    **kwargs,
):
    """The diffusers pipeline of model kind ``kind`` at ``path`` (a directory, checked
    first, or a hub id), float32 safetensors weights only; returns it and the local
    directory (None for a hub id). ``kwargs`` go to ``from_pretrained``."""
    quiet_hub()
    import diffusers

    cls = getattr(diffusers, next(c for c, k in PIPELINE_KINDS.items() if k == kind))
    p = Path(path).expanduser()
    src = str(path)
    local = p.exists() or str(path).startswith((".", "/", "~")) or str(path).count("/") != 1
    if local:
        check_pipeline_dir(p, kind, components)
        check_weight_files(p, weighted)
        src = str(p)
    try:
        with quiet_loading():
            pipe = cls.from_pretrained(src, dtype=torch.float32, use_safetensors=True, **kwargs)
    except Exception as e:  # diffusers / transformers raise many kinds
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PipelineLoadError(f"model: cannot load pipeline {src!r}: {msg}") from None
    from diffusers import UNet2DConditionModel

    if not isinstance(pipe.unet, UNet2DConditionModel):
        raise PipelineLoadError(f"model: {src!r} has no UNet2DConditionModel")
    return pipe, (p if local else None)


def fuse_lora_file(pipe, p: Path | None) -> None:
    """Merge the LoRA adapter file saved next to a pipeline (if any) into its UNet."""
    if p is None or not (p / LORA_FILE).is_file():
        return
    try:
        with quiet_loading():
            pipe.load_lora_weights(str(p))
            pipe.fuse_lora()
            pipe.unload_lora_weights()
    except Exception as e:  # diffusers / peft raise many kinds (wrong keys, shapes)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PipelineLoadError(
            f"model: cannot load the LoRA adapters {p / LORA_FILE}: {msg}"
        ) from None


def check_weight_files(p: Path, weighted: tuple[str, ...] = WEIGHTED) -> None:
    """Refuse, in one line, a pipeline whose weights are pickles or whose LoRA adapter file
    is not a readable safetensors file (before diffusers logs and raises its own lines)."""
    for c in weighted:
        folder = p / c
        if any(folder.glob("*.safetensors")):
            continue
        pickles = pickle_files(folder)
        held = f" it holds {', '.join(pickles)} (pickle, never loaded);" if pickles else ""
        raise PipelineLoadError(
            f"model: pipeline {str(p)!r} has no safetensors weights in {c}/;{held} "
            "re-save it with save_pretrained(..., safe_serialization=True)"
        )
    lora = p / LORA_FILE
    if lora.is_file():
        why = _not_safetensors(lora)
        if why:
            raise PipelineLoadError(
                f"model: LoRA adapter file {lora} {why}; only safetensors adapters load "
                "(save_lora_weights(..., safe_serialization=True))"
            )
    else:
        pickles = sorted(f.name for f in p.glob("pytorch_lora_weights.*"))
        if pickles:
            raise PipelineLoadError(
                f"model: LoRA adapter file {p / pickles[0]} is not safetensors (pickle, never "
                f"loaded); save the adapters as {LORA_FILE}"
            )


def _not_safetensors(path: Path) -> str:
    """Why ``path`` is not a readable safetensors file ('' when it is)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:2] == b"PK" or head[:1] == b"\x80":  # torch.save's zip, or a bare pickle
        return "is a pickle (never loaded)"
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as st:
            st.keys()
    except (SafetensorError, OSError, ValueError) as e:
        return f"is corrupted or truncated ({str(e).splitlines()[0] if str(e) else 'unreadable'})"
    return ""


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """diffusers and transformers log a failed load (at ERROR) before raising it: their
    loggers stay silent inside, so the caller's error is the only line."""
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    levels = dlogging.get_verbosity(), tlogging.get_verbosity()
    dlogging.set_verbosity(logging.CRITICAL + 1)
    tlogging.set_verbosity(logging.CRITICAL + 1)
    try:
        yield
    finally:
        dlogging.set_verbosity(levels[0])
        tlogging.set_verbosity(levels[1])


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
            type(pipe).save_lora_weights(
                str(tmp), unet_lora_layers=adapters, safe_serialization=True
            )
        meta = {"family": model.kind, "train": model.train_mode, "format": 1}
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
