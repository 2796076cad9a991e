"""Config from YAML and ``--set section.field=value`` overrides: parsing, coercion to the
schema's types and range checks, with one-line :class:`ConfigError` messages.

``load_config`` (files) and ``with_overrides`` (a loaded config) are what commands call;
``from_mapping`` and ``set_path`` are shared with the tuners' trial parameters.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from unlearn.config.checks import INSTANCE_RESET
from unlearn.config.errors import ConfigError
from unlearn.config.schema import (
    MODEL_FAMILIES,
    MODEL_KINDS,
    Config,
    ForgetConfig,
    MethodConfig,
    pin_options,
)


def _allowed(f: dataclasses.Field) -> str:
    m = f.metadata
    if m.get("choices") is MODEL_KINDS:  # model.kind: the kinds, by family
        return "one of " + ", ".join(f"{n} ({', '.join(k)})" for n, k in MODEL_FAMILIES.items())
    if m.get("choices"):
        return "one of " + ", ".join(map(str, m["choices"]))
    lo, hi = m.get("lo"), m.get("hi")
    if lo is not None and hi is not None:
        return f"a value in [{lo}, {hi}]"
    if lo is not None:
        return f"a value >= {lo}"
    if hi is not None:
        return f"a value <= {hi}"
    return ""


def _coerce(path: str, tp: Any, value: Any) -> Any:
    """Convert a YAML value to the annotated type or raise ConfigError."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return from_mapping(tp, value, path)
    if origin in (tuple, list):
        (inner, *_) = typing.get_args(tp) or (Any,)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return tuple(_coerce(f"{path}[{i}]", inner, v) for i, v in enumerate(value))
    if tp is dict or origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return str(value)
    if origin in (typing.Union, types.UnionType):
        return value
    return value


def from_mapping(cls: type, values: dict, prefix: str = "") -> Any:
    """Dataclass ``cls`` from a plain mapping, validating every field (nested sections too)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{where}: unknown key; allowed keys: {', '.join(fields)}")
    kwargs = {}
    for name, value in values.items():
        f = fields[name]
        path = f"{prefix}.{name}" if prefix else name
        v = _coerce(path, hints[name], value)
        m = f.metadata
        if m.get("choices") is not None:  # a tuple field: each of its items
            bad = [x for x in (v if isinstance(v, tuple) else (v,)) if x not in m["choices"]]
            if bad:
                raise ConfigError(f"{path}: {bad[0]!r} is not allowed; expected {_allowed(f)}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            lo, hi = m.get("lo"), m.get("hi")
            if (lo is not None and v < lo) or (hi is not None and v > hi) or v != v:
                raise ConfigError(f"{path}: {v!r} is out of range; expected {_allowed(f)}")
        kwargs[name] = v
    out = cls(**kwargs)
    if cls is Config:  # each named instance's forget section validates as a forget section
        for name in out.env.instances:
            named_forget(out.forget, out.env.instances, name)
    return out


def named_forget(forget: ForgetConfig, named: dict[str, dict], name: str) -> ForgetConfig:
    """The forget section of the named instance ``name`` of ``env.instances``: its fields
    over ``forget``'s, with what to forget and the retain prompts starting empty."""
    base = {k: v for k, v in dataclasses.asdict(forget).items() if k not in INSTANCE_RESET}
    return from_mapping(ForgetConfig, {**base, **named[name]}, f"env.instances.{name}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], parsed YAML value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.field=value")
    key, raw = text.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"--set {text!r}: empty field name")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {yaml_problem(e)}") from None
    return keys, value


