"""The env's stop action and sample-based forget probe, and an exported policy that uses them.

The policy here is a hand-written TorchScript module in the exported format (policy.pt +
metadata.json): it stops once progress reaches one half, so the test knows where the run
must end; the env and ``unlearn run`` with the policy agent must end there alike.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def stop_cfg(tiny_workdir: Path):
    from unlearn.config import load_config

    return load_config(
        REPO / "configs" / "tiny.yaml",
        [
            f"workdir={tiny_workdir}",
            "tracking.enabled=false",
            "env.stop_action=true",
            "env.forget_probe=12",
            "env.step_cost=0.01",
            "env.proxy_every=1",
        ],
    )


@pytest.mark.slow
def test_spaces_check_env_and_stop_ends_the_episode_before_its_steps(stop_cfg):
    from gymnasium.utils.env_checker import check_env

    from unlearn.envs.unlearning_env import UnlearningEnv

    env = UnlearningEnv(stop_cfg)
    assert env.action_space.shape == (2,)  # λ, stop
    assert env.observation_space.shape == (14,)  # 12 base fields + forget_probe(0)
    check_env(env, skip_render_check=True)
    k = stop_cfg.env.steps_per_decision
    obs, _ = env.reset(seed=0, options={"instance": 5, "seed": 1})
    assert obs[-2] == pytest.approx(1.0)  # the probe relative to itself at reset
    rewards, infos = [], []
    for stop in (0.0, 0.2, 0.9, 0.0):
        obs, r, term, _, info = env.step(np.array([0.4, stop], dtype=np.float32))
        rewards.append(r)
        infos.append(info)
        if term:
            break
    assert len(infos) == 3 and term and infos[-1]["stopped"]
    assert [i["steps_used"] for i in infos] == [k, 2 * k, 2 * k]
    assert env.unlearner.t == 2 * k  # the stop decision ran no optimiser step
    assert env.lambdas == pytest.approx([0.4, 0.4])
    assert np.isfinite(infos[-1]["eval/forget_rate"])  # the final evaluation ran at the stop
    assert infos[-1]["episode_return"] == pytest.approx(sum(rewards))
    # a full episode pays step_cost for every step: the same λ without stopping costs more
    env.reset(seed=0, options={"instance": 5, "seed": 1})
    full = [env.step(np.array([0.4, 0.0], dtype=np.float32)) for _ in range(env.T)]
    assert full[-1][4]["steps_used"] == env.T * k and not full[-1][4]["stopped"]
    assert full[0][1] == pytest.approx(rewards[0])  # same first decision, same reward


def test_forget_probe_is_the_forget_class_probability_of_fixed_noise_samples(stop_cfg):
    from unlearn.envs.unlearning_env import UnlearningEnv
    from unlearn.metrics.evaluate import generate

    env = UnlearningEnv(stop_cfg)
    env.reset(seed=0, options={"instance": 5, "seed": 1})
    unl = env.unlearner
    probs, _ = unl.classifier.predict(generate(unl.model, unl.cfg, 12))
    p0 = float(probs[:, 5].mean())
    assert unl.forget_probe(12) == pytest.approx(p0, rel=1e-6)
    assert unl.forget_probe(12) == unl.forget_probe(12)  # fixed noise: deterministic
    obs, *_ = env.step(np.array([0.0, 0.0], dtype=np.float32))  # λ = 0: forget strongly
    probs, _ = unl.classifier.predict(generate(unl.model, unl.cfg, 12))
    assert obs[-2] == pytest.approx(min(2.0, float(probs[:, 5].mean()) / p0), rel=1e-5)
    assert obs[-1] == pytest.approx(p0, rel=1e-5)  # the probe at reset stays in the observation


def test_first_observation_tells_instances_apart_and_keeps_it_during_the_run(stop_cfg):
    """Every relative field is 0 at reset; the instance fields (log proxies, the probe at
    reset) differ between forget classes, so a policy's first λ can depend on the class."""
    from unlearn.envs.unlearning_env import UnlearningEnv
    from unlearn.observation import layout

    names = layout(False, True).names
    inst = [names.index(n) for n in ("log_retain0", "log_forget0", "forget_probe0")]
    env = UnlearningEnv(stop_cfg)
    first = {c: env.reset(seed=0, options={"instance": c, "seed": 1})[0] for c in (3, 5)}
    a, b = first[3], first[5]
    rest = [i for i in range(len(names)) if i not in inst]
    np.testing.assert_array_equal(a[rest], b[rest])  # nothing else tells them apart
    assert abs(a[inst[1]] - b[inst[1]]) > 1e-3 and a[inst[2]] != b[inst[2]]
    assert np.isfinite(a[inst]).all() and (a[inst[:2]] < 0).all()  # log of losses < 1
    obs, *_ = env.step(np.array([0.5, 0.0], dtype=np.float32))
    np.testing.assert_allclose(obs[inst], b[inst])  # constant during the run


