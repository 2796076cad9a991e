"""``tune.trial_resources``: custom Ray resources per trial, checked when the config loads
(placement on a real cluster: tests/test_multinode.py)."""

from __future__ import annotations

import pytest
from helpers import REPO


@pytest.mark.parametrize(
    "value, message",
    [
        ("{CPU: 1}", "tune.trial_resources.CPU: Ray's own resource is not allowed here"),
        ("{gpu: 1}", "tune.trial_resources.gpu: Ray's own resource is not allowed here"),
        ("{worker: 0}", "tune.trial_resources.worker: 0 is out of range; expected (0, 1000000]"),
        ("{worker: yes}", "tune.trial_resources.worker: True is out of range"),
        ("[worker]", "tune.trial_resources: expected a mapping"),
    ],
)
def test_bad_trial_resources_are_one_line(value, message):
    from unlearn.config import ConfigError, load_config

    with pytest.raises(ConfigError) as e:
        load_config(REPO / "configs/tiny.yaml", [f"tune.trial_resources={value}"])
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
