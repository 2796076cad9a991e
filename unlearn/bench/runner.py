"""``unlearn bench``: run the matrix, keep every number, write and track the report.

``results.json`` in the report folder is rewritten after every cell (nothing is lost when
the bench stops), and ``resume`` skips the cells it already holds with the same cell config.
The bench is an MLflow parent run ``bench-<preset>`` in experiment
``<tracking.experiment>-bench``; each cell is a child run of it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn.bench.baselines import compute_markdown
from unlearn.bench.cell import CellOutcome, RunRecord, run_cell, save_grids
from unlearn.bench.matrix import (
    BenchOptions,
    Plan,
    before_sections,
    cell_config,
    plan,
    result_sections,
)
from unlearn.bench.perf import PerfResult, perf_markdown, run_perf
from unlearn.bench.recovery import recovery, recovery_markdown
from unlearn.bench.report import (
    bench_markdown,
    check_publish,
    instances_text,
    legend_text,
    markdown_table,
    plot_lambdas,
    plot_pareto_runs,
    summary_rows,
)
from unlearn.bench.stats import METRICS, CellSummary, summarize
from unlearn.config import Config, ConfigError, instance_key
from unlearn.families import family_of

if TYPE_CHECKING:  # torch and diffusers load only when the bench runs (fast CLI errors)
    from unlearn.metrics import EvalResult
    from unlearn.runtime import ProgressFn
    from unlearn.tracking import Tracker

log = logging.getLogger(__name__)

#: a diverged or collapsed run is a result: rerunning it gives the same
DONE = ("finished", "diverged", "collapsed")


def status_counts(runs) -> dict[str, int]:
    """How many runs ended each way (finished, diverged, collapsed, errors)."""
    ended = [r.status for r in runs]
    return {k: ended.count(s) for k, s in STATUS_KEYS.items()}


#: a count's key -> the status it counts
STATUS_KEYS = {
    "finished": "finished",
    "diverged": "diverged",
    "collapsed": "collapsed",
    "errors": "error",
}


@dataclass
class BenchResult:
    """What a bench produced; ``path`` holds bench.md, results.json and the plots."""

    path: Path
    preset: str
    plan: Plan
    runs: list[RunRecord]
    summaries: list[CellSummary]
    threshold: float
    parent_run_id: str | None = None
    perf: PerfResult | None = None
    ran: int = 0
    wall_time: float = 0.0
    artifacts: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "preset": self.preset,
            "plan": self.plan.to_dict(),
            "parent_run_id": self.parent_run_id,
            "threshold": self.threshold,
            "ran": self.ran,
            "wall_time": self.wall_time,
            "summary": [s.to_dict() for s in self.summaries],
            "runs": [r.to_dict() for r in self.runs],
            "perf": None if self.perf is None else self.perf.to_dict(),
            "artifacts": {k: str(v) for k, v in self.artifacts.items()},
        }


def _open_parent(cfg: Config, preset: str, opts: BenchOptions, resume_id: str | None):
    """The bench's parent run (a Tracker), reopened on resume; disabled without tracking."""
    from unlearn.tracking import Tracker, TrackingError, preflight

    uri = preflight(cfg)
    if uri and resume_id:
        try:
            return Tracker.resume(uri, resume_id)
        except TrackingError:
            log.warning("parent run %s is not in this MLflow store; starting a new one", resume_id)
    tr = Tracker(
        cfg, run_name=f"bench-{preset}", tags={"unlearn.kind": "bench", "unlearn.preset": preset}
    )
    tr.log_params({**cfg.to_dict(), "bench": opts.to_dict()})
    return tr


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"--resume: {path} is not valid JSON: {e}") from None


def recorded_config(old: dict[str, Any]) -> dict[str, Any]:
    """The config an earlier ``results.json`` recorded, read through today's schema: a field
    added since then holds its default, so it alone does not make the record stale."""
    from unlearn.config import from_mapping

    then = old.get("config") or {}
    try:
        return from_mapping(Config, then).to_dict()
    except (ConfigError, TypeError):
        return then


