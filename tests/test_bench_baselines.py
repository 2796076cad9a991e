"""The bench's baselines: ``decay`` from the config, ``--tune-baselines N`` on the train
classes (winners run held out, compute reported), and the one-line errors — through the real
``unlearn`` command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from helpers import REPO, cli, cli_here

from unlearn.bench import BenchOptions
from unlearn.bench.matrix import Cell, cell_config, plan
from unlearn.config import load_config

TINY = str(REPO / "configs" / "tiny.yaml")


@pytest.mark.slow
def test_tune_baselines_searches_train_classes_and_runs_the_winners_held_out(
    tiny_workdir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    proc = cli(
        "bench",
        "--config",
        TINY,
        "--set",
        f"workdir={tiny_workdir}",
        "--set",
        "tracking.enabled=false",
        "--set",
        "env.train_instances=[1,5]",
        "--set",
        "env.test_instances=[2]",
        "--set",
        "unlearn.steps=3",
        "--set",
        "bench.search_steps={min: 2, max: 5}",
        "--methods",
        "siss",
        "--agents",
        "static,decay,oracle-static,dual",
        "--seeds",
        "1",
        "--tune-baselines",
        "2",
        "--oracle",
        "2",
        "--out",
        str(out),
        "--json",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    tuning = res["plan"]["tuning"]
    assert set(tuning) == {"siss|static", "siss|decay", "siss|oracle-static|2"}
    # the oracle: the same search on the held-out class itself, its compute counted
    oracle = tuning.pop("siss|oracle-static|2")
    assert oracle["train_instances"] == [2]
    # the step budget is searched too (bench.search_steps), the configured 3 first; the
    # compute counts each trial's own steps
    assert 2 <= oracle["params"]["steps"] <= 5 and oracle["optimiser_steps"] >= 3 + 2
    for t in tuning.values():
        assert t["train_instances"] == [1, 5] and t["trials"] == 2
        assert 2 * (3 + 2) <= t["optimiser_steps"] <= 2 * (3 + 5)  # train classes x steps
    assert set(tuning["siss|static"]["params"]) == {"lam", "scale", "steps"}
    assert set(tuning["siss|decay"]["params"]) == {"start", "end", "scale", "steps"}
    runs = {r["agent"]: r for r in res["runs"]}
    assert {r["instance"] for r in res["runs"]} == {2}  # only the held-out class is reported
    p = tuning["siss|static"]["params"]
    assert runs["static"]["lambdas"] == pytest.approx([p["lam"]] * p["steps"])
    p = tuning["siss|decay"]["params"]
    lams, n = runs["decay"]["lambdas"], p["steps"]
    assert lams[0] == pytest.approx(p["start"])  # linear start -> end over the winner's budget
    assert lams == pytest.approx([p["start"] + (p["end"] - p["start"]) * i / n for i in range(n)])
    p = oracle["params"]
    assert runs["oracle-static"]["lambdas"] == pytest.approx([p["lam"]] * p["steps"])
    md = (out / "bench.md").read_text()
    assert "## Compute of each row" in md and "| siss + decay (tuned) |" in md
    assert "| siss + oracle-static on 2 |" in md and "held-out instance 2 itself" in md
    # with the oracle beside them, every other row's share of its advantage is reported
    (entry,) = json.loads((out / "results.json").read_text())["recovery"]
    assert (entry["row"], entry["global"], entry["oracle"]) == ("dual", "static", "oracle-static")
    assert entry["pairs"] == 1 and [c["instance"] for c in entry["instances"]] == [2]
    assert "## Oracle advantage recovered" in md and "### siss: dual vs static (tuned)" in md


@pytest.mark.slow
def test_one_trial_search_keeps_the_configured_baselines_and_checks_can_be_off(
    tiny_workdir: Path, tmp_path: Path
) -> None:
    """The search's first trial is the configured baseline (a 1-trial search returns it),
    the method's own searched knobs included (EraseDiff's η); ``bench.check_every=0``
    leaves only the base and final forget rates in a run's checks while the agents still
    see proxies every ``unlearn.eval_every`` steps."""
    proc = cli(
        "bench",
        "--config",
        TINY,
        *("--set", f"workdir={tiny_workdir}", "--set", "tracking.enabled=false"),
        *("--set", "env.train_instances=[1]", "--set", "env.test_instances=[2]"),
        *("--set", "unlearn.steps=3", "--set", "unlearn.eval_every=1"),
        *("--set", "bench.check_every=0", "--set", "method.lam=0.4", "--set", "method.scale=0.2"),
        *("--set", "bench.decay={start: 0.7, end: 0.1, scale: 0.3}"),
        *("--set", "method.options={erasediff: {eta: 0.7}}"),
        *("--methods", "siss,erasediff", "--agents", "static,decay", "--seeds", "1"),
        *("--tune-baselines", "1", "--out", str(tmp_path / "report"), "--json"),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    tuning = res["plan"]["tuning"]
    assert tuning["siss|static"]["params"] == pytest.approx({"lam": 0.4, "scale": 0.2})
    assert tuning["siss|decay"]["params"] == pytest.approx({"start": 0.7, "end": 0.1, "scale": 0.3})
    assert tuning["erasediff|static"]["params"] == pytest.approx({"lam": 0.4, "eta": 0.7})
    md = (tmp_path / "report" / "bench.md").read_text()
    assert "| erasediff + static (tuned) | lam=0.4, eta=0.7 |" in md
    for r in res["runs"]:
        assert [c[0] for c in r["checks"]] == [0, 3]


def test_decay_from_the_config_and_its_scale_reach_the_cell(tiny_workdir: Path) -> None:
    cfg = load_config(
        TINY,
        [
            f"workdir={tiny_workdir}",
            "tracking.enabled=false",
            "bench.decay={start: 0.6, end: 0.1, scale: 0.3}",
        ],
    )
    opts = BenchOptions(methods=("siss",), agents=("decay",), seeds=1)
    pl = plan(cfg, opts)
    assert pl.baselines == {"siss|decay": {"start": 0.6, "end": 0.1, "scale": 0.3}}
    c = cell_config(cfg, Cell("siss", "decay", 2, 0), pl.static_lam, opts, "x", pl.baselines)
    assert c.agent.name == "schedule" and c.method.scale == 0.3
    assert c.agent.options == {"kind": "linear", "start": 0.6, "end": 0.1}


def test_variational_objective_variants_and_one_row_for_a_lambda_free_method(
    tiny_workdir: Path,
) -> None:
    """``variational-<objective>`` sets agent.options.objective; naive deletion ignores λ, so
    it runs under the first agent only (one row, not one per agent)."""
    cfg = load_config(TINY, [f"workdir={tiny_workdir}", "tracking.enabled=false"])
    agents = ("static", "variational", "variational-variance", "variational-utility")
    opts = BenchOptions(methods=("siss", "naive"), agents=agents, seeds=1)
    pl = plan(cfg, opts)
    assert pl.lam_free == ["naive"]
    assert pl.groups() == [*(("siss", a) for a in agents), ("naive", "static")]
    assert len(pl.cells()) == len(pl.groups()) * len(pl.instances)
    for agent, objective in (
        ("variational", None),
        ("variational-variance", "variance"),
        ("variational-utility", "utility"),
    ):
        c = cell_config(cfg, Cell("siss", agent, 2, 0), pl.static_lam, opts, "x")
        assert c.agent.name == "variational"
        assert c.agent.options.get("objective") == objective


def test_rows_run_each_method_under_its_own_agents_only(tiny_workdir: Path) -> None:
    """``--rows``: the table's rows are the given (method, agent) pairs, not methods x
    agents; a λ-free method keeps its own row's agent and bench.decay adds no decay row."""
    from unlearn.bench import parse_rows

    sets = [f"workdir={tiny_workdir}", "tracking.enabled=false"]
    cfg = load_config(TINY, [*sets, "bench.decay={start: 0.6, end: 0.1}"])
    rows = parse_rows("siss:static, naive:dual,siss:dual,constrained:dual")
    assert rows == (
        ("siss", "static"),
        ("naive", "dual"),
        ("siss", "dual"),
        ("constrained", "dual"),
    )
    pl = plan(cfg, BenchOptions(rows=rows, seeds=2))
    want = [("siss", "static"), ("siss", "dual"), ("naive", "dual"), ("constrained", "dual")]
    assert pl.groups() == want
    assert pl.agents == ["static", "dual"] and pl.baselines == {}
    assert len(pl.cells()) == len(want) * len(pl.instances) * 2
    assert {(c.method, c.agent) for c in pl.cells()} == set(want)
    json.dumps(pl.to_dict())  # results.json holds the plan


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["bench", "--tune-baselines", "0"], "--tune-baselines: 0 is out of range"),
        (["bench", "--agents", "decay"], "bench.decay.start: missing"),
        (
            ["bench", "--agents", "decay", "--set", "bench.decay={start: 1.5, end: 0.1}"],
            "bench.decay.start: 1.5 is out of range; expected [0.0, 1.0]",
        ),
        (
            ["bench", "--agents", "decay", "--set", "bench.decay={start: 0.5, end: -0.1}"],
            "bench.decay.end: -0.1 is out of range",
        ),
        (
            ["run", "--set", "agent.name=variational", "--set", "agent.options={objective: nope}"],
            "agent.options.objective: 'nope'",
        ),
        (["bench", "--agents", "variational-nope"], "--agents: unknown name 'variational-nope'"),
        (["run", "--set", "env.forget_probe=-1"], "env.forget_probe"),
        (["bench", "--set", "bench.check_every=-2"], "bench.check_every"),
        (
            ["bench", "--set", "bench.search_steps={min: 50, max: 20}"],
            "bench.search_steps: min 50 is above max 20",
        ),
        (
            ["bench", "--set", "bench.search_steps={min: 2.5, max: 20}"],
            "bench.search_steps.min: 2.5 is not a whole number of steps",
        ),
        (["bench", "--set", "bench.search_steps={max: 20}"], "bench.search_steps.min: missing"),
        (["bench", "--rows", "siss"], "--rows: 'siss' is not METHOD:AGENT"),
        (["bench", "--rows", "siss:nope"], "--rows: unknown agent 'nope' in siss:nope"),
        (["bench", "--rows", "sis:static"], "--rows: unknown method 'sis' in sis:static"),
        (["bench", "--rows", "siss:static", "--methods", "siss"], "--rows: give either"),
        (["bench", "--rows", "siss:swept"], "--rows: swept needs --swept-from SWEEP"),
        (["bench", "--rows", "siss:oracle-static"], "--rows: oracle-static needs --oracle N"),
        (["bench", "--rows", "siss:static", "--oracle", "2"], "--oracle: no oracle row"),
        (["bench", "--rows", "siss:oracle-decay", "--oracle", "0"], "--oracle: 0 is out of range"),
        (
            ["bench", "--rows", "siss:static", "--swept-from", "."],
            "--swept-from: no swept row to run it",
        ),
        (
            ["bench", "--rows", "siss:swept", "--swept-from", "."],
            "has no unlearn_sweep.json",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(args, fragment, tmp_path: Path) -> None:
    proc = cli_here(args[0], "--config", TINY, "--set", f"workdir={tmp_path}", *args[1:])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


def test_searched_options_of_a_tuned_baseline_reach_the_cells_method(tiny_workdir: Path) -> None:
    from unlearn.bench.baselines import searched_options
    from unlearn.methods import get_method

    cfg = load_config(TINY, [f"workdir={tiny_workdir}", "tracking.enabled=false"])
    opts = BenchOptions(methods=("erasediff",), agents=("static",), seeds=1)
    base = {"erasediff|static": {"lam": 0.3, "eta": 1.8}}
    c = cell_config(cfg, Cell("erasediff", "static", 2, 0), 0.5, opts, "x", base)
    assert c.agent.options == {"lam": 0.3}
    method = get_method(c.method)
    assert method.options["eta"] == 1.8
    assert set(searched_options(method)) == {"eta"}
    # string options search their choices; an option without a range is never searched
    fdiv = get_method(dataclasses.replace(c.method, name="fdiv", options={}))
    assert searched_options(fdiv)["divergence"].search == ("kl", "hellinger", "chi2", "amari")
    assert "anchor" not in searched_options(fdiv)


def test_tuned_parameters_print_numbers_and_choices() -> None:
    from unlearn.bench.baselines import params_text

    assert params_text({"lam": 0.78589, "divergence": "chi2"}) == "lam=0.786, divergence=chi2"


def test_a_record_older_than_a_config_field_still_matches_its_config(tmp_path: Path) -> None:
    """A results.json written before a config field existed resumes (its searches and base
    evaluations reused): the field reads as its default, not as a change."""
    from unlearn.bench.runner import recorded_config

    cfg = load_config(TINY, [f"workdir={tmp_path}"])
    old = cfg.to_dict()
    del old["env"]["instances"], old["guard"]
    assert recorded_config({"config": old}) == cfg.to_dict()
    changed = load_config(TINY, [f"workdir={tmp_path}", "method.lam=0.25"]).to_dict()
    assert recorded_config({"config": changed}) != cfg.to_dict()
