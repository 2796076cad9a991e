"""RLlib on the tiny env through the real ``unlearn`` command: train, resume, export, eval,
register in a real MLflow SQLite store, load back. One PPO training serves the module.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, cli, cli_here, share_pretrained

TINY_YAML = REPO / "configs" / "tiny.yaml"

pytestmark = pytest.mark.integration


#: the children's environment: one torch thread (RLlib's workers share the two CPUs), CI mode
RL_ENV = {"OMP_NUM_THREADS": "1", "CI": "1"}


def last_json(proc: subprocess.CompletedProcess):
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )
    text = proc.stdout
    return json.loads(text[min(i for i in (text.find("{"), text.find("[")) if i >= 0) :])


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_workdir: Path) -> Path:
    """A private workdir that reuses the session's pretrained tiny models."""
    return share_pretrained(tmp_path_factory.mktemp("rl-work"), tiny_workdir)


def cfg_args(work: Path) -> list[str]:
    return [
        "--config",
        str(TINY_YAML),
        "--set",
        f"workdir={work}",
        "--set",
        f"tracking.uri=sqlite:///{work}/mlflow.db",
    ]


def train_ppo(work: Path, *config: str) -> dict:
    """``unlearn rl train``: one PPO iteration with one env runner into ``work/ppo``."""
    proc = cli(
        "rl",
        "train",
        *config,
        "--algo",
        "ppo",
        "--iterations",
        "1",
        "--env-runners",
        "1",
        "--out",
        str(work / "ppo"),
        "--json",
        cwd=work,
        env=RL_ENV,
    )
    return last_json(proc)


@pytest.fixture(scope="module")
def trained(work: Path) -> dict:
    return train_ppo(work, *cfg_args(work))


