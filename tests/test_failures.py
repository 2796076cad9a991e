"""Bad services and bad inputs through the real ``unlearn`` command: a dead tracking server,
malformed files, bad credentials. Each must end with exit code 2 and one line on stderr that
says what is wrong, quickly (the dead server is a closed local port: refused at once)."""

from __future__ import annotations

import os
import subprocess

import pytest
from helpers import REPO, cli, free_port, share_pretrained

#: a failure must be quick: a command that has not ended by then is a failure too
QUICK = 60


def one_line(r: subprocess.CompletedProcess, fragment: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert fragment in lines[0], lines[0]
    return lines[0]


# -- a dead tracking server ------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["run", "--config", str(REPO / "configs/tiny.yaml")],
        ["runs"],
        ["bench", "--config", str(REPO / "configs/tiny.yaml")],
        ["rl", "train", "--config", str(REPO / "configs/tiny.yaml")],
    ],
    ids=["run", "runs", "bench", "rl-train"],
)
@pytest.mark.slow
def test_dead_tracking_server_is_one_line_before_any_work(args, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens: refused at once
    r = cli(*args, "--set", f"workdir={tmp_path}", timeout=30, env={"MLFLOW_TRACKING_URI": uri})
    one_line(r, f"MLflow server {uri} is not reachable")
    assert not (tmp_path / "unlearned").exists() and not (tmp_path / "reports").exists()


def test_http_waits_get_bounded_defaults_unless_set(monkeypatch):
    from unlearn.tracking import HTTP_DEFAULTS, Tracker

    for key in HTTP_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "33")  # the user's own setting wins
    Tracker.attach("http://127.0.0.1:1", "run")
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "33"
    assert int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 2


def test_health_is_asked_once_per_store_and_a_dead_one_every_time():
    """A command opens several trackers (bench cells, child runs): one /health per store."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from unlearn.tracking import TrackingError, check_server

    hits = []

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        assert [check_server(uri) for _ in range(3)] == [uri] * 3
        assert hits == ["/health"]
    finally:
        server.shutdown()
        server.server_close()
    dead = f"http://127.0.0.1:{free_port()}"
    for _ in range(2):  # a store that did not answer is asked again
        with pytest.raises(TrackingError, match="is not reachable"):
            check_server(dead)


# -- malformed files ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, where",
    [
        ("{a: [1, 2\n", "at line 2, column 1: expected ',' or ']'"),
        ("unlearn:\n  steps: 3\n lr: 1\n", "at line 3, column"),
    ],
)
def test_malformed_yaml_is_one_line_with_line_and_column(text, where, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    r = cli("run", "--config", str(bad), "--set", f"workdir={tmp_path}", timeout=QUICK)
    line = one_line(r, where)
    assert str(bad) in line


@pytest.mark.slow
def test_pickle_model_dir_asks_for_safetensors(tmp_path):
    from diffusers import UNet2DModel

    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    unet.save_pretrained(tmp_path / "pickled", safe_serialization=False)
    assert (tmp_path / "pickled" / "diffusion_pytorch_model.bin").is_file()
    r = cli("eval", str(tmp_path / "pickled"), "--set", f"workdir={tmp_path}", timeout=QUICK)
    line = one_line(r, "safetensors weights are required")
    assert str(tmp_path / "pickled") in line and "diffusion_pytorch_model.bin" in line


# -- bad credentials ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "token, fragment",
    [("tok€n", "holds '€' at character 4"), ("tok\nen", "line break"), ("", "is empty")],
    ids=["non-latin-1", "newline", "empty"],
)
def test_bad_ray_token_is_named_not_blamed_on_the_cluster(token, fragment, tmp_path):
    address = f"http://127.0.0.1:{free_port()}"
    r = cli(
        "submit",
        "--address",
        address,
        "--working-dir",
        str(tmp_path),
        "--",
        "unlearn",
        "runs",
        env={"RAY_AUTH_TOKEN": token},
        timeout=QUICK,
    )
    line = one_line(r, fragment)
    assert line.startswith("error: RAY_AUTH_TOKEN:") and "no Ray cluster answers" not in line


@pytest.mark.slow
def test_dead_ray_address_is_one_line_not_minutes_of_retries(tiny_workdir, tmp_path):
    share_pretrained(tmp_path, tiny_workdir)
    address = f"127.0.0.1:{free_port()}"
    r = cli(
        "tune",
        "--config",
        str(REPO / "configs/tiny.yaml"),
        "--set",
        f"workdir={tmp_path}",
        "--set",
        "tracking.enabled=false",
        "--space",
        str(REPO / "configs/tune/static_siss.yaml"),
        "--address",
        address,
        timeout=120,
    )
    one_line(r, f"no Ray cluster answers at {address}")
