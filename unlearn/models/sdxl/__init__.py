"""The SDXL family's building blocks (model kind ``sdxl``): ``StableDiffusionXLPipeline``
directories as :class:`SDXLModel`, a t2i model with a second text encoder and SDXL's added
conditioning."""

from unlearn.models.sdxl.build import build_sdxl, build_sdxl_unet
from unlearn.models.sdxl.io import COMPONENTS, is_sdxl_dir, load_sdxl
from unlearn.models.sdxl.model import SDXLModel

__all__ = ["COMPONENTS", "SDXLModel", "build_sdxl", "build_sdxl_unet", "is_sdxl_dir", "load_sdxl"]
