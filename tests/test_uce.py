"""UCE, the closed-form cross-attention edit, on the session's tiny pipeline: what the edit
does to the erased and the retain prompts' keys and values, how λ enters, the one-step run,
and the bad inputs."""

from __future__ import annotations

import pytest
import torch
from helpers import t2i_cfg, tiny_model

from unlearn.config import ConfigError, MethodConfig
from unlearn.methods import check_compatible, get_method
from unlearn.methods.uce import edit_tokens

UCE = ["method.name=uce", "forget.anchor=a handwritten digit"]


@pytest.fixture(scope="module")
def task(t2i_workdir):
    """The tiny pipeline's forget task, loaded once (each test edits its own copy)."""
    from unlearn.families.t2i.task import load_t2i_task

    cfg = t2i_cfg(*UCE, workdir=t2i_workdir)
    return cfg, load_t2i_task(cfg)


def _unlearner(task, lam: float = 0.8, **options):
    """An unlearner running UCE on a fresh copy of the task's pipeline."""
    import copy

    from unlearn.agents import get_agent
    from unlearn.unlearner import Unlearner

    cfg, t = task
    method = get_method(MethodConfig(name="uce", lam=lam, options=options))
    agent = get_agent(cfg.agent, default_lam=lam)
    return Unlearner(copy.deepcopy(t.model), method, agent, t.data.split, cfg)


def _values(unl, name: str, texts: list[str]) -> torch.Tensor:
    """The projection ``name``'s outputs on every token of ``texts``."""
    layer = unl.method.layers[name]
    emb, _ = edit_tokens(unl.model, texts)
    return emb @ layer.weight.detach().double().T


def test_uce_maps_the_concept_to_its_anchor_and_keeps_the_retain_prompts(task):
    unl = _unlearner(task, 0.9)
    m = unl.method
    assert m.erase == ["a handwritten digit seven"] and m.anchor == "a handwritten digit"
    assert {n.rsplit(".", 1)[1] for n in m.layers} == {"to_k", "to_v"}
    name = next(n for n in m.layers if n.endswith("to_v"))
    before_e = m.c_e @ m.original[name].double().T
    target = m.c_a @ m.original[name].double().T
    before_r = _values(unl, name, m.preserve)
    state = {k: v.detach().clone() for k, v in unl.model.state_dict().items()}

    result = unl.run()
    assert result.steps == 1 and result.status == "finished" and result.lambdas == [0.9]
    after_e = m.c_e @ unl.method.layers[name].weight.detach().double().T
    # the erased tokens now read much more like the anchor's (the retain prompts share the
    # padding positions, so the fit is a compromise)
    gap_before = (before_e - target).norm() / target.norm()
    gap_after = (after_e - target).norm() / target.norm()
    assert gap_after < 0.5 * gap_before
    # the retain prompts' keys and values moved less than the erased ones
    moved_r = (_values(unl, name, m.preserve) - before_r).norm() / before_r.norm()
    assert moved_r < (after_e - before_e).norm() / before_e.norm()
    # nothing outside the cross-attention keys and values changed
    edited = {f"unet.{n}.weight" for n in m.layers}
    for k, v in unl.model.state_dict().items():
        if k not in edited:
            assert torch.equal(v, state[k].to(v.device)), k
    # a reset restores the edited projections (they are in the episode's snapshot)
    unl.reset(0)
    assert all(torch.equal(v, state[k].to(v.device)) for k, v in unl.model.state_dict().items())


def test_lambda_zero_keeps_the_model_and_the_edit_starts_from_the_original(task):
    unl = _unlearner(task)
    m = unl.method
    m.edit(unl.model, 0.0)
    for name, layer in m.layers.items():
        assert torch.allclose(layer.weight, m.original[name], atol=1e-5), name
    first = m.edit(unl.model, 0.7)
    w = {n: layer.weight.detach().clone() for n, layer in m.layers.items()}
    again = m.edit(unl.model, 0.7)  # applied twice: the same weights, the same residuals
    assert all(torch.equal(w[n], layer.weight) for n, layer in m.layers.items())
    assert float(first.forget) == float(again.forget)
    # more λ: the erased tokens closer to the anchor, the retain prompts further from theirs
    low, high = m.edit(unl.model, 0.3), m.edit(unl.model, 0.95)
    assert float(high.forget) < float(low.forget) and float(high.retain) > float(low.retain)


def test_uce_bad_input_is_one_line_naming_the_field(task):
    import copy

    _, t = task
    no_anchor = copy.deepcopy(t.model)
    no_anchor.anchor_id = 0  # forget.anchor empty
    lora = copy.deepcopy(t.model)
    lora.train_mode = "lora"
    cases = [
        (no_anchor, {}, r"method\.options\.uce\.anchor: '' is not allowed"),
        (t.model, {"anchor": "a zebra"}, r"method\.options\.uce\.anchor: 'a zebra'"),
        (lora, {}, "model.train: 'lora' is not allowed"),
    ]
    for model, options, message in cases:
        method = get_method(MethodConfig(name="uce", options=options))
        with pytest.raises(ConfigError, match=message) as e:
            method.setup(model, t.data.split)
        assert "\n" not in str(e.value)
    # a model without cross-attention (the image DDPM)
    with pytest.raises(ConfigError, match="method.name: 'uce' does not support model kind 'ddpm'"):
        check_compatible(get_method(MethodConfig(name="uce")), tiny_model("ddpm"))
