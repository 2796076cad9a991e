"""A real multi-node Ray cluster on this machine: sweeps whose trials run on a worker node,
jobs submitted to it, and a sweep that loses its worker node and still finishes.

One cluster serves the module: a head without CPUs (it holds the drivers, never a trial) and
a worker node offering 2 CPUs and 2 units of a custom ``worker`` resource that trials ask for
(``tune.trial_resources``), each node ``ray start --block`` on 127.0.0.1 in its own process
group with free ports. Token authentication is on with the module's own token. Teardown
ends exactly the nodes started here, never other Ray instances on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, free_port, share_pretrained

BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: what a worker node offers for trials: 2 CPUs and 2 "worker" slots (the head offers none)
WORKER = ["--num-cpus=2", '--resources={"worker": 2}']
#: a node that stops answering is declared dead after ~3 s instead of ~30 s
FAST_HEALTH_CHECK = {
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 3,
}


def _ports(*names: str) -> list[str]:
    return [f"--{n}={free_port()}" for n in names]


class LocalCluster:
    """A Ray head and worker nodes on 127.0.0.1, each ``ray start --block`` in its own
    process group: a node is lost by killing its group, as a machine that goes away."""

    def __init__(self, tmp: Path, env: dict[str, str]):
        self.tmp, self.env = tmp, env
        self.procs: list[subprocess.Popen] = []
        self.port, self.dash = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://127.0.0.1:{self.dash}"

    def _start(self, args: list[str]) -> subprocess.Popen:
        log = (self.tmp / f"node{len(self.procs)}.log").open("w")
        cmd = [str(BIN / "ray"), "start", "--block", "--node-ip-address=127.0.0.1", *args]
        cmd += _ports(
            "node-manager-port",
            "object-manager-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
        )
        proc = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.procs.append(proc)
        return proc

    def start_head(self) -> None:
        self._start(
            [
                "--head",
                "--num-cpus=0",
                f"--port={self.port}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dash}",
                f"--temp-dir={self.tmp / 'ray'}",
                f"--system-config={json.dumps(FAST_HEALTH_CHECK)}",
                *_ports("ray-client-server-port"),
            ]
        )

    def add_worker(self) -> subprocess.Popen:
        # its own temp dir, as on its own machine: nodes never share runtime-env folders
        temp = self.tmp / f"ray-w{len(self.procs)}"
        return self._start([f"--address={self.address}", f"--temp-dir={temp}", *WORKER])

    def kill(self, proc: subprocess.Popen) -> None:
        """The node's process group and every process it started (raylet, agents, its
        trials' workers, in whatever group they run), at once and without warning."""
        import psutil

        try:
            below = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            below = []
        os.killpg(proc.pid, signal.SIGKILL)
        for p in below:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait(timeout=10)
        psutil.wait_procs(below, timeout=10)

    def shutdown(self) -> None:
        # each node's own process group, workers first (a SIGTERM would drain for 30 s)
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(p.read_text()[-1500:] for p in sorted(self.tmp.glob("node*.log")))


