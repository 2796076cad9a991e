"""The adversarial-prompt attack of ``unlearn audit`` on a tiny UCE-edited pipeline: the
search is exact over the vocabulary, the report holds the prompts and the rates before and
after, it is deterministic, and bad budgets or models fail in one line before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import share_pretrained, t2i_cfg

from unlearn.config import ConfigError

ATTACK = [
    "method.name=uce",
    "forget.anchor=a handwritten digit",
    "audit.attacks=[adversarial]",
    "audit.prompt_samples=4",
    "audit.adversarial_images=4",
    "audit.adversarial_candidates=3",
]


@pytest.fixture(scope="module")
def uce_run(tmp_path_factory, t2i_pretrained) -> tuple[Path, Path]:
    """The session's tiny pipeline edited by UCE through ``unlearn run`` (no evaluation)."""
    from unlearn.run import run

    wd = share_pretrained(tmp_path_factory.mktemp("t2i-adv"), t2i_pretrained)
    res = run(t2i_cfg(*ATTACK, workdir=wd), evaluate=False)
    return wd, Path(res.model_dir)


def test_coordinate_search_is_exact_over_the_vocabulary(uce_run):
    from unlearn.audit.adversarial import concept_draws, prompt_losses, search, vocabulary
    from unlearn.audit.inputs import load_inputs

    wd, model_dir = uce_run
    cfg = t2i_cfg(
        *ATTACK, "audit.adversarial_tokens=1", "audit.adversarial_candidates=0", workdir=wd
    )
    inputs = load_inputs(cfg, model_dir)
    model = inputs.model.eval()
    draws = concept_draws(model, inputs.split.forget, cfg.audit, "cpu")
    prompt = cfg.forget.prompts[0]
    adv, before, after = search(model, prompt, draws, cfg.audit)
    words = vocabulary(model.tokenizer)
    assert "[PAD]" not in words and len(words) > 10
    every = prompt_losses(model, [f"{prompt} {w}" for w in words], draws)
    # one appended word, the best of the whole vocabulary under the model's own loss
    assert adv == f"{prompt} {words[int(torch.argmin(every))]}"
    assert after == pytest.approx(float(every.min())) and before > 0
    assert search(model, prompt, draws, cfg.audit) == (adv, before, after)


@pytest.mark.slow
def test_audit_reports_pre_and_post_attack_rates_per_prompt(uce_run, tmp_path):
    from unlearn.audit import run_audit

    wd, model_dir = uce_run
    cfg = t2i_cfg(*ATTACK, workdir=wd)
    res = run_audit(cfg, model_dir, out=tmp_path / "a")
    rep = json.loads(res.path.read_text())
    assert rep["attacks"] == ["adversarial"]
    rows = rep["adversarial"]["prompts"]
    assert [(r["model"], r["prompt"]) for r in rows] == [
        (m, p) for m in ("base", "unlearned") for p in cfg.forget.prompts
    ]
    vocab = set(res.report.adversarial[0].adversarial.split()) | set(cfg.forget.prompts[0].split())
    for r in rows:
        extra = r["adversarial_prompt"][len(r["prompt"]) :].split()
        assert r["adversarial_prompt"].startswith(r["prompt"] + " ") and len(extra) == 2
        assert 0 <= r["post_attack_concept_rate"] <= 1 and r["loss_after"] > 0
    assert vocab  # the words come from the tokenizer (checked exactly in the test above)
    overall = rep["adversarial"]["overall"]
    assert overall["unlearned"]["pre_attack_concept_rate"] == pytest.approx(
        rep["start"]["unlearned"]
    )
    metrics = res.report.metrics()
    assert "audit/adversarial/unlearned/post_attack_rate" in metrics
    assert (res.path.parent / "adversarial-unlearned.png").is_file()
    # the same seed, the same report
    again = run_audit(cfg, model_dir, out=tmp_path / "b")
    assert again.path.read_text() == res.path.read_text()


def test_bad_adversarial_budgets_fail_in_one_line_before_work(uce_run, tmp_path):
    from unlearn.audit import run_audit

    wd, model_dir = uce_run
    for bad in ("audit.adversarial_tokens=0", "audit.adversarial_rounds=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]) as e:
            t2i_cfg(*ATTACK, bad, workdir=wd)
        assert "\n" not in str(e.value)
    out = tmp_path / "never"
    # "a handwritten digit seven" is 6 of the tokenizer's 12 tokens: 7 words do not fit
    with pytest.raises(ConfigError, match=r"audit.adversarial_tokens: 7 .* at most 6"):
        run_audit(t2i_cfg(*ATTACK, "audit.adversarial_tokens=7", workdir=wd), model_dir, out=out)
    with pytest.raises(ConfigError, match="audit.attacks: 'adversarial' needs a model with a text"):
        run_audit(t2i_cfg(*ATTACK, "model.kind=ddpm", workdir=wd), model_dir, out=out)
    assert not out.exists()
