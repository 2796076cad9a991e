"""The real ``unlearn`` console command, in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO, UNLEARN, clean_env, cli, cli_here


def test_help_lists_commands_and_imports_nothing_heavy():
    r = cli("--help")
    assert r.returncode == 0
    for cmd in ("pretrain", "eval", "run", "runs", "demo"):
        assert cmd in r.stdout
    code = "import sys, unlearn.cli; print(sorted(m for m in ('torch','ray','mlflow','diffusers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def command_tree() -> list[tuple[list[str], object]]:
    """Every command and sub-command of the Typer app (so a new one is covered at once)."""
    import typer.main

    from unlearn.cli import app

    def walk(cmd, path: list[str]):
        yield path, cmd
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            if not sub.hidden:
                yield from walk(sub, [*path, name])

    return [(p, c) for p, c in walk(typer.main.get_command(app), []) if p]


@pytest.mark.slow
def test_every_command_explains_itself():
    tree = command_tree()
    assert {"pretrain", "eval", "run", "runs", "demo"} <= {p[0] for p, _ in tree}
    assert ["rl", "train"] in [p for p, _ in tree]  # sub-commands are walked too
    env = clean_env()
    # all at once: the help texts are independent, and the suite stays as fast as before
    procs = [
        (
            path,
            cmd,
            subprocess.Popen(
                [UNLEARN, *path, "--help"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            ),
        )
        for path, cmd in tree
    ]
    for path, cmd, proc in procs:
        out, err = proc.communicate(timeout=300)
        name = " ".join(path)
        assert proc.returncode == 0, (name, err)
        assert f"unlearn {name}" in out and len(out) > 200, (name, out)
        first = " ".join((cmd.help or "").split("\n")[0].split())[:40]
        assert first and first in " ".join(out.split()), (name, first)
        if any(p.name == "config" for p in cmd.params):
            assert "--config" in out, name
        for sub in getattr(cmd, "commands", {}):
            assert sub in out, (name, sub)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--set", "method.lam=2"], "method.lam: 2.0 is out of range"),
        (["--set", "data.name=imagenet"], "data.name: 'imagenet' is not allowed"),
        (["--set", "forget.classes=[42]"], "forget.classes: class 42 is not in the data"),
        (["--set", "env.residual={start: 0.5, end: 0.1}"], "env.residual.width: missing"),
    ],
)
def test_bad_config_exits_2_with_one_line(args, fragment, tmp_path):
    model = REPO / "unlearn/assets/demo/model"
    r = cli_here("eval", str(model), "--set", f"workdir={tmp_path}", *args)
    assert r.returncode == 2, r.stderr
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_eval_bad_model_dirs(tmp_path):
    r = cli("eval", str(tmp_path / "missing"), "--set", f"workdir={tmp_path}")
    assert r.returncode == 2 and "does not exist" in r.stderr
    model = REPO / "unlearn/assets/demo/model"
    r = cli("eval", str(model), "--set", f"workdir={tmp_path}", "--set", "data.resolution=12")
    assert r.returncode == 2 and "model expects 1x16x16 images" in r.stderr
    assert not (model / "eval").exists()


@pytest.mark.slow
def test_eval_json_of_shipped_model_is_deterministic(tmp_path):
    args = [
        "eval",
        str(REPO / "unlearn/assets/demo/model"),
        "--json",
        "--out",
        str(tmp_path / "ev"),
        "--set",
        f"workdir={tmp_path}",
        "--set",
        "eval.num_samples=80",
        "--set",
        "eval.sampler_steps=5",
        "--set",
        "eval.elbo_timesteps=5",
    ]
    # the second run without --out: a shipped model's evaluation goes to the workdir, not
    # into the package, with the same numbers
    r1 = cli(*args)
    r2 = cli(*[a for a in args if a not in ("--out", str(tmp_path / "ev"))])
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    a, b = json.loads(r1.stdout), json.loads(r2.stdout)
    assert a.pop("grid") != b.pop("grid") and a == b  # where the grid went, nothing else
    assert a["num_samples"] == 80 and 0 <= a["forget_rate"] <= 1
    assert (tmp_path / "ev" / "samples.png").stat().st_size > 0
    assert (tmp_path / "eval" / "demo" / "model" / "metrics.json").is_file()
    assert not (REPO / "unlearn/assets/demo/model/eval").exists()
