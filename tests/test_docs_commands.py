"""Every ``unlearn ...`` command printed in README.md and docs/*.md runs as printed.

A documented command is a line of a fenced code block (bash, sh, console or no language)
that starts with ``unlearn``, with its backslash continuations joined and its trailing
comment removed. It runs through the real console command with a tiny budget appended as
``--set`` overrides (two unlearning steps, few evaluation samples, a temporary workdir and
MLflow store; the tiny config's commands share the session's pretrained tiny model), so the
text a reader copies is the text tested; a command printed twice runs once. A command whose
comment says ``needs: gpu``, ``hub``, ``cluster``, ``server`` (runs until stopped) or ``time``
(minutes, or the output of an earlier long run), or that follows a comment line saying so in
its code block, is checked for parsing only: its subcommand accepts every option it uses and its config loads with its
overrides. The results pages must equal what their records render (``unlearn.bench.pages``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import REPO, cli

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
NEEDS = {"gpu", "hub", "cluster", "server", "time"}
MARK = re.compile(r"needs:\s*([\w ,]+)")
FENCE = re.compile(r"^```(\w*)\s*$")
SHELL = {"", "bash", "sh", "console", "shell"}


@dataclass(frozen=True)
class Documented:
    """One documented command: where it is printed, its text and what it needs."""

    where: str
    text: str
    needs: frozenset[str]

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)


def _split_comment(line: str) -> tuple[str, str]:
    """``(command, comment)``: the comment starts at a ``#`` outside quotes after a space."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def _needs(comment: str) -> frozenset[str]:
    m = MARK.search(comment)
    return frozenset(m.group(1).replace(",", " ").split()) if m else frozenset()


def documented_commands(paths: list[Path] = DOCS) -> list[Documented]:
    found = []
    for path in paths:
        lang, joined, start, block = None, "", 0, frozenset()
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = FENCE.match(line.strip())
            if m:
                lang, block = (None if lang is not None else m.group(1)), frozenset()
                continue
            if lang not in SHELL:
                continue
            if line.lstrip().startswith("#"):  # a comment line marks the rest of its block
                block = block | _needs(line)
                continue
            if not joined:
                start = n
            if line.rstrip().endswith("\\"):
                joined += line.rstrip()[:-1] + " "
                continue
            text, comment = _split_comment(joined + line)
            joined = ""
            text = " ".join(text.split())
            if text == "unlearn" or text.startswith("unlearn "):
                where = f"{path.relative_to(REPO)}:{start}"
                found.append(Documented(where, text, block | _needs(comment)))
    return found


COMMANDS = documented_commands()


def test_commands_are_found_and_marked_known_needs() -> None:
    assert len(COMMANDS) >= 30
    wheres = {c.where.split(":")[0] for c in COMMANDS}
    assert "README.md" in wheres and "docs/rl.md" in wheres
    for c in COMMANDS:
        assert c.needs <= NEEDS, f"{c.where}: unknown needs {sorted(c.needs - NEEDS)}"
    assert 3 <= len(RUNNABLE) <= 12, [c.where for c in RUNNABLE]  # each costs seconds


def _options(argv: list[str]) -> tuple[str | None, list[str]]:
    config, sets, i = None, [], 0
    while i < len(argv):
        if argv[i] in ("--config", "-c") and i + 1 < len(argv):
            config, i = argv[i + 1], i + 2
        elif argv[i] in ("--set", "-s") and i + 1 < len(argv):
            sets.append(argv[i + 1])
            i += 2
        else:
            i += 1
    return config, sets


def check_parses(argv: list[str]) -> None:
    """The subcommand exists and takes every option used; the config loads with the sets."""
    from typer.main import get_command

    from unlearn.cli import app
    from unlearn.config import load_config

    args = argv[1:]
    if "--" in args:  # `unlearn submit ... -- unlearn tune ...`: the inner command is data
        args = args[: args.index("--")]
    cmd = get_command(app)
    while args and hasattr(cmd, "commands") and args[0] in cmd.commands:
        cmd = cmd.commands[args.pop(0)]
    if args == ["--help"] or not args and hasattr(cmd, "commands"):
        return
    assert not hasattr(cmd, "commands"), f"{argv}: no such command"
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    used = {a.split("=")[0] for a in args if a.startswith("-") and len(a) > 1}
    assert used <= known, f"{argv}: {cmd.name} does not take {sorted(used - known)}"
    if "--config" in known:
        config, sets = _options(args)
        path = None if config is None else REPO / config
        if path is None or path.is_file():  # a sweep's output named in prose is not here
            load_config(path, sets)


@pytest.mark.parametrize("doc", COMMANDS, ids=[c.where for c in COMMANDS])
def test_documented_command_parses(doc: Documented) -> None:
    check_parses(doc.argv)


@pytest.fixture(scope="module")
def budget(tiny_workdir: Path, tmp_path_factory) -> dict[str, list[str]]:
    """The ``--set`` overrides appended to a runnable command, by config."""
    tmp = tmp_path_factory.mktemp("docs-commands")
    common = [f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}", "unlearn.steps=2"]
    return {
        "configs/tiny.yaml": [*common, f"workdir={tiny_workdir}", "eval.num_samples=16"],
        "t2i": [
            *common,
            f"workdir={tmp / 'work'}",
            "t2i.samples_per_prompt=1",
            "eval.sampler_steps=2",
        ],
        "other": [*common, f"workdir={tmp / 'work'}", "eval.num_samples=16"],
    }


RUNNABLE = [
    c
    for i, c in enumerate(COMMANDS)
    if not c.needs and c.text not in {d.text for d in COMMANDS[:i]}
]


@pytest.mark.parametrize("doc", RUNNABLE, ids=[c.where for c in RUNNABLE])
@pytest.mark.slow
def test_documented_command_runs(doc: Documented, budget: dict[str, list[str]]) -> None:
    argv = doc.argv
    config, _ = _options(argv)
    extra: list[str] = []
    if "--config" in argv or "--set" in argv:
        prompted = config and ("t2i" in config or "sdxl" in config)
        key = config if config in budget else "t2i" if prompted else "other"
        extra = [a for s in budget[key] for a in ("--set", s)]
    proc = cli(*argv[1:], *extra, cwd=REPO, timeout=300)
    assert proc.returncode == 0, (
        f"{doc.where}: {doc.text}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    )


def test_results_pages_are_generated_from_the_records() -> None:
    from unlearn.bench.pages import stale

    assert stale(REPO) == [], "run: python -m unlearn.bench.pages"


def test_a_changed_record_makes_its_page_and_the_readme_stale(tmp_path: Path) -> None:
    import json
    import shutil

    from unlearn.bench.pages import HEADLINE, stale, write_pages

    for d in ("benchmarks/results", "docs/results"):
        shutil.copytree(REPO / d, tmp_path / d, ignore=shutil.ignore_patterns("rl-residual"))
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    assert stale(tmp_path) == []
    record = tmp_path / "benchmarks" / "results" / f"{HEADLINE}.json"
    data = json.loads(record.read_text())
    data["summary"][0]["metrics"]["fid"]["mean"] = 123.25
    record.write_text(json.dumps(data))
    page = Path("docs") / "results" / f"{HEADLINE}.md"
    assert set(stale(tmp_path)) == {page, Path("README.md")}
    write_pages(tmp_path)
    assert "123.2" in (tmp_path / page).read_text() and stale(tmp_path) == []
