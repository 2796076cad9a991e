"""``unlearn bench``: a real tiny matrix (2 methods x 2 agents x 1 instance x 2 seeds),
its statistics against hand calculations, MLflow, resume, the published results page and CLI
errors."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path

import pytest
from helpers import REPO, cli

from unlearn.bench import BenchOptions, Cell, RunRecord, mean_ci, run_bench, summarize, welch_p
from unlearn.bench.perf import run_perf
from unlearn.bench.report import DIST, check_publish, matrix_line, summary_rows
from unlearn.config import ConfigError, load_config

T975 = {1: 12.706204736174705, 2: 4.302652729911275}  # t quantiles, from tables


def _child_runs(client, exp_id: str, parent: str) -> list:
    return client.search_runs([exp_id], filter_string=f"tags.`unlearn.bench` = '{parent}'")


@pytest.mark.slow
def test_bench_matrix_report_mlflow_resume_publish(tiny_workdir: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = load_config(
        REPO / "configs" / "tiny.yaml",
        [
            f"workdir={tiny_workdir}",
            f"tracking.uri={uri}",
            "tracking.experiment=benchtest",
            "env.test_instances=[2]",
            "unlearn.steps=4",
            "unlearn.eval_every=2",
        ],
    )
    out = tmp_path / "report"
    opts = BenchOptions(
        methods=("siss-gradient", "naive"),
        agents=("static", "dual"),
        seeds=2,
        static_lam=0.3,
        out=str(out),
    )
    res = run_bench(cfg, opts)

    data = json.loads((out / "results.json").read_text())
    runs = data["runs"]
    # naive deletion ignores λ: it runs under the first agent only (3 rows x 2 seeds)
    groups = {("siss-gradient", "static"), ("siss-gradient", "dual"), ("naive", "static")}
    assert res.ran == 6 and len(runs) == 6
    assert {(r["method"], r["agent"]) for r in runs} == groups
    assert len({(r["method"], r["agent"], r["instance"], r["seed"]) for r in runs}) == 6
    assert {r["status"] for r in runs} <= {"finished", "diverged"}
    assert all(r["lambdas"] == [0.3] * 4 for r in runs if r["agent"] == "static")
    # the forget rate was checked at step 0 (base), 2 (eval_every) and 4 (the final evaluation)
    assert all([c[0] for c in r["checks"]] == [0, 2, 4] for r in runs)

    # one row per (method, agent), finite means and CIs, CI = t * s / sqrt(n) by hand
    md = (out / "bench.md").read_text().split("## Summary")[1].split("\n## ")[0]
    header = next(line for line in md.splitlines() if line.startswith("| method | agent |"))
    assert DIST in header
    summary = {(s["method"], s["agent"]): s for s in data["summary"]}
    assert set(summary) == groups
    for (method, agent), s in summary.items():
        rows = [ln for ln in md.splitlines() if ln.startswith(f"| {method} | {agent} | 2 |")]
        assert len(rows) == 1
        assert len(rows[0].strip("|").split("|")) == len(header.strip("|").split("|"))
        mine = [r for r in runs if r["method"] == method and r["agent"] == agent]
        for metric in ("forget_rate", "fid", "coverage_kl", "wall_time"):
            xs = [r[metric] for r in mine]
            st = s["metrics"][metric]
            assert math.isfinite(st["mean"]) and math.isfinite(st["ci"]) and st["ci"] >= 0
            assert st["n"] == 2
            assert st["mean"] == pytest.approx(sum(xs) / 2)
            assert st["ci"] == pytest.approx(T975[1] * statistics.stdev(xs) / math.sqrt(2))
            assert isinstance(st["best"], bool)
            assert st["distinguishable"] in (True, False, None)
    for metric in ("forget_rate", "fid", "coverage_kl", "wall_time"):
        assert any(s["metrics"][metric]["best"] for s in summary.values())
    for name in ("pareto.png", "lambda.png", "samples/before.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    # MLflow: the parent run in <experiment>-bench holds the report; every cell is its child
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("benchtest-bench")
    parents = client.search_runs([exp.experiment_id], "tags.`unlearn.kind` = 'bench'")
    assert [p.info.run_name for p in parents] == ["bench-cpu"]
    parent = parents[0].info.run_id
    assert parents[0].info.status == "FINISHED" and data["parent_run_id"] == parent
    arts = {a.path for a in client.list_artifacts(parent)}
    assert {"bench.md", "results.json", "pareto.png", "lambda.png"} <= arts
    children = _child_runs(client, exp.experiment_id, parent)
    assert len(children) == 6
    assert all(c.data.tags["mlflow.parentRunId"] == parent for c in children)
    by_id = {r["run_id"]: r for r in runs}
    for c in children:
        assert c.data.metrics["eval/fid"] == pytest.approx(by_id[c.info.run_id]["fid"])

    # resume: nothing re-runs; the published results page is regenerated from the same numbers
    root = tmp_path / "repo"
    (root / "benchmarks" / "results").mkdir(parents=True)
    (root / "docs").mkdir()
    record = root / "benchmarks" / "results" / "bench-x.json"
    res2 = run_bench(cfg, dataclasses.replace(opts, resume=True, publish=str(record)))
    assert res2.ran == 0 and res2.parent_run_id == parent
    assert len(_child_runs(client, exp.experiment_id, parent)) == 6
    again = json.loads((out / "results.json").read_text())["runs"]
    assert [r["run_id"] for r in again] == [r["run_id"] for r in runs]
    published = json.loads(record.read_text())
    assert [r["run_id"] for r in published["runs"]] == [r["run_id"] for r in runs]
    body = published["section"]
    page = (root / "docs" / "results" / "bench-x.md").read_text()
    assert body in page and "bench-x.md" in (root / "docs" / "results" / "index.md").read_text()
    assert DIST in body
    assert f"on `{cfg.name}`" in body and "Welch" in body and "bench.md" in body  # what ran
    assert sum(body.count(f"| {m} | {a} | 2 |") for m, a in summary) == 3

    # a cell missing from results.json is the only one that runs again
    data["runs"] = runs[1:]
    (out / "results.json").write_text(json.dumps(data))
    res3 = run_bench(cfg, dataclasses.replace(opts, resume=True))
    assert res3.ran == 1
    assert len(_child_runs(client, exp.experiment_id, parent)) == 7
    final = {r["run_id"] for r in json.loads((out / "results.json").read_text())["runs"]}
    assert {r["run_id"] for r in runs[1:]} <= final and runs[0]["run_id"] not in final


@pytest.mark.slow
def test_cli_unknown_method_exits_2_with_one_line(tmp_path: Path) -> None:
    cmd = [
        "bench",
        "--config",
        str(REPO / "configs" / "tiny.yaml"),
        "--set",
        f"workdir={tmp_path}",
        "--methods",
        "siss,bogus",
    ]
    proc = cli(*cmd, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "--methods" in lines[0] and "'bogus'" in lines[0] and "siss-gradient" in lines[0]


def test_resume_reruns_t2i_cells_and_base_evaluation_when_sampling_changes() -> None:
    """On t2i, images per prompt and guidance decide the rates: a resumed cell (and the base
    model's "before" numbers) must match the t2i section too; image models ignore it."""
    from unlearn.bench.matrix import cell_config, result_sections
    from unlearn.bench.runner import reusable_before

    def digest(cfg, agent: str = "static") -> str:
        c = cell_config(cfg, Cell("esd", agent, 2, 0), 0.3, BenchOptions(), "x")
        return c.digest(*result_sections(cfg))

    t2i = str(REPO / "configs" / "t2i_demo.yaml")
    base = load_config(t2i)
    for change in ("t2i.samples_per_prompt=20", "t2i.guidance=3.0"):
        other = load_config(t2i, [change])
        assert digest(other) != digest(base), change
        old = {"config": base.to_dict(), "before": {"2": {"concept_rate": 1.0}}}
        assert reusable_before(old, base) == old["before"]
        assert reusable_before(old, other) == {}, change
    assert digest(base, "dual") != digest(base)
    tiny = str(REPO / "configs" / "tiny.yaml")
    ddpm = load_config(tiny)
    assert "t2i" not in result_sections(ddpm)
    assert digest(load_config(tiny, ["t2i.samples_per_prompt=20"])) == digest(ddpm)


def test_report_says_which_rows_ran_and_which_static_lambdas_were_tuned() -> None:
    facts = {"runs": 12, "finished": 12, "diverged": 0, "errors": 0}
    plan = {
        "methods": ["naive", "esd", "constrained"],
        "agents": ["static", "decay", "dual"],
        "instances": [2, 8],
        "seeds": [0, 1, 2],
        "static_lam": 0.3,
        "static_source": "method.lam",
        "rows": [["naive", "static"], ["esd", "static"]],
        "tuning": {"esd|static": {}, "esd|decay": {}},
    }
    line = matrix_line(plan, facts)
    assert "2 (method, agent) rows x" in line and "3 methods" not in line
    assert "Static λ = 0.3 (method.lam), except the tuned static rows (esd: see" in line
    plain = matrix_line({**plan, "rows": None, "tuning": {}}, facts)
    assert "3 methods x 3 λ agents x" in plain
    assert plain.endswith("Static λ = 0.3 (method.lam).")


def test_mean_ci_and_welch_by_hand() -> None:
    xs = [1.0, 2.0, 4.0]
    s = mean_ci(xs)
    assert s.mean == pytest.approx(7 / 3)
    assert s.ci == pytest.approx(T975[2] * statistics.stdev(xs) / math.sqrt(3))
    assert mean_ci([5.0, 5.0]).ci == 0.0
    assert math.isnan(mean_ci([5.0]).ci) and mean_ci([]).n == 0
    assert mean_ci([1.0, math.nan, 3.0]).n == 2
    assert welch_p([0.0, 0.0], [0.0, 0.0]) == 1.0
    assert welch_p([0.0, 0.0], [1.0, 1.0]) == 0.0
    assert welch_p([1.0], [1.0, 2.0]) is None
    # Welch's t by hand: t = (ma - mb) / sqrt(va/na + vb/nb), Welch-Satterthwaite df
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 9.0]
    va, vb = statistics.variance(a) / 4, statistics.variance(b) / 4
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 3)
    from scipy import stats

    assert welch_p(a, b) == pytest.approx(2 * stats.t.sf(abs(t), df))


