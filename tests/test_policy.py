"""Exported policies: export = RLlib's deterministic action, loading without ray, bad input.

The RLModules here are built from RLlib's own specs (no Ray cluster needed); the policy
trained by a real PPO run is covered in test_rl.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, cli, share_pretrained


def make_module_checkpoint(path: Path, algo: str, scale_action: bool = False, gain: float = 1.0):
    """An RLModule checkpoint for the env's spaces; ``gain`` scales the policy head's output."""
    import gymnasium as gym
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from unlearn.observation import layout

    if algo == "ppo":
        from ray.rllib.algorithms.ppo import PPOConfig as Algo
    else:
        from ray.rllib.algorithms.sac import SACConfig as Algo
    lay = layout(scale_action)
    obs = gym.spaces.Box(lay.low, lay.high, dtype=np.float32)
    act = gym.spaces.Box(0.0, 1.0, (2 if scale_action else 1,), dtype=np.float32)
    conf = Algo().environment(observation_space=obs, action_space=act)
    conf = conf.rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[16, 16]))
    torch.manual_seed(0)
    module = conf.get_rl_module_spec().build()
    with torch.no_grad():
        for p in module.pi.parameters():
            p.mul_(gain)
    module.save_to_path(str(path))
    return path


def rllib_actions(module_dir: Path, obs: np.ndarray, squash: bool) -> np.ndarray:
    """RLlib's own deterministic env action: forward_inference → dist → deterministic → unsquash."""
    from ray.rllib.core.rl_module.rl_module import RLModule
    from ray.rllib.utils.spaces.space_utils import unsquash_action

    module = RLModule.from_checkpoint(str(module_dir))
    with torch.no_grad():
        out = module.forward_inference({"obs": torch.from_numpy(obs)})
    dist = module.get_inference_action_dist_cls().from_logits(out["action_dist_inputs"])
    a = dist.to_deterministic().sample().numpy()
    if squash:  # SAC's squashed Gaussian; RLlib's to_deterministic() drops the tanh
        a = np.tanh(a)
    return unsquash_action(a, module.action_space)


def random_obs(n: int = 100, scale_action: bool = False, seed: int = 0) -> np.ndarray:
    from unlearn.observation import layout

    lay = layout(scale_action)
    rng = np.random.default_rng(seed)
    return rng.uniform(lay.low, lay.high, size=(n, lay.size)).astype(np.float32)


@pytest.mark.parametrize("algo", ["ppo", "sac"])
@pytest.mark.parametrize("scale_action", [False, True])
@pytest.mark.slow
def test_exported_action_equals_rllib_deterministic_action(tmp_path, algo, scale_action):
    from unlearn.export import load_policy
    from unlearn.export.rllib import export_policy

    ck = make_module_checkpoint(tmp_path / "module", algo, scale_action, gain=3.0)
    obs = random_obs(100, scale_action)
    ref = rllib_actions(ck, obs, squash=(algo == "sac"))
    assert ref.std() > 0.05  # the network's output varies: the comparison can fail
    for fmt in ("torchscript", "onnx"):
        out = export_policy(ck, tmp_path / fmt, fmt, steps_per_decision=2)
        meta = json.loads((out / "metadata.json").read_text())
        assert meta["algorithm"] == algo and meta["steps_per_decision"] == 2
        assert meta["action"]["low"] == [0.0] * ref.shape[1]
        pol = load_policy(out)
        np.testing.assert_allclose(pol(obs), ref, atol=1e-5, rtol=0)
        np.testing.assert_allclose(pol(obs[0]), ref[0], atol=1e-5, rtol=0)
        if algo == "sac":  # without the tanh the export would be wrong: the test sees it
            assert np.abs(rllib_actions(ck, obs, squash=False) - ref).max() > 1e-2


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    from unlearn.config import load_config
    from unlearn.export.rllib import export_policy

    env = load_config(REPO / "configs" / "tiny.yaml").env  # K and proxy cadence of the tiny env
    root = tmp_path_factory.mktemp("policy")
    ck = make_module_checkpoint(root / "module", "ppo", gain=3.0)
    return {
        f: export_policy(
            ck,
            root / f,
            f,
            steps_per_decision=env.steps_per_decision,
            proxy_every=env.proxy_every,
            proxy_batch=env.proxy_batch,
        )
        for f in ("torchscript", "onnx")
    }


