"""Declared, validated ``method.options``: each method lists its options once (``OPTIONS``).

An unknown key or a value of the wrong type or range raises :class:`OptionError`, a
:class:`~unlearn.config.ConfigError` whose one-line message names ``method.options.<key>``,
the value and what is allowed, when the method is built (before any work).
"""

from __future__ import annotations

from typing import Any

from unlearn.options import Opt, unknown_option
from unlearn.options import OptionError as _OptionError

PREFIX = "method.options"

__all__ = ["PREFIX", "Opt", "OptionError", "validate_options"]


class OptionError(_OptionError):
    """An invalid method option; ``str()`` names the option, the value and what is allowed."""

    PREFIX = PREFIX


def validate_options(spec: dict[str, Opt], options: dict | None) -> dict[str, Any]:
    """``options`` checked against ``spec``, with every default filled in."""
    options = dict(options or {})
    unknown_option(spec, options, PREFIX, "method")
    return {
        k: opt.check(k, options[k], OptionError) if k in options else opt.default
        for k, opt in spec.items()
    }