@pytest.fixture(scope="module")
def cluster():
    import ray

    tmp = Path(tempfile.mkdtemp(prefix="urm-", dir="/tmp"))  # short: Ray's socket paths
    token = secrets.token_hex(32)
    (tmp / "token").write_text(token)
    env = {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(tmp / "token"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": f"{BIN}:{os.environ['PATH']}",  # jobs on the head find `unlearn`
        "OMP_NUM_THREADS": "1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # this process drives sweeps on the cluster: same token
    _refresh_auth()
    c = LocalCluster(tmp, dict(os.environ))
    try:
        c.start_head()
        _wait_for_jobs_api(c, token)
        c.add_worker()
        ray.init(address=c.address, log_to_driver=False)
        try:
            deadline = time.monotonic() + 60
            while len([n for n in ray.nodes() if n["Alive"]]) < 2:
                assert time.monotonic() < deadline, c.logs()
                time.sleep(0.2)
            nodes = [n for n in ray.nodes() if n["Alive"]]
            head = ray.get_runtime_context().get_node_id()  # a driver joins the head
            (worker,) = [n["NodeID"] for n in nodes if "worker" in n["Resources"]]
        finally:
            ray.shutdown()
        yield {
            "cluster": c,
            "address": c.address,
            "url": c.url,
            "token": token,
            "token_path": tmp / "token",
            "head": head,
            "worker": worker,
            "worker_proc": c.procs[1],
        }
    finally:
        c.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _refresh_auth()
        shutil.rmtree(tmp, ignore_errors=True)


def _refresh_auth() -> None:
    """Make this process read RAY_AUTH_MODE / RAY_AUTH_TOKEN_PATH again (Ray caches both)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _wait_for_jobs_api(c: LocalCluster, token: str, timeout: float = 90) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while True:
        assert c.procs[0].poll() is None, c.logs()
        try:
            r = requests.get(
                f"{c.url}/api/jobs/", headers={"Authorization": f"Bearer {token}"}, timeout=2
            )
            if r.status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "the Jobs API of the head did not come up"
        time.sleep(0.5)


def _job_dir(tmp_path: Path, workdir: Path, **overrides) -> Path:
    """A job folder: the tiny config (workdir, tracking, overrides) and the SISS space."""
    job = tmp_path / "job"
    job.mkdir()
    cfg = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    cfg.update(workdir=str(workdir), tracking={"experiment": "nodes"})
    for section, values in overrides.items():
        cfg.setdefault(section, {}).update(values)
    (job / "config.yaml").write_text(yaml.safe_dump(cfg))
    shutil.copy(REPO / "configs/tune/static_siss.yaml", job / "space.yaml")
    return job


def _runs(uri: str, experiment: str = "nodes"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("unlearn.kind") == "sweep"]
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return client, parent, kids


def _results(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_ray_job_submit_runs_unlearn_on_the_cluster(cluster, tiny_workdir, tmp_path):
    """Ray's own client, as a user would call it, with the cluster's token."""
    wd = share_pretrained(tmp_path / "w", tiny_workdir)
    job = _job_dir(tmp_path, wd, unlearn={"steps": 2}, eval={"num_samples": 20})
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(cluster["token_path"]),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    r = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", cluster["url"]]
        + ["--working-dir", str(job), "--", "unlearn", "run", "--config", "config.yaml"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "succeeded" in r.stdout.lower()
    (run,) = (wd / "unlearned").iterdir()
    res = json.loads((run / "result.json").read_text())
    assert res["status"] == "finished" and res["steps"] == 2


def test_sweep_job_runs_on_the_worker_and_survives_losing_it(
    cluster, tiny_workdir, tmp_path, monkeypatch, capsys
):
    """`unlearn submit` of `unlearn tune`: the driver runs on the head, the trials on the
    worker node. That node is killed (SIGKILL to its process group) while the second trial
    runs; a replacement joins, the interrupted trial goes on from its last checkpoint, the
    finished one is not run again, and the parent and child runs all end FINISHED with
    every step logged once."""
    from unlearn.cli import main

    steps, every = 30, 2
    wd = share_pretrained(tmp_path / "w", tiny_workdir)
    job = _job_dir(
        tmp_path,
        wd,
        unlearn={"steps": steps},
        eval={"num_samples": 20},
        tune={"trial_resources": {"worker": 1}, "report_every": every, "max_failures": 2},
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(cluster["token_path"]))
    argv = ["unlearn", "submit", "--address", cluster["url"], "--follow"]
    argv += ["--working-dir", str(job), "--env", f"MLFLOW_TRACKING_URI={uri}", "--"]
    argv += ["unlearn", "tune", "--config", "config.yaml", "--space", "space.yaml"]
    argv += ["--search", "random", "--num-samples", "2", "--max-concurrent", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--name", "lossy"])
    exit_code: list = []

    def submit():
        try:
            main()
        except SystemExit as e:
            exit_code.append(e.code)

    follower = threading.Thread(target=submit, daemon=True)
    follower.start()
    root = wd / "tune" / "lossy"
    deadline = time.monotonic() + 180
    victim = None
    while victim is None:  # one trial finished, the next one checkpointed and running
        assert follower.is_alive(), capsys.readouterr().out[-3000:]
        assert time.monotonic() < deadline, "the sweep did not get going"
        dirs = [p for p in root.glob("*") if p.is_dir() and (p / "result.json").is_file()]
        done = [p for p in dirs if any(r.get("unlearn/final") for r in _results(p))]
        running = [p for p in dirs if p not in done and list(p.glob("checkpoint_*"))]
        if done and running:
            victim = running[0]
        time.sleep(0.05)
    finished_first = done[0]
    before = _results(victim)[-1]["unlearn/step"]
    old = cluster["worker"]
    c = cluster["cluster"]
    c.kill(cluster["worker_proc"])  # the node's raylet, agents and trial, without warning
    cluster["worker_proc"] = c.add_worker()  # a replacement joins
    follower.join(timeout=240)
    assert not follower.is_alive(), "the sweep did not finish after the node loss"
    out = capsys.readouterr().out
    assert exit_code in ([0], [None]), out[-4000:]
    assert "SUCCEEDED" in out and "sweep lossy" in out  # the job's own output
    assert before < steps, "the trial finished before its node was killed"

    # every trial ran to the end on a worker node, never on the driver's (the head)
    trials = {
        t["trial_id"]: t for t in json.loads((root / "report/sweep.json").read_text())["trials"]
    }
    assert len(trials) == 2 and all(t["status"] == "finished" for t in trials.values())
    first, moved = trials[finished_first.name], trials[victim.name]
    assert first["restarts"] == 0 and first["node_ids"] == [old]
    assert moved["restarts"] == 1 and moved["node_ids"][0] == old
    (new,) = moved["node_ids"][1:]
    assert new not in (old, cluster["head"])  # resumed on the replacement node
    cluster["worker"] = new

    # every report in order, each with its checkpoint. The victim may repeat one report: a
    # kill between a report reaching the driver and its checkpoint being committed restarts
    # the trial from the checkpoint before, which re-runs up to that report once (a kill
    # after its final report repeats only that report); nothing else runs twice
    expected = list(range(every, steps + 1, every))
    for t in (finished_first, victim):
        reported = [r["unlearn/step"] for r in _results(t)]
        once = list(dict.fromkeys(reported))
        assert once == expected and reported == sorted(reported), reported
        assert len(reported) - len(once) <= (1 if t is victim else 0), reported
        assert list(t.glob("checkpoint_*"))  # the last ones are kept
    starts = [r["unlearn/step"] for r in _results(victim) if r["iterations_since_restore"] == 1]
    # restored from a checkpoint, not from scratch: its first report is the last one before
    # the kill (repeated) or the next
    assert len(starts) == 2 and starts[1] >= before, (starts, before)

    client, parent, kids = _runs(uri)
    assert parent.info.status == "FINISHED" and len(kids) == 2
    assert parent.data.tags["unlearn.driver_node_id"] == cluster["head"]
    by_trial = {k.data.tags["unlearn.trial_id"]: k for k in kids}
    for tid, k in by_trial.items():
        assert k.info.status == "FINISHED" and "eval/fid" in k.data.metrics
        assert k.data.tags["unlearn.node_ids"] == ",".join(trials[tid]["node_ids"])
        logged = sorted(m.step for m in client.get_metric_history(k.info.run_id, "unlearn/lambda"))
        assert sorted(set(logged)) == list(range(1, steps + 1)), logged  # every step
        # once each, but for the victim's steps re-run after a restore from the checkpoint
        # before its last report (the one repeated report above): at most one interval
        again = len(logged) - steps
        assert again == 0 or (tid == victim.name and again <= every), logged
    assert by_trial[victim.name].data.tags["unlearn.restarts"] == "1"


def test_a_resource_no_node_offers_is_one_line_in_seconds(
    cluster, tiny_workdir, tmp_path, monkeypatch, capsys
):
    from unlearn.cli import main

    wd = share_pretrained(tmp_path / "w", tiny_workdir)
    argv = ["unlearn", "tune", "--config", str(REPO / "configs/tiny.yaml")]
    argv += ["--space", str(REPO / "configs/tune/static_siss.yaml")]
    argv += ["--address", cluster["address"], "--set", f"workdir={wd}"]
    argv += ["--set", "tracking.enabled=false", "--set", "tune.trial_resources={gpu_node: 1}"]
    monkeypatch.setattr(sys, "argv", argv)
    capsys.readouterr()
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert time.monotonic() - t0 < 20
    assert e.value.code == 2 and len(err) == 1, err
    assert "tune.trial_resources.gpu_node: 1 gpu_node per trial" in err[0]
    assert "worker" in err[0]  # what the cluster does offer
    assert not (wd / "tune").exists() or not any((wd / "tune").iterdir())
