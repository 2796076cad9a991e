"""The unlearning env: Gymnasium contract, determinism, reset from memory, divergence, instances."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def env_cfg(tiny_workdir: Path):
    """configs/tiny.yaml on the session's pretrained tiny model (same cache key as TINY)."""
    from unlearn.config import load_config

    return load_config(
        REPO / "configs" / "tiny.yaml", [f"workdir={tiny_workdir}", "tracking.enabled=false"]
    )


@pytest.fixture
def env(env_cfg):
    from unlearn.envs.unlearning_env import UnlearningEnv

    e = UnlearningEnv(env_cfg)
    yield e
    e.close()


def rollout(env, seed: int, actions: list[float], options: dict | None = None):
    obs, info = env.reset(seed=seed, options=options)
    out = [(obs.copy(), 0.0, info["instance"], info["seed"])]
    for a in actions:
        obs, r, term, trunc, info = env.step(np.array([a], dtype=np.float32))
        out.append((obs.copy(), r, term, trunc))
        if term or trunc:
            break
    return out


def same(a, b) -> bool:
    return all(np.array_equal(x[0], y[0]) and x[1:] == y[1:] for x, y in zip(a, b, strict=True))


def test_check_env_passes(env):
    from gymnasium.utils.env_checker import check_env

    check_env(env, skip_render_check=True)


@pytest.mark.slow
def test_make_by_id_without_arguments_is_the_shipped_demo_and_passes_check_env(
    tmp_path, monkeypatch
):
    from gymnasium.utils.env_checker import check_env

    import unlearn.envs  # noqa: F401  (registers the id)

    monkeypatch.chdir(tmp_path)  # the demo's relative workdir must not land in the repo
    env = gymnasium.make("unlearn/Unlearning-v0")
    raw = env.unwrapped
    assert raw.cfg.name == "demo" and raw.cfg.data.resolution == 16
    assert Path(raw.setup.base_model_dir).is_relative_to(REPO / "unlearn" / "assets" / "demo")
    # check_env never ends an episode: without the end-of-episode evaluation its resets skip
    # the base model's sample-based evaluation per class (1000 demo samples each; the
    # final-eval path is covered on the tiny model by test_spaces_and_one_episode)
    raw.cfg = dataclasses.replace(raw.cfg, env=dataclasses.replace(raw.cfg.env, final_eval=False))
    check_env(raw, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["instance"] in raw.cfg.env.train_instances
    env.close()


def test_make_by_id_from_config_dict_and_rllib_env_config(env_cfg):
    import unlearn.envs  # noqa: F401  (registers the id)
    from unlearn.envs.unlearning_env import as_config

    env = gymnasium.make("unlearn/Unlearning-v0", config=env_cfg)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert as_config(env_cfg.to_dict()) == env_cfg
    assert as_config({"config": env_cfg.to_dict()}) == env_cfg
    env.close()


def test_spaces_and_one_episode(env, env_cfg):
    obs, info = env.reset(seed=3)
    assert obs.dtype == np.float32 and obs.shape == (12,)
    assert info["instance"] in env_cfg.env.train_instances
    total, steps, done = 0.0, 0, False
    while not done:
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert math.isfinite(r) and not trunc
        total, steps, done = total + r, steps + 1, term
    assert steps == env_cfg.env.decisions
    assert obs[0] == pytest.approx(1.0)  # progress
    for key in ("eval/forget_rate", "eval/fid", "base/forget_rate", "base/fid"):
        assert math.isfinite(info[key])
    assert info["episode_return"] == pytest.approx(total)
    assert len(info["lambdas"]) == steps
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.action_space.sample())


@pytest.mark.slow
def test_same_seed_same_trajectory_across_envs(env, env_cfg):
    from unlearn.envs.unlearning_env import UnlearningEnv

    acts = [0.1, 0.9, 0.5, 0.3]
    a = rollout(env, 7, acts)
    b = rollout(env, 7, acts)
    other = UnlearningEnv(env_cfg)
    c = rollout(other, 7, acts)
    assert same(a, b) and same(a, c)
    d = rollout(env, 7, [0.9, 0.9, 0.9, 0.9])
    assert not np.array_equal(a[2][0], d[2][0])  # the action matters: the test can fail


def test_reset_restores_weights_from_memory_never_rebuilds(env, monkeypatch):
    import unlearn.models
    import unlearn.models.io
    import unlearn.pretrain
    import unlearn.task

    model = env.unlearner.model
    start = {k: v.clone() for k, v in model.state_dict().items()}

    def boom(*a, **k):
        raise AssertionError("reset must not load or build a model")

    for mod, name in (
        (unlearn.task, "make_unlearner"),
        (unlearn.pretrain, "load_pretrained"),
        (unlearn.models, "load_model"),
        (unlearn.models.io, "load_model"),
        (unlearn.models, "build_model"),
        (torch, "load"),
    ):
        monkeypatch.setattr(mod, name, boom)
    first = rollout(env, 1, [1.0, 1.0, 1.0, 1.0], {"instance": 3})
    assert any(not torch.equal(v, start[k]) for k, v in model.state_dict().items())
    for c in (5, 2, 3):  # other classes, then back: splits and proxies switch in memory
        env.reset(seed=1, options={"instance": c})
        assert env.unlearner.model is model
        assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())
    again = rollout(env, 1, [1.0, 1.0, 1.0, 1.0], {"instance": 3})
    assert same(first, again)


