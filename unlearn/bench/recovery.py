"""How much of the per-instance oracle's advantage another row recovers.

A bench with a tuned global baseline (``static``: one setting searched on the train
instances), its per-instance oracle (``oracle-static``: the same search on each held-out
instance itself) and further rows of the same method (a policy trained once, ...) answers one
question: does the row reach each new instance's own best without a search of its own?

Each run is scored as the searches score it, ``forget_rate + tune.fid_weight · FID`` (lower is
better). Per held-out instance, the oracle's advantage is ``global − oracle`` and a row's gain
``global − row``, paired by seed; the headline fraction is the mean gain over the mean
advantage across every (instance, seed) pair, with a percentile bootstrap interval over
those pairs. Where the oracle's advantage is not distinguishable from 0 the fraction means
nothing; the section says so and gives the smallest mean difference the runs' seed-to-seed
spread lets a paired interval tell from 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from unlearn.bench.stats import mean_ci

#: the oracle rows and the global baseline each is compared with
PAIRS = {"oracle-static": "static", "oracle-decay": "decay"}
#: rows never compared as the "row" of a recovery
NOT_ROWS = ("static", "decay", "oracle-static", "oracle-decay")
BOOTSTRAP = 2000


def run_score(r: Any, fid_weight: float) -> float:
    """A run's search score (NaN for a run without numbers)."""
    s = r.forget_rate + fid_weight * r.fid
    return s if math.isfinite(s) else math.nan


def _scores(records, method: str, agent: str, fid_weight: float) -> dict[tuple, float]:
    return {
        (r.instance, r.seed): run_score(r, fid_weight)
        for r in records
        if r.method == method and r.agent == agent and r.status != "error"
    }


def _bootstrap(gain: np.ndarray, adv: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of mean(gain) / mean(adv), resampling the pairs."""
    rng = np.random.default_rng(seed)
    n = len(gain)
    idx = rng.integers(0, n, size=(BOOTSTRAP, n))
    den = adv[idx].mean(axis=1)
    ok = np.abs(den) > 1e-12
    ratios = gain[idx].mean(axis=1)[ok] / den[ok]
    if len(ratios) < BOOTSTRAP // 2:
        return math.nan, math.nan
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def recovery(records: Sequence[Any], fid_weight: float) -> list[dict[str, Any]]:
    """One entry per (method, global, oracle, row) the bench ran: per instance the mean
    scores and the oracle's advantage, then the fraction of it the row recovers."""
    out = []
    groups = {(r.method, r.agent) for r in records}
    for m, oracle in sorted(groups):
        if oracle not in PAIRS or (m, PAIRS[oracle]) not in groups:
            continue
        g = _scores(records, m, PAIRS[oracle], fid_weight)
        o = _scores(records, m, oracle, fid_weight)
        for row in sorted(a for mm, a in groups if mm == m and a not in NOT_ROWS):
            p = _scores(records, m, row, fid_weight)
            keys = sorted(
                (k for k in g if k in o and k in p and all(math.isfinite(d[k]) for d in (g, o, p))),
                key=lambda k: (str(k[0]), k[1]),
            )
            if not keys:
                continue
            out.append(_entry(m, PAIRS[oracle], oracle, row, keys, g, o, p))
    return out


def _entry(m, glob, oracle, row, keys, g, o, p) -> dict[str, Any]:
    adv = np.array([g[k] - o[k] for k in keys])
    gain = np.array([g[k] - p[k] for k in keys])
    per = []
    for c in dict.fromkeys(k[0] for k in keys):
        ks = [k for k in keys if k[0] == c]
        per.append(
            {
                "instance": c,
                "n": len(ks),
                "global": float(np.mean([g[k] for k in ks])),
                "oracle": float(np.mean([o[k] for k in ks])),
                "row": float(np.mean([p[k] for k in ks])),
                "advantage": mean_ci([g[k] - o[k] for k in ks]).to_dict(),
                "gain": mean_ci([g[k] - p[k] for k in ks]).to_dict(),
            }
        )
    a = mean_ci(adv.tolist())
    shown = a.n > 1 and math.isfinite(a.ci) and abs(a.mean) > a.ci
    frac = float(gain.mean() / adv.mean()) if shown else None
    lo, hi = _bootstrap(gain, adv) if shown else (math.nan, math.nan)
    return {
        "method": m,
        "global": glob,
        "oracle": oracle,
        "row": row,
        "pairs": len(keys),
        "instances": per,
        "advantage": a.to_dict(),
        "gain": mean_ci(gain.tolist()).to_dict(),
        "advantage_shown": bool(shown),
        "fraction": frac,
        "fraction_ci": [_none(lo), _none(hi)],
        # the smallest mean difference between two rows the runs' own seed-to-seed spread
        # lets a paired 95% interval tell from 0 (the advantage's interval is no guide when
        # the oracle chose the global setting: its runs are then the same runs)
        "detectable": _none(_detectable(keys, g)),
    }


def _detectable(keys: list[tuple], g: dict[tuple, float]) -> float:
    """t · √2 · s_w / √n: s_w the global row's score spread over the seeds of an instance
    (pooled over instances), n the pairs; NaN with fewer than two seeds per instance."""
    from scipy import stats

    groups: dict[Any, list[float]] = {}
    for k in keys:
        groups.setdefault(k[0], []).append(g[k])
    dev = [(v - np.mean(vs)) ** 2 for vs in groups.values() if len(vs) > 1 for v in vs]
    dof = sum(len(vs) - 1 for vs in groups.values() if len(vs) > 1)
    if dof < 1:
        return math.nan
    s_w = math.sqrt(sum(dev) / dof)
    return float(stats.t.ppf(0.975, dof) * math.sqrt(2) * s_w / math.sqrt(len(keys)))


def _none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _f(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}g}"


