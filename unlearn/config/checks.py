"""Checks that span several fields: bounded number maps (``env.residual``, ``bench.decay``,
``bench.search_steps``),
custom trial resources (``tune.trial_resources``), the held-out instances of the env, and CLIP
evaluation against the model family.

The schema's ``__post_init__`` hooks call them, so a config that fails one never exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from unlearn.config.errors import ConfigError


def check_number_map(
    value: dict,
    where: str,
    spec: dict[str, tuple[float, float, bool]],
    required: Sequence[str],
    missing_hint: str,
) -> dict[str, float]:
    """A mapping of numbers checked against ``spec`` (key: ``(lo, hi, lo_open)``, the allowed
    range ``[lo, hi]`` or ``(lo, hi]``): unknown keys, missing ``required`` keys and values out
    of range raise a ConfigError naming ``where.key``; returns the given keys as floats."""
    unknown = sorted(set(value) - set(spec))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; allowed: {', '.join(spec)}")
    for key in required:
        if key not in value:
            raise ConfigError(f"{where}.{key}: missing; {missing_hint}")
    out = {}
    for key, (lo, hi, lo_open) in spec.items():
        if key not in value:
            continue
        v = value[key]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or not (lo < v if lo_open else lo <= v) or v > hi:
            bounds = f"{'(' if lo_open else '['}{lo}, {hi}]"
            raise ConfigError(f"{where}.{key}: {v!r} is out of range; expected {bounds}")
        out[key] = float(v)
    return out


#: ``env.residual``: the base schedule's start and end, and the width λ may move from it
RESIDUAL_SPEC = {"start": (0.0, 1.0, False), "end": (0.0, 1.0, False), "width": (0.0, 1.0, True)}


def check_residual(value: object, where: str = "env.residual") -> dict[str, float]:
    """A residual λ action's settings ``{start, end, width}`` checked (``{}``: off).

    ``start``, ``end``: the base schedule, λ linear from start to end over the episode's
    T·K steps, both in [0, 1]; ``width`` in (0, 1]: how far the policy may move λ from it.
    """
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {value!r} is not allowed; expected {{start, end, width}}")
    hint = "a residual λ action needs {start, end, width}"
    return check_number_map(value, where, RESIDUAL_SPEC, tuple(RESIDUAL_SPEC), hint)


#: ``bench.search_steps``: the range of ``unlearn.steps`` a baseline search covers
SEARCH_STEPS_SPEC = {"min": (1.0, 1e6, False), "max": (1.0, 1e6, False)}


def check_search_steps(value: object, where: str = "bench.search_steps") -> dict[str, int]:
    """The step budgets a baseline search covers, ``{min, max}`` (whole numbers, 1 <= min <=
    max); ``{}``: the search keeps ``unlearn.steps``."""
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {value!r} is not allowed; expected {{min: N, max: M}}")
    hint = "a step-budget search needs {min: N, max: M}"
    out = check_number_map(value, where, SEARCH_STEPS_SPEC, ("min", "max"), hint)
    for key, v in out.items():
        if v != int(v):
            raise ConfigError(f"{where}.{key}: {value[key]!r} is not a whole number of steps")
    if out["min"] > out["max"]:
        raise ConfigError(f"{where}: min {int(out['min'])} is above max {int(out['max'])}")
    return {k: int(v) for k, v in out.items()}


#: resources Ray itself names: a trial asks for them through tune.cpus_per_trial and
#: tune.gpus_per_trial, or not at all
RAY_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


def check_trial_resources(value: object, where: str = "tune.trial_resources") -> dict[str, float]:
    """Custom Ray resources per trial: ``{name: amount}``, amounts > 0, no Ray-named ones."""
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {value!r} is not allowed; expected {{resource name: amount}}")
    out = {}
    for name, v in value.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: {name!r} is not a resource name")
        if name.lower() in {r.lower() for r in RAY_RESOURCES} or name.startswith("node:"):
            raise ConfigError(
                f"{where}.{name}: Ray's own resource is not allowed here; set "
                "tune.cpus_per_trial / tune.gpus_per_trial, or name a custom resource"
            )
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or not 0 < v <= 1e6:
            raise ConfigError(f"{where}.{name}: {v!r} is out of range; expected (0, 1000000]")
        out[name] = float(v)
    return out


#: forget fields a named instance starts empty (what it forgets): not the config's concept's
INSTANCE_RESET = (
    "classes",
    "indices",
    "concept",
    "prompts",
    "paraphrases",
    "retain_prompts",
    "caption",
    "caption_images",
)


def instance_key(v: int | str) -> int | str:
    """An instance as written in text (YAML, a JSON key, a reset option): "2" is class 2,
    any other text a name."""
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    return v


def check_instance_list(
    field: str, items: Sequence[Any], named: dict[str, Any]
) -> tuple[int | str, ...]:
    """``env.train_instances`` / ``test_instances``: classes (integers) or names of
    ``env.instances``; a number written as text ("2") is the class."""
    out: list[int | str] = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise ConfigError(
                f"{field}: {v!r} is not allowed; expected a class (integer) or a name of "
                "env.instances"
            )
        if isinstance(v, float):
            if not v.is_integer():
                raise ConfigError(f"{field}: {v!r} is not allowed; expected a class (integer)")
            v = int(v)
        if isinstance(v, str):
            v = instance_key(v.strip())
            if isinstance(v, str) and v not in named:
                known = ", ".join(named) or "none defined"
                raise ConfigError(
                    f"{field}: {v!r} is not allowed; it is not a class and not a name of "
                    f"env.instances ({known})"
                )
        if v in out:
            raise ConfigError(f"{field}: {v!r} is listed twice; list each instance once")
        out.append(v)
    return tuple(out)


def check_instance_specs(named: dict[str, Any], forget_fields: Sequence[str]) -> None:
    """``env.instances``: names that are not numbers, each a mapping of forget fields."""
    for name, spec in named.items():
        if not isinstance(name, str) or not name.strip() or isinstance(instance_key(name), int):
            raise ConfigError(
                f"env.instances: {name!r} is not allowed as a name; expected text that is not "
                "a number (numbers are classes)"
            )
        if not isinstance(spec, dict) or not spec:
            raise ConfigError(
                f"env.instances.{name}: {spec!r} is not allowed; expected a mapping of forget "
                "fields, e.g. {concept: thick, prompts: [...]}"
            )
        unknown = sorted(set(spec) - set(forget_fields))
        if unknown:
            raise ConfigError(
                f"env.instances.{name}.{unknown[0]}: unknown key; allowed keys: "
                f"{', '.join(forget_fields)}"
            )


def check_held_out(train: Sequence[int | str], test: Sequence[int | str]) -> None:
    """``env.test_instances`` must not share an instance with ``env.train_instances``."""
    both = [c for c in test if c in train]
    if both:
        raise ConfigError(
            f"env.test_instances: {both[0]!r} is not allowed; it is also in "
            f"env.train_instances {list(train)}, and a held-out instance "
            "must not be trained on"
        )


def check_clip_model(concept_measure: str, clip_model: str) -> None:
    """``eval.concept_measure=clip`` needs ``eval.clip_model``."""
    if concept_measure == "clip" and not clip_model.strip():
        raise ConfigError(
            "eval.clip_model: '' is not allowed with eval.concept_measure=clip; expected "
            "a hub id or a directory of a transformers CLIPModel"
        )


def check_clip_family(concept_measure: str, kind: str, prompt_kinds: Sequence[str]) -> None:
    """CLIP measures text-to-image concepts only (``prompt_kinds``: the kinds that have
    prompts)."""
    if concept_measure == "clip" and kind not in prompt_kinds:
        raise ConfigError(
            f"eval.concept_measure: 'clip' is not allowed with model.kind="
            f"{kind}; expected 'classifier' (CLIP measures t2i concepts)"
        )


def check_data_source(data, forget, ev) -> None:
    """``data.source=generate`` samples the sets from a text-to-image pipeline with the
    forget prompts (and filters with a concept measure that exists)."""
    if data.source != "generate":
        return
    if not [p for p in forget.prompts if p.strip()]:
        raise ConfigError(
            f"forget.prompts: {list(forget.prompts)} is not allowed with data.source=generate; "
            "expected at least one prompt of the concept (the forget set is sampled from them)"
        )
    if forget.caption.strip():
        raise ConfigError(
            f"forget.caption: {forget.caption!r} is not allowed with data.source=generate; "
            "expected '' (a memorised caption is forgotten with its training images)"
        )
    if data.generate.filter == "clip" and not ev.clip_model.strip():
        raise ConfigError(
            "data.generate.filter: 'clip' is not allowed with eval.clip_model=''; expected "
            "none or measure, or a CLIP model in eval.clip_model (hub id or directory)"
        )
    if data.generate.filter == "clip" and not forget.anchor.strip():
        raise ConfigError(
            "data.generate.filter: 'clip' is not allowed with forget.anchor=''; expected none "
            "or measure, or an anchor (CLIP scores the first forget prompt above it)"
        )
