"""Driver-side Tune callback: one MLflow child run per trial, trial wall times, progress.

Trials never talk to MLflow themselves; the driver logs what they report. That keeps
workers free of tracking credentials, lets PBT log params once at trial end (MLflow refuses
to change a logged param, and PBT changes the config mid-trial) and survives a killed
driver: a resumed sweep finds each trial's child run again by its ``unlearn.trial_id`` tag
under the sweep's parent run and skips steps that were already logged.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from ray.tune import Callback

log = logging.getLogger(__name__)

#: scalar result keys copied to MLflow (everything else in a result is Tune bookkeeping)
PREFIXES = ("unlearn/", "eval/", "tune/", "perf/")
STEP_KEY = "unlearn/lambda"  # always logged per step; its history tells what is already there
SKIP = {STEP_KEY, "unlearn/final", "unlearn/step"}


class SweepCallback(Callback):
    """MLflow child runs (when ``uri`` is set), per-trial wall time and a progress hook.

    Args:
        uri: MLflow tracking URI, or None to track nothing.
        experiment_id: the MLflow experiment of the sweep.
        parent_run_id: the sweep's parent run.
        sweep: sweep name (tag ``unlearn.sweep`` on every child).
        params_of: trial config -> the flat params to log (the trial's full config).
        params_at_end: log params when the trial ends (PBT) instead of when it starts.
        total: number of trials, for the progress hook.
    """

    def __init__(
        self,
        uri: str | None,
        experiment_id: str | None,
        parent_run_id: str | None,
        sweep: str,
        params_of,
        params_at_end: bool,
        total: int,
    ):
        self.uri, self.experiment_id, self.parent_run_id = uri, experiment_id, parent_run_id
        self.sweep, self.params_of, self.params_at_end, self.total = (
            sweep, params_of, params_at_end, total,
        )  # fmt: skip
        self.runs: dict[str, str] = {}
        self.logged_upto: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.done: set[str] = set()
        self.progress = None
        self._client = None

    # Tune pickles the run config (with its callbacks) into the experiment directory
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_client"] = None
        state["progress"] = None
        return state

    @property
    def client(self):
        if self._client is None and self.uri:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    # -- runs ------------------------------------------------------------------------------
    def run_id(self, trial) -> str | None:
        if not self.uri:
            return None
        tid = trial.trial_id
        if tid in self.runs:
            return self.runs[tid]
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`unlearn.trial_id` = '{tid}' and "
            f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'",
            max_results=1,
        )
        if found:  # a resumed sweep: continue the trial's run, skip what it already has
            run_id = found[0].info.run_id
            hist = self.client.get_metric_history(run_id, STEP_KEY)
            self.logged_upto[tid] = max((m.step for m in hist), default=0)
            if found[0].info.status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
        else:
            params = self.params_of(trial.config)
            tags = {
                "mlflow.parentRunId": self.parent_run_id,
                "unlearn.trial_id": tid,
                "unlearn.sweep": self.sweep,
                "unlearn.method": str(params.get("method.name", "")),
                "unlearn.agent": str(params.get("agent.name", "")),
            }
            run = self.client.create_run(self.experiment_id, run_name=str(trial), tags=tags)
            run_id = run.info.run_id
            if not self.params_at_end:
                self._log_params(run_id, trial)
        self.runs[tid] = run_id
        return run_id

    def _log_params(self, run_id: str, trial) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)[:6000]) for k, v in self.params_of(trial.config).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[i : i + 100])

    # -- Tune hooks ------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        self.started.setdefault(trial.trial_id, time.perf_counter())
        self.run_id(trial)

    def on_trial_restore(self, iteration, trials, trial, **info):
        self.started.setdefault(trial.trial_id, time.perf_counter())

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self.run_id(trial)
        if run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        tid = trial.trial_id
        upto = self.logged_upto.get(tid, 0)
        metrics = []
        for row in json.loads(result.get("steps") or "[]"):
            step = int(row["step"])
            if step <= upto:
                continue
            metrics += [Metric(k, float(v), now, step) for k, v in row.items() if k != "step"]
        step = int(result.get("unlearn/step", 0))
        for k, v in result.items():
            if k.startswith(PREFIXES) and _finite(v) and k not in SKIP:
                metrics.append(Metric(k, float(v), now, step))
        for i in range(0, len(metrics), 900):
            self.client.log_batch(run_id, metrics=metrics[i : i + 900])
        self.logged_upto.pop(tid, None)  # dedup only the replayed stretch after a resume

    def on_trial_complete(self, iteration, trials, trial, **info):
        tid = trial.trial_id
        if tid in self.started:
            self.wall[tid] = time.perf_counter() - self.started[tid]
        self.done.add(tid)
        if self.progress is not None:
            self.progress("trials", len(self.done), self.total)
        run_id = self.run_id(trial)
        if run_id is None:
            return
        from mlflow.entities import Metric

        last = trial.last_result or {}
        if self.params_at_end:
            self._log_params(run_id, trial)
        extra = {}
        if tid in self.wall:
            extra["perf/trial_time"] = self.wall[tid]
            extra["perf/overhead"] = self.wall[tid] - float(last.get("perf/unlearn_time", 0.0))
        now = int(time.time() * 1000)
        step = int(last.get("unlearn/step", 0))
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in extra.items()])
        finished = _finite(last.get("eval/forget_rate")) or _finite(last.get("tune/score"))
        if not finished:
            self.client.set_tag(run_id, "unlearn.early_stopped", "true")
        self.client.set_terminated(run_id, status="FINISHED" if finished else "KILLED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done.add(trial.trial_id)
        if self.progress is not None:
            self.progress("trials", len(self.done), self.total)
        run_id = self.run_id(trial)
        if run_id is not None:
            self.client.set_tag(run_id, "unlearn.failure", str(trial.error_file or "error"))
            self.client.set_terminated(run_id, status="FAILED")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def flat_params(base: dict, space: dict, config: dict) -> dict[str, Any]:
    """A trial's full config as flat MLflow params (module-level: Tune pickles callbacks)."""
    from unlearn.config import Config, from_mapping
    from unlearn.tracking import flatten
    from unlearn.tuners.space import from_dict, trial_config

    return flatten(trial_config(from_mapping(Config, base), from_dict(space), config).to_dict())
