"""Where an exported policy comes from: a local directory, or ``models:/NAME@ALIAS`` (or
``models:/NAME/VERSION``) in the MLflow model registry, downloaded to a temporary folder.

Used by :func:`unlearn.export.load_policy`; registering a policy is
:mod:`unlearn.export.registry`. mlflow is imported only for ``models:/`` URIs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from unlearn.config import ConfigError


def resolve_policy_dir(path: str, tracking_uri: str = "") -> Path:
    """A local policy directory for ``path`` (a directory, or a ``models:/`` registry URI)."""
    if path.startswith("models:/"):
        import mlflow
        from mlflow.exceptions import MlflowException

        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
        if not uri:
            raise ConfigError(
                f"agent.path: {path} needs an MLflow tracking URI "
                "(agent.options.tracking_uri or MLFLOW_TRACKING_URI)"
            )
        dst = tempfile.mkdtemp(prefix="unlearn-policy-")
        try:
            mlflow.set_registry_uri(uri)
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=path, dst_path=dst, tracking_uri=uri
            )
        except MlflowException as e:
            raise ConfigError(f"policy: cannot load {path} from {uri}: {e.message}") from None
        return Path(local)
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ConfigError(f"policy: {path!r} is not a directory (expected an exported policy)")
    return p.resolve()
