"""PBT and PB2 that leave a trial's final report alone.

A trial's last report carries its sample-based evaluation. If PBT exploited at that point,
the finished trial would be restarted from another trial's checkpoint and end as a copy of
it; the perturbation points before the end are where exploitation belongs.
"""

from __future__ import annotations

from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler
from ray.tune.schedulers.pb2 import PB2

from unlearn.tuners.trainable import FINAL_KEY


class _KeepFinal:
    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get(FINAL_KEY):
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


class SweepPBT(_KeepFinal, PopulationBasedTraining):
    """Population Based Training without exploitation at a trial's final report."""


class SweepPB2(_KeepFinal, PB2):
    """PB2 without exploitation at a trial's final report."""