def test_divergence_ends_with_penalty_and_reset_recovers(env, env_cfg):
    from unlearn.types import LossTerms

    method = env.unlearner.method
    real = method.loss

    def nan_loss(*args, **kwargs):
        t = real(*args, **kwargs)
        return LossTerms(t.retain * float("nan"), t.forget, t.total * float("nan"), t.extras)

    env.reset(seed=0)
    *_, ok = env.step(np.array([0.5], dtype=np.float32))
    method.loss = nan_loss
    obs, r, term, trunc, info = env.step(np.array([0.5], dtype=np.float32))
    assert term and not trunc and info["diverged"]
    assert r == -env_cfg.env.divergence_penalty
    # one info schema: every key of a good step, NaN where the diverged step has no value
    assert set(ok) <= set(info) and {"lambdas", "episode_return"} <= set(info)
    assert info["decision"] == 2 and not info["proxies_measured"] and info["message"]
    for key in ("retain_loss", "forget_loss", "proxy_retain", "proxy_forget"):
        assert math.isnan(info[key]) and math.isfinite(ok[key]), key
    assert env.observation_space.contains(obs)
    del method.loss  # back to the class's loss
    obs, _ = env.reset(seed=0)
    obs, r, term, _, info = env.step(np.array([0.5], dtype=np.float32))
    assert not info["diverged"] and math.isfinite(r) and not term


def test_nonfinite_proxy_is_divergence(env, monkeypatch, env_cfg):
    env.reset(seed=0)
    monkeypatch.setattr(env.unlearner, "proxies", lambda n=None: (float("inf"), 1.0))
    a = np.array([0.5], dtype=np.float32)
    _, r, term, _, info = env.step(a)  # decision 1 measures no proxies (K=2, proxy_every=4)
    assert not term and not info["proxies_measured"]
    _, r, term, _, info = env.step(a)  # decision 2 measures them: inf
    assert term and info["diverged"] and r == -env_cfg.env.divergence_penalty


def test_nan_action_is_replaced_and_logged(env, caplog):
    env.reset(seed=0)
    with caplog.at_level(logging.WARNING, logger="unlearn.envs.unlearning_env"):
        obs, _, _, _, info = env.step(np.array([float("nan")], dtype=np.float32))
    assert "non-finite action" in caplog.text
    assert info["action_fixed"] and info["lambda"] == pytest.approx(env.lam0)
    assert obs[1] == pytest.approx(env.lam0)
    _, _, _, _, info = env.step(np.array([7.0], dtype=np.float32))
    assert info["lambda"] == 1.0 and info["action_fixed"]


def test_instances_train_test_and_explicit(env, env_cfg):
    seen = {env.reset(seed=s)[1]["instance"] for s in range(12)}
    assert seen <= set(env_cfg.env.train_instances) and len(seen) > 1
    tests = {env.reset(seed=s, options={"split": "test"})[1]["instance"] for s in range(6)}
    assert tests <= set(env_cfg.env.test_instances)
    _, info = env.reset(seed=0, options={"instance": 8, "seed": 11})
    assert (info["instance"], info["seed"], info["split"]) == (8, 11, "test")
    p8 = info["proxy_forget"]
    _, info = env.reset(seed=0, options={"instance": 1})
    assert info["split"] == "train" and info["proxy_forget"] != p8
    with pytest.raises(ValueError, match="instance"):
        env.reset(options={"instance": 42})
    with pytest.raises(ValueError, match="unknown key"):
        env.reset(options={"klass": 1})


def test_bad_instances_fail_at_construction(env_cfg):
    from unlearn.config import ConfigError
    from unlearn.envs.unlearning_env import UnlearningEnv

    bad = dataclasses.replace(env_cfg, env=dataclasses.replace(env_cfg.env, test_instances=(99,)))
    with pytest.raises(ConfigError, match="env.test_instances"):
        UnlearningEnv(bad)


@pytest.mark.parametrize("proxy_every", [1, 4, 100])
def test_rewards_sum_to_the_runs_tradeoff(env_cfg, proxy_every):
    """Per-decision rewards telescope: their sum is the run's change, whatever the cadence."""
    from unlearn.envs.unlearning_env import UnlearningEnv

    cfg = dataclasses.replace(
        env_cfg, env=dataclasses.replace(env_cfg.env, final_eval=False, proxy_every=proxy_every)
    )
    env = UnlearningEnv(cfg)
    _, info0 = env.reset(seed=2)
    total, done = 0.0, False
    while not done:
        _, r, done, _, info = env.step(np.array([0.8], dtype=np.float32))
        total += r
    f = math.log(info["proxy_forget"] / info0["proxy_forget"])
    rr = math.log(info["proxy_retain"] / info0["proxy_retain"])
    assert total == pytest.approx(f - cfg.env.beta * rr, rel=1e-6, abs=1e-9)


