"""SISS gradient form with ``method.options.norm_every: K``: the norms are measured with two
backwards every K-th step and reused in between, where the step is ONE backward of
``L_x + coef·L_a`` followed by the same clipping."""

from __future__ import annotations

import pytest
import torch
from helpers import REPO, cli_here, tiny_model

from unlearn.agents import StaticAgent
from unlearn.config import MethodConfig, load_config
from unlearn.methods import get_method
from unlearn.methods.common import axpy, clip_to_norm
from unlearn.unlearner import Unlearner


def _unlearner(split, **options) -> Unlearner:
    cfg = load_config(None, ["unlearn.steps=4", "unlearn.batch_size=4", "unlearn.lr=0.01"])
    method = get_method(MethodConfig(name="siss", form="gradient", clip=1.0, options=options))
    return Unlearner(tiny_model("ddpm"), method, StaticAgent(0.4), split, cfg, grad_stats_every=0)


def _weights(unl: Unlearner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in unl.params]


def _backward_counter(unl: Unlearner) -> list[int]:
    """Counts the backward passes through the UNet's output layer (one per autograd call)."""
    count = [0]

    def on_forward(module, inputs, out):
        out.register_hook(lambda grad: count.__setitem__(0, count[0] + 1))

    unl.model.unet.conv_out.register_forward_hook(on_forward)
    return count


def test_norm_every_1_is_the_exact_gradient_form(split):
    """K = 1 (the default) never takes the one-backward step: two backwards every step."""
    exact, k1 = _unlearner(split), _unlearner(split, norm_every=1)
    count = _backward_counter(k1)
    per_step = []
    for _ in range(4):
        assert k1.method.fused_step(k1.t) is None
        before = count[0]
        k1.step(1)
        per_step.append(count[0] - before)
    assert per_step == [2, 2, 2, 2]
    exact.run()
    for a, b in zip(_weights(exact), _weights(k1), strict=True):
        assert torch.equal(a, b)


def test_lagged_steps_take_one_backward_and_fresh_steps_two(split):
    unl = _unlearner(split, norm_every=3)
    count = _backward_counter(unl)
    per_step = []
    for _ in range(4):
        before = count[0]
        unl.step(1)
        per_step.append(count[0] - before)
    assert per_step == [2, 1, 1, 2]


def test_a_fresh_step_is_the_exact_update(split):
    lagged, exact = _unlearner(split, norm_every=3), _unlearner(split)
    lagged.step(1), exact.step(1)  # step 0 measures the norms: the exact update
    for a, b in zip(_weights(lagged), _weights(exact), strict=True):
        assert torch.equal(a, b)
    lagged.step(2)  # steps 1, 2 lagged; step 3 fresh again, from the lagged run's weights
    exact.model.load_state_dict(lagged.model.state_dict())
    exact.t = lagged.t
    lagged.step(1), exact.step(1)
    for p, q in zip(lagged.params, exact.params, strict=True):
        assert torch.equal(p.grad, q.grad)


def test_a_lagged_step_is_the_combination_with_the_measured_coefficient(split):
    """One backward of L_x + c·L_a equals g_x + c·g_a from two backwards (then clipped)."""
    unl = _unlearner(split, norm_every=3)
    unl.step(1)
    fused = unl.method.fused_step(unl.t)
    assert fused is not None and fused.forget_coef < 0
    start = {k: v.clone() for k, v in unl.model.state_dict().items()}
    draws, real = [], unl.method.loss

    def recording(model, retain, forget, lam, g):
        draws.append((retain, forget, g.get_state()))
        return real(model, retain, forget, lam, g)

    unl.method.loss = recording
    unl.step(1)
    lagged = [p.grad.clone() for p in unl.params]
    unl.model.load_state_dict(start)
    (r, f, state), gen = draws[0], torch.Generator()
    gen.set_state(state)
    terms = real(unl.model, r, f, 0.4, gen)
    g_x = torch.autograd.grad(terms.retain, unl.params, retain_graph=True, allow_unused=True)
    g_a = torch.autograd.grad(terms.forget, unl.params, allow_unused=True)
    expected = clip_to_norm(axpy(g_x, fused.forget_coef, g_a), fused.clip)
    for got, want in zip(lagged, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("value", ["0", "2.5", "x"])
@pytest.mark.slow
def test_bad_norm_every_exits_2_with_one_line(value, tmp_path):
    sets = ["tracking.enabled=false", "method.form=gradient", f"method.options.norm_every={value}"]
    args = [a for s in (f"workdir={tmp_path}", *sets) for a in ("--set", s)]
    r = cli_here("run", "--config", str(REPO / "configs/demo.yaml"), *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "method.options.norm_every" in lines[0]
    assert "expected an integer >= 1" in lines[0]
