"""Declared, validated ``agent.options``: each agent lists its options once (``OPTIONS``).

The factory checks a user's mapping against that declaration before anything is built:
an unknown key or a value of the wrong type or range raises :class:`OptionError`, a
:class:`~unlearn.config.ConfigError` whose message names ``agent.options.<key>``, the value
and what is allowed. Constructors raise the same error for checks that need several options
at once (a step schedule's ``values`` must be one longer than its ``boundaries``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from unlearn.config import ConfigError

#: Default of options that fall back to ``method.lam`` (filled in by the factory).
DEFAULT_LAM = "<method.lam>"


class OptionError(ConfigError):
    """An invalid agent option; ``str()`` is one line naming the option, value and allowed."""

    def __init__(self, key: str, value: Any, allowed: str, prefix: str = "agent.options"):
        self.key, self.value, self.allowed, self.prefix = key, value, allowed, prefix
        super().__init__(f"{prefix}.{key}: {value!r} is not allowed; expected {allowed}")

    def under(self, prefix: str) -> OptionError:
        """The same error for an agent nested under ``prefix`` (the hybrid's coarse agent)."""
        return OptionError(self.key, self.value, self.allowed, prefix)


@dataclass(frozen=True)
class Opt:
    """One option: default, documentation, type and allowed range or choices.

    Args:
        default: value when the option is absent (``DEFAULT_LAM`` = ``method.lam``).
        doc: one line for help text.
        kind: ``float``, ``int``, ``bool``, ``str``, ``list`` or ``dict``.
        lo: inclusive lower bound of numbers.
        hi: inclusive upper bound of numbers.
        lo_open: the lower bound itself is excluded (``beta`` > 0).
        choices: allowed values of strings.
        optional: ``None`` is allowed (and then means "not set").
    """

    default: Any
    doc: str = ""
    kind: type = float
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    choices: tuple[str, ...] | None = None
    optional: bool = False

    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        if self.kind in (list, dict):
            return "a list" if self.kind is list else "a mapping"
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            return "a string"
        what = "an integer" if self.kind is int else "a number"
        left = "(" if self.lo_open else "["
        if self.lo is not None and self.hi is not None:
            what = f"{what} in {left}{self.lo}, {self.hi}]"
        elif self.lo is not None:
            what = f"{what} {'>' if self.lo_open else '>='} {self.lo}"
        elif self.hi is not None:
            what = f"{what} <= {self.hi}"
        return what + (" or null" if self.optional else "")

    def check(self, key: str, value: Any) -> Any:
        """The value converted to ``kind``, or :class:`OptionError`."""
        if value is None and self.optional:
            return None
        bad = OptionError(key, value, self.allowed())
        if self.kind is bool:
            if not isinstance(value, bool):
                raise bad
            return value
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad
            if self.kind is int:
                if isinstance(value, float) and not value.is_integer():
                    raise bad
                value = int(value)
            else:
                value = float(value)
            if not math.isfinite(value):
                raise bad
            if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
                raise bad
            if self.hi is not None and value > self.hi:
                raise bad
            return value
        if self.kind is str:
            if not isinstance(value, str) or (
                self.choices is not None and value not in self.choices
            ):
                raise bad
            return value
        if self.kind is list:
            if not isinstance(value, (list, tuple)):
                raise bad
            return list(value)
        if self.kind is dict:
            if not isinstance(value, dict):
                raise bad
            return dict(value)
        raise TypeError(f"unsupported option kind {self.kind!r}")  # a bug in an OPTIONS table


def validate_options(
    spec: dict[str, Opt], options: dict | None, default_lam: float, prefix: str = "agent.options"
) -> dict[str, Any]:
    """``options`` checked against ``spec``, with every default filled in."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(spec))
    if unknown:
        allowed = ", ".join(sorted(spec)) or "none (this agent takes no options)"
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown option; allowed options: {allowed}")
    out: dict[str, Any] = {}
    for key, opt in spec.items():
        if key in options:
            try:
                out[key] = opt.check(key, options[key])
            except OptionError as e:
                raise e.under(prefix) from None
        else:
            out[key] = default_lam if opt.default == DEFAULT_LAM else opt.default
    return out


def check_lam(key: str, value: Any, lo: float = 0.0, hi: float = 1.0) -> float:
    """A λ-like number in [lo, hi] or :class:`OptionError` (for constructors and lists)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not lo <= value <= hi:
        raise OptionError(key, value, f"a number in [{lo}, {hi}]")
    return float(value)
