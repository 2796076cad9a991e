"""Shared fixtures: tiny configs and models built from config (seconds, no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "2")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = Path(__file__).resolve().parents[1]

TINY = [
    "data.name=digits",
    "data.resolution=8",
    "model.block_out_channels=[8,16]",
    "model.norm_num_groups=4",
    "model.attention=false",
    "model.num_train_timesteps=100",
    "pretrain.steps=30",
    "pretrain.checkpoint_every=10",
    "pretrain.classifier_steps=150",
    "eval.num_samples=60",
    "eval.sampler_steps=4",
    "eval.proxy_batch=16",
    "eval.elbo_timesteps=5",
    "unlearn.steps=6",
    "unlearn.batch_size=8",
    "forget.classes=[3]",
    "tracking.enabled=false",
]


@pytest.fixture
def tiny_overrides(tmp_path: Path) -> list[str]:
    return [*TINY, f"workdir={tmp_path / 'work'}"]


@pytest.fixture
def tiny_cfg(tiny_overrides: list[str]):
    from unlearn.config import load_config

    return load_config(None, tiny_overrides)


@pytest.fixture
def demo_cfg(tmp_path: Path):
    """The shipped demo config, with a private workdir (uses the shipped assets)."""
    from unlearn.config import load_config

    return load_config(REPO / "configs" / "demo.yaml", [f"workdir={tmp_path / 'work'}"])


@pytest.fixture(scope="session")
def tiny_workdir(tmp_path_factory) -> Path:
    """A workdir holding a pretrained tiny base model + classifier (trained once per session)."""
    from unlearn.config import load_config
    from unlearn.pretrain import pretrain

    wd = tmp_path_factory.mktemp("tiny-work")
    pretrain(load_config(None, [*TINY, f"workdir={wd}"]))
    return wd


@pytest.fixture
def tiny_ready(tiny_workdir: Path):
    """Tiny config whose base model and classifier already exist (shared, read-only)."""
    from unlearn.config import load_config

    return load_config(None, [*TINY, f"workdir={tiny_workdir}"])


def tiny_model(kind: str) -> torch.nn.Module:
    """A seeded tiny model of ``kind`` (8x8, one channel, 10 classes), built from config."""
    from unlearn.config import ModelConfig
    from unlearn.models import build_model

    torch.manual_seed(0)
    cfg = ModelConfig(
        kind=kind,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        attention=False,
        num_train_timesteps=100,
        latent_channels=2,
    )
    return build_model(cfg, channels=1, resolution=8, num_classes=10)


@pytest.fixture(scope="module")
def split():
    """Retain / forget split of sklearn's digits at 8x8, forgetting class 3."""
    from unlearn.config import DataConfig, ForgetConfig
    from unlearn.data import load_splits, split_forget

    splits = load_splits(DataConfig(name="digits", resolution=8))
    return split_forget(splits.train, ForgetConfig(classes=(3,)))
