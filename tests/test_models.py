from __future__ import annotations

import json

import pytest
import torch

from unlearn.config import ConfigError, ModelConfig
from unlearn.models import (
    Classifier,
    ConvVAE,
    DiffusionModel,
    ModelLoadError,
    build_model,
    check_compatible,
    load_model,
    save_model,
)

TINY = dict(block_out_channels=(8, 16), norm_num_groups=4, attention=False, num_train_timesteps=50)


def tiny(kind: str):
    return build_model(ModelConfig(kind=kind, **TINY), channels=1, resolution=8, num_classes=10)


@pytest.mark.parametrize("kind", ["ddpm", "cond_ddpm", "vpsde"])
def test_diffusion_round_trip_and_sampling(kind, tmp_path):
    torch.manual_seed(0)
    m = tiny(kind)
    assert isinstance(m, DiffusionModel) and m.kind == kind
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4) if kind == "cond_ddpm" else None
    loss = m.denoise_loss(x, labels=labels, generator=g)
    assert torch.isfinite(loss)
    save_model(m, tmp_path / "m")
    m2 = load_model(tmp_path / "m")
    assert m2.kind == kind
    for a, b in zip(m.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    s1 = m.sample(3, steps=3, generator=torch.Generator().manual_seed(1), labels=labels)
    s2 = m2.sample(3, steps=3, generator=torch.Generator().manual_seed(1), labels=labels)
    assert s1.shape == (3, 1, 8, 8) and torch.equal(s1, s2)
    assert not list((tmp_path).glob(".m.*")), "temporary directories left behind"


def test_vpsde_continuous_time():
    m = tiny("vpsde")
    t = m.sample_t(100, torch.Generator().manual_seed(0))
    assert t.is_floating_point() and 0 < t.min() and t.max() <= 1
    nl = m.noise_level(torch.tensor([1e-3, 0.5, 1.0]))
    # variance preserving: gamma² + sigma² = 1, noise grows with t
    assert torch.allclose(nl.gamma**2 + nl.sigma**2, torch.ones(3, 1, 1, 1), atol=1e-6)
    assert nl.sigma.flatten().diff().gt(0).all()


def test_cond_ddpm_uses_labels_and_null_class():
    m = tiny("cond_ddpm")
    assert m.unet.config.num_class_embeds == 11 and m.null_class == 10
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 10])
    with torch.no_grad():
        torch.nn.init.normal_(m.unet.class_embedding.weight)
        a = m.eps(x, t, torch.tensor([1, 1]))
        b = m.eps(x, t, torch.tensor([2, 2]))
    assert not torch.allclose(a, b)


def test_vae_and_classifier_round_trip(tmp_path):
    vae = tiny("vae")
    assert isinstance(vae, ConvVAE)
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    assert vae.neg_elbo(x).shape == (3,)
    save_model(vae, tmp_path / "vae")
    assert isinstance(load_model(tmp_path / "vae"), ConvVAE)
    clf = Classifier(1, 8, 10)
    save_model(clf, tmp_path / "clf")
    c2 = load_model(tmp_path / "clf")
    p1, f1 = clf.predict(x)
    p2, f2 = c2.predict(x)
    assert torch.allclose(p1, p2) and f1.shape == (3, 128)


def test_plain_diffusers_unet_directory_loads(tmp_path):
    """A directory written by diffusers itself (the same call serves hub ids)."""
    m = tiny("ddpm")
    m.unet.save_pretrained(tmp_path / "plain")
    loaded = load_model(tmp_path / "plain")
    assert isinstance(loaded, DiffusionModel) and loaded.kind == "ddpm"


def test_bad_model_directories(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="not a model directory"):
        load_model(tmp_path / "empty")
    save_model(tiny("ddpm"), tmp_path / "m")
    w = next((tmp_path / "m" / "unet").glob("*.safetensors"))
    w.write_bytes(w.read_bytes()[:100])  # truncated weights
    with pytest.raises(ModelLoadError, match="cannot load UNet"):
        load_model(tmp_path / "m")
    save_model(Classifier(1, 8, 10), tmp_path / "c")
    (tmp_path / "c" / "unlearn.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="corrupted"):
        load_model(tmp_path / "c")
    (tmp_path / "c" / "unlearn.json").write_text(json.dumps({"family": "gan"}))
    with pytest.raises(ModelLoadError, match="unknown family"):
        load_model(tmp_path / "c")


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ConfigError, match="model expects 1x8x8 images but the data is 1x16x16"):
        check_compatible(tiny("ddpm"), 1, 16, "model")
