"""Ray Tune searches over methods and agents: Optuna (multi-objective, ASHA), PBT / PB2.

``run_sweep(cfg, load_space(path), SweepOptions(...))`` validates the search space against
the config, runs one Tune trial per configuration (each one ``Unlearner.run``), tracks the
sweep as an MLflow parent run with a child run per trial and returns a
:class:`SweepResult` (trials, Pareto front, best trial, artifacts). Ray, Optuna and MLflow
are imported only when a sweep runs.
"""

from __future__ import annotations

from unlearn.runtime import init_ray
from unlearn.tuners.demo import demo_search
from unlearn.tuners.options import SweepOptions, check_options, check_tracking
from unlearn.tuners.results import SweepResult, TrialResult, pareto_front, schedule_points
from unlearn.tuners.space import (
    Param,
    SearchSpace,
    apply_params,
    load_space,
    parse_space,
    trial_config,
    validate_space,
)
from unlearn.tuners.sweep import run_sweep

__all__ = [
    "Param",
    "SearchSpace",
    "SweepOptions",
    "SweepResult",
    "TrialResult",
    "apply_params",
    "check_options",
    "check_tracking",
    "demo_search",
    "init_ray",
    "load_space",
    "pareto_front",
    "parse_space",
    "run_sweep",
    "schedule_points",
    "trial_config",
    "validate_space",
]
