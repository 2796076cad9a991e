"""RLlib callbacks: the env's per-episode facts (λ trajectory, end metrics) as RLlib metrics.

They run inside env runners and reach the driver through RLlib's metrics, reduced to one
mean per training iteration; ``unlearn.rl.train`` logs them to MLflow.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ray.rllib.callbacks.callbacks import RLlibCallback

#: env variable naming a JSON-lines file that gets one record per finished episode (instance,
#: λ trajectory, return, steps used, end metrics); ``unlearn rl train`` sets it to
#: ``<out>/episodes.jsonl`` for env runners in its own process
EPISODE_LOG = "UNLEARN_RL_EPISODE_LOG"

END_KEYS = (
    "eval/forget_rate",
    "eval/fid",
    "base/forget_rate",
    "base/fid",
    "audit/attacked_forget_rate",  # env.attack_weight > 0
    "audit/adversarial_concept_rate",  # and env.attack=adversarial
)


class UnlearnCallbacks(RLlibCallback):
    """Logs ``unlearn/lambda_d<i>`` (λ of decision i), end-of-episode metrics, divergences."""

    def on_episode_end(self, *, episode: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
        if metrics_logger is None:
            return
        infos = episode.get_infos()
        last = infos[-1] if len(infos) else {}
        diverged = bool(last.get("diverged", False))
        metrics_logger.log_value("env/diverged", float(diverged), reduce="mean")
        if "steps_used" in last:  # optimiser steps of the episode (fewer after a stop action)
            metrics_logger.log_value("env/steps_used", float(last["steps_used"]), reduce="mean")
            metrics_logger.log_value("env/stopped", float(last.get("stopped", 0)), reduce="mean")
        for i, lam in enumerate(last.get("lambdas", [])):
            metrics_logger.log_value(f"unlearn/lambda_d{i}", float(lam), reduce="mean")
        for key in END_KEYS:
            if key in last:
                metrics_logger.log_value(key, float(last[key]), reduce="mean")
        path = os.environ.get(EPISODE_LOG)
        if path:
            keys = ("instance", "lambdas", "episode_return", "steps_used", "stopped", *END_KEYS)
            rec = {k: last[k] for k in keys if k in last}
            with open(path, "a") as f:
                f.write(json.dumps(rec, default=float) + "\n")
