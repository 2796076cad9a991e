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
from unlearn.metrics.plots import plot_lambda, plot_pareto
from unlearn.metrics.proxies import ProxyBatch, proxy_losses

__all__ = [
    "EvalData",
    "EvalResult",
    "ProxyBatch",
    "confident_fraction",
    "coverage_kl",
    "evaluate",
    "forget_rate",
    "frechet_distance",
    "generate",
    "nelbo_bpd",
    "per_class_rate",
    "plot_lambda",
    "plot_pareto",
    "prepare",
    "proxy_losses",
    "pul",
    "save_grid",
    "save_histogram",
]
