"""Driver-side Tune callback: one tracked child run per trial, trial wall times, progress.

Each child run is tagged with the Ray node(s) its trial ran on (``unlearn.node_id``, the
latest; ``unlearn.node_ids``, all in order) and, after a failure Tune recovered from (a lost
node), ``unlearn.restarts``; the parent with the driver's node (``unlearn.driver_node_id``).

Trials never talk to MLflow themselves; the driver logs what they report. That keeps
workers free of tracking credentials, lets PBT log params once at trial end (MLflow refuses
to change a logged param, and PBT changes the config mid-trial) and survives a killed
driver: a resumed sweep finds each trial's child run again by its ``unlearn.trial_id`` tag
under the sweep's parent run and skips steps that were already logged.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from ray.tune import Callback

from unlearn.tracking import Tracker
from unlearn.tracking.writer import finite
from unlearn.tuners.trainable import NODE_KEY

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
            sweep,
            params_of,
            params_at_end,
            total,
        )
        self.trackers: dict[str, Tracker] = {}  # trial id -> its child run
        self.logged_upto: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.done: set[str] = set()
        self.nodes: dict[str, list[str]] = {}  # trial id -> the Ray nodes it reported from
        self.restarts: dict[str, int] = {}  # trial id -> restarts after a failure
        self.progress = None
        self.parent = Tracker.attach(uri, parent_run_id, experiment_id)

    # Tune pickles the run config (with its callbacks) into the experiment directory
    def __getstate__(self) -> dict:
        return {**self.__dict__, "progress": None}

    # -- runs ------------------------------------------------------------------------------
    @property
    def runs(self) -> dict[str, str]:
        """Trial id -> MLflow run id of the trials seen so far."""
        return {tid: kid.run_id for tid, kid in self.trackers.items()}

    def run(self, trial) -> Tracker | None:
        """The trial's child run: found again under the parent (a resumed sweep) or new."""
        if not self.parent.enabled:
            return None
        tid = trial.trial_id
        if tid in self.trackers:
            return self.trackers[tid]
        kid = self.parent.find_child({"unlearn.trial_id": tid})
        if kid is not None:  # a resumed sweep: continue the trial's run, skip what it has
            self.logged_upto[tid] = kid.last_step(STEP_KEY)
            if kid.status_at_find != "RUNNING":
                kid.reopen()
        else:
            params = self.params_of(trial.config)
            tags = {
                "unlearn.trial_id": tid,
                "unlearn.sweep": self.sweep,
                "unlearn.method": str(params.get("method.name", "")),
                "unlearn.agent": str(params.get("agent.name", "")),
            }
            kid = self.parent.child(run_name=str(trial), tags=tags)
            if not self.params_at_end:
                kid.log_params(params)
        self.trackers[tid] = kid
        return kid

    # -- Tune hooks ------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        self.started.setdefault(trial.trial_id, time.perf_counter())
        self.run(trial)

    def on_trial_restore(self, iteration, trials, trial, **info):
        self.started.setdefault(trial.trial_id, time.perf_counter())

    def on_trial_recover(self, iteration, trials, trial, **info):
        # a failed trial (an exception, a lost node) restarts from its last checkpoint
        tid = trial.trial_id
        self.restarts[tid] = self.restarts.get(tid, 0) + 1
        log.warning("trial %s failed; restart %d from its last checkpoint", tid, self.restarts[tid])
        run = self.run(trial)
        if run is not None:
            run.set_tag("unlearn.restarts", str(self.restarts[tid]))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = trial.trial_id
        node = result.get(NODE_KEY)
        seen = self.nodes.setdefault(tid, [])
        moved = bool(node) and (not seen or seen[-1] != node)
        if moved:
            seen.append(node)
        run = self.run(trial)
        if run is None:
            return
        if moved:  # the node it runs on, and all it ran on (a lost node moves it)
            run.set_tag("unlearn.node_id", node)
            run.set_tag("unlearn.node_ids", ",".join(seen))
        upto = self.logged_upto.get(tid, 0)
        rows = []
        for row in json.loads(result.get("steps") or "[]"):
            step = int(row["step"])
            if step > upto:
                rows.append((step, {k: v for k, v in row.items() if k != "step"}))
        step = int(result.get("unlearn/step", 0))
        rows.append(
            (step, {k: v for k, v in result.items() if k.startswith(PREFIXES) and k not in SKIP})
        )
        run.log_rows(rows)
        self.logged_upto.pop(tid, None)  # dedup only the replayed stretch after a resume

    def on_trial_complete(self, iteration, trials, trial, **info):
        tid = trial.trial_id
        if tid in self.started:
            self.wall[tid] = time.perf_counter() - self.started[tid]
        self.done.add(tid)
        if self.progress is not None:
            self.progress("trials", len(self.done), self.total)
        run = self.run(trial)
        if run is None:
            return
        last = trial.last_result or {}
        if self.params_at_end:
            run.log_params(self.params_of(trial.config))
        extra = {}
        if tid in self.wall:
            extra["perf/trial_time"] = self.wall[tid]
            extra["perf/overhead"] = self.wall[tid] - float(last.get("perf/unlearn_time", 0.0))
        run.log_metrics(extra, step=int(last.get("unlearn/step", 0)))
        finished = finite(last.get("eval/forget_rate")) or finite(last.get("tune/score"))
        if not finished:
            run.set_tag("unlearn.early_stopped", "true")
        run.end("FINISHED" if finished else "KILLED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done.add(trial.trial_id)
        if self.progress is not None:
            self.progress("trials", len(self.done), self.total)
        run = self.run(trial)
        if run is not None:
            run.set_tag("unlearn.failure", str(trial.error_file or "error"))
            run.end("FAILED")


def flat_params(base: dict, space: dict, config: dict) -> dict[str, Any]:
    """A trial's full config as flat MLflow params (module-level: Tune pickles callbacks)."""
    from unlearn.config import Config, from_mapping
    from unlearn.tracking import flatten
    from unlearn.tuners.space import from_dict, trial_config

    return flatten(trial_config(from_mapping(Config, base), from_dict(space), config).to_dict())
