"""Robustness on pipelines: ``bench --audit`` adds the concept rate after the relearning
attacks and after the adversarial-prompt attack, with CIs; ``tune.objective`` and the env's
reward can name the post-attack concept rate, which image models refuse in one line."""

from __future__ import annotations

import json

import pytest
from helpers import share_pretrained, t2i_cfg

from unlearn.config import ConfigError, load_config

ROBUST = [
    "method.name=uce",
    "forget.anchor=a handwritten digit",
    "env.test_instances=[2]",
    "audit.attacked_steps=2",
    "audit.relearn_batch_size=4",
    "audit.relearn_retain_samples=16",
    "audit.prompt_samples=4",
    "audit.adversarial_images=4",
    "audit.adversarial_candidates=3",
]


@pytest.mark.slow
def test_bench_audit_on_a_pipeline_adds_robustness_columns_with_cis(tmp_path, t2i_pretrained):
    from unlearn.bench import BenchOptions, run_bench

    wd = share_pretrained(tmp_path / "w", t2i_pretrained)
    cfg = t2i_cfg(*ROBUST, workdir=wd)
    opts = BenchOptions(
        methods=("uce",), agents=("static",), seeds=2, audit=True, out=str(tmp_path / "b")
    )
    res = run_bench(cfg, opts)
    runs = json.loads((tmp_path / "b" / "results.json").read_text())["runs"]
    assert len(runs) == 2 and all(r["status"] == "finished" for r in runs)
    keys = ("attacked_forget_rate", "benign_forget_rate", "adversarial_concept_rate")
    assert all(0 <= r[k] <= 1 for r in runs for k in keys)
    assert all(r["mia_auc"] is None for r in runs)  # no held-out latents in the bench
    (s,) = res.summaries
    for k in keys:
        st = s.stats[k]
        assert st.n == 2 and st.mean == pytest.approx(sum(r[k] for r in runs) / 2)
        assert st.ci >= 0  # a finite confidence interval over the two seeds
    head = (tmp_path / "b" / "bench.md").read_text().split("## Summary")[1].strip().splitlines()[0]
    assert "post-attack concept rate (adversarial prompts)" in head
    assert "attacked forget rate" in head and "MIA" not in head


def test_adversarial_objectives_refuse_image_models_in_one_line():
    from unlearn.envs import UnlearningEnv
    from unlearn.tuners.sweep import check_objective

    image = load_config(None, ["tune.objective=adversarial_concept_rate"])
    with pytest.raises(ConfigError, match="tune.objective: 'adversarial_concept_rate'") as e:
        check_objective(image)
    assert "\n" not in str(e.value) and "forget_rate, attacked_forget_rate" in str(e.value)
    check_objective(t2i_cfg("tune.objective=adversarial_concept_rate"))  # a pipeline: fine
    env_cfg = load_config(None, ["env.attack=adversarial", "env.attack_weight=1"])
    with pytest.raises(ConfigError, match="env.attack: 'adversarial' is not allowed"):
        UnlearningEnv(env_cfg)  # before any model loads


@pytest.mark.slow
def test_env_final_reward_subtracts_the_post_attack_concept_rate(tmp_path, t2i_pretrained):
    """``env.attack=adversarial``: the episode's final reward pays for the concept the
    adversarial prompts bring back, the same rate the audit function measures."""
    import math

    import numpy as np

    from unlearn.audit import attacked_rates
    from unlearn.envs.unlearning_env import ATTACK_KEYS, UnlearningEnv

    wd = share_pretrained(tmp_path / "w", t2i_pretrained)
    w = 2.0
    cfg = t2i_cfg(
        *ROBUST, "method.name=esd", "unlearn.steps=2", "env.decisions=1", "env.reward=final",
        "env.attack=adversarial", f"env.attack_weight={w}", "tracking.enabled=false",
        workdir=wd,
    )  # fmt: skip
    env = UnlearningEnv(cfg)
    env.reset(seed=0, options={"instance": 2, "seed": 1})
    term = False
    while not term:
        _, reward, term, _, info = env.step(np.array([0.5], dtype=np.float32))
    attacked = info[ATTACK_KEYS["adversarial"]]
    assert 0.0 <= attacked <= 1.0
    again = attacked_rates(env.unlearner, benign=False, relearn_attack=False, adversarial=True)
    assert attacked == again.adversarial_concept_rate  # deterministic for the seed
    drop = info["base/forget_rate"] - info["eval/forget_rate"]
    fid_rel = (info["eval/fid"] - info["base/fid"]) / abs(info["base/fid"])
    assert reward == pytest.approx(drop - cfg.env.beta * fid_rel - w * attacked)
    assert not math.isnan(info["episode_return"])


@pytest.mark.integration
@pytest.mark.slow
def test_sweep_scores_trials_by_the_post_attack_concept_rate(tmp_path, t2i_pretrained):
    """``tune.objective=adversarial_concept_rate``: every trial attacks its own erased
    pipeline with adversarial prompts, and the score and the front use that rate."""
    import ray

    from unlearn.tuners import SweepOptions, init_ray, run_sweep
    from unlearn.tuners.space import parse_space

    wd = share_pretrained(tmp_path / "w", t2i_pretrained)
    cfg = t2i_cfg(
        *ROBUST, "method.name=esd", "unlearn.steps=2", "tracking.enabled=false",
        "tune.objective=adversarial_concept_rate", workdir=wd,
    )  # fmt: skip
    space = parse_space({"params": {"method.lam": {"float": [0.2, 1.0]}}}, name="esd_lam")
    if ray.is_initialized():
        ray.shutdown()
    init_ray(num_cpus=2)
    try:
        res = run_sweep(cfg, space, SweepOptions(num_samples=2, max_concurrent=2))
    finally:
        ray.shutdown()
    done = [t for t in res.trials if t.status == "finished"]
    assert len(done) == 2
    for t in done:
        assert 0.0 <= t.adversarial_concept_rate <= 1.0
        assert t.score == pytest.approx(t.adversarial_concept_rate + cfg.tune.fid_weight * t.fid)
    best = min(done, key=lambda t: (t.adversarial_concept_rate, t.fid))
    assert best in res.pareto
    assert "audit/adversarial_concept_rate" in (res.path / "report" / "results.csv").read_text()
