"""An exported RL λ policy as a :class:`LambdaAgent`: torch (or onnxruntime) alone, no Ray.

``unlearn run --set agent.name=policy --set agent.path=DIR`` (or ``models:/NAME@ALIAS``)
unlearns with a policy written by ``unlearn policy export``. The agent decides every K
steps (K = ``steps_per_decision`` from the metadata), like the env, and builds its
observation with the env's own :class:`~unlearn.observation.ObservationBuilder` from
the previous step's ``StepStats`` and the fixed-noise proxies, measured on the same
cadence and on as many images as the env (``proxy_every`` and ``proxy_batch`` from the
metadata).

A policy trained with ``env.residual`` moves λ around that base schedule, as the env did
(``residual`` in the metadata; progress is the step over the training episode's T·K steps).
A policy trained with ``env.forget_probe`` also measures the sample-based forget probe (as
many samples, with the proxies); one trained with ``env.stop_action`` ends the run when its
stop entry says so (:meth:`wants_stop`, asked by the unlearner before each step), and the
run reports the steps it used.

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
from unlearn.observation import ObservationBuilder, residual_lam, scale_to_action, split_action
from unlearn.types import StepStats

log = logging.getLogger(__name__)


class PolicyAgent(LambdaAgent):
    """λ from an exported RL policy, one decision every K optimiser steps.

    Args:
        path: exported policy directory or ``models:/NAME@ALIAS`` (``agent.path``).
        lam0: λ reported as "previous λ" in the first observation (``method.lam``, as the env).
        fmt: ``auto`` (the metadata's), ``torchscript`` or ``onnx``.
        tracking_uri: MLflow tracking URI for ``models:/`` paths (default: the run's own store,
            as ``unlearn policy register`` uses it; without a run, ``MLFLOW_TRACKING_URI``).
        steps_per_decision: override K (default: the metadata's, i.e. the training env's).
    """

    name = "policy"
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "format": Opt(
            "auto", "policy file format", kind=str, choices=("auto", "torchscript", "onnx")
        ),
        "tracking_uri": Opt(
            "", "MLflow URI for models:/ paths (default: the run's store)", kind=str
        ),
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
        self.stop_action = bool(meta.get("stop_action", False))
        self.probe_n = int(meta.get("forget_probe", 0) or 0)
        self.builder = ObservationBuilder(
            self.scale_action, meta["proxy_every"], probe=self.probe_n > 0
        )
        self.proxy_batch = int(meta["proxy_batch"])
        self.residual = dict(meta.get("residual") or {})
        # the training episode's length in steps: the residual schedule's progress runs over it
        self.budget = self.K * int(meta.get("decisions") or 0)
        if self.residual and self.budget < 1:
            raise ConfigError(
                "policy: a residual λ policy needs the training env's decisions in its metadata"
            )
        self.lam0 = self.residual["start"] if self.residual else float(lam0)
        self._unlearner = None
        self._warned = False
        self.reset(0)

    def bind(self, unlearner: Any) -> None:
        """Read the proxies (and set the forget scale) of this unlearner, as the env does."""
        self._unlearner = unlearner

    # -- LambdaAgent ----------------------------------------------------------------------------
    def reset(self, seed: int) -> float:
        self.lam = self.lam0
        self.lam_a = 0.5 if self.residual else self.lam0  # the λ entry of the last action
        self.scale_a = self._scale_action_value()
        self.last_obs: np.ndarray | None = None
        self.stopped = False
        self._decided_at: int | None = None  # the step whose decision is made (-1: reset)
        return self.lam

    def act(self, stats: StepStats | None) -> float:
        self._observe_and_decide(stats)
        return self.lam

    def wants_stop(self, stats: StepStats | None) -> bool:
        """The stop entry of this step's decision (False for a policy without one)."""
        if not self.stop_action:
            return False
        self._observe_and_decide(stats)
        return self.stopped

    # -- helpers ---------------------------------------------------------------------------------
    def _observe_and_decide(self, stats: StepStats | None) -> None:
        """Decide once per decision boundary (``wants_stop`` and ``act`` share it)."""
        step = -1 if stats is None else stats.step
        if step == self._decided_at or (stats is not None and stats.step % self.K != 0):
            return
        self._decided_at = step
        if stats is None:
            pr, pf = self._proxies()
            probe0 = self._probe() if self.probe_n else None
            self.last_obs = self.builder.reset(pr, pf, self.lam0, self.scale_a, probe0)
        else:
            due = self.builder.due(stats.step)
            proxies = self._proxies() if due else None
            probe = self._probe() if due and self.probe_n else None
            self.last_obs = self.builder.observe(stats, proxies, self.lam, self.scale_a, probe)
        self._decide(self.last_obs, max(step, 0))

    def _decide(self, obs: np.ndarray, step: int) -> None:
        a = np.asarray(self.policy(obs), dtype=np.float32).reshape(-1)
        prev = np.array(
            [self.lam_a, *([self.scale_a] if self.scale_action else []), 0.0][: len(a)],
            dtype=np.float32,
        )
        bad = ~np.isfinite(a)
        if bad.any():
            log.warning(
                "policy returned a non-finite action %s; keeping %s", a.tolist(), prev.tolist()
            )
            a = np.where(bad, prev, a)
        low = np.asarray(self.policy.meta["action"]["low"], dtype=np.float32)
        high = np.asarray(self.policy.meta["action"]["high"], dtype=np.float32)
        a = np.clip(a, low, high)
        ctl = split_action(a, self.scale_action, self.stop_action)
        progress = step / self.budget if self.residual else 0.0
        self.lam_a, scale, self.stopped = ctl.lam, ctl.scale, ctl.stop
        self.lam = residual_lam(ctl.lam, progress, self.residual)
        if scale is not None:
            self.scale_a = ctl.scale_action
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

    def _probe(self) -> float:
        if self._unlearner is None or not hasattr(self._unlearner, "forget_probe"):
            return float("nan")
        return self._unlearner.forget_probe(self.probe_n)

    def _scale_action_value(self) -> float:
        method = getattr(self._unlearner, "method", None)
        scale = float(getattr(method, "scale", 0.0) or 0.0)
        return scale_to_action(scale) if math.isfinite(scale) else 0.0
