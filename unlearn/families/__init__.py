"""Model families behind one protocol: the one way to ask what kind of model a config, a
saved directory or a loaded model holds.

:data:`FAMILIES` maps each family's name to its implementation of
:class:`~unlearn.families.base.Family`; :func:`family_of` (a config),
:func:`family_of_dir` (a saved model directory) and :func:`family_of_model` (a loaded
model) all answer through it. Adding a family is a folder under ``families/`` and one line
here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from unlearn.config import Config, ConfigError, ForgetConfig, named_forget
from unlearn.families.base import EvalReport, Family, InstanceData, Setup, check_result
from unlearn.families.i2i import I2I
from unlearn.families.image import IMAGE
from unlearn.families.sdxl import SDXL
from unlearn.families.t2i import T2I

#: every family by name; the kinds each serves are its ``kinds``
FAMILIES: dict[str, Family] = {
    IMAGE.name: IMAGE,
    T2I.name: T2I,
    SDXL.name: SDXL,
    I2I.name: I2I,
}


def families_text() -> str:
    """``image (ddpm, cond_ddpm, vpsde, vae), t2i (t2i)``: the families and their kinds."""
    return ", ".join(f"{n} ({', '.join(f.kinds)})" for n, f in FAMILIES.items())


def family_of_kind(kind: str) -> Family:
    """The family serving ``model.kind = kind``; ConfigError naming the families otherwise."""
    for family in FAMILIES.values():
        if kind in family.kinds:
            return family
    raise ConfigError(f"model.kind: {kind!r} is not allowed; expected one of {families_text()}")


def family_of(cfg: Config) -> Family:
    """The family of ``cfg.model.kind``."""
    return family_of_kind(cfg.model.kind)


def instance_forget(cfg: Config, c: int | str) -> ForgetConfig:
    """The forget section of env / bench instance ``c``: a name of ``env.instances`` (its
    own fields) or a class, which the family turns into a forget spec (on t2i: the config's
    digit concept exchanged for ``c``)."""
    if isinstance(c, str):
        return named_forget(cfg.forget, cfg.env.instances, c)
    return family_of(cfg).instance_forget(cfg.forget, c)


def check_named_instances(cfg: Config, model: torch.nn.Module) -> None:
    """Every named instance of ``env.train_instances`` / ``test_instances`` must be something
    the model can forget and the family can measure; one line naming the instance otherwise."""
    family = family_of(cfg)
    for c in (*cfg.env.train_instances, *cfg.env.test_instances):
        if isinstance(c, str):
            try:
                family.check_instance(
                    dataclasses.replace(cfg, forget=instance_forget(cfg, c)), model
                )
            except ConfigError as e:
                raise ConfigError(f"env.instances.{c}: {e}") from None


def instance_label(c: int | str) -> str:
    """A short label of an instance for names and tables: c2 for a class, the name otherwise."""
    return f"c{c}" if isinstance(c, int) else str(c)


def family_of_dir(path: str | Path) -> Family | None:
    """The family whose saved model ``path`` holds, or None when none recognises it."""
    p = Path(path).expanduser()
    if not p.is_dir():
        return None
    for family in FAMILIES.values():
        if family.owns_dir(p):
            return family
    return None


def family_of_model(model: torch.nn.Module) -> Family | None:
    """The family of a loaded model, or None (a classifier, a bare module)."""
    for family in FAMILIES.values():
        if family.owns_model(model):
            return family
    return None


__all__ = [
    "FAMILIES",
    "EvalReport",
    "Family",
    "InstanceData",
    "Setup",
    "check_result",
    "families_text",
    "family_of",
    "family_of_dir",
    "family_of_kind",
    "family_of_model",
    "check_named_instances",
    "instance_forget",
    "instance_label",
]
