"""MLflow conventions: where runs go, how per-step metrics are batched, run status.

Default store: ``sqlite:///<workdir>/mlflow.db`` (absolute; MLflow 3 refuses file stores).
``MLFLOW_TRACKING_URI`` wins over the config; an ``http://`` server is the multi-node setting.
Metric keys are namespaced: ``unlearn/lambda``, ``unlearn/retain_loss``, ``eval/fid`` ...
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from unlearn.config import Config, ConfigError
from unlearn.types import StepStats

log = logging.getLogger(__name__)

STEP_KEYS = {
    "lam": "unlearn/lambda",
    "retain_loss": "unlearn/retain_loss",
    "forget_loss": "unlearn/forget_loss",
    "total_loss": "unlearn/total_loss",
    "retain_grad_norm": "unlearn/retain_grad_norm",
    "forget_grad_norm": "unlearn/forget_grad_norm",
    "grad_cosine": "unlearn/grad_cosine",
    "weight_spread": "unlearn/weight_spread",
    "proxy_retain": "unlearn/proxy_retain",
    "proxy_forget": "unlearn/proxy_forget",
}


def tracking_uri(cfg: Config) -> str:
    """The tracking URI to use, validated: sqlite with an absolute path, or http(s)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.uri
    if not uri:
        return f"sqlite:///{cfg.workdir_path / 'mlflow.db'}"
    if uri.startswith(("http://", "https://", "databricks")):
        return uri
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        if not path.startswith("/"):
            return f"sqlite:///{Path(path).resolve()}"
        return uri
    raise ConfigError(
        f"tracking.uri: {uri!r} is not supported; use sqlite:///<absolute path> or http://HOST:PORT"
        " (MLflow 3 refuses file stores)"
    )


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class Tracker:
    """One MLflow run. A disabled tracker accepts every call and does nothing."""

    def __init__(
        self,
        cfg: Config,
        run_name: str | None = None,
        parent_run_id: str | None = None,
        tags: dict[str, str] | None = None,
    ):
        self.enabled = cfg.tracking.enabled
        self.run_id: str | None = None
        self._buffer: list = []
        if not self.enabled:
            return
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri(cfg)
        if self.uri.startswith("sqlite:///"):
            Path(self.uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(cfg.tracking.experiment)
        if exp is None:
            artifacts = None
            if self.uri.startswith("sqlite:///"):
                artifacts = (cfg.workdir_path / "mlartifacts").as_uri()
            exp_id = self.client.create_experiment(
                cfg.tracking.experiment, artifact_location=artifacts
            )
        else:
            exp_id = exp.experiment_id
        all_tags = {"unlearn.config": cfg.name, **(tags or {})}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(exp_id, run_name=run_name, tags=all_tags)
        self.run_id = run.info.run_id
        self.experiment_id = exp_id
        del mlflow

    def log_params(self, params: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        ms = [
            Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None and v == v
        ]
        for i in range(0, len(ms), 500):
            self.client.log_batch(self.run_id, metrics=ms[i : i + 500])

    def step_callback(self, flush_every: int = 50):
        """A callback for the unlearner: buffers per-step metrics, logs them in batches."""

        def cb(stats: StepStats) -> None:
            if not self.enabled:
                return
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            for attr, key in STEP_KEYS.items():
                v = getattr(stats, attr)
                if v is not None and v == v:
                    self._buffer.append(Metric(key, float(v), now, stats.step))
            if stats.step % flush_every == 0:
                self.flush()

        return cb

    def flush(self) -> None:
        if self.enabled and self._buffer:
            for i in range(0, len(self._buffer), 900):
                self.client.log_batch(self.run_id, metrics=self._buffer[i : i + 900])
            self._buffer = []

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tag(self, key: str, value: str) -> None:
        if self.enabled:
            self.client.set_tag(self.run_id, key, value)

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled:
            self.flush()
            self.client.set_terminated(self.run_id, status=status)


def list_runs(
    cfg: Config, experiment: str | None = None, sort: str | None = None, max_results: int = 50
) -> list[dict[str, Any]]:
    """Runs of an experiment as plain rows (id, name, status, params of interest, metrics)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri(cfg))
    name = experiment or cfg.tracking.experiment
    exp = client.get_experiment_by_name(name)
    if exp is None:
        known = [e.name for e in client.search_experiments()]
        raise ConfigError(
            f"--experiment: {name!r} does not exist; known: {', '.join(known) or 'none'}"
        )
    order = [f"metrics.`{sort}` ASC"] if sort else ["attributes.start_time DESC"]
    runs = client.search_runs([exp.experiment_id], order_by=order, max_results=max_results)
    rows = []
    for r in runs:
        rows.append(
            {
                "run_id": r.info.run_id,
                "name": r.info.run_name,
                "status": r.info.status,
                "method": r.data.params.get("method.name", ""),
                "agent": r.data.params.get("agent.name", ""),
                **r.data.metrics,
            }
        )
    return rows
