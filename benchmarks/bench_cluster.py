"""Sweeps on a multi-node Ray cluster: per-trial overhead on a worker node vs the head, and
the recovery time after losing a worker node.

Starts a Ray cluster on this machine (a head and a worker node, each ``ray start --block``
on 127.0.0.1 in its own process group, 1 CPU each plus a custom resource that places
trials: ``head_slot`` on the head, ``worker`` on the worker) and drives sweeps from this
process, whose driver joins the head. Prints, measured in one run:

- per trial (median): wall time seen by the driver minus its unlearning time, with trials
  on the worker node vs on the head (the driver's node), the two settings alternated;
- after SIGKILL to the worker node's process group during a trial (a replacement worker
  node started at once): seconds from the kill until the interrupted trial reports again
  from its checkpoint, and until it restarted (that report minus its time since restore).

Trials are the tiny model (pretrained once into the benchmark workdir), 300 steps, MLflow
off (only Ray/Tune is measured); the recovery sweep has one trial of 600 steps,
checkpointing every 20. The cluster uses Ray's default health checks (a lost node is
declared dead after them).

Run: .venv/bin/python benchmarks/bench_cluster.py   (about three minutes on 2 cores)
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO  # noqa: E402
from unlearn.config.loader import with_overrides  # noqa: E402

WORKDIR = "/tmp/unlearn-bench-tiny"
BIN = Path(sys.executable).parent
SPACE = {
    "fixed": {"method.name": "siss", "agent.name": "static"},
    "params": {"method.lam": {"float": [0.05, 0.95]}},
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nodes:
    """A head and worker nodes on 127.0.0.1, each its own process group."""

    def __init__(self, tmp: Path):
        self.tmp, self.procs = tmp, []
        self.address = f"127.0.0.1:{_port()}"

    def start(self, args: list[str]) -> subprocess.Popen:
        ports = [
            f"--{n}={_port()}"
            for n in (
                "node-manager-port",
                "object-manager-port",
                "dashboard-agent-listen-port",
                "dashboard-agent-grpc-port",
                "runtime-env-agent-port",
                "metrics-export-port",
            )
        ]
        log = (self.tmp / f"node{len(self.procs)}.log").open("w")
        temp = self.tmp / f"ray{len(self.procs)}"
        proc = subprocess.Popen(
            [str(BIN / "ray"), "start", "--block", "--node-ip-address=127.0.0.1"]
            + [f"--temp-dir={temp}", *args, *ports],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def head(self) -> None:
        port = self.address.rsplit(":", 1)[1]
        self.start(
            ["--head", f"--port={port}", "--num-cpus=1", '--resources={"head_slot": 1}']
            + ["--include-dashboard=false", f"--ray-client-server-port={_port()}"]
        )

    def worker(self) -> subprocess.Popen:
        return self.start(
            [f"--address={self.address}", "--num-cpus=1"] + ['--resources={"worker": 1}']
        )

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
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


def _sweep(cfg, place: str, tag: str, n: int, address: str):
    from unlearn.tuners import SweepOptions, parse_space, run_sweep

    points = [{"method.lam": 0.2 + 0.6 * i / max(1, n - 1)} for i in range(n)]
    opts = SweepOptions(
        search="optuna",
        objective="weighted",
        num_samples=n,
        max_concurrent=1,
        points_to_evaluate=points,
        name=f"cluster-{tag}-{time.strftime('%H%M%S')}-{secrets.token_hex(2)}",
        address=address,
    )
    c = with_overrides(cfg, [f"tune.trial_resources={{{place}: 1}}"])
    return run_sweep(c, parse_space(SPACE, name="bench"), opts)


def _results(trial: Path) -> list[dict]:
    f = trial / "result.json"
    if not f.is_file():
        return []
    return [json.loads(x) for x in f.read_text().splitlines() if x.strip()]


def _recovery(cfg, nodes: Nodes, worker) -> tuple[float, float]:
    """Seconds from killing the worker node to the trial's next report / its restart."""
    from unlearn.tuners import SweepOptions, parse_space, run_sweep

    c = with_overrides(
        cfg,
        ["unlearn.steps=600", "tune.report_every=20", "tune.max_failures=2"]
        + ["tune.trial_resources={worker: 1}"],
    )
    name = f"cluster-loss-{time.strftime('%H%M%S')}"
    opts = SweepOptions(search="random", num_samples=1, name=name, address=nodes.address)
    out: dict = {}
    t = threading.Thread(
        target=lambda: out.update(res=run_sweep(c, parse_space(SPACE, name="bench"), opts)),
        daemon=True,
    )
    t.start()
    root = Path(WORKDIR) / "tune" / name
    while True:  # the trial's first checkpoint
        trials = [p for p in root.glob("*") if list(p.glob("checkpoint_*"))]
        if trials:
            break
        time.sleep(0.02)
    (trial,) = trials
    t_kill = time.monotonic()
    nodes.kill(worker)
    nodes.worker()

    def restored() -> list[dict]:  # reports of the restarted trial (a fresh restore count)
        rs = _results(trial)
        return [r for i, r in enumerate(rs) if i and r["iterations_since_restore"] == 1]

    while not restored():
        time.sleep(0.02)
    t_report = time.monotonic() - t_kill
    first = restored()[0]
    t.join()
    assert out["res"].trials[0].restarts == 1, out
    return t_report, t_report - float(first["time_since_restore"])


