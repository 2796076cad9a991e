"""The plug-in point for unlearning losses."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from unlearn.data import ForgetSplit
from unlearn.types import Batch, LossTerms


class UnlearningMethod(ABC):
    """One unlearning loss.

    Class attributes:
        name: registry name (``method.name`` in the config).
        combine: ``"loss"`` → the unlearner backpropagates ``LossTerms.total`` once;
            ``"gradient"`` → it backpropagates ``retain`` and ``forget`` separately and
            calls :meth:`combine_gradients`.
        families: model kinds the method supports.
        needs_conditional: requires a class-conditional model (f-divergence).
        uses_retain: False for methods that only see the forget set (VDU).
    """

    name: ClassVar[str]
    combine: ClassVar[str] = "loss"
    families: ClassVar[tuple[str, ...]] = ("ddpm", "cond_ddpm", "vpsde")
    needs_conditional: ClassVar[bool] = False
    uses_retain: ClassVar[bool] = True

    def setup(self, model: torch.nn.Module, split: ForgetSplit) -> None:
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

    def combine_gradients(
        self, g_retain: list[torch.Tensor], g_forget: list[torch.Tensor], lam: float
    ) -> list[torch.Tensor]:
        """Only for ``combine == "gradient"``: the update direction from the two gradients."""
        raise NotImplementedError(f"{self.name} combines losses, not gradients")