def reusable_before(old: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """The base model's evaluations of an earlier ``results.json`` that still hold for
    ``cfg`` (same data, forget, model, pretrain, eval and, on t2i, t2i sections), else none."""
    sections = before_sections(cfg)
    then, now = recorded_config(old), cfg.to_dict()
    if any(then.get(s) != now[s] for s in sections):
        return {}
    if (then.get("env") or {}).get("instances", {}) != now["env"]["instances"]:
        return {}  # a named instance may forget something else now
    return old.get("before") or {}


def run_bench(
    cfg: Config, opts: BenchOptions | None = None, progress: ProgressFn | None = None
) -> BenchResult:
    """Run (or resume) the bench matrix and write its report; see :class:`BenchOptions`."""
    opts = opts or BenchOptions()
    if opts.publish:
        check_publish(opts.publish)
    pl = plan(cfg, opts)  # every cheap check first: a bad option fails before torch loads
    from unlearn.runtime import no_progress

    progress = progress or no_progress
    out = (
        Path(opts.out).expanduser().resolve()
        if opts.out
        else (cfg.workdir_path / "reports" / f"bench-{opts.preset}")
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    if not opts.resume:  # a fresh bench: no grids of an earlier one in its report
        for old_grid in (out / "samples").glob("*.png"):
            old_grid.unlink()
    results = out / "results.json"
    old = _load(results) if opts.resume else {}
    experiment = f"{cfg.tracking.experiment}-bench"
    bench_cfg = dataclasses.replace(
        cfg, tracking=dataclasses.replace(cfg.tracking, experiment=experiment)
    )
    if opts.tune_baselines or opts.oracle:
        _tune(cfg, pl, opts, old, progress)
    cells = pl.cells()
    configs = {
        c.key: cell_config(cfg, c, pl.static_lam, opts, experiment, pl.baselines, pl.swept)
        for c in cells
    }
    sections = result_sections(cfg, opts.audit)
    digests = {k: c.digest(*sections) for k, c in configs.items()}
    records: dict[str, RunRecord] = {}
    for d in old.get("runs", []):
        r = RunRecord.from_dict(d)
        if r.status in DONE and digests.get(r.key) == r.digest:
            records[r.key] = r
    before: dict[int | str, EvalResult] = {
        instance_key(k): family_of(cfg).result_from_dict(v)
        for k, v in reusable_before(old, cfg).items()
    }
    perf = PerfResult(**old["perf"]) if old.get("perf") and not opts.perf else None
    parent = _open_parent(bench_cfg, opts.preset, opts, old.get("parent_run_id"))
    parent_id = parent.run_id
    t0, ran, status = time.perf_counter(), 0, "FAILED"

    def save(extra: dict[str, Any] | None = None) -> None:
        state = {
            "version": 1,
            "preset": opts.preset,
            "options": opts.to_dict(),
            "plan": pl.to_dict(),
            "parent_run_id": parent_id,
            "config": cfg.to_dict(),
            "before": {str(k): v.to_dict() for k, v in before.items()},
            "runs": [r.to_dict() for r in records.values()],
            "perf": None if perf is None else perf.to_dict(),
            **(extra or {}),
        }
        tmp = results.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(results)

    try:
        save()
        todo = [c for c in cells if c.key not in records]
        for cell in todo:
            progress("bench", len(records), len(cells))
            grid = cell.instance == pl.instances[0] and cell.seed == pl.seeds[0]
            try:
                res: CellOutcome = run_cell(
                    configs[cell.key],
                    cell,
                    digests[cell.key],
                    opts.threshold,
                    before.get(cell.instance),
                    parent_id,
                    progress,
                    opts.audit,
                )
                before[cell.instance] = res.before
                if grid:
                    save_grids(res, out / "samples")
                rec = res.record
            except ConfigError:
                raise
            except Exception as e:  # one broken run must not cost the others
                log.exception("bench cell %s failed", cell.key)
                rec = RunRecord.failed(cell, digests[cell.key], f"{type(e).__name__}: {e}")
            records[cell.key] = rec
            ran += 1
            save()
        progress("bench", len(cells), len(cells))
        if opts.perf:
            perf = run_perf(progress=progress)
        runs = [records[c.key] for c in cells]
        groups = pl.groups()
        family = family_of(cfg)
        # the shared columns that apply to the family, then its own (a pipeline has no class
        # coverage: its columns are the concept rates instead)
        base = [m for m in METRICS if m not in family.dropped_columns]
        metrics = [*base, *family.columns, *(family.audit_columns if opts.audit else ())]
        summaries = summarize(runs, groups, metrics)
        result = BenchResult(
            out, opts.preset, pl, runs, summaries, opts.threshold, parent_id, perf, ran
        )
        # rendered once: the report and the published results page show the same tables
        cols, rows = summary_rows(summaries, opts.threshold, lambda s: f"**{s}**")
        table = markdown_table(cols, rows)
        policy_steps = _policy_steps(opts)
        compute_md = compute_markdown(pl.tuning, policy_steps, "policy" in pl.agents)
        if compute_md:
            table = f"{table}\n\n{compute_md}"
        # with an oracle row: how much of its advantage each other row of the method recovers
        recovered = recovery(runs, cfg.tune.fid_weight)
        if recovered:
            table = f"{table}\n\n{recovery_markdown(recovered, cfg.tune.fid_weight)}"
        perf_md = perf_markdown(perf) if perf is not None else ""
        _write_report(cfg, opts, result, table, perf_md)
        save(
            {
                "summary": [s.to_dict() for s in summaries],
                "threshold": opts.threshold,
                **({"recovery": recovered} if recovered else {}),
                **({"policy_steps": policy_steps} if "policy" in pl.agents else {}),
            }
        )
        if opts.publish:
            from unlearn.bench.pages import publish

            section = _results_section(cfg, opts, result, table, perf_md)
            publish(opts.publish, json.loads(results.read_text()), section)
        result.wall_time = time.perf_counter() - t0
        result.artifacts["results_json"] = results
        _log_parent(parent, result)
        status = "FINISHED"
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        parent.end(status)


def _tune(cfg: Config, pl: Plan, opts: BenchOptions, old: dict, progress) -> None:
    """Fill ``pl.baselines`` / ``pl.tuning`` by the Optuna searches: ``--tune-baselines`` on the
    train instances, ``--oracle`` on each held-out instance itself (a resumed bench with the
    same trials and config reuses the earlier searches)."""
    from unlearn.bench.baselines import ORACLE, tune_baselines
    from unlearn.bench.matrix import method_config, oracle_key

    prev = (old.get("plan") or {}).get("tuning") or {}
    same_cfg = recorded_config(old) == cfg.to_dict()
    prev_opts = old.get("options") or {}
    methods = [m for m in pl.methods if m not in pl.lam_free]  # λ-free: nothing to tune
    groups = [(m, a) for m, a in pl.groups() if m in methods]
    pl.tuning = {}

    def search(run_cfg: Config, trials: int, option: str, rows: dict[str, tuple[str, str]]):
        """``rows``: tuning key -> (method, the row's agent); the search runs its baseline."""
        if not rows:
            return
        if same_cfg and prev_opts.get(option) == trials and set(rows) <= set(prev):
            pl.tuning.update({k: prev[k] for k in rows})
            return
        pairs = [(m, ORACLE.get(a, a)) for m, a in rows.values()]
        agents = sorted({a for _, a in pairs})
        tuned = tune_baselines(run_cfg, methods, agents, trials, method_config, progress, pairs)
        for k, (m, a) in rows.items():
            pl.tuning[k] = {**tuned[f"{m}|{ORACLE.get(a, a)}"].to_dict(), "agent": a}

    if opts.tune_baselines:
        rows = {f"{m}|{a}": (m, a) for m, a in groups if a in ("static", "decay")}
        search(cfg, opts.tune_baselines, "tune_baselines", rows)
    if opts.oracle:
        for c in pl.instances:  # the same search, on the held-out instance itself
            env = dataclasses.replace(cfg.env, train_instances=(c,), test_instances=())
            rows = {oracle_key(m, a, c): (m, a) for m, a in groups if a in ORACLE}
            search(dataclasses.replace(cfg, env=env), opts.oracle, "oracle", rows)
    pl.baselines.update({k: dict(t["params"]) for k, t in pl.tuning.items()})


def _policy_steps(opts: BenchOptions) -> int | None:
    """The optimiser steps the bench's policy trained with (None: not in its metadata)."""
    if not opts.policy:
        return None
    from unlearn.bench.baselines import policy_training_steps
    from unlearn.export.policy_file import read_metadata

    return policy_training_steps(read_metadata(Path(opts.policy).expanduser()))


def _shown(path: Path, cfg: Config) -> str:
    """The report's path as a reader of the results page can use it (relative to the workdir)."""
    p = Path(path) / "bench.md"
    try:
        return f"WORKDIR/{p.relative_to(cfg.workdir_path)}"
    except ValueError:
        return str(p)


def _results_section(
    cfg: Config, opts: BenchOptions, res: BenchResult, table: str, perf_md: str
) -> str:
    """The results page's summary: what ran, the summary table, the performance ratios."""
    pl = res.plan
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    head = (
        f"`unlearn bench --preset {opts.preset}` on `{cfg.name}` ({cfg.model.kind}, "
        f"{cfg.data.name} {cfg.data.resolution}px, {cfg.unlearn.steps} steps, "
        f"{cfg.eval.num_samples} evaluation samples), {date}: {len(res.runs)} runs, held-out "
        f"{instances_text(pl.instances)} x seeds {pl.seeds}. Full report: "
        f"`{_shown(res.path, cfg)}`.\n\n{legend_text(family_of(cfg).prompted, opts.audit)}"
    )
    return f"{head}\n\n{table}" + (f"\n\n{perf_md}" if perf_md else "")


def _write_report(
    cfg: Config, opts: BenchOptions, res: BenchResult, table: str, perf_md: str
) -> None:
    from unlearn.runtime import resolve_device

    out, runs = res.path, res.runs
    res.artifacts["pareto_png"], front = plot_pareto_runs(runs, out / "pareto.png")
    res.artifacts["lambda_png"] = plot_lambdas(runs, out / "lambda.png")
    grids = sorted((out / "samples").glob("*.png"), key=lambda p: (p.name != "before.png", p.name))
    facts = {
        "preset": opts.preset,
        "audit": opts.audit,
        "t2i": family_of(cfg).prompted,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(resolve_device(cfg.device)),
        "config": cfg.name,
        "model": cfg.model.kind,
        "data": f"{cfg.data.name} {cfg.data.resolution}px",
        "steps": cfg.unlearn.steps,
        "eval_every": cfg.unlearn.eval_every,
        "samples": family_of(cfg).samples_text(cfg),
        "plan": res.plan.to_dict(),
        "runs": len(runs),
        **status_counts(runs),
    }
    text = bench_markdown(facts, table, front, runs, [f"samples/{g.name}" for g in grids], perf_md)
    res.artifacts["bench_md"] = out / "bench.md"
    res.artifacts["bench_md"].write_text(text)


def _log_parent(parent: Tracker, res: BenchResult) -> None:
    m = {
        "bench/runs": len(res.runs),
        "bench/ran": res.ran,
        "perf/wall_time": res.wall_time,
        **{f"bench/{k}": v for k, v in status_counts(res.runs).items() if k != "finished"},
    }
    parent.log_metrics(m)
    for s in res.summaries:
        for metric, best in s.best.items():
            if best:
                parent.set_tag(f"unlearn.best.{metric}", f"{s.method} + {s.agent}")
    parent.log_artifacts(res.path)
