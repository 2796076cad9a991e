"""Typed, validated experiment configuration.

A config is a tree of frozen dataclasses (:mod:`~unlearn.config.schema`) loaded from YAML with
``--set section.field=value`` overrides (:mod:`~unlearn.config.loader`). Every field carries
its allowed range or choices in ``metadata``; invalid input raises :class:`ConfigError`
naming the field, the value and what is allowed, before any work. Checks that span several
fields live in :mod:`~unlearn.config.checks`.
"""

from __future__ import annotations

from unlearn.config.checks import RESIDUAL_SPEC, check_number_map, check_residual, instance_key
from unlearn.config.errors import ConfigError
from unlearn.config.loader import (
    apply_overrides,
    default_config_path,
    from_mapping,
    load_config,
    named_forget,
    parse_override,
    read_yaml,
    set_path,
    with_overrides,
    yaml_problem,
)
from unlearn.config.schema import (
    DATASETS,
    MODEL_FAMILIES,
    MODEL_KINDS,
    PROMPT_KINDS,
    T2I_TRAIN,
    AgentConfig,
    AuditConfig,
    BenchConfig,
    Config,
    DataConfig,
    EnvConfig,
    EvalConfig,
    ForgetConfig,
    GuardConfig,
    I2IConfig,
    MemoriseConfig,
    MethodConfig,
    ModelConfig,
    OutlierConfig,
    PretrainConfig,
    RLConfig,
    T2IConfig,
    TrackingConfig,
    TuneConfig,
    UnlearnConfig,
    digest_of,
    direct_options,
    options_of,
    pin_options,
)

__all__ = [
    "DATASETS",
    "MODEL_FAMILIES",
    "PROMPT_KINDS",
    "MODEL_KINDS",
    "RESIDUAL_SPEC",
    "T2I_TRAIN",
    "AgentConfig",
    "AuditConfig",
    "BenchConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EnvConfig",
    "EvalConfig",
    "ForgetConfig",
    "MemoriseConfig",
    "MethodConfig",
    "ModelConfig",
    "OutlierConfig",
    "PretrainConfig",
    "RLConfig",
    "I2IConfig",
    "T2IConfig",
    "TrackingConfig",
    "TuneConfig",
    "UnlearnConfig",
    "GuardConfig",
    "apply_overrides",
    "check_number_map",
    "check_residual",
    "default_config_path",
    "digest_of",
    "direct_options",
    "instance_key",
    "named_forget",
    "from_mapping",
    "load_config",
    "options_of",
    "parse_override",
    "pin_options",
    "read_yaml",
    "set_path",
    "with_overrides",
    "yaml_problem",
]