@pytest.fixture(scope="module")
def exported(trained: dict, work: Path) -> dict[str, Path]:
    out = {}
    for fmt in ("torchscript", "onnx"):
        proc = cli(
            "policy",
            "export",
            trained["checkpoint"],
            "--format",
            fmt,
            "--out",
            str(work / f"policy-{fmt}"),
            cwd=work,
            env=RL_ENV,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[fmt] = work / f"policy-{fmt}"
    return out


def test_ppo_trains_one_iteration_checkpoints_and_logs_to_mlflow(trained: dict, work: Path):
    from mlflow.tracking import MlflowClient

    ck = Path(trained["checkpoint"])
    assert ck.name == "iter_0001" and (ck / "rllib_checkpoint.json").is_file()
    side = json.loads((ck / "unlearn_rl.json").read_text())
    assert side["algo"] == "ppo" and side["env"]["steps_per_decision"] == 2
    assert math.isfinite(trained["returns"][0]), trained
    lams = trained["lambdas"][0]
    assert len(lams) == 4 and all(0.0 <= v <= 1.0 for v in lams), trained
    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
    run = client.get_run(trained["run_id"])
    assert run.info.status == "FINISHED"
    for key in ("env/episode_return", "unlearn/lambda_d0", "rl/total_loss", "eval/forget_rate"):
        assert key in run.data.metrics, sorted(run.data.metrics)
    arts = {a.path for a in client.list_artifacts(trained["run_id"])}
    assert {"lambda.png", "train.json"} <= arts


def test_resume_continues_from_the_checkpoint(trained: dict, work: Path):
    proc = cli(
        "rl",
        "train",
        *cfg_args(work),
        "--resume",
        trained["checkpoint"],
        "--iterations",
        "1",
        "--env-runners",
        "0",
        "--out",
        str(work / "ppo2"),
        "--json",
        cwd=work,
        env=RL_ENV,
    )
    res = last_json(proc)
    assert Path(res["checkpoint"]).name == "iter_0002"


def test_exported_policies_equal_rllib_actions(trained: dict, exported: dict[str, Path]):
    from test_policy import random_obs, rllib_actions

    from unlearn.export import load_policy
    from unlearn.export.rllib import find_module_dir

    obs = random_obs(100)
    ref = rllib_actions(find_module_dir(trained["checkpoint"]), obs, squash=False)
    for fmt, d in exported.items():
        meta = json.loads((d / "metadata.json").read_text())
        assert meta["format"] == fmt and meta["algorithm"] == "ppo"
        assert meta["steps_per_decision"] == 2
        assert meta["source_checkpoint"] == trained["checkpoint"]
        np.testing.assert_allclose(load_policy(d)(obs), ref, atol=1e-5, rtol=0)


def test_rl_eval_policy_vs_static_baselines(trained: dict, work: Path):
    proc = cli(
        "rl",
        "eval",
        trained["checkpoint"],
        *cfg_args(work),
        "--seeds",
        "2",
        "--lams",
        "0,1",
        "--json",
        cwd=work,
        env=RL_ENV,
    )
    rows = last_json(proc)
    assert [r["agent"] for r in rows] == ["policy (ppo checkpoint)", "static λ=0", "static λ=1"]
    for r in rows:
        assert r["episodes"] == 4  # 2 held-out instances x 2 seeds
        assert math.isfinite(r["forget_rate"]["mean"]) and math.isfinite(r["fid"]["mean"])
        assert r["forget_rate"]["std"] >= 0
    assert rows[1]["episode_return"] != rows[2]["episode_return"]


def test_register_and_load_back_from_the_registry(exported: dict[str, Path], work: Path):
    from unlearn.agents import get_agent
    from unlearn.config import AgentConfig
    from unlearn.export import load_policy

    uri = f"sqlite:///{work}/mlflow.db"
    proc = cli(
        "policy",
        "register",
        str(exported["onnx"]),
        "--name",
        "tiny-ppo",
        "--alias",
        "champion",
        *cfg_args(work),
        "--json",
        cwd=work,
        env=RL_ENV,
    )
    reg = last_json(proc)
    assert reg["uri"] == "models:/tiny-ppo@champion" and reg["version"] == "1"
    obs = np.random.default_rng(1).uniform(-1, 1, (20, 9)).astype(np.float32).clip(0, 1)
    back = load_policy("models:/tiny-ppo@champion", tracking_uri=uri)
    assert back.format == "onnx"
    np.testing.assert_allclose(back(obs), load_policy(exported["onnx"])(obs), atol=1e-7)
    agent = get_agent(
        AgentConfig(name="policy", path="models:/tiny-ppo@champion", options={"tracking_uri": uri}),
        default_lam=0.5,
    )
    assert 0.0 <= agent.act(None) <= 1.0
    proc = cli(
        "run",
        *cfg_args(work),
        "--set",
        "agent.name=policy",
        "--set",
        "agent.path=models:/tiny-ppo@champion",
        "--set",
        f"agent.options.tracking_uri={uri}",
        "--no-eval",
        "--json",
        cwd=work,
        env=RL_ENV,
    )
    res = last_json(proc)
    assert res["status"] == "finished" and len(res["lambdas"]) == 8


def test_cli_bad_input_exits_2_with_one_line(work: Path, tmp_path: Path):
    proc = cli(
        "policy",
        "export",
        str(tmp_path / "missing"),
        "--out",
        str(tmp_path / "o"),
        cwd=work,
        env=RL_ENV,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = cli_here("rl", "eval", str(tmp_path / "missing"), *cfg_args(work), cwd=work, env=RL_ENV)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = cli_here("rl", "train", *cfg_args(work), "--algo", "dqn", cwd=work, env=RL_ENV)
    assert proc.returncode == 2 and "--algo" in proc.stderr


def test_a_fresh_policy_continues_by_default(work: Path):
    """``unlearn rl train`` starts the stop entry low: an untrained policy's deterministic
    action never stops and a sampled one stops in few decisions (RLlib's default start, a
    raw mean near 0 with std 1, stopped 36% of them at the 0.8 threshold)."""
    import torch
    from scipy.stats import norm

    from unlearn.config import load_config
    from unlearn.observation import STOP_THRESHOLD, layout
    from unlearn.rl.train import algo_config, init_policy
    from unlearn.runtime import init_ray

    cfg = load_config(
        TINY_YAML,
        [f"workdir={work}", "tracking.enabled=false", "env.stop_action=true", "env.forget_probe=8"],
    )
    started = init_ray(num_cpus=1)
    algo = algo_config(cfg, "ppo", 0).build_algo()
    try:
        lay = layout(False, True)
        obs = np.random.default_rng(0).uniform(lay.low, lay.high, (256, lay.size))
        module = algo.env_runner_group.local_env_runner.module  # the single-agent RLModule

        def stop_rate() -> tuple[float, float]:
            with torch.no_grad():
                out = module.forward_inference({"obs": torch.tensor(obs, dtype=torch.float32)})
            mean, log_std = out["action_dist_inputs"].chunk(2, dim=-1)
            raw = 2 * STOP_THRESHOLD - 1  # the raw output above which the entry stops
            p = norm.sf(raw, loc=mean[:, -1].numpy(), scale=np.exp(log_std[:, -1].numpy()))
            return float((mean[:, -1] > raw).float().mean()), float(p.mean())

        _, p_default = stop_rate()
        init_policy(algo, stop_action=True)
        det, p_fresh = stop_rate()
        assert det == 0.0 and p_fresh < 0.1 and p_fresh < p_default / 3, (p_fresh, p_default)
    finally:
        algo.stop()
        if started:
            import ray

            ray.shutdown()
