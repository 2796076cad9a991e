"""Env instances: which class to forget, with which seed (DACBench-style instance sets).
The model family decides what an instance is (a class; on ``t2i`` a digit concept) and how
the task is re-targeted at it (:class:`~unlearn.families.base.Family`).

The forget split, its evaluation data and the base model's evaluation depend only on the
class, so they are built once per class (from the data the env's one
:class:`~unlearn.task.ForgetTask` loaded; the first train instance's is that task's own) and
cached; switching instances re-targets the one :class:`~unlearn.unlearner.Unlearner`
(``set_split``) instead of building a second one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from unlearn.config import Config, ConfigError, instance_key
from unlearn.families import (
    InstanceData,
    check_named_instances,
    family_of,
    instance_forget,
)
from unlearn.metrics import EvalResult
from unlearn.task import ForgetTask
from unlearn.unlearner import Unlearner


@dataclass(frozen=True)
class Instance:
    """One episode's task: forget ``forget_class``; ``seed`` drives batches and noise."""

    #: a class, or a name of ``env.instances``
    forget_class: int | str
    seed: int
    split: str  # "train" | "test" | "custom"


class InstanceBank:
    """Per-class forget splits, evaluation data and base evaluations, built on first use."""

    def __init__(self, cfg: Config, unlearner: Unlearner, task: ForgetTask):
        self.cfg = cfg
        self.unlearner = unlearner
        self.task = task
        self.family = family_of(cfg)
        present = self.family.instance_classes(task)
        for name in ("train_instances", "test_instances"):
            bad = [c for c in getattr(cfg.env, name) if isinstance(c, int) and c not in present]
            if bad:
                raise ConfigError(
                    f"env.{name}: class {bad[0]} is not in the data; present: {present}"
                )
        if not cfg.env.train_instances:
            raise ConfigError("env.train_instances: at least one class is needed")
        self.present = present
        #: each instance's split and evaluation data (and, for a prompted family, the prompt
        #: table its split's labels index)
        self._data: dict[int | str, InstanceData] = {}
        self._base: dict[int | str, EvalResult] = {}
        self._probe: dict[int | str, float] = {}
        self.current: int | str | None = None
        first = cfg.env.train_instances[0]
        for c in (*cfg.env.train_instances, *cfg.env.test_instances):
            self._cfg_for(c)  # a spec the family cannot re-target fails here, before any episode
        check_named_instances(cfg, unlearner.model)
        built = self.family.first_instance(task, self._cfg_for(first))
        if built is not None:
            # the unlearner was built on this instance: no set_split at the first reset
            self._data[first] = built
            self.current = first

    def pool(self, split: str) -> tuple[int | str, ...]:
        if split == "train":
            return self.cfg.env.train_instances
        if split == "test":
            if not self.cfg.env.test_instances:
                raise ConfigError("env.test_instances: empty; no held-out instances to use")
            return self.cfg.env.test_instances
        raise ValueError(f"reset option split={split!r}: expected 'train' or 'test'")

    def check(self, c: int | str) -> int | str:
        """A reset option's instance: a class in the data or a name of ``env.instances``."""
        c = instance_key(c)
        if isinstance(c, str):
            if c not in self.cfg.env.instances:
                named = ", ".join(self.cfg.env.instances) or "none"
                raise ValueError(
                    f"reset option instance={c!r}: not a name of env.instances ({named})"
                )
            return c
        if c not in self.present:
            raise ValueError(f"reset option instance={c!r}: class not in the data {self.present}")
        return c

    def _cfg_for(self, c: int | str) -> Config:
        return dataclasses.replace(self.cfg, forget=instance_forget(self.cfg, c))

    def activate(self, c: int | str) -> None:
        """Point the unlearner at class ``c`` (no-op when it already is)."""
        if c == self.current:
            return
        if c not in self._data:
            self._data[c] = self.family.retarget(self.task, self._cfg_for(c), self.unlearner.model)
        data = self._data[c]
        if data.prompts is not None:  # labels are ids into this instance's prompt table
            prompts, anchor = data.prompts
            model = self.unlearner.model
            if model.prompts[1:] != prompts:
                model.set_prompts(prompts)
            model.anchor_id = anchor
        self.unlearner.set_split(data.split, data.eval_data)
        self.current = c

    def base_eval(self, c: int | str) -> EvalResult:
        """The base model's evaluation for class ``c``; call with the starting weights loaded."""
        if c not in self._base:
            from unlearn.task import base_evaluation

            self._base[c], _ = base_evaluation(self._cfg_for(c), self.unlearner)
        return self._base[c]

    def base_probe(self, c: int | str, n: int) -> float:
        """The base model's forget probe (``n`` fixed-noise samples) for class ``c``; call with
        the starting weights loaded. Deterministic, so measured once per class."""
        if c not in self._probe:
            self._probe[c] = self.unlearner.forget_probe(n)
        return self._probe[c]