def test_probe_without_a_classifier_and_bad_values_are_config_errors(stop_cfg, tiny_workdir):
    from unlearn.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="env.forget_probe"):
        load_config(REPO / "configs" / "tiny.yaml", ["env.forget_probe=-1"])
    with pytest.raises(ConfigError, match="env.step_cost"):
        load_config(REPO / "configs" / "tiny.yaml", ["env.step_cost=2"])


class _StopAtHalf(torch.nn.Module):
    """λ rises with progress; stop once progress >= 0.5 (obs[0] is progress)."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        p = obs[..., :1]
        return torch.cat([0.2 + 0.6 * p, (p >= 0.5).to(obs.dtype)], dim=-1)


def write_stop_policy(d: Path, cfg) -> Path:
    """An exported policy (TorchScript + metadata) with the stop action and the probe."""
    from unlearn.export.policy_file import SCHEMA, sha256, write_metadata
    from unlearn.observation import action_names, layout

    d.mkdir(parents=True)
    torch.jit.script(_StopAtHalf()).save(str(d / "policy.pt"))
    lay = layout(False, True)
    write_metadata(
        d,
        {
            "schema": SCHEMA,
            "format": "torchscript",
            "file": "policy.pt",
            "sha256": sha256(d / "policy.pt"),
            "algorithm": "ppo",
            "observation": lay.to_dict(),
            "scale_action": False,
            "stop_action": True,
            "forget_probe": cfg.env.forget_probe,
            "action": {"names": action_names(False, True), "low": [0, 0], "high": [1, 1]},
            "steps_per_decision": cfg.env.steps_per_decision,
            "proxy_every": cfg.env.proxy_every,
            "proxy_batch": cfg.env.proxy_batch,
            "input": {"name": "obs", "dtype": "float32", "shape": ["batch", lay.size]},
        },
    )
    return d


def test_policy_agent_stops_the_run_where_the_env_stops(stop_cfg, tmp_path):
    from unlearn.config import with_overrides
    from unlearn.envs.unlearning_env import UnlearningEnv
    from unlearn.export import load_policy
    from unlearn.task import make_unlearner

    pdir = write_stop_policy(tmp_path / "pol", stop_cfg)
    pol = load_policy(pdir)
    env = UnlearningEnv(stop_cfg)
    obs, _ = env.reset(seed=0, options={"instance": 5, "seed": 4})
    done = False
    while not done:
        obs, _, done, _, info = env.step(pol(obs))
    k, t = stop_cfg.env.steps_per_decision, stop_cfg.env.decisions
    assert info["stopped"] and info["steps_used"] == k * t // 2
    run_cfg = with_overrides(
        dataclasses.replace(stop_cfg, env=dataclasses.replace(stop_cfg.env, stop_action=False)),
        [
            "agent.name=policy",
            f"agent.path={pdir}",
            "forget.classes=[5]",
            "unlearn.seed=4",
            f"unlearn.steps={k * t}",
            "unlearn.eval_every=0",
        ],
    )
    unl = make_unlearner(run_cfg).unlearner
    unl.reset(4)
    result = unl.run()
    assert result.status == "finished" and result.steps == info["steps_used"]
    assert "stopped by agent 'policy'" in result.message
    np.testing.assert_allclose(result.lambdas, np.repeat(env.lambdas, k), atol=1e-6)


def test_metadata_with_the_stop_action_is_checked(stop_cfg, tmp_path):
    from unlearn.config import ConfigError
    from unlearn.export import load_policy

    pdir = write_stop_policy(tmp_path / "pol", stop_cfg)
    meta = json.loads((pdir / "metadata.json").read_text())
    meta["stop_action"] = False  # 2 action bounds, but only λ declared
    (pdir / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="do not have 1 entries"):
        load_policy(pdir)
    meta.update(stop_action=True, forget_probe=0)  # the layout then lacks forget_probe
    (pdir / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="observation names"):
        load_policy(pdir)