def main(trials: int = 3, steps: int = 300) -> dict[str, float]:
    import ray

    from unlearn.config import load_config
    from unlearn.pretrain import pretrain

    cfg = load_config(
        REPO / "configs" / "tiny.yaml",
        [
            f"workdir={WORKDIR}",
            f"unlearn.steps={steps}",
            "eval.num_samples=100",
            "tune.cpus_per_trial=1",
            "tracking.enabled=false",
        ],
    )
    pretrain(cfg)  # cached after the first run
    tmp = Path(tempfile.mkdtemp(prefix="ubc-", dir="/tmp"))
    (tmp / "token").write_text(secrets.token_hex(32))
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(tmp / "token"))
    os.environ.update(RAY_USAGE_STATS_ENABLED="0")
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")  # this process reads the auth settings above, not cached ones
    AuthenticationTokenLoader.instance().reset_cache()
    nodes = Nodes(tmp)
    overhead: dict[str, list[float]] = {"head_slot": [], "worker": []}
    unlearn: dict[str, list[float]] = {"head_slot": [], "worker": []}
    try:
        nodes.head()
        time.sleep(3)
        worker = nodes.worker()
        ray.init(address=nodes.address, log_to_driver=False)
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            time.sleep(0.2)
        _sweep(cfg, "worker", "warmup", 1, nodes.address)  # imports, Tune's first start
        for place in ("worker", "head_slot", "head_slot", "worker"):
            res = _sweep(cfg, place, place, trials, nodes.address)
            overhead[place] += [t.overhead for t in res.trials if t.overhead is not None]
            unlearn[place] += [t.unlearn_time for t in res.trials]
        to_report, to_restart = _recovery(cfg, nodes, worker)
    finally:
        ray.shutdown()
        nodes.shutdown()
    med = statistics.median
    out = {
        "overhead_worker_s": med(overhead["worker"]),
        "overhead_head_s": med(overhead["head_slot"]),
        "unlearn_worker_s": med(unlearn["worker"]),
        "unlearn_head_s": med(unlearn["head_slot"]),
        "recovery_to_report_s": to_report,
        "recovery_to_restart_s": to_restart,
    }
    n = len(overhead["worker"])
    print(f"tiny model, {steps} steps per trial, 1 CPU per trial, trials one after another")
    print(
        f"  per-trial overhead beyond unlearning (median of {n}): worker node "
        f"{out['overhead_worker_s']:.2f} s, head (driver's node) {out['overhead_head_s']:.2f} s"
        f" (unlearning {out['unlearn_worker_s']:.2f} s / {out['unlearn_head_s']:.2f} s)"
    )
    print(
        f"  worker node killed mid-trial: the trial restarted from its checkpoint after "
        f"{to_restart:.1f} s and reported again after {to_report:.1f} s"
    )
    return out


if __name__ == "__main__":
    main()
