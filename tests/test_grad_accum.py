"""Gradient accumulation: ``unlearn.grad_accum=2`` takes the same step as ``grad_accum=1`` on
the same samples, for the loss form, the gradient forms and the variational λ agent.

The accumulated run's method is wrapped to record each micro-batch (its retain and forget
batches and the generator state its noise is drawn from). The reference run sees ONE batch
made of both micro-batches: its loss replays the two recorded draws and returns their mean,
which is the loss of the concatenated batch (every term is a per-sample mean) with exactly
the same t, ε and mixture draws. Any slip in the accumulation (a missing 1/n, a regulariser
counted twice, a gradient form combined per micro-batch, λ's graph freed too early) changes
the gradients the optimiser sees.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_model

from unlearn.agents import StaticAgent, VariationalAgent
from unlearn.config import MethodConfig, load_config
from unlearn.methods import get_method
from unlearn.types import LossTerms
from unlearn.unlearner import Unlearner

CASES = [
    ("siss", "loss", "static"),
    ("siss", "gradient", "static"),
    ("erasediff", "gradient", "static"),
    ("siss", "loss", "variational"),
    ("siss", "gradient", "variational"),
]


def _unlearner(split, name, form, agent, accum, steps=1, grad_stats_every=0, options=None):
    cfg = load_config(
        None,
        [
            f"unlearn.steps={steps}",
            "unlearn.batch_size=4",
            "unlearn.lr=0.01",
            f"unlearn.grad_accum={accum}",
            "method.clip=100",
        ],
    )
    method = get_method(MethodConfig(name=name, form=form, clip=100.0, options=options or {}))
    # the pathwise λ-gradient: the score estimator's leave-one-out baseline is formed per
    # micro-batch, so under grad_accum it is an (unbiased) estimate of its own, not the
    # one-batch one; this test is about the loop's accumulation
    if agent == "static":
        lam_agent = StaticAgent(0.4)
    else:
        lam_agent = VariationalAgent(lr=0.05, estimator="pathwise")
    return Unlearner(
        tiny_model("ddpm"), method, lam_agent, split, cfg, grad_stats_every=grad_stats_every
    )


def _record(unl: Unlearner) -> list[list[tuple]]:
    """Wrap ``unl``'s loss to record each call's batches and generator state, per step."""
    real, steps = unl.method.loss, []

    def recording(model, retain, forget, lam, g):
        if len(steps) <= unl.t:
            steps.append([])
        steps[unl.t].append((retain, forget, g.get_state()))
        return real(model, retain, forget, lam, g)

    unl.method.loss = recording
    return steps


def _replay(unl: Unlearner, steps: list[list[tuple]]) -> None:
    """Make ``unl``'s loss the mean over the recorded micro-batches of the current step."""
    real = unl.method.loss

    def concatenated(model, retain, forget, lam, g):
        parts = []
        for r, f, state in steps[unl.t]:
            gen = torch.Generator()
            gen.set_state(state)
            parts.append(real(model, r, f, lam, gen))
        n = len(parts)
        keys = parts[0].extras or {}
        return LossTerms(
            retain=sum(p.retain for p in parts) / n,
            forget=sum(p.forget for p in parts) / n,
            total=sum(p.total for p in parts) / n,
            extras={k: sum(p.extras[k] for p in parts) / n for k in keys} or None,
        )

    unl.method.loss = concatenated


def _state(unl: Unlearner) -> dict[str, list[torch.Tensor]]:
    agent = list(unl.agent.parameters())
    return {
        "model grads": [p.grad.clone() for p in unl.params],
        "weights": [p.detach().clone() for p in unl.params],
        "agent grads": [p.grad.clone() for p in agent],
        "agent weights": [p.detach().clone() for p in agent],
    }


def _compare(a, b, rtol=1e-5, atol=1e-7):
    for key in a:
        assert len(a[key]) == len(b[key])
        for x, y in zip(a[key], b[key], strict=True):
            torch.testing.assert_close(x, y, rtol=rtol, atol=atol, msg=lambda m, k=key: f"{k}: {m}")


def _accumulated_and_reference(split, name, form, agent, steps=1, **kw):
    acc = _unlearner(split, name, form, agent, accum=2, steps=steps, **kw)
    record = _record(acc)
    ref = _unlearner(split, name, form, agent, accum=1, steps=steps, **kw)
    _replay(ref, record)
    return acc, ref


@pytest.mark.parametrize(("name", "form", "agent"), CASES)
def test_two_micro_batches_take_the_step_of_one_batch_of_both(name, form, agent, split):
    acc, ref = _accumulated_and_reference(split, name, form, agent)
    a, b = acc.step(1)[0], ref.step(1)[0]
    assert a.lam == b.lam
    assert a.total_loss == pytest.approx(b.total_loss, rel=1e-5)
    sa, sb = _state(acc), _state(ref)
    assert any(float(g.abs().max()) > 0 for g in sa["model grads"])
    if agent == "variational":  # the agent learned from the objective through λ
        assert any(float(g.abs().max()) > 0 for g in sa["agent grads"])
    _compare(sa, sb)


@pytest.mark.parametrize("agent", ["static", "variational"])
def test_the_one_backward_gradient_form_accumulates_like_one_batch(agent, split):
    """SISS ``norm_every=2``: step 0 measures the norms, step 1 takes one backward."""
    opts = {"norm_every": 2}
    acc, ref = _accumulated_and_reference(split, "siss", "gradient", agent, steps=2, options=opts)
    acc.step(1), ref.step(1)
    assert acc.method.fused_step(1) is not None
    a, b = acc.step(1)[0], ref.step(1)[0]
    assert a.total_loss == pytest.approx(b.total_loss, rel=1e-5)
    _compare(_state(acc), _state(ref), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("form", ["loss", "gradient"])
def test_gradient_statistics_are_those_of_one_batch_of_both(form, split):
    """The measured norms and cosine are of the micro-batches' mean gradients."""
    acc, ref = _accumulated_and_reference(split, "siss", form, "static", grad_stats_every=1)
    a, b = acc.step(1)[0], ref.step(1)[0]
    for key in ("retain_grad_norm", "forget_grad_norm", "grad_cosine"):
        got, want = getattr(a, key), getattr(b, key)
        assert math.isfinite(got) and got != 0.0, key
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7), key


def test_the_comparison_sees_each_micro_batch(split):
    """The check has power: a reference that drops the second micro-batch is told apart."""
    acc = _unlearner(split, "siss", "gradient", "static", accum=2)
    record = _record(acc)
    ref = _unlearner(split, "siss", "gradient", "static", accum=1)
    _replay(ref, record)
    acc.step(1)
    del record[0][1:]  # the reference replays the first micro-batch only
    ref.step(1)
    with pytest.raises(AssertionError):
        _compare(_state(acc), _state(ref))
