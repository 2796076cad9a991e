"""Env instances: which class to forget, with which seed (DACBench-style instance sets).
On ``t2i`` an instance is a digit concept (:func:`~unlearn.data.prompts.instance_forget`).

The forget split, its evaluation data and the base model's evaluation depend only on the
class, so they are built once per class (from the data the env's one
:class:`~unlearn.task.ForgetTask` loaded; the first train instance's is that task's own) and
cached; switching instances re-targets the one :class:`~unlearn.unlearner.Unlearner`
(``set_split``) instead of building a second one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from unlearn.config import Config, ConfigError
from unlearn.data import ForgetSplit
from unlearn.data.prompts import instance_forget
from unlearn.metrics import EvalData, EvalResult
from unlearn.task import ForgetTask, retarget
from unlearn.unlearner import Unlearner


@dataclass(frozen=True)
class Instance:
    """One episode's task: forget ``forget_class``; ``seed`` drives batches and noise."""

    forget_class: int
    seed: int
    split: str  # "train" | "test" | "custom"


class InstanceBank:
    """Per-class forget splits, evaluation data and base evaluations, built on first use."""

    def __init__(self, cfg: Config, unlearner: Unlearner, task: ForgetTask):
        self.cfg = cfg
        self.unlearner = unlearner
        self.task = task
        self.t2i = cfg.model.kind == "t2i"
        if self.t2i:
            from unlearn.data.captions import DIGIT_WORDS

            present = list(range(len(DIGIT_WORDS)))
        else:
            present = sorted(int(c) for c in task.splits.train.labels.unique() if int(c) >= 0)
        for name in ("train_instances", "test_instances"):
            bad = [c for c in getattr(cfg.env, name) if c not in present]
            if bad:
                raise ConfigError(
                    f"env.{name}: class {bad[0]} is not in the data; present: {present}"
                )
        if not cfg.env.train_instances:
            raise ConfigError("env.train_instances: at least one class is needed")
        self.present = present
        self._data: dict[int, tuple[ForgetSplit, EvalData]] = {}
        self._base: dict[int, EvalResult] = {}
        self._probe: dict[int, float] = {}
        #: t2i: each instance's prompt table (its split's labels are ids into it) and anchor
        self._tables: dict[int, tuple[list[str], int]] = {}
        self.current: int | None = None
        first = cfg.env.train_instances[0]
        if self.t2i:
            # the unlearner was built on the first instance's concept (env_config)
            for c in (*cfg.env.train_instances, *cfg.env.test_instances):
                self._cfg_for(c)  # a non-digit concept fails here, before any episode
            self._data[first] = (task.data.split, task.eval_data)
            self._tables[first] = (list(task.model.prompts[1:]), task.model.anchor_id)
            self.current = first
        elif task.cfg.forget == self._cfg_for(first).forget:
            # the unlearner was built on this split: no set_split at the first reset
            self._data[first] = (task.split, task.eval_data)
            self.current = first

    def pool(self, split: str) -> tuple[int, ...]:
        if split == "train":
            return self.cfg.env.train_instances
        if split == "test":
            if not self.cfg.env.test_instances:
                raise ConfigError("env.test_instances: empty; no held-out instances to use")
            return self.cfg.env.test_instances
        raise ValueError(f"reset option split={split!r}: expected 'train' or 'test'")

    def check(self, c: int) -> int:
        if c not in self.present:
            raise ValueError(f"reset option instance={c!r}: class not in the data {self.present}")
        return c

    def _cfg_for(self, c: int) -> Config:
        return dataclasses.replace(
            self.cfg, forget=instance_forget(self.cfg.forget, self.cfg.model.kind, c)
        )

    def activate(self, c: int) -> None:
        """Point the unlearner at class ``c`` (no-op when it already is)."""
        if c == self.current:
            return
        if c not in self._data and self.t2i:
            from unlearn.t2i_task import retarget_t2i

            t = retarget_t2i(self.task, self._cfg_for(c))
            self._data[c] = (t.data.split, t.eval_data)
            self._tables[c] = (list(t.model.prompts[1:]), t.model.anchor_id)
        elif c not in self._data:
            t = retarget(self.task, self._cfg_for(c), self.unlearner.model)
            self._data[c] = (t.split, t.eval_data)
        if self.t2i:
            prompts, anchor = self._tables[c]
            model = self.unlearner.model
            if model.prompts[1:] != prompts:
                model.set_prompts(prompts)
            model.anchor_id = anchor
        split, eval_data = self._data[c]
        self.unlearner.set_split(split, eval_data)
        self.current = c

    def base_eval(self, c: int) -> EvalResult:
        """The base model's evaluation for class ``c``; call with the starting weights loaded."""
        if c not in self._base:
            self._base[c], _ = self.unlearner.evaluate()
        return self._base[c]

    def base_probe(self, c: int, n: int) -> float:
        """The base model's forget probe (``n`` fixed-noise samples) for class ``c``; call with
        the starting weights loaded. Deterministic, so measured once per class."""
        if c not in self._probe:
            self._probe[c] = self.unlearner.forget_probe(n)
        return self._probe[c]
