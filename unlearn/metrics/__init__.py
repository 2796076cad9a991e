"""Metrics: one definition each, used by every driver."""

from unlearn.metrics.classes import (
    confident_fraction,
    coverage_kl,
    forget_rate,
    per_class_rate,
    pul,
)
from unlearn.metrics.evaluate import EvalData, EvalResult, evaluate, generate, prepare
from unlearn.metrics.fid import frechet_distance
from unlearn.metrics.grid import save_grid, save_histogram
from unlearn.metrics.likelihood import nelbo_bpd
from unlearn.metrics.outlier import outlier_distances, outlier_rate, save_distance_histogram
from unlearn.metrics.plots import plot_lambda, plot_pareto
from unlearn.metrics.proxies import ProxyBatch, proxy_losses
from unlearn.metrics.result import ModelEvaluation

__all__ = [
    "EvalData",
    "EvalResult",
    "ModelEvaluation",
    "ProxyBatch",
    "confident_fraction",
    "coverage_kl",
    "evaluate",
    "forget_rate",
    "frechet_distance",
    "generate",
    "nelbo_bpd",
    "outlier_distances",
    "outlier_rate",
    "per_class_rate",
    "plot_lambda",
    "plot_pareto",
    "prepare",
    "proxy_losses",
    "pul",
    "save_distance_histogram",
    "save_grid",
    "save_histogram",
]
