"""Ray Tune sweeps on a real local Ray: PBT schedules that replay, ASHA, resume after SIGKILL.

Trials use the tiny config (seconds each). Ray starts once per module with 2 CPUs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import REPO, UNLEARN, clean_env, cli, cli_here, share_pretrained

from unlearn.config import ConfigError

TINY_YAML = REPO / "configs" / "tiny.yaml"  # same pretrained cache entry as conftest's TINY
pytestmark = pytest.mark.integration
#: the console command runs torch single-threaded (the trials share two CPUs)
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def tiny(workdir: Path, *extra: str):
    from unlearn.config import load_config

    return load_config(TINY_YAML, [f"workdir={workdir}", "tracking.enabled=true", *extra])


@pytest.fixture
def ray_local():
    """A fresh two-CPU Ray per test: a trial left running by one test cannot hold the CPUs
    the next test's trials wait for."""
    import ray

    from unlearn.tuners import init_ray

    if ray.is_initialized():
        ray.shutdown()
    init_ray(num_cpus=2)
    yield
    ray.shutdown()


def children(cfg, parent: str):
    from mlflow.tracking import MlflowClient

    from unlearn.tracking import tracking_uri

    client = MlflowClient(tracking_uri(cfg))
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    return client, runs


def test_pbt_schedule_replays_and_params_are_logged_at_end(ray_local, tiny_workdir, tmp_path):
    from unlearn.task import make_unlearner
    from unlearn.tuners import SweepOptions, load_space, run_sweep

    wd = share_pretrained(tmp_path / "w", tiny_workdir)
    cfg = tiny(wd, "unlearn.steps=8", "tune.report_every=2", "tune.perturbation_interval=1")
    space = load_space(REPO / "configs/tune/pbt_lambda.yaml")
    res = run_sweep(cfg, space, SweepOptions(search="pbt", num_samples=4, max_concurrent=2))
    assert len(res.trials) == 4 and all(t.status == "finished" for t in res.trials)
    assert all(len(t.lambdas) == 8 for t in res.trials)
    assert res.artifacts["lambda_png"].stat().st_size > 0
    best = res.best
    sched = json.loads(res.schedule.read_text())
    assert sched["lambdas"] == best.lambdas and sched["points"]

    # the winner's schedule replays: same λ at every step, same final metrics
    from unlearn.config import load_config

    replay_cfg = load_config(res.artifacts["best_config"])
    assert replay_cfg.agent.name == "schedule" and replay_cfg.agent.path == str(res.schedule)
    unl = make_unlearner(replay_cfg).unlearner
    out = unl.run()
    assert out.lambdas == best.lambdas
    after, _ = unl.evaluate()
    # the trial ran in a Ray worker with its own thread count: float sums may differ in the
    # last digits, so a borderline sample may change class (at most one of them)
    assert abs(after.forget_rate - best.forget_rate) <= 1 / replay_cfg.eval.num_samples + 1e-9
    assert after.fid == pytest.approx(best.fid, rel=1e-4)

    # MLflow: one child per trial; PBT params logged once, at the end, with the final λ
    client, runs = children(cfg, res.parent_run_id)
    assert len(runs) == 4
    by_trial = {r.data.tags["unlearn.trial_id"]: r for r in runs}
    for t in res.trials:
        run = by_trial[t.trial_id]
        assert run.info.status == "FINISHED"
        assert float(run.data.params["method.lam"]) == pytest.approx(t.params["method.lam"])
        steps = {m.step for m in client.get_metric_history(run.info.run_id, "unlearn/lambda")}
        assert steps == set(range(1, 9))
        assert "eval/fid" in run.data.metrics