def _rec(method: str, agent: str, seed: int, status: str, fid: float, steps: int | None):
    return RunRecord(
        method,
        agent,
        2,
        seed,
        status,
        "d",
        forget_rate=0.1 * seed,
        fid=fid,
        coverage_kl=0.5,
        steps_to_forget=steps,
        wall_time=1.0 + seed,
    )


def test_summary_counts_diverged_and_errors_and_marks_distinguishable() -> None:
    recs = [
        _rec("siss", "static", 0, "finished", 10.0, 4),
        _rec("siss", "static", 1, "diverged", 11.0, None),
        _rec("siss", "static", 2, "finished", 12.0, 6),
        _rec("naive", "static", 0, "finished", 50.0, None),
        _rec("naive", "static", 1, "finished", 51.0, None),
        _rec("naive", "static", 2, "finished", 52.0, None),
        RunRecord.failed(Cell("naive", "static", 2, 3), "d", "x"),
    ]
    siss, naive = summarize(recs, [("siss", "static"), ("naive", "static")])
    assert (siss.runs, siss.diverged, siss.reached, siss.stats["fid"].n) == (3, 1, 2, 3)
    assert (naive.runs, naive.errors, naive.stats["fid"].n, naive.reached) == (4, 1, 3, 0)
    assert siss.best["fid"] and not naive.best["fid"] and naive.distinguishable["fid"] is True
    assert naive.distinguishable["steps_to_forget"] is None  # naive never reached it
    assert siss.best["coverage_kl"] and naive.best["coverage_kl"]  # a tie: both best
    _, rows = summary_rows([siss, naive], 0.01)
    assert rows[0][3] == "1" and rows[1][3] == "0 (+1 errors)"
    assert "FID" in rows[1][-1] and rows[1][7].startswith("not reached (0/4)")


def test_publish_path_and_perf_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--publish"):
        check_publish(tmp_path / "results.md")
    with pytest.raises(ConfigError, match="--publish"):
        check_publish(tmp_path / "missing" / "x.json")
    assert check_publish(tmp_path / "x.json") == tmp_path / "x.json"
    perf = run_perf(root=tmp_path)
    assert not perf.available and "benchmarks/" in perf.reason
