"""One bench cell: a tracked unlearning run (``make_unlearner`` + ``Unlearner.run``) and its record.

The cell is an ordinary tracked run (config params, per-step λ and losses, before / after
metrics) nested under the bench's MLflow parent run. On top of ``unlearn run`` it measures
the forget rate every ``unlearn.eval_every`` steps (the evaluation's own samples and
classifier, fixed seeds, without FID) to find the first step at which it falls below the
threshold; that measuring time is not counted in the run's wall time.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from unlearn.bench.matrix import Cell
from unlearn.config import Config
from unlearn.families import family_of

if TYPE_CHECKING:  # torch and diffusers load only when a cell runs (fast CLI errors)
    from unlearn.metrics import EvalResult
    from unlearn.runtime import ProgressFn
    from unlearn.types import StepStats


#: a cell's outcome: the loop's own status, or ``error`` when the run raised
CellStatus = Literal["finished", "diverged", "collapsed", "error"]


@dataclass(frozen=True)
class RunRecord:
    """The numbers of one cell's run (NaN / None where the run has none).

    ``status`` is ``finished``, ``diverged`` (kept: the numbers are those of the last good
    weights), ``collapsed`` (the quality guard flagged it; the numbers are those of the
    weights it returned) or ``error`` (the run raised; no numbers). ``checks`` are (step, forget rate)
    pairs, step 0 being the base model; ``steps_to_forget`` is the first checked step with a
    forget rate below the threshold, None when never reached. With ``bench --audit`` the
    attacked forget rate, the forget rate after benign fine-tuning and the MIA AUC of the
    unlearned model (:mod:`unlearn.audit.attacked`; ``audit_time`` is not in ``wall_time``).
    """

    method: str
    agent: str
    instance: int | str
    seed: int
    status: CellStatus
    digest: str
    message: str = ""
    forget_rate: float = math.nan
    fid: float = math.nan
    coverage_kl: float = math.nan
    #: t2i only: the concept rate on the held-out paraphrases and the retain accuracy
    paraphrase_rate: float = math.nan
    retain_accuracy: float = math.nan
    steps_to_forget: int | None = None
    steps: int = 0
    budget: int = 0
    wall_time: float = math.nan
    check_time: float = 0.0
    run_id: str | None = None
    lambdas: list[float] = field(default_factory=list)
    checks: list[list[float]] = field(default_factory=list)
    attacked_forget_rate: float = math.nan
    benign_forget_rate: float = math.nan
    mia_auc: float = math.nan
    adversarial_concept_rate: float = math.nan
    audit_time: float = 0.0

    @property
    def key(self) -> str:
        return Cell(self.method, self.agent, self.instance, self.seed).key

    def value(self, metric: str) -> float:
        v = getattr(self, metric)
        return math.nan if v is None else float(v)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        floats = (
            "forget_rate",
            "fid",
            "coverage_kl",
            "paraphrase_rate",
            "retain_accuracy",
            "wall_time",
            "attacked_forget_rate",
            "benign_forget_rate",
            "mia_auc",
            "adversarial_concept_rate",
        )
        return cls(**{k: (math.nan if k in floats and v is None else v) for k, v in d.items()})

    @classmethod
    def failed(cls, cell: Cell, digest: str, message: str) -> RunRecord:
        return cls(cell.method, cell.agent, cell.instance, cell.seed, "error", digest, message)


class ForgetCheck:
    """Callback: the sample-based forget rate every ``every`` steps (not at ``budget``:
    the final evaluation measures that one) — the concept rate of the erased prompts on t2i,
    else the :class:`~unlearn.metrics.meters.ForgetMeter` on ``eval.num_samples``."""

    def __init__(self, unlearner: Any, every: int, budget: int):
        from unlearn.metrics.meters import ForgetMeter

        self.unl, self.every, self.budget = unlearner, every, budget
        self.checks: list[list[float]] = []
        self.seconds = 0.0
        self.meter = None
        from unlearn.metrics import EvalData

        # the image families' samples; other families' checks are their evaluation's rate
        if not family_of(unlearner.cfg).prompted and isinstance(unlearner.eval_data, EvalData):
            data = unlearner.eval_data
            self.meter = ForgetMeter(
                unlearner.cfg,
                unlearner.classifier,
                tuple(data.forget_classes),
                data.outlier,
                unlearner.cfg.eval.num_samples,
            )

    def __call__(self, stats: StepStats) -> None:
        if self.every <= 0 or stats.step % self.every or stats.step >= self.budget:
            return
        t0 = time.perf_counter()
        if self.meter is None:
            rate = self.unl.evaluate()[0].forget_rate
        else:
            rate = self.meter(self.unl.model)[0]
        self.checks.append([stats.step, float(rate)])
        self.seconds += time.perf_counter() - t0


@dataclass
class CellOutcome:
    record: RunRecord
    before: EvalResult
    after_samples: Any = None
    before_samples: Any = None


def _num(v: float | None) -> float:
    return math.nan if v is None else float(v)


def first_below(checks: list[list[float]], threshold: float) -> int | None:
    """First step whose forget rate is below ``threshold``."""
    return next((int(s) for s, r in checks if r < threshold), None)


def run_cell(
    cfg: Config,
    cell: Cell,
    digest: str,
    threshold: float = 0.01,
    before: EvalResult | None = None,
    parent_run_id: str | None = None,
    progress: ProgressFn | None = None,
    audit: bool = False,
) -> CellOutcome:
    """Build, evaluate the base model (unless ``before`` is given), unlearn, evaluate, track;
    with ``audit``, attack the unlearned model too."""
    from unlearn.run import track_status
    from unlearn.task import base_evaluation, make_unlearner
    from unlearn.tracking import Tracker
    from unlearn.unlearner import guard_fid

    setup = make_unlearner(cfg)
    unl = setup.unlearner
    tags = {
        "unlearn.method": cfg.method.name,
        "unlearn.agent": cfg.agent.name,
        "unlearn.bench_cell": cell.key,
        "unlearn.instance": str(cell.instance),
        "unlearn.seed": str(cell.seed),
        "unlearn.kind": "bench-cell",
    }
    if parent_run_id:
        tags["unlearn.bench"] = parent_run_id
    tracker = Tracker(cfg, run_name=cell.name, parent_run_id=parent_run_id, tags=tags)
    tracker.log_params({**cfg.to_dict(), "bench": {"variant": cell.method}})
    status = "FAILED"
    try:
        before_samples = None
        if before is None:
            before, before_samples = base_evaluation(cfg, unl)  # cached across commands
        tracker.log_metrics(before.metrics("before/"))
        every = cfg.bench.check_every
        check = ForgetCheck(unl, cfg.unlearn.eval_every if every < 0 else every, unl.budget)
        res = unl.run(callbacks=[tracker.step_callback(), check], progress=progress)
        after, samples = unl.evaluate(before.forget_rate)
        guard_fid(cfg, res, before, after)
        checks = [[0, before.forget_rate], *check.checks]
        if checks[-1][0] != res.steps:
            checks.append([res.steps, after.forget_rate])
        reached = first_below(checks, threshold)
        wall = res.wall_time - check.seconds
        tracker.log_metrics(after.metrics("eval/"))
        for s, r in checks:
            tracker.log_metrics({"eval/forget_rate_check": r}, step=int(s))
        tracker.log_metrics(
            {
                "perf/wall_time": wall,
                "perf/steps_per_s": res.steps / max(wall, 1e-9),
                "bench/steps_to_forget": math.nan if reached is None else reached,
                "bench/reached": float(reached is not None),
            }
        )
        ended = track_status(tracker, res)
        attacked = {}
        if audit:
            from unlearn.audit import attacked_rates

            family = family_of(cfg)
            adversarial = "adversarial_concept_rate" in family.audit_columns
            rates = attacked_rates(unl, family.heldout(setup.task), adversarial=adversarial)
            tracker.log_metrics(rates.metrics())
            attacked = {
                "attacked_forget_rate": rates.attacked_forget_rate,
                "benign_forget_rate": rates.benign_forget_rate,
                "mia_auc": rates.mia_auc,
                "adversarial_concept_rate": rates.adversarial_concept_rate,
                "audit_time": rates.wall_time,
            }
        record = RunRecord(
            cell.method,
            cell.agent,
            cell.instance,
            cell.seed,
            res.status,
            digest,
            res.message,
            forget_rate=after.forget_rate,
            fid=after.fid,
            coverage_kl=getattr(after, "coverage_kl", math.nan),
            paraphrase_rate=_num(getattr(after, "paraphrase_concept_rate", None)),
            retain_accuracy=_num(getattr(after, "retain_accuracy", None)),
            steps_to_forget=reached,
            steps=res.steps,
            budget=unl.budget,
            wall_time=wall,
            check_time=check.seconds,
            run_id=tracker.run_id,
            lambdas=res.lambdas,
            checks=checks,
            **attacked,
        )
        status = ended
        return CellOutcome(record, before, samples, before_samples)
    finally:
        tracker.end(status)


def save_grids(outcome: CellOutcome, folder: Path) -> list[Path]:
    """Before / after sample grids of a cell (the before grid only when it was sampled)."""
    from unlearn.metrics import save_grid

    r, out = outcome.record, []
    if outcome.before_samples is not None:
        out.append(save_grid(outcome.before_samples[:100], folder / "before.png", nrow=10))
    if outcome.after_samples is not None:
        out.append(
            save_grid(
                outcome.after_samples[:100], folder / f"after-{r.method}-{r.agent}.png", nrow=10
            )
        )
    return out
