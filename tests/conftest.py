"""Shared fixtures: tiny configs and models built from config (seconds, no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

# OpenMP threads that wait for each other sleep instead of spinning: with two test workers
# (and Ray trials) sharing two cores, spinning threads made 2-thread steps 2-5x slower
# (measured), enough for a sweep to run into the per-test timeout. Read when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import TINY, sdxl_cfg, share_pretrained, t2i_cfg  # noqa: E402

# two CPU threads per test process; under pytest-xdist (``make test`` runs two workers) one
# each, so the workers share the machine's two cores instead of fighting over them
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "2")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="session")
def i2i_pretrained(tmp_path_factory) -> Path:
    """A workdir holding both tiny image-completion models (inpaint_ddpm, mae) and their
    classifier, trained once per session; shared and read-only."""
    from helpers import i2i_cfg

    from unlearn.pretrain import pretrain

    wd = tmp_path_factory.mktemp("i2i-pretrained")
    for kind in ("inpaint_ddpm", "mae"):
        pretrain(i2i_cfg(kind, wd))
    return wd


@pytest.fixture(scope="session")
def t2i_pretrained(tmp_path_factory) -> Path:
    """A workdir holding the tiny text-to-image pipeline and its classifier, trained once per
    session. Shared and read-only (its files are write-protected): a test that changes the
    pipeline changes ``t2i_pipeline_copy``."""
    from unlearn.pretrain import pretrain

    wd = tmp_path_factory.mktemp("t2i-pretrained")
    pretrain(t2i_cfg(workdir=wd))
    for f in (wd / "pretrained").rglob("*"):
        if f.is_file():
            f.chmod(0o444)
    return wd


@pytest.fixture(scope="module")
def t2i_workdir(tmp_path_factory, t2i_pretrained: Path) -> Path:
    """A module's own workdir (runs, evaluations, reports) over the session's tiny pipeline."""
    return share_pretrained(tmp_path_factory.mktemp("t2i-work"), t2i_pretrained)


@pytest.fixture
def t2i_pipeline_copy(t2i_pretrained: Path, tmp_path: Path) -> Path:
    """A fresh, writable copy of the session's tiny pipeline folder (for a test to change)."""
    import shutil

    (pipeline,) = (t2i_pretrained / "pretrained").glob("t2i-*")
    out = shutil.copytree(pipeline, tmp_path / "pipeline-copy")
    for f in out.rglob("*"):
        if f.is_file():
            f.chmod(0o644)
    return out


@pytest.fixture(scope="session")
def sdxl_pretrained(tmp_path_factory) -> Path:
    """A workdir holding the tiny SDXL pipeline and its classifier, trained once per session
    (shared and read-only, as ``t2i_pretrained``)."""
    from unlearn.pretrain import pretrain

    wd = tmp_path_factory.mktemp("sdxl-pretrained")
    pretrain(sdxl_cfg(workdir=wd))
    for f in (wd / "pretrained").rglob("*"):
        if f.is_file():
            f.chmod(0o444)
    return wd


@pytest.fixture(scope="module")
def sdxl_workdir(tmp_path_factory, sdxl_pretrained: Path) -> Path:
    """A module's own workdir over the session's tiny SDXL pipeline."""
    return share_pretrained(tmp_path_factory.mktemp("sdxl-work"), sdxl_pretrained)


@pytest.fixture
def tiny_ready(tiny_workdir: Path):
    """Tiny config whose base model and classifier already exist (shared, read-only)."""
    from unlearn.config import load_config

    return load_config(None, [*TINY, f"workdir={tiny_workdir}"])


@pytest.fixture(scope="module")
def split():
    """Retain / forget split of sklearn's digits at 8x8, forgetting class 3."""
    from unlearn.config import DataConfig, ForgetConfig
    from unlearn.data import load_splits, split_forget

    splits = load_splits(DataConfig(name="digits", resolution=8))
    return split_forget(splits.train, ForgetConfig(classes=(3,)))


#: the test files that take longest (measured under ``make test``), longest first. ``make
#: test`` hands whole files to its two workers in collection order (``--dist loadfile
#: --no-loadscope-reorder``): the long ones go first and the short ones fill in after, so no
#: long file is left to run alone at the end
LONGEST_FIRST = (
    "test_docs_commands.py",
    "test_demo.py",
    "test_tune.py",
    "test_jobs.py",
    "test_multinode.py",
    "test_t2i_rl_bench.py",
    "test_mlflow_server.py",
    "test_sdxl_drivers.py",
    "test_rl.py",
    "test_t2i_drivers.py",
    "test_i2i_drivers.py",
    "test_audit.py",
    "test_policy.py",
    "test_guard.py",
    "test_t2i_robustness.py",
    "test_t2i_memorise.py",
    "test_cli.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole
