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
