"""λ agents: the shared contract, gradient flow of the variational agent, each agent's rule."""

from __future__ import annotations

import json
import math

import pytest
import torch

from unlearn.agents import (
    AGENTS,
    DualAscentAgent,
    HybridAgent,
    LambdaAgent,
    ScheduleAgent,
    StaticAgent,
    VariationalAgent,
    get_agent,
    register_agent,
)
from unlearn.config import AgentConfig, ConfigError
from unlearn.types import StepStats

NAN = float("nan")


def _stats(i: int, lam: float, budget: int = 10, **kw) -> StepStats:
    base = dict(
        step=i + 1,
        budget=budget,
        lam=lam,
        retain_loss=0.1 + 0.01 * i,
        forget_loss=0.05 + 0.03 * i,
        total_loss=0.05,
        retain_grad_norm=1.0 + i,
        forget_grad_norm=2.0 / (i + 1),
        grad_cosine=-0.3 + 0.05 * i,
    )
    base.update(kw)
    return StepStats(**base)


def _value(lam: float | torch.Tensor) -> float:
    if isinstance(lam, torch.Tensor):
        assert lam.dim() == 0
        return float(lam.detach())
    return float(lam)


def _episode(agent: LambdaAgent, seed: int, steps: int = 8) -> list[float]:
    """λ sequence of an episode whose statistics depend only on the step (and λ)."""
    out = [float(agent.reset(seed))]
    prev = None
    for i in range(steps):
        lam = _value(agent.act(prev))
        out.append(lam)
        prev = _stats(i, lam)
        agent.update(prev)
    return out


def _make(name: str) -> LambdaAgent:
    return get_agent(AgentConfig(name=name), default_lam=0.5)


# -- the contract every registered agent passes ----------------------------------------------
# (the policy agent needs an exported file and a bound unlearner: tests/test_policy.py)
CONTRACT = sorted(set(AGENTS) - {"policy"})


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_range_and_determinism(name: str) -> None:
    agent = _make(name)
    assert isinstance(agent, LambdaAgent) and agent.name == name
    lams = _episode(agent, seed=3)
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in lams), lams
    assert _episode(agent, seed=3) == lams  # same instance, reset again
    assert _episode(_make(name), seed=3) == lams  # fresh instance


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_nan_and_extreme_stats(name: str) -> None:
    agent = _make(name)
    agent.reset(0)
    weird = [
        _stats(0, NAN, retain_loss=NAN, forget_loss=NAN, total_loss=NAN, grad_cosine=NAN),
        _stats(1, 0.5, retain_grad_norm=NAN, forget_grad_norm=NAN, grad_cosine=NAN),
        _stats(2, 1.0, retain_loss=1e30, forget_loss=-5.0, retain_grad_norm=float("inf")),
        _stats(
            3, 0.0, retain_loss=0.0, forget_loss=0.0, retain_grad_norm=0.0, forget_grad_norm=0.0
        ),
        _stats(4, 0.5, budget=0),
    ]
    for s in weird:
        v = _value(agent.act(s))
        assert 0.0 <= v <= 1.0 and math.isfinite(v), (s, v)
        reg = agent.regularizer()
        assert reg is None or torch.isfinite(reg)
        agent.update(s)


# -- variational: the objective's gradient reaches the network -------------------------------
def _objective_grad_norm(agent: LambdaAgent, stats: StepStats | None) -> float:
    """Norm of ∂(λ - 0.9)² / ∂φ: the downstream objective's share of the agent's gradient."""
    lam = agent.act(stats)
    obj = (lam - 0.9) ** 2
    if not isinstance(obj, torch.Tensor) or not obj.requires_grad:
        return 0.0
    grads = torch.autograd.grad(obj, agent.parameters(), allow_unused=True)
    return math.sqrt(sum(float((g**2).sum()) for g in grads if g is not None))


class _DetachedVariational(VariationalAgent):
    """The known failure of public code: λ is detached, only the KL can train the network."""

    def act(self, stats):
        return super().act(stats).detach()


@pytest.mark.parametrize("posterior", ["beta", "logitnormal"])
@pytest.mark.parametrize("stats", [None, _stats(3, 0.4)])
def test_variational_objective_gradient_reaches_network(posterior, stats) -> None:
    agent = VariationalAgent(posterior=posterior, beta=0.0)
    agent.reset(0)
    assert _objective_grad_norm(agent, stats) > 1e-6
    lam = agent.act(stats)
    assert isinstance(lam, torch.Tensor) and lam.dim() == 0 and lam.requires_grad


