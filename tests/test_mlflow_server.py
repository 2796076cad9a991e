"""A sweep tracked on a real ``mlflow server`` over HTTP, read back with MlflowClient;
``unlearn ui``; a tracking server that is down stops a sweep before it starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import REPO, UNLEARN, clean_env, cli, free_port, share_pretrained

TINY_YAML = REPO / "configs" / "tiny.yaml"
pytestmark = pytest.mark.integration


def wait_health(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited early"
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not become healthy")


def stop(proc: subprocess.Popen) -> None:
    """Stop the server's process group; a second call (already stopped) does nothing."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start_server(root: Path) -> tuple[str, subprocess.Popen]:
    """A real ``mlflow server`` on a free local port with its store in ``root``."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--default-artifact-root",
        str(root / "artifacts"),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    return f"http://127.0.0.1:{port}", proc


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    url, proc = start_server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        wait_health(url, proc)
        yield url
    finally:
        stop(proc)


def test_demo_search_over_http(mlflow_server, tiny_workdir, tmp_path, monkeypatch):
    """The 4-trial static-vs-variational demo search, tracked on the server."""
    import ray
    from mlflow.tracking import MlflowClient

    from unlearn.config import load_config
    from unlearn.tuners import demo_search, init_ray

    wd = tmp_path / "w"
    wd.mkdir()
    (wd / "pretrained").symlink_to(tiny_workdir / "pretrained")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    cfg = load_config(TINY_YAML, [f"workdir={wd}", "tracking.experiment=sweeps"])
    init_ray(num_cpus=2)
    try:
        res = demo_search(cfg)
    finally:
        ray.shutdown()
    assert len(res.trials) == 4 and all(t.status == "finished" for t in res.trials)
    assert {t.params["agent.name"] for t in res.trials} == {"static", "variational"}
    assert res.pareto and res.best in res.pareto
    assert res.pareto_plot.stat().st_size > 1000
    assert load_config(res.artifacts["best_config"]).agent.name == res.best.params["agent.name"]

    client = MlflowClient(mlflow_server)  # read back over HTTP
    exp = client.get_experiment_by_name("sweeps")
    parent = client.get_run(res.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["unlearn.kind"] == "sweep"
    assert parent.data.metrics["sweep/trials"] == 4
    arts = {a.path for a in client.list_artifacts(res.parent_run_id)}
    assert {"pareto.png", "best_config.yaml", "results.csv", "results.md"} <= arts
    kids = client.search_runs(
        [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(kids) == 4
    for run in kids:
        p, m = run.data.params, run.data.metrics
        assert run.info.status == "FINISHED"
        assert p["method.name"] == "siss" and p["agent.name"] in ("static", "variational")
        assert ("agent.options.beta" in p) == (p["agent.name"] == "variational")
        assert {"eval/forget_rate", "eval/fid", "tune/score", "perf/trial_time"} <= set(m)
        hist = client.get_metric_history(run.info.run_id, "unlearn/lambda")
        assert sorted(h.step for h in hist) == list(range(1, cfg.unlearn.steps + 1))
        if p["agent.name"] == "static":
            assert all(h.value == pytest.approx(float(p["method.lam"])) for h in hist)


def test_tracking_server_down_stops_before_the_sweep(tiny_workdir, tmp_path):
    share_pretrained(tmp_path, tiny_workdir)
    port = free_port()  # nothing listens here
    t0 = time.monotonic()
    r = cli(
        "tune",
        "--config",
        str(TINY_YAML),
        "--set",
        f"workdir={tmp_path}",
        "--space",
        str(REPO / "configs/tune/static_siss.yaml"),
        env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"},
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert f"MLflow server http://127.0.0.1:{port} is not reachable" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "tune").exists(), "a sweep was started"
    assert time.monotonic() - t0 < 60


def test_ui_serves_the_embedded_store(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [UNLEARN, "ui", "--port", str(port), "--set", f"workdir={tmp_path}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
        start_new_session=True,
    )
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line and str(tmp_path / "mlflow.db") in line
        wait_health(f"http://127.0.0.1:{port}", proc)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=5"
        ) as r:
            assert r.status == 200
    finally:
        stop(proc)
    assert (tmp_path / "mlflow.db").is_file()


def test_server_dying_mid_run_fails_fast_and_keeps_local_outputs(tiny_ready, tmp_path):
    """The server answers when the run starts and is killed after the third step: the run
    ends with one TrackingError naming the folder that holds its model, result.json and grids."""
    import json

    from unlearn.config import with_overrides
    from unlearn.run import run
    from unlearn.tracking import TrackingError

    url, proc = start_server(tmp_path)
    try:
        wait_health(url, proc)
        cfg = with_overrides(
            tiny_ready,
            ["tracking.enabled=true", f"tracking.uri={url}", f"workdir={tmp_path / 'work'}"],
        )
        (tmp_path / "work").mkdir()
        (tmp_path / "work" / "pretrained").symlink_to(tiny_ready.workdir_path / "pretrained")

        def kill_at_step_3(task: str, done: int, total: int) -> None:
            if task == "unlearning" and done == 3:
                stop(proc)

        with pytest.raises(TrackingError) as err:
            run(cfg, progress=kill_at_step_3)
    finally:
        stop(proc)
    msg = str(err.value)
    assert f"MLflow server {url}" in msg and "\n" not in msg
    out = Path(msg.rsplit(" are in ", 1)[1])
    assert (out / "model" / "unlearn.json").is_file()
    assert {"before.png", "after.png", "lambda.png"} <= {p.name for p in out.iterdir()}
    saved = json.loads((out / "result.json").read_text())
    assert saved["steps"] == cfg.unlearn.steps and "MLflow server" in saved["message"]


def test_tracking_failing_after_the_outputs_keeps_them_and_saves_the_model_once(
    tiny_ready, tmp_path, monkeypatch
):
    """The store refuses the artifacts: the saved model is not written again, and
    result.json is rewritten with the reason."""
    import json

    import unlearn.models
    from unlearn.config import with_overrides
    from unlearn.run import run
    from unlearn.tracking import Tracker, TrackingError

    cfg = with_overrides(
        tiny_ready,
        [
            "tracking.enabled=true",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"workdir={tmp_path / 'work'}",
        ],
    )
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "pretrained").symlink_to(tiny_ready.workdir_path / "pretrained")
    saved = []
    save_model = unlearn.models.save_model

    def counting_save(model, path):
        saved.append(path)
        return save_model(model, path)

    def refuse(self, path, artifact_path=None):
        raise TrackingError("tracking: the store failed to store an artifact")

    monkeypatch.setattr(unlearn.models, "save_model", counting_save)
    monkeypatch.setattr(Tracker, "log_artifact", refuse)
    with pytest.raises(TrackingError) as err:
        run(cfg, evaluate=False)
    out = Path(str(err.value).rsplit(" are in ", 1)[1])
    assert saved == [out / "model"]
    result = json.loads((out / "result.json").read_text())
    assert "failed to store an artifact" in result["message"]
    assert result["model_dir"] == str(out / "model")
