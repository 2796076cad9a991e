"""Where runs go, and whether that place answers: the URI, bounded HTTP waits, a health check.

Default store: ``sqlite:///<workdir>/mlflow.db`` (absolute; MLflow 3 refuses file stores).
``MLFLOW_TRACKING_URI`` wins over the config; an ``http://`` server is the multi-node setting.

MLflow's own HTTP defaults retry a refused connection for minutes (7 retries, backoff
factor 2, 120 s per request); a tracking call on a dead server then blocks a run for about
four minutes before a traceback. :func:`bound_http_waits` sets bounded defaults (only where
the user has not set a value), and :func:`check_server` asks ``/health`` within seconds
before any command writes or reads runs, once per store and process: later trackers of the
same command (bench cells, a driver's child runs) do not ask again.
"""

from __future__ import annotations

import os
from pathlib import Path

from unlearn.config import Config, ConfigError

#: MLflow's HTTP settings and the bounded values used unless the environment sets them:
#: a refused connection fails in ~3 s (3 attempts, waits 0 s and 2 s), a hung one in ~35 s.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
HEALTH_TIMEOUT_S = 5.0
_ANSWERED: set[str] = set()  # stores check_server has found answering in this process


class TrackingError(ConfigError):
    """The tracking store does not answer (or stopped answering); the message is one line."""


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def bound_http_waits() -> None:
    """Bounded retry / timeout defaults for MLflow's HTTP client (user settings win)."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


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


def check_server(uri: str) -> str:
    """``uri`` once it answers: an http server's ``/health`` within seconds, a sqlite folder
    that exists (created) and is writable. Anything else raises :class:`TrackingError`.
    A store that answered once is not asked again: its later failures surface in the calls."""
    if uri in _ANSWERED:
        return uri
    if is_http(uri):
        import urllib.error
        import urllib.request

        bound_http_waits()
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT_S) as r:
                ok = r.status == 200
        except urllib.error.HTTPError:  # it answered, with an error status
            ok = False
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise TrackingError(
                f"tracking: MLflow server {uri} is not reachable ({reason}); start it "
                "(unlearn ui) or unset MLFLOW_TRACKING_URI"
            ) from None
        if not ok:
            raise TrackingError(f"tracking: MLflow server {uri} is not healthy (/health != 200)")
    elif uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(
                f"tracking.uri: cannot create {folder} for {uri} ({e.strerror})"
            ) from None
        if not os.access(folder, os.W_OK):
            raise TrackingError(f"tracking.uri: {folder} is not writable (store {uri})")
    _ANSWERED.add(uri)
    return uri


def checked_uri(cfg: Config) -> str:
    """:func:`tracking_uri` of ``cfg``, checked with :func:`check_server`."""
    return check_server(tracking_uri(cfg))


def one_line(e: BaseException) -> str:
    """A tracking failure as one short line (MLflow pastes whole HTTP stacks into messages)."""
    text = str(getattr(e, "message", None) or e).strip()
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text or "Timeout" in text:
        return "timed out"
    if "Max retries exceeded" in text:
        return "no answer after retries"
    return text.splitlines()[0][:200] if text else type(e).__name__
