"""Image-completion (image-to-image) models: a diffusion inpainter and a masked autoencoder
(model kinds ``inpaint_ddpm`` and ``mae``), their masks, and their files on disk."""

from unlearn.models.i2i.io import describe_dir, is_i2i_dir, load_i2i, save_i2i
from unlearn.models.i2i.model import (
    KINDS,
    TASKS,
    I2IModel,
    Inpainter,
    MaskedAutoencoder,
    build_i2i,
    hide,
    make_mask,
    mask_fraction,
)

__all__ = [
    "KINDS",
    "TASKS",
    "I2IModel",
    "Inpainter",
    "MaskedAutoencoder",
    "build_i2i",
    "describe_dir",
    "hide",
    "is_i2i_dir",
    "load_i2i",
    "make_mask",
    "mask_fraction",
    "save_i2i",
]
