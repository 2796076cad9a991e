"""The drivers on the SDXL family (the session's tiny SDXL pipeline): ``unlearn run`` with its
evaluation, ``unlearn eval`` of the saved pipeline, ``unlearn audit``, the env, the bench,
``unlearn tune`` and ``unlearn rl train`` with its exported policy driving a run — all through
the family seam, none of them told the kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import SDXL_TINY, cli, sdxl_cfg

AUDIT = [
    "forget.anchor=a handwritten digit",
    "audit.relearn_steps=2",
    "audit.relearn_every=2",
    "audit.relearn_forget_samples=4",
    "audit.relearn_retain_samples=16",
    "audit.relearn_batch_size=4",
    "audit.prompt_samples=4",
    "audit.mia_samples=4",
    "audit.mia_noise=1",
    "audit.inversion_steps=2",
    "audit.adversarial_candidates=3",
    "audit.adversarial_images=4",
]
ENV = [
    "env.train_instances=[1,3]",
    "env.test_instances=[2]",
    "env.decisions=2",
    "env.steps_per_decision=1",
    "env.proxy_every=1",
    "env.proxy_batch=4",
    "env.final_eval_samples=10",
    "forget.retain_prompts=[a handwritten digit one, a handwritten digit two, the digit five]",
]
LORA = ["model.train=lora", "model.lora_rank=2", "unlearn.steps=2"]


@pytest.fixture(scope="module")
def unlearned(sdxl_workdir) -> tuple[Path, object]:
    """The tiny SDXL pipeline, ESD-unlearned through LoRA by ``unlearn run`` (evaluated)."""
    from unlearn.run import run

    res = run(sdxl_cfg(*AUDIT, *LORA, workdir=sdxl_workdir))
    return Path(res.model_dir), res


@pytest.mark.slow
def test_run_evaluates_and_saves_an_sdxl_pipeline_with_adapters(unlearned):
    out, res = unlearned
    assert res.status == "finished"
    for side in (res.before, res.after):
        d = side.to_dict()
        assert 0 <= d["concept_rate"] <= 1 and 0 <= d["paraphrase_concept_rate"] <= 1
        assert 0 <= d["retain_accuracy"] <= 1 and d["fid"] >= 0
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert (out / "pytorch_lora_weights.safetensors").is_file()


def _eval(cfg, model_dir, tmp_path):
    from unlearn.families import family_of, family_of_dir

    assert family_of_dir(model_dir) is family_of(cfg)
    rep = family_of(cfg).evaluate_dir(cfg, model_dir, out=tmp_path / "eval")
    assert (tmp_path / "eval" / "metrics.json").is_file()
    return {"concept_rate": rep.result.primary_rate}


def _audit(cfg, model_dir, tmp_path):
    from unlearn.audit import run_audit

    rep = run_audit(cfg, model_dir, out=tmp_path / "audit").report.to_dict()
    assert rep["kind"] == "sdxl" and rep["metric"] == "concept_rate"
    assert rep["attacks"] == ["relearn", "mia", "paraphrase", "inversion", "adversarial"]
    for i in rep["inversion"]:  # a token learned in both encoders' tables
        assert i["prompt"] == "a handwritten digit <inverted>" and i["steps"] == 2
    return {"inversion": rep["inversion"][-1]["recovered_concept_rate"]}


def _env(cfg, model_dir, tmp_path):
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import unlearn.envs  # noqa: F401 (registers the env)

    env = gym.make("unlearn/Unlearning-v0", config=sdxl_cfg(*ENV, workdir=cfg.workdir))
    try:
        _, info = env.reset(seed=0, options={"instance": 3})
        assert env.unwrapped.unlearner.eval_data.spec.concept == "three"
        done = False
        while not done:
            _, r, term, trunc, info = env.step(np.array([0.7], dtype=np.float32))
            done = term or trunc
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()
    return {"forget_rate": info["eval/forget_rate"]}


def _bench(cfg, model_dir, tmp_path):
    from unlearn.bench import BenchOptions, run_bench

    bcfg = sdxl_cfg(*ENV, workdir=cfg.workdir)
    opts = BenchOptions(methods=("esd",), agents=("static",), seeds=1, out=str(tmp_path / "b"))
    run_bench(bcfg, opts)
    runs = json.loads((tmp_path / "b" / "results.json").read_text())["runs"]
    assert len(runs) == 1 and runs[0]["status"] == "finished" and runs[0]["instance"] == 2
    assert "paraphrase concept rate" in (tmp_path / "b" / "bench.md").read_text()
    return {"forget_rate": runs[0]["forget_rate"]}


def _tune(cfg, model_dir, tmp_path):
    import ray

    from unlearn.tuners import SweepOptions, init_ray, load_space, run_sweep

    repo = Path(__file__).resolve().parents[1]
    tcfg = sdxl_cfg("unlearn.steps=2", "tune.cpus_per_trial=1", workdir=cfg.workdir)
    init_ray(num_cpus=2)
    try:
        space = load_space(repo / "configs" / "tune" / "t2i_methods.yaml")
        res = run_sweep(tcfg, space, SweepOptions(search="random", num_samples=1, name="sdxl"))
    finally:
        ray.shutdown()
    assert [t.status for t in res.trials] == ["finished"]
    return {"forget_rate": res.trials[0].forget_rate}


def _rl(cfg, model_dir, tmp_path):
    """``unlearn rl train`` (one PPO iteration on the env over SDXL concepts), then its
    exported policy as the λ agent of an SDXL run."""
    import yaml
    from test_rl import last_json, train_ppo

    from unlearn.config import apply_overrides

    sets = [*SDXL_TINY, *ENV, f"workdir={cfg.workdir}", "tracking.enabled=false"]
    (tmp_path / "sdxl.yaml").write_text(yaml.safe_dump(apply_overrides({}, sets)))
    args = ["--config", str(tmp_path / "sdxl.yaml")]
    small = ["--set", "rl.train_batch_size=4", "--set", "rl.minibatch_size=2"]
    trained = train_ppo(tmp_path, *args, *small)
    assert len(trained["returns"]) == 1
    out = tmp_path / "pol"
    proc = cli(
        "policy", "export", trained["checkpoint"], "--format", "torchscript", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = last_json(
        cli("run", *args, "--set", "agent.name=policy", "--set", f"agent.path={out}", "--json")
    )
    assert json.loads((Path(res["model_dir"]) / "unlearn.json").read_text())["family"] == "sdxl"
    return {"forget_rate": res["after"]["concept_rate"]}


DRIVERS = {
    "eval": _eval,
    "audit": _audit,
    "env": _env,
    "bench": _bench,
    "tune": _tune,
    "rl": _rl,
}
INTEGRATION = ("tune", "rl")  # a Ray cluster


@pytest.mark.slow
@pytest.mark.parametrize(
    "driver",
    [
        *[d for d in DRIVERS if d not in INTEGRATION],
        *[pytest.param(d, marks=pytest.mark.integration) for d in INTEGRATION],
    ],
)
def test_every_driver_runs_on_sdxl(unlearned, sdxl_workdir, tmp_path, driver):
    model_dir, _ = unlearned
    cfg = sdxl_cfg(*AUDIT, *LORA, workdir=sdxl_workdir)
    rates = DRIVERS[driver](cfg, model_dir, tmp_path)
    assert all(0.0 <= v <= 1.0 for v in rates.values()), rates


@pytest.mark.slow
def test_cli_run_json_on_sdxl(sdxl_workdir, tmp_path):
    """The real console command: ``unlearn run --json`` on an SDXL config."""
    (tmp_path / "defaults.yaml").write_text("{}\n")
    sets = [a for s in [*SDXL_TINY, f"workdir={sdxl_workdir}"] for a in ("--set", s)]
    r = cli("run", "--config", str(tmp_path / "defaults.yaml"), *sets, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert 0 <= res["after"]["concept_rate"] <= 1
    assert json.loads((Path(res["model_dir"]) / "unlearn.json").read_text())["family"] == "sdxl"
