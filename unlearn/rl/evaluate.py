"""``unlearn rl eval``: a learned policy vs static-λ baselines on the held-out instances.

Every agent runs the same episodes (each test instance x each seed) in one env, so the
comparison is paired; the numbers are the env's end-of-episode sample metrics and returns.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unlearn.config import Config, ConfigError
from unlearn.runtime import ProgressFn, no_progress

PolicyFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Episode:
    agent: str
    instance: int | str
    seed: int
    forget_rate: float
    fid: float
    episode_return: float
    diverged: bool
    lambdas: tuple[float, ...]


@dataclass
class AgentSummary:
    """mean ± std over the episodes of one agent."""

    agent: str
    episodes: list[Episode] = field(default_factory=list)

    def stat(self, name: str) -> tuple[float, float]:
        xs = [getattr(e, name) for e in self.episodes if math.isfinite(getattr(e, name))]
        if not xs:
            return float("nan"), float("nan")
        return statistics.fmean(xs), statistics.pstdev(xs) if len(xs) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "agent": self.agent,
            "episodes": len(self.episodes),
            "diverged": sum(e.diverged for e in self.episodes),
        }
        for name in ("forget_rate", "fid", "episode_return"):
            m, s = self.stat(name)
            d[name] = {"mean": m, "std": s}
        return d


def load_policy_fn(source: str, cfg: Config) -> tuple[PolicyFn, str]:
    """An exported policy dir / ``models:/`` URI, or an RLlib checkpoint (needs ray)."""
    from unlearn.export.policy_file import METADATA, load_policy
    from unlearn.tracking import tracking_uri

    p = Path(source).expanduser()
    if source.startswith("models:/") or (p / METADATA).is_file():
        uri = tracking_uri(cfg) if source.startswith("models:/") else ""
        pol = load_policy(source, tracking_uri=uri)
        return pol, f"policy ({pol.meta['algorithm']}, {pol.format})"
    if not p.exists():
        raise ConfigError(f"rl eval: {source!r} does not exist (checkpoint or policy dir)")
    import torch

    from unlearn.export.rllib import load_checkpoint_policy

    policy, facts = load_checkpoint_policy(p)

    def fn(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return policy(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()

    return fn, f"policy ({facts['algorithm']} checkpoint)"


def run_episode(env: Any, act: PolicyFn, instance: int | str, seed: int, name: str) -> Episode:
    obs, _ = env.reset(seed=seed, options={"instance": instance, "seed": seed})
    total, info, done = 0.0, {}, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(act(obs))
        total += float(reward)
        done = terminated or truncated
    return Episode(
        agent=name,
        instance=instance,
        seed=seed,
        forget_rate=float(info.get("eval/forget_rate", float("nan"))),
        fid=float(info.get("eval/fid", float("nan"))),
        episode_return=total,
        diverged=bool(info.get("diverged", False)),
        lambdas=tuple(env.lambdas),
    )


def evaluate(
    cfg: Config,
    source: str | None,
    seeds: int = 3,
    lams: Sequence[float] = (0.0, 0.5, 1.0),
    split: str = "test",
    progress: ProgressFn = no_progress,
) -> list[AgentSummary]:
    """Run the policy (if ``source``) and static λ baselines on every ``split`` instance x seed."""
    from unlearn.envs.unlearning_env import UnlearningEnv

    cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, final_eval=True))
    instances = cfg.env.test_instances if split == "test" else cfg.env.train_instances
    if not instances:
        raise ConfigError(f"env.{split}_instances: empty; nothing to evaluate on")
    agents: dict[str, PolicyFn] = {}
    if source:
        fn, label = load_policy_fn(source, cfg)
        agents[label] = fn
    env = UnlearningEnv(cfg)
    for lam in lams:
        if not 0.0 <= lam <= 1.0:
            raise ConfigError(f"--lams: {lam} is not in [0, 1]")
        a = env.initial_action()  # the configured scale; never stop
        a[0] = lam
        agents[f"static λ={lam:g}"] = lambda obs, a=a: a
    out = {name: AgentSummary(name) for name in agents}
    total, done = len(agents) * len(instances) * seeds, 0
    for name, fn in agents.items():
        for c in instances:
            for s in range(seeds):
                out[name].episodes.append(run_episode(env, fn, c, s, name))
                done += 1
                progress("rl eval", done, total)
    return list(out.values())
