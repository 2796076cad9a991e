"""The bench's hand-set baselines, given fair parameters: ``static`` (λ, s) and ``decay`` (λ
linear from start to end, s), from the config or tuned with Optuna on the TRAIN classes.

``unlearn bench --tune-baselines N`` runs, per method of the bench, an Optuna TPE search of
N trials for each baseline. A trial unlearns every class of ``env.train_instances`` (never
the held-out ``env.test_instances`` the bench reports on) once at ``unlearn.seed`` and
scores the mean of ``forget_rate + tune.fid_weight · FID`` (the tuner's single-objective
score); the best trial's parameters then run on the held-out classes like every other agent.
Each search also covers the method's own knobs — the options it declares searchable
(``Opt.search``: ESD's and EraseDiff's η, VDU's γ, the f-divergence) — so a λ strategy is
compared against a baseline whose every knob was tuned the same way.
The first trial is the configured baseline (:func:`configured_trial`): a search of few trials
never ends worse on the train classes than the hand-set values.
Its compute is counted in optimiser steps (trials x train classes x ``unlearn.steps``) and
reported beside the table, as is the RL policy's training compute where its metadata has it.

Without tuning, ``decay`` takes ``bench.decay: {start, end[, scale]}`` from the config and
``static`` the bench's λ at ``method.scale``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from unlearn.config import AgentConfig, Config, ConfigError, MethodConfig, check_number_map
from unlearn.families import instance_forget
from unlearn.options import Opt

if TYPE_CHECKING:
    from unlearn.runtime import ProgressFn

log = logging.getLogger(__name__)

TUNED = ("static", "decay")
#: the per-instance oracle rows and the baseline each searches on the held-out instance itself
ORACLE = {"oracle-static": "static", "oracle-decay": "decay"}
#: the parameters of a tuned baseline that are the agent's, the scale or the step budget
#: (``bench.search_steps``); the rest are searched method options
AGENT_PARAMS = ("lam", "start", "end", "scale", "steps")
LAM_RANGE = (0.01, 0.99)
SCALE_RANGE = (0.0, 1.0)


def decay_agent(start: float, end: float) -> AgentConfig:
    """The ``decay`` variant's agent section: a linear schedule from start to end."""
    return AgentConfig("schedule", "", {"kind": "linear", "start": start, "end": end})


#: ``bench.decay``: λ from start to end, optionally the cells' forget scale
DECAY_SPEC = {"start": (0.0, 1.0, False), "end": (0.0, 1.0, False), "scale": (0.0, 1000.0, False)}


def decay_from_config(cfg: Config) -> dict[str, float]:
    """``bench.decay`` checked: start and end in [0, 1], scale >= 0 (optional)."""
    hint = (
        "the decay baseline needs bench.decay: {start: λ, end: λ} (numbers in [0, 1]) or "
        "--tune-baselines N"
    )
    return check_number_map(
        dict(cfg.bench.decay or {}), "bench.decay", DECAY_SPEC, ("start", "end"), hint
    )


@dataclass(frozen=True)
class Tuned:
    """One tuned baseline: its best parameters and the compute the search used."""

    method: str
    agent: str
    params: dict[str, Any]
    score: float
    trials: int
    optimiser_steps: int
    wall_s: float
    train_instances: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def searched_options(method) -> dict[str, Opt]:
    """The options of a built method that a baseline search covers (``Opt.search`` set)."""
    return {k: o for k, o in type(method).OPTIONS.items() if o.search is not None}


def _suggest(
    trial, agent: str, scaled: bool, knobs: dict[str, Opt], steps: dict[str, int]
) -> dict[str, Any]:
    p = _suggest_agent(trial, agent, scaled)
    p.update({k: o.suggest(trial, k) for k, o in knobs.items()})
    if steps:
        p["steps"] = trial.suggest_int("steps", steps["min"], steps["max"], log=True)
    return p


def _suggest_agent(trial, agent: str, scaled: bool) -> dict[str, float]:
    if agent == "static":
        p = {"lam": trial.suggest_float("lam", *LAM_RANGE)}
    else:
        p = {
            "start": trial.suggest_float("start", 0.0, 1.0),
            "end": trial.suggest_float("end", 0.0, 1.0),
        }
    if scaled:
        p["scale"] = trial.suggest_float("scale", *SCALE_RANGE)
    return p


