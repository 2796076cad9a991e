"""The env's overhead, the exported policy's latency, RLlib sampling throughput (tiny env).

Prints, measured in one run:
- env.step / (the same K unlearner steps called directly), over whole episodes, end-of-episode
  evaluation off, K = 2, 5, 10 with the default proxy cadence (env.proxy_every = 20), and
  K = 5 with denser proxies (every 10 steps, every decision); also the cost of one proxy
  measurement
- exported policy: µs per decision on CPU (observation building + forward + clip),
  TorchScript and ONNX
- RLlib PPO sampling throughput, env steps/s, with 1 vs 2 env runners

Run: .venv/bin/python benchmarks/bench_env.py   (about two minutes on 2 cores)

``--t2i`` measures the env's overhead on the text-to-image demo pipeline instead
(``configs/t2i_policy.yaml``: 8 decisions of 5 ESD steps; the shipped pipeline), at the
configured proxy cadence and with proxies only at the episode's end: about two minutes.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO  # noqa: E402

WORKDIR = "/tmp/unlearn-bench-tiny"


def tiny_config(*overrides: str):
    from unlearn.config import load_config

    return load_config(
        REPO / "configs" / "tiny.yaml", [f"workdir={WORKDIR}", "tracking.enabled=false", *overrides]
    )


def bench_env_step(cfg, episodes: int = 8) -> dict[str, float]:
    """Episode time of env.step vs the same T x unlearner.step(K) on the same unlearner.

    Whole episodes are compared (not single decisions): the env measures its proxies on a
    cadence (``env.proxy_every``), so some decisions carry one forward pass more than others.
    End-of-episode evaluation is off. Medians over ``episodes`` episodes, after one warm-up.
    """
    import numpy as np

    from unlearn.envs.unlearning_env import UnlearningEnv

    cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, final_eval=False))
    env = UnlearningEnv(cfg)
    unl, K = env.unlearner, env.K
    act = np.zeros(env.action_space.shape, dtype=np.float32)
    act[0] = 0.5  # λ 0.5; a stop entry (if any) stays 0: run every decision
    n_prox = cfg.env.proxy_batch

    def env_episode(ep: int) -> tuple[float, int]:
        env.reset(seed=ep, options={"instance": cfg.env.train_instances[0], "seed": ep})
        n = 0
        t0 = time.perf_counter()
        for _ in range(env.T):
            n += env.step(act)[4]["proxies_measured"]
        return time.perf_counter() - t0, n

    def direct_episode(ep: int) -> float:
        unl.reset(ep)
        t0 = time.perf_counter()
        for _ in range(env.T):
            unl.step(K, lam=0.5)
        return time.perf_counter() - t0

    env_t, direct_t, proxy_t, measured = [], [], [], []
    for ep in range(episodes + 1):  # the first round warms up; the order alternates
        if ep % 2:
            (t_env, n), t_dir = env_episode(ep), direct_episode(ep)
        else:
            t_dir, (t_env, n) = direct_episode(ep), env_episode(ep)
        t0 = time.perf_counter()
        unl.proxies(n_prox)
        t_prox = time.perf_counter() - t0
        if ep:
            env_t.append(t_env)
            direct_t.append(t_dir)
            proxy_t.append(t_prox)
            measured.append(n)
    e, d, p = (statistics.median(x) for x in (env_t, direct_t, proxy_t))
    m = statistics.median(measured)
    return {
        "env_episode_ms": e * 1e3,
        "direct_episode_ms": d * 1e3,
        "ratio": e / d,
        "proxies_ms": p * 1e3,
        "measurements_per_episode": m,
        "ratio_vs_steps_plus_measurements": e / (d + p * m),
    }


def bench_policy(n: int = 3000) -> dict[str, float]:
    """µs per decision of the PolicyAgent (observation + forward + clip), both formats."""
    import gymnasium as gym
    import numpy as np
    import torch
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from unlearn.agents.policy import PolicyAgent
    from unlearn.config import RLConfig
    from unlearn.export.rllib import export_policy
    from unlearn.observation import layout
    from unlearn.types import StepStats

    torch.set_num_threads(1)
    lay = layout(False)
    conf = (
        PPOConfig()
        .environment(
            observation_space=gym.spaces.Box(lay.low, lay.high, dtype=np.float32),
            action_space=gym.spaces.Box(0.0, 1.0, (1,), dtype=np.float32),
        )
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(RLConfig().hidden)))
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-policy-"))
    conf.get_rl_module_spec().build().save_to_path(str(tmp / "module"))

    class Proxies:  # what a bound unlearner provides
        def proxies(self, n=None):
            return 0.31, 0.52

    stats = StepStats(
        step=1,
        budget=100,
        lam=0.5,
        retain_loss=0.3,
        forget_loss=0.5,
        total_loss=0.1,
        retain_grad_norm=1.2,
        forget_grad_norm=0.7,
        grad_cosine=-0.2,
    )
    out = {}
    for fmt in ("torchscript", "onnx"):
        d = export_policy(tmp / "module", tmp / fmt, fmt, steps_per_decision=1, proxy_every=1)
        agent = PolicyAgent(str(d))
        agent.bind(Proxies())
        agent.act(None)
        for _ in range(200):
            agent.act(stats)
        t0 = time.perf_counter()
        for _ in range(n):
            agent.act(stats)
        out[f"{fmt}_us_per_decision"] = (time.perf_counter() - t0) / n * 1e6
        x = agent.last_obs
        t0 = time.perf_counter()
        for _ in range(n):
            agent.policy(x)
        out[f"{fmt}_us_forward_only"] = (time.perf_counter() - t0) / n * 1e6
    return out


def bench_rllib(cfg, runners: tuple[int, ...] = (1, 2), iterations: int = 3) -> dict[str, float]:
    """PPO sampling env steps/s (median over iterations after the first) per runner count."""
    import ray

    from unlearn.rl.train import algo_config
    from unlearn.runtime import init_ray

    cfg = dataclasses.replace(
        cfg, rl=dataclasses.replace(cfg.rl, train_batch_size=32, minibatch_size=16, num_epochs=1)
    )
    init_ray(num_cpus=max(runners) + 1)
    out = {}
    try:
        for r in runners:
            algo = algo_config(cfg, "ppo", r).build_algo()
            rates = []
            for i in range(iterations):
                res = algo.train()
                steps = res["env_runners"]["num_env_steps_sampled"]
                sample_s = res["timers"].get("env_runner_sampling_timer", res["time_this_iter_s"])
                if i:
                    rates.append(steps / sample_s)
            algo.stop()
            out[f"env_steps_per_s_{r}_runner"] = statistics.median(rates)
    finally:
        ray.shutdown()
    out["speedup_2_vs_1"] = out.get("env_steps_per_s_2_runner", float("nan")) / out.get(
        "env_steps_per_s_1_runner", float("nan")
    )
    return out


def main_t2i(episodes: int = 10) -> dict[str, float]:
    """env.step vs the same ESD steps on the t2i demo pipeline (2 threads, the machine's)."""
    from unlearn.config import load_config

    results: dict[str, float] = {}
    path = REPO / "configs" / "t2i_policy.yaml"
    print("-- env.step vs K direct ESD steps on the t2i demo pipeline (no end-of-episode eval) --")
    for every in (5, 40):
        cfg = load_config(path, ["workdir=/tmp/unlearn-bench-t2i", f"env.proxy_every={every}"])
        r = bench_env_step(cfg, episodes=episodes)
        note = "target <= 1.05" if every == 40 else "the policy's training cadence"
        print(
            f"T={cfg.env.decisions} K={cfg.env.steps_per_decision} proxy_every={every:<3} env "
            f"{r['env_episode_ms']:.0f} ms  direct {r['direct_episode_ms']:.0f} ms  ratio "
            f"{r['ratio']:.3f}x  (proxies {r['proxies_ms']:.1f} ms x "
            f"{r['measurements_per_episode']:.0f} per episode; vs steps+proxies "
            f"{r['ratio_vs_steps_plus_measurements']:.3f}x)   {note}"
        )
        results.update({f"t2i_proxy_every{every}_{k}": v for k, v in r.items()})
    return results


def main() -> dict[str, float]:
    if "--t2i" in sys.argv[1:]:
        return main_t2i()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from unlearn.config import EnvConfig
    from unlearn.pretrain import pretrain

    torch.set_num_threads(1)
    cfg = tiny_config()
    pretrain(cfg)
    results: dict[str, float] = {}
    print(
        "-- env.step vs K direct unlearner steps, whole episodes of T=10 decisions "
        "(tiny model, no end-of-episode eval) --"
    )
    default = EnvConfig().proxy_every
    # (K, env.proxy_every): the default cadence at three K, then denser ones at the default K
    runs = [(2, default), (5, default), (10, default), (5, 10), (5, 1)]
    for k, every in runs:
        r = bench_env_step(
            tiny_config(
                "env.decisions=10", f"env.steps_per_decision={k}", f"env.proxy_every={every}"
            ),
            episodes=12,
        )
        tag = f"K{k}" if every == default else f"K{k}_proxy_every{every}"
        note = "target <= 1.05" if every == default else "denser proxies, for comparison"
        print(
            f"K={k:<3} proxy_every={every:<3} env {r['env_episode_ms']:.1f} ms  direct "
            f"{r['direct_episode_ms']:.1f} ms  ratio {r['ratio']:.3f}x  (proxies "
            f"{r['proxies_ms']:.2f} ms x {r['measurements_per_episode']:.0f} per episode; vs "
            f"steps+proxies {r['ratio_vs_steps_plus_measurements']:.3f}x)   {note}"
        )
        results.update({f"{tag}_{key}": v for key, v in r.items()})
    print("-- exported policy, CPU, 1 thread --")
    r = bench_policy()
    for fmt in ("torchscript", "onnx"):
        print(
            f"{fmt:<12} {r[f'{fmt}_us_per_decision']:.1f} µs per decision "
            f"(forward alone {r[f'{fmt}_us_forward_only']:.1f} µs)"
        )
    results.update(r)
    print("-- RLlib PPO sampling on the tiny env --")
    r = bench_rllib(cfg)
    print(
        f"1 env runner {r['env_steps_per_s_1_runner']:.1f} env steps/s, 2 env runners "
        f"{r['env_steps_per_s_2_runner']:.1f} env steps/s  ({r['speedup_2_vs_1']:.2f}x)"
    )
    results.update(r)
    return results


if __name__ == "__main__":
    main()
