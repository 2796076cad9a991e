"""Datasets and forget / retain splits."""

from unlearn.data.datasets import ImageData, Splits, load_splits
from unlearn.data.forget import (
    OUTLIER_LABEL,
    ForgetSplit,
    inject_outlier,
    make_outlier,
    split_forget,
)

__all__ = [
    "OUTLIER_LABEL",
    "ForgetSplit",
    "ImageData",
    "Splits",
    "inject_outlier",
    "load_splits",
    "make_outlier",
    "split_forget",
]
