"""Policies as MLflow models: ``unlearn policy register`` logs an ONNX model (a TorchScript
policy converted first) that MLflow's own pyfunc loader runs, giving the λ the project's
policy agent gives on the same observations; bad input is one line and exit code 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, cli_here

NAME = "lam-policy"


def main(*args: str, **env: str) -> tuple[int, list[str]]:
    """``unlearn ARGS`` in this process (``env`` added): its exit code and stderr lines."""
    r = cli_here(*args, env=env)
    return r.returncode, r.stderr.strip().splitlines()


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> str:
    """The shipped TorchScript policy registered as ``NAME@champion``; the store's URI."""
    from unlearn.config import load_config
    from unlearn.demo import SHIPPED_POLICY
    from unlearn.export.registry import register_policy

    wd = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{wd / 'mlflow.db'}"
    cfg = load_config(REPO / "configs/tiny.yaml", [f"workdir={wd}", f"tracking.uri={uri}"])
    reg = register_policy(cfg, SHIPPED_POLICY, NAME)
    assert reg.uri == f"models:/{NAME}@champion" and reg.version == "1"
    return uri


@pytest.mark.slow
def test_mlflow_pyfunc_gives_the_agents_lambda_on_real_observations(
    registered, tiny_workdir, monkeypatch
):
    import mlflow
    from mlflow.tracking import MlflowClient

    from unlearn.config import load_config
    from unlearn.task import make_unlearner

    client = MlflowClient(tracking_uri=registered, registry_uri=registered)
    version = client.get_model_version_by_alias(NAME, "champion")
    assert version.tags["format"] == "onnx" and version.tags["exported_format"] == "torchscript"

    cfg = load_config(
        REPO / "configs/tiny.yaml",
        [
            f"workdir={tiny_workdir}",
            "tracking.enabled=false",
            "agent.name=policy",
            f"agent.path=models:/{NAME}@champion",
            f"agent.options.tracking_uri={registered}",
            "unlearn.steps=40",
        ],
    )
    unl = make_unlearner(cfg).unlearner
    agent = unl.agent
    assert agent.policy.format == "onnx" and agent.policy.path.name == "model.onnx"
    seen: list[tuple[np.ndarray, float]] = []
    decide = agent._decide

    def recording(obs: np.ndarray, step: int) -> None:  # the agent's own decision, recorded
        decide(obs, step)
        seen.append((np.array(obs, dtype=np.float32), agent.lam))

    agent._decide = recording
    unl.reset(0)
    unl.run()
    assert len(seen) >= 2 and not agent.residual  # λ is the action's first entry
    obs = np.stack([o for o, _ in seen])
    assert np.ptp(obs, axis=0).max() > 0  # the observations changed during the run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registered)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    assert list(model.metadata.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 14]
    lam = model.predict(obs)["action"][:, 0]
    np.testing.assert_allclose(lam, [v for _, v in seen], atol=1e-6, rtol=0)


def test_a_torchscript_policy_onnx_cannot_express_is_refused_with_how(tmp_path):
    from unlearn.demo import SHIPPED_POLICY
    from unlearn.export.policy_file import METADATA, sha256

    class Eig(torch.nn.Module):  # eigenvalues: TorchScript runs them, ONNX has no such op
        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            m = obs[:, :2, None] * obs[:, None, :2] + torch.eye(2)
            return torch.sigmoid(torch.linalg.eigvalsh(m))

    pol = tmp_path / "policy"
    pol.mkdir()
    with pytest.warns(DeprecationWarning):  # torch marks TorchScript deprecated
        torch.jit.script(Eig()).save(str(pol / "policy.pt"))
    meta = json.loads((SHIPPED_POLICY / METADATA).read_text())
    meta["sha256"] = sha256(pol / "policy.pt")
    (pol / METADATA).write_text(json.dumps(meta))
    code, err = main("policy", "register", str(pol), "--name", "x", "--set",
        f"workdir={tmp_path}",
    )  # fmt: skip
    assert code == 2 and len(err) == 1, err
    assert f"cannot convert the TorchScript policy {pol / 'policy.pt'} to ONNX" in err[0]
    assert "--format onnx" in err[0]
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run was made


@pytest.mark.parametrize("what", ["empty folder", "a file"])
def test_register_refuses_what_is_not_an_exported_policy(what, tmp_path):
    target = tmp_path / "stuff"
    if what == "a file":
        target.write_text("not a policy")
    else:
        target.mkdir()
    code, err = main("policy", "register", str(target), "--name", "x", "--set",
        f"workdir={tmp_path}",
    )  # fmt: skip
    assert code == 2 and len(err) == 1, err
    assert str(target) in err[0] and "exported policy" in err[0]
    assert not (tmp_path / "mlflow.db").exists()


def test_registered_metadata_names_the_graph_it_sits_beside(tmp_path):
    """The metadata kept in the registry names model.onnx and its SHA-256 (so the project's
    loader checks the very file MLflow stores)."""
    import hashlib

    from unlearn.demo import SHIPPED_POLICY
    from unlearn.export.onnx_model import MODEL_FILE, onnx_policy
    from unlearn.export.policy_file import read_metadata

    meta = read_metadata(SHIPPED_POLICY)
    pol = onnx_policy(Path(SHIPPED_POLICY), meta)
    assert (pol.meta["format"], pol.meta["file"]) == ("onnx", MODEL_FILE)
    digest = hashlib.sha256(pol.model.SerializeToString()).hexdigest()
    assert pol.meta["sha256"] == digest
    assert pol.meta["registered_from"] == {
        "format": "torchscript",
        "file": "policy.pt",
        "sha256": meta["sha256"],
    }
    assert (pol.input_name, pol.obs_dim, pol.output_name, pol.act_dim) == ("obs", 14, "action", 2)


def test_a_policy_registers_in_its_own_store_whatever_registry_the_process_used(tmp_path):
    """Loading a ``models:/`` policy from one store points MLflow's global registry there; a
    registration into another store afterwards still lands in that other store."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from unlearn.config import load_config
    from unlearn.demo import SHIPPED_POLICY
    from unlearn.export.registry import register_policy

    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    mine = f"sqlite:///{tmp_path / 'mine.db'}"
    before = mlflow.get_registry_uri()
    mlflow.set_registry_uri(elsewhere)
    try:
        cfg = load_config(
            REPO / "configs/tiny.yaml", [f"workdir={tmp_path}", f"tracking.uri={mine}"]
        )
        register_policy(cfg, SHIPPED_POLICY, "own-store")
    finally:
        mlflow.set_registry_uri(before)
    client = MlflowClient(tracking_uri=mine, registry_uri=mine)
    assert str(client.get_model_version_by_alias("own-store", "champion").version) == "1"
    # and loading it back leaves the process's registry setting as it was
    from unlearn.tracking.query import download

    setting = (mlflow.get_registry_uri(), os.environ.get("MLFLOW_REGISTRY_URI"))
    assert (download("models:/own-store@champion", mine) / "model.onnx").is_file()
    assert (mlflow.get_registry_uri(), os.environ.get("MLFLOW_REGISTRY_URI")) == setting
