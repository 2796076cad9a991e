"""Model families built on diffusers, and the evaluation classifier."""

from unlearn.models.build import build_model
from unlearn.models.classifier import Classifier
from unlearn.models.diffusion import DiffusionModel, NoiseLevel, build_unet, make_scheduler
from unlearn.models.io import ModelLoadError, check_compatible, is_prompted, load_model, save_model
from unlearn.models.vae import ConvVAE, VAEOutput

__all__ = [
    "Classifier",
    "ConvVAE",
    "DiffusionModel",
    "ModelLoadError",
    "NoiseLevel",
    "VAEOutput",
    "build_model",
    "build_unet",
    "check_compatible",
    "is_prompted",
    "load_model",
    "make_scheduler",
    "save_model",
]
