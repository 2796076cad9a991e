"""Declared, validated ``agent.options``: each agent lists its options once (``OPTIONS``).

The factory checks a user's mapping against that declaration before anything is built:
an unknown key or a value of the wrong type or range raises :class:`OptionError`, a
:class:`~unlearn.config.ConfigError` whose message names ``agent.options.<key>``, the value
and what is allowed. Constructors raise the same error for checks that need several options
at once (a step schedule's ``values`` must be one longer than its ``boundaries``).
"""

from __future__ import annotations

import math
from typing import Any

from unlearn.options import Opt, unknown_option
from unlearn.options import OptionError as _OptionError

__all__ = ["DEFAULT_LAM", "Opt", "OptionError", "check_lam", "validate_options"]

#: Default of options that fall back to ``method.lam`` (filled in by the factory).
DEFAULT_LAM = "<method.lam>"


class OptionError(_OptionError):
    """An invalid agent option; ``str()`` is one line naming the option, value and allowed."""

    PREFIX = "agent.options"


def validate_options(
    spec: dict[str, Opt], options: dict | None, default_lam: float, prefix: str = "agent.options"
) -> dict[str, Any]:
    """``options`` checked against ``spec``, with every default filled in."""
    options = dict(options or {})
    unknown_option(spec, options, prefix, "agent")
    out: dict[str, Any] = {}
    for key, opt in spec.items():
        if key in options:
            try:
                out[key] = opt.check(key, options[key], OptionError)
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
