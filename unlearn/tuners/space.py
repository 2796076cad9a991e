"""Search spaces in YAML: which config fields a sweep varies, over which ranges, and when.

A space file (``configs/tune/*.yaml``)::

    description: static λ vs the variational agent, SISS
    fixed:                                   # applied to every trial
      method.name: siss
    params:                                  # sampled in this order
      agent.name: {choice: [static, variational]}
      method.lam: {float: [0.05, 0.95]}
      unlearn.lr: {float: [1.0e-5, 1.0e-3], log: true}
      agent.options.beta: {float: [1.0e-4, 1.0], log: true, when: {agent.name: variational}}

Every key is a config path (``section.field`` or ``section.options.key``). ``when`` makes a
parameter conditional on earlier parameters (or fixed values): it is sampled only when each
named path holds one of the listed values. :func:`validate_space` checks the whole space
against the config and the method / agent registries before Ray starts. The space in each
searcher's language (Optuna, Tune domains, PB2 bounds) is :mod:`unlearn.tuners.searchers`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearn.config import Config, ConfigError, from_mapping, read_yaml, set_path

KINDS = ("float", "int", "choice")


@dataclass(frozen=True)
class Param:
    """One searched config path.

    Args:
        path: dotted config path, e.g. ``method.lam`` or ``agent.options.beta``.
        kind: ``float``, ``int`` or ``choice``.
        low: inclusive lower bound (numbers).
        high: inclusive upper bound (numbers).
        log: sample on a log scale (numbers, ``low > 0``).
        values: the choices (``choice``).
        when: ``(path, allowed values)`` pairs that must all hold for the parameter to exist.
    """

    path: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    values: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def representatives(self) -> list[Any]:
        """Values that exercise the whole range (bounds, every choice)."""
        if self.kind == "choice":
            return list(self.values)
        return [self.low, self.high]

    def active(self, values: dict[str, Any]) -> bool:
        return all(values.get(p) in allowed for p, allowed in self.when)


@dataclass(frozen=True)
class SearchSpace:
    """A parsed search-space file."""

    name: str
    params: tuple[Param, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""

    @property
    def conditional(self) -> bool:
        return any(p.when for p in self.params)


def load_space(path: str | Path) -> SearchSpace:
    """Parse a space file; a malformed one raises :class:`ConfigError` naming the entry."""
    p = Path(path).expanduser()
    return parse_space(read_yaml(p, "--space"), name=p.stem, source=str(p.resolve()))


def parse_space(raw: Any, name: str = "space", source: str = "") -> SearchSpace:
    where = f"space {name}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with 'params' (and optional 'fixed')")
    unknown = sorted(set(raw) - {"params", "fixed", "description", "name"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; allowed: name, description, fixed, params"
        )
    fixed = raw.get("fixed") or {}
    params_raw = raw.get("params") or {}
    if not isinstance(fixed, dict) or not isinstance(params_raw, dict):
        raise ConfigError(f"{where}: 'fixed' and 'params' must be mappings of config paths")
    if not params_raw:
        raise ConfigError(f"{where}: 'params' is empty; nothing to search")
    params: list[Param] = []
    for path, spec in params_raw.items():
        params.append(_parse_param(f"{where}: params.{path}", str(path), spec, params, fixed))
    clash = sorted(set(fixed) & set(params_raw))
    if clash:
        raise ConfigError(f"{where}: {clash[0]} is both fixed and searched")
    return SearchSpace(
        name=str(raw.get("name") or name),
        params=tuple(params),
        fixed=dict(fixed),
        description=str(raw.get("description") or ""),
        source=source,
    )


def _parse_param(where: str, path: str, spec: Any, earlier: list[Param], fixed: dict) -> Param:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping like {{float: [low, high]}}, got {spec!r}")
    kinds = [k for k in KINDS if k in spec]
    if len(kinds) != 1:
        raise ConfigError(
            f"{where}: give exactly one of float: [low, high], int: [low, high], choice: [values]"
        )
    kind = kinds[0]
    unknown = sorted(set(spec) - {kind, "log", "when"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {kind}, log, when")
    when = _parse_when(where, spec.get("when"), earlier, fixed)
    if kind == "choice":
        values = spec["choice"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: empty choice; give a non-empty list of values")
        for v in values:
            if not (v is None or isinstance(v, (bool, int, float, str))):
                raise ConfigError(f"{where}: choice {v!r} must be a number, string or bool")
        if len(set(map(json.dumps, values))) != len(values):
            raise ConfigError(f"{where}: choice lists a value twice: {values!r}")
        if spec.get("log"):
            raise ConfigError(f"{where}: log applies to float and int ranges only")
        return Param(path, kind, values=tuple(values), when=when)
    bounds = spec[kind]
    if not (isinstance(bounds, list) and len(bounds) == 2):
        raise ConfigError(f"{where}: expected {kind}: [low, high], got {bounds!r}")
    lo, hi = bounds
    for b in (lo, hi):
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b):
            raise ConfigError(f"{where}: bound {b!r} is not a finite number")
        if kind == "int" and isinstance(b, float) and not b.is_integer():
            raise ConfigError(f"{where}: bound {b!r} of an int range is not an integer")
    if lo >= hi:
        raise ConfigError(f"{where}: empty range [{lo}, {hi}]; low must be below high")
    log = bool(spec.get("log", False))
    if log and lo <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {lo}")
    cast = float if kind == "float" else int
    return Param(path, kind, cast(lo), cast(hi), log, when=when)


def _parse_when(where: str, when: Any, earlier: list[Param], fixed: dict) -> tuple:
    if when is None:
        return ()
    if not isinstance(when, dict) or not when:
        raise ConfigError(f"{where}: 'when' must map earlier parameters to allowed values")
    known = {p.path: p for p in earlier}
    out = []
    for path, allowed in when.items():
        allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        if path in known:
            q = known[path]
            if q.kind != "choice":
                raise ConfigError(
                    f"{where}: 'when' may only test choice parameters; {path} is a range"
                )
            missing = [a for a in allowed if a not in q.values]
            if missing:
                raise ConfigError(
                    f"{where}: when {path} = {missing[0]!r}, but {path} is one of {list(q.values)}"
                )
        elif path in fixed:
            if fixed[path] not in allowed:
                raise ConfigError(
                    f"{where}: never sampled: fixed {path} = {fixed[path]!r} is not "
                    f"one of {list(allowed)}"
                )
        else:
            raise ConfigError(
                f"{where}: 'when' names {path}, which is neither an earlier "
                f"parameter nor a fixed value"
            )
        out.append((str(path), allowed))
    return tuple(out)


# -- configs of trials ---------------------------------------------------------------------


def apply_params(cfg: Config, values: dict[str, Any]) -> Config:
    """``cfg`` with dotted-path values set and validated (ranges, choices, unknown keys).

    Values are set on the plain mapping (not through ``--set`` text), so floats such as
    ``1e-05`` keep their type. Method options belong to their method: a trial of another
    method gets the options kept under its name (or its defaults), never the config's
    method's; options the trial gives directly (``method.options.eta``) are its method's.
    """
    name = values.get("method.name")
    if isinstance(name, str):
        cfg = dataclasses.replace(cfg, method=cfg.method.select(name))
    d = cfg.to_dict()
    for path, value in values.items():
        set_path(d, path.split("."), value, path)
    return from_mapping(Config, d)


def trial_values(space: SearchSpace, params: dict[str, Any]) -> dict[str, Any]:
    """Fixed values plus the active sampled ones (inactive conditionals dropped)."""
    values = dict(space.fixed)
    for p in space.params:
        if p.path in params and p.active(values):
            values[p.path] = params[p.path]
    return values


def trial_config(cfg: Config, space: SearchSpace, params: dict[str, Any]) -> Config:
    return apply_params(cfg, trial_values(space, params))


def validate_space(space: SearchSpace, cfg: Config) -> None:
    """Every parameter must name a config field and every bound / choice must be accepted.

    Each representative value is applied to the config (with its conditions satisfied) and
    the method and agent are built from it, so an unknown path, a bound outside the field's
    range, an unknown method or agent option fails here, before Ray starts.
    """
    _check(space, cfg, dict(space.fixed), "fixed values")
    by_path = {p.path: p for p in space.params}

    def context(p: Param) -> dict[str, Any]:  # conditions hold, transitively
        out: dict[str, Any] = {}
        for cond, allowed in p.when:
            if cond in by_path:
                out.update(context(by_path[cond]))
            out[cond] = allowed[0]
        return out

    for p in space.params:
        ctx = {**space.fixed, **context(p)}
        for v in p.representatives():
            _check(space, cfg, {**ctx, p.path: v}, f"params.{p.path} = {v!r}")


def _check(space: SearchSpace, cfg: Config, values: dict[str, Any], what: str) -> Config:
    try:
        c = apply_params(cfg, values)
        _build_plugins(c)
    except ConfigError as e:
        raise ConfigError(f"space {space.name}: {what}: {e}") from None
    return c


def _build_plugins(cfg: Config) -> None:
    """Construct method and agent (cheap) so their own option validation runs, and check
    that the method suits the configured model family (without building the model)."""
    from types import SimpleNamespace

    from unlearn.agents import get_agent
    from unlearn.families import family_of
    from unlearn.methods import check_compatible, get_method
    from unlearn.task import policy_store

    get_agent(cfg.agent, default_lam=cfg.method.lam, store=policy_store(cfg))
    kind = cfg.model.kind
    conditional = kind in family_of(cfg).conditional_kinds
    check_compatible(get_method(cfg.method), SimpleNamespace(kind=kind, conditional=conditional))


def to_dict(space: SearchSpace) -> dict[str, Any]:
    """Plain data (JSON-safe) that :func:`from_dict` turns back into the space."""
    return json.loads(json.dumps(dataclasses.asdict(space)))


def from_dict(d: dict[str, Any]) -> SearchSpace:
    params = tuple(
        Param(
            **{
                **p,
                "values": tuple(p["values"]),
                "when": tuple((c, tuple(a)) for c, a in p["when"]),
            }
        )
        for p in d["params"]
    )
    return SearchSpace(d["name"], params, dict(d["fixed"]), d["description"], d["source"])
