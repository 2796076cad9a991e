"""Reading the store back: runs of an experiment as rows, registered artifacts as files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from unlearn.config import Config, ConfigError
from unlearn.tracking.liveness import reap
from unlearn.tracking.uri import TrackingError, check_server, checked_uri, one_line


def list_runs(
    cfg: Config, experiment: str | None = None, sort: str | None = None, max_results: int = 50
) -> list[dict[str, Any]]:
    """Runs of an experiment as plain rows (id, name, status, params of interest, metrics).

    A RUNNING run whose process is gone (killed) is set to KILLED first (:func:`reap`)."""
    uri = checked_uri(cfg)  # before mlflow loads: a dead server in seconds
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = experiment or cfg.tracking.experiment
    try:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            known = [e.name for e in client.search_experiments()]
            raise ConfigError(
                f"--experiment: {name!r} does not exist; known: {', '.join(known) or 'none'}"
            )
        order = [f"metrics.`{sort}` ASC"] if sort else ["attributes.start_time DESC"]
        runs = client.search_runs([exp.experiment_id], order_by=order, max_results=max_results)
        ended = reap(client, runs)  # RUNNING runs whose process is gone: KILLED
    except MlflowException as e:
        raise TrackingError(
            f"tracking: {uri} cannot list runs of {name!r} ({one_line(e)})"
        ) from None
    rows = []
    for r in runs:
        rows.append(
            {
                "run_id": r.info.run_id,
                "name": r.info.run_name,
                "status": ended.get(r.info.run_id, r.info.status),
                "method": r.data.params.get("method.name", ""),
                "agent": r.data.params.get("agent.name", ""),
                **r.data.metrics,
            }
        )
    return rows


def download(artifact_uri: str, uri: str = "", what: str = "agent.path") -> Path:
    """A local copy of ``artifact_uri`` (``models:/NAME@ALIAS``, ``runs:/...``) from ``uri``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        raise ConfigError(
            f"{what}: {artifact_uri} needs an MLflow tracking URI "
            "(agent.options.tracking_uri or MLFLOW_TRACKING_URI)"
        )
    check_server(uri)
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking._model_registry import utils as registry

    dst = tempfile.mkdtemp(prefix="unlearn-artifact-")
    # a models:/ URI resolves through the global registry URI (and MLflow exports it to the
    # environment): this store's for the download only, the process's own restored after it
    saved, saved_env = registry._registry_uri, os.environ.get("MLFLOW_REGISTRY_URI")
    try:
        mlflow.set_registry_uri(uri)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=artifact_uri, dst_path=dst, tracking_uri=uri
        )
    except MlflowException as e:
        raise ConfigError(f"policy: cannot load {artifact_uri} from {uri}: {one_line(e)}") from None
    finally:
        registry._registry_uri = saved
        if saved_env is None:
            os.environ.pop("MLFLOW_REGISTRY_URI", None)
        else:
            os.environ["MLFLOW_REGISTRY_URI"] = saved_env
    return Path(local)
