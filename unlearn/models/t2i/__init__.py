"""The text-to-image family (model kind ``t2i``): Stable-Diffusion-format pipelines."""

from unlearn.models.t2i.build import build_t2i, make_t2i_scheduler
from unlearn.models.t2i.io import (
    PipelineLoadError,
    check_pipeline_dir,
    is_pipeline_dir,
    load_t2i,
    save_t2i,
)
from unlearn.models.t2i.model import TRAIN_MODES, T2IModel
from unlearn.models.t2i.tokenizer import build_tokenizer, too_long, unknown_words

__all__ = [
    "TRAIN_MODES",
    "PipelineLoadError",
    "T2IModel",
    "build_t2i",
    "build_tokenizer",
    "check_pipeline_dir",
    "is_pipeline_dir",
    "load_t2i",
    "make_t2i_scheduler",
    "save_t2i",
    "too_long",
    "unknown_words",
]
