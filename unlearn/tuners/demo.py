"""The demo's search: static λ against the variational agent, 4 trials, Pareto front."""

from __future__ import annotations

import time

from unlearn.config import Config
from unlearn.runtime import ProgressFn, no_progress
from unlearn.tuners.options import SweepOptions
from unlearn.tuners.results import SweepResult
from unlearn.tuners.space import parse_space
from unlearn.tuners.sweep import run_sweep

#: a smaller ``configs/tune/static_vs_variational.yaml`` (in code: an installed package has
#: no repository files)
DEMO_SPACE = {
    "description": "static lambda vs the variational agent (adaptive-lambda SISS)",
    "fixed": {"method.name": "siss"},
    "params": {
        "agent.name": {"choice": ["static", "variational"]},
        "method.lam": {"float": [0.1, 0.9]},
        "agent.options.beta": {
            "float": [1.0e-4, 1.0e-1],
            "log": True,
            "when": {"agent.name": "variational"},
        },
    },
}


def demo_search(
    cfg: Config,
    progress: ProgressFn = no_progress,
    num_samples: int = 4,
    max_concurrent: int = 2,
    address: str | None = None,
) -> SweepResult:
    """A 4-trial multi-objective Optuna search over static vs variational λ.

    The first two trials are one of each agent (so both appear on the plot whatever the
    sampler draws); ``result.pareto_plot`` is the PNG of forget rate vs FID.
    """
    space = parse_space(DEMO_SPACE, name="static_vs_variational")
    first = [
        {"agent.name": "static", "method.lam": 0.5},
        {"agent.name": "variational", "method.lam": 0.5, "agent.options.beta": 1e-3},
    ]
    opts = SweepOptions(
        search="optuna",
        objective="multi",
        num_samples=num_samples,
        max_concurrent=max_concurrent,
        name=f"demo-{time.strftime('%Y%m%d-%H%M%S')}",
        address=address,
        points_to_evaluate=first[:num_samples],
    )
    return run_sweep(cfg, space, opts, progress)