@pytest.mark.parametrize("posterior", ["beta", "logitnormal"])
def test_detached_lambda_is_caught(posterior) -> None:
    bad = _DetachedVariational(posterior=posterior, beta=1.0, init_lam=0.7)
    bad.reset(0)
    assert _objective_grad_norm(bad, None) == 0.0
    # ... although the total loss still has a gradient: from the KL alone
    bad.act(None)
    reg = bad.regularizer()
    grads = torch.autograd.grad(reg, bad.parameters(), allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)


@pytest.mark.parametrize("posterior", ["beta", "logitnormal"])
def test_variational_training_moves_posterior_towards_target(posterior) -> None:
    agent = VariationalAgent(posterior=posterior, beta=1e-3, init_lam=0.3)
    agent.reset(1)
    stats = _stats(2, 0.3)
    before = agent.mean(stats)
    opt = torch.optim.Adam(agent.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        lam = agent.act(stats)
        ((lam - 0.8) ** 2 + agent.regularizer()).backward()
        opt.step()
    after = agent.mean(stats)
    assert abs(before - 0.3) < 0.05
    assert abs(after - 0.8) < 0.06, (before, after)


def test_variational_options_and_reset() -> None:
    agent = get_agent(
        AgentConfig(name="variational", options={"lr": 0.01, "grad_features": "off"}), 0.5
    )
    assert isinstance(agent, VariationalAgent)
    assert agent.lr == 0.01 and not agent.needs_grad_stats
    # default: the unlearner's periodic gradient measurement, no extra backward per step
    assert not _make("variational").needs_grad_stats
    every = get_agent(AgentConfig(name="variational", options={"grad_features": "every"}), 0.5)
    assert every.needs_grad_stats
    with pytest.raises(ConfigError, match=r"agent\.options\.grad_features"):
        get_agent(AgentConfig(name="variational", options={"grad_features": "always"}), 0.5)
    assert agent.regularizer() is None  # before the first act
    lam = agent.act(None)
    reg = agent.regularizer()
    assert reg is not None and reg.requires_grad and float(reg.detach()) >= 0
    assert 1e-4 <= float(lam.detach()) <= 1 - 1e-4
    w = [p.detach().clone() for p in agent.parameters()]
    with torch.no_grad():
        for p in agent.parameters():
            p.add_(1.0)
    agent.reset(0)
    assert all(torch.equal(a, b) for a, b in zip(w, agent.parameters(), strict=True))
    assert _episode(agent, 0) != _episode(agent, 1)  # the seed matters
    mean_agent = VariationalAgent(sample=False, init_lam=0.25)
    assert abs(float(mean_agent.act(None).detach()) - 0.25) < 0.03  # default init_lam = method.lam


# -- dual ascent -----------------------------------------------------------------------------
def test_dual_rises_while_violated_and_falls_to_zero() -> None:
    agent = DualAscentAgent(lam0=0.2, eta=0.5, target=1.0, relative=False)
    agent.reset(0)
    lams = []
    for i in range(4):  # forget loss below the target: violated
        agent.update(_stats(i, agent.act(None), forget_loss=0.5))
        lams.append(agent.act(None))
    assert lams == sorted(lams) and lams[0] > 0.2 and lams[-1] == 1.0  # clipped at lam_max
    for i in range(10):  # constraint holds with slack
        agent.update(_stats(i, agent.act(None), forget_loss=2.0))
    assert agent.act(None) == 0.0


def test_dual_violation_sources() -> None:
    agent = DualAscentAgent(lam0=0.5, eta=0.1, target_ratio=2.0)
    agent.reset(0)
    s0 = _stats(0, 0.5, forget_loss=0.1)
    assert agent.violation(s0) == pytest.approx((0.2 - 0.1) / 0.2)  # target = 2 x first loss
    assert agent.violation(_stats(1, 0.5, forget_loss=0.3)) == pytest.approx(-0.5)
    assert agent.violation(_stats(1, 0.5, extras={"violation": -2.0})) == -2.0  # reported wins
    agent.update(_stats(2, 0.5, forget_loss=NAN))
    assert agent.act(None) == 0.5  # unknown violation: unchanged
    capped = DualAscentAgent(lam0=0.1, eta=10.0, lam_max=0.3, target=1.0)
    capped.update(_stats(0, 0.1, forget_loss=0.0))
    assert capped.act(None) == 0.3


# -- schedules -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, expected",
    [
        ({"kind": "linear", "start": 0.8, "end": 0.2}, {0.0: 0.8, 0.5: 0.5, 1.0: 0.2, 2.0: 0.2}),
        (
            {"kind": "cosine", "start": 1.0, "end": 0.0},
            {0.0: 1.0, 0.5: 0.5, 1.0: 0.0, 0.25: 0.8536},
        ),
        (
            {"boundaries": [0.3, 0.7], "values": [1.0, 0.5, 0.1]},
            {0.0: 1.0, 0.29: 1.0, 0.3: 0.5, 0.69: 0.5, 0.7: 0.1, 1.0: 0.1},
        ),
        (
            {"points": [[0.0, 0.0], [0.5, 1.0], [1.0, 0.5]]},
            {0.0: 0.0, 0.25: 0.5, 0.5: 1.0, 0.75: 0.75, 1.0: 0.5},
        ),
        (
            {"points": [[0.2, 0.1], [0.5, 0.2], [0.5, 0.8]]},
            {0.0: 0.1, 0.35: 0.15, 0.4999: 0.2, 0.5: 0.8, 0.9: 0.8},
        ),
    ],
)
def test_schedule_values(options, expected) -> None:
    agent = get_agent(AgentConfig(name="schedule", options=options), 0.5)
    for p, v in expected.items():
        assert agent.value(p) == pytest.approx(v, abs=1e-4), (p, v)
    assert agent.act(None) == pytest.approx(expected[0.0], abs=1e-4)
    assert agent.act(_stats(4, 0.0, budget=10)) == pytest.approx(agent.value(0.5))


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
@pytest.mark.parametrize(
    "agent",
    [
        ScheduleAgent(points=[[0.0, 0.9], [0.4, 0.3], [0.4, 0.6], [1.0, 0.1]]),
        ScheduleAgent(boundaries=[0.25, 0.5], values=[0.1, 0.7, 0.2]),
        ScheduleAgent(kind="linear", start=0.3, end=0.9),
    ],
)
def test_schedule_file_round_trip(tmp_path, agent, suffix) -> None:
    path = agent.to_file(tmp_path / f"pbt{suffix}", trial="t1")
    back = ScheduleAgent.from_file(path)
    grid = [i / 40 for i in range(41)]
    assert [back.value(p) for p in grid] == pytest.approx([agent.value(p) for p in grid])
    via_option = get_agent(AgentConfig(name="schedule", options={"from_pbt": str(path)}), 0.5)
    via_path = get_agent(AgentConfig(name="schedule", path=str(path)), 0.5)
    assert via_option.to_points() == via_path.to_points() == back.to_points()


