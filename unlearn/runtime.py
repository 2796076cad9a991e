"""Devices, seeds and progress reporting shared by every entry point."""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import numpy as np
import torch

from unlearn.config import ConfigError

ProgressFn = Callable[[str, int, int], None]
"""progress(task, done, total): the library reports, the CLI draws bars."""


def no_progress(task: str, done: int, total: int) -> None:
    return None


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


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator for explicit draws."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_threads(n: int | None = None) -> None:
    """Match torch's intra-op threads to the CPUs this process was given."""
    if n is None:
        n = int(os.environ.get("UNLEARN_NUM_THREADS", "0")) or len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, n))
