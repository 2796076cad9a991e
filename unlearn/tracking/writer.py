"""The run writer: params, step rows of metrics, artifacts, tags, nested runs, resume, status.

Every driver (``unlearn run``, bench cells and the bench parent, the Tune callback and the
sweep parent, RL training, policy registration) writes through :class:`Tracker`; none of
them holds an MLflow client. Like stable-baselines3's logger, a caller does not care where
the numbers go: a disabled tracker accepts every call and does nothing.

Batching and truncation live here once: params are cut to MLflow's 6,000 characters and
sent 100 per request, metrics 900 per request, per-step metrics are buffered and flushed
every ``flush_every`` steps. A store that stops answering raises :class:`TrackingError`
(one line); afterwards the tracker is *lost*: every later call raises the same line at once
(:meth:`Tracker.end` returns), so the caller can keep its local outputs without waiting on a
dead server again.
Metric keys are namespaced: ``unlearn/lambda``, ``unlearn/retain_loss``, ``eval/fid`` ...
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn.config import Config
from unlearn.tracking.uri import (
    TrackingError,
    bound_http_waits,
    checked_uri,
    is_http,
    one_line,
)

if TYPE_CHECKING:  # torch loads only when a run does: a dead server is reported at once
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
PARAM_CHARS = 6000  # MLflow's limit on a param value
PARAMS_PER_CALL = 100
METRICS_PER_CALL = 900

#: a step row: the step and its metrics (non-finite values are dropped, MLflow refuses them)
Row = tuple[int, Mapping[str, Any]]


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version (``models:/NAME@ALIAS`` resolves to ``source``)."""

    name: str
    version: str
    alias: str
    source: str


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested config sections as dotted keys (``method.options.s``), as MLflow params."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def finite(v: Any) -> bool:
    """A real number MLflow accepts as a metric value (not a bool, NaN or infinity)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _errors() -> tuple[type[BaseException], ...]:
    """What a tracking store raises when it is down, refuses or breaks mid-request."""
    import requests
    from mlflow.exceptions import MlflowException

    return (MlflowException, requests.exceptions.RequestException, OSError)


class Tracker:
    """One MLflow run, written through a small interface.

    ``Tracker(cfg, ...)`` creates a run in ``cfg.tracking.experiment`` (checking the store
    first); :meth:`resume` reopens a run by id, :meth:`child` / :meth:`find_child` give
    nested runs, :meth:`end` sets the final status. Pickles without its client (Tune pickles
    its callbacks).
    """

    def __init__(
        self,
        cfg: Config,
        run_name: str | None = None,
        parent_run_id: str | None = None,
        tags: dict[str, str] | None = None,
    ):
        self._reset(cfg.tracking.enabled, None, None, None)
        if not self.enabled:
            return
        self.uri = checked_uri(cfg)
        artifacts = None
        if self.uri.startswith("sqlite:///"):
            artifacts = (cfg.workdir_path / "mlartifacts").as_uri()
        self.experiment_id = self._call(
            "open the experiment", _experiment, self.client, cfg.tracking.experiment, artifacts
        )
        self._create(run_name, {"unlearn.config": cfg.name, **(tags or {})}, parent_run_id)

    def _reset(self, enabled: bool, uri, run_id, experiment_id) -> None:
        self.enabled, self.uri, self.run_id, self.experiment_id = (
            enabled,
            uri,
            run_id,
            experiment_id,
        )
        self.lost: str | None = None
        self.status_at_find: str | None = None  # the run's status when find_child found it
        self._buffer: list = []
        self._client = None

    def _create(self, run_name: str | None, tags: dict[str, str], parent: str | None) -> None:
        if parent:
            tags = {**tags, "mlflow.parentRunId": parent}
        run = self._call(
            "create a run", self.client.create_run, self.experiment_id, run_name=run_name, tags=tags
        )
        self.run_id = run.info.run_id

    # -- other ways to get a run -----------------------------------------------------------
    @classmethod
    def attach(cls, uri: str | None, run_id: str | None, experiment_id: str | None = None):
        """The run ``run_id`` at ``uri`` as it is (a disabled tracker when ``uri`` is None)."""
        self = cls.__new__(cls)
        self._reset(uri is not None and run_id is not None, uri, run_id, experiment_id)
        if self.enabled and is_http(uri):
            bound_http_waits()
        return self

    @classmethod
    def resume(cls, uri: str, run_id: str) -> Tracker:
        """Reopen the run ``run_id`` (status RUNNING again); raises TrackingError if unknown."""
        self = cls.attach(uri, run_id)
        run = self._call(f"find run {run_id}", self.client.get_run, run_id)
        self.experiment_id = run.info.experiment_id
        if run.info.status != "RUNNING":
            self._call("reopen the run", self.client.update_run, run_id, status="RUNNING")
        return self

    def child(self, run_name: str | None = None, tags: dict[str, str] | None = None) -> Tracker:
        """A nested run under this one, in the same experiment."""
        kid = Tracker.attach(self.uri if self.enabled else None, None, self.experiment_id)
        if self.enabled:
            kid.enabled = True
            kid._create(run_name, dict(tags or {}), self.run_id)
        return kid

    def find_child(self, tags: Mapping[str, str]) -> Tracker | None:
        """The nested run of this one carrying all ``tags`` (a resumed driver's earlier run)."""
        if not self.enabled or self.lost:
            return None
        where = " and ".join(
            f"tags.`{k}` = '{v}'" for k, v in {**tags, "mlflow.parentRunId": self.run_id}.items()
        )
        found = self._call(
            "search runs",
            self.client.search_runs,
            [self.experiment_id],
            filter_string=where,
            max_results=1,
        )
        if not found:
            return None
        kid = Tracker.attach(self.uri, found[0].info.run_id, self.experiment_id)
        kid.status_at_find = found[0].info.status
        return kid

    def reopen(self) -> None:
        """Mark this run RUNNING again (a resumed trial)."""
        if self.enabled:
            self._call("reopen the run", self.client.update_run, self.run_id, status="RUNNING")

    def last_step(self, key: str) -> int:
        """The highest step logged for ``key`` (0 when none): what a resumed run already has."""
        if not self.enabled:
            return 0
        hist = self._call("read metrics", self.client.get_metric_history, self.run_id, key)
        return max((m.step for m in hist), default=0)

    @property
    def artifact_uri(self) -> str | None:
        if not self.enabled:
            return None
        return self._call("read the run", self.client.get_run, self.run_id).info.artifact_uri

    # -- writing ---------------------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            # the registry too is this store's, whatever the process's global registry URI
            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None}

    def _call(self, what: str, fn: Callable, *args, **kwargs):
        """``fn(*args)`` against the store; a failure marks the tracker lost, once, in one line."""
        if self.lost:
            raise TrackingError(self.lost)
        try:
            return fn(*args, **kwargs)
        except _errors() as e:
            where = f"MLflow server {self.uri}" if is_http(self.uri or "") else str(self.uri)
            self.lost = f"tracking: {where} failed to {what} ({one_line(e)})"
            self._buffer = []
            raise TrackingError(self.lost) from None

    def log_params(self, params: dict[str, Any]) -> None:
        """Nested params, flattened, each value cut to MLflow's 6,000 characters."""
        if not self.enabled:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:PARAM_CHARS]) for k, v in flatten(params).items()]
        for i in range(0, len(items), PARAMS_PER_CALL):
            batch = items[i : i + PARAMS_PER_CALL]
            self._call("log params", self.client.log_batch, self.run_id, params=batch)

    def log_rows(self, rows: Iterable[Row]) -> None:
        """Metrics of many steps at once; non-finite and missing values are skipped."""
        if not self.enabled:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        ms = [
            Metric(k, float(v), now, int(step))
            for step, row in rows
            for k, v in row.items()
            if finite(v)
        ]
        self._send(ms)

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        """One step row."""
        self.log_rows([(step, metrics)])

    def _send(self, metrics: list) -> None:
        for i in range(0, len(metrics), METRICS_PER_CALL):
            batch = metrics[i : i + METRICS_PER_CALL]
            self._call("log metrics", self.client.log_batch, self.run_id, metrics=batch)

    def step_callback(self, flush_every: int = 50) -> Callable[[StepStats], None]:
        """A callback for the unlearner: buffers per-step metrics, logs them in batches."""
        if not self.enabled:
            return lambda stats: None
        from mlflow.entities import Metric

        def cb(stats: StepStats) -> None:
            now = int(time.time() * 1000)
            for attr, key in STEP_KEYS.items():
                v = getattr(stats, attr)
                if finite(v):
                    self._buffer.append(Metric(key, float(v), now, stats.step))
            if stats.step % flush_every == 0:
                self.flush()

        return cb

    def flush(self) -> None:
        if self.enabled and self._buffer:
            buffer, self._buffer = self._buffer, []
            self._send(buffer)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            self._call(
                f"store {Path(path).name}",
                self.client.log_artifact,
                self.run_id,
                str(path),
                artifact_path,
            )

    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        """Every file under ``folder``."""
        if self.enabled:
            self._call(
                f"store {folder}",
                self.client.log_artifacts,
                self.run_id,
                str(folder),
                artifact_path,
            )

    def set_tag(self, key: str, value: str) -> None:
        if self.enabled:
            self._call("set a tag", self.client.set_tag, self.run_id, key, str(value))

    def log_onnx_model(
        self,
        onnx_model: Any,
        name: str,
        inputs: Mapping[str, int],
        outputs: Mapping[str, int],
        extra_files: list[Path] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Log an ONNX graph as an MLflow model of this run (``mlflow.onnx``); its model id.

        ``inputs`` / ``outputs``: each tensor's name and width, float32 and batched (the
        signature). ``extra_files`` are kept beside the graph (``extra_files/`` in the model).
        The pip requirements are named here, so MLflow does not infer them in a subprocess.
        """
        import mlflow
        import mlflow.onnx
        import numpy as np
        import onnx
        import onnxruntime
        from mlflow.models.signature import ModelSignature
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri
        from mlflow.types.schema import Schema, TensorSpec

        def schema(tensors: Mapping[str, int]) -> Schema:
            f32 = np.dtype(np.float32)
            return Schema([TensorSpec(f32, (-1, width), n) for n, width in tensors.items()])

        def log():
            # the fluent API writes where this tracker does, without a progress bar per file
            with _use_tracking_uri(self.uri), _env(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
                return mlflow.onnx.log_model(
                    onnx_model,
                    name=name,
                    run_id=self.run_id,
                    signature=ModelSignature(inputs=schema(inputs), outputs=schema(outputs)),
                    save_as_external_data=False,  # one file: model.onnx
                    onnx_execution_providers=["CPUExecutionProvider"],
                    pip_requirements=[
                        f"mlflow=={mlflow.__version__}",
                        f"onnx=={onnx.__version__}",
                        f"onnxruntime=={onnxruntime.__version__}",
                    ],
                    extra_files=[str(f) for f in extra_files or []] or None,
                    metadata=metadata,
                )

        return self._call(f"log the model {name}", log).model_id

    def register_model(
        self,
        name: str,
        artifact_path: str,
        alias: str,
        tags: dict[str, str] | None = None,
        description: str = "",
        model_id: str | None = None,
    ) -> ModelVersion:
        """Register this run's ``artifact_path`` folder (or the logged MLflow model
        ``model_id``) as a new version of ``name``."""
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri

        source = f"models:/{model_id}" if model_id else f"{self.artifact_uri}/{artifact_path}"
        self._call("register the model", _registered_model, self.client, name, description)
        # MLflow resolves a models:/ source through the fluent API's store: this one
        with _use_tracking_uri(self.uri) if model_id else contextlib.nullcontext():
            mv = self._call(
                "register the model",
                self.client.create_model_version,
                name,
                source,
                run_id=self.run_id,
                tags=tags or {},
                model_id=model_id,
            )
        self._call("set the alias", self.client.set_registered_model_alias, name, alias, mv.version)
        return ModelVersion(name, str(mv.version), alias, source)

    def end(self, status: str = "FINISHED") -> None:
        """Flush and set the final status; a lost tracker returns at once (nothing answers)."""
        if not self.enabled or self.lost:
            return
        try:
            self.flush()
            self._call("end the run", self.client.set_terminated, self.run_id, status=status)
        except TrackingError as e:
            log.warning("%s", e)


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Environment variables set inside the block, restored after it."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _registered_model(client, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=description)
    except MlflowException as e:
        if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code):
            raise


def _experiment(client, name: str, artifact_location: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)
