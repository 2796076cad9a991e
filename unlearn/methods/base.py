"""The plug-in point for unlearning losses."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

import torch

from unlearn.config import ConfigError, MethodConfig
from unlearn.data import ForgetSplit
from unlearn.methods.options import Opt, method_options
from unlearn.types import Batch, LossTerms


class FusedStep(NamedTuple):
    """A gradient-form step taken with ONE backward: the update direction is
    ``∇(retain_coef·retain + forget_coef·forget)``, then clipped to norm ``clip`` (0: none)."""

    retain_coef: float
    forget_coef: float
    clip: float


class UnlearningMethod(ABC):
    """One unlearning loss.

    Class attributes:
        name: registry name (``method.name`` in the config).
        combine: ``"loss"`` → the unlearner backpropagates ``LossTerms.total`` once;
            ``"gradient"`` → it backpropagates ``retain`` and ``forget`` separately and
            calls :meth:`combine_gradients` (an instance may override it: SISS sets it from
            ``method.form``).
        families: model kinds the method supports.
        needs_conditional: requires a class-conditional model (f-divergence).
        uses_retain: False for methods that only see the forget set (VDU).
        uses_lambda: False for methods whose loss ignores λ (naive deletion): every λ agent
            gives the same run, so the bench runs them under one agent only.
        forms: the ``method.form`` values the method accepts (``gradient`` only where it has
            a gradient form; SISS).
        OPTIONS: the declared ``method.options``; validated when the method is built.
        closed_form: True for a method that edits the weights in one step (UCE): the
            unlearner calls :meth:`edit` once instead of optimising :meth:`loss`.

    Args:
        cfg: the ``method`` config section (default: ``MethodConfig(name=<name>)``); its
            options (those under this method's name, and those given directly over them)
            are validated against ``OPTIONS`` and stored in ``self.options``.
    """

    name: ClassVar[str]
    combine: ClassVar[str] = "loss"
    families: ClassVar[tuple[str, ...]] = ("ddpm", "cond_ddpm", "vpsde")
    needs_conditional: ClassVar[bool] = False
    uses_retain: ClassVar[bool] = True
    uses_lambda: ClassVar[bool] = True
    forms: ClassVar[tuple[str, ...]] = ("loss",)
    OPTIONS: ClassVar[dict[str, Opt]] = {}
    closed_form: ClassVar[bool] = False

    def __init__(self, cfg: MethodConfig | None = None):
        self.cfg = cfg if cfg is not None else MethodConfig(name=self.name)
        if self.cfg.form not in self.forms:
            raise ConfigError(
                f"method.form: {self.cfg.form!r} is not allowed for method {self.name!r}; "
                f"expected one of {', '.join(self.forms)}"
            )
        self.options = method_options(self.name, self.OPTIONS, self.cfg.options)

    def trainable_parameters(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        """The parameters the unlearner optimises (default: all of the model's)."""
        return list(model.parameters())

    def setup(self, model: torch.nn.Module, split: ForgetSplit) -> None:  # noqa: B027 (optional hook)
        """Called once before unlearning: freeze anchors, count n and k, estimate Fisher..."""

    @abstractmethod
    def loss(
        self,
        model: torch.nn.Module,
        retain: Batch,
        forget: Batch,
        lam: float | torch.Tensor,
        generator: torch.Generator,
    ) -> LossTerms:
        """The step's terms. ``lam`` may be a tensor carrying gradient (variational agent)."""

    def edit(self, model: torch.nn.Module, lam: float) -> LossTerms:
        """Closed-form methods only: set the weights for ``lam`` in one step, always from the
        weights :meth:`setup` saw (so applying it again is harmless); the terms it reports are
        the residuals of its erase and preserve objectives."""
        raise NotImplementedError(f"{self.name} optimises a loss; it has no closed form")

    def combine_gradients(
        self, g_retain: list[torch.Tensor], g_forget: list[torch.Tensor], lam: float
    ) -> list[torch.Tensor]:
        """Only for ``combine == "gradient"``: the update direction from the two gradients."""
        raise NotImplementedError(f"{self.name} combines losses, not gradients")

    def fused_step(self, step: int) -> FusedStep | None:
        """Gradient forms only: the coefficients when step ``step``'s direction is a fixed
        linear combination of the two terms' gradients (one backward instead of two: SISS
        ``norm_every``); None (default) → the two gradients and :meth:`combine_gradients`."""
        return None
