"""Exported λ policies on disk: ``policy.pt`` (TorchScript) or ``policy.onnx`` + ``metadata.json``.

Loading needs torch (or onnxruntime) only — never ray, never an unpickler: TorchScript files
load with ``torch.jit.load`` and ONNX files with onnxruntime. The file's SHA-256 is recorded
in the metadata, so a truncated or corrupted file fails loudly instead of giving a wrong λ.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unlearn.config import ConfigError, check_residual
from unlearn.export.source import METADATA
from unlearn.observation import OBS_VERSION, action_names, layout

log = logging.getLogger(__name__)

FILES = {"torchscript": "policy.pt", "onnx": "policy.onnx"}
SCHEMA = "unlearn-policy-v1"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_metadata(out: Path, meta: dict[str, Any]) -> Path:
    path = out / METADATA
    path.write_text(json.dumps(meta, indent=2, sort_keys=True))
    return path


def read_metadata(policy_dir: Path) -> dict[str, Any]:
    """The metadata of an exported policy, checked against this version's observation layout."""
    path = policy_dir / METADATA
    if not path.is_file():
        raise ConfigError(
            f"policy: {policy_dir} has no {METADATA}; not an exported policy "
            "(unlearn policy export CHECKPOINT --out DIR writes one)"
        )
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"policy: {path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise ConfigError(f"policy: {path} is not {SCHEMA} metadata")
    for key in (
        "format",
        "file",
        "sha256",
        "observation",
        "action",
        "steps_per_decision",
        "proxy_every",
        "proxy_batch",
    ):
        if key not in meta:
            raise ConfigError(f"policy: {path} lacks the field {key!r}")
    for key in ("steps_per_decision", "proxy_every", "proxy_batch"):
        v = meta[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"policy: {key} in {path} is {v!r}; expected an integer >= 1")
    obs = meta["observation"]
    scale = bool(meta.get("scale_action", False))
    stop = bool(meta.get("stop_action", False))
    probe = meta.get("forget_probe", 0)
    if not isinstance(probe, int) or isinstance(probe, bool) or probe < 0:
        raise ConfigError(f"policy: forget_probe in {path} is {probe!r}; expected an integer >= 0")
    want = layout(scale, probe > 0).to_dict()
    if not isinstance(obs, dict) or obs.get("version") != OBS_VERSION:
        raise ConfigError(
            f"policy: observation layout {obs.get('version') if isinstance(obs, dict) else obs!r}"
            f" in {path} does not match this env's {OBS_VERSION} (older layouts lack the "
            "instance fields and used another stop threshold); train and export the policy again"
        )
    for k in ("names", "low", "high"):
        if list(obs.get(k, [])) != want[k]:
            raise ConfigError(
                f"policy: observation {k} in {path} do not match the env's layout: "
                f"{obs.get(k)} != {want[k]}"
            )
    meta["residual"] = check_residual(meta.get("residual") or {}, f"policy: residual in {path}")
    act = meta["action"]
    dim = len(action_names(scale, stop))
    if len(act.get("low", [])) != dim or len(act.get("high", [])) != dim:
        raise ConfigError(f"policy: action bounds in {path} do not have {dim} entries")
    return meta


@dataclass
class LoadedPolicy:
    """An exported policy: ``policy(obs) -> action`` (numpy, batched or single)."""

    meta: dict[str, Any]
    format: str
    path: Path
    _run: Any = None

    @property
    def obs_dim(self) -> int:
        return len(self.meta["observation"]["names"])

    @property
    def act_dim(self) -> int:
        return len(self.meta["action"]["low"])

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        x = x.reshape(-1, self.obs_dim)
        a = self._run(x)
        return a[0] if single else a


def _torchscript_runner(path: Path):
    import torch

    try:
        with warnings.catch_warnings():  # torch 2.10+ marks TorchScript deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            mod = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # torch raises RuntimeError / ValueError / zip errors
        raise ConfigError(
            f"policy: cannot load TorchScript file {path}: {e}".splitlines()[0]
        ) from None
    mod.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return mod(torch.from_numpy(x)).numpy()

    return run


def _onnx_runner(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one decision is a tiny MLP: threads only add latency
    opts.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ConfigError(f"policy: cannot load ONNX file {path}: {e}".splitlines()[0]) from None
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: x})[0]

    return run


def load_policy(path: str | Path, fmt: str = "auto", tracking_uri: str = "") -> LoadedPolicy:
    """Load an exported policy directory (or ``models:/NAME@ALIAS`` from the MLflow registry).

    Raises :class:`ConfigError` for a missing directory, metadata that does not match the env's
    observation layout, or a missing, truncated or corrupted policy file.
    """
    from unlearn.export.source import resolve_policy_dir

    policy_dir = resolve_policy_dir(str(path), tracking_uri)
    meta = read_metadata(policy_dir)
    if fmt == "auto":
        fmt = meta["format"]
    if fmt not in FILES:
        raise ConfigError(
            f"policy format: {fmt!r} is not allowed; expected one of {', '.join(FILES)}"
        )
    file = policy_dir / (meta["file"] if fmt == meta["format"] else FILES[fmt])
    if not file.is_file():
        raise ConfigError(f"policy: {file} does not exist")
    if fmt == meta["format"] and sha256(file) != meta["sha256"]:
        raise ConfigError(
            f"policy: {file} is corrupted or truncated (SHA-256 differs from metadata)"
        )
    run = _torchscript_runner(file) if fmt == "torchscript" else _onnx_runner(file)
    pol = LoadedPolicy(meta, fmt, file, run)
    probe = pol(np.zeros(pol.obs_dim, dtype=np.float32))
    if probe.shape != (pol.act_dim,) or not np.all(np.isfinite(probe)):
        raise ConfigError(
            f"policy: {file} returns {probe!r} for a zero observation; expected "
            f"{pol.act_dim} finite value(s)"
        )
    return pol
