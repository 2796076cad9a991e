"""``unlearn rl train``: PPO or SAC (RLlib new API stack) on the unlearning env.

The env is built inside each env runner from a plain dict (``cfg.to_dict()``), so workers
on other nodes need only the package and the pretrained model under ``workdir``. GPUs go to
the env runners (they hold the diffusion model); the policy network is tiny and learns on
the driver. Every iteration is checkpointed (``algo.save_to_path``) with a sidecar
``unlearn_rl.json`` (algorithm, env section, config) that ``unlearn policy export`` reads.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearn.config import Config, ConfigError
from unlearn.runtime import ProgressFn, init_ray, no_progress

log = logging.getLogger(__name__)

ALGOS = ("ppo", "sac")
SIDECAR = "unlearn_rl.json"


@dataclass
class TrainResult:
    """What ``unlearn rl train`` produced."""

    algo: str
    out_dir: Path
    checkpoints: list[Path] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    lambdas: list[list[float]] = field(default_factory=list)
    run_id: str | None = None

    @property
    def checkpoint(self) -> Path | None:
        return self.checkpoints[-1] if self.checkpoints else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "out_dir": str(self.out_dir),
            "run_id": self.run_id,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "checkpoints": [str(c) for c in self.checkpoints],
            "returns": self.returns,
            "lambdas": self.lambdas,
        }


def algo_config(cfg: Config, algo: str, env_runners: int):
    """The RLlib AlgorithmConfig for ``algo`` on the env described by ``cfg``."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from unlearn.envs.unlearning_env import UnlearningEnv
    from unlearn.rl.callbacks import UnlearnCallbacks

    r = cfg.rl
    if algo == "ppo":
        from ray.rllib.algorithms.ppo import PPOConfig

        conf = PPOConfig().training(
            lr=r.lr,
            gamma=r.gamma,
            train_batch_size_per_learner=r.train_batch_size,
            minibatch_size=min(r.minibatch_size, r.train_batch_size),
            num_epochs=r.num_epochs,
        )
    elif algo == "sac":
        from ray.rllib.algorithms.sac import SACConfig

        conf = SACConfig().training(
            actor_lr=r.lr,
            critic_lr=r.lr,
            alpha_lr=r.lr,
            gamma=r.gamma,
            train_batch_size_per_learner=r.minibatch_size,
            num_steps_sampled_before_learning_starts=r.train_batch_size,
            replay_buffer_config={"type": "PrioritizedEpisodeReplayBuffer", "capacity": 100_000},
        )
    else:
        raise ConfigError(f"--algo: {algo!r} is not allowed; expected one of {', '.join(ALGOS)}")
    return (
        conf.environment(UnlearningEnv, env_config={"config": cfg.to_dict()})
        .env_runners(
            num_env_runners=env_runners,
            num_gpus_per_env_runner=r.gpus_per_env_runner,
            sample_timeout_s=r.sample_timeout_s,
        )
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(r.hidden)))
        .callbacks(UnlearnCallbacks)
        .debugging(seed=r.seed, log_level="WARN")
    )


