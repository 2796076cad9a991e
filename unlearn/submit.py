"""Ray Jobs submission: run an ``unlearn`` command on a Ray cluster, follow it, mirror its exit.

``submit(address, ["unlearn", "tune", ...])`` uploads the working directory (without
virtual environments, run outputs, databases, VCS data), passes environment variables such
as ``MLFLOW_TRACKING_URI`` and returns the job's final status when following it.

Token authentication (Ray >= 2.5x turns it on for clusters it starts): the client sends
``Authorization: Bearer <token>`` with the token found where Ray itself looks —
``RAY_AUTH_TOKEN``, the file named by ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``.
Ray's own client adds that header only when ``RAY_AUTH_MODE=token`` is set in the client's
environment, so it is passed explicitly here.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unlearn.config import ConfigError

log = logging.getLogger(__name__)

#: never uploaded with the working directory (gitignore-style patterns, as Ray reads them)
EXCLUDES = [
    ".venv",
    "venv",
    ".git",
    "runs",
    "mlruns",
    "reports",
    "*.db",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".ruff_cache",
    "*.pt",
    "*.ckpt",
]
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class JobResult:
    """A submitted job: its id and, when it was followed to the end, its final status."""

    job_id: str
    address: str
    status: str
    message: str = ""

    @property
    def exit_code(self) -> int:
        """0 when the job succeeded, 1 when it failed or was stopped, 0 while still running."""
        if self.status in ("FAILED", "STOPPED"):
            return 1
        return 0


def check_token(token: str, source: str) -> str:
    """``token`` without surrounding whitespace, refused in one line when it cannot be an
    HTTP bearer token: empty, holding whitespace or a newline inside, or not printable ASCII
    (HTTP headers are latin-1; Ray's tokens are hex)."""
    tok = token.strip()
    if not tok:
        raise ConfigError(f"{source}: the Ray token is empty; set the cluster's token or unset it")
    for i, ch in enumerate(tok):
        if ch in "\r\n":
            raise ConfigError(
                f"{source}: the Ray token holds a line break at character {i + 1}; "
                "a token is one line"
            )
        if ch.isspace():
            raise ConfigError(f"{source}: the Ray token holds whitespace at character {i + 1}")
        if not (33 <= ord(ch) <= 126):
            raise ConfigError(
                f"{source}: the Ray token holds {ch!r} at character {i + 1}; "
                "a token is printable ASCII"
            )
    return tok


def find_token() -> str | None:
    """The cluster token, from the same places Ray reads it (first found wins), checked
    with :func:`check_token`; a token file that is named but missing is an error too."""
    if "RAY_AUTH_TOKEN" in os.environ:
        return check_token(os.environ["RAY_AUTH_TOKEN"], "RAY_AUTH_TOKEN")
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if named:
        p = Path(named).expanduser()
        if not p.is_file():
            raise ConfigError(f"RAY_AUTH_TOKEN_PATH: {p} is not a file")
        return check_token(_read(p), f"RAY_AUTH_TOKEN_PATH ({p})")
    p = Path("~/.ray/auth_token").expanduser()
    if p.is_file():
        return check_token(_read(p), str(p))
    return None


def _read(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"Ray token file {p}: cannot read it ({type(e).__name__})") from None


def _first_line(e: BaseException) -> str:
    """An exception as one short line (Ray's client errors carry whole server tracebacks)."""
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _check_address(address: str) -> str:
    if not address.startswith(("http://", "https://")):
        raise ConfigError(
            f"--address: {address!r} must be the dashboard URL, e.g. http://HEAD:8265"
        )
    return address.rstrip("/")


def client(address: str, token: str | None = None):
    """A JobSubmissionClient for ``address``; unreachable or refusing clusters raise
    :class:`ConfigError` within ``CONNECT_TIMEOUT_S`` seconds (Ray's client has no timeout)."""
    import requests

    address = _check_address(address)
    token = check_token(token, "token") if token is not None else find_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = requests.get(f"{address}/api/version", headers=headers, timeout=CONNECT_TIMEOUT_S)
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
        raise ConfigError(
            f"--address: no Ray cluster answers at {address} "
            f"({type(e).__name__}); is the dashboard port forwarded?"
        ) from None
    except requests.exceptions.RequestException as e:  # the request itself was malformed
        raise ConfigError(
            f"--address: cannot ask {address} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    _raise_for_auth(address, r.status_code, token)
    if r.status_code != 200:
        raise ConfigError(f"--address: {address} is not a Ray dashboard (HTTP {r.status_code})")
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address, headers=headers)


def _raise_for_auth(address: str, status: int, token: str | None) -> None:
    if status == 401:
        raise ConfigError(
            f"--address: the cluster at {address} requires a token and none was "
            "found; set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, or copy the "
            "cluster's token to ~/.ray/auth_token"
        )
    if status == 403:
        raise ConfigError(
            f"--address: the cluster at {address} refused the token "
            f"({'given' if token else 'none'}); use the cluster's own token"
        )


def parse_env(items: list[str]) -> dict[str, str]:
    """``["K=V", ...]`` -> mapping; a malformed item raises ConfigError."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--env {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def submit(
    address: str,
    entrypoint: list[str],
    env: dict[str, str] | None = None,
    working_dir: str | Path = ".",
    follow: bool = False,
    on_log: Callable[[str], None] | None = None,
    excludes: list[str] | None = None,
    token: str | None = None,
) -> JobResult:
    """Submit ``entrypoint`` as a Ray job; with ``follow``, stream its logs and wait for it.

    Args:
        address: the cluster's dashboard URL (``http://HEAD:8265``).
        entrypoint: the command, e.g. ``["unlearn", "tune", "--config", ...]``.
        env: environment variables of the job; an ``http(s)`` ``MLFLOW_TRACKING_URI`` of
            this shell is forwarded unless given.
        working_dir: uploaded and used as the job's working directory.
        follow: stream logs to ``on_log`` and return the final status.
        on_log: receives log chunks (the CLI prints them).
        excludes: upload exclusions (default :data:`EXCLUDES`).
        token: the cluster token (default: :func:`find_token`).
    """
    if not entrypoint:
        raise ConfigError("submit: give the command to run after --, e.g. -- unlearn tune ...")
    wd = Path(working_dir).expanduser().resolve()
    if not wd.is_dir():
        raise ConfigError(f"--working-dir: {wd} is not a directory")
    env = dict(env or {})
    local_uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if "MLFLOW_TRACKING_URI" not in env and local_uri.startswith(("http://", "https://")):
        env["MLFLOW_TRACKING_URI"] = local_uri
    c = client(address, token)
    runtime_env = {"working_dir": str(wd), "excludes": list(excludes or EXCLUDES), "env_vars": env}
    cmd = shlex.join(entrypoint)
    try:
        job_id = c.submit_job(entrypoint=cmd, runtime_env=runtime_env)
    except (ConnectionError, RuntimeError, OSError) as e:  # Ray's client: refused, upload failed
        raise ConfigError(
            f"submit: the cluster at {address} did not take the job: {_first_line(e)}"
        ) from None
    log.info("submitted %s as job %s", cmd, job_id)
    try:
        if not follow:
            return JobResult(job_id, address, str(c.get_job_status(job_id)))
        _follow(c, job_id, on_log or (lambda s: None))
        info = c.get_job_info(job_id)
    except (ConnectionError, RuntimeError, OSError) as e:  # the cluster went away meanwhile
        raise ConfigError(
            f"submit: lost the cluster at {address} while following job {job_id} "
            f"({_first_line(e)}); ask later with: ray job status {job_id}"
        ) from None
    return JobResult(job_id, address, str(info.status), info.message or "")


def _follow(c, job_id: str, on_log: Callable[[str], None]) -> None:
    import asyncio

    async def tail() -> None:
        async for chunk in c.tail_job_logs(job_id):
            on_log(chunk)

    try:
        asyncio.run(tail())
    except RuntimeError as e:  # the log stream closed early: fall back to polling
        log.warning("log stream ended (%s); polling the job status", e)
    wait(c, job_id)


def wait(c, job_id: str, timeout_s: float | None = None, poll_s: float = 1.0) -> str:
    """Poll until the job reaches a terminal status (or ``timeout_s`` passes)."""
    start = time.monotonic()
    while True:
        status = str(c.get_job_status(job_id))
        if status in TERMINAL or (timeout_s is not None and time.monotonic() - start > timeout_s):
            return status
        time.sleep(poll_s)
