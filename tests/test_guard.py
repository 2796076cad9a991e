"""The quality guard: a run whose retain proxy or final FID collapses is flagged ``collapsed``
(result.json, MLflow, the bench's counts, a sweep's trials) and, with ``guard.stop``, stops
with the last weights still inside the bound."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import cli_here

from unlearn.config import ConfigError, with_overrides
from unlearn.task import make_unlearner

REPO = Path(__file__).resolve().parents[1]

#: negative gradient on the forget class at λ 0.9: the tiny model's retain proxy doubles
#: within 10 steps (measured every 5)
PUSH = ["method.name=neggrad", "method.lam=0.9", "unlearn.steps=20", "unlearn.eval_every=5"]


def _weights(unl) -> list[torch.Tensor]:
    return [p.detach().clone() for p in unl.params]


def test_a_collapse_is_flagged_at_its_first_measurement_and_the_run_goes_on(tiny_ready):
    cfg = with_overrides(tiny_ready, [*PUSH, "unlearn.lr=0.0005", "guard.retain_multiple=1.5"])
    unl = make_unlearner(cfg).unlearner
    ref = unl.proxies().retain
    res = unl.run()
    assert res.status == "collapsed" and res.steps == cfg.unlearn.steps
    measured = {s.step: s.proxy_retain for s in res.history if s.step % 5 == 0}
    first = min(t for t, v in measured.items() if v > 1.5 * ref)
    assert (
        f"collapsed at step {first}:" in res.message and "guard.retain_multiple 1.5" in res.message
    )
    # the same run without the guard, and a gentle run with it, finish
    assert make_unlearner(
        with_overrides(cfg, ["guard.retain_multiple=0"])
    ).unlearner.run().status == ("finished")
    gentle = with_overrides(cfg, ["method.name=siss", "method.lam=0.5"])
    assert make_unlearner(gentle).unlearner.run().status == "finished"


def test_stop_returns_the_last_weights_inside_the_bound(tiny_ready):
    cfg = with_overrides(
        tiny_ready, [*PUSH, "unlearn.lr=0.0005", "guard.retain_multiple=1.5", "guard.stop=true"]
    )
    unl = make_unlearner(cfg).unlearner
    ref = unl.proxies().retain
    kept: dict[int, list[torch.Tensor]] = {}
    res = unl.run(callbacks=[lambda s: kept.__setitem__(s.step, _weights(unl))])
    assert res.status == "collapsed" and res.steps < cfg.unlearn.steps
    step = int(res.message.rsplit("weights of step ", 1)[1].split()[0])
    assert 0 < step < res.steps and step % cfg.unlearn.eval_every == 0
    for p, v in zip(unl.params, kept[step], strict=True):
        assert torch.equal(p.detach(), v)
    assert unl.proxies().retain <= 1.5 * ref  # what it returns is inside the bound
    # collapsed at its first measurement: the starting weights come back
    first = make_unlearner(with_overrides(cfg, ["unlearn.lr=0.002"])).unlearner
    start = _weights(first)
    res = first.run()
    assert res.status == "collapsed" and "weights of step 0 restored" in res.message
    assert all(torch.equal(p.detach(), v) for p, v in zip(first.params, start, strict=True))


@pytest.mark.slow
def test_run_writes_the_status_to_result_json_and_mlflow(demo_cfg, tmp_path):
    """The shipped demo DDPM (the tiny model's FID is that of noise): ten steps of negative
    gradient at lr 1e-3 wreck its samples."""
    from mlflow.tracking import MlflowClient

    from unlearn.run import run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    track = ["tracking.enabled=true", f"tracking.uri={uri}", "tracking.experiment=g"]
    small = ["eval.num_samples=100", "eval.sampler_steps=10", "unlearn.steps=10"]
    cfg = with_overrides(
        demo_cfg, [*track, *small, "method.name=neggrad", "method.lam=0.9", "unlearn.lr=0.001"]
    )
    client = MlflowClient(tracking_uri=uri)
    flagged = run(with_overrides(cfg, ["guard.fid_multiple=2"]))
    assert flagged.after.fid > 2 * flagged.before.fid  # the guard's reason, measured
    assert flagged.status == "collapsed" and "final FID" in flagged.message
    on_disk = json.loads((Path(flagged.model_dir).parent / "result.json").read_text())
    assert on_disk["status"] == "collapsed" and "final FID" in on_disk["message"]
    r = client.get_run(flagged.run_id)
    assert r.info.status == "FINISHED"  # a result, not a failure
    assert r.data.tags["unlearn.status"] == "collapsed"
    assert "guard.fid_multiple 2" in r.data.tags["unlearn.collapse"]
    assert r.data.metrics["unlearn/collapsed"] == 1.0


def test_fid_guard_keeps_diverged_and_appends_to_a_retain_collapse():
    from unlearn.unlearner import UnlearnResult, guard_fid

    cfg = SimpleNamespace(guard=SimpleNamespace(fid_multiple=2.0))
    before, after = SimpleNamespace(fid=10.0), SimpleNamespace(fid=25.0)
    div = UnlearnResult(3, 1.0, "diverged", message="non-finite")
    guard_fid(cfg, div, before, after)
    assert (div.status, div.message) == ("diverged", "non-finite")
    both = UnlearnResult(3, 1.0, "collapsed", message="quality collapsed at step 2: retain")
    guard_fid(cfg, both, before, after)
    assert both.message.startswith("quality collapsed at step 2") and "final FID 25" in both.message
    no_fid = UnlearnResult(3, 1.0, "finished")
    guard_fid(cfg, no_fid, before, SimpleNamespace(fid=float("nan")))
    assert no_fid.status == "finished"


def test_bench_counts_collapsed_runs_in_its_table_results_and_mlflow(tiny_workdir, tmp_path):
    from mlflow.tracking import MlflowClient

    from unlearn.bench import BenchOptions, run_bench
    from unlearn.config import load_config

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = load_config(
        REPO / "configs" / "tiny.yaml",
        [
            f"workdir={tiny_workdir}",
            f"tracking.uri={uri}",
            "tracking.experiment=guard",
            "env.test_instances=[2]",
            "unlearn.steps=10",
            "unlearn.eval_every=5",
            "unlearn.lr=0.003",
            "guard.retain_multiple=1.5",
        ],
    )
    out = tmp_path / "bench"
    opts = BenchOptions(
        methods=("neggrad", "siss"), agents=("static",), seeds=1, static_lam=0.9, out=str(out)
    )
    run_bench(cfg, opts)
    data = json.loads((out / "results.json").read_text())
    status = {r["method"]: r["status"] for r in data["runs"]}
    assert status == {"neggrad": "collapsed", "siss": "finished"}
    counts = {s["method"]: (s["finished"], s["collapsed"]) for s in data["summary"]}
    assert counts == {"neggrad": (0, 1), "siss": (1, 0)}
    text = (out / "bench.md").read_text()
    assert "1 finished, 0 diverged, 1 collapsed, 0 errors" in text and "0, 1 collapsed" in text
    client = MlflowClient(tracking_uri=uri)
    parent = client.search_runs(
        [client.get_experiment_by_name("guard-bench").experiment_id],
        "tags.`unlearn.kind` != 'bench-cell'",
    )
    assert parent[0].data.metrics["bench/collapsed"] == 1.0


def test_a_sweep_trial_keeps_the_collapsed_status():
    from unlearn.tuners.sweep import _trial_result

    def trial(status: str):
        r = SimpleNamespace(
            metrics={"eval/forget_rate": 0.1, "eval/fid": 9.0, "unlearn/status": status},
            path="/x/trial_1",
            error=None,
            config={},
        )
        cb = SimpleNamespace(runs={}, nodes={}, restarts={}, wall={})
        return _trial_result(r, cb).status

    assert [trial(s) for s in ("collapsed", "diverged", "finished")] == [
        "collapsed",
        "diverged",
        "finished",
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("guard.retain_multiple=0.5", "guard.retain_multiple: 0.5 is not allowed; expected 0"),
        ("guard.fid_multiple=1", "guard.fid_multiple: 1.0 is not allowed; expected 0"),
        ("guard.stop=true", "guard.stop: True is not allowed with guard.retain_multiple=0"),
    ],
)
def test_bad_guard_settings_are_refused(tiny_cfg, override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        with_overrides(tiny_cfg, [override])


def test_stop_needs_a_measurement_cadence_and_the_cli_says_so_in_one_line(tmp_path):
    p = cli_here(
        "run",
        "--config",
        str(REPO / "configs" / "tiny.yaml"),
        "--set",
        f"workdir={tmp_path}",
        "--set",
        "guard.retain_multiple=2",
        "--set",
        "guard.stop=true",
        "--set",
        "unlearn.eval_every=0",
    )
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "unlearn.eval_every=0" in lines[0] and "guard.stop" in lines[0]
    assert not any(tmp_path.iterdir())  # nothing written