def test_asha_with_random_search_and_weighted_score(ray_local, tiny_workdir, tmp_path):
    from unlearn.tuners import SweepOptions, load_space, run_sweep

    wd = share_pretrained(tmp_path / "w", tiny_workdir)
    cfg = tiny(
        wd,
        "unlearn.steps=8",
        "tune.report_every=1",
        "tune.grace_period=1",
        "tracking.enabled=false",
    )
    space = load_space(REPO / "configs/tune/static_siss.yaml")
    opts = SweepOptions(
        search="random", scheduler="asha", objective="weighted", num_samples=6, max_concurrent=1
    )
    res = run_sweep(cfg, space, opts)
    statuses = [t.status for t in res.trials]
    assert len(statuses) == 6 and set(statuses) <= {"finished", "early_stopped"}
    # one trial at a time: every later trial meets full rungs, so ASHA stops some
    stopped = [t for t in res.trials if t.status == "early_stopped"]
    assert stopped, statuses
    assert all(t.steps < 8 and t.score is None for t in stopped)
    done = [t for t in res.trials if t.status == "finished"]
    assert res.best in done and res.best.score == min(t.score for t in done)
    rows = (res.path / "report" / "results.csv").read_text().splitlines()
    assert len(rows) == 7 and "method.lam" in rows[0]

    # the bench's swept row runs the winner's every searched setting; the others keep theirs
    from unlearn.bench import BenchOptions, parse_rows
    from unlearn.bench.matrix import Cell, cell_config, plan

    bench = BenchOptions(rows=parse_rows("siss:static,siss:swept"), swept_from=str(res.path))
    pl = plan(cfg, bench)
    won = res.best.params
    swept = cell_config(cfg, Cell("siss", "swept", 2, 1), pl.static_lam, bench, "x", {}, pl.swept)
    assert swept.method.lam == pytest.approx(won["method.lam"])
    assert swept.method.scale == pytest.approx(won["method.scale"])
    assert swept.unlearn.lr == pytest.approx(won["unlearn.lr"])
    assert swept.unlearn.seed == 1 and swept.agent.name == "static" and swept.agent.options == {}
    static = cell_config(cfg, Cell("siss", "static", 2, 1), pl.static_lam, bench, "x", {}, pl.swept)
    assert static.unlearn.lr == cfg.unlearn.lr and static.agent.options == {"lam": cfg.method.lam}
    assert pl.swept_source["trial"] == res.best.trial_id
    with pytest.raises(ConfigError, match="winner is method 'siss'; name the row siss:swept"):
        plan(
            cfg,
            BenchOptions(rows=parse_rows("naive:static,erasediff:swept"), swept_from=str(res.path)),
        )


def test_trial_threads_match_cpus(ray_local, tiny_workdir, tmp_path):
    """A trial with 2 CPUs runs torch on 2 threads, one with 1 CPU on 1."""
    from ray.tune import ExperimentAnalysis

    from unlearn.tuners import SweepOptions, load_space, run_sweep

    wd = share_pretrained(tmp_path / "w", tiny_workdir)
    space = load_space(REPO / "configs/tune/static_siss.yaml")
    for cpus in (1, 2):
        cfg = tiny(wd, "unlearn.steps=2", f"tune.cpus_per_trial={cpus}", "tracking.enabled=false")
        res = run_sweep(cfg, space, SweepOptions(search="random", num_samples=1, name=f"c{cpus}"))
        df = ExperimentAnalysis(str(res.path)).dataframe()
        assert list(df["perf/threads"]) == [cpus]


# -- the console command -------------------------------------------------------------------


@pytest.mark.parametrize(
    "space, extra, fragment",
    [
        ({"params": {"method.lamda": {"float": [0, 1]}}}, [], "method.lamda: unknown key"),
        ({"params": {"method.lam": {"float": [0.5, 0.2]}}}, [], "empty range [0.5, 0.2]"),
        (
            {"params": {"method.lam": {"float": [0, 1]}}},
            ["--scheduler", "pbt"],
            "PBT cannot share a run with a search algorithm",
        ),
        # a config no shipped or cached model was trained with
        (
            {"params": {"method.lam": {"float": [0, 1]}}},
            ["--set", "pretrain.steps=7"],
            "no pretrained base model",
        ),
        ({"params": {"method.lam": {"float": [0, 1]}}}, ["--resume"], "--resume: no earlier"),
    ],
)
def test_cli_bad_input_exits_2_before_ray(space, extra, fragment, tmp_path):
    import yaml

    f = tmp_path / "space.yaml"
    f.write_text(yaml.safe_dump(space))
    t0 = time.monotonic()
    r = cli_here("tune", "--space", str(f), "--set", f"workdir={tmp_path / 'w'}", *extra)
    assert r.returncode == 2, r.stderr
    assert fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w" / "tune").exists()
    assert time.monotonic() - t0 < 30


def _finished_trials(sweep: Path) -> list[str]:
    """Trials whose last reported result holds the final evaluation."""
    out = []
    for f in sweep.glob("*/result.json"):
        lines = f.read_text().splitlines()
        value = json.loads(lines[-1]).get("eval/forget_rate") if lines else None
        if value is not None and value == value:  # NaN marks an intermediate report
            out.append(f.parent.name)
    return out


