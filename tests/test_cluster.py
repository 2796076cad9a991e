"""``cluster.yaml`` against Ray's own cluster-launcher schema and this project's needs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_validates_against_rays_schema(cluster):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cluster)))


def test_schema_check_is_not_vacuous(cluster):
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    bad = copy.deepcopy(cluster)
    bad["available_node_types"]["worker.gpu1"]["min_workers"] = "zero"
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(bad))
    bad = copy.deepcopy(cluster)
    bad["head_node_type"] = "missing"
    with pytest.raises(ValueError):
        validate_config(prepare_config(bad))


def test_cpu_head_and_autoscaling_gpu_workers(cluster):
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = {k: v for k, v in types.items() if k != cluster["head_node_type"]}
    assert workers and all(v["resources"]["GPU"] >= 1 for v in workers.values())
    for v in workers.values():
        assert 0 <= v["min_workers"] <= v["max_workers"] <= cluster["max_workers"]


def test_nodes_install_this_project_and_keep_token_auth(cluster):
    mounts = cluster["file_mounts"]
    assert mounts["~/unlearn-lab"] == "."
    assert "~/.ray/auth_token" in mounts
    assert any("pip install -e ~/unlearn-lab" in c for c in cluster["setup_commands"])
    starts = cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert {"**/.venv", "**/.git", "**/*.db"} <= set(cluster["rsync_exclude"])
