"""The unlearning process as a Gymnasium environment: the action is λ."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from unlearn.config import AgentConfig, Config, ConfigError, check_residual, from_mapping
from unlearn.envs.instances import Instance, InstanceBank
from unlearn.families import family_of, instance_forget
from unlearn.observation import (
    ObservationBuilder,
    action_names,
    residual_lam,
    scale_to_action,
    split_action,
)
from unlearn.unlearner import DivergenceError

log = logging.getLogger(__name__)

#: ``info`` keys of the last step when the episode ends with the sample-based evaluation
FINAL_KEYS = ("eval/forget_rate", "eval/fid", "base/forget_rate", "base/fid")
#: and with ``env.attack_weight`` > 0, the rate after the attack ``env.attack`` names
ATTACK_KEYS = {
    "relearn": "audit/attacked_forget_rate",
    "adversarial": "audit/adversarial_concept_rate",
}
ATTACK_KEY = ATTACK_KEYS["relearn"]


def as_config(config: Config | Mapping | None) -> Config:
    """A Config from a Config, a plain dict of one, or RLlib's ``{"config": {...}}`` env_config;
    None (``gymnasium.make(id)`` without arguments) is the embedded demo config, whose base
    model and classifier ship with the package."""
    if config is None:
        from unlearn.config import default_config_path, load_config

        return load_config(default_config_path())
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        d = dict(config)
        if "config" in d and isinstance(d["config"], (Mapping, Config)):
            return as_config(d["config"])
        return from_mapping(Config, d)
    raise ConfigError(f"env: expected a Config or a mapping, got {type(config).__name__}")


def env_config(cfg: Config) -> Config:
    """The config the env's unlearner runs with: budget T·K, end-of-episode sample count.

    ``unlearn.eval_every`` is switched off because the env measures the proxies itself,
    once per decision; the first train instance becomes the task's forget spec (its class,
    or on t2i its digit concept: the family's ``instance_forget``);
    the configured agent is replaced by a static one (the env's action is λ, and a learning
    agent's regulariser must not enter the loss).
    """
    e = cfg.env
    return dataclasses.replace(
        cfg,
        agent=AgentConfig(),
        unlearn=dataclasses.replace(
            cfg.unlearn, steps=e.decisions * e.steps_per_decision, eval_every=0
        ),
        eval=dataclasses.replace(cfg.eval, num_samples=e.final_eval_samples),
        forget=instance_forget(cfg, e.train_instances[0]) if e.train_instances else cfg.forget,
    )


class UnlearningEnv(gym.Env):
    """Choose λ for an unlearning run, one decision every K optimiser steps.

    One episode is one unlearning run of the configured method on the pretrained model:
    ``env.decisions`` (T) decisions, each applying the chosen λ for
    ``env.steps_per_decision`` (K) optimiser steps of the same :class:`Unlearner` that
    ``unlearn run`` uses (built once; episodes restore its weights from memory).

    ## Action Space

    ``Box(0, 1, (1,), float32)``: λ for the next K steps. With ``env.scale_action`` a second
    entry maps linearly onto the method's forget scale s in ``SCALE_RANGE`` = [0, 10] (SISS's
    ``(1 + s)`` factor). With ``env.stop_action`` a last entry above 0.8
    (``STOP_THRESHOLD``) stops the run now, before the decision's steps: the episode ends with the final evaluation of the weights
    so far, ``info["steps_used"]`` says how many optimiser steps it took and
    ``info["stopped"]`` that it stopped early (``env.step_cost`` per step used makes stopping
    pay beyond the quality it keeps). Out-of-range values are clipped; a non-finite entry is
    replaced by the previous action's value and logged as a warning.

    ## Observation Space

    A flat float32 ``Box`` of 12 entries (+1 with ``scale_action``, +2 with
    ``env.forget_probe``), clipped to declared bounds; layout in :mod:`unlearn.observation`
    (progress, previous λ, log-ratios of the fixed-noise retain / forget proxy losses to their
    values at reset and their changes between the last two measurements, log10 gradient norms
    of the two terms, their cosine, the age of the proxies, the log proxies at reset (the
    instance); the previous scale action; the sample-based forget probe of
    ``env.forget_probe`` samples relative to its value at reset, measured with the proxies,
    and its value at reset (the instance)). The proxies cost one forward pass of 2 × ``env.proxy_batch``
    images (default 16 each; on the tiny model about a third of an optimiser step); they are
    measured after the first decision at least ``env.proxy_every`` optimiser steps (default
    20) after the last measurement, and after the last decision. With K >=
    ``env.proxy_every`` that is every decision.

    ## Rewards

    ``env.reward = "tradeoff"`` (default), per decision: forgetting gained minus β·quality
    lost, ``Δ log(proxy_forget) − β·Δ log(proxy_retain)`` (relative to the values at reset,
    so the per-decision rewards sum to the whole run's change; a decision that does not
    measure the proxies gets 0, the next measurement gets the whole change since).
    ``"forget"``: only the first term. ``"final"``: no per-decision reward. With
    ``env.final_eval`` the last decision adds the sample-based metrics on
    ``env.final_eval_samples`` samples, against the base model (evaluated once per
    instance): ``(forget rate drop) − β·(relative FID increase)`` (``"forget"``: the drop
    only). With ``env.attack_weight`` w > 0 the final reward also subtracts w·(attacked
    forget rate): the forget rate after a relearning attack on ``audit.relearn_forget_samples``
    forget samples for ``audit.attacked_steps`` steps (:mod:`unlearn.audit.attacked`), so a
    policy is rewarded for forgetting that survives the attack (``info`` gets
    ``audit/attacked_forget_rate``); with ``env.attack=adversarial`` (pipelines) the
    attacked rate is instead the post-attack concept rate of the adversarial-prompt attack
    (``audit/adversarial_concept_rate``). Divergence gives ``−env.divergence_penalty``.

    ## Starting State

    The pretrained weights (restored from an in-memory copy, never from disk), fresh
    optimiser state, λ0 = ``method.lam``. The instance — the class to forget and the seed
    of the run's batches — comes from ``reset(options=...)``: ``{"instance": c}`` (any
    class of the data, optionally with ``"seed": s``), ``{"split": "test"}`` (a random
    held-out instance from ``env.test_instances``); by default a random one of
    ``env.train_instances``, drawn with the env's seeded generator.

    ## Episode End

    Terminated after T decisions (the budget is part of the task and of the observation),
    or when a stop action ends it, or when the loss, a gradient or a proxy becomes non-finite (divergence: penalty,
    ``info["diverged"] = True``; ``reset()`` makes the env usable again). No truncation.

    ## Arguments

    ``config``: a :class:`unlearn.config.Config` (the same one ``unlearn run`` takes), or its
    plain ``to_dict()`` form, or ``{"config": {...}}`` (RLlib's ``env_config``). Relevant
    sections: ``env`` (T, K, β, reward, final_eval, final_eval_samples, scale_action,
    divergence_penalty, instances), ``method``, ``unlearn``, ``eval``, ``model``, ``data``.
    ``render_mode``: unsupported (None).

    Example::

        import gymnasium, unlearn.envs
        env = gymnasium.make("unlearn/Unlearning-v0", config=load_config("configs/tiny.yaml"))
        env = gymnasium.make("unlearn/Unlearning-v0")  # the embedded demo config and model
    """

    metadata = {"render_modes": []}  # noqa: RUF012 (Gymnasium's class attribute)

    def __init__(self, config: Config | Mapping | None = None, render_mode: str | None = None):
        from unlearn.task import make_unlearner

        if render_mode is not None:
            raise ConfigError(f"env: render_mode {render_mode!r} is not supported")
        cfg = as_config(config)
        if cfg.env.attack_weight > 0 and not cfg.env.final_eval:
            raise ConfigError(
                f"env.attack_weight: {cfg.env.attack_weight} needs env.final_eval=true (the "
                "attack runs with the end-of-episode evaluation); set env.attack_weight=0"
            )
        attacks = family_of(cfg).attacks
        if cfg.env.attack == "adversarial" and "adversarial" not in attacks:
            raise ConfigError(
                f"env.attack: 'adversarial' is not allowed for model.kind={cfg.model.kind} (it "
                "attacks a text encoder); expected relearn"
            )
        self._attack_key = ATTACK_KEYS[cfg.env.attack]
        self.cfg = env_config(cfg)
        self.T = self.cfg.env.decisions
        self.K = self.cfg.env.steps_per_decision
        self.setup = make_unlearner(self.cfg)
        self.unlearner = self.setup.unlearner
        self.bank = InstanceBank(self.cfg, self.unlearner, self.setup.task)
        self.scale_action = self.cfg.env.scale_action
        if self.scale_action and not hasattr(self.unlearner.method, "scale"):
            raise ConfigError(
                f"env.scale_action: method {self.cfg.method.name!r} has no forget scale; "
                "use a method with one (siss) or set env.scale_action=false"
            )
        self.stop_action = self.cfg.env.stop_action
        self.probe_n = int(self.cfg.env.forget_probe)
        if self.probe_n and self.unlearner.classifier is None:
            raise ConfigError(
                f"env.forget_probe: {self.probe_n} needs the model's classifier (a DDPM, VP-SDE "
                "or VAE with pretrained classifier); set env.forget_probe=0"
            )
        self.builder = ObservationBuilder(
            self.scale_action, self.cfg.env.proxy_every, probe=self.probe_n > 0
        )
        lay = self.builder.layout
        self.observation_space = gym.spaces.Box(lay.low, lay.high, dtype=np.float32)
        dim = len(action_names(self.scale_action, self.stop_action))
        self.action_space = gym.spaces.Box(0.0, 1.0, (dim,), dtype=np.float32)
        self.residual = check_residual(self.cfg.env.residual)
        # the λ of the first observation: method.lam, or the residual schedule's start
        self.lam0 = self.residual["start"] if self.residual else float(self.cfg.method.lam)
        self.scale0 = float(getattr(self.unlearner.method, "scale", 0.0) or 0.0)
        self.instance: Instance | None = None
        self._done = True

    # -- gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.instance = self._choose(options or {})
        self.bank.activate(self.instance.forget_class)
        self.unlearner.reset(self.instance.seed)
        self._set_scale(self.scale0)
        self.base = self.bank.base_eval(self.instance.forget_class) if self._final() else None
        pr, pf = self.unlearner.proxies(self.cfg.env.proxy_batch)
        c = self.instance.forget_class
        probe0 = self.bank.base_probe(c, self.probe_n) if self.probe_n else None
        self.decision = 0
        self.prev_action = self.initial_action()
        self.lambdas: list[float] = []
        self.episode_return = 0.0
        self._done = False
        scale_a = split_action(self.prev_action, self.scale_action, self.stop_action).scale_action
        self._obs = self.builder.reset(pr, pf, self.lam0, scale_a, probe0)
        info = {
            "instance": self.instance.forget_class,
            "seed": self.instance.seed,
            "split": self.instance.split,
            "proxy_retain": pr,
            "proxy_forget": pf,
        }
        return self._obs.copy(), info

    def step(self, action):
        if self._done:
            raise RuntimeError("UnlearningEnv.step() after the episode ended; call reset()")
        act, fixed = self._sanitize(action)
        ctl = split_action(act, self.scale_action, self.stop_action)
        lam = residual_lam(ctl.lam, self.decision / self.T, self.residual)
        scale = ctl.scale
        if scale is not None:
            self._set_scale(scale)
        prev_rel = self.builder.rel
        nan = math.nan  # one schema on every step: NaN where a value does not exist
        info: dict[str, Any] = {
            "instance": self.instance.forget_class,
            "lambda": lam,
            "action_fixed": fixed,
            "decision": self.decision + 1,
            "diverged": False,
            "message": "",
            "retain_loss": nan,
            "forget_loss": nan,
            "proxy_retain": nan,
            "proxy_forget": nan,
            "proxies_measured": False,
            "stopped": False,
            "steps_used": self.decision * self.K,
            # the quality guard (guard.retain_multiple, at unlearn.eval_every) has flagged it
            "collapsed": self.unlearner.collapsed_at is not None,
        }
        if scale is not None:
            info["scale"] = scale
        if ctl.stop:
            return self._stop(info)
        terminated = self.decision + 1 >= self.T
        try:
            stats = self.unlearner.step(self.K, lam=lam)
            proxies, probe = None, None
            if terminated or self.builder.due(stats[-1].step):  # the last one: for the reward
                proxies, probe = self._measure()
        except DivergenceError as e:
            log.warning("episode diverged at decision %d: %s", self.decision + 1, e)
            self._done = True
            reward = -float(self.cfg.env.divergence_penalty)
            self.episode_return += reward
            info.update(
                diverged=True,
                message=str(e),
                episode_return=self.episode_return,
                lambdas=list(self.lambdas),
            )
            if self._final():
                info.update(dict.fromkeys(FINAL_KEYS, nan))
                if self.cfg.env.attack_weight > 0:
                    info[self._attack_key] = nan
            return self._obs.copy(), reward, True, False, info
        self.decision += 1
        self.lambdas.append(lam)
        self.prev_action = act
        last = stats[-1]
        self._obs = self.builder.observe(last, proxies, lam, ctl.scale_action, probe)
        reward = self._proxy_reward(prev_rel) - self.cfg.env.step_cost * self.K
        pr, pf = self.builder.proxies
        info.update(
            diverged=False,
            proxy_retain=pr,
            proxy_forget=pf,
            proxies_measured=proxies is not None,
            retain_loss=last.retain_loss,
            forget_loss=last.forget_loss,
            decision=self.decision,
            steps_used=self.decision * self.K,
            collapsed=self.unlearner.collapsed_at is not None,
        )
        if terminated:
            self._done = True
            if self._final():
                reward += self._final_reward(info)
            info["lambdas"] = list(self.lambdas)
        self.episode_return += reward
        if terminated:
            info["episode_return"] = self.episode_return
        return self._obs.copy(), float(reward), terminated, False, info

    # -- helpers ----------------------------------------------------------------------------
    def initial_action(self) -> np.ndarray:
        """The action that keeps the starting controls: λ0 (with ``env.residual``: 0.5, the
        base schedule), the configured forget scale, and "do not stop"."""
        lam_a = 0.5 if self.residual else self.lam0
        a = [lam_a, *([scale_to_action(self.scale0)] if self.scale_action else [])]
        return np.array([*a, *([0.0] if self.stop_action else [])], dtype=np.float32)

    def _measure(self) -> tuple[tuple[float, float], float | None]:
        """The proxies (and the forget probe) of the current weights; non-finite: divergence."""
        proxies = self.unlearner.proxies(self.cfg.env.proxy_batch)
        if not all(math.isfinite(p) for p in proxies):
            raise DivergenceError("non-finite proxy loss (retain={}, forget={})".format(*proxies))
        probe = self.unlearner.forget_probe(self.probe_n) if self.probe_n else None
        return proxies, probe

    def _proxy_reward(self, prev_rel: tuple[float, float]) -> float:
        """The per-decision reward from the change of the relative proxies since ``prev_rel``."""
        r, f = self.builder.rel
        dr, df = r - prev_rel[0], f - prev_rel[1]
        kind, beta = self.cfg.env.reward, self.cfg.env.beta
        return {"tradeoff": df - beta * dr, "forget": df, "final": 0.0}[kind]

    def _stop(self, info: dict[str, Any]):
        """A stop action: end the episode now, with the weights after ``self.decision``
        decisions (the proxies measured once more, so the rewards sum to the run's change)."""
        prev_rel = self.builder.rel
        proxies, probe = None, None
        if self.unlearner.last is not None:  # before any step the reset's proxies still hold
            try:
                proxies, probe = self._measure()
            except DivergenceError as e:  # the weights were finite a step ago
                log.warning("episode diverged at its stop: %s", e)
        self._done = True
        reward = 0.0
        if proxies is not None:
            prev = split_action(self.prev_action, self.scale_action, self.stop_action)
            lam = self.lambdas[-1] if self.lambdas else self.lam0
            self._obs = self.builder.observe(
                self.unlearner.last, proxies, lam, prev.scale_action, probe
            )
            reward = self._proxy_reward(prev_rel)
        pr, pf = self.builder.proxies
        info.update(stopped=True, proxy_retain=pr, proxy_forget=pf, lambdas=list(self.lambdas))
        info["proxies_measured"] = proxies is not None
        if self._final():
            reward += self._final_reward(info)
        self.episode_return += reward
        info["episode_return"] = self.episode_return
        return self._obs.copy(), float(reward), True, False, info

    def _final(self) -> bool:
        return bool(self.cfg.env.final_eval)

    def _final_reward(self, info: dict[str, Any]) -> float:
        ev, _ = self.unlearner.evaluate(self.base.forget_rate)
        drop = self.base.forget_rate - ev.forget_rate
        fid_rel = (ev.fid - self.base.fid) / max(abs(self.base.fid), 1e-6)
        values = (ev.forget_rate, ev.fid, self.base.forget_rate, self.base.fid)
        info.update(zip(FINAL_KEYS, values, strict=True))
        if not (math.isfinite(drop) and math.isfinite(fid_rel)):
            if self.cfg.env.attack_weight > 0:
                info[self._attack_key] = math.nan
            return -float(self.cfg.env.divergence_penalty)
        reward = drop if self.cfg.env.reward == "forget" else drop - self.cfg.env.beta * fid_rel
        w = self.cfg.env.attack_weight
        if w > 0:
            from unlearn.audit import attacked_rates

            if self.cfg.env.attack == "adversarial":
                rates = attacked_rates(
                    self.unlearner, benign=False, relearn_attack=False, adversarial=True
                )
                attacked = rates.adversarial_concept_rate
            else:
                attacked = attacked_rates(self.unlearner, benign=False).attacked_forget_rate
            info[self._attack_key] = attacked
            reward -= w * attacked
        return reward

    def _choose(self, options: dict[str, Any]) -> Instance:
        unknown = sorted(set(options) - {"instance", "split", "seed"})
        if unknown:
            raise ValueError(
                f"reset options: unknown key {unknown[0]!r}; allowed: instance, split, seed"
            )
        split = str(options.get("split", "train"))
        if "instance" in options:
            c = self.bank.check(options["instance"])
            pools = {"train": self.cfg.env.train_instances, "test": self.cfg.env.test_instances}
            split = next((k for k, v in pools.items() if c in v), "custom")
        else:
            pool = self.bank.pool(split)
            c = pool[int(self.np_random.integers(len(pool)))]
        seed = options.get("seed")
        if seed is None:
            seed = int(self.np_random.integers(0, 2**31 - 1))
        return Instance(forget_class=c, seed=int(seed), split=split)

    def _sanitize(self, action) -> tuple[np.ndarray, bool]:
        a = np.asarray(action, dtype=np.float32).reshape(-1)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action shape {a.shape}: expected {self.action_space.shape}")
        fixed = False
        bad = ~np.isfinite(a)
        if bad.any():
            log.warning(
                "non-finite action %s: using the previous action's value %s",
                a.tolist(),
                self.prev_action[bad].tolist(),
            )
            a = np.where(bad, self.prev_action, a)
            fixed = True
        clipped = np.clip(a, self.action_space.low, self.action_space.high).astype(np.float32)
        if not np.array_equal(clipped, a):
            log.debug("action %s clipped to %s", a.tolist(), clipped.tolist())
            fixed = True
        return clipped, fixed

    def _set_scale(self, scale: float) -> None:
        if self.scale_action:
            self.unlearner.method.scale = float(scale)
