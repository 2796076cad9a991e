"""The bench and RL on text-to-image pipelines: bench cells on held-out digit concepts with
MLflow runs and CIs; ``unlearn rl train`` on the env over concepts, its exported policy as
the λ agent of a t2i run (the real console command, real RLlib, real MLflow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import T2I_TINY, cli, share_pretrained
from test_rl import last_json, train_ppo
from test_t2i_env import ENV

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def work(tmp_path_factory, t2i_pretrained) -> Path:
    """A workdir over the session's tiny pipeline, with the env and MLflow settings in a file."""
    from unlearn.config import apply_overrides

    w = share_pretrained(tmp_path_factory.mktemp("t2i-rl"), t2i_pretrained)
    sets = [*T2I_TINY, *ENV, f"workdir={w}", "tracking.enabled=true"]
    sets.append(f"tracking.uri=sqlite:///{w}/mlflow.db")
    (w / "t2i.yaml").write_text(yaml.safe_dump(apply_overrides({}, sets)))
    return w


def test_bench_on_held_out_concepts_with_mlflow_runs(work):
    from mlflow.tracking import MlflowClient

    from unlearn.bench import BenchOptions, run_bench
    from unlearn.config import load_config

    cfg = load_config(work / "t2i.yaml", ["tracking.experiment=t2i"])
    opts = BenchOptions(methods=("esd", "fdiv"), agents=("static",), seeds=2, out=str(work / "b"))
    res = run_bench(cfg, opts)
    runs = json.loads((work / "b" / "results.json").read_text())["runs"]
    assert len(runs) == 4 and {r["instance"] for r in runs} == {2}
    assert all(r["status"] == "finished" for r in runs)
    assert all(0 <= r["forget_rate"] <= 1 and 0 <= r["retain_accuracy"] <= 1 for r in runs)
    assert all(r["paraphrase_rate"] is not None for r in runs)
    summary = {(s.method, s.agent): s for s in res.summaries}
    assert set(summary) == {("esd", "static"), ("fdiv", "static")}
    md = (work / "b" / "bench.md").read_text()
    table = md.split("## Summary")[1].split("\n## ")[0]
    head = table.strip().splitlines()[0]
    assert "paraphrase concept rate" in head and "retain accuracy (1 = best)" in head
    # no class coverage on a pipeline: no empty column, no "undecidable: coverage" marks
    assert "coverage" not in table
    assert len(head.split("|")) == len(table.strip().splitlines()[2].split("|"))
    assert "images per prompt" in md.split("## Summary")[0]
    assert "| esd | static | 2 |" in table and "| fdiv | static | 2 |" in table
    for s in summary.values():  # the standard CI and Welch marking, best retain nearest 1
        mine = [r["retain_accuracy"] for r in runs if r["method"] == s.method]
        assert s.stats["retain_accuracy"].mean == pytest.approx(sum(mine) / 2)
        assert s.stats["paraphrase_rate"].n == 2
        assert s.best["retain_accuracy"] or s.p["retain_accuracy"] is not None
    best = max(summary.values(), key=lambda s: s.stats["retain_accuracy"].mean)
    assert best.best["retain_accuracy"]
    client = MlflowClient(cfg.tracking.uri)
    exp = client.get_experiment_by_name("t2i-bench")  # <experiment>-bench
    cells = client.search_runs([exp.experiment_id], "tags.`unlearn.kind` = 'bench-cell'")
    assert len(cells) == 4 and all("eval/concept_rate" in r.data.metrics for r in cells)


def test_rl_trains_on_concepts_and_its_policy_drives_a_t2i_run(work):
    cfg = ["--config", str(work / "t2i.yaml")]
    small = ["--set", "rl.train_batch_size=4", "--set", "rl.minibatch_size=2"]
    trained = train_ppo(work, *cfg, *small)
    assert len(trained["returns"]) == 1
    proc = cli(
        "policy",
        "export",
        trained["checkpoint"],
        "--format",
        "torchscript",
        "--out",
        str(work / "pol"),
        cwd=work,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = cli(
        "run",
        *cfg,
        "--set",
        "method.name=fdiv",
        "--set",
        "agent.name=policy",
        "--set",
        f"agent.path={work / 'pol'}",
        "--json",
        cwd=work,
    )
    res = last_json(run)
    assert {"concept_rate", "retain_accuracy", "fid"} <= set(res["after"])
    assert res["model_dir"] and Path(res["model_dir"], "model_index.json").is_file()