def test_policy_agent_loads_without_ray(exported):
    """A subprocess where `import ray` fails builds the agent and acts; same λ as here."""
    from unlearn.export import load_policy

    obs = random_obs(5)
    code = f"""
import sys, json
sys.modules["ray"] = None
import numpy as np
from unlearn.agents import get_agent
from unlearn.config import AgentConfig
out = {{}}
for fmt, d in {json.dumps({k: str(v) for k, v in exported.items()})}.items():
    agent = get_agent(AgentConfig(name="policy", path=d), default_lam=0.5)
    out[fmt] = agent.policy(np.array({obs.tolist()}, dtype=np.float32)).tolist()
try:
    import ray  # noqa
    out["ray"] = "importable"
except ImportError:
    out["ray"] = "blocked"
print(json.dumps(out))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["ray"] == "blocked"
    for fmt, d in exported.items():
        np.testing.assert_allclose(np.array(got[fmt]), load_policy(d)(obs), atol=1e-6)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.slow
def test_policy_agent_acts_like_the_env(exported, tiny_workdir, tmp_path, residual):
    """``unlearn run`` with the exported policy gives the λ trajectory the env gives it
    (with ``env.residual`` too: the metadata carries the base schedule and its width)."""
    from unlearn.config import load_config, with_overrides
    from unlearn.envs.unlearning_env import UnlearningEnv
    from unlearn.export import load_policy
    from unlearn.export.rllib import export_policy
    from unlearn.task import make_unlearner

    res = {"start": 0.6, "end": 0.1, "width": 0.25}
    sets = [f"workdir={tiny_workdir}", "tracking.enabled=false"]
    sets += ["env.residual={start: 0.6, end: 0.1, width: 0.25}"] if residual else []
    cfg = load_config(REPO / "configs" / "tiny.yaml", sets)
    if residual:  # the same network, exported with the residual settings of its env
        ck = make_module_checkpoint(tmp_path / "module", "ppo", gain=3.0)
        env_c = cfg.env
        kw = dict(proxy_every=env_c.proxy_every, proxy_batch=env_c.proxy_batch, residual=res)
        kw["decisions"] = env_c.decisions
        exported = {
            f: export_policy(ck, tmp_path / f, f, steps_per_decision=env_c.steps_per_decision, **kw)
            for f in ("torchscript", "onnx")
        }
        meta = json.loads((exported["onnx"] / "metadata.json").read_text())
        assert meta["residual"] == res and meta["decisions"] == env_c.decisions
    pol = load_policy(exported["onnx"])
    assert (pol.meta["proxy_every"], pol.meta["proxy_batch"]) == (
        cfg.env.proxy_every,
        cfg.env.proxy_batch,
    )
    env = UnlearningEnv(cfg)
    obs, _ = env.reset(seed=0, options={"instance": 5, "seed": 4})
    done, measured = False, []
    while not done:
        obs, _, done, _, info = env.step(pol(obs))
        measured.append(info["proxies_measured"])
    assert any(measured[:-1]) and not all(measured)  # both fresh and carried proxies were acted on
    K, T = cfg.env.steps_per_decision, cfg.env.decisions
    run_cfg = with_overrides(
        cfg,
        [
            "agent.name=policy",
            f"agent.path={exported['torchscript']}",
            "forget.classes=[5]",
            "unlearn.seed=4",
            f"unlearn.steps={K * T}",
            "unlearn.eval_every=0",
        ],
    )
    unl = make_unlearner(run_cfg).unlearner
    unl.reset(4)
    result = unl.run()
    assert result.status == "finished"
    assert len(set(env.lambdas)) > 1  # the policy reacts to its observations
    np.testing.assert_allclose(result.lambdas, np.repeat(env.lambdas, K), atol=1e-5)


def test_metadata_not_matching_the_layout_is_refused(exported, tmp_path):
    import shutil

    from unlearn.config import ConfigError
    from unlearn.export import load_policy

    d = Path(shutil.copytree(exported["torchscript"], tmp_path / "p"))
    meta = json.loads((d / "metadata.json").read_text())
    meta["observation"]["names"][2], meta["observation"]["names"][3] = "forget_rel", "retain_rel"
    (d / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="observation names"):
        load_policy(d)
    meta["observation"]["version"] = "unlearn-obs-v0"
    (d / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="does not match"):
        load_policy(d)
    (d / "metadata.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_policy(d)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_truncated_or_corrupted_policy_file_is_refused(exported, tmp_path, fmt):
    import shutil

    from unlearn.config import ConfigError
    from unlearn.export import load_policy
    from unlearn.export.policy_file import sha256

    d = Path(shutil.copytree(exported[fmt], tmp_path / "p"))
    meta = json.loads((d / "metadata.json").read_text())
    f = d / meta["file"]
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ConfigError, match="corrupted or truncated"):
        load_policy(d)
    meta["sha256"] = sha256(f)  # a matching hash: the loader itself must refuse it
    (d / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="cannot load"):
        load_policy(d)


def test_missing_paths_are_config_errors(tmp_path):
    from unlearn.agents import get_agent
    from unlearn.config import AgentConfig, ConfigError
    from unlearn.export.rllib import export_policy

    with pytest.raises(ConfigError, match="does not exist"):
        export_policy(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(ConfigError, match="no RLModule"):
        export_policy(tmp_path, tmp_path / "out")
    with pytest.raises(ConfigError, match="agent.path"):
        get_agent(AgentConfig(name="policy"), default_lam=0.5)
    with pytest.raises(ConfigError, match="not a directory"):
        get_agent(AgentConfig(name="policy", path=str(tmp_path / "nope")), default_lam=0.5)


@pytest.mark.slow
def test_registered_policy_runs_from_the_workdirs_store(exported, tiny_workdir, tmp_path):
    """The docs' two commands as printed: ``policy register`` puts the policy in the
    workdir's store, and ``run`` with ``agent.path=models:/NAME@ALIAS`` loads it from there
    with no tracking setting (a real sqlite store; no MLFLOW_TRACKING_URI)."""
    import shlex
    import shutil

    readme = "\n".join(p.read_text() for p in [REPO / "README.md", *sorted(REPO.glob("docs/*.md"))])
    printed = [
        line.split("#")[0].strip()
        for line in readme.splitlines()
        if line.startswith("unlearn ") and ("policy register" in line or "models:/" in line)
    ]
    assert len(printed) == 2 and "policy register" in printed[0], printed
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "tiny.yaml", tmp_path / "configs" / "tiny.yaml")
    runs = tmp_path / "runs"
    runs.mkdir()
    share_pretrained(runs, tiny_workdir)
    shutil.copytree(exported["onnx"], runs / "policy")
    extra = [[], ["--no-eval", "--json"]]  # the run: no sample evaluation, its result as JSON
    one_thread = {"OMP_NUM_THREADS": "1", "CI": "1"}
    procs = [
        cli(*shlex.split(cmd)[1:], *more, cwd=tmp_path, timeout=300, env=one_thread)
        for cmd, more in zip(printed, extra, strict=True)
    ]
    for proc in procs:
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert (runs / "mlflow.db").is_file()
    out = procs[1].stdout
    res = json.loads(out[out.find("{") :])
    assert res["status"] == "finished" and len(res["lambdas"]) == 8
