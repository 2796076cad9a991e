"""Faults a user meets, each ending in exit code 2 and one line naming what is wrong: broken
pipeline weights, a dead tracking server seen by ``unlearn tune``, duplicate bench rows, a
``tune.max_failures`` out of range. Bad input is checked in-process through
:func:`unlearn.cli.main`; one case goes through the real console command."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import REPO, UNLEARN, clean_env, cli, cli_here, free_port, share_pretrained


def main(*args: str, **env: str) -> tuple[int, list[str]]:
    """``unlearn ARGS`` in this process (``env`` added): its exit code and stderr lines."""
    r = cli_here(*args, env=env)
    return r.returncode, r.stderr.strip().splitlines()


# -- broken weights in a text-to-image pipeline ----------------------------------------------
def _pickled_lora(path: Path) -> None:
    import torch

    torch.save({"unet.down.lora_A.weight": torch.zeros(2, 2)}, path)


@pytest.mark.parametrize(
    "write, fragment",
    [
        (lambda p: p.write_bytes(b"\x00garbage, not a safetensors header"), "is corrupted"),
        (_pickled_lora, "is a pickle (never loaded)"),
    ],
    ids=["corrupted", "pickle"],
)
def test_broken_lora_file_is_named(t2i_pipeline_copy, write, fragment, capfd):
    from unlearn.config import ConfigError
    from unlearn.models.t2i.io import LORA_FILE, load_t2i

    lora = t2i_pipeline_copy / LORA_FILE
    write(lora)
    with pytest.raises(ConfigError) as e:
        load_t2i(t2i_pipeline_copy)
    assert str(lora) in str(e.value) and fragment in str(e.value)
    assert "only safetensors adapters load" in str(e.value)
    assert capfd.readouterr().err == ""  # no library line before the project's own


def test_pickled_unet_is_named_and_nothing_else_is_printed(t2i_pipeline_copy, capfd):
    from diffusers import UNet2DConditionModel

    from unlearn.config import ConfigError
    from unlearn.models.t2i.io import load_t2i

    unet_dir = t2i_pipeline_copy / "unet"
    unet = UNet2DConditionModel.from_pretrained(unet_dir)
    for f in unet_dir.glob("*.safetensors"):
        f.unlink()
    unet.save_pretrained(unet_dir, safe_serialization=False)
    capfd.readouterr()
    with pytest.raises(ConfigError) as e:
        load_t2i(t2i_pipeline_copy)
    assert "diffusion_pytorch_model.bin (pickle, never loaded)" in str(e.value)
    assert "unet/" in str(e.value)
    assert capfd.readouterr().err == ""


@pytest.mark.slow
def test_corrupted_lora_through_unlearn_eval_is_exit_2_and_one_line(t2i_pipeline_copy, tmp_path):
    from unlearn.models.t2i.io import LORA_FILE

    lora = t2i_pipeline_copy / LORA_FILE
    lora.write_bytes(b"\x00\x01 truncated")
    r = cli("eval", str(t2i_pipeline_copy), "--set", f"workdir={tmp_path}", timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(lora) in lines[0] and "corrupted" in lines[0], r.stderr


# -- unlearn tune ----------------------------------------------------------------------------
def test_tune_reports_a_dead_tracking_server_first_and_fast(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    t0 = time.perf_counter()
    # fdiv needs a class-conditional model: the space is wrong too, but tracking comes first
    code, err = main(
        "tune",
        "--space",
        str(REPO / "configs/tune/fdiv.yaml"),
        "--config",
        str(REPO / "configs/tiny.yaml"),
        "--set",
        f"workdir={tmp_path}",
        MLFLOW_TRACKING_URI=uri,
    )
    assert time.perf_counter() - t0 < 5
    assert code == 2 and len(err) == 1 and f"MLflow server {uri} is not reachable" in err[0]
    assert not (tmp_path / "tune").exists()


@pytest.mark.parametrize("value", ["101", "-2", "1.5"])
def test_tune_max_failures_out_of_range_is_one_line(value, tmp_path):
    code, err = main(
        "tune",
        "--space",
        str(REPO / "configs/tune/static_siss.yaml"),
        "--config",
        str(REPO / "configs/tiny.yaml"),
        "--set",
        f"workdir={tmp_path}",
        "--set",
        f"tune.max_failures={value}",
    )
    assert code == 2 and len(err) == 1 and "tune.max_failures" in err[0], err


def test_tune_max_failures_reaches_tunes_failure_config(tmp_path):
    from unlearn.config import load_config
    from unlearn.tuners import SweepOptions, load_space
    from unlearn.tuners.sweep import _new_tuner

    cfg = load_config(REPO / "configs/tiny.yaml", [f"workdir={tmp_path}", "tune.max_failures=-1"])
    space = load_space(REPO / "configs/tune/static_siss.yaml")
    tuner = _new_tuner(cfg, space, SweepOptions(), tmp_path / "sweep", lambda c: None, None, 2, 1)
    run_config = tuner._local_tuner.get_run_config()
    assert run_config.failure_config.max_failures == -1


# -- unlearn bench ---------------------------------------------------------------------------
def test_bench_refuses_duplicate_rows(tmp_path):
    code, err = main(
        "bench",
        "--rows",
        "esd:static, esd:static",
        "--set",
        f"workdir={tmp_path}",
    )
    assert code == 2 and len(err) == 1, err
    assert "--rows" in err[0] and "esd:static is given twice" in err[0]
    assert not (tmp_path / "bench").exists()


# -- a run killed with SIGKILL ---------------------------------------------------------------
@pytest.mark.slow
def test_a_killed_run_is_shown_and_recorded_as_killed_and_a_finished_one_is_complete(
    tiny_workdir, tmp_path
):
    import json
    import os
    import signal
    import subprocess

    from mlflow.tracking import MlflowClient

    from unlearn.config import load_config
    from unlearn.run import run
    from unlearn.tracking import list_runs
    from unlearn.tracking.liveness import MARKER

    wd = share_pretrained(tmp_path / "work", tiny_workdir)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["--set", f"workdir={wd}", "--set", f"tracking.uri={uri}"]
    proc = subprocess.Popen(
        [UNLEARN, "run", "--no-eval", "--config", str(REPO / "configs/tiny.yaml"), *args]
        + ["--set", "unlearn.steps=1000000", "--set", "tracking.enabled=true"],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not list((wd / "unlearned").glob(f"*/{MARKER}")) and proc.poll() is None:
            assert time.monotonic() < deadline, "the run wrote no INCOMPLETE.json"
            time.sleep(0.2)
        time.sleep(1.0)  # into the unlearning loop
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    (out,) = (wd / "unlearned").iterdir()
    assert not (out / "result.json").exists()  # nothing says it finished
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(out.name).info.status == "RUNNING"  # until someone reads the runs

    cfg_overrides = [*args[1::2], "tracking.enabled=true"]
    cfg = load_config(REPO / "configs/tiny.yaml", cfg_overrides)
    (row,) = list_runs(cfg)
    assert (row["run_id"], row["status"]) == (out.name, "KILLED")
    killed = client.get_run(out.name)
    assert killed.info.status == "KILLED"
    assert str(proc.pid) in killed.data.tags["unlearn.failure"]
    marker = json.loads((out / MARKER).read_text())
    assert marker["status"] == "killed" and marker["run_id"] == out.name

    # a run of this process in the same store: its folder is complete, it is left as it is
    res = run(
        load_config(REPO / "configs/tiny.yaml", [*cfg_overrides, "unlearn.steps=2"]), evaluate=False
    )
    done = Path(res.model_dir).parent
    assert json.loads((done / "result.json").read_text())["status"] == "finished"
    assert not (done / MARKER).exists()
    tags = client.get_run(res.run_id).data.tags
    assert (tags["unlearn.pid"], tags["unlearn.output"]) == (str(os.getpid()), str(done))
    assert {r["run_id"]: r["status"] for r in list_runs(cfg)} == {
        out.name: "KILLED",
        res.run_id: "FINISHED",
    }
