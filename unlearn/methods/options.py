"""Declared, validated ``method.options``: each method lists its options once (``OPTIONS``).

An unknown key or a value of the wrong type or range raises :class:`OptionError`, a
:class:`~unlearn.config.ConfigError` whose one-line message names ``method.options.<key>``,
the value and what is allowed, when the method is built (before any work).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from unlearn.config import ConfigError

PREFIX = "method.options"


class OptionError(ConfigError):
    """An invalid method option; ``str()`` names the option, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{PREFIX}.{key}: {value!r} is not allowed; expected {allowed}")


@dataclass(frozen=True)
class Opt:
    """One option: default, documentation, type and allowed range or choices.

    Args:
        default: value when the option is absent.
        doc: one line for help text.
        kind: ``float``, ``int``, ``bool``, ``str`` or ``list``.
        lo: inclusive lower bound of numbers (exclusive with ``lo_open``).
        hi: inclusive upper bound of numbers (exclusive with ``hi_open``).
        lo_open: the lower bound itself is excluded.
        hi_open: the upper bound itself is excluded.
        choices: allowed values of strings.
        optional: ``None`` is allowed (and then means "not set").
    """

    default: Any
    doc: str = ""
    kind: type = float
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    optional: bool = False

    def allowed(self) -> str:
        if self.choices is not None:
            what = "one of " + ", ".join(self.choices)
        elif self.kind is list:
            what = "a list"
        elif self.kind is bool:
            what = "true or false"
        elif self.kind is str:
            what = "a string"
        else:
            what = "an integer" if self.kind is int else "a number"
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            if self.lo is not None and self.hi is not None:
                what += f" in {left}{self.lo}, {self.hi}{right}"
            elif self.lo is not None:
                what += f" {'>' if self.lo_open else '>='} {self.lo}"
            elif self.hi is not None:
                what += f" {'<' if self.hi_open else '<='} {self.hi}"
        return what + (" or null" if self.optional else "")

    def check(self, key: str, value: Any) -> Any:
        """``value`` converted to ``kind``, or :class:`OptionError`."""
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
            if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
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
        raise TypeError(f"unsupported option kind {self.kind!r}")  # a bug in an OPTIONS table


def validate_options(spec: dict[str, Opt], options: dict | None) -> dict[str, Any]:
    """``options`` checked against ``spec``, with every default filled in."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(spec))
    if unknown:
        allowed = ", ".join(sorted(spec)) or "none (this method takes no options)"
        raise ConfigError(
            f"{PREFIX}.{unknown[0]}: unknown option {unknown[0]!r}; allowed options: {allowed}"
        )
    return {k: opt.check(k, options[k]) if k in options else opt.default for k, opt in spec.items()}
