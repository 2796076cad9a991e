"""Results pages of the documentation, rendered from the records in ``benchmarks/results/``.

Every ``docs/results/<name>.md`` is generated: its tables come from ``<name>.json`` (a bench's
``results.json``, an audit record or a performance record) and its prose from ``<name>.md``
beside it (what ran, how, and what the numbers say), so a number on a results page is never
typed into the page. ``docs/results/index.md`` lists the pages and the README's results
section holds the headline table. ``unlearn bench --publish`` and
``python -m unlearn.bench.pages`` call :func:`write_pages`; ``--check`` exits 1 when a
committed page differs from what the records render (the docs test runs it).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn.bench.report import (
    END,
    START,
    instances_text,
    legend_text,
    markdown_table,
    stat_text,
    summary_rows,
)
from unlearn.bench.stats import CellSummary, Stat

if TYPE_CHECKING:
    from unlearn.families.base import Family

RESULTS = Path("benchmarks") / "results"
PAGES = Path("docs") / "results"
#: the record whose summary is the README's headline table, and the columns it keeps
HEADLINE = "bench-demo-2026-12-02"
HEADLINE_METRICS = ("forget_rate", "fid", "coverage_kl")
RUN_METRICS = (
    "forget_rate",
    "fid",
    "coverage_kl",
    "paraphrase_rate",
    "retain_accuracy",
    "attacked_forget_rate",
    "benign_forget_rate",
    "mia_auc",
    "adversarial_concept_rate",
    "wall_time",
)


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


def summaries_from_json(data: dict[str, Any], metrics: tuple[str, ...] = ()) -> list[CellSummary]:
    """The bench's ``summary`` entries as :class:`CellSummary` (only ``metrics`` when given)."""
    out = []
    for s in data.get("summary") or []:
        ms = {k: v for k, v in s["metrics"].items() if not metrics or k in metrics}
        out.append(
            CellSummary(
                method=s["method"],
                agent=s["agent"],
                runs=s["runs"],
                finished=s["finished"],
                diverged=s["diverged"],
                errors=s["errors"],
                collapsed=s.get("collapsed", 0),
                reached=s["reached"],
                stats={
                    k: Stat(v["n"], _float(v["mean"]), _float(v["std"]), _float(v["ci"]))
                    for k, v in ms.items()
                },
                best={k: bool(v["best"]) for k, v in ms.items()},
                p={k: v["p_vs_best"] for k, v in ms.items()},
                distinguishable={k: v["distinguishable"] for k, v in ms.items()},
            )
        )
    return out


def summary_table(data: dict[str, Any], metrics: tuple[str, ...] = ()) -> str:
    """The bench's summary table in markdown, best cells in bold."""
    sums = summaries_from_json(data, metrics)
    cols, rows = summary_rows(sums, data.get("threshold", 0.01), lambda s: f"**{s}**")
    return markdown_table(cols, rows)


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return stat_text(Stat(1, float(v), math.nan, math.nan))


def _instance(i: int | str) -> str:
    """A class or concept index, or the memorised outlier (the memorisation bench's -1)."""
    return "outlier" if str(i) == "-1" else str(i)


def _family(data: dict[str, Any]) -> Family:
    """The model family of a bench record's config."""
    from unlearn.families import family_of_kind

    return family_of_kind((data.get("config") or {}).get("model", {}).get("kind", "ddpm"))


def runs_table(data: dict[str, Any]) -> str:
    """One row per run: the metrics any run holds, in the bench's order."""
    runs = data.get("runs") or []
    metrics = [m for m in RUN_METRICS if any(r.get(m) is not None for r in runs)]
    metrics = [m for m in metrics if m not in _family(data).dropped_columns]
    cols = ["method", "agent", "instance", "seed", "status", *metrics]
    rows = [
        [str(r["method"]), str(r["agent"]), _instance(r["instance"]), str(r["seed"]), r["status"]]
        + [_cell(r.get(m)) for m in metrics]
        for r in runs
    ]
    return markdown_table(cols, rows)


def base_table(data: dict[str, Any]) -> str:
    """The base model's evaluation per instance (what each run starts from)."""
    before = data.get("before") or {}
    keys = ["forget_rate", "concept_rate", "fid", "coverage_kl"]
    keys += ["paraphrase_concept_rate", "retain_accuracy"]
    family = _family(data)
    if family.prompted:  # the concept rate is a pipeline's forget rate
        keys = [k for k in keys if k != "forget_rate"]
    keys = [k for k in keys if k not in family.dropped_columns]
    keys = [k for k in keys if any(b.get(k) is not None for b in before.values())]
    rows = [[_instance(i)] + [_cell(b.get(k)) for k in keys] for i, b in before.items()]
    return markdown_table(["instance", *keys], rows)


