"""An exported policy as one ONNX graph and the metadata kept beside it in the MLflow registry.

``unlearn policy register`` logs every policy with MLflow's ONNX flavour, so
``mlflow.pyfunc.load_model("models:/NAME@ALIAS").predict(obs)`` gives the policy's action
(its first entry is λ) without this package. An ONNX policy is logged as it is; a
TorchScript one is converted (``torch.onnx.export`` of the scripted graph, observations
shaped by the metadata's layout) and kept only if the ONNX graph gives the TorchScript
actions on the layout's corners and on random observations inside its bounds.

In the registered model the graph is ``model.onnx`` (MLflow's name) and the metadata says so
(``file``, ``sha256``); ``registered_from`` names the exported file it came from.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unlearn.config import ConfigError

MODEL_FILE = "model.onnx"  # what mlflow.onnx calls the graph inside an MLflow model
#: largest difference between TorchScript and converted ONNX actions accepted (float32 noise)
CONVERT_ATOL = 1e-5


@dataclass(frozen=True)
class OnnxPolicy:
    """An ONNX policy graph ready to log: the graph, its tensors, and its metadata."""

    model: Any  # onnx.ModelProto
    meta: dict[str, Any]
    input_name: str
    output_name: str
    obs_dim: int
    act_dim: int


def onnx_policy(policy_dir: Path, meta: dict[str, Any]) -> OnnxPolicy:
    """The ONNX graph of the exported policy in ``policy_dir`` (its checked ``meta``)."""
    import onnx

    file = policy_dir / meta["file"]
    if meta["format"] == "onnx":
        model = onnx.load(str(file))
    else:
        model = _from_torchscript(file, meta)
    data = model.SerializeToString()  # the bytes onnx.save_model writes as model.onnx
    obs_dim = len(meta["observation"]["names"])
    act_dim = len(meta["action"]["low"])
    registered = {
        **meta,
        "format": "onnx",
        "file": MODEL_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "registered_from": {
            "format": meta["format"],
            "file": meta["file"],
            "sha256": meta["sha256"],
        },
    }
    return OnnxPolicy(
        model,
        registered,
        model.graph.input[0].name,
        model.graph.output[0].name,
        obs_dim,
        act_dim,
    )


def _from_torchscript(file: Path, meta: dict[str, Any]):
    """``file`` (TorchScript) as an ONNX graph whose actions equal the TorchScript ones."""
    import onnx
    import onnxruntime as ort
    import torch

    how = (
        "export the policy as ONNX instead: unlearn policy export "
        f"{meta.get('source_checkpoint') or 'CHECKPOINT'} --format onnx --out DIR"
    )
    obs = meta["observation"]
    low = np.asarray(obs["low"], dtype=np.float32)
    high = np.asarray(obs["high"], dtype=np.float32)
    rng = np.random.default_rng(0)
    probes = np.concatenate(
        [np.stack([low, high, (low + high) / 2]), rng.uniform(low, high, (64, low.size))]
    ).astype(np.float32)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():  # torch marks TorchScript and its exporter deprecated
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(file), map_location="cpu").eval()
            with torch.no_grad():
                want = module(torch.from_numpy(probes)).numpy()
                torch.onnx.export(
                    module,
                    (torch.from_numpy(probes[:3]),),
                    buf,
                    dynamo=False,
                    opset_version=17,
                    input_names=["obs"],
                    output_names=["action"],
                    dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}},
                )
        model = onnx.load_from_string(buf.getvalue())
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"obs": probes})[0]
    except Exception as e:  # torch and onnx raise many kinds
        reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(
            f"policy register: cannot convert the TorchScript policy {file} to ONNX "
            f"({reason}); {how}"
        ) from None
    diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
    if not diff <= CONVERT_ATOL:
        raise ConfigError(
            f"policy register: the ONNX conversion of {file} gives other actions than the "
            f"TorchScript policy (largest difference {diff:.3g}); {how}"
        )
    return model
