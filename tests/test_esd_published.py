"""ESD as published: x_t from the frozen pipeline's own DDIM trajectory of the concept prompt
(``method.options.esd.xt=trajectory``) and the authors' parameter sets ``esd-u`` / ``esd-x``."""

from __future__ import annotations

import pytest
import torch
from helpers import t2i_cfg, tiny_pipeline
from torch import nn

from unlearn.config import ConfigError, MethodConfig
from unlearn.methods import get_method


def _trainable(model) -> set[str]:
    return {n for n, p in model.unet.named_parameters() if p.requires_grad}


def test_esd_u_and_esd_x_are_the_authors_parameter_sets():
    model = tiny_pipeline()
    model.configure_training("esd-x")
    x = _trainable(model)
    model.configure_training("esd-u")
    u = _trainable(model)
    assert x and u and not x & u
    # esd-x: every linear layer of the cross-attention blocks, nothing else
    assert all(".attn2." in n for n in x)
    assert {n for n, _ in model.unet.named_parameters() if ".attn2." in n} == x
    # esd-u: the linear and convolution layers outside them; normalisation stays frozen
    assert "conv_in.weight" in u and any(".attn1.to_q" in n for n in u)
    layers = {
        f"{m}.{p}"
        for m, mod in model.unet.named_modules()
        if isinstance(mod, (nn.Linear, nn.Conv2d))
        for p, _ in mod.named_parameters()
    }
    assert u | x == layers and any(
        "norm" in n for n in set(dict(model.unet.named_parameters())) - u
    )
    assert t2i_cfg("model.train=esd-u").model.train == "esd-u"


def _esd(t2i_workdir, **options):
    from unlearn.families.t2i.task import load_t2i_task

    cfg = t2i_cfg("method.lam=1.0", workdir=t2i_workdir)
    task = load_t2i_task(cfg)
    method = get_method(MethodConfig(name="esd", lam=1.0, options={"esd": options}))
    method.setup(task.model, task.data.split)
    return task, method


def _batch(data, n):
    from unlearn.types import Batch

    return Batch(data.images[:n], data.labels[:n])


@pytest.mark.slow
def test_trajectory_xt_is_the_frozen_pipelines_ddim_sample_stopped_at_a_random_step(t2i_workdir):
    from unlearn.methods.common import randn, resample

    task, esd = _esd(t2i_workdir, xt="trajectory", steps=6, guidance=3.0)
    model, split = task.model, task.data.split
    forget, retain = _batch(split.forget, 4), _batch(split.retain, 4)
    with torch.no_grad():
        terms = esd.loss(model, retain, forget, 1.0, torch.Generator().manual_seed(5))
        # replay the method's draws: the batches, t and ε of the images, then the step k
        # and the trajectory's initial noise
        g = torch.Generator().manual_seed(5)
        f = resample(forget, 2, g)
        resample(retain, 2, g), model.sample_t(4, g), randn((4, *f.images.shape[1:]), g, f.images)
        k = int(torch.randint(0, 6, (1,), generator=g))
        noise = torch.randn((2, model.channels, model.resolution, model.resolution), generator=g)
        x = noise * model.ddim(6).init_noise_sigma
        sched = model.ddim(6)
        emb = model.prompt_embeds[f.labels]
        null = model.prompt_embeds[:1].expand(2, -1, -1)
        for tt in sched.timesteps[:k]:  # the pipeline's loop, by hand, with the frozen UNet
            e_u = esd.ref_unet(x, tt, encoder_hidden_states=null).sample
            e_c = esd.ref_unet(x, tt, encoder_hidden_states=emb).sample
            x = sched.step(e_u + 3.0 * (e_c - e_u), tt, x, eta=0.0).prev_sample
        t = sched.timesteps[k].expand(2)
        e_null = esd.ref_unet(x, t, encoder_hidden_states=null).sample
        e_c = esd.ref_unet(x, t, encoder_hidden_states=emb).sample
        want = (model.eps(x, t, f.labels) - (e_null - (e_c - e_null))).pow(2).mean()
    assert float(terms.forget) == pytest.approx(float(want), rel=1e-4)
    assert 0 < k < 6  # a trajectory stopped part-way (this seed's draw)
    # images (the default) noises the forget latents instead: another target
    img = get_method(MethodConfig(name="esd", lam=1.0))
    img.setup(model, split)
    with torch.no_grad():
        other = img.loss(model, retain, forget, 1.0, torch.Generator().manual_seed(5))
    assert img.options["xt"] == "images" and float(other.forget) != float(terms.forget)


def test_bad_esd_options_name_the_option():
    for opts, where in (({"xt": "latents"}, "xt"), ({"steps": 0}, "steps")):
        with pytest.raises(ConfigError, match=rf"^method\.options\.esd\.{where}: "):
            get_method(MethodConfig(name="esd", options={"esd": opts}))
