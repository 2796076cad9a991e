"""The one error type of configuration and input problems (every layer raises it)."""

from __future__ import annotations


class ConfigError(ValueError):
    """Invalid configuration or input; the CLI turns it into exit code 2 and one line."""
