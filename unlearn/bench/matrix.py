"""The bench matrix: which methods and λ agents run, on which held-out instances and seeds.

A *method variant* is a method plus the settings that make it one row of the comparison
(``siss-gradient`` = SISS with ``method.form=gradient``); an *agent variant* is an agent with
the options the bench gives it (``static`` at the chosen λ, ``schedule`` cosine or a replayed
PBT schedule, ``hybrid`` over a static λ or the exported policy). Instances are the env's
held-out classes (``env.test_instances``), which no search or RL agent trained on.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearn.bench.baselines import AGENT_PARAMS, ORACLE, decay_agent, decay_from_config
from unlearn.config import AgentConfig, Config, ConfigError, MethodConfig, read_yaml
from unlearn.families import check_named_instances, family_of, instance_forget, instance_label

#: method variant -> (method.name, method.form); other method fields keep the config's values
METHOD_VARIANTS: dict[str, tuple[str, str]] = {
    "siss": ("siss", "loss"),
    "siss-gradient": ("siss", "gradient"),
    "siss_nois": ("siss_nois", "loss"),
    "naive": ("naive", "loss"),
    "neggrad": ("neggrad", "loss"),
    "erasediff": ("erasediff", "loss"),
    "vdu": ("vdu", "loss"),
    "constrained": ("constrained", "loss"),
    "fdiv": ("fdiv", "loss"),
    "encoder": ("encoder", "loss"),
    "esd": ("esd", "loss"),
    "uce": ("uce", "loss"),
    "i2i_encoder": ("i2i_encoder", "loss"),
    "i2i_max_loss": ("i2i_max_loss", "loss"),
    "i2i_noisy_label": ("i2i_noisy_label", "loss"),
    "i2i_retain_label": ("i2i_retain_label", "loss"),
    "i2i_random_encoder": ("i2i_random_encoder", "loss"),
}
#: ``variational-<objective>``: the variational agent with ``agent.options.objective`` (the
#: plain ``variational`` keeps the agent's default objective, ``siss``)
VARIATIONAL_OBJECTIVES = {"variational-variance": "variance", "variational-utility": "utility"}
AGENT_VARIANTS = (
    "static",
    "schedule",
    "decay",
    "variational",
    *VARIATIONAL_OBJECTIVES,
    "dual",
    "policy",
    "hybrid",
    "swept",
    "oracle-static",
    "oracle-decay",
)
#: sections a swept row may not take from its sweep: they decide how every row is measured
MEASURED_SECTIONS = ("data", "forget", "eval", "pretrain", "t2i", "i2i", "env", "bench", "audit")


@dataclass(frozen=True)
class Preset:
    """Default methods, agents and seeds of a preset (``--methods`` / ``--agents`` override)."""

    methods: tuple[str, ...]
    agents: tuple[str, ...]
    seeds: int


_CPU_METHODS = ("siss", "siss-gradient", "naive", "neggrad", "erasediff", "vdu", "constrained")
#: the instance of a memorisation config (``forget.outlier.copies`` > 0, no classes): the
#: outlier itself, forgotten as the config says instead of a held-out class
OUTLIER = -1

PRESETS: dict[str, Preset] = {
    # fdiv joins both presets and is skipped, with the reason, on unconditional models; esd
    # likewise everywhere but on t2i (where erasediff is skipped)
    "cpu": Preset((*_CPU_METHODS, "fdiv", "esd"), ("static", "schedule", "variational", "dual"), 3),
    # decay joins a preset when bench.decay is set or --tune-baselines tunes it
    # the variational objectives beside siss need method siss: named with --agents
    "full": Preset(
        tuple(METHOD_VARIANTS),
        tuple(a for a in AGENT_VARIANTS if a != "decay" and a not in VARIATIONAL_OBJECTIVES),
        5,
    ),
}


@dataclass(frozen=True)
class BenchOptions:
    """What ``unlearn bench`` runs and where it writes.

    Args:
        preset: ``cpu`` (7 methods + fdiv when possible x 4 agents, + policy and hybrid when
            a policy is given, 3 seeds) or ``full`` (every method x every agent, 5 seeds).
        methods: method variants instead of the preset's.
        agents: agent variants instead of the preset's.
        rows: (method, agent) rows instead of methods x agents (``--rows esd:static,
            constrained:dual``): each method runs under its own agents only; not together
            with ``methods`` / ``agents``.
        seeds: seeds per instance (default: the preset's); seeds are ``unlearn.seed + i``.
        static_lam: λ of the static agent (and of the hybrid's coarse static agent).
        static_from: a sweep's ``best_config.yaml`` (or its sweep / report folder) whose λ
            the static agent uses; neither given: ``method.lam``.
        schedule_from: a PBT ``schedule.json`` replayed by the schedule agent (default cosine).
        policy: exported RL policy directory; adds the policy agent and makes it the hybrid's
            coarse agent.
        oracle: Optuna trials of the per-instance oracle (rows ``METHOD:oracle-static`` /
            ``oracle-decay``): the ``--tune-baselines`` search run on each held-out instance
            itself, whose winner then runs on that instance; its compute is counted per instance.
        swept_from: an ``unlearn tune`` sweep folder whose best trial the ``swept`` rows run
            with every parameter the sweep searched or fixed (λ, η, steps, ...) as found.
        out: report folder (default ``WORKDIR/reports/bench-<preset>``).
        resume: skip cells already finished in ``out/results.json`` (same cell config).
        perf: add a Performance section measured by the repository's ``benchmarks/``.
        publish: ``benchmarks/results/NAME.json``: the results and their summary section are
            written there and the docs' results pages regenerated (:mod:`unlearn.bench.pages`).
        threshold: the forget rate counted as "forgotten" by the steps-to-forget metric.
        tune_baselines: Optuna trials per (method, static / decay) on the train classes
            (:mod:`unlearn.bench.baselines`); None = static at the bench's λ, decay from
            ``bench.decay``.
        audit: attack every unlearned model (:mod:`unlearn.audit.attacked`: the attacked
            forget rate, the forget rate after benign fine-tuning, the MIA AUC) and add them
            as columns; the attack budgets are the config's ``audit`` section.
    """

    preset: str = "cpu"
    methods: tuple[str, ...] | None = None
    agents: tuple[str, ...] | None = None
    seeds: int | None = None
    rows: tuple[tuple[str, str], ...] | None = None
    static_lam: float | None = None
    static_from: str | None = None
    schedule_from: str | None = None
    policy: str | None = None
    swept_from: str | None = None
    oracle: int | None = None
    out: str | None = None
    resume: bool = False
    perf: bool = False
    publish: str | None = None
    threshold: float = 0.01
    tune_baselines: int | None = None
    audit: bool = False

    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return [plain(x) for x in v] if isinstance(v, tuple) else v

        return {k: plain(v) for k, v in vars(self).items()}


@dataclass(frozen=True)
class Cell:
    """One unlearning run of the matrix."""

    method: str
    agent: str
    instance: int | str  # a class, a name of env.instances, or OUTLIER
    seed: int

    @property
    def key(self) -> str:
        return f"{self.method}|{self.agent}|{self.instance}|{self.seed}"

    @property
    def name(self) -> str:
        where = "outlier" if self.instance == OUTLIER else instance_label(self.instance)
        return f"{self.method}-{self.agent}-{where}-s{self.seed}"


@dataclass
class Plan:
    """The validated matrix; ``skipped`` maps a left-out method or agent to the reason."""

    methods: list[str]
    agents: list[str]
    instances: list[int | str]
    seeds: list[int]
    static_lam: float
    static_source: str
    skipped: dict[str, str] = field(default_factory=dict)
    #: "<method>|<agent>" -> the static / decay parameters its cells use (lam | start, end;
    #: scale), from bench.decay or tuned; ``tuning`` holds each search's compute
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    tuning: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: methods whose loss ignores λ (naive deletion): one row, under the first agent only
    lam_free: list[str] = field(default_factory=list)
    #: ``--rows``: the (method, agent) pairs that run; None = every method x every agent
    rows: list[list[str]] | None = None
    #: the ``swept`` rows' settings: a sweep's winner as dotted config paths -> values, and
    #: where they came from (``sweep``, ``trial``, ``objective``)
    swept: dict[str, Any] = field(default_factory=dict)
    swept_source: dict[str, Any] = field(default_factory=dict)

    def agents_of(self, method: str) -> list[str]:
        """The agents a method runs under (every agent, or the first for a λ-free method;
        with ``rows``, only the method's own rows)."""
        agents = list(self.agents)
        if self.rows is not None:
            agents = [a for a in agents if [method, a] in self.rows]
        return agents[:1] if method in self.lam_free else agents

    def groups(self) -> list[tuple[str, str]]:
        """The (method, agent) rows of the table, in order."""
        return [(m, a) for m in self.methods for a in self.agents_of(m)]

    def cells(self) -> list[Cell]:
        """Seed-major order: after the first pass every (method, agent) has one run."""
        return [
            Cell(m, a, c, s)
            for s, c in itertools.product(self.seeds, self.instances)
            for m, a in self.groups()
        ]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_names(text: str | None, allowed: tuple[str, ...], option: str) -> tuple[str, ...] | None:
    """``"a,b"`` -> ("a", "b"), every name checked against ``allowed`` (None stays None)."""
    if text is None:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        what = f"unknown name {bad[0]!r}" if bad else "no names given"
        raise ConfigError(f"{option}: {what}; allowed: {', '.join(allowed)}")
    return names


def parse_rows(text: str | None) -> tuple[tuple[str, str], ...] | None:
    """``"esd:static,constrained:dual"`` -> (("esd", "static"), ("constrained", "dual"))."""
    if text is None:
        return None
    rows: list[tuple[str, str]] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        method, sep, agent = item.partition(":")
        if not sep or not method.strip() or not agent.strip():
            raise ConfigError(f"--rows: {item!r} is not METHOD:AGENT (e.g. esd:static)")
        row = (method.strip(), agent.strip())
        if row in rows:  # one row's cells would merge into the other's summary
            raise ConfigError(f"--rows: {':'.join(row)} is given twice; list each row once")
        rows.append(row)
    if not rows:
        raise ConfigError("--rows: no rows given; expected METHOD:AGENT pairs, e.g. esd:static")
    return tuple(rows)


def check_options(opts: BenchOptions) -> None:
    """Every option that can be checked without loading a model; ConfigError otherwise."""
    if opts.preset not in PRESETS:
        raise ConfigError(f"--preset: {opts.preset!r} is not allowed; expected one of cpu, full")
    for option, names, allowed in (
        ("--methods", opts.methods, tuple(METHOD_VARIANTS)),
        ("--agents", opts.agents, AGENT_VARIANTS),
    ):
        bad = [n for n in names or () if n not in allowed]
        if bad:
            raise ConfigError(f"{option}: unknown name {bad[0]!r}; allowed: {', '.join(allowed)}")
    if opts.rows is not None:
        if opts.methods is not None or opts.agents is not None:
            raise ConfigError("--rows: give either --rows or --methods / --agents, not both")
        for m, a in opts.rows:
            for what, name, allowed in (
                ("method", m, tuple(METHOD_VARIANTS)),
                ("agent", a, AGENT_VARIANTS),
            ):
                if name not in allowed:
                    raise ConfigError(
                        f"--rows: unknown {what} {name!r} in {m}:{a}; allowed: {', '.join(allowed)}"
                    )
    if "policy" in (a for _, a in opts.rows or ()) and not opts.policy:
        raise ConfigError("--rows: policy needs --policy DIR (an exported policy)")
    if opts.seeds is not None and not 1 <= opts.seeds <= 1000:
        raise ConfigError(f"--seeds: {opts.seeds} is out of range; expected 1..1000")
    if opts.static_lam is not None and not 0.0 <= opts.static_lam <= 1.0:
        raise ConfigError(f"--static-lam: {opts.static_lam} is out of range; expected [0, 1]")
    if opts.static_lam is not None and opts.static_from:
        raise ConfigError("--static-from: give either --static-lam or --static-from, not both")
    if not 0.0 <= opts.threshold <= 1.0:
        raise ConfigError(f"threshold: {opts.threshold} is out of range; expected [0, 1]")
    if opts.schedule_from and not Path(opts.schedule_from).expanduser().is_file():
        raise ConfigError(f"--schedule-from: file {opts.schedule_from!r} does not exist")
    if opts.policy and not Path(opts.policy).expanduser().exists():
        raise ConfigError(f"--policy: {opts.policy!r} does not exist (exported policy dir)")
    if "policy" in (opts.agents or ()) and not opts.policy:
        raise ConfigError("--agents: policy needs --policy DIR (an exported policy)")
    named = {a for _, a in opts.rows or ()} | set(opts.agents or ())
    if opts.oracle is not None and not 1 <= opts.oracle <= 100000:
        raise ConfigError(f"--oracle: {opts.oracle} is out of range; expected 1..100000 trials")
    oracles = sorted(named & set(ORACLE))
    if oracles and not opts.oracle:
        raise ConfigError(
            f"--rows: {oracles[0]} needs --oracle N (search trials per held-out instance)"
        )
    if opts.oracle and not oracles:
        raise ConfigError(
            "--oracle: no oracle row to search for; add METHOD:oracle-static or "
            "METHOD:oracle-decay to --rows"
        )
    if "swept" in named and not opts.swept_from:
        raise ConfigError("--rows: swept needs --swept-from SWEEP (an `unlearn tune` folder)")
    if opts.swept_from and "swept" not in named:
        raise ConfigError("--swept-from: no swept row to run it; add METHOD:swept to --rows")
    if opts.swept_from and not Path(opts.swept_from).expanduser().is_dir():
        raise ConfigError(f"--swept-from: {opts.swept_from!r} is not a sweep folder")
    if opts.tune_baselines is not None and not 1 <= opts.tune_baselines <= 100000:
        raise ConfigError(
            f"--tune-baselines: {opts.tune_baselines} is out of range; expected 1..100000 trials"
        )


def static_lam_from(path: str | Path) -> float:
    """λ of a sweep's best config: the static agent's ``lam`` option, else ``method.lam``.

    ``path`` is ``best_config.yaml`` (written by ``unlearn tune`` into
    ``WORKDIR/tune/<sweep>/report``), the report folder or the sweep folder.
    """
    p = Path(path).expanduser()
    for cand in (p, p / "best_config.yaml", p / "report" / "best_config.yaml"):
        if cand.is_file():
            p = cand
            break
    else:
        raise ConfigError(f"--static-from: no best_config.yaml at {str(p)!r}")
    data = read_yaml(p, "--static-from") or {}
    agent, method = data.get("agent") or {}, data.get("method") or {}
    lam = (agent.get("options") or {}).get("lam") if agent.get("name") == "static" else None
    lam = method.get("lam") if lam is None else lam
    ok = isinstance(lam, (int, float)) and not isinstance(lam, bool) and 0.0 <= lam <= 1.0
    if not ok:
        raise ConfigError(f"--static-from: {p} holds no λ in [0, 1] (method.lam: {lam!r})")
    return float(lam)


def swept_from(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished sweep's winner: (dotted path -> value of every parameter its space fixed
    or searched, the source: sweep name, best trial, objective and score).

    ``path`` is the sweep folder ``WORKDIR/tune/<sweep>`` (its ``unlearn_sweep.json`` and
    ``report/sweep.json``). Parameters of the sections that decide how runs are measured
    (``MEASURED_SECTIONS``: data, forget, eval, t2i, ...) are refused: every row of a bench
    is measured alike.
    """
    import json

    from unlearn.tuners.space import from_dict, trial_values

    p = Path(path).expanduser().resolve()
    meta_file, report = p / "unlearn_sweep.json", p / "report" / "sweep.json"
    for f, what in ((meta_file, "a started sweep"), (report, "a finished sweep's report")):
        if not f.is_file():
            raise ConfigError(f"--swept-from: {str(p)!r} has no {f.relative_to(p)} ({what})")
    try:
        space = from_dict(json.loads(meta_file.read_text())["space"])
        result = json.loads(report.read_text())
    except (ValueError, KeyError) as e:
        raise ConfigError(f"--swept-from: {str(p)!r} holds an unreadable sweep: {e}") from None
    best = next((t for t in result.get("trials", []) if t["trial_id"] == result.get("best")), None)
    if best is None:
        raise ConfigError(f"--swept-from: sweep {p.name} has no best trial (none evaluated)")
    values = trial_values(space, best.get("params") or {})
    bad = [k for k in values if k.split(".")[0] in MEASURED_SECTIONS]
    if bad:
        raise ConfigError(
            f"--swept-from: sweep {p.name} sets {bad[0]}, which changes how a run is measured; "
            f"a swept row may take only method, agent, unlearn and model settings"
        )
    source = {
        "sweep": p.name,
        "path": str(p),
        "trial": best["trial_id"],
        "objective": result.get("objective"),
        "score": best.get("score"),
    }
    return values, source


def agent_config(
    name: str, lam: float, opts: BenchOptions, baseline: dict[str, float] | None = None
) -> AgentConfig:
    """The ``agent`` section of one agent variant (``baseline``: static / decay parameters)."""
    name = ORACLE.get(name, name)  # an oracle row: its baseline, searched per instance
    if name == "static":
        return AgentConfig("static", "", {"lam": (baseline or {}).get("lam", lam)})
    if name == "decay":
        b = baseline or {}
        return decay_agent(b.get("start", lam), b.get("end", lam))
    if name == "schedule":
        if opts.schedule_from:
            path = str(Path(opts.schedule_from).expanduser().resolve())
            return AgentConfig("schedule", "", {"from_pbt": path})
        return AgentConfig("schedule", "", {"kind": "cosine"})
    if name == "policy":
        return AgentConfig("policy", str(Path(opts.policy or "").expanduser().resolve()), {})
    if name == "hybrid":
        if opts.policy:
            path = str(Path(opts.policy).expanduser().resolve())
            return AgentConfig("hybrid", path, {"coarse": {"name": "policy"}})
        return AgentConfig("hybrid", "", {"coarse": {"name": "static", "options": {"lam": lam}}})
    if name in VARIATIONAL_OBJECTIVES:
        return AgentConfig("variational", "", {"objective": VARIATIONAL_OBJECTIVES[name]})
    if name == "swept":  # the sweep's own agent replaces it (cell_config); static at method.lam
        return AgentConfig("static", "", {})
    return AgentConfig(name, "", {})


def method_config(cfg: Config, variant: str) -> MethodConfig:
    """The ``method`` section of one method variant."""
    name, form = METHOD_VARIANTS[variant]
    # a method's options are its own: another method's never reach it (defaults if none)
    options = cfg.method.options_of(name)
    return dataclasses.replace(cfg.method, name=name, form=form, options=options)


def cell_config(
    cfg: Config,
    cell: Cell,
    lam: float,
    opts: BenchOptions,
    experiment: str,
    baselines: dict[str, dict[str, float]] | None = None,
    swept: dict[str, Any] | None = None,
) -> Config:
    """The config of one cell: method variant, agent variant, instance class, seed (a tuned
    or configured baseline's ``scale`` becomes the cell's ``method.scale``, its searched step
    budget the cell's ``unlearn.steps``, its searched method options — ESD's η, ... — the
    cell's ``method.options``; a ``swept`` cell takes every value of ``swept``, the sweep's
    winner)."""
    # an oracle's parameters are its instance's own; the other baselines are one per row
    baselines = baselines or {}
    baseline = baselines.get(oracle_key(cell.method, cell.agent, cell.instance)) or baselines.get(
        f"{cell.method}|{cell.agent}"
    )
    method = method_config(cfg, cell.method)
    if baseline and "scale" in baseline:
        method = dataclasses.replace(method, scale=float(baseline["scale"]))
    knobs = {k: v for k, v in (baseline or {}).items() if k not in AGENT_PARAMS}
    if knobs:
        method = dataclasses.replace(method, options={**method.options, **knobs})
    forget = cfg.forget  # the memorised outlier: as configured
    if cell.instance != OUTLIER:
        forget = dataclasses.replace(
            instance_forget(cfg, cell.instance),
            indices=(),
            outlier=dataclasses.replace(cfg.forget.outlier, copies=0),
        )
    out = dataclasses.replace(
        cfg,
        method=method,
        agent=agent_config(cell.agent, lam, opts, baseline),
        forget=forget,
        unlearn=dataclasses.replace(
            cfg.unlearn,
            seed=cell.seed,
            # a searched step budget (bench.search_steps) is the tuned row's own
            steps=int((baseline or {}).get("steps", cfg.unlearn.steps)),
        ),
        tracking=dataclasses.replace(cfg.tracking, experiment=experiment),
    )
    if cell.agent == "swept" and swept:
        from unlearn.tuners.space import apply_params

        out = apply_params(out, {k: v for k, v in swept.items() if k != "unlearn.seed"})
    return out


def result_sections(cfg: Config, audit: bool = False) -> tuple[str, ...]:
    """The sections a resumed cell of ``cfg`` must match: ``before_sections`` (the base
    evaluation's, plus the family's own: ``t2i`` on a t2i model, whose samples per prompt
    and guidance decide its rates), the method, agent and unlearning sections, plus ``audit``
    and, when it is on, the quality ``guard`` (it may stop a run and decides its status)."""
    return (
        *before_sections(cfg),
        "method",
        "agent",
        "unlearn",
        *(("guard",) if cfg.guard.on else ()),
        *(("audit",) if audit else ()),
    )


def before_sections(cfg: Config) -> tuple[str, ...]:
    """The sections whose change makes a resumed bench re-evaluate the base model."""
    from unlearn.task import base_eval_sections

    return base_eval_sections(cfg)


def plan(cfg: Config, opts: BenchOptions) -> Plan:
    """Validate the options against the config and the pretrained model; list the cells.

    Methods the model cannot run (``check_compatible``) and the policy agent without
    ``--policy`` are left out with their reason; every other agent and method is built once
    here, so a bad option fails before the first run.
    """
    check_options(opts)
    if opts.audit and not family_of(cfg).attacked_rate:
        raise ConfigError(
            f"--audit: the bench's attacked forget rate does not apply to model.kind="
            f"{cfg.model.kind}; audit it with `unlearn audit`"
        )
    preset = PRESETS[opts.preset]
    memorised = bool(cfg.forget.outlier.copies) and not cfg.forget.classes
    instances = [OUTLIER] if memorised else list(cfg.env.test_instances)
    if memorised and opts.tune_baselines:
        raise ConfigError(
            "--tune-baselines: the search unlearns the classes of env.train_instances; a "
            "memorisation config forgets one outlier (give --static-lam or bench.decay)"
        )
    if not instances:
        raise ConfigError("env.test_instances: empty; the bench runs on held-out classes")
    if opts.static_lam is not None:
        lam, source = float(opts.static_lam), "--static-lam"
    elif opts.static_from:
        lam, source = static_lam_from(opts.static_from), f"best config {opts.static_from}"
    else:
        lam, source = float(cfg.method.lam), "method.lam"
    skipped: dict[str, str] = {}
    rows = [list(r) for r in opts.rows] if opts.rows is not None else None
    chosen_methods = tuple(dict.fromkeys(m for m, _ in rows)) if rows else opts.methods
    chosen_agents = tuple(dict.fromkeys(a for _, a in rows)) if rows else opts.agents
    agents = list(chosen_agents or preset.agents)
    if chosen_agents is None and opts.policy and opts.preset == "cpu":
        agents += ["policy", "hybrid"]
    if chosen_agents is None and (cfg.bench.decay or opts.tune_baselines):
        agents.insert(agents.index("schedule") + 1 if "schedule" in agents else 0, "decay")
    if "policy" in agents and not opts.policy:
        agents.remove("policy")
        skipped["policy"] = "no exported policy given (--policy DIR)"
    decay = None
    if "decay" in agents and not opts.tune_baselines:  # fails before the model loads
        decay = decay_from_config(cfg)
    swept, swept_source = {}, {}
    if "swept" in agents:  # before the model loads
        swept, swept_source = swept_from(opts.swept_from or "")
    from unlearn.agents import get_agent  # torch and the models: after the cheap checks
    from unlearn.methods import METHODS, check_compatible, get_method
    from unlearn.pretrain import load_pretrained

    model, _, _ = load_pretrained(cfg)
    check_named_instances(cfg, model)
    methods, lam_free = [], []
    candidates = chosen_methods or preset.methods
    if not chosen_methods and not any(
        cfg.model.kind in METHODS[m].families for m in candidates if m in METHODS
    ):  # a family none of the preset's methods serves (image-to-image): its own methods
        candidates = tuple(m for m, cls in METHODS.items() if cfg.model.kind in cls.families)
    for m in candidates:
        try:
            built = get_method(method_config(cfg, m))
            check_compatible(built, model)
        except ConfigError as e:
            skipped[m] = str(e)
            continue
        methods.append(m)
        if not built.uses_lambda:
            lam_free.append(m)
    if not methods:
        raise ConfigError(
            f"--methods: none can run on model.kind={cfg.model.kind}: "
            + "; ".join(f"{m}: {why}" for m, why in list(skipped.items())[:3])
            + (f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else "")
        )
    baselines = {f"{m}|decay": decay for m in methods} if decay else {}
    for a in agents:
        get_agent(agent_config(a, lam, opts), default_lam=cfg.method.lam)
    n = opts.seeds or preset.seeds
    seeds = [cfg.unlearn.seed + i for i in range(n)]
    pl = Plan(
        methods,
        agents,
        instances,
        seeds,
        lam,
        source,
        skipped,
        baselines,
        lam_free=lam_free,
        rows=rows,
        swept=swept,
        swept_source=swept_source,
    )
    winner = swept.get("method.name", cfg.method.name)
    wrong = [m for m, a in pl.groups() if a == "swept" and m != winner]
    if wrong:
        raise ConfigError(
            f"--rows: {wrong[0]}:swept, but sweep {swept_source['sweep']}'s winner is "
            f"method {winner!r}; name the row {winner}:swept"
        )
    return pl


def oracle_key(method: str, agent: str, instance: int | str) -> str:
    """The key of a per-instance oracle's parameters in ``Plan.baselines`` / ``tuning``."""
    return f"{method}|{agent}|{instance}"
