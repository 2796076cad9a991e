"""RLlib checkpoint → exported deterministic λ policy (TorchScript or ONNX) + metadata.

The exported graph is the whole computation from observation to env action, because RLlib
applies part of it outside the network::

    logits = module.forward_inference({"obs": obs})["action_dist_inputs"]
    a      = logits[..., :act_dim]              # mean of the Gaussian (the deterministic action)
    a      = tanh(a)                            # SAC only: its squashed Gaussian
    a      = low + (a + 1) · (high - low) / 2   # RLlib's unsquash_action (normalize_actions)
    a      = clip(a, low, high)

Note: RLlib 2.60's ``TorchSquashedGaussian.to_deterministic()`` returns the *pre-tanh* mean;
the export (and ``unlearn rl eval``) uses tanh(mean), the mode of the policy SAC trained.

RLlib checkpoints are the user's own training output and load with RLlib's (pickle-based)
loader; the exported files never need an unpickler.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearn.config import ConfigError, EnvConfig, check_residual
from unlearn.export.policy_file import FILES, SCHEMA, sha256, write_metadata
from unlearn.observation import SCALE_RANGE, STOP_THRESHOLD, action_names, layout

log = logging.getLogger(__name__)

SIDECAR = "unlearn_rl.json"  # written next to every checkpoint by `unlearn rl train`
MODULE_SUBPATHS = (
    "learner_group/learner/rl_module/default_policy",  # an Algorithm checkpoint
    "rl_module/default_policy",  # a Learner checkpoint
    "default_policy",  # a MultiRLModule checkpoint
    ".",  # an RLModule checkpoint
)


def find_module_dir(checkpoint: str | Path) -> Path:
    """The RLModule folder inside an Algorithm / Learner / RLModule checkpoint."""
    root = Path(checkpoint).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"checkpoint: {str(checkpoint)!r} does not exist or is not a directory")
    for sub in MODULE_SUBPATHS:
        d = (root / sub).resolve()
        if (d / "module_state.pkl").is_file() or (d / "module_state.pt").is_file():
            return d
    raise ConfigError(
        f"checkpoint: no RLModule found in {root} (looked in {', '.join(MODULE_SUBPATHS)})"
    )


def read_sidecar(checkpoint: str | Path) -> dict[str, Any]:
    root = Path(checkpoint).expanduser().resolve()
    for d in (root, *root.parents[:4]):
        p = d / SIDECAR
        if p.is_file():
            return json.loads(p.read_text())
    return {}


class DeterministicPolicy(torch.nn.Module):
    """Observation → env action: network, deterministic action, (tanh), unsquash, clip."""

    def __init__(self, module: torch.nn.Module, low: np.ndarray, high: np.ndarray, squash: bool):
        super().__init__()
        self.module = module
        self.act_dim = int(len(low))
        self.squash = bool(squash)
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        logits = self.module.forward_inference({"obs": obs})["action_dist_inputs"]
        a = logits[..., : self.act_dim]
        if self.squash:
            a = torch.tanh(a)
        a = self.low + (a + 1.0) * (self.high - self.low) / 2.0
        return torch.maximum(torch.minimum(a, self.high), self.low)


def load_checkpoint_policy(checkpoint: str | Path) -> tuple[DeterministicPolicy, dict[str, Any]]:
    """The deterministic policy of an RLlib checkpoint, in memory, and facts for its metadata."""
    mdir = find_module_dir(checkpoint)
    from ray.rllib.core.rl_module.rl_module import RLModule

    try:
        module = RLModule.from_checkpoint(str(mdir))
    except Exception as e:
        raise ConfigError(
            f"checkpoint: cannot load the RLModule in {mdir}: {e}".splitlines()[0]
        ) from None
    module.eval()
    side = read_sidecar(checkpoint)
    kind = type(module).__name__
    algo = side.get("algo") or ("sac" if "SAC" in kind else "ppo" if "PPO" in kind else "")
    if algo not in ("ppo", "sac"):
        raise ConfigError(f"checkpoint: module {kind} is neither PPO nor SAC")
    obs_space, act_space = module.observation_space, module.action_space
    env = side.get("env", {})
    dim = int(np.prod(act_space.shape))
    # the training env's flags (older sidecars: a 2-entry action is (λ, scale))
    scale = bool(env.get("scale_action", dim == 2))
    stop = bool(env.get("stop_action", False))
    probe = int(env.get("forget_probe", 0) or 0)
    if dim != len(action_names(scale, stop)):
        raise ConfigError(
            f"checkpoint: action space {act_space} does not match the training env's actions "
            f"({', '.join(action_names(scale, stop))})"
        )
    lay = layout(scale, probe > 0)
    if tuple(obs_space.shape) != (lay.size,) or not (
        np.allclose(obs_space.low, lay.low) and np.allclose(obs_space.high, lay.high)
    ):
        raise ConfigError(
            f"checkpoint: observation space {obs_space} does not match the env's layout "
            f"({lay.size} entries: {', '.join(lay.names)})"
        )
    low = np.asarray(act_space.low, dtype=np.float32)
    high = np.asarray(act_space.high, dtype=np.float32)
    facts = {
        "algorithm": algo,
        "module_class": kind,
        "scale_action": scale,
        "stop_action": stop,
        "forget_probe": probe,
        "training": {k: side[k] for k in ("iteration", "env_steps") if k in side},
        "low": low,
        "high": high,
        "steps_per_decision": int(env.get("steps_per_decision", 0)),
        "decisions": int(env.get("decisions", 0)),
        "proxy_every": int(env.get("proxy_every", 0)),
        "proxy_batch": int(env.get("proxy_batch", 0)),
        "residual": dict(env.get("residual") or {}),
        "module_dir": str(mdir),
    }
    return DeterministicPolicy(module, low, high, squash=(algo == "sac")), facts


def export_policy(
    checkpoint: str | Path,
    out: str | Path,
    fmt: str = "torchscript",
    steps_per_decision: int = 0,
    proxy_every: int = 0,
    proxy_batch: int = 0,
    residual: dict | None = None,
    decisions: int = 0,
) -> Path:
    """Write ``policy.pt`` / ``policy.onnx`` and ``metadata.json`` into ``out``; returns ``out``.

    K, the observation's proxy cadence and size, the decisions per episode and the residual λ
    action (``env.residual``) come from the checkpoint's sidecar (the training env's config);
    the arguments (else the defaults) are used where it has none. A residual policy needs the
    decisions: its base schedule runs over the training episode's T·K steps.
    """
    if fmt not in FILES:
        raise ConfigError(f"--format: {fmt!r} is not allowed; expected one of {', '.join(FILES)}")
    policy, facts = load_checkpoint_policy(checkpoint)
    k = facts["steps_per_decision"] or steps_per_decision
    if k < 1:
        raise ConfigError(
            f"checkpoint: {checkpoint} has no {SIDECAR} with env.steps_per_decision; "
            "pass the config it was trained with (--config)"
        )
    res = check_residual(facts["residual"] or residual or {}, "residual")
    n_dec = int(facts["decisions"] or decisions)
    if res and n_dec < 1:
        raise ConfigError(
            f"checkpoint: {checkpoint} was trained with a residual λ action but has no "
            f"{SIDECAR} with env.decisions; pass the config it was trained with (--config)"
        )
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    lay = layout(facts["scale_action"], facts["forget_probe"] > 0)
    example = torch.as_tensor(np.stack([lay.low, lay.high, (lay.low + lay.high) / 2]))
    file = out / FILES[fmt]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(policy, example, check_trace=False)
        if fmt == "torchscript":
            traced.save(str(file))
        else:
            torch.onnx.export(
                policy,
                (example,),
                str(file),
                dynamo=False,
                opset_version=17,
                input_names=["obs"],
                output_names=["action"],
                dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}},
            )
    meta = {
        "schema": SCHEMA,
        "format": fmt,
        "file": file.name,
        "sha256": sha256(file),
        "algorithm": facts["algorithm"],
        "module_class": facts["module_class"],
        "source_checkpoint": str(Path(checkpoint).expanduser().resolve()),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "observation": lay.to_dict(),
        "scale_action": facts["scale_action"],
        "stop_action": facts["stop_action"],
        "stop_threshold": STOP_THRESHOLD,
        "forget_probe": facts["forget_probe"],
        "training": facts["training"],
        "scale_range": list(SCALE_RANGE),
        "action": {
            "names": action_names(facts["scale_action"], facts["stop_action"]),
            "low": facts["low"].tolist(),
            "high": facts["high"].tolist(),
            "deterministic": "tanh(mean)" if facts["algorithm"] == "sac" else "mean",
            "unsquash": "clip(low + (a + 1) * (high - low) / 2, low, high), inside the graph",
        },
        "steps_per_decision": int(k),
        "proxy_every": int(facts["proxy_every"] or proxy_every or EnvConfig().proxy_every),
        "proxy_batch": int(facts["proxy_batch"] or proxy_batch or EnvConfig().proxy_batch),
        "decisions": n_dec,
        "residual": res,
        "input": {"name": "obs", "dtype": "float32", "shape": ["batch", lay.size]},
        "output": {"name": "action", "dtype": "float32", "shape": ["batch", len(facts["low"])]},
        "versions": {"torch": torch.__version__, **_ray_version()},
    }
    write_metadata(out, meta)
    return out


def _ray_version() -> dict[str, str]:
    import ray

    return {"ray": ray.__version__}
