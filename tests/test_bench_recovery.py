"""The fraction of the per-instance oracle's advantage another row recovers: scored as the
searches score runs, paired by seed, undefined (and said so) where the oracle gains nothing."""

from __future__ import annotations

import pytest

from unlearn.bench.cell import RunRecord
from unlearn.bench.recovery import recovery, recovery_markdown


def _runs(agent: str, rates: dict[str, list[float]], fid: float = 5.0) -> list[RunRecord]:
    return [
        RunRecord("esd", agent, c, seed, "finished", "d", forget_rate=r, fid=fid)
        for c, rs in rates.items()
        for seed, r in enumerate(rs)
    ]


def test_a_row_between_global_and_oracle_recovers_its_share() -> None:
    g = _runs("static", {"thin": [0.5, 0.6, 0.55], "2": [0.9, 0.85, 0.95]})
    o = _runs("oracle-static", {"thin": [0.1, 0.2, 0.15], "2": [0.5, 0.45, 0.55]})
    # the policy closes half the gap on thin and all of it on 2; one run failed and is left out
    p = _runs("policy", {"thin": [0.3, 0.4, 0.35], "2": [0.5, 0.45, 0.55]})
    p.append(RunRecord("esd", "policy", "8", 0, "error", "d"))
    (e,) = recovery([*g, *o, *p], fid_weight=0.01)
    assert (e["row"], e["global"], e["oracle"], e["pairs"]) == (
        "policy",
        "static",
        "oracle-static",
        6,
    )
    assert e["advantage_shown"] and e["fraction"] == pytest.approx(0.6 / 0.8)
    lo, hi = e["fraction_ci"]
    assert lo <= e["fraction"] <= hi
    thin = next(c for c in e["instances"] if c["instance"] == "thin")
    assert thin["advantage"]["mean"] == pytest.approx(0.4) and thin["gain"][
        "mean"
    ] == pytest.approx(0.2)
    md = recovery_markdown([e], 0.01)
    assert "policy recovers **0.75** of the oracle's advantage" in md
    assert "| thin | 3 |" in md


def test_no_oracle_advantage_leaves_the_fraction_undefined_and_says_so() -> None:
    same = {"2": [0.3, 0.5, 0.4], "8": [0.6, 0.7, 0.65]}
    g, o = _runs("static", same), _runs("oracle-static", {"2": [0.31, 0.49, 0.4], "8": same["8"]})
    p = _runs("policy", {"2": [0.2, 0.2, 0.2], "8": [0.9, 0.9, 0.9]})
    (e,) = recovery([*g, *o, *p], fid_weight=0.01)
    assert not e["advantage_shown"] and e["fraction"] is None
    md = recovery_markdown([e], 0.01)
    assert "not distinguishable from 0" in md and "would have been told from 0" in md
    # the runs' spread over seeds (global row, pooled per instance) sets what could be seen
    assert e["detectable"] == pytest.approx(2.776 * 2**0.5 * 0.025**0.5 / 2 / 6**0.5, rel=1e-3)


def test_without_an_oracle_row_there_is_no_section() -> None:
    runs = _runs("static", {"2": [0.3]}) + _runs("policy", {"2": [0.2]})
    assert recovery(runs, 0.01) == [] and recovery_markdown([], 0.01) == ""
