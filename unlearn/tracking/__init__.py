"""The one tracking surface: every MLflow call of the project goes through this package.

- :mod:`~unlearn.tracking.uri`: where runs go, bounded HTTP waits, the health check;
- :mod:`~unlearn.tracking.writer`: :class:`Tracker`, the run writer (params, step rows,
  artifacts, tags, nested runs, resume, model registration, final status);
- :mod:`~unlearn.tracking.query`: runs as rows, registered artifacts as local files.

MLflow itself is imported inside the functions, so ``import unlearn.tracking`` stays light.
"""

from __future__ import annotations

from unlearn.config import Config
from unlearn.tracking.query import download, list_runs
from unlearn.tracking.uri import (
    HTTP_DEFAULTS,
    TrackingError,
    bound_http_waits,
    check_server,
    checked_uri,
    is_http,
    tracking_uri,
)
from unlearn.tracking.writer import STEP_KEYS, ModelVersion, Row, Tracker, flatten


def preflight(cfg: Config) -> str | None:
    """The checked tracking URI of ``cfg`` (None when tracking is off): run before heavy work."""
    return checked_uri(cfg) if cfg.tracking.enabled else None


__all__ = [
    "HTTP_DEFAULTS",
    "STEP_KEYS",
    "ModelVersion",
    "Row",
    "Tracker",
    "TrackingError",
    "bound_http_waits",
    "check_server",
    "checked_uri",
    "download",
    "flatten",
    "is_http",
    "list_runs",
    "preflight",
    "tracking_uri",
]
