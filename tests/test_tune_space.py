"""Search spaces and sweep options: parsing, validation before Ray, conditional sampling."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from unlearn.config import ConfigError, load_config
from unlearn.tuners import (
    SweepOptions,
    TrialResult,
    check_options,
    load_space,
    pareto_front,
    parse_space,
    schedule_points,
    trial_config,
    validate_space,
)
from unlearn.tuners.searchers import OptunaSpace
from unlearn.tuners.space import trial_values

REPO = Path(__file__).resolve().parents[1]
SPACES = sorted((REPO / "configs" / "tune").glob("*.yaml"))


def space(params: dict, fixed: dict | None = None):
    return parse_space({"params": params, "fixed": fixed or {}}, name="t")


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_shipped_spaces_validate(path):
    model = "cond_ddpm" if path.stem == "fdiv" else "ddpm"  # f-divergences need labels
    cfg = load_config(None, [f"model.kind={model}"])
    if path.stem.startswith("t2i_"):  # text-to-image methods: the t2i demo config
        cfg = load_config(REPO / "configs" / "t2i_demo.yaml")
    if path.stem.startswith("i2i_"):  # image-to-image methods: the i2i demo config
        cfg = load_config(REPO / "configs" / "i2i_demo.yaml")
    s = load_space(path)
    validate_space(s, cfg)
    assert s.params and s.description


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"method.lamda": {"float": [0.1, 0.9]}}, "method.lamda: unknown key"),
        ({"lam": {"float": [0.1, 0.9]}}, "lam: unknown key"),
        ({"method.lam": {"float": [0.1, 2.0]}}, "method.lam: 2.0 is out of range"),
        ({"agent.name": {"choice": ["static", "oracle"]}}, "unknown agent 'oracle'"),
        ({"agent.options.beta": {"float": [0.1, 0.2]}}, "agent.options.beta: unknown option"),
        ({"method.name": {"choice": ["siss", "fdiv"]}}, "'fdiv' needs a class-conditional model"),
        ({"method.options.gamma": {"float": [0.1, 1.0]}}, "method.options.gamma: unknown option"),
        ({"method.lam": {"float": [0.5, 0.5]}}, "empty range [0.5, 0.5]"),
        ({"method.lam": {"float": [0.9, 0.1]}}, "empty range"),
        ({"agent.name": {"choice": []}}, "empty choice"),
        ({"unlearn.lr": {"float": [0.0, 0.1], "log": True}}, "log range needs low > 0"),
        ({"method.lam": {"uniform": [0, 1]}}, "give exactly one of"),
        ({"unlearn.steps": {"int": [1.5, 4]}}, "not an integer"),
        (
            {
                "agent.options.beta": {"float": [0.1, 0.2], "when": {"agent.name": "variational"}},
                "agent.name": {"choice": ["static", "variational"]},
            },
            "neither an earlier parameter nor a fixed value",
        ),
        (
            {
                "agent.name": {"choice": ["static", "variational"]},
                "agent.options.beta": {"float": [0.1, 0.2], "when": {"agent.name": "dual"}},
            },
            "when agent.name = 'dual'",
        ),
    ],
)
def test_bad_spaces_fail_before_ray(params, fragment):
    cfg = load_config(None, [])
    with pytest.raises(ConfigError) as e:
        validate_space(space(params), cfg)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_unconditional_agent_option_is_caught():
    """An option of one agent searched for every agent: the static agent refuses it."""
    s = space(
        {
            "agent.name": {"choice": ["static", "variational"]},
            "agent.options.beta": {"float": [1e-3, 1e-1]},
        }
    )
    with pytest.raises(
        ConfigError, match=r"agent.options.beta = 0.001: agent.options.beta: unknown"
    ):
        validate_space(s, load_config(None, []))


def test_conditional_sampling_and_trial_configs():
    import optuna

    s = load_space(REPO / "configs/tune/static_vs_variational.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    fn = OptunaSpace(s)
    cfg = load_config(None, [])
    seen = set()
    for _ in range(40):
        trial = study.ask()
        fn(trial)
        params = trial.params
        study.tell(trial, 0.0)
        agent = params["agent.name"]
        seen.add(agent)
        assert 0.1 <= params["method.lam"] <= 0.9
        opts = {k for k in params if k.startswith("agent.options.")}
        if agent == "static":
            assert not opts
        else:
            assert "agent.options.beta" in opts
            post = params["agent.options.posterior"]
            assert ("agent.options.prior_a" in opts) == (post == "beta")
            assert ("agent.options.prior_mu" in opts) == (post == "logitnormal")
        c = trial_config(cfg, s, params)
        assert c.agent.name == agent and c.method.name == "siss"
        assert c.method.lam == params["method.lam"]
    assert seen == {"static", "variational"}


def test_inactive_values_are_dropped():
    s = space(
        {
            "agent.name": {"choice": ["static", "variational"]},
            "agent.options.beta": {"float": [1e-3, 1e-1], "when": {"agent.name": "variational"}},
        },
        fixed={"method.name": "siss"},
    )
    v = trial_values(s, {"agent.name": "static", "agent.options.beta": 0.01})
    assert v == {"method.name": "siss", "agent.name": "static"}


@pytest.mark.parametrize(
    "kw, fragment",
    [
        (
            {"search": "optuna", "scheduler": "pbt"},
            "PBT cannot share a run with a search algorithm",
        ),
        (
            {"search": "random", "scheduler": "pb2"},
            "PBT cannot share a run with a search algorithm",
        ),
        ({"search": "pbt", "scheduler": "asha"}, "is itself the scheduler"),
        ({"search": "pbt", "points_to_evaluate": [{"method.lam": 0.5}]}, "PBT cannot share"),
        ({"search": "grid"}, "--search: 'grid' is not allowed"),
        ({"objective": "pareto"}, "--objective"),
        ({"num_samples": 0}, "--num-samples: 0 is out of range"),
    ],
)
def test_bad_option_combinations(kw, fragment):
    s = load_space(REPO / "configs/tune/pbt_lambda.yaml")
    with pytest.raises(ConfigError, match=fragment):
        check_options(SweepOptions(**kw), s)


def test_population_search_needs_plain_numeric_spaces():
    cond = load_space(REPO / "configs/tune/static_vs_variational.yaml")
    with pytest.raises(ConfigError, match="conditional parameters need a searcher"):
        check_options(SweepOptions(search="pbt"), cond)
    cat = space({"method.name": {"choice": ["siss", "naive"]}})
    with pytest.raises(ConfigError, match="PB2 needs numeric ranges"):
        check_options(SweepOptions(search="pb2"), cat)
    check_options(SweepOptions(search="pbt"), cat)


def test_schedule_points_replay_every_step_exactly():
    from unlearn.agents import ScheduleAgent
    from unlearn.types import StepStats

    rng = random.Random(0)
    for budget in (1, 5, 17):
        lams, lam = [], rng.random()
        for _ in range(budget):
            if rng.random() < 0.3:
                lam = round(rng.random(), 3)
            lams.append(lam)
        agent = ScheduleAgent(kind="piecewise", points=schedule_points(lams, budget))
        got = [agent.reset(0)]
        for t in range(1, budget):
            got.append(
                agent.act(
                    StepStats(
                        step=t,
                        budget=budget,
                        lam=got[-1],
                        retain_loss=0.0,
                        forget_loss=0.0,
                        total_loss=0.0,
                    )
                )
            )
        assert got == lams


def test_pareto_front():
    def t(i, fr, fid):
        return TrialResult(str(i), {}, "finished", forget_rate=fr, fid=fid)

    trials = [
        t(0, 0.1, 5.0),
        t(1, 0.2, 3.0),
        t(2, 0.2, 4.0),
        t(3, 0.05, 9.0),
        t(4, 0.3, 3.0),
        TrialResult("5", {}, "early_stopped"),
    ]
    assert [x.trial_id for x in pareto_front(trials)] == ["3", "0", "1"]


def test_space_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"--space: file .* does not exist"):
        load_space(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"--space: .* is a directory, not a YAML file"):
        load_space(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("params: {a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"--space: .*bad.yaml is not valid YAML at line 2"):
        load_space(bad)


@pytest.mark.slow
def test_importing_the_tuners_loads_no_ray_optuna_mlflow_or_diffusers():
    """``unlearn tune`` imports the package before it reads its inputs: bad ones fail fast."""
    heavy = ("ray", "optuna", "mlflow", "diffusers")
    code = f"import sys, unlearn.tuners; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