def configured_trial(
    cfg: Config,
    agent: str,
    scaled: bool,
    knobs: dict[str, Any] | None = None,
    steps: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The search's first trial: the baseline as configured (static: ``method.lam`` and
    ``method.scale``; decay: ``bench.decay`` when set; ``knobs``: the searched options'
    configured values, kept inside their search range), so the winner scores at least as well
    on the train classes as the hand-set baseline, however few trials follow; {} when the
    config has no decay."""
    p = _configured_agent(cfg, agent, scaled)
    if p:
        p.update(knobs or {})
        if steps:
            p["steps"] = min(max(cfg.unlearn.steps, steps["min"]), steps["max"])
    return p


def _configured_agent(cfg: Config, agent: str, scaled: bool) -> dict[str, float]:
    if agent == "static":
        p = {"lam": min(max(cfg.method.lam, LAM_RANGE[0]), LAM_RANGE[1])}
    elif cfg.bench.decay:
        d = decay_from_config(cfg)
        p = {"start": d["start"], "end": d["end"]}
        if "scale" in d:
            p["scale"] = d["scale"]
    else:
        return {}
    if scaled:
        p.setdefault("scale", min(max(cfg.method.scale, SCALE_RANGE[0]), SCALE_RANGE[1]))
    return p


def _in_range(opt: Opt, value: Any) -> Any:
    """A configured option value as a search's first trial can hold it (clipped to the range)."""
    if opt.kind is str:
        return value if value in opt.search else opt.search[0]
    lo, hi = opt.search
    return min(max(value, lo), hi)


class _TrainRuns:
    """One built unlearner per train class, built once per method and reused by every trial
    of both baselines (a trial swaps agent and scale); the data is loaded once and re-split
    per class (:func:`~unlearn.task.retarget`)."""

    def __init__(self, cfg: Config):
        from unlearn.task import ForgetTask, make_unlearner, retarget

        self.cfg = cfg
        self.units = {}
        setup = None
        for c in cfg.env.train_instances:
            c_cfg = dataclasses.replace(
                cfg,
                forget=dataclasses.replace(instance_forget(cfg, c), indices=()),
            )
            task = None  # the first class loads the data; the others re-split it
            if setup is not None and isinstance(setup.task, ForgetTask):
                task = retarget(setup.task, c_cfg, setup.unlearner.model)
            setup = make_unlearner(c_cfg, task=task)
            self.units[c] = setup.unlearner
        self.scaled = all(hasattr(u.method, "scale") for u in self.units.values())

        first = next(iter(self.units.values())).method
        #: the step budgets searched (none for a closed-form method: its budget is one step)
        self.steps = {} if first.closed_form else dict(cfg.bench.search_steps)
        #: the method's searched options and their configured values
        self.knobs = searched_options(first)
        self.configured = {k: _in_range(o, first.options[k]) for k, o in self.knobs.items()}

    def score(
        self,
        agent_cfg: AgentConfig,
        scale: float | None,
        options: dict[str, Any] | None = None,
        steps: int | None = None,
    ) -> float:
        from unlearn.agents import get_agent
        from unlearn.tuners.trainable import score

        scores = []
        for unl in self.units.values():
            if steps is not None:
                unl.budget = int(steps)  # before the agent binds: a schedule spans the budget
            unl.agent = get_agent(agent_cfg, default_lam=self.cfg.method.lam)
            unl.agent.bind(unl)
            if scale is not None:
                unl.method.scale = float(scale)
            unl.method.options.update(options or {})
            unl.reset(self.cfg.unlearn.seed)
            unl.run()
            after, _ = unl.evaluate()
            s = score(after.forget_rate, after.fid, self.cfg.tune.fid_weight)
            scores.append(s if math.isfinite(s) else math.inf)
        return sum(scores) / len(scores)


