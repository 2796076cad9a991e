"""The one unlearning loop: determinism, reset from memory, divergence, MLflow tracking."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from unlearn.config import ConfigError, with_overrides
from unlearn.run import run
from unlearn.task import make_unlearner
from unlearn.types import LossTerms


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_same_seed_same_trajectory_and_reset_restores(tiny_ready):
    cfg = with_overrides(tiny_ready, ["method.name=siss", "agent.name=static"])
    unl = make_unlearner(cfg).unlearner
    start = _weights(unl.model)
    a = unl.run()
    end_a = _weights(unl.model)
    assert a.status == "finished" and a.steps == cfg.unlearn.steps
    assert any(not torch.equal(start[k], end_a[k]) for k in start), "weights did not move"
    unl.reset(cfg.unlearn.seed)
    for k, v in _weights(unl.model).items():
        assert torch.equal(v, start[k]), "reset did not restore the starting weights"
    b = unl.run()
    assert [s.total_loss for s in a.history] == [s.total_loss for s in b.history]
    for k, v in _weights(unl.model).items():
        assert torch.equal(v, end_a[k])


@pytest.mark.parametrize("method", ["siss", "naive"])
def test_static_lambda_is_logged_every_step(tiny_ready, method):
    cfg = with_overrides(tiny_ready, [f"method.name={method}", "method.lam=0.3"])
    res = make_unlearner(cfg).unlearner.run()
    assert res.lambdas == [pytest.approx(0.3)] * cfg.unlearn.steps
    assert all(torch.isfinite(torch.tensor(s.retain_loss)) for s in res.history)


def test_nonfinite_loss_stops_with_last_good_weights(tiny_ready):
    cfg = with_overrides(tiny_ready, ["method.name=naive"])
    unl = make_unlearner(cfg).unlearner
    real = unl.method.loss
    calls = {"n": 0}
    snap = {}

    def flaky(model, retain, forget, lam, g):
        calls["n"] += 1
        if calls["n"] == 4:
            snap.update(_weights(model))
            t = real(model, retain, forget, lam, g)
            nan = t.total * float("nan")
            return LossTerms(retain=nan, forget=t.forget, total=nan)
        return real(model, retain, forget, lam, g)

    unl.method.loss = flaky
    res = unl.run()
    assert res.status == "diverged" and res.steps == 3
    assert "non-finite loss at step 3" in res.message
    for k, v in _weights(unl.model).items():
        assert torch.equal(v, snap[k])


@pytest.mark.slow
def test_tracked_run_logs_lambda_and_marks_failures(tiny_ready, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = with_overrides(
        tiny_ready, ["tracking.enabled=true", f"tracking.uri={uri}", "tracking.experiment=t"]
    )
    res = run(cfg)
    client = MlflowClient(tracking_uri=uri)
    r = client.get_run(res.run_id)
    assert r.info.status == "FINISHED"
    hist = client.get_metric_history(res.run_id, "unlearn/lambda")
    assert len(hist) == cfg.unlearn.steps
    assert "eval/fid" in r.data.metrics and "before/forget_rate" in r.data.metrics
    assert r.data.params["method.name"] == cfg.method.name
    arts = {a.path for a in client.list_artifacts(res.run_id)}
    assert {"before.png", "after.png", "lambda.png", "result.json"} <= arts
    assert res.after is not None and res.before is not None


@pytest.mark.slow
def test_diverged_tracked_run_is_failed_in_mlflow(tiny_ready, tmp_path):
    """A real divergence: VDU's stability weight 1e36 with lr 1 overflows the loss after the
    first step; the run keeps the last good weights and its MLflow run ends FAILED."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = with_overrides(
        tiny_ready,
        [
            "tracking.enabled=true",
            f"tracking.uri={uri}",
            "tracking.experiment=t",
            "method.name=vdu",
            "method.options.gamma=1.0e+36",
            "unlearn.lr=1.0",
        ],
    )
    res = run(cfg, evaluate=False)
    assert res.status == "diverged" and res.steps < cfg.unlearn.steps
    r = MlflowClient(tracking_uri=uri).get_run(res.run_id)
    assert r.info.status == "FAILED"
    assert "non-finite loss" in r.data.tags["unlearn.failure"]
    assert (Path(res.model_dir) / "unlearn.json").is_file()


def test_bad_requests_fail_before_training(tiny_ready):
    with pytest.raises(ConfigError, match="forget.classes: class 11"):
        make_unlearner(with_overrides(tiny_ready, ["forget.classes=[11]"]))
    with pytest.raises(ConfigError, match="method.name"):
        make_unlearner(with_overrides(tiny_ready, ["method.name=nosuch"]))
    with pytest.raises(ConfigError, match="conditional"):
        make_unlearner(with_overrides(tiny_ready, ["method.name=fdiv"]))
    with pytest.raises(ConfigError, match="method.lam"):
        with_overrides(tiny_ready, ["method.lam=-0.1"])


def test_result_is_typed_and_serialisable(tiny_ready):
    import json

    res = make_unlearner(with_overrides(tiny_ready, ["method.name=siss"])).unlearner.run()
    d = res.to_dict()
    json.dumps(d)
    assert dataclasses.is_dataclass(res.history[0])


def test_gradient_statistics_are_those_of_the_flattened_gradients():
    """Norms and cosine of per-parameter gradient lists (``None`` = zero) against the
    concatenated vectors."""
    from unlearn.unlearner import _grad_stats

    g = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (2,), (5,)]
    a = [torch.randn(3, 4, generator=g), None, torch.randn(5, generator=g)]
    b = [torch.randn(3, 4, generator=g), torch.randn(2, generator=g), None]

    def flat(grads):
        parts = zip(grads, shapes, strict=True)
        return torch.cat([torch.zeros(s).flatten() if x is None else x.flatten() for x, s in parts])

    va, vb = flat(a).double(), flat(b).double()
    na, nb, cosine = _grad_stats(a, b)
    assert na == pytest.approx(float(va.norm()), rel=1e-6)
    assert nb == pytest.approx(float(vb.norm()), rel=1e-6)
    assert cosine == pytest.approx(float(va @ vb / (va.norm() * vb.norm())), rel=1e-5)
    assert math.isnan(_grad_stats(a, [None, None, None])[2])
