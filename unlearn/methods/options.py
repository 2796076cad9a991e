"""Declared, validated ``method.options``: each method lists its options once (``OPTIONS``).

An unknown key or a value of the wrong type or range raises :class:`OptionError`, a
:class:`~unlearn.config.ConfigError` whose one-line message names ``method.options.<key>``
(``method.options.<method>.<key>`` for options kept under a method's name), the value and
what is allowed, when the method is built (before any work).
"""

from __future__ import annotations

from typing import Any

from unlearn.config import direct_options
from unlearn.options import Opt, unknown_option
from unlearn.options import OptionError as _OptionError

PREFIX = "method.options"

__all__ = ["PREFIX", "Opt", "OptionError", "method_options", "validate_options"]


class OptionError(_OptionError):
    """An invalid method option; ``str()`` names the option, the value and what is allowed."""

    PREFIX = PREFIX


def validate_options(
    spec: dict[str, Opt], options: dict | None, prefix: str = PREFIX
) -> dict[str, Any]:
    """``options`` checked against ``spec``, with every default filled in (errors name
    ``<prefix>.<key>``)."""
    options = dict(options or {})
    unknown_option(spec, options, prefix, "method")
    out = {}
    for k, opt in spec.items():
        try:
            out[k] = opt.check(k, options[k], OptionError) if k in options else opt.default
        except OptionError as e:
            raise (e if prefix == PREFIX else e.under(prefix)) from None
    return out


def method_options(name: str, spec: dict[str, Opt], options: dict | None) -> dict[str, Any]:
    """Method ``name``'s options in a ``method.options`` mapping, checked against ``spec``:
    those under its name (errors name ``method.options.<name>.<key>``), with the ones given
    directly over them (errors name ``method.options.<key>``); every default filled in."""
    options = dict(options or {})
    own = options.get(name)
    direct = direct_options(options)
    out = validate_options(spec, own if isinstance(own, dict) else {}, f"{PREFIX}.{name}")
    out.update({k: v for k, v in validate_options(spec, direct).items() if k in direct})
    return out
