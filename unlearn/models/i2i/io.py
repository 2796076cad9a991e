"""Saving and loading image-completion models: ``unlearn.json`` (kind, tasks), ``build.json``
(the parameters that rebuild the network) and ``model.safetensors`` (weights only)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from unlearn.config import ConfigError
from unlearn.models.atomic import atomic_dir
from unlearn.models.i2i.model import KINDS, I2IModel, build_i2i

#: the metadata file every saved model of the project carries
META = "unlearn.json"


class ModelLoadError(ConfigError):
    """An image-completion model directory that is missing, of another kind, or corrupted."""


FORMAT = 1


def is_i2i_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a saved image-completion model (its ``unlearn.json`` names an
    i2i kind)."""
    p = Path(path) / META
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text()).get("family") in KINDS
    except (OSError, ValueError):
        return False


def save_i2i(model: I2IModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` (replaced atomically)."""
    path = Path(path).resolve()
    with atomic_dir(path) as tmp:
        (tmp / "build.json").write_text(json.dumps(model.build, indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        meta = {
            "family": model.kind,
            "tasks": list(model.tasks),
            "task": model.task,
            "mask_ratio": model.mask_ratio,
            "format": FORMAT,
        }
        (tmp / META).write_text(json.dumps(meta, indent=2))
    return path


def describe_dir(p: Path) -> str:
    """What ``p`` holds instead of an i2i model, for messages."""
    if (p / "model_index.json").is_file():
        return "a text-to-image pipeline"
    if (p / META).is_file():
        try:
            fam = json.loads((p / META).read_text()).get("family")
        except (OSError, ValueError):
            fam = None
        return f"a saved {fam} model" if fam else "an unreadable model directory"
    if (p / "unet").is_dir() or (p / "config.json").is_file():
        return "a diffusers UNet / DDPM pipeline"
    return "no model"


def load_i2i(path: str | Path) -> I2IModel:
    """Load what :func:`save_i2i` wrote; :class:`ModelLoadError` (one line) for anything
    else, e.g. a DDPM or a text-to-image pipeline."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ModelLoadError(f"model: {str(p)!r} is not a directory")
    if not is_i2i_dir(p):
        raise ModelLoadError(
            f"model: {str(p)!r} holds {describe_dir(p)}, not an image-completion model "
            f"(model.kind {' or '.join(KINDS)})"
        )
    try:
        build = json.loads((p / "build.json").read_text())
        model = build_i2i(build)
        state = load_file(str(p / "model.safetensors"))
        model.load_state_dict(state)
        meta = json.loads((p / META).read_text())
        if meta.get("task") in model.tasks:  # the mask it was last used with
            model.set_mask(meta["task"], float(meta.get("mask_ratio", model.mask_ratio)))
    except Exception as e:
        raise ModelLoadError(
            f"model: {p} is incomplete or corrupted ({type(e).__name__}: {str(e)[:200]})"
        ) from None
    return model.eval()