def test_schedule_file_written_by_hand(tmp_path) -> None:
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"points": [[0, 0.2], [1, 0.4]]}))
    assert ScheduleAgent.from_file(p).value(0.5) == pytest.approx(0.3)
    p.write_text(json.dumps({"points": [[0, 1.2]]}))
    with pytest.raises(ConfigError, match=r"agent\.path.*points\[0\]\[1\]"):
        get_agent(AgentConfig(name="schedule", path=str(p)), 0.5)
    with pytest.raises(ConfigError, match=r"agent\.options\.from_pbt.*does not exist"):
        get_agent(AgentConfig(name="schedule", options={"from_pbt": str(tmp_path / "no")}), 0.5)


# -- hybrid ----------------------------------------------------------------------------------
def _hybrid(coarse_lam: float, max_shift: float = 0.5) -> HybridAgent:
    opts = {
        "coarse": {"name": "static", "options": {"lam": coarse_lam}},
        "refine": {"beta": 0.0},
        "max_shift": max_shift,
    }
    agent = get_agent(AgentConfig(name="hybrid", options=opts), 0.5)
    assert isinstance(agent, HybridAgent)
    return agent


def _sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_hybrid_follows_coarse_within_bounded_shift() -> None:
    lo, hi = _hybrid(0.2), _hybrid(0.8)
    for a in (lo, hi):
        a.reset(0)
    s = None
    for i in range(5):
        l_lo, l_hi = _value(lo.act(s)), _value(hi.act(s))
        assert _sig(_logit(0.2) - 0.5) <= l_lo <= _sig(_logit(0.2) + 0.5)
        assert _sig(_logit(0.8) - 0.5) <= l_hi <= _sig(_logit(0.8) + 0.5)
        assert lo.last_coarse == pytest.approx(0.2) and hi.last_coarse == pytest.approx(0.8)
        s = _stats(i, l_lo)


def test_hybrid_gradient_reaches_refiner() -> None:
    agent = _hybrid(0.4, max_shift=2.0)
    agent.reset(0)
    assert agent.parameters() == agent.refiner.parameters()  # a static coarse agent learns nothing
    assert _objective_grad_norm(agent, _stats(1, 0.4)) > 1e-6
    assert agent.regularizer() is not None and agent.lr == agent.refiner.lr


