"""Unlearning losses: one method per file, a registry, and the config factory.

``get_method(cfg.method)`` validates ``method.options`` against the method's declared
``OPTIONS`` and builds it; ``check_compatible(method, model)`` rejects a model family the
method cannot handle, before any work starts.
"""

from __future__ import annotations

import torch

from unlearn.config import ConfigError, MethodConfig
from unlearn.methods.base import FusedStep, UnlearningMethod
from unlearn.methods.constrained import Constrained
from unlearn.methods.encoder import EncoderUnlearning
from unlearn.methods.erasediff import EraseDiff
from unlearn.methods.esd import ESD
from unlearn.methods.fdiv import FDivergence, gaussian_f_divergence
from unlearn.methods.naive import NaiveDeletion
from unlearn.methods.neggrad import NegGrad
from unlearn.methods.options import Opt, OptionError
from unlearn.methods.siss import (
    SISS,
    ImportanceWeights,
    importance_weights,
    weights_from_log_ratio,
)
from unlearn.methods.siss_nois import SISSNoIS
from unlearn.methods.vdu import VDU

__all__ = [
    "METHODS",
    "SISS",
    "VDU",
    "Constrained",
    "ESD",
    "EncoderUnlearning",
    "EraseDiff",
    "FDivergence",
    "FusedStep",
    "ImportanceWeights",
    "NaiveDeletion",
    "NegGrad",
    "Opt",
    "OptionError",
    "SISSNoIS",
    "UnlearningMethod",
    "check_compatible",
    "gaussian_f_divergence",
    "get_method",
    "importance_weights",
    "register_method",
    "weights_from_log_ratio",
]

METHODS: dict[str, type[UnlearningMethod]] = {
    cls.name: cls
    for cls in (
        SISS,
        SISSNoIS,
        NaiveDeletion,
        NegGrad,
        EraseDiff,
        VDU,
        FDivergence,
        Constrained,
        EncoderUnlearning,
        ESD,
    )
}


def register_method(name: str, cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Make ``cls`` available as ``method.name=<name>``."""
    if not (isinstance(cls, type) and issubclass(cls, UnlearningMethod)):
        raise TypeError(f"{cls!r} is not an UnlearningMethod subclass")
    if name in METHODS and METHODS[name] is not cls:
        raise ValueError(f"method {name!r} is already registered as {METHODS[name].__name__}")
    METHODS[name] = cls
    return cls


def get_method(cfg: MethodConfig) -> UnlearningMethod:
    """The method described by ``cfg``; raises :class:`ConfigError` naming ``method.name``
    or ``method.options.<key>``, the value and what is allowed."""
    if cfg.name not in METHODS:
        raise ConfigError(
            f"method.name: {cfg.name!r} is not allowed; expected one of {', '.join(METHODS)}"
        )
    return METHODS[cfg.name](cfg)


def check_compatible(method: UnlearningMethod, model: torch.nn.Module) -> None:
    """Raise :class:`ConfigError` when ``method`` cannot run on ``model``'s family."""
    kind = str(getattr(model, "kind", type(model).__name__))
    if method.needs_conditional and not getattr(model, "conditional", False):
        raise ConfigError(
            f"method.name: {method.name!r} needs a class-conditional model "
            f"(model.kind=cond_ddpm); got model kind {kind!r}"
        )
    if kind not in method.families:
        raise ConfigError(
            f"method.name: {method.name!r} does not support model kind {kind!r}; "
            f"expected one of {', '.join(method.families)}"
        )
