"""``unlearn submit`` against a real local Ray head with token authentication on.

The head is this module's own (``ray start --head --block`` in a private temp dir, free
ports, its own token file); teardown ends exactly that process group, never other Ray
instances on the machine (``ray stop`` would).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO, clean_env, cli, free_port

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.integration


#: the head and the clients run torch single-threaded (two CPUs for everything)
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cluster():
    import requests

    tmp = Path(tempfile.mkdtemp(prefix="urj-", dir="/tmp"))  # short: Ray's socket paths
    token = secrets.token_hex(32)
    (tmp / "token").write_text(token)
    dash = free_port()
    env = clean_env(
        **ONE_THREAD,
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(tmp / "token"),
        PATH=f"{BIN}:{os.environ['PATH']}",
        RAY_USAGE_STATS_ENABLED="0",
    )
    ports = {
        f"--{k}": str(free_port())
        for k in (
            "port",
            "ray-client-server-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
            "node-manager-port",
            "object-manager-port",
        )
    }
    cmd = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--num-cpus=2",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        f"--temp-dir={tmp / 'ray'}",
        *[f"{k}={v}" for k, v in ports.items()],
    ]
    log = (tmp / "head.log").open("w")
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    address = f"http://127.0.0.1:{dash}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 120
        while True:  # the dashboard first, then the job agent behind /api/jobs/
            assert proc.poll() is None, (tmp / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray head did not come up"
            try:
                if (
                    requests.get(f"{address}/api/jobs/", headers=headers, timeout=2).status_code
                    == 200
                ):
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        time.sleep(3)
        yield {"address": address, "token": token, "token_path": tmp / "token", "tmp": tmp}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops what it started
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def submit(cluster, *args: str, env: dict | None = None, timeout: int = 400):
    """``unlearn submit`` to the module's head, with its token file unless ``env`` is given."""
    extra = env if env is not None else {"RAY_AUTH_TOKEN_PATH": str(cluster["token_path"])}
    return cli(
        "submit",
        "--address",
        cluster["address"],
        *args,
        env={**ONE_THREAD, **extra},
        timeout=timeout,
    )