def bench_sections(data: dict[str, Any]) -> str:
    """A bench record's generated part: summary, compute, base model, runs, performance."""
    from unlearn.bench.baselines import compute_markdown
    from unlearn.bench.perf import PerfResult, perf_markdown

    plan = data.get("plan") or {}
    audit = bool((data.get("options") or {}).get("audit"))
    parts = [
        "## Summary",
        "",
        f"{len(data.get('runs') or [])} runs, held-out {instances_text(plan.get('instances', []))}"
        f" x seeds {plan.get('seeds', [])}.",
        "",
        legend_text(_family(data).prompted, audit),
        "",
        summary_table(data),
        "",
    ]
    compute = compute_markdown(plan.get("tuning") or {}, None, False)
    if compute:
        parts += [compute.replace("## Compute", "### Compute"), ""]
    parts += ["## Base model", "", base_table(data), ""]
    parts += ["## Every run", "", runs_table(data), ""]
    if data.get("perf"):
        parts += [perf_markdown(PerfResult(**data["perf"])), ""]
    return "\n".join(parts)


def _audit_row(r: dict[str, Any]) -> list[str]:
    a, after = r["audit"], r["run"]["after"]
    relearn = {(x["attack"], x["model"]): x for x in a.get("relearn", [])}
    forget = relearn.get(("forget", "unlearned"), {})
    rates = forget.get("rates") or []
    inv = {x["model"]: x for x in a.get("inversion", [])}.get("unlearned", {})
    mia = {x["model"]: x for x in a.get("membership", [])}.get("unlearned", {})
    return [
        str(r["method"]),
        str(r["seed"]),
        _cell(after.get("concept_rate")),
        _cell(after.get("paraphrase_concept_rate")),
        _cell(after.get("retain_accuracy")),
        _cell(after.get("fid")),
        " / ".join(_cell(x) for x in rates) or "-",
        _cell(inv.get("recovered_concept_rate")),
        _cell(mia.get("forget_auc")),
        _cell(r["run"].get("wall_time")),
    ]


def audit_sections(data: dict[str, Any]) -> str:
    """An audit record's generated part: one row per unlearned model and its audit."""
    cols = [
        "method",
        "seed",
        "concept rate",
        "paraphrase concept rate",
        "retain accuracy",
        "FID",
        "concept rate while relearning on forget images (per checkpoint)",
        "concept inversion",
        "MIA AUC (forget)",
        "unlearning wall time (s)",
    ]
    rows = [_audit_row(r) for r in data["runs"]]
    return "\n".join(
        ["## Every run", "", data.get("description", ""), "", markdown_table(cols, rows), ""]
    )


def perf_sections(data: dict[str, Any]) -> str:
    from unlearn.bench.perf import PerfResult, perf_markdown

    return perf_markdown(PerfResult(**data["perf"]))


def _generated(data: dict[str, Any]) -> str:
    if "summary" in data and "runs" in data:
        return data["section"] + "\n" if data.get("section") else bench_sections(data)
    if "runs" in data and data["runs"] and "audit" in data["runs"][0]:
        return audit_sections(data)
    if "perf" in data:
        return perf_sections(data)
    raise ValueError("a results record needs 'summary' and 'runs', audit 'runs' or 'perf'")


def _notes(path: Path, name: str) -> tuple[str, str]:
    """Title and body of a record's prose (the title is its first ``# `` line)."""
    if not path.is_file():
        return name, ""
    text = path.read_text().strip()
    first, _, rest = text.partition("\n")
    if first.startswith("# "):
        return first[2:].strip(), rest.strip()
    return name, text


def render_page(results: Path, name: str) -> str:
    """``docs/results/<name>.md`` from ``<name>.json`` and ``<name>.md`` in ``results``."""
    title, body = _notes(results / f"{name}.md", name)
    parts = [f"# {title}", ""]
    if body:
        parts += [body, ""]
    record = results / f"{name}.json"
    if record.is_file():
        parts += [_generated(json.loads(record.read_text())).rstrip(), ""]
        parts += [f"Record: `benchmarks/results/{name}.json`.", ""]
    return "\n".join(parts)


