"""λ as a function of training progress: linear, cosine, step, piecewise, or replayed from a file.

A replayable schedule file (JSON or YAML) holds ``{"points": [[progress, lam], ...]}``, read
with linear interpolation; two points at the same progress make a jump. PBT results are
written in that form by the tuner, so a schedule found by PBT replays with
``agent.name=schedule agent.path=<file>`` (or ``agent.options.from_pbt=<file>``).
"""

from __future__ import annotations

import bisect
import json
import math
from pathlib import Path
from typing import Any, ClassVar

import yaml

from unlearn.agents.base import LambdaAgent
from unlearn.agents.options import Opt, OptionError, check_lam
from unlearn.config import ConfigError, yaml_problem
from unlearn.types import StepStats

KINDS = ("linear", "cosine", "step", "piecewise")


class ScheduleAgent(LambdaAgent):
    """λ(progress), progress = step / budget in [0, 1] (0 before the first step).

    Args:
        kind: ``linear`` (start → end), ``cosine`` (start → end along half a cosine),
            ``step`` (``values[i]`` from ``boundaries[i-1]`` on) or ``piecewise`` (linear
            interpolation between ``points``). Default: piecewise when ``points`` are
            given, step when ``boundaries`` are, linear otherwise.
        start: λ at progress 0 (linear, cosine).
        end: λ at progress 1 (linear, cosine).
        points: ``[[progress, lam], ...]`` with non-decreasing progress (piecewise); constant
            before the first and after the last point.
        boundaries: increasing progress values in [0, 1] where a step schedule changes.
        values: the ``len(boundaries) + 1`` λ values of a step schedule.
    """

    name = "schedule"
    OPTIONS: ClassVar[dict[str, Opt]] = {
        "kind": Opt(None, "schedule shape", kind=str, choices=KINDS, optional=True),
        "start": Opt(1.0, "lambda at progress 0 (linear, cosine)", lo=0.0, hi=1.0),
        "end": Opt(0.0, "lambda at progress 1 (linear, cosine)", lo=0.0, hi=1.0),
        "points": Opt(None, "[[progress, lambda], ...] (piecewise)", kind=list, optional=True),
        "boundaries": Opt(
            None, "progress values where a step schedule changes", kind=list, optional=True
        ),
        "values": Opt(None, "len(boundaries)+1 lambda values (step)", kind=list, optional=True),
        "from_pbt": Opt(
            None, "JSON/YAML file with {points: ...} to replay", kind=str, optional=True
        ),
    }

    def __init__(
        self,
        kind: str | None = None,
        start: float = 1.0,
        end: float = 0.0,
        points: list[list[float]] | None = None,
        boundaries: list[float] | None = None,
        values: list[float] | None = None,
    ):
        if kind is None:
            kind = (
                "piecewise"
                if points is not None
                else "step"
                if boundaries is not None
                else "linear"
            )
        if kind not in KINDS:
            raise OptionError("kind", kind, "one of " + ", ".join(KINDS))
        self.kind = kind
        self.start, self.end = check_lam("start", start), check_lam("end", end)
        for key, given in (("points", points), ("boundaries", boundaries), ("values", values)):
            needed = {"points": ("piecewise",), "boundaries": ("step",), "values": ("step",)}[key]
            if given is not None and kind not in needed:
                raise OptionError(
                    key, given, f"no value with kind={kind} (used by kind={needed[0]})"
                )
        self.xs: list[float] = []
        self.ys: list[float] = []
        if kind == "piecewise":
            self.xs, self.ys = _points(points)
        elif kind == "step":
            self.xs, self.ys = _steps(boundaries, values)

    # -- replay files ----------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path, where: str = "agent.options.from_pbt") -> ScheduleAgent:
        """A piecewise schedule from a JSON or YAML file holding ``{"points": [...]}``."""
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"{where}: file {str(p)!r} does not exist")
        try:
            data = (
                json.loads(p.read_text()) if p.suffix == ".json" else yaml.safe_load(p.read_text())
            )
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: {p} is not valid JSON: {e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{where}: {p} is not valid YAML at {yaml_problem(e)}") from None
        points = data.get("points") if isinstance(data, dict) else data
        try:
            return cls(kind="piecewise", points=points)
        except OptionError as e:
            raise ConfigError(f"{where}: {p}: {e.key}={e.value!r}; expected {e.allowed}") from None

    def to_points(self, n: int = 101) -> list[list[float]]:
        """The schedule as piecewise-linear points (exact except for cosine: ``n`` samples)."""
        if self.kind == "piecewise":
            return [[x, y] for x, y in zip(self.xs, self.ys, strict=True)]
        if self.kind == "step":
            pts = [[0.0, self.ys[0]]]
            for b, before, after in zip(self.xs, self.ys, self.ys[1:], strict=False):
                pts += [[b, before], [b, after]]
            return pts + [[1.0, self.ys[-1]]]
        if self.kind == "linear":
            return [[0.0, self.start], [1.0, self.end]]
        return [[i / (n - 1), self.value(i / (n - 1))] for i in range(n)]

    def to_file(self, path: str | Path, **metadata: Any) -> Path:
        """Write a replayable ``{"points": ...}`` file (JSON, or YAML for .yaml/.yml)."""
        p = Path(path)
        data = {"points": self.to_points(), **metadata}
        p.write_text(yaml.safe_dump(data) if p.suffix in (".yaml", ".yml") else json.dumps(data))
        return p

    @classmethod
    def from_options(
        cls, options: dict[str, Any], default_lam: float, path: str = ""
    ) -> ScheduleAgent:
        opts = dict(options)
        file, where = opts.pop("from_pbt") or None, "agent.options.from_pbt"
        if file is None and path:
            file, where = path, "agent.path"
        if file is None:
            return cls(**opts)
        if opts["kind"] not in (None, "piecewise"):
            raise OptionError("kind", opts["kind"], f"piecewise (or nothing) with {where}")
        for key in ("points", "boundaries", "values"):
            if opts[key] is not None:
                raise OptionError(key, opts[key], f"no value when the schedule comes from {where}")
        return cls.from_file(file, where)

    # -- the agent -------------------------------------------------------------------------
    def value(self, progress: float) -> float:
        """λ at ``progress`` (clamped to [0, 1]; NaN counts as 0)."""
        p = 0.0 if not math.isfinite(progress) else min(1.0, max(0.0, progress))
        if self.kind == "linear":
            return self.start + (self.end - self.start) * p
        if self.kind == "cosine":
            return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * p))
        if self.kind == "step":
            return self.ys[bisect.bisect_right(self.xs, p)]
        xs, ys = self.xs, self.ys
        if p <= xs[0]:
            return ys[0]
        if p >= xs[-1]:
            return ys[-1]
        i = bisect.bisect_right(xs, p)  # xs[i-1] <= p < xs[i]; equal xs make a jump
        w = (p - xs[i - 1]) / (xs[i] - xs[i - 1])
        return ys[i - 1] + w * (ys[i] - ys[i - 1])

    def reset(self, seed: int) -> float:
        return self.value(0.0)

    def act(self, stats: StepStats | None) -> float:
        return self.value(0.0 if stats is None else stats.progress)