def test_tiny_sweep_as_a_job_lands_in_mlflow(cluster, tiny_workdir, tmp_path):
    from mlflow.tracking import MlflowClient

    wd = tmp_path / "w"
    wd.mkdir()
    (wd / "pretrained").symlink_to(tiny_workdir / "pretrained")
    job = tmp_path / "job"
    job.mkdir()
    cfg = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    cfg.update(workdir=str(wd), tracking={"experiment": "jobs"})
    (job / "config.yaml").write_text(yaml.safe_dump(cfg))
    shutil.copy(REPO / "configs/tune/static_siss.yaml", job / "space.yaml")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = submit(
        cluster,
        "--follow",
        "--working-dir",
        str(job),
        "--env",
        f"MLFLOW_TRACKING_URI={uri}",
        "--env",
        "OMP_NUM_THREADS=1",
        "--",
        "unlearn",
        "tune",
        "--config",
        "config.yaml",
        "--space",
        "space.yaml",
        "--search",
        "random",
        "--num-samples",
        "2",
        "--max-concurrent",
        "2",
        "--name",
        "jobsweep",
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "SUCCEEDED" in r.stdout and "sweep jobsweep" in r.stdout  # the job's own output
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("jobs")
    runs = client.search_runs([exp.experiment_id])
    parents = [x for x in runs if x.data.tags.get("unlearn.kind") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    kids = [x for x in runs if x.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(kids) == 2 and all("eval/fid" in k.data.metrics for k in kids)


def run_as_job(cluster, tmp_path: Path, cfg: dict) -> tuple[Path, dict, Any]:
    """``unlearn run`` of ``cfg`` submitted as a Ray job that logs to a fresh MLflow store;
    returns its run directory, its result.json and the store's MLflow run of it."""
    import json

    from mlflow.tracking import MlflowClient

    job = tmp_path / "job"
    job.mkdir()
    cfg = {**cfg, "workdir": str(tmp_path / "w"), "tracking": {"experiment": "jobs"}}
    (job / "config.yaml").write_text(yaml.safe_dump(cfg))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = submit(
        cluster,
        "--follow",
        *("--working-dir", str(job), "--env", f"MLFLOW_TRACKING_URI={uri}"),
        *("--", "unlearn", "run", "--config", "config.yaml"),
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "SUCCEEDED" in r.stdout
    (run,) = (tmp_path / "w" / "unlearned").iterdir()
    res = json.loads((run / "result.json").read_text())
    assert res["status"] == "finished" and res["steps"] == 2
    exp = MlflowClient(uri).get_experiment_by_name("jobs")
    (rec,) = MlflowClient(uri).search_runs([exp.experiment_id])
    assert rec.info.run_id == run.name
    return run, res, rec


@pytest.mark.parametrize("demo", ["t2i_demo", "sdxl_demo"])
def test_t2i_run_as_a_job_writes_its_pipeline_and_metrics(cluster, tmp_path, demo):
    """A text-to-image `unlearn run` (a shipped demo pipeline: Stable Diffusion or SDXL
    format; ESD, 2 steps) as a Ray job: the job succeeds, its run directory holds the
    unlearned pipeline of the same family and the t2i metrics."""
    import json

    cfg = yaml.safe_load((REPO / f"configs/{demo}.yaml").read_text())
    cfg["unlearn"] |= {"steps": 2, "batch_size": 4}
    cfg["t2i"]["samples_per_prompt"] = 2
    cfg["eval"] |= {"sampler_steps": 4, "proxy_batch": 4}
    cfg["forget"]["retain_prompts"] = cfg["forget"]["retain_prompts"][:2]
    run, res, rec = run_as_job(cluster, tmp_path, cfg)
    for side in ("before", "after"):
        assert {"concept_rate", "paraphrase_concept_rate", "retain_accuracy", "fid"} <= set(
            res[side]
        )
    model = Path(res["model_dir"])
    assert model.parent == run and (model / "model_index.json").is_file()
    assert (model / "unet").is_dir() and (run / "after.png").is_file()
    family = json.loads((model / "unlearn.json").read_text())["family"]
    assert family == cfg["model"]["kind"]
    assert (model / "text_encoder_2").is_dir() == (demo == "sdxl_demo")
    assert "eval/concept_rate" in rec.data.metrics


def test_i2i_run_as_a_job_writes_its_model_and_completion_metrics(cluster, tmp_path):
    """An image-to-image `unlearn run` (the shipped masked autoencoder, encoder unlearning,
    2 steps) as a Ray job: its run directory holds the model and the forget / retain
    completion metrics, and MLflow has the run."""
    import json

    cfg = yaml.safe_load((REPO / "configs/i2i_mae.yaml").read_text())
    cfg["unlearn"] |= {"steps": 2, "batch_size": 8}
    cfg["i2i"]["eval_images"] = 20
    _, res, rec = run_as_job(cluster, tmp_path, cfg)
    for side in ("before", "after"):
        assert {"forget_rate", "retain_accuracy", "fid", "forget_fid"} <= set(res[side])
    model = Path(res["model_dir"])
    assert json.loads((model / "unlearn.json").read_text())["family"] == "mae"
    assert "eval/forget_fid" in rec.data.metrics


def test_job_exit_status_is_mirrored_and_uploads_exclude_junk(cluster, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    (tmp_path / "runs.db").write_text("x")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "big").write_text("x")
    code = "import os; print('files:', sorted(os.listdir())); raise SystemExit(3)"
    r = submit(cluster, "--follow", "--working-dir", str(tmp_path), "--", "python", "-c", code)
    assert r.returncode == 1, r.stderr
    assert "files: ['keep.txt']" in r.stdout and "FAILED" in r.stdout


def test_submission_without_the_token_is_refused(cluster, tmp_path):
    import requests

    headers = {"Authorization": f"Bearer {cluster['token']}"}
    jobs = requests.get(f"{cluster['address']}/api/jobs/", headers=headers, timeout=10).json()
    # no token anywhere (HOME without ~/.ray/auth_token)
    r = submit(
        cluster,
        "--working-dir",
        str(tmp_path),
        "--",
        "echo",
        "hi",
        env={"HOME": str(tmp_path)},
    )
    assert r.returncode == 2 and "requires a token and none was found" in r.stderr
    # someone else's token
    r = submit(
        cluster,
        "--working-dir",
        str(tmp_path),
        "--",
        "echo",
        "hi",
        env={"HOME": str(tmp_path), "RAY_AUTH_TOKEN": "0" * 64},
    )
    assert r.returncode == 2 and "refused the token" in r.stderr
    # the server itself refuses, whatever the client does
    raw = requests.post(
        f"{cluster['address']}/api/jobs/", json={"entrypoint": "echo hi"}, timeout=10
    )
    assert raw.status_code == 401
    after = requests.get(f"{cluster['address']}/api/jobs/", headers=headers, timeout=10).json()
    assert len(after) == len(jobs)


def test_unreachable_address_fails_within_10s(tmp_path):
    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        for port in (free_port(), silent.getsockname()[1]):
            t0 = time.monotonic()
            r = cli(
                "submit",
                "--address",
                f"http://127.0.0.1:{port}",
                "--",
                "unlearn",
                "tune",
                env=ONE_THREAD,
                timeout=60,
            )
            assert time.monotonic() - t0 < 10
            assert r.returncode == 2 and "no Ray cluster answers" in r.stderr
            assert len(r.stderr.strip().splitlines()) == 1
    finally:
        silent.close()


def test_a_cluster_failing_during_submission_is_one_line(tmp_path, monkeypatch):
    """Ray's client pastes server tracebacks into its errors: only their first line shows."""
    import unlearn.submit as jobs
    from unlearn.config import ConfigError

    class Refusing:
        def submit_job(self, **kwargs):
            raise RuntimeError("upload failed\nTraceback (most recent call last):\n  ...")

    class Vanishing:
        def submit_job(self, **kwargs):
            return "job-1"

        def get_job_status(self, job_id):
            raise ConnectionError()

    cases = [
        (Refusing(), "did not take the job: upload failed"),
        (Vanishing(), "lost the cluster at http://head:8265 while following job job-1 "),
    ]
    for fake, fragment in cases:
        monkeypatch.setattr(jobs, "client", lambda address, token=None, c=fake: c)
        with pytest.raises(ConfigError) as err:
            jobs.submit("http://head:8265", ["echo", "hi"], working_dir=tmp_path)
        assert fragment in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert "(ConnectionError)" in str(err.value)
