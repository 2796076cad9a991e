"""Exported policies in the MLflow model registry: register a directory, resolve ``models:/``.

A policy is logged as the artifacts of an MLflow run (``policy/``: the file and its
metadata), registered as a model version whose source is that folder, and given an alias
(``champion``). ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` downloads it back. No
pickled Python model is involved, so loading one never unpickles anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from unlearn.config import Config, ConfigError


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


def resolve_policy_dir(path: str, tracking_uri: str = "") -> Path:
    """A local policy directory for ``path`` (a directory, or a ``models:/`` registry URI)."""
    if path.startswith("models:/"):
        from unlearn.tracking import download

        return download(path, tracking_uri)
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ConfigError(f"policy: {path!r} is not a directory (expected an exported policy)")
    return p.resolve()


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
        tracker.log_params(flatten({k: meta[k] for k in ("algorithm", "format",
                                                        "steps_per_decision", "source_checkpoint")
                                    if k in meta}, "policy."))  # fmt: skip
        tracker.log_artifacts(policy_dir, "policy")
        mv = tracker.register_model(name, "policy", alias, tags={"format": pol.format},
                                    description="unlearn λ policy")  # fmt: skip
        tracker.end("FINISHED")
    except TrackingError as e:
        tracker.end("FAILED")
        raise ConfigError(f"policy register: {e}") from None
    return Registered(name, mv.version, alias, tracker.run_id, mv.source)
