from __future__ import annotations

import pytest
import torch

from unlearn.config import ConfigError, DataConfig, ForgetConfig, OutlierConfig
from unlearn.data import OUTLIER_LABEL, inject_outlier, load_splits, split_forget


@pytest.fixture(scope="module")
def mnist():
    return load_splits(DataConfig(name="mnist", resolution=16))


@pytest.mark.slow
def test_mnist_offline_shapes_and_range(mnist):
    assert mnist.train.images.shape[1:] == (1, 16, 16)
    assert len(mnist.train) + len(mnist.heldout) == 5000
    assert mnist.train.images.min() >= -1 and mnist.train.images.max() <= 1
    # stratified: every class in the held-out split, 10% of each
    assert torch.bincount(mnist.heldout.labels).tolist() == [50] * 10


@pytest.mark.slow
def test_split_is_deterministic_and_seeded(mnist):
    again = load_splits(DataConfig(name="mnist", resolution=16))
    assert torch.equal(again.heldout.images, mnist.heldout.images)
    other = load_splits(DataConfig(name="mnist", resolution=16, split_seed=1))
    assert not torch.equal(other.heldout.images, mnist.heldout.images)


def test_digits_and_resolution():
    s = load_splits(DataConfig(name="digits", resolution=12))
    assert s.train.images.shape[-1] == 12 and s.train.num_classes == 10


def test_forget_classes_disjoint_from_retain(mnist):
    split = split_forget(mnist.train, ForgetConfig(classes=(7,)))
    assert (split.forget.labels == 7).all()
    assert not (split.retain.labels == 7).any()
    assert len(split.retain) + len(split.forget) == len(mnist.train)
    # as sets of training indices: no overlap, full cover
    assert not (split.forget_mask & ~split.forget_mask).any()
    assert int(split.forget_mask.sum()) == len(split.forget)


def test_forget_indices_and_outlier(mnist):
    cfg = ForgetConfig(indices=(0, 5), outlier=OutlierConfig(copies=20))
    train, outlier = inject_outlier(mnist.train, cfg)
    assert len(train) == len(mnist.train) + 20
    split = split_forget(train, cfg, outlier)
    assert len(split.forget) == 22
    assert (split.forget.labels == OUTLIER_LABEL).sum() == 20
    assert not (split.retain.labels == OUTLIER_LABEL).any()
    # the outlier lies far from every real digit
    d = (mnist.train.images - outlier).pow(2).flatten(1).mean(1).sqrt()
    assert d.min() > 0.5


@pytest.mark.parametrize(
    "cfg, msg",
    [
        (ForgetConfig(classes=(12,)), "forget.classes: class 12 is not in the data"),
        (ForgetConfig(), "forget set is empty"),
        (ForgetConfig(indices=(99999,)), "forget.indices: 99999 is out of range"),
    ],
)
def test_bad_forget_specs(mnist, cfg, msg):
    with pytest.raises(ConfigError, match=msg):
        split_forget(mnist.train, cfg)


def test_folder_dataset(tmp_path):
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("RGB", (10, 10), (i * 40, 10, 10)).save(tmp_path / c / f"{i}.png")
    s = load_splits(
        DataConfig(name="folder", root=str(tmp_path), resolution=8, heldout_fraction=0.3)
    )
    assert s.train.channels == 3 and s.train.num_classes == 2
    with pytest.raises(ConfigError, match="data.root"):
        load_splits(DataConfig(name="folder", root=str(tmp_path / "missing")))
