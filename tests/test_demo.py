"""The whole demo through the real ``unlearn demo`` command, on the tiny config.

Every part runs for real, in two commands: the defaults (base evaluation, the shipped
demo-model policy beside static λ and a decay on a held-out class,
ESD and constrained reverse-KL on the shipped text-to-image pipeline) and the opt-in parts
(static and variational unlearning of the configured class, a 4-trial search on a local Ray
instance, PPO on the tiny env as a smoke test with its exported policy in an unlearning
run); the reports, and MLflow runs in the embedded store.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from helpers import REPO, cli


def demo(work: Path, out: Path, *extra: str):
    config = ["--config", str(REPO / "configs/tiny.yaml"), "--set", f"workdir={work}"]
    return cli("demo", *config, "--out", str(out), *extra, timeout=900)


@pytest.mark.slow
def test_demo_default_parts_write_the_report(tiny_workdir: Path, tmp_path: Path):
    work = tmp_path / "work"
    shutil.copytree(tiny_workdir / "pretrained", work / "pretrained")
    out = tmp_path / "report"
    r = demo(work, out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert str(out / "report.md") in r.stdout.replace("\n", "")
    assert f"unlearn ui --set workdir={work}" in r.stdout.replace("\n", "")
    # the printed summary has the text-to-image rows too, with a pipeline's columns
    summary = r.stdout.split("demo summary: text-to-image")[1]
    for row in ("t2i: before", "t2i: ESD, static λ", "t2i: constrained, dual λ"):
        assert row in summary
    assert "concept_rate" in summary and "retain_accuracy" in summary

    report = (out / "report.md").read_text()
    for heading in (
        "## Base model",
        "## Shipped RL policy on a held-out class",
        "## Text-to-image",
    ):
        assert heading in report
    for heading in ("## Unlearning", "## Search", "## RL λ agent"):  # opt-in parts
        assert heading not in report
    assert "200 samples" in report  # the demo's evaluation budget
    for png in (
        "base_samples.png",
        "policy_lambda.png",
        "t2i_before_0.png",
        "t2i_after_0.png",
        "t2i_dual_0.png",
        "t2i_dual_lambda.png",
    ):
        assert (out / png).stat().st_size > 1000, png
    results = json.loads((out / "results.json").read_text())
    assert results["base"]["num_samples"] == 200
    part = results["policy"]  # the shipped policy, static λ and a decay on class 2
    assert part["instance"] == 2 and part["samples"] == 200
    assert set(part["agents"]) == {"static", "decay", "policy"}
    for name, a in part["agents"].items():  # a policy with a stop action may use fewer steps
        assert 0 <= a["steps"] <= 8 and len(a["lambdas"]) == a["steps"], name
    agents = part["agents"]
    assert agents["static"]["steps"] == agents["decay"]["steps"] == 8
    assert agents["decay"]["lambdas"][0] > agents["decay"]["lambdas"][-1]
    assert {"class 2: siss + policy λ", "class 2: siss + decay λ"} <= set(results)
    dual = results["t2i-constrained-dual"]  # the second t2i method, under the dual agent
    assert dual["status"] == "finished" and len(set(dual["lambdas"])) > 1  # λ adapted
    assert dual["after"]["concept_rate"] is not None and results["t2i"]["status"] == "finished"
    assert "10 images per prompt" in report

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    # the decay is a linear schedule
    assert {"static", "schedule", "policy"} <= {r.data.params.get("agent.name") for r in runs}
    assert all(r.info.status == "FINISHED" for r in runs)


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--parts", "policy,nope"], "--parts: ['nope'] not allowed"),
        (["--parts", "all,rl"], "--parts: ['all'] not allowed"),
        (["--samples", "5"], "--samples: eval.num_samples: 5 is out of range"),
        (["--t2i-samples", "0"], "--t2i-samples: t2i.samples_per_prompt: 0 is out of range"),
    ],
)
def test_demo_bad_input_is_one_line_before_any_work(
    tiny_workdir: Path, tmp_path: Path, monkeypatch, capsys, bad: list[str], message: str
):
    from unlearn.cli import main

    out = tmp_path / "report"
    argv = ["unlearn", "demo", "--config", str(REPO / "configs/tiny.yaml")]
    argv += ["--set", f"workdir={tiny_workdir}", "--set", "tracking.enabled=false"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(out), *bad])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert not out.exists()  # refused before any work


@pytest.mark.integration
def test_demo_opt_in_parts(tiny_workdir: Path, tmp_path: Path):
    work = tmp_path / "work"
    shutil.copytree(tiny_workdir / "pretrained", work / "pretrained")
    out = tmp_path / "report"
    r = demo(work, out, "--parts", "unlearn,search,rl", "--samples", "50")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = (out / "report.md").read_text()
    for heading in ("## Base model", "## Unlearning", "## Search", "## RL λ agent (tiny env"):
        assert heading in report
    assert "## Shipped RL policy" not in report and "## Text-to-image" not in report
    for png in ("base_samples.png", "lambda.png", "search_pareto.png", "rl_lambda.png"):
        assert (out / png).stat().st_size > 1000, png
    results = json.loads((out / "results.json").read_text())
    assert {"base", "siss + static λ", "siss + variational λ", "tiny: siss + policy λ"} <= set(
        results
    )
    assert results["siss + static λ"]["num_samples"] == 50
    meta = json.loads((work / "policies/demo-ppo/metadata.json").read_text())
    assert meta["algorithm"] == "ppo"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    names = {e.name for e in client.search_experiments()}
    assert {"tiny", "tiny-rl"} <= names
    runs = client.search_runs([client.get_experiment_by_name("tiny-rl").experiment_id])
    assert "policy" in {r.data.params.get("agent.name") for r in runs}
    assert all(r.info.status == "FINISHED" for r in runs)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert {"static", "variational"} <= {r.data.params.get("agent.name") for r in runs}
