"""Exported policies in the MLflow model registry: register a directory, resolve ``models:/``.

A policy is logged as the artifacts of an MLflow run (``policy/``: the file and its
metadata), registered as a model version whose source is that folder, and given an alias
(``champion``). ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` downloads it back
(:func:`unlearn.export.source.resolve_policy_dir`, which :func:`~unlearn.export.load_policy`
calls). No pickled Python model is involved, so loading one never unpickles anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from unlearn.config import Config, ConfigError
from unlearn.export.source import resolve_policy_dir

__all__ = ["Registered", "register_policy", "resolve_policy_dir"]


@dataclass(frozen=True)
class Registered:
    """A registered policy version."""

    name: str
    version: str
    alias: str
    run_id: str
    source: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


def register_policy(
    cfg: Config, policy_dir: Path, name: str, alias: str = "champion"
) -> Registered:
    """Log ``policy_dir`` to a tracked run, register it as a version of ``name``, set ``alias``."""
    from unlearn.export.policy_file import load_policy
    from unlearn.tracking import Tracker, TrackingError, flatten

    pol = load_policy(policy_dir)  # refuses a broken or mismatched policy before logging it
    if not cfg.tracking.enabled:
        cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, enabled=True))
    tracker = Tracker(cfg, run_name=f"policy-{name}", tags={"unlearn.policy": name})
    try:
        meta = pol.meta
        tracker.log_params(
            flatten(
                {
                    k: meta[k]
                    for k in ("algorithm", "format", "steps_per_decision", "source_checkpoint")
                    if k in meta
                },
                "policy.",
            )
        )
        tracker.log_artifacts(policy_dir, "policy")
        mv = tracker.register_model(
            name, "policy", alias, tags={"format": pol.format}, description="unlearn λ policy"
        )
        tracker.end("FINISHED")
    except TrackingError as e:
        tracker.end("FAILED")
        raise ConfigError(f"policy register: {e}") from None
    return Registered(name, mv.version, alias, tracker.run_id, mv.source)