def page_names(results: Path) -> list[str]:
    return sorted({p.stem for p in results.glob("*.json")} | {p.stem for p in results.glob("*.md")})


def render_index(results: Path) -> str:
    lines = [
        "# Results",
        "",
        "Every page below is generated from the records in `benchmarks/results/` "
        "(`python -m unlearn.bench.pages`); `unlearn bench --publish` adds a record and "
        "regenerates the pages. Mean ± half width of the 95% confidence interval unless a "
        "page says otherwise.",
        "",
    ]
    for name in page_names(results):
        title, _ = _notes(results / f"{name}.md", name)
        lines.append(f"- [{title}]({name}.md)")
    return "\n".join(lines) + "\n"


def headline(results: Path) -> str:
    """The README's results section: the demo bench's summary, its main columns."""
    data = json.loads((results / f"{HEADLINE}.json").read_text())
    plan = data["plan"]
    cfg = data["config"]
    intro = (
        f"`unlearn bench` on `{cfg['name']}` ({cfg['model']['kind']}, "
        f"{cfg['unlearn']['steps']} unlearning steps, "
        f"{cfg['eval']['num_samples']} evaluation samples): held-out "
        f"{instances_text(plan['instances'])} x seeds {plan['seeds']}, "
        f"{len(data['runs'])} runs. Mean ± 95% CI; **bold** = best; the last column names the "
        f"metrics on which a row differs from the best (Welch's t-test, p < 0.05). "
        f"The full table, protocol and reading: [docs/results/{HEADLINE}.md]"
        f"(docs/results/{HEADLINE}.md)."
    )
    return f"{intro}\n\n{summary_table(data, HEADLINE_METRICS)}"


def render_all(root: Path) -> dict[Path, str]:
    """Every generated file (relative to ``root``) and its text; the README's section is
    rendered into the README's current text."""
    results = root / RESULTS
    out: dict[Path, str] = {PAGES / "index.md": render_index(results)}
    for name in page_names(results):
        out[PAGES / f"{name}.md"] = render_page(results, name)
    readme = root / "README.md"
    if readme.is_file() and (results / f"{HEADLINE}.json").is_file():
        text = readme.read_text()
        if text.count(START) == 1 and text.count(END) == 1:
            head, rest = text.split(START, 1)
            _, tail = rest.split(END, 1)
            out[Path("README.md")] = f"{head}{START}\n{headline(results)}\n{END}{tail}"
    return out


def stale(root: Path) -> list[Path]:
    """The generated files whose committed text differs from what the records render."""
    return list(_stale_texts(root))


def _stale_texts(root: Path) -> dict[Path, str]:
    """The generated files that differ from what the records render, with their new text."""
    return {
        p: text
        for p, text in render_all(root).items()
        if not (root / p).is_file() or (root / p).read_text() != text
    }


def write_pages(root: Path) -> list[Path]:
    """Write every generated file under ``root``; returns the ones that changed."""
    changed = _stale_texts(root)
    (root / PAGES).mkdir(parents=True, exist_ok=True)
    for p, text in changed.items():
        (root / p).write_text(text)
    return list(changed)


def publish(path: str | Path, state: dict[str, Any], section: str) -> list[Path]:
    """Write a bench's ``results.json`` state with its rendered summary ``section`` to
    ``path``; when ``path`` lies in a checkout's ``benchmarks/results/`` (a ``docs/`` beside
    it), regenerate that checkout's results pages. Returns the pages that changed."""
    p = Path(path).expanduser().resolve()
    p.write_text(json.dumps({**state, "section": section.strip()}, indent=1) + "\n")
    root = p.parent
    for _ in Path(RESULTS).parts:  # the checkout holding benchmarks/results/, if it is one
        root = root.parent
    if p.parent == root / RESULTS and (root / "docs").is_dir():
        return write_pages(root)
    return []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unlearn.bench.pages", description=__doc__)
    ap.add_argument("--root", type=Path, default=Path("."), help="repository root")
    ap.add_argument("--check", action="store_true", help="exit 1 if a page is out of date")
    args = ap.parse_args(argv)
    if args.check:
        bad = stale(args.root)
        for p in bad:
            print(f"out of date: {p} (run python -m unlearn.bench.pages)")
        return 1 if bad else 0
    for p in write_pages(args.root):
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
