"""``unlearn audit``: relearning attacks and membership inference, through the real command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import TINY, cli, cli_here, tiny_model

AUDIT_TINY = [
    "audit.relearn_steps=4",
    "audit.relearn_every=2",
    "audit.relearn_retain_samples=32",
    "audit.relearn_batch_size=8",
    "audit.num_samples=20",
    "audit.mia_samples=8",
    "audit.mia_noise=2",
]


def _sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _config_file(overrides: list[str], path: Path):
    """The config of ``overrides`` as a YAML file for ``--config`` (the CLI's default is the
    demo config); returns the config and ``--config PATH``."""
    import yaml

    from unlearn.config import load_config

    cfg = load_config(None, overrides)
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return cfg, ["--config", str(path)]


@pytest.fixture(scope="module")
def unlearned(tiny_workdir: Path, tmp_path_factory) -> tuple[Path, list[str]]:
    """An ``unlearn run`` output on the tiny config, in a private workdir; ``--config`` args."""
    from unlearn.run import run

    wd = tmp_path_factory.mktemp("audit-work")
    shutil.copytree(tiny_workdir / "pretrained", wd / "pretrained")
    cfg, args = _config_file([*TINY, f"workdir={wd}", *AUDIT_TINY], wd / "audit.yaml")
    res = run(cfg, evaluate=False)
    return Path(res.model_dir), args


@pytest.mark.slow
def test_audit_reports_attacks_and_auc_deterministically_and_logs_to_mlflow(unlearned, tmp_path):
    from mlflow.tracking import MlflowClient

    model_dir, overrides = unlearned
    out = tmp_path / "a"
    r = cli("audit", str(model_dir), "--json", "--out", str(out), *overrides)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert json.loads((out / "report.json").read_text()) == rep
    assert rep["kind"] == "ddpm" and rep["metric"] == "forget_rate"
    assert {(c["attack"], c["model"]) for c in rep["relearn"]} == {
        (a, m) for a in ("retain", "forget") for m in ("base", "unlearned")
    }
    assert rep["threshold"] == pytest.approx(0.5 * rep["start"]["base"])
    for c in rep["relearn"]:
        assert c["steps"] == [0, 2, 4]
        assert c["rates"][0] == rep["start"][c["model"]]
        assert all(0.0 <= v <= 1.0 for v in c["rates"])
        hits = [s for s, v in zip(c["steps"], c["rates"], strict=True) if v >= rep["threshold"]]
        assert c["returned_at"] == (hits[0] if hits and rep["threshold"] > 0 else None)
        assert (out / c["grid"]).is_file()
    assert [m["model"] for m in rep["membership"]] == ["base", "unlearned"]
    for m in rep["membership"]:
        assert all(0.0 <= m[k] <= 1.0 for k in ("forget_auc", "retain_auc", "unseen_auc"))
    # a second audit (one audit run serves three checks): the same report byte for byte, in
    # the default report folder of a run output (RUN/audit), with the table, logged to MLflow
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = [*overrides, *_sets("tracking.enabled=true", f"tracking.uri={uri}")]
    r = cli("audit", str(model_dir), *sets)
    assert r.returncode == 0, r.stderr
    assert "relearning attacks" in r.stdout and "membership inference" in r.stdout
    default = model_dir.parent / "audit" / "report.json"
    assert default.read_text() == (out / "report.json").read_text()
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("unlearn").experiment_id])
    assert run.info.status == "FINISHED"
    assert "audit/mia/unlearned/forget_auc" in run.data.metrics
    hist = client.get_metric_history(run.info.run_id, "audit/relearn_forget/unlearned/forget_rate")
    assert [m.step for m in hist] == [0, 2, 4]
    names = {f.path for f in client.list_artifacts(run.info.run_id, "audit")}
    assert {"audit/report.json", "audit/relearn-forget-unlearned.png"} <= names


@pytest.mark.slow
def test_audit_of_a_vae_with_base(tiny_workdir, tmp_path):
    from unlearn.pretrain import train_base

    (tmp_path / "w").mkdir()
    over = [*TINY, f"workdir={tmp_path / 'w'}", "model.kind=vae", *AUDIT_TINY]
    cfg, args = _config_file(over, tmp_path / "w" / "vae.yaml")
    vae = train_base(cfg)
    clf = next((tiny_workdir / "pretrained").glob("classifier-*"))
    shutil.copytree(clf, tmp_path / "w" / "pretrained" / clf.name)
    r = cli("audit", str(vae), "--base", str(vae), "--json", "--out", str(tmp_path / "o"), *args)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["kind"] == "vae"
    # the same weights on both sides: the same curves and AUCs
    by = {(c["attack"], c["model"]): c["rates"] for c in rep["relearn"]}
    assert by["forget", "base"] == by["forget", "unlearned"]
    assert rep["membership"][0] | {"model": ""} == rep["membership"][1] | {"model": ""}


@pytest.mark.parametrize(
    "extra, use_base, fragment",
    [
        ([], False, "is not an unlearning output"),
        (["model.kind=vae"], True, "model.kind: "),
        (["data.resolution=12"], True, "model expects 1x8x8 images"),
        (["audit.relearn_forget_samples=0"], True, "audit.relearn_forget_samples: 0 is out of"),
        (["audit.mia_samples=1"], True, "audit.mia_samples: 1 is out of range"),
    ],
)
@pytest.mark.slow
def test_bad_audit_input_exits_2_and_writes_nothing(unlearned, tmp_path, extra, use_base, fragment):
    model_dir, overrides = unlearned
    plain = tmp_path / "plain"  # the same weights, outside a run folder
    shutil.copytree(model_dir, plain)
    base = ["--base", str(plain)] if use_base else []
    out = tmp_path / "out"
    r = cli_here("audit", str(plain), *base, "--out", str(out), *overrides, *_sets(*extra))
    assert r.returncode == 2, r.stderr
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_relearning_on_forget_samples_lowers_their_loss():
    """The attack fine-tunes: k forget samples' loss falls; the model passed in is unchanged."""
    from unlearn.audit import attack_losses, relearn
    from unlearn.config import AuditConfig
    from unlearn.data import ImageData

    model = tiny_model("ddpm")
    g = torch.Generator().manual_seed(0)
    data = ImageData(torch.rand((4, 1, 8, 8), generator=g) * 2 - 1, torch.zeros(4).long(), 10)
    before = attack_losses(model, data, 4, 0).mean()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = AuditConfig(relearn_steps=30, relearn_every=10, relearn_batch_size=4, relearn_lr=3e-3)
    seen: list[int] = []
    copies: list[torch.nn.Module] = []

    def measure(m):
        copies.append(m)
        return float(attack_losses(m, data, 4, 0).mean()), torch.zeros(1, 1, 8, 8)

    steps, losses, _ = relearn(
        model, data, cfg, measure, torch.device("cpu"), lambda s, _: seen.append(s)
    )
    assert steps == seen == [10, 20, 30]
    assert losses[-1] < 0.8 * float(before)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_auc_ranks_lower_loss_as_member():
    from unlearn.audit import auc

    assert auc(torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.4])) == 1.0
    assert auc(torch.tensor([0.3, 0.4]), torch.tensor([0.1, 0.2])) == 0.0
    assert auc(torch.tensor([0.2, 0.2]), torch.tensor([0.2, 0.2])) == 0.5


def test_memorise_config_uses_the_shipped_memorisation_model(tmp_path):
    from unlearn.config import ConfigError, load_config
    from unlearn.pretrain import ASSETS, locate, resolve_pretrained

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "configs" / "memorise.yaml", [f"workdir={tmp_path}"])
    assert locate(cfg) == (ASSETS / "memorise" / "model", ASSETS / "demo" / "classifier")
    # the fine-tune starts from the shipped demo model, named portably
    assert resolve_pretrained(cfg.model.pretrained) == str(ASSETS / "demo" / "model")
    assert (
        locate(
            load_config(
                repo / "configs" / "memorise.yaml", [f"workdir={tmp_path}", "forget.outlier.seed=3"]
            )
        )[0]
        is None
    )
    with pytest.raises(ConfigError, match="model.pretrained: 'asset:nope' is not a shipped"):
        resolve_pretrained("asset:nope")
