"""The observation and action protocol of the unlearning env, shared by the env, the
exported-policy agent and the policy export.

One definition, three users: :class:`~unlearn.envs.UnlearningEnv` builds its observations
here and maps its actions to controls (and back) here, :class:`~unlearn.agents.policy.PolicyAgent`
builds the same vector from the same ``StepStats`` and proxies when an exported policy drives
``unlearn run``, and :mod:`unlearn.export` writes and checks the layout in policy metadata.
It sits low in the layers (next to ``data`` and ``models``) and imports neither gymnasium nor
ray, so the agent loads with torch (or onnxruntime) alone.

The fixed-noise proxies (``env.proxy_batch`` held-out images per side) cost one forward
pass each time they are measured. They are measured at reset and then after the first
decision at least ``proxy_every`` optimiser steps after the last measurement
(``env.proxy_every``, default 20; 1 = every decision); in between, the proxy fields keep
their last values and ``proxy_age`` says how old they are. Both users apply the same rule
(:meth:`ObservationBuilder.due`).

Layout (float32, clipped to ``[LOW, HIGH]``; ``OBS_VERSION`` names it in policy metadata):

====  ===============  ================================================================  ============
idx   name             value                                                             bounds
====  ===============  ================================================================  ============
0     progress         optimiser steps done / budget (= decisions done / T in the env)   [0, 1]
1     prev_lambda      λ applied during the previous decision (λ0 = method.lam at reset)  [0, 1]
2     retain_rel       log(proxy_retain / proxy_retain at reset), last measurement        [-5, 5]
3     forget_rel       log(proxy_forget / proxy_forget at reset), last measurement        [-5, 5]
4     retain_delta     change of retain_rel between the last two measurements             [-5, 5]
5     forget_delta     change of forget_rel between the last two measurements             [-5, 5]
6     log_retain_grad  log10 of the retain-term gradient norm (last measured step)        [-8, 4]
7     log_forget_grad  log10 of the forget-term gradient norm                             [-8, 4]
8     grad_cosine      cosine between the two gradients                                   [-1, 1]
9     proxy_age        optimiser steps since the proxies were measured / budget           [0, 1]
10    log_retain0      log proxy_retain at reset (instance; constant during the run)      [-10, 5]
11    log_forget0      log proxy_forget at reset (instance; constant during the run)      [-10, 5]
12    prev_scale       previous forget-scale action in [0, 1] (only with scale_action)    [0, 1]
next  forget_probe     sample-based forget rate / its value at reset (env.forget_probe)   [0, 2]
next  forget_probe0    sample-based forget rate at reset (instance; env.forget_probe)     [0, 1]
====  ===============  ================================================================  ============

Every other field is relative to the run's own start, so without ``log_retain0``,
``log_forget0`` and ``forget_probe0`` the first observation is the same for every instance and
a policy cannot set λ per instance before it has seen the run react. These three describe
the instance (how hard its forget class is to denoise, how much of it the base model
generates); ``unlearn-obs-v2`` policies (without them) are refused with a message.

``forget_probe`` (only with ``env.forget_probe`` = n > 0 samples) is the forget classes' mean
classifier probability over n fixed-noise samples of the current weights, measured together
with the proxies, relative to the same number at reset: 1 = nothing forgotten yet, 0 = the
samples hold no trace of the forget classes. It is the signal the proxies lack (a lower
denoising loss on the forget images does not say whether the class is still generated) and
the one a stop decision needs. Its cost is n samples of ``eval.sampler_steps`` forward passes
at each proxy measurement.

Actions: ``[λ, (scale), (stop)]``, each in [0, 1]: λ, the forget scale with
``env.scale_action`` (:data:`SCALE_RANGE`), and with ``env.stop_action`` a stop entry whose
value above :data:`STOP_THRESHOLD` (0.8) ends the run before the decision's steps
(:func:`split_action`). RLlib maps the network's raw output a in [-1, 1] to the entry
``(a + 1) / 2``, so a stop needs a > 0.6; ``unlearn rl train`` starts the stop mean at
a = :data:`STOP_INIT_MEAN` (−1.5): an untrained policy continues (its deterministic stop
never fires; its sampled one in 5.8% of decisions on observations drawn uniformly inside
the bounds, against 36% with RLlib's default start; ``tests/test_rl.py``), and learns to
stop only where stopping paid.

With ``env.residual: {start, end, width}`` the λ entry is a *residual* around a base
schedule (λ linear from start to end over the episode): λ = clip(base(progress) + width ·
(2·entry − 1), 0, 1) (:func:`residual_lam`), so an untrained policy (entry 0.5) runs the
base schedule and training only has to find where moving away from it pays. ``prev_lambda``
is the λ applied, the exported policy's metadata carries the settings and the policy agent
applies the same map.

Unknown values (before the first step, or a statistic that was not measured) read as 0.
Non-finite inputs never reach the policy: they read as 0 and the env ends the episode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from unlearn.types import StepStats

OBS_VERSION = "unlearn-obs-v3"

_BASE = (
    ("progress", 0.0, 1.0, "optimiser steps done / budget"),
    ("prev_lambda", 0.0, 1.0, "λ of the previous decision"),
    ("retain_rel", -5.0, 5.0, "log(proxy_retain / proxy_retain at reset), last measured"),
    ("forget_rel", -5.0, 5.0, "log(proxy_forget / proxy_forget at reset), last measured"),
    ("retain_delta", -5.0, 5.0, "change of retain_rel between the last two measurements"),
    ("forget_delta", -5.0, 5.0, "change of forget_rel between the last two measurements"),
    ("log_retain_grad", -8.0, 4.0, "log10 retain gradient norm"),
    ("log_forget_grad", -8.0, 4.0, "log10 forget gradient norm"),
    ("grad_cosine", -1.0, 1.0, "cosine(retain gradient, forget gradient)"),
    ("proxy_age", 0.0, 1.0, "optimiser steps since the proxies were measured / budget"),
    ("log_retain0", -10.0, 5.0, "log proxy_retain at reset (the instance; constant in a run)"),
    ("log_forget0", -10.0, 5.0, "log proxy_forget at reset (the instance; constant in a run)"),
)
_SCALE = ("prev_scale", 0.0, 1.0, "previous forget-scale action in [0, 1]")
_PROBE = (
    ("forget_probe", 0.0, 2.0, "sample-based forget rate / its value at reset"),
    ("forget_probe0", 0.0, 1.0, "sample-based forget rate at reset (the instance; constant)"),
)
#: a stop entry above this ends the run (the policy's deterministic action is its mean).
#: High on purpose: an untrained Gaussian policy's entry is 0.5 + 0.5·N(0, 1) (clipped), so
#: a threshold of 0.5 stopped half of its decisions; ``unlearn rl train`` also starts the
#: stop entry's mean low (:data:`STOP_INIT_MEAN`), so continuing is the untrained default.
STOP_THRESHOLD = 0.8
#: the raw (pre-unsquash, in [-1, 1]) mean of the stop entry of a freshly built policy
STOP_INIT_MEAN = -1.5

# The second action dimension (env.scale_action) maps [0, 1] linearly onto this forget
# scale s of SISS's (1 + s) factor; 0 keeps the plain loss form.
SCALE_RANGE = (0.0, 10.0)


@dataclass(frozen=True)
class ObsLayout:
    """Field names and bounds of the observation vector."""

    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    docs: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict:
        return {
            "version": OBS_VERSION,
            "names": list(self.names),
            "low": [float(v) for v in self.low],
            "high": [float(v) for v in self.high],
            "docs": list(self.docs),
            "normalisation": "see unlearn.observation: log-ratios to the reset proxies, "
            "log10 gradient norms, clipped to [low, high]; unknown values read as 0",
            "proxies": "measured at reset, then at the first decision at least proxy_every "
            "optimiser steps after the last measurement",
        }


def layout(scale_action: bool = False, probe: bool = False) -> ObsLayout:
    """The observation layout: the base fields, then prev_scale and forget_probe if enabled."""
    rows = _BASE + ((_SCALE,) if scale_action else ()) + (_PROBE if probe else ())
    return ObsLayout(
        names=tuple(r[0] for r in rows),
        low=np.array([r[1] for r in rows], dtype=np.float32),
        high=np.array([r[2] for r in rows], dtype=np.float32),
        docs=tuple(r[3] for r in rows),
    )


def action_names(scale_action: bool = False, stop_action: bool = False) -> list[str]:
    """The entries of the env action, in order."""
    return ["lambda", *(["scale"] if scale_action else []), *(["stop"] if stop_action else [])]


@dataclass(frozen=True)
class Controls:
    """What one action sets: λ, the forget scale (None: unchanged), whether to stop now."""

    lam: float
    scale: float | None = None
    scale_action: float = 0.0
    stop: bool = False


def split_action(
    action: np.ndarray, scale_action: bool = False, stop_action: bool = False
) -> Controls:
    """An env action (already finite and inside [0, 1]) → its :class:`Controls`."""
    a = [float(v) for v in np.asarray(action, dtype=np.float32).reshape(-1)]
    want = len(action_names(scale_action, stop_action))
    if len(a) != want:
        raise ValueError(f"action has {len(a)} entries; expected {want}")
    scale = scale_a = None
    if scale_action:
        lo, hi = SCALE_RANGE
        scale_a = a[1]
        scale = lo + scale_a * (hi - lo)
    stop = bool(stop_action and a[-1] > STOP_THRESHOLD)
    return Controls(a[0], scale, 0.0 if scale_a is None else scale_a, stop)


def residual_lam(entry: float, progress: float, residual: dict[str, float] | None) -> float:
    """λ from the action's λ entry in [0, 1]: the entry itself, or with ``env.residual``
    the base schedule at ``progress`` (steps done / T·K, clipped to [0, 1]) moved by
    ``width · (2·entry − 1)`` and clipped to [0, 1]. A policy whose λ entry is 0.5 (a fresh
    policy's mean) follows the base schedule exactly."""
    if not residual:
        return float(entry)
    t = min(1.0, max(0.0, float(progress)))
    base = residual["start"] + (residual["end"] - residual["start"]) * t
    return float(min(1.0, max(0.0, base + residual["width"] * (2.0 * float(entry) - 1.0))))


def action_to_controls(action: np.ndarray) -> tuple[float, float | None]:
    """A λ or (λ, scale) action (already finite and inside [0, 1]) → (λ, forget scale or None)."""
    c = split_action(action, scale_action=len(action) >= 2)
    return c.lam, c.scale


def scale_to_action(scale: float) -> float:
    """The inverse of :func:`action_to_controls` for the forget scale: s -> action in [0, 1]."""
    lo, hi = SCALE_RANGE
    return float(min(1.0, max(0.0, (scale - lo) / (hi - lo))))


def _finite(x: float | None, default: float = 0.0) -> float:
    return float(x) if x is not None and math.isfinite(x) else default


def _log_ratio(p: float, p0: float) -> float:
    if not (math.isfinite(p) and math.isfinite(p0)) or p <= 0 or p0 <= 0:
        return 0.0
    return math.log(p / p0)


def _log10(x: float) -> float:
    return math.log10(max(x, 1e-12)) if math.isfinite(x) else 0.0


class ObservationBuilder:
    """Turns (last StepStats, proxies when measured, previous action) into the observation.

    ``reset`` takes the proxies of the starting weights. After each decision, ask
    :meth:`due` whether the proxies are to be measured now, and pass them to :meth:`observe`
    (or ``None``: the proxy fields keep their last values and ``proxy_age`` grows).
    """

    def __init__(self, scale_action: bool = False, proxy_every: int = 1, probe: bool = False):
        if int(proxy_every) < 1:
            raise ValueError(f"proxy_every: {proxy_every!r}; expected an integer >= 1")
        self.layout = layout(scale_action, probe)
        self.scale_action = scale_action
        self.probe = probe
        self._probe0 = math.nan
        self._probe_rel = 1.0
        self.proxy_every = int(proxy_every)
        self._p0 = (float("nan"), float("nan"))
        self.proxies = self._p0  # the last measured (retain, forget) proxies
        self._rel = (0.0, 0.0)
        self._delta = (0.0, 0.0)
        self._measured_at = 0

    def reset(
        self,
        proxy_retain: float,
        proxy_forget: float,
        lam0: float,
        scale0: float = 0.0,
        probe0: float | None = None,
    ) -> np.ndarray:
        """The first observation; ``probe0``: the forget probe of the starting weights."""
        self._probe0 = _finite(probe0, math.nan)
        self._probe_rel = 1.0
        self._p0 = self.proxies = (proxy_retain, proxy_forget)
        self._rel = (0.0, 0.0)
        self._delta = (0.0, 0.0)
        self._measured_at = 0
        values = [0.0, lam0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, *self._instance()]
        return self._vector(values, scale0)

    def _instance(self) -> tuple[float, float]:
        """The instance fields: the log proxies of the starting weights (0 when unknown)."""
        return tuple(math.log(p) if math.isfinite(p) and p > 0 else 0.0 for p in self._p0)  # type: ignore[return-value]

    def due(self, step: int) -> bool:
        """Whether the proxies are measured after optimiser step ``step`` (a decision's end)."""
        return step - self._measured_at >= self.proxy_every

    @property
    def rel(self) -> tuple[float, float]:
        """The relative proxies (retain, forget) of the last measurement (unclipped)."""
        return self._rel

    def relative(self, proxy_retain: float, proxy_forget: float) -> tuple[float, float]:
        """log-ratios of the proxies to their values at reset (unclipped; the reward uses them)."""
        return _log_ratio(proxy_retain, self._p0[0]), _log_ratio(proxy_forget, self._p0[1])

    def observe(
        self,
        stats: StepStats,
        proxies: tuple[float, float] | None,
        lam: float,
        scale: float = 0.0,
        probe: float | None = None,
    ) -> np.ndarray:
        """The observation after a decision; ``proxies`` / ``probe`` when measured now."""
        if probe is not None:
            self._probe_rel = self.probe_relative(probe)
        if proxies is not None:
            self.proxies = proxies
            r, f = self.relative(*proxies)
            self._delta = (r - self._rel[0], f - self._rel[1])
            self._rel = (r, f)
            self._measured_at = stats.step
        age = (stats.step - self._measured_at) / stats.budget if stats.budget else 0.0
        values = [
            _finite(stats.progress),
            _finite(lam),
            *self._rel,
            *self._delta,
            _log10(stats.retain_grad_norm),
            _log10(stats.forget_grad_norm),
            _finite(stats.grad_cosine),
            _finite(age),
            *self._instance(),
        ]
        return self._vector(values, scale)

    def probe_relative(self, probe: float) -> float:
        """A forget probe relative to the one at reset (1 when either is unknown or 0)."""
        p0 = self._probe0
        if not (math.isfinite(probe) and math.isfinite(p0)) or p0 <= 0:
            return 1.0
        return probe / p0

    def _vector(self, values: list[float], scale: float) -> np.ndarray:
        if self.scale_action:
            values = [*values, _finite(scale)]
        if self.probe:
            values = [*values, _finite(self._probe_rel, 1.0), _finite(self._probe0, 0.0)]
        v = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        return np.clip(v, self.layout.low, self.layout.high).astype(np.float32)
