"""The image-to-image family on tiny models built from config: masks, completions, saving,
the unlearning methods, the proxy retain set and refused input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import cli_here, i2i_cfg, share_pretrained, tiny_model, tiny_pipeline

from unlearn.config import MethodConfig
from unlearn.families import family_of, family_of_dir, family_of_model
from unlearn.families.i2i.pretrain import build_for
from unlearn.families.i2i.task import retain_data
from unlearn.methods import check_compatible, get_method
from unlearn.methods.i2i import I2I_METHODS, matched_noise
from unlearn.models import save_model
from unlearn.models.i2i import load_i2i, make_mask, save_i2i
from unlearn.types import Batch

KINDS = ("inpaint_ddpm", "mae")


def tiny(kind: str, tmp_path: Path, tasks: str = "[inpaint,outpaint]"):
    torch.manual_seed(0)
    cfg = i2i_cfg(kind, tmp_path, f"i2i.train_tasks={tasks}")
    model = build_for(cfg, 1, 8, 10)
    model.set_mask(cfg.i2i.task, cfg.i2i.mask_ratio)
    return model


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand((n, 1, 8, 8), generator=torch.Generator().manual_seed(seed)) * 2 - 1


# -- masks and models --------------------------------------------------------------------------


def test_inpaint_hides_the_centre_and_outpaint_the_border():
    inner = make_mask("inpaint", 0.25, 16, 2)[0, 0]
    outer = make_mask("outpaint", 0.75, 16, 2)[0, 0]
    assert float(inner.mean()) == pytest.approx(0.25)
    assert float(outer.mean()) == pytest.approx(0.75)
    assert inner[8, 8] == 1 and inner[0, 0] == 0  # centre hidden, corner given
    assert outer[8, 8] == 0 and outer[0, 0] == 1  # centre given, corner hidden
    # whole 2-pixel patches: every patch is all hidden or all given
    patches = inner.unfold(0, 2, 2).unfold(1, 2, 2).reshape(-1, 4)
    assert bool(((patches.sum(1) == 0) | (patches.sum(1) == 4)).all())


@pytest.mark.parametrize("kind", KINDS)
def test_completion_keeps_the_given_pixels_and_fills_the_hidden_ones(kind, tmp_path):
    model = tiny(kind, tmp_path)
    x = images(4, 0)
    for task in ("inpaint", "outpaint"):
        model.set_mask(task, 0.5)
        m = model.mask(x)
        done = model.complete(x, steps=2, generator=torch.Generator().manual_seed(0))
        assert torch.equal(done * (1 - m), x * (1 - m))
        assert not torch.equal(done * m, x * m)
        assert done.abs().max() <= 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_saved_model_loads_with_the_same_completions_and_family(kind, tmp_path):
    model = tiny(kind, tmp_path).eval()
    path = save_model(model, tmp_path / "m")
    assert (path / "model.safetensors").is_file() and not list(path.glob("*.bin"))
    back = load_i2i(path)
    x, g = images(3, 1), 5
    a = model.complete(x, steps=2, generator=torch.Generator().manual_seed(g))
    b = back.complete(x, steps=2, generator=torch.Generator().manual_seed(g))
    assert torch.equal(a, b)
    assert family_of_dir(path).name == "i2i" and family_of_model(back).name == "i2i"
    assert back.tasks == ("inpaint", "outpaint")


def test_the_encoders_are_the_down_path_and_the_vit(tmp_path):
    unet_model = tiny("inpaint_ddpm", tmp_path)
    u = unet_model.unet
    enc = {id(p) for p in unet_model.encoder_parameters()}
    assert all(id(p) in enc for p in u.down_blocks.parameters())
    assert not any(id(p) in enc for p in u.up_blocks.parameters())
    mae = tiny("mae", tmp_path)
    assert {id(p) for p in mae.encoder_parameters()} == {id(p) for p in mae.vit.parameters()}
    assert not any(id(p) in enc for p in mae.mae.decoder.parameters())


def test_the_masked_autoencoder_knows_where_each_patch_is(tmp_path):
    mae = tiny("mae", tmp_path)
    for pe in (mae.mae.vit.embeddings.position_embeddings, mae.mae.decoder.decoder_pos_embed):
        patches = pe[0, 1:]  # after the class token: one row per patch, all distinct
        assert float(patches.abs().sum()) > 0
        assert len({tuple(r.tolist()) for r in patches}) == patches.shape[0]


# -- the methods --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", [cls.name for cls in I2I_METHODS])
def test_method_trains_only_the_encoder(name, kind, tmp_path):
    model = tiny(kind, tmp_path)
    method = get_method(MethodConfig(name=name))
    check_compatible(method, model)
    retain = Batch(images(6, 2), torch.zeros(6, dtype=torch.long))
    forget = Batch(images(6, 3), torch.full((6,), 3))
    method.setup(model, None)
    terms = method.loss(model, retain, forget, 0.5, torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) for v in (terms.retain, terms.forget, terms.total))
    params = [p for p in model.parameters() if p.requires_grad]
    enc = {id(p) for p in method.trainable_parameters(model)}
    grads = torch.autograd.grad(terms.total, params, allow_unused=True, retain_graph=True)
    assert any(
        g is not None and bool(g.abs().sum() > 0)
        for p, g in zip(params, grads, strict=True)
        if id(p) in enc
    )
    if name in ("i2i_encoder", "i2i_random_encoder"):  # losses on the encoder's outputs alone
        leaked = [g for p, g in zip(params, grads, strict=True) if id(p) not in enc]
        assert all(g is None or not bool(g.any()) for g in leaked)
    again = method.loss(model, retain, forget, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(terms.total.detach(), again.total.detach())
    # λ weighs the forget term against the retain term
    only_retain = method.loss(model, retain, forget, 0.0, torch.Generator().manual_seed(0))
    assert torch.allclose(only_retain.total, only_retain.retain)


def test_encoder_unlearning_starts_at_the_original_on_retain_images(tmp_path):
    model = tiny("mae", tmp_path)
    method = get_method(MethodConfig(name="i2i_encoder"))
    method.setup(model, None)
    b = Batch(images(4, 4), torch.zeros(4, dtype=torch.long))
    terms = method.loss(model, b, b, 0.5, torch.Generator().manual_seed(0))
    assert float(terms.retain.detach()) == 0.0 and float(terms.forget.detach()) > 0.0


@pytest.mark.parametrize("noise", ["gaussian", "uniform", "constant"])
def test_noise_has_each_images_mean_and_std(noise):
    x = torch.cat([images(1, 5) * 0.2 + 0.5, images(1, 6) * 0.9 - 0.05]).repeat(1, 1, 8, 8)
    n = matched_noise(x, noise, torch.Generator().manual_seed(0))
    assert torch.allclose(n.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=0.05)
    if noise == "constant":
        assert float(n.std(dim=(1, 2, 3)).max()) == 0.0
    else:
        assert torch.allclose(n.std(dim=(1, 2, 3)), x.std(dim=(1, 2, 3)), rtol=0.1)


def test_noise_option_is_validated():
    with pytest.raises(Exception, match="method.options.noise"):
        get_method(MethodConfig(name="i2i_encoder", options={"noise": "salt"}))


# -- retain sources -----------------------------------------------------------------------------


@pytest.mark.slow
def test_proxy_retain_set_is_sklearn_digits_at_the_models_size(tmp_path):
    cfg = i2i_cfg("mae", tmp_path, "forget.retain_source=digits")
    real = None
    proxy = retain_data(cfg, real, 1, 16)
    assert proxy.images.shape == (1797, 1, 16, 16)
    assert float(proxy.images.min()) >= -1.0 and float(proxy.images.max()) <= 1.0
    same = retain_data(i2i_cfg("mae", tmp_path), "REAL", 1, 16)
    assert same == "REAL"


def test_proxy_retain_set_from_a_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "proxy"
    folder.mkdir()
    for i in range(3):
        Image.new("L", (8, 8), color=40 * i).save(folder / f"{i}.png")
    cfg = i2i_cfg("mae", tmp_path, f"forget.retain_source={folder}")
    proxy = retain_data(cfg, None, 1, 8)
    assert proxy.images.shape == (3, 1, 8, 8)
    assert float(proxy.images[0].max()) == -1.0  # black -> -1


# -- refused input: exit 2, one line, nothing written -------------------------------------------


def _nothing_in(folder: Path) -> bool:
    """No file under ``folder`` (the tracking check may have made the empty folder)."""
    return not folder.exists() or not any(p.is_file() for p in folder.rglob("*"))


def _refused(r, *words: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.parametrize("ratio", ["0", "1", "1.5", "-0.2"])
def test_mask_ratio_outside_zero_one_is_refused(ratio, tmp_path):
    r = cli_here(
        "run",
        "--config",
        "configs/i2i_demo.yaml",
        "--set",
        f"i2i.mask_ratio={ratio}",
        "--set",
        f"workdir={tmp_path / 'w'}",
    )
    _refused(r, "i2i.mask_ratio", ratio)
    assert not (tmp_path / "w").exists()


def test_unknown_task_is_refused(tmp_path):
    r = cli_here(
        "run",
        "--config",
        "configs/i2i_demo.yaml",
        "--set",
        "i2i.task=colorize",
        "--set",
        f"workdir={tmp_path / 'w'}",
    )
    _refused(r, "i2i.task", "colorize")
    assert not (tmp_path / "w").exists()


def test_a_task_the_model_was_not_trained_for_is_refused(tmp_path):
    model = tiny("mae", tmp_path, tasks="[inpaint]")
    path = save_i2i(model, tmp_path / "inpaint-only")
    work = tmp_path / "w"
    r = cli_here(
        "run",
        "--config",
        "configs/i2i_mae.yaml",
        "--set",
        f"workdir={work}",
        "--set",
        f"model.pretrained={path}",
        "--set",
        "i2i.task=outpaint",
        "--set",
        "data.name=digits",
        "--set",
        "data.resolution=8",
    )
    _refused(r, "i2i.task", "outpaint", "inpaint")
    assert _nothing_in(work)


@pytest.mark.parametrize("what", ["ddpm", "pipeline"])
def test_a_ddpm_or_pipeline_directory_is_not_an_i2i_model(what, tmp_path):
    from unlearn.models.t2i import save_t2i

    path = tmp_path / what
    if what == "ddpm":
        save_model(tiny_model("ddpm"), path)
    else:
        save_t2i(tiny_pipeline(), path)
    work = tmp_path / "w"
    r = cli_here(
        "run",
        "--config",
        "configs/i2i_demo.yaml",
        "--set",
        f"workdir={work}",
        "--set",
        f"model.pretrained={path}",
    )
    _refused(r, "model", str(path), "not an image-completion model")
    assert _nothing_in(work)


@pytest.mark.slow
def test_a_missing_or_wrongly_sized_proxy_is_refused(i2i_pretrained, tmp_path):
    from helpers import I2I_TINY
    from PIL import Image

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    Image.new("L", (28, 28)).save(wrong / "a.png")
    work = share_pretrained(tmp_path / "w", i2i_pretrained)
    sets = [a for kv in (*I2I_TINY, f"workdir={work}") for a in ("--set", kv)]
    for source, words in (
        (tmp_path / "nowhere", ("forget.retain_source", "nowhere", "folder of images")),
        (wrong, ("forget.retain_source", "28x28", "expected 8x8")),
    ):
        r = cli_here(
            "run",
            "--config",
            "configs/i2i_demo.yaml",
            *sets,
            "--set",
            f"forget.retain_source={source}",
        )
        _refused(r, *words)
    assert [p.name for p in work.iterdir()] == ["pretrained"]


def test_config_kinds_name_the_family(tmp_path):
    assert family_of(i2i_cfg("mae", tmp_path)).name == "i2i"
    assert family_of(i2i_cfg("inpaint_ddpm", tmp_path)).name == "i2i"
    assert json.loads(json.dumps(i2i_cfg("mae", tmp_path).to_dict()))["i2i"]["task"] == "inpaint"


def test_the_shipped_masked_autoencoder_inpaints_from_what_it_sees():
    """Its completions of the hidden centre differ from digit to digit and the classifier
    recognises them twice as often as the masked input alone (held-out images)."""
    from unlearn.config import load_config
    from unlearn.data import load_splits
    from unlearn.models import load_model

    REPO = Path(__file__).resolve().parents[1]
    cfg = load_config(REPO / "configs" / "i2i_mae.yaml", ["workdir=/nonexistent"])
    held = load_splits(cfg.data).heldout
    model = load_i2i(REPO / "unlearn/assets/i2i_mae/model")
    model.set_mask("inpaint", 0.25)
    clf = load_model(REPO / "unlearn/assets/demo/classifier").eval()
    with torch.no_grad():
        done = model.complete(held.images)
        centre = done[:, :, 4:12, 4:12]
        assert centre.std(dim=0).mean() > 0.2  # the old model's was ~0: one grey square
        acc = (clf.predict(done)[0].argmax(1) == held.labels).float().mean()
        masked = clf.predict(model.masked(held.images))[0].argmax(1) == held.labels
    assert acc >= 1.5 * masked.float().mean(), (acc, masked.float().mean())
