"""Unlearning losses: one method per file, a registry, and the config factory.

``get_method(cfg.method)`` validates ``method.options`` against the method's declared
``OPTIONS`` (options kept under another method's name against that method's) and builds
it; ``check_compatible(method, model)`` rejects a model family the method cannot handle,
before any work starts.
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
from unlearn.methods.i2i import I2I_METHODS
from unlearn.methods.naive import NaiveDeletion
from unlearn.methods.neggrad import NegGrad
from unlearn.methods.options import PREFIX, Opt, OptionError, validate_options
from unlearn.methods.siss import (
    SISS,
    ImportanceWeights,
    importance_weights,
    weights_from_log_ratio,
)
from unlearn.methods.siss_nois import SISSNoIS
from unlearn.methods.uce import UCE
from unlearn.methods.vdu import VDU

__all__ = [
    "METHODS",
    "SISS",
    "UCE",
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
    "check_options",
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
        UCE,
        *I2I_METHODS,
    )
}


def register_method(name: str, cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Make ``cls`` available as ``method.name=<name>``."""
    if not (isinstance(cls, type) and issubclass(cls, UnlearningMethod)):
        raise TypeError(f"{cls!r} is not an UnlearningMethod subclass")
    if any(opt.kind is dict for opt in cls.OPTIONS.values()):
        # a mapping in method.options is the options of the method it names
        raise TypeError(f"{cls.__name__}: a method option may not take a mapping")
    if name in METHODS and METHODS[name] is not cls:
        raise ValueError(f"method {name!r} is already registered as {METHODS[name].__name__}")
    METHODS[name] = cls
    return cls


def get_method(cfg: MethodConfig) -> UnlearningMethod:
    """The method described by ``cfg``; raises :class:`ConfigError` naming ``method.name``
    or ``method.options.<key>`` (``method.options.<method>.<key>``), the value and what is
    allowed. Options kept under another method's name are checked against that method."""
    if cfg.name not in METHODS:
        raise ConfigError(
            f"method.name: {cfg.name!r} is not allowed; expected one of {', '.join(METHODS)}"
        )
    check_options(cfg)
    return METHODS[cfg.name](cfg)


def check_options(cfg: MethodConfig) -> None:
    """Every entry of ``cfg.options`` belongs to a method that takes it: a mapping under a
    method's name holds that method's options, a key given directly is the selected method's.
    An option under the wrong method names the method(s) that take it; one line."""
    spec = METHODS[cfg.name].OPTIONS
    for key, value in cfg.options.items():
        if not isinstance(value, dict):
            _known(cfg.name, key, PREFIX, cfg.name)
        elif key in METHODS:
            for option in value:
                _known(key, option, f"{PREFIX}.{key}", cfg.name)
            if key != cfg.name:
                validate_options(METHODS[key].OPTIONS, value, f"{PREFIX}.{key}")
        elif key in spec:  # a mapping given to an option: its own check refuses it
            spec[key].check(key, value, OptionError)
        else:
            raise ConfigError(
                f"{PREFIX}.{key}: unknown option or method {key!r}; options of {cfg.name}: "
                f"{', '.join(sorted(spec)) or 'none'}; methods: {', '.join(METHODS)}"
            )


def _known(name: str, option: str, where: str, selected: str) -> None:
    """Refuse ``option`` unless method ``name`` takes it, naming the methods that do (the
    selected one first)."""
    spec = METHODS[name].OPTIONS
    if option in spec:
        return
    allowed = ", ".join(sorted(spec)) or "none (this method takes no options)"
    owners = sorted(
        (n for n, cls in METHODS.items() if option in cls.OPTIONS), key=lambda n: n != selected
    )
    hint = ""
    if owners:
        s = "s" if len(owners) > 1 else ""
        hint = (
            f"; {option!r} is an option of method{s} {', '.join(owners)} "
            f"({PREFIX}.{owners[0]}.{option})"
        )
    raise ConfigError(
        f"{where}.{option}: unknown option {option!r}; allowed options: {allowed}{hint}"
    )


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