def _lifetime_env_steps(result: dict[str, Any]) -> int | None:
    """Decisions sampled since training began (RLlib's lifetime counter), if reported."""
    v = (result.get("env_runners") or {}).get("num_env_steps_sampled_lifetime")
    v = result.get("num_env_steps_sampled_lifetime") if v is None else v
    return int(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _metrics(result: dict[str, Any]) -> dict[str, float]:
    """RLlib's result dict → namespaced MLflow metrics."""
    out: dict[str, float] = {}
    runners = result.get("env_runners", {})
    for key, name in (
        ("episode_return_mean", "env/episode_return"),
        ("episode_len_mean", "env/episode_len"),
        ("num_env_steps_sampled", "perf/env_steps"),
        ("num_episodes", "env/episodes"),
    ):
        if key in runners:
            out[name] = float(runners[key])
    for key, v in runners.items():
        if key.startswith(("unlearn/", "eval/", "base/", "env/")) and isinstance(v, (int, float)):
            out[key] = float(v)
    learner = result.get("learners", {}).get("default_policy", {})
    for key, v in learner.items():
        if isinstance(v, (int, float)) and ("loss" in key or key in ("entropy", "alpha_value")):
            out[f"rl/{key}"] = float(v)
    if "time_this_iter_s" in result and "num_env_steps_sampled" in runners:
        out["perf/env_steps_per_s"] = runners["num_env_steps_sampled"] / max(
            result["time_this_iter_s"], 1e-9
        )
    return {k: v for k, v in out.items() if math.isfinite(v)}


def _lambda_row(metrics: dict[str, float], decisions: int) -> list[float]:
    return [metrics.get(f"unlearn/lambda_d{i}", float("nan")) for i in range(decisions)]


#: the log-std the λ entry of a freshly built policy starts with (raw, in [-1, 1] units): 0.25
#: in λ instead of RLlib's 0.5, so fewer exploratory λ land on the clipped 0 or 1
LAMBDA_INIT_LOG_STD = -0.7


def init_policy(algorithm, stop_action: bool) -> None:
    """Start a fresh policy where "continue" is the default.

    The policy head's last layer outputs (means, log-stds) of the action's raw entries. With
    ``env.stop_action`` the stop mean starts at :data:`~unlearn.observation.STOP_INIT_MEAN`
    (its weights scaled by 0.1, so the start hardly depends on the observation): the
    deterministic action never stops and a sampled one rarely (5.8% of decisions on
    observations drawn inside the bounds, against 36% from RLlib's start), so episodes last
    and the value of continuing is learned. λ's exploration std starts at
    :data:`LAMBDA_INIT_LOG_STD`. The env runners get the weights before the first sample.
    """
    import torch
    from ray.rllib.core import DEFAULT_MODULE_ID

    from unlearn.observation import STOP_INIT_MEAN

    def change(learner) -> list[float]:
        module = learner.module[DEFAULT_MODULE_ID]
        last = [m for m in module.pi.modules() if isinstance(m, torch.nn.Linear)][-1]
        n = last.out_features // 2
        with torch.no_grad():
            last.bias[n] = LAMBDA_INIT_LOG_STD
            if stop_action:
                last.weight[n - 1].mul_(0.1)
                last.bias[n - 1] = STOP_INIT_MEAN
        return last.bias.tolist()

    algorithm.learner_group.foreach_learner(change)
    algorithm.env_runner_group.sync_weights(
        from_worker_or_learner_group=algorithm.learner_group, inference_only=True
    )


def check_ready(cfg: Config) -> None:
    """Fail on the driver (one clear line) rather than inside every env runner."""
    from unlearn.pretrain import locate

    m, c = locate(cfg)
    if m is None or c is None:
        raise ConfigError(
            "model: no pretrained base model / classifier for this config; run "
            "`unlearn pretrain --config <your config>` first"
        )


def train(
    cfg: Config,
    algo: str | None = None,
    iterations: int | None = None,
    env_runners: int | None = None,
    resume: str | Path | None = None,
    out: str | Path | None = None,
    progress: ProgressFn = no_progress,
) -> TrainResult:
    """Train ``iterations`` RLlib iterations; checkpoint each; log to MLflow; return the paths."""
    from unlearn.metrics.plots import plot_lambda
    from unlearn.tracking import Tracker

    algo = (algo or cfg.rl.algo).lower()
    if algo not in ALGOS:
        raise ConfigError(f"--algo: {algo!r} is not allowed; expected one of {', '.join(ALGOS)}")
    iterations = cfg.rl.iterations if iterations is None else iterations
    env_runners = cfg.rl.env_runners if env_runners is None else env_runners
    if iterations < 1 or env_runners < 0:
        raise ConfigError("--iterations must be >= 1 and --env-runners >= 0")
    resume_path = None
    if resume is not None:
        resume_path = Path(resume).expanduser().resolve()
        if not (resume_path / "rllib_checkpoint.json").is_file():
            raise ConfigError(f"--resume: {resume} is not an RLlib algorithm checkpoint")
    check_ready(cfg)
    tracker = Tracker(cfg, run_name=f"rl-{algo}", tags={"unlearn.rl.algo": algo})
    tracker.log_params(
        {
            **cfg.to_dict(),
            "rl.algo": algo,
            "rl.iterations": iterations,
            "rl.env_runners": env_runners,
        }
    )
    out_dir = Path(out or cfg.workdir_path / "rl" / f"{algo}-{tracker.run_id or 'run'}")
    out_dir = out_dir.expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    res = TrainResult(algo=algo, out_dir=out_dir, run_id=tracker.run_id)
    import os

    from unlearn.rl.callbacks import EPISODE_LOG

    os.environ[EPISODE_LOG] = str(out_dir / "episodes.jsonl")
    started = init_ray(num_cpus=max(1, env_runners) + 1)
    algorithm = algo_config(cfg, algo, env_runners).build_algo()
    status = "FAILED"
    try:
        if resume_path is not None:
            algorithm.restore_from_path(str(resume_path))
            log.info("resumed from %s at iteration %d", resume_path, algorithm.iteration)
        else:
            init_policy(algorithm, cfg.env.stop_action)
        side = {"algo": algo, "env": cfg.to_dict()["env"], "config": cfg.to_dict()}
        for i in range(iterations):
            progress(f"rl train ({algo})", i, iterations)
            result = algorithm.train()
            it = int(result.get("training_iteration", i + 1))
            metrics = _metrics(result)
            tracker.log_metrics(metrics, step=it)
            res.returns.append(metrics.get("env/episode_return", float("nan")))
            res.lambdas.append(_lambda_row(metrics, cfg.env.decisions))
            with open(out_dir / "progress.jsonl", "a") as f:  # one line per iteration
                f.write(json.dumps({"iteration": it, **metrics}) + "\n")
            ckpt = out_dir / f"iter_{it:04d}"
            algorithm.save_to_path(str(ckpt))
            facts = {"iteration": it, "env_steps": _lifetime_env_steps(result)}
            (ckpt / SIDECAR).write_text(json.dumps({**side, **facts}, indent=2))
            res.checkpoints.append(ckpt)
            progress(f"rl train ({algo})", i + 1, iterations)
        series = {
            f"iter {k + 1}": row for k, row in enumerate(res.lambdas) if any(v == v for v in row)
        }
        if series:
            tracker.log_artifact(plot_lambda(series, out_dir / "lambda.png"))
        (out_dir / "train.json").write_text(json.dumps(res.to_dict(), indent=2))
        tracker.log_artifact(out_dir / "train.json")
        tracker.set_tag("unlearn.rl.checkpoint", str(res.checkpoint))
        status = "FINISHED"
        return res
    finally:
        algorithm.stop()
        tracker.end(status)
        if started:
            import ray

            ray.shutdown()
