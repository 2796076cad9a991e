"""Declared, validated ``options`` mappings: methods and agents list theirs once (``OPTIONS``).

An unknown key or a value of the wrong type or range raises an :class:`OptionError`, a
:class:`~unlearn.config.ConfigError` whose one-line message names ``<prefix>.<key>``, the
value and what is allowed, before anything is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from unlearn.config import ConfigError


class OptionError(ConfigError):
    """An invalid option; ``str()`` is one line naming the option, the value and what is allowed.

    Subclasses set ``PREFIX`` (``method.options``, ``agent.options``).
    """

    PREFIX: ClassVar[str] = "options"

    def __init__(self, key: str, value: Any, allowed: str, prefix: str | None = None):
        self.key, self.value, self.allowed = key, value, allowed
        self.prefix = prefix or self.PREFIX
        super().__init__(f"{self.prefix}.{key}: {value!r} is not allowed; expected {allowed}")

    def under(self, prefix: str) -> OptionError:
        """The same error reported under another prefix (a nested agent's options)."""
        return type(self)(self.key, self.value, self.allowed, prefix)


@dataclass(frozen=True)
class Opt:
    """One option: default, documentation, type and allowed range or choices.

    Args:
        default: value when the option is absent.
        doc: one line for help text.
        kind: ``float``, ``int``, ``bool``, ``str``, ``list`` or ``dict``.
        lo: inclusive lower bound of numbers (exclusive with ``lo_open``).
        hi: inclusive upper bound of numbers (exclusive with ``hi_open``).
        lo_open: the lower bound itself is excluded.
        hi_open: the upper bound itself is excluded.
        choices: allowed values of strings.
        optional: ``None`` is allowed (and then means "not set").
        search: what ``unlearn bench --tune-baselines`` searches besides λ: a (lo, hi)
            range of a number, or the choices of a string; None: the option keeps its
            configured value in a search.
        search_log: search a number's range on a log scale.
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
    search: tuple | None = None
    search_log: bool = False

    def suggest(self, trial: Any, key: str) -> Any:
        """An Optuna trial's value of this option (it must have ``search``)."""
        if self.kind is str:
            return trial.suggest_categorical(key, list(self.search))
        lo, hi = self.search
        if self.kind is int:
            return trial.suggest_int(key, int(lo), int(hi), log=self.search_log)
        return trial.suggest_float(key, float(lo), float(hi), log=self.search_log)

    def allowed(self) -> str:
        if self.choices is not None:
            what = "one of " + ", ".join(self.choices)
        elif self.kind in (list, dict):
            what = "a list" if self.kind is list else "a mapping"
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

    def check(self, key: str, value: Any, error: type[OptionError] = OptionError) -> Any:
        """``value`` converted to ``kind``, or ``error`` (an :class:`OptionError`)."""
        if value is None and self.optional:
            return None
        bad = error(key, value, self.allowed())
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
        if self.kind in (list, dict):
            ok = isinstance(value, (list, tuple)) if self.kind is list else isinstance(value, dict)
            if not ok:
                raise bad
            return self.kind(value)
        raise TypeError(f"unsupported option kind {self.kind!r}")  # a bug in an OPTIONS table


def unknown_option(spec: dict[str, Opt], options: dict, prefix: str, owner: str) -> None:
    """Raise :class:`ConfigError` for the first key of ``options`` that ``spec`` lacks."""
    unknown = sorted(set(options) - set(spec))
    if unknown:
        allowed = ", ".join(sorted(spec)) or f"none (this {owner} takes no options)"
        raise ConfigError(
            f"{prefix}.{unknown[0]}: unknown option {unknown[0]!r}; allowed options: {allowed}"
        )
