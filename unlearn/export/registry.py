"""Exported policies in the MLflow model registry: register a directory, resolve ``models:/``.

A policy is logged as an MLflow model with the ONNX flavour (``mlflow.onnx``; a TorchScript
policy is converted first, :mod:`unlearn.export.onnx_model`): ``model.onnx``, a signature
built from the observation layout in the policy's metadata (``obs``: float32, batch x the
layout's width; ``action``: float32, batch x the action's width), and the metadata itself
beside it (``extra_files/metadata.json``). The version is registered under ``NAME`` and given
an alias (``champion``). So ``mlflow.pyfunc.load_model("models:/NAME@ALIAS").predict(obs)``
gives the policy's actions, and ``agent.path=models:/NAME@ALIAS`` downloads the model back
(:func:`unlearn.export.source.resolve_policy_dir`) and runs ``model.onnx`` with onnxruntime.
No pickled Python object is involved, so loading one never unpickles anything.
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
    import tempfile

    from unlearn.export.onnx_model import onnx_policy
    from unlearn.export.policy_file import METADATA, load_policy, write_metadata
    from unlearn.tracking import Tracker, TrackingError, flatten

    pol = load_policy(policy_dir)  # refuses a broken or mismatched policy before logging it
    model = onnx_policy(pol.path.parent, pol.meta)  # a TorchScript policy: converted, checked
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
        with tempfile.TemporaryDirectory(prefix="unlearn-policy-") as tmp:
            write_metadata(Path(tmp), model.meta)
            model_id = tracker.log_onnx_model(
                model.model,
                "policy",
                inputs={model.input_name: model.obs_dim},
                outputs={model.output_name: model.act_dim},
                extra_files=[Path(tmp) / METADATA],
            )
        mv = tracker.register_model(
            name,
            "policy",
            alias,
            tags={"format": "onnx", "exported_format": pol.format},
            description="unlearn λ policy",
            model_id=model_id,
        )
        tracker.end("FINISHED")
    except TrackingError as e:
        tracker.end("FAILED")
        raise ConfigError(f"policy register: {e}") from None
    return Registered(name, mv.version, alias, tracker.run_id, mv.source)
