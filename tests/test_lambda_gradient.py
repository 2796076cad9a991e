"""The variational agent's λ-gradient: unbiased against a finite difference of the Monte-Carlo
expectation (the pathwise-only gradient is not), what reaches the model and the network, and
the three objectives inside the real unlearning loop."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_model as tiny

from unlearn.agents import VariationalAgent
from unlearn.config import ConfigError, MethodConfig, with_overrides
from unlearn.methods import SISS
from unlearn.methods.siss import lambda_surrogate, pair_estimates
from unlearn.task import make_unlearner
from unlearn.types import Batch

LAM, H = 0.5, 0.05


def _pairs(split, rep: int, size: int) -> tuple[Batch, Batch]:
    g = torch.Generator().manual_seed(rep)
    r = torch.randint(0, len(split.retain), (size,), generator=g)
    f = torch.randint(0, len(split.forget), (size,), generator=g)
    return (
        Batch(split.retain.images[r], split.retain.labels[r]),
        Batch(split.forget.images[f], split.forget.labels[f]),
    )


def _objective_value(method, model, batches, lam: float, seed: int, objective: str) -> float:
    terms = method.loss(model, *batches, torch.tensor(lam, requires_grad=True), _gen(seed))
    f = pair_estimates(terms.draw).detach()
    return float((f if objective == "siss" else f.pow(2)).mean())


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(10_000 + seed)


def _mean_se(values: list[float]) -> tuple[float, float]:
    v = torch.tensor(values, dtype=torch.float64)
    return float(v.mean()), float(v.std() / math.sqrt(len(v)))


@pytest.mark.parametrize("objective", ["siss", "variance"])
@pytest.mark.slow
def test_score_estimator_agrees_with_finite_difference_and_pathwise_does_not(objective, split):
    """d/dλ of E[J] by a central difference with common random numbers (the same uniform
    decides each pair's component at λ ± h), against the mean of each estimator."""
    model = tiny("ddpm")
    method = SISS()
    method.setup(model, split)
    est, path, fd = [], [], []
    for rep in range(20):
        batches = _pairs(split, rep, 128)
        lam = torch.tensor(LAM, requires_grad=True)
        terms = method.loss(model, *batches, lam, _gen(rep))
        sur = lambda_surrogate(terms.draw, objective)
        (g_score,) = torch.autograd.grad(sur, lam, retain_graph=True)
        (g_path,) = torch.autograd.grad(lambda_surrogate(terms.draw, objective, score=False), lam)
        hi, lo = (
            _objective_value(method, model, batches, LAM + d, rep, objective) for d in (H, -H)
        )
        est.append(float(g_score))
        path.append(float(g_path))
        fd.append((hi - lo) / (2 * H))
    (m_fd, se_fd), (m_est, se_est), (m_path, se_path) = map(_mean_se, (fd, est, path))
    assert abs(m_est - m_fd) < 3 * math.hypot(se_est, se_fd), (m_est, se_est, m_fd, se_fd)
    assert abs(m_path - m_fd) > 3 * math.hypot(se_path, se_fd), (m_path, se_path, m_fd, se_fd)


@pytest.mark.parametrize("kind", ["ddpm", "vae"])  # the VAE's weights depend on its encoder
def test_agent_objective_sends_the_estimator_to_the_network_and_nothing_to_the_model(kind, split):
    model = tiny(kind)
    method = SISS(MethodConfig(name="siss"))
    method.setup(model, split)
    agent = VariationalAgent(beta=0.0, objective="variance")
    agent.reset(0)
    params = [p for p in model.parameters() if p.requires_grad]
    lam = agent.act(None)
    terms = method.loss(model, *_pairs(split, 0, 32), lam, _gen(0))
    own = agent.lambda_objective(terms)
    assert own is not None
    obj = terms.total + own
    g_model = torch.autograd.grad(obj, params, retain_graph=True)
    g_plain = torch.autograd.grad(terms.total, params, retain_graph=True)
    for a, b in zip(g_model, g_plain, strict=True):
        torch.testing.assert_close(a, b)
    (g_lam,) = torch.autograd.grad(obj, terms.draw.lam, retain_graph=True)
    (g_ref,) = torch.autograd.grad(lambda_surrogate(terms.draw, "variance"), terms.draw.lam)
    torch.testing.assert_close(g_lam, g_ref)
    assert float(g_lam) != 0.0
    # the pathwise estimator of the siss objective is the method's own λ-gradient: no term
    assert VariationalAgent(estimator="pathwise").lambda_objective(terms) is None


@pytest.mark.parametrize("objective", ["siss", "variance", "utility"])
def test_each_objective_trains_the_network_in_the_loop(objective, tiny_ready):
    cfg = with_overrides(
        tiny_ready,
        [
            "unlearn.steps=8",
            "agent.name=variational",
            f"agent.options={{objective: {objective}, reward_every: 2, beta: 0.0, lr: 0.05}}",
        ],
    )
    unl = make_unlearner(cfg).unlearner
    before = [p.detach().clone() for p in unl.agent.parameters()]
    res = unl.run()
    assert res.status == "finished" and all(0 < x < 1 for x in res.lambdas)
    moved = max(
        float((p.detach() - b).abs().max())
        for p, b in zip(unl.agent.parameters(), before, strict=True)
    )
    assert moved > 1e-4, "the objective did not reach the network"
    if objective == "utility":
        assert len(unl.agent.reward.rewards) == cfg.unlearn.steps // 2
        assert all(math.isfinite(r) for r in unl.agent.reward.rewards)


def test_objectives_that_do_not_fit_the_run_fail_at_build(tiny_ready):
    cfg = with_overrides(
        tiny_ready,
        ["method.name=naive", "agent.name=variational", "agent.options={objective: variance}"],
    )
    with pytest.raises(ConfigError, match=r"agent\.options\.objective: 'variance' needs method"):
        make_unlearner(cfg)
    with pytest.raises(ConfigError, match=r"agent\.options\.objective: 'nope'"):
        make_unlearner(
            with_overrides(
                tiny_ready, ["agent.name=variational", "agent.options={objective: nope}"]
            )
        )
