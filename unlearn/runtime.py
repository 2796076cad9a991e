"""Devices, seeds and progress reporting shared by every entry point."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator

import torch

from unlearn.config import ConfigError

ProgressFn = Callable[[str, int, int], None]
"""progress(task, done, total): the library reports, the CLI draws bars."""


def no_progress(task: str, done: int, total: int) -> None:
    return None


_PROGRESS: contextvars.ContextVar[ProgressFn] = contextvars.ContextVar(
    "progress", default=no_progress
)


@contextlib.contextmanager
def reporting(progress: ProgressFn) -> Iterator[None]:
    """Within the block, :func:`current_progress` is ``progress``: work deep inside a task's
    setup (a generated data set) reports to the caller's bars without being handed them."""
    token = _PROGRESS.set(progress)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def current_progress() -> ProgressFn:
    """The progress callback of the innermost :func:`reporting` block (none: no-op)."""
    return _PROGRESS.get()


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} requested but no CUDA GPU is available")
        return torch.device(name)
    raise ConfigError(f"device: {name!r} is not allowed; expected auto, cpu, cuda or cuda:N")


def set_threads(n: int | None = None) -> None:
    """Match torch's intra-op threads to the CPUs this process was given."""
    if n is None:
        n = int(os.environ.get("UNLEARN_NUM_THREADS", "0")) or len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, n))


def warmup_cosine_lr(step: int, total: int, base: float, warmup: int = 200) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    import math

    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def ema_update(ema, model, step: int, cap: float) -> None:
    """One exponential-moving-average step of ``ema``'s parameters towards ``model``'s, with
    the warm-up decay min(cap, (1 + step) / (10 + step))."""
    import torch

    decay = min(cap, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(pm, 1 - decay)


def save_checkpoint(path, state: dict) -> None:
    """``torch.save`` into a temporary sibling, then rename: a crash never leaves half a file."""
    from pathlib import Path

    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path) -> dict | None:
    """A checkpoint written by :func:`save_checkpoint`, or None (missing or unreadable: a
    truncated checkpoint is discarded and training restarts)."""
    import logging
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        logging.getLogger(__name__).warning("ignoring unreadable checkpoint %s (%s)", path, e)
        return None


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join ``address`` (or ``RAY_ADDRESS``, set inside a Ray job), else start a private local
    instance (never a leftover cluster; Ray sets up its token auth itself).

    Returns whether this call started or joined Ray (then the caller shuts it down).
    """
    import logging

    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address and address != "local":
        check_ray_address(address)
        ray.init(address=address, **quiet)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
    return True


def check_ray_address(address: str, timeout_s: float = 5.0) -> None:
    """A ``HOST:PORT`` (or ``ray://HOST:PORT``) Ray address must accept a connection within
    ``timeout_s``: ``ray.init`` on a dead address retries for minutes, then raises a traceback."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and friends: Ray resolves them itself
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(
            f"--address: no Ray cluster answers at {address} "
            f"({e.strerror or type(e).__name__}); start one with `ray start "
            "--head` or leave --address out for a local Ray"
        ) from None