def set_path(values: dict, keys: Sequence[str], value: Any, where: str) -> None:
    """``values[k0][k1]...[kn] = value`` in place, creating missing sections.

    ``where`` names the setting in the error when a key on the way is not a section. Shared
    by ``--set`` overrides and the tuners' trial parameters.
    """
    node = values
    for k in keys[:-1]:
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{where}: {k} is not a section")
        node = nxt
    node[keys[-1]] = value


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """A copy of ``values`` with ``--set section.field=value`` overrides applied (unvalidated).

    Method options given directly in ``values`` belong to ``values``' method: when the
    overrides select another one, they move under the old method's name first (so
    ``--set method.name=fdiv`` does not hand ESD's ``eta`` to fdiv). Options the overrides
    give directly belong to the method they select.
    """
    out = _with(values, overrides)
    before, after = _method_name(values), _method_name(out)
    if before != after and isinstance(values.get("method"), dict):
        method = values["method"]
        if isinstance(method.get("options"), dict):
            pinned = {**method, "options": pin_options(method["options"], before)}
            out = _with({**values, "method": pinned}, overrides)
    return out


def _with(values: dict, overrides: list[str]) -> dict:
    out = json.loads(json.dumps(values))  # deep copy of plain data
    for text in overrides:
        keys, value = parse_override(text)
        set_path(out, keys, value, f"--set {'.'.join(keys)}")
    return out


def _method_name(values: dict) -> Any:
    method = values.get("method")
    name = method.get("name") if isinstance(method, dict) else None
    return MethodConfig.name if name is None else name


def yaml_problem(e: Exception) -> str:
    """A PyYAML error as ``line L, column C: problem`` on one line (its own text pastes the
    source with a caret over several lines)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).strip().splitlines()[-1]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    ctx, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
    if ctx and cmark is not None:
        problem += f" ({ctx} at line {cmark.line + 1}, column {cmark.column + 1})"
    return where + problem


def read_yaml(path: str | Path, what: str) -> Any:
    """The YAML document in ``path``; any failure is a one-line ConfigError naming ``what``,
    the file and, for a syntax error, its line, column and problem."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"{what}: {str(p)!r} is a directory, not a YAML file")
    if not p.is_file():
        raise ConfigError(f"{what}: file {str(p)!r} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what}: {p} is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{what}: cannot read {p} ({e.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{what}: {p} is not valid YAML at {yaml_problem(e)}") from None


def default_config_path() -> Path:
    """The embedded demo config (``configs/demo.yaml`` ships inside the package)."""
    return Path(__file__).parents[1] / "assets" / "demo.yaml"


def _read_config(p: Path, seen: tuple[Path, ...]) -> dict:
    """A config file's mapping; ``extends: BASE.yaml`` (relative to the file), or a list of
    them merged in order, is read first and the file's sections merge over it, key by key
    (lists and values replace)."""
    values = read_yaml(p, "config") or {}
    if not isinstance(values, dict):
        raise ConfigError(f"config: {p} must hold a mapping at the top level")
    bases = values.pop("extends", None)
    if bases is None:
        return values
    here = p.expanduser().resolve()
    merged: dict = {}
    bases = bases if isinstance(bases, list) and bases else [bases]
    for base in bases:
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(
                f"extends: {base!r} in {p} is not allowed; expected a YAML file path or a "
                "list of them"
            )
    for base in bases:
        target = (here.parent / base).resolve()
        if target in seen or target == here:
            raise ConfigError(
                f"extends: {base!r} in {p} is not allowed; the files extend each other"
            )
        merged = _merged(merged, _read_config(target, (*seen, here)))
    return _merged(merged, values)


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply ``--set`` overrides.

    Relative ``workdir`` resolves against the current directory, so every later path is
    absolute (Tune trials and Ray jobs change their working directory).
    """
    values = _read_config(Path(path), ()) if path is not None else {}
    values = apply_overrides(values, overrides or [])
    cfg = from_mapping(Config, values)
    return dataclasses.replace(cfg, workdir=str(cfg.workdir_path))


def with_overrides(cfg: Config, overrides: list[str]) -> Config:
    """A new config with ``--set`` style overrides applied and validated."""
    return from_mapping(Config, apply_overrides(cfg.to_dict(), overrides))
