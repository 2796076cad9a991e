"""The env's overhead, the exported policy's latency, RLlib sampling throughput (tiny env).

Prints, measured in one run:
- env.step / (the same K unlearner steps called directly), end-of-episode evaluation off;
  also the part of it spent in the two fixed-noise proxies the observation needs
- exported policy: µs per decision on CPU (observation building + forward + clip),
  TorchScript and ONNX
- RLlib PPO sampling throughput, env steps/s, with 1 vs 2 env runners

Run: .venv/bin/python benchmarks/bench_env.py   (about two minutes on 2 cores)
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

    return load_config(REPO / "configs" / "tiny.yaml",
                       [f"workdir={WORKDIR}", "tracking.enabled=false", *overrides])  # fmt: skip


def bench_env_step(cfg, episodes: int = 8) -> dict[str, float]:
    """Median per-decision time of env.step vs unlearner.step(K) on the same unlearner."""
    import numpy as np

    from unlearn.envs.unlearning_env import UnlearningEnv

    cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, final_eval=False))
    env = UnlearningEnv(cfg)
    unl, K = env.unlearner, env.K
    act = np.array([0.5], dtype=np.float32)
    env_t, direct_t, proxy_t = [], [], []
    for ep in range(episodes + 1):  # the first round warms up
        env.reset(seed=ep, options={"instance": cfg.env.train_instances[0], "seed": ep})
        t_env = []
        for _ in range(env.T):
            t0 = time.perf_counter()
            env.step(act)
            t_env.append(time.perf_counter() - t0)
        unl.reset(ep)
        t_dir, t_prox = [], []
        for _ in range(env.T):
            t0 = time.perf_counter()
            unl.step(K, lam=0.5)
            t1 = time.perf_counter()
            unl.proxies()
            t_dir.append(t1 - t0)
            t_prox.append(time.perf_counter() - t1)
        if ep:
            env_t += t_env
            direct_t += t_dir
            proxy_t += t_prox
    e, d, p = (statistics.median(x) for x in (env_t, direct_t, proxy_t))
    return {"env_step_ms": e * 1e3, "direct_k_steps_ms": d * 1e3, "ratio": e / d,
            "proxies_ms": p * 1e3, "ratio_vs_steps_plus_proxies": e / (d + p)}  # fmt: skip


def bench_policy(n: int = 3000) -> dict[str, float]:
    """µs per decision of the PolicyAgent (observation + forward + clip), both formats."""
    import gymnasium as gym
    import numpy as np
    import torch
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from unlearn.agents.policy import PolicyAgent
    from unlearn.config import RLConfig
    from unlearn.envs.observation import layout
    from unlearn.export.rllib import export_policy
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
        def proxies(self):
            return 0.31, 0.52

    stats = StepStats(step=1, budget=100, lam=0.5, retain_loss=0.3, forget_loss=0.5,
                      total_loss=0.1, retain_grad_norm=1.2, forget_grad_norm=0.7,
                      grad_cosine=-0.2)  # fmt: skip
    out = {}
    for fmt in ("torchscript", "onnx"):
        d = export_policy(tmp / "module", tmp / fmt, fmt, steps_per_decision=1)
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

    cfg = dataclasses.replace(cfg, rl=dataclasses.replace(cfg.rl, train_batch_size=32,
                                                          minibatch_size=16, num_epochs=1))  # fmt: skip
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


def main() -> dict[str, float]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from unlearn.pretrain import pretrain

    torch.set_num_threads(1)
    cfg = tiny_config()
    pretrain(cfg)
    results: dict[str, float] = {}
    print("-- env.step vs K direct unlearner steps (tiny env, no end-of-episode eval) --")
    for k in (2, 10):
        r = bench_env_step(tiny_config(f"env.steps_per_decision={k}"))
        print(f"K={k:<3} env.step {r['env_step_ms']:.2f} ms  direct {r['direct_k_steps_ms']:.2f} ms"
              f"  ratio {r['ratio']:.3f}x  (proxies {r['proxies_ms']:.2f} ms; "
              f"vs steps+proxies {r['ratio_vs_steps_plus_proxies']:.3f}x)")  # fmt: skip
        results.update({f"K{k}_{key}": v for key, v in r.items()})
    print("-- exported policy, CPU, 1 thread --")
    r = bench_policy()
    for fmt in ("torchscript", "onnx"):
        print(f"{fmt:<12} {r[f'{fmt}_us_per_decision']:.1f} µs per decision "
              f"(forward alone {r[f'{fmt}_us_forward_only']:.1f} µs)")  # fmt: skip
    results.update(r)
    print("-- RLlib PPO sampling on the tiny env --")
    r = bench_rllib(cfg)
    print(f"1 env runner {r['env_steps_per_s_1_runner']:.1f} env steps/s, 2 env runners "
          f"{r['env_steps_per_s_2_runner']:.1f} env steps/s  ({r['speedup_2_vs_1']:.2f}x)")  # fmt: skip
    results.update(r)
    return results


if __name__ == "__main__":
    main()