def test_hybrid_with_schedule_coarse() -> None:
    opts = {"coarse": {"name": "schedule", "options": {"start": 0.9, "end": 0.1}}, "max_shift": 1.0}
    agent = get_agent(AgentConfig(name="hybrid", options=opts), 0.5)
    agent.reset(0)
    agent.act(_stats(9, 0.5, budget=10))
    assert agent.last_coarse == pytest.approx(0.1)


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, options, pattern",
    [
        ("nope", {}, r"agent\.name: unknown agent 'nope'; allowed: .*static.*variational"),
        (
            "static",
            {"lambda": 0.3},
            r"agent\.options\.lambda: unknown option 'lambda'; allowed options: lam",
        ),
        ("static", {"lam": 1.5}, r"agent\.options\.lam: 1\.5 .*\[0\.0, 1\.0\]"),
        ("static", {"lam": "high"}, r"agent\.options\.lam: 'high'"),
        ("schedule", {"kind": "exp"}, r"agent\.options\.kind: 'exp' .*linear, cosine, step"),
        (
            "schedule",
            {"boundaries": [0.5], "values": [0.1]},
            r"agent\.options\.values: .*2 lambdas",
        ),
        (
            "schedule",
            {"boundaries": [0.7, 0.2], "values": [1, 1, 1]},
            r"agent\.options\.boundaries",
        ),
        (
            "schedule",
            {"kind": "linear", "points": [[0, 1]]},
            r"agent\.options\.points: .*kind=linear",
        ),
        ("schedule", {"kind": "piecewise"}, r"agent\.options\.points: None"),
        ("variational", {"posterior": "gauss"}, r"agent\.options\.posterior: 'gauss'"),
        ("variational", {"beta": -1.0}, r"agent\.options\.beta: -1\.0 .*>= 0"),
        ("variational", {"hidden": 3.5}, r"agent\.options\.hidden: 3\.5 .*integer"),
        ("dual", {"eta": 0.0}, r"agent\.options\.eta: 0\.0 .*> 0"),
        ("dual", {"lam_max": 2.0}, r"agent\.options\.lam_max: 2\.0"),
        (
            "hybrid",
            {"coarse": {"name": "schedule", "options": {"kind": "exp"}}},
            r"agent\.options\.coarse\.options\.kind: 'exp'",
        ),
        (
            "hybrid",
            {"coarse": {"name": "schedule", "options": {"boundaries": [0.5], "values": [1]}}},
            r"agent\.options\.coarse\.options\.values",
        ),
        ("hybrid", {"coarse": {"name": "nope"}}, r"agent\.options\.coarse\.name: unknown agent"),
        ("hybrid", {"coarse": {"nam": "static"}}, r"agent\.options\.coarse: "),
        ("hybrid", {"refine": {"bogus": 1}}, r"agent\.options\.refine\.bogus: unknown option"),
    ],
)
def test_bad_config(name, options, pattern) -> None:
    with pytest.raises(ConfigError, match=pattern):
        get_agent(AgentConfig(name=name, options=options), 0.5)


def test_direct_construction_validates() -> None:
    with pytest.raises(ConfigError, match=r"agent\.options\.lam: 1\.5"):
        StaticAgent(1.5)
    with pytest.raises(ConfigError, match=r"agent\.options\.points\[1\]\[0\]"):
        ScheduleAgent(points=[[0.5, 0.1], [0.2, 0.3]])
    assert StaticAgent(0.3).act(None) == 0.3
    assert get_agent(AgentConfig(name="static"), default_lam=0.7).act(None) == 0.7


def test_register_agent() -> None:
    class Half(LambdaAgent):
        name = "half-test"

        def reset(self, seed: int) -> float:
            return 0.5

        def act(self, stats):
            return 0.5

    try:
        register_agent("half-test", Half)
        assert get_agent(AgentConfig(name="half-test"), 0.1).act(None) == 0.5
        with pytest.raises(
            ConfigError, match=r"agent\.options\.x: unknown option 'x'; allowed options: none"
        ):
            get_agent(AgentConfig(name="half-test", options={"x": 1}), 0.1)
        with pytest.raises(ValueError, match="already registered"):
            register_agent("half-test", StaticAgent)
        with pytest.raises(TypeError):
            register_agent("bad", dict)  # type: ignore[arg-type]
    finally:
        AGENTS.pop("half-test", None)