def tune_baselines(
    cfg: Config,
    methods: list[str],
    agents: list[str],
    trials: int,
    method_config: Callable[[Config, str], MethodConfig],
    progress: ProgressFn | None = None,
    pairs: list[tuple[str, str]] | None = None,
) -> dict[str, Tuned]:
    """Optuna search per (method, baseline); keys ``"<method>|<agent>"``.

    ``method_config(cfg, variant)`` gives a method variant's ``method`` section; ``pairs``
    (the bench's ``--rows``) limits the searches to those (method, agent) pairs.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not cfg.env.train_instances:
        raise ConfigError("env.train_instances: empty; --tune-baselines tunes on train classes")
    out: dict[str, Tuned] = {}
    todo = [(m, a) for m in methods for a in agents if a in TUNED]
    if pairs is not None:
        todo = [t for t in todo if t in pairs]
    # per method: static and decay share the unlearners (the first search's wall_s holds the build)
    built: dict[str, _TrainRuns] = {}
    for i, (m, a) in enumerate(todo):
        m_cfg = dataclasses.replace(cfg, method=method_config(cfg, m))
        t0 = time.perf_counter()
        if m not in built:
            built[m] = _TrainRuns(m_cfg)
        runs = built[m]
        sampler = optuna.samplers.TPESampler(seed=cfg.tune.seed)
        study = optuna.create_study(direction="minimize", sampler=sampler)

        def objective(trial, a=a, runs=runs) -> float:
            p = _suggest(trial, a, runs.scaled, runs.knobs, runs.steps)
            agent = (
                AgentConfig("static", "", {"lam": p["lam"]})
                if a == "static"
                else decay_agent(p["start"], p["end"])
            )
            return runs.score(agent, p.get("scale"), {k: p[k] for k in runs.knobs}, p.get("steps"))

        first = configured_trial(m_cfg, a, runs.scaled, runs.configured, runs.steps)
        if first:
            study.enqueue_trial(first)
        for k in range(trials):
            if progress is not None:
                progress(f"tune {m} + {a}", i * trials + k, len(todo) * trials)
            study.optimize(objective, n_trials=1)
        best = study.best_trial
        steps = len(runs.units) * sum(
            t.params.get("steps", cfg.unlearn.steps) for t in study.trials
        )
        out[f"{m}|{a}"] = Tuned(
            m,
            a,
            dict(best.params),
            float(best.value),
            trials,
            steps,
            time.perf_counter() - t0,
            tuple(runs.units),
        )
        log.info("tuned %s + %s: %s (score %.4g)", m, a, best.params, best.value)
    return out


def policy_training_steps(meta: dict[str, Any]) -> int | None:
    """Optimiser steps an exported policy trained with, when its metadata records them."""
    env_steps = (meta.get("training") or {}).get("env_steps")
    k = meta.get("steps_per_decision")
    if isinstance(env_steps, (int, float)) and isinstance(k, int):
        return int(env_steps) * k
    return None


def params_text(params: dict[str, Any]) -> str:
    """A tuned baseline's parameters in one line (numbers to 3 digits, choices as named)."""
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in params.items()
    )


def train_text(instances) -> str:
    """``2 train classes [3, 5]``, or ``5 train instances [1, 3, thick, ...]`` with names."""
    kind = "classes" if all(isinstance(c, int) for c in instances) else "instances"
    return f"{len(instances)} train {kind} [{', '.join(map(str, instances))}]"


def searched_on(t: dict[str, Any]) -> str:
    """Where a search recorded in ``Plan.tuning`` ran: the train instances, or for an oracle
    row the held-out instance itself."""
    if t["agent"] in ORACLE:
        return f"held-out instance {t['train_instances'][0]} itself"
    return train_text(t["train_instances"])


def compute_markdown(tuned: dict[str, dict], policy_steps: int | None, has_policy: bool) -> str:
    """The report's "Compute of each row" section (empty when nothing was tuned)."""
    if not tuned and not has_policy:
        return ""
    lines = [
        "## Compute of each row",
        "",
        "| row | parameters | tuning / training compute (optimiser steps) |",
        "|---|---|---|",
    ]
    for t in tuned.values():
        params = params_text(t["params"])
        if t["agent"] in ORACLE:
            row = f"{t['method']} + {t['agent']} on {t['train_instances'][0]}"
            how = f"{t['trials']} trials on {searched_on(t)}, before its runs"
        else:
            row = f"{t['method']} + {t['agent']} (tuned)"
            how = f"{t['trials']} trials x {searched_on(t)}"
        lines.append(f"| {row} | {params} | {t['optimiser_steps']:,} ({how}) |")
    if has_policy:
        shown = f"{policy_steps:,}" if policy_steps is not None else "not in the policy metadata"
        lines.append(f"| policy (RL training) | exported policy | {shown} |")
    lines.append("\nEvery other row had no search: its compute is the bench run itself.")
    return "\n".join(lines) + "\n"
