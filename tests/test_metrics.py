from __future__ import annotations

import pytest
import torch

from unlearn.data import load_splits
from unlearn.metrics import (
    coverage_kl,
    evaluate,
    forget_rate,
    frechet_distance,
    per_class_rate,
    prepare,
    pul,
)


def test_fid_is_zero_on_itself_and_rises_with_noise():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 16, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    d = [frechet_distance(a, a + s * torch.randn(500, 16, generator=g)) for s in (0.1, 0.5, 1.0)]
    assert 0 < d[0] < d[1] < d[2]


def test_class_metrics_by_hand():
    probs = torch.eye(4)[torch.tensor([0, 0, 1, 2, 3, 3, 3, 3])]
    assert forget_rate(probs, [3]) == 0.5
    assert per_class_rate(probs, 4) == [0.25, 0.125, 0.125, 0.5]
    assert pul(0.5, 0.05) == pytest.approx(0.9)
    assert coverage_kl([0.25, 0.25, 0.25, 0.25], [0, 1, 2, 3]) == pytest.approx(0.0)
    assert coverage_kl([0.5, 0.5, 0.0, 0.0], [0, 1, 2, 3]) == pytest.approx(
        torch.log(torch.tensor(2.0)).item()
    )


@pytest.fixture(scope="module")
def shipped(request):
    """The shipped demo classifier and base model with the demo data (no training)."""
    from pathlib import Path

    from unlearn.config import load_config
    from unlearn.pretrain import load_pretrained

    cfg = load_config(
        Path(__file__).resolve().parents[1] / "configs/demo.yaml",
        [
            "workdir=/nonexistent-workdir-for-tests",
            "eval.num_samples=100",
            "eval.sampler_steps=5",
            "eval.elbo_timesteps=5",
        ],
    )
    model, clf, _ = load_pretrained(cfg)
    return cfg, model, clf, load_splits(cfg.data)


@pytest.mark.slow
def test_shipped_classifier_labels_real_heldout_images(shipped):
    cfg, _, clf, splits = shipped
    probs, _ = clf.predict(splits.heldout.images)
    for c in range(10):
        mask = splits.heldout.labels == c
        acc = float((probs[mask].argmax(1) == c).float().mean())
        # ~50 held-out images per class: one error costs 2 points
        assert acc >= 0.93, f"class {c}: {acc:.3f}"
    assert float((probs.argmax(1) == splits.heldout.labels).float().mean()) >= 0.97


def test_forget_rate_of_real_sevens(shipped):
    _, _, clf, splits = shipped
    sevens = splits.heldout.images[splits.heldout.labels == 7]
    probs, _ = clf.predict(sevens)
    assert forget_rate(probs, [7]) > 0.95
    for c in (0, 1, 3, 5):
        assert forget_rate(probs, [c]) < 0.05


def test_evaluation_is_deterministic(shipped):
    cfg, model, clf, splits = shipped
    data = prepare(model, cfg, splits, None)
    r1, s1 = evaluate(model, clf, cfg, data)
    r2, s2 = evaluate(model, clf, cfg, data)
    assert torch.equal(s1, s2)
    assert r1.to_dict() == r2.to_dict()
    assert 0 <= r1.forget_rate <= 1 and r1.fid >= 0 and r1.nelbo_bpd > 0
    m = r1.metrics()
    assert "eval/fid" in m and "eval/class_9" in m


def test_real_data_scores_better_than_noise(shipped):
    cfg, model, clf, splits = shipped
    data = prepare(model, cfg, splits, None)
    pick = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))[:300]
    real = splits.train.images[pick]  # the data is sorted by class: draw across classes
    noise = torch.rand_like(real) * 2 - 1
    r_real, _ = evaluate(model, clf, cfg, data, samples=real)
    r_noise, _ = evaluate(model, clf, cfg, data, samples=noise)
    assert r_real.fid < r_noise.fid / 10
    assert r_real.coverage_kl < r_noise.coverage_kl  # noise lands in one class, real data in all


def test_proxies_in_one_forward_equal_each_batch_alone(shipped):
    from unlearn.metrics import ProxyBatch, proxy_losses

    cfg, model, _, splits = shipped
    a = ProxyBatch.make(model, splits.heldout, 16, seed=1)
    b = ProxyBatch.make(model, splits.train, 24, seed=2)
    both = proxy_losses(model, a, b)
    with torch.no_grad():  # each batch alone, straight through the model's own loss
        alone = [float(model.denoise_loss(p.images, p.t, p.eps)) for p in (a, b)]
    assert both == pytest.approx(alone, rel=1e-5)
    assert both[0] != pytest.approx(both[1], rel=1e-3)  # two batches, two different values
    assert proxy_losses(model, a, b) == both  # fixed t and noise: deterministic
