"""The base model's evaluation is kept across commands: a second run of the same model with
the same evaluation settings reads it back instead of sampling again, and anything that
changes the evaluation (weights, classifier, settings) misses the cache."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY, share_pretrained

from unlearn.config import load_config


def same(a, b) -> bool:
    """Equal results, NaN fields included."""
    return json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)


def _cfg(wd, *extra: str):
    return load_config(None, [*TINY, f"workdir={wd}", "tracking.enabled=false", *extra])


@pytest.fixture
def counted(monkeypatch):
    """Counts the unlearner's evaluations (the real ones run)."""
    from unlearn.unlearner import Unlearner

    calls: list[int] = []
    real = Unlearner.evaluate

    def evaluate(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(Unlearner, "evaluate", evaluate)
    return calls


def test_a_second_run_reads_the_base_evaluation_back(tmp_path, tiny_workdir, counted):
    from unlearn.run import run

    wd = share_pretrained(tmp_path / "w", tiny_workdir)
    first = run(_cfg(wd, "unlearn.steps=2"))
    assert len(counted) == 2  # before and after
    entries = list((wd / "cache" / "base_eval").glob("*.json"))
    assert len(entries) == 1

    grid = wd / "unlearned" / "siss-static" / "before.png"  # (no tracking: named by method)
    grid.unlink()

    # another λ and step count: the base model and its evaluation are the same
    second = run(_cfg(wd, "unlearn.steps=3", "method.lam=0.3"))
    assert len(counted) == 3  # only its own evaluation
    assert same(second.before, first.before)
    assert grid.stat().st_size > 0  # the grid of the cached samples

    # other evaluation settings: evaluated again, kept beside the first
    third = run(_cfg(wd, "unlearn.steps=2", "eval.num_samples=40"))
    assert len(counted) == 5
    assert third.before.num_samples == 40
    assert len(list((wd / "cache" / "base_eval").glob("*.json"))) == 2


def test_changed_weights_miss_and_a_broken_entry_is_evaluated_again(tmp_path, tiny_workdir):
    from unlearn.task import base_eval_key, base_evaluation, make_unlearner

    wd = share_pretrained(tmp_path / "w", tiny_workdir)
    cfg = _cfg(wd, "eval.num_samples=40")
    unl = make_unlearner(cfg).unlearner
    key = base_eval_key(cfg, unl)
    assert base_eval_key(_cfg(wd, "eval.num_samples=40", "unlearn.steps=7"), unl) == key
    assert base_eval_key(_cfg(wd, "eval.num_samples=40", "eval.seed=5"), unl) != key
    assert base_eval_key(_cfg(wd, "eval.num_samples=40", "forget.classes=[4]"), unl) != key

    result, samples = base_evaluation(cfg, unl)
    again, cached = base_evaluation(cfg, unl)
    assert same(again, result) and torch.equal(cached, samples.cpu())

    # a half-written entry is never used: evaluated again and rewritten
    meta = wd / "cache" / "base_eval" / f"{key}.json"
    meta.write_text(meta.read_text()[:20])
    repaired, _ = base_evaluation(cfg, unl)
    assert same(repaired, result)
    assert json.loads(meta.read_text())["fid"] == pytest.approx(result.fid)  # rewritten whole

    # one weight changed by a little: another model, another key
    with torch.no_grad():
        next(unl.model.parameters()).add_(1e-3)
    assert base_eval_key(cfg, unl) != key
