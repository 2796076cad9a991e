"""OptunaSearch as the sweep uses it: objectives only from a trial's final report."""

from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch

from unlearn.tracking.writer import finite


class SweepOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch, told only final evaluations.

    Intermediate reports carry NaN placeholders for the objectives (Tune wants every
    searcher metric in every result); Optuna prunes nothing here (NopPruner), so they are not
    forwarded. A trial that ends without its evaluation (ASHA stopped it) is told as pruned
    rather than as a NaN objective.
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        return None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        if result is not None and not all(finite(result.get(m)) for m in metrics):
            result = None
        return super().on_trial_complete(trial_id, result, error)