def _ci(d: dict[str, Any]) -> str:
    return f"{_f(d['mean'])} ± {_f(d['ci'])}" if d.get("ci") is not None else _f(d["mean"])


def recovery_markdown(entries: Sequence[dict[str, Any]], fid_weight: float) -> str:
    """The report's "Oracle advantage recovered" section (empty without an oracle row)."""
    if not entries:
        return ""
    lines = [
        "## Oracle advantage recovered",
        "",
        f"Score per run: forget rate + {fid_weight:g} x FID, as the searches score (lower is "
        "better). Advantage = global - oracle, gain = global - row, paired by seed; "
        "mean ± 95% t half-width.",
        "",
    ]
    for e in entries:
        lines += [
            f"### {e['method']}: {e['row']} vs {e['global']} (tuned) and {e['oracle']}",
            "",
            f"| instance | n | global | oracle | {e['row']} | oracle advantage | {e['row']} gain |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in e["instances"]:
            lines.append(
                f"| {c['instance']} | {c['n']} | {_f(c['global'])} | {_f(c['oracle'])} | "
                f"{_f(c['row'])} | {_ci(c['advantage'])} | {_ci(c['gain'])} |"
            )
        lines.append(f"| all | {e['pairs']} | | | | {_ci(e['advantage'])} | {_ci(e['gain'])} |")
        lines.append("")
        if e["advantage_shown"]:
            lo, hi = e["fraction_ci"]
            lines.append(
                f"{e['row']} recovers **{_f(e['fraction'])}** of the oracle's advantage "
                f"(95% bootstrap interval {_f(lo)} to {_f(hi)}, {e['pairs']} pairs)."
            )
        else:
            lines.append(
                f"The oracle's advantage over the global setting is not distinguishable from 0 "
                f"({_ci(e['advantage'])}, {e['pairs']} pairs): there is nothing to recover, "
                f"and the fraction is undefined. With the seed-to-seed spread of these runs, a "
                f"mean difference of about {_f(e['detectable'])} or more between two rows would "
                "have been told from 0."
            )
        lines.append("")
    return "\n".join(lines)
