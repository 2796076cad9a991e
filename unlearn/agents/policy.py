"""An exported RL λ policy as a :class:`LambdaAgent`: torch (or onnxruntime) alone, no Ray.

``unlearn run --set agent.name=policy --set agent.path=DIR`` (or ``models:/NAME@ALIAS``)
unlearns with a policy written by ``unlearn policy export``. The agent decides every K
steps (K = ``steps_per_decision`` from the metadata), like the env, and builds its
observation with the env's own :class:`~unlearn.observation.ObservationBuilder` from
the previous step's ``StepStats`` and the fixed-noise proxies, measured on the same
cadence and on as many images as the env (``proxy_every`` and ``proxy_batch`` from the
metadata).

The proxies come from the unlearner the agent is bound to (``bind(unlearner)``; the env
measures exactly the same numbers). An unbound agent still runs, but its proxy features
read as 0 and it logs a warning once: its λ then differs from what the env would give.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

import numpy as np

from unlearn.agents.base import LambdaAgent
from unlearn.agents.options import Opt, OptionError
from unlearn.config import ConfigError
from unlearn.observation import ObservationBuilder, action_to_controls, scale_to_action
from unlearn.types import StepStats

log = logging.getLogger(__name__)


class PolicyAgent(LambdaAgent):
    """λ from an exported RL policy, one decision every K optimiser steps.

    Args:
        path: exported policy directory or ``models:/NAME@ALIAS`` (``agent.path``).
        lam0: λ reported as "previous λ" in the first observation (``method.lam``, as the env).
        fmt: ``auto`` (the metadata's), ``torchscript`` or ``onnx``.
        tracking_uri: MLflow tracking URI for ``models:/`` paths (default: ``MLFLOW_TRACKING_URI``).
        steps_per_decision: override K (default: the metadata's, i.e. the training env's).
    """

    name = "policy"
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "format": Opt(
            "auto", "policy file format", kind=str, choices=("auto", "torchscript", "onnx")
        ),
        "tracking_uri": Opt("", "MLflow URI for models:/ paths", kind=str),
        "steps_per_decision": Opt(None, "override K", kind=int, lo=1, optional=True),
    }

    @classmethod
    def from_options(
        cls, options: dict[str, Any], default_lam: float, path: str = ""
    ) -> PolicyAgent:
        if not path:
            raise ConfigError(
                "agent.path: the policy agent needs agent.path=<exported policy dir> "
                "or models:/NAME@ALIAS"
            )
        return cls(
            path,
            default_lam,
            options["format"],
            options["tracking_uri"],
            options["steps_per_decision"],
        )

    def __init__(
        self,
        path: str,
        lam0: float = 0.5,
        fmt: str = "auto",
        tracking_uri: str = "",
        steps_per_decision: int | None = None,
    ):
        from unlearn.export.policy_file import load_policy

        self.policy = load_policy(path, fmt, tracking_uri)
        meta = self.policy.meta
        self.K = int(steps_per_decision or meta["steps_per_decision"])
        if self.K < 1:
            raise OptionError("steps_per_decision", self.K, "an integer >= 1")
        self.scale_action = bool(meta.get("scale_action", False))
        self.builder = ObservationBuilder(self.scale_action, meta["proxy_every"])
        self.proxy_batch = int(meta["proxy_batch"])
        self.lam0 = float(lam0)
        self._unlearner = None
        self._warned = False
        self.reset(0)

    def bind(self, unlearner: Any) -> None:
        """Read the proxies (and set the forget scale) of this unlearner, as the env does."""
        self._unlearner = unlearner

    # -- LambdaAgent ----------------------------------------------------------------------------
    def reset(self, seed: int) -> float:
        self.lam = self.lam0
        self.scale_a = self._scale_action_value()
        self.last_obs: np.ndarray | None = None
        return self.lam

    def act(self, stats: StepStats | None) -> float:
        if stats is None:
            pr, pf = self._proxies()
            self.last_obs = self.builder.reset(pr, pf, self.lam0, self.scale_a)
            self._decide(self.last_obs)
        elif stats.step % self.K == 0:
            proxies = self._proxies() if self.builder.due(stats.step) else None
            self.last_obs = self.builder.observe(stats, proxies, self.lam, self.scale_a)
            self._decide(self.last_obs)
        return self.lam

    # -- helpers ---------------------------------------------------------------------------------
    def _decide(self, obs: np.ndarray) -> None:
        a = np.asarray(self.policy(obs), dtype=np.float32).reshape(-1)
        prev = np.array([self.lam, self.scale_a][: len(a)], dtype=np.float32)
        bad = ~np.isfinite(a)
        if bad.any():
            log.warning(
                "policy returned a non-finite action %s; keeping %s", a.tolist(), prev.tolist()
            )
            a = np.where(bad, prev, a)
        low = np.asarray(self.policy.meta["action"]["low"], dtype=np.float32)
        high = np.asarray(self.policy.meta["action"]["high"], dtype=np.float32)
        a = np.clip(a, low, high)
        lam, scale = action_to_controls(a)
        self.lam = lam
        if scale is not None:
            self.scale_a = float(a[1])
            method = getattr(self._unlearner, "method", None)
            if method is not None and hasattr(method, "scale"):
                method.scale = scale

    def _proxies(self) -> tuple[float, float]:
        if self._unlearner is not None:
            return self._unlearner.proxies(self.proxy_batch)
        if not self._warned:
            log.warning(
                "policy agent is not bound to an unlearner (agent.bind(unlearner)): its proxy "
                "features read as 0, so its λ can differ from the training env's"
            )
            self._warned = True
        return float("nan"), float("nan")

    def _scale_action_value(self) -> float:
        method = getattr(self._unlearner, "method", None)
        scale = float(getattr(method, "scale", 0.0) or 0.0)
        return scale_to_action(scale) if math.isfinite(scale) else 0.0
