"""Save and load models as directories (JSON config + safetensors), atomically.

Layout of a model directory written here::

    unlearn.json            family, num_classes, format version
    unet/                   diffusers UNet2DModel (config.json + safetensors)   [diffusion]
    scheduler/              diffusers scheduler config                           [diffusion]
    config.json, model.safetensors                                   [vae, classifier]

Any diffusers ``UNet2DModel`` directory (or a ``DDPMPipeline`` directory with ``unet/`` and
``scheduler/``) also loads, as an unconditional DDPM; on a networked machine a hub id does too.
Weights load through safetensors only, never through unrestricted pickle.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from unlearn.config import ConfigError
from unlearn.models.atomic import atomic_dir as _atomic_dir
from unlearn.models.classifier import Classifier
from unlearn.models.diffusion import DiffusionModel
from unlearn.models.files import pickle_files
from unlearn.models.vae import ConvVAE

META = "unlearn.json"
FORMAT = 1


class ModelLoadError(ConfigError):
    """A model directory that is missing, incomplete or corrupted."""


def is_prompted(model: object) -> bool:
    """Whether ``model`` is a prompt-conditioned pipeline (its own ``prompted`` flag): the one
    question code below the model families asks about what a model is."""
    return bool(getattr(model, "prompted", False))


def save_model(model: torch.nn.Module, path: str | Path) -> Path:
    """Write a diffusion model, VAE or classifier to ``path`` (replaced atomically)."""
    path = Path(path).resolve()
    if is_prompted(model):
        from unlearn.models.t2i import save_t2i

        return save_t2i(model, path, merge_lora=model.lora_merge)
    from unlearn.models.i2i import I2IModel, save_i2i

    if isinstance(model, I2IModel):
        return save_i2i(model, path)
    with _atomic_dir(path) as tmp:
        if isinstance(model, DiffusionModel):
            model.unet.save_pretrained(tmp / "unet", safe_serialization=True)
            model.scheduler.save_pretrained(tmp / "scheduler")
            meta = {"family": model.kind, "num_classes": model.num_classes}
        elif isinstance(model, (ConvVAE, Classifier)):
            family = "vae" if isinstance(model, ConvVAE) else "classifier"
            (tmp / "config.json").write_text(json.dumps(model.config, indent=2))
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"))
            meta = {"family": family, "num_classes": model.num_classes}
        else:
            raise TypeError(f"cannot save {type(model).__name__}")
        meta["format"] = FORMAT
        (tmp / META).write_text(json.dumps(meta, indent=2))
    return path


def _read_json(p: Path) -> dict:
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"model: {p} is unreadable or corrupted ({e})") from None


def _require_safetensors(folder: Path) -> None:
    """Refuse a local weights folder without safetensors, naming what it holds instead."""
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickles = pickle_files(folder)
    held = f"; it holds {', '.join(pickles)} (pickle, never loaded)" if pickles else ""
    raise ModelLoadError(
        f"model: safetensors weights are required; none found in {folder}{held}; re-save the "
        "model with save_pretrained(..., safe_serialization=True)"
    )


def _load_unet(src: str, subfolder: str | None = None):
    from diffusers import UNet2DModel
    from diffusers.utils import logging as dlogging

    _require_safetensors(Path(src) / subfolder if subfolder else Path(src))
    level = dlogging.get_verbosity()
    dlogging.set_verbosity_error()  # diffusers logs each failed lookup before raising it
    try:
        return UNet2DModel.from_pretrained(
            src, subfolder=subfolder, use_safetensors=True, low_cpu_mem_usage=False
        )
    except Exception as e:  # diffusers raises OSError, ValueError, safetensors errors ...
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(f"model: cannot load UNet from {src!r}: {msg}") from None
    finally:
        dlogging.set_verbosity(level)


def load_model(path: str | Path) -> torch.nn.Module:
    """Load what :func:`save_model` wrote, a diffusers UNet directory, or a hub id."""
    from diffusers import DDPMScheduler

    p = Path(path).expanduser()
    if not p.exists():
        if str(path).count("/") == 1 and not str(path).startswith((".", "/", "~")):
            unet = _load_unet(str(path))  # hub id (needs network)
            return _wrap_plain_unet(unet, None)
        raise ModelLoadError(f"model: directory {str(p)!r} does not exist")
    if not p.is_dir():
        raise ModelLoadError(f"model: {str(p)!r} is not a directory")
    from unlearn.models.sdxl import is_sdxl_dir, load_sdxl
    from unlearn.models.t2i.io import is_pipeline_dir, load_t2i

    if is_pipeline_dir(p):  # a text-to-image pipeline (SD or SDXL format)
        return load_sdxl(p) if is_sdxl_dir(p) else load_t2i(p)
    from unlearn.models.i2i import is_i2i_dir, load_i2i

    if is_i2i_dir(p):  # an image-completion model
        return load_i2i(p)
    if (p / META).is_file():
        meta = _read_json(p / META)
        family = meta.get("family")
        if family in ("ddpm", "cond_ddpm", "vpsde"):
            unet = _load_unet(str(p / "unet"))
            try:
                sched = DDPMScheduler.from_pretrained(str(p / "scheduler"))
            except Exception as e:
                raise ModelLoadError(f"model: scheduler in {p} is unreadable ({e})") from None
            return DiffusionModel(unet, sched, family, int(meta["num_classes"])).eval()
        if family in ("vae", "classifier"):
            cfg = _read_json(p / "config.json")
            model = ConvVAE(**cfg) if family == "vae" else Classifier(**cfg)
            try:
                state = load_file(str(p / "model.safetensors"))
                model.load_state_dict(state)
            except Exception as e:
                raise ModelLoadError(
                    f"model: weights in {p} are missing or corrupted ({type(e).__name__}: {e})"
                ) from None
            return model.eval()
        raise ModelLoadError(f"model: {p / META} names unknown family {family!r}")
    if (p / "unet").is_dir():  # DDPMPipeline layout
        return _wrap_plain_unet(_load_unet(str(p), "unet"), p / "scheduler")
    if (p / "config.json").is_file():
        cfg = _read_json(p / "config.json")
        if cfg.get("_class_name") == "UNet2DModel":
            return _wrap_plain_unet(_load_unet(str(p)), None)
    raise ModelLoadError(
        f"model: {str(p)!r} is not a model directory (no {META}, no diffusers UNet2DModel)"
    )


def _wrap_plain_unet(unet, sched_dir: Path | None) -> DiffusionModel:
    from diffusers import DDPMScheduler

    if sched_dir is not None and sched_dir.is_dir():
        sched = DDPMScheduler.from_pretrained(str(sched_dir))
    else:
        sched = DDPMScheduler(num_train_timesteps=1000)
    n_cls = unet.config.num_class_embeds
    kind = "cond_ddpm" if n_cls else "ddpm"
    return DiffusionModel(unet, sched, kind, (n_cls - 1) if n_cls else 10).eval()


def check_compatible(model: torch.nn.Module, channels: int, resolution: int, what: str) -> None:
    """Fail clearly when a model's image shape does not match the data."""
    mc, mr = int(model.channels), int(model.resolution)
    if (mc, mr) != (channels, resolution):
        raise ConfigError(
            f"{what}: model expects {mc}x{mr}x{mr} images but the data is "
            f"{channels}x{resolution}x{resolution}; set data.resolution={mr} or use another model"
        )