def _running(sweep: Path, min_reports: int = 3) -> list[str]:
    """Trials with a few intermediate reports (so Tune has saved their checkpoints in the
    experiment state: it snapshots after ``num_to_keep`` = 2 checkpoints) but no final one."""
    done = set(_finished_trials(sweep))
    return [
        f.parent.name
        for f in sweep.glob("*/result.json")
        if len(f.read_text().splitlines()) >= min_reports and f.parent.name not in done
    ]


def test_resume_after_driver_sigkill(tiny_workdir, tmp_path):
    """Kill the driver mid-sweep; --resume finishes it: no trial re-run, no result lost."""
    wd = share_pretrained(tmp_path / "w", tiny_workdir)
    args = [
        "tune",
        "--space",
        str(REPO / "configs/tune/static_siss.yaml"),
        "--search",
        "random",
        "--num-samples",
        "4",
        "--max-concurrent",
        "1",
        "--name",
        "killed",
        "--config",
        str(TINY_YAML),
        "--set",
        f"workdir={wd}",
        "--set",
        "tracking.enabled=true",
        "--set",
        "unlearn.steps=40",
        "--set",
        "tune.report_every=4",
    ]
    sweep = wd / "tune" / "killed"
    proc = subprocess.Popen(
        [UNLEARN, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env(**ONE_THREAD),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (_finished_trials(sweep) and _running(sweep)):
            time.sleep(0.2)
        assert _finished_trials(sweep) and _running(sweep), "no trial finished / running in time"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:  # the Ray processes this driver started live in its session: end them too
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    before = {t: (sweep / t / "result.json").read_text() for t in _finished_trials(sweep)}
    interrupted = _running(sweep)
    assert 1 <= len(before) < 4 and interrupted

    r = cli("tune", *args[1:], "--resume", "--json", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    trials = {t["trial_id"]: t for t in res["trials"]}
    assert len(trials) == 4 and all(t["status"] == "finished" for t in trials.values())
    assert all(len(t["lambdas"]) == 40 for t in trials.values())
    for tid, text in before.items():  # finished trials were not run again
        assert (sweep / tid / "result.json").read_text() == text
    for tid in interrupted:  # the interrupted trial went on from its checkpoint
        last = json.loads((sweep / tid / "result.json").read_text().splitlines()[-1])
        assert 0 < last["iterations_since_restore"] < last["training_iteration"]

    client, runs = children(tiny(wd), res["parent_run_id"])
    assert sorted(r.data.tags["unlearn.trial_id"] for r in runs) == sorted(trials)
    for run in runs:
        assert run.info.status == "FINISHED"
        hist = client.get_metric_history(run.info.run_id, "unlearn/lambda")
        assert sorted(m.step for m in hist) == list(range(1, 41)), "steps lost or logged twice"
        assert "eval/forget_rate" in run.data.metrics


def test_tune_objective_attacked_forget_rate(ray_local, tiny_workdir, tmp_path):
    """Trials attack their unlearned model; the score and the front use the attacked rate."""
    from unlearn.tuners import SweepOptions, load_space, run_sweep

    wd = share_pretrained(tmp_path / "w", tiny_workdir)
    quick = ["audit.attacked_steps=3", "audit.relearn_forget_samples=4", "audit.num_samples=20"]
    cfg = tiny(
        wd, "tracking.enabled=false", "unlearn.steps=4", "tune.objective=attacked_forget_rate",
        "audit.relearn_batch_size=4", *quick,
    )  # fmt: skip
    space = load_space(REPO / "configs/tune/static_siss.yaml")
    res = run_sweep(cfg, space, SweepOptions(num_samples=2, max_concurrent=2))
    done = [t for t in res.trials if t.status == "finished"]
    assert len(done) == 2
    for t in done:
        assert 0.0 <= t.attacked_forget_rate <= 1.0
        assert t.score == pytest.approx(t.attacked_forget_rate + cfg.tune.fid_weight * t.fid)
    # the front is over (attacked forget rate, FID)
    best_attacked = min(done, key=lambda t: (t.attacked_forget_rate, t.fid))
    assert best_attacked in res.pareto
    assert "audit/attacked_forget_rate" in (res.path / "report" / "results.csv").read_text()