def test_scale_action_sets_the_methods_forget_scale(env_cfg):
    from unlearn.envs.unlearning_env import UnlearningEnv
    from unlearn.observation import SCALE_RANGE

    cfg = dataclasses.replace(env_cfg, env=dataclasses.replace(env_cfg.env, scale_action=True))
    env = UnlearningEnv(cfg)
    obs, _ = env.reset(seed=0)
    assert env.action_space.shape == (2,) and obs.shape == (13,)
    _, _, _, _, info = env.step(np.array([0.5, 0.25], dtype=np.float32))
    lo, hi = SCALE_RANGE
    assert env.unlearner.method.scale == pytest.approx(lo + 0.25 * (hi - lo))
    assert info["scale"] == env.unlearner.method.scale
    env.reset(seed=0)  # back to the configured scale
    assert env.unlearner.method.scale == env_cfg.method.scale


def test_residual_action_moves_lambda_around_the_base_schedule(env_cfg):
    """With env.residual a fresh policy's entry 0.5 runs the linear schedule; 1 and 0 move λ
    by ±width around it (clipped to [0, 1]); prev_lambda reports the λ applied."""
    from unlearn.envs.unlearning_env import UnlearningEnv
    from unlearn.observation import layout

    residual = {"start": 0.5, "end": 0.1, "width": 0.3}
    cfg = dataclasses.replace(env_cfg, env=dataclasses.replace(env_cfg.env, residual=residual))
    env = UnlearningEnv(cfg)
    T, prev = cfg.env.decisions, layout().names.index("prev_lambda")
    assert T == 4  # the tiny env: 0.4 + 0.3 at decision 1, 0.3 - 0.3 at decision 2
    obs, _ = env.reset(seed=0)
    assert obs[prev] == pytest.approx(0.5) and env.initial_action()[0] == 0.5
    entries = [0.5, 1.0, 0.0, 0.9]
    for d, a in enumerate(entries):
        obs, _, done, _, info = env.step(np.array([a], dtype=np.float32))
        base = 0.5 + (0.1 - 0.5) * d / T
        want = min(1.0, max(0.0, base + 0.3 * (2 * a - 1)))
        assert info["lambda"] == pytest.approx(want, abs=1e-6), (d, a)
        assert obs[prev] == pytest.approx(want, abs=1e-6)
        if done:
            break
    assert env.lambdas[1] == pytest.approx(0.7) and env.lambdas[2] == pytest.approx(0.0, abs=1e-7)
    plain = UnlearningEnv(env_cfg)  # without it the entry is λ itself
    plain.reset(seed=0)
    _, _, _, _, info = plain.step(np.array([0.9], dtype=np.float32))
    assert info["lambda"] == pytest.approx(0.9)


def test_proxies_are_measured_on_their_cadence_and_carried_between(env_cfg, monkeypatch):
    """K=2, proxy_every=4: proxies after decisions 2 and 4 (and the last); carried and aged else."""
    from unlearn.envs.unlearning_env import UnlearningEnv
    from unlearn.observation import layout

    names = layout().names
    age, rel, delta = (
        names.index("proxy_age"),
        names.index("forget_rel"),
        names.index("forget_delta"),
    )
    for every, want in (
        (1, [True] * 4),
        (4, [False, True, False, True]),
        (100, [False, False, False, True]),
    ):
        cfg = dataclasses.replace(
            env_cfg,
            env=dataclasses.replace(env_cfg.env, final_eval=False, proxy_every=every, decisions=4),
        )
        env = UnlearningEnv(cfg)
        calls: list[int | None] = []

        def counted(n=None, real=env.unlearner.proxies, calls=calls):
            calls.append(n)
            return real(n)

        monkeypatch.setattr(env.unlearner, "proxies", counted)
        env.reset(seed=0, options={"instance": 3, "seed": 0})
        calls.clear()
        got, obs_seq, rewards = [], [], []
        for _ in range(4):
            obs, r, _, _, info = env.step(np.array([0.9], dtype=np.float32))
            got.append(info["proxies_measured"])
            obs_seq.append(obs)
            rewards.append(r)
        assert got == want and calls == [cfg.env.proxy_batch] * sum(want)
        budget = cfg.env.decisions * cfg.env.steps_per_decision
        for i, (o, m) in enumerate(zip(obs_seq, want, strict=True)):
            if m:
                assert o[age] == 0.0 and o[rel] != 0.0  # a fresh measurement moved forget_rel
            else:
                last = max([j for j in range(i) if want[j]], default=-1)
                steps_since = (i - last) * cfg.env.steps_per_decision
                assert o[age] == pytest.approx(steps_since / budget)
                assert rewards[i] == 0.0  # nothing measured, nothing rewarded
                prev = obs_seq[last] if last >= 0 else None
                assert o[rel] == (prev[rel] if prev is not None else 0.0)
                assert o[delta] == (prev[delta] if prev is not None else 0.0)