def _points(points: Any) -> tuple[list[float], list[float]]:
    allowed = "a non-empty list of [progress, lambda] pairs in [0, 1], progress non-decreasing"
    if not isinstance(points, (list, tuple)) or not points:
        raise OptionError("points", points, allowed)
    xs, ys = [], []
    for i, pt in enumerate(points):
        if not isinstance(pt, (list, tuple)) or len(pt) != 2:
            raise OptionError(f"points[{i}]", pt, "a [progress, lambda] pair")
        x, y = check_lam(f"points[{i}][0]", pt[0]), check_lam(f"points[{i}][1]", pt[1])
        if xs and x < xs[-1]:
            raise OptionError(f"points[{i}][0]", x, f"a progress >= {xs[-1]} (non-decreasing)")
        xs.append(x)
        ys.append(y)
    return xs, ys


def _steps(boundaries: Any, values: Any) -> tuple[list[float], list[float]]:
    if not isinstance(boundaries, (list, tuple)):
        raise OptionError(
            "boundaries", boundaries, "a list of increasing progress values in [0, 1]"
        )
    xs = [check_lam(f"boundaries[{i}]", b) for i, b in enumerate(boundaries)]
    if any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
        raise OptionError("boundaries", boundaries, "strictly increasing progress values")
    if not isinstance(values, (list, tuple)) or len(values) != len(xs) + 1:
        raise OptionError(
            "values", values, f"a list of {len(xs) + 1} lambdas (len(boundaries) + 1)"
        )
    return xs, [check_lam(f"values[{i}]", v) for i, v in enumerate(values)]
