"""The layers of docs/architecture.md, enforced: a module imports only from its own layer or
below.

Every import of every module counts — top-level, inside functions, under ``TYPE_CHECKING`` —
because a function-level import is still a dependency (it only moves the failure to run
time). Modules of one layer may import each other, but no two modules may import each other
in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "unlearn"

#: bottom to top, in the order of docs/architecture.md; a name is a module or a package of ``unlearn``
LAYERS: tuple[tuple[str, ...], ...] = (
    ("config", "types", "console", "runtime", "options"),
    ("data", "models", "tracking", "submit", "observation"),
    ("methods", "metrics"),
    ("families", "pretrain", "task", "unlearner", "agents", "export"),
    (
        "run",
        "evaluation",
        "envs",
        "tuners",
        "rl",
        "audit",
        "bench",
        "demo",
    ),
    ("cli",),
)


def layer_of(module: str) -> int | None:
    """1-based layer of a dotted module name (``unlearn`` itself: 0, below everything)."""
    parts = module.split(".")
    if parts[0] != "unlearn":
        return None
    if len(parts) == 1:
        return 0
    return next((i + 1 for i, names in enumerate(LAYERS) if parts[1] in names), None)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> set[str]:
    """The ``unlearn`` modules that ``path`` imports (``from pkg import sub`` names ``pkg.sub``)."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "unlearn"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "unlearn":
                continue
            out.add(target)
            folder = root.parent.joinpath(*target.split("."))
            for a in node.names:
                if (folder / f"{a.name}.py").is_file() or (folder / a.name).is_dir():
                    out.add(f"{target}.{a.name}")
    out.discard(me)
    return out


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    return {module_name(p, root): imports_of(p, root) for p in sorted(root.rglob("*.py"))}


def back_edges(graph: dict[str, set[str]]) -> list[str]:
    """``a (layer i) -> b (layer j)`` for every import with j > i, and every unplaced module."""
    bad = []
    for mod, targets in sorted(graph.items()):
        mine = layer_of(mod)
        if mine is None:
            bad.append(f"{mod}: not in any layer; add it to LAYERS (and docs/architecture.md)")
            continue
        for t in sorted(targets):
            theirs = layer_of(t)
            if theirs is not None and theirs > mine:
                bad.append(f"{mod} (layer {mine}) imports {t} (layer {theirs})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (import circles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_from_a_higher_layer():
    graph = import_graph()
    assert len(graph) > 50  # the walk found the package
    assert back_edges(graph) == []


def test_no_import_circles():
    assert cycles(import_graph()) == []


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "unlearn"
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


@pytest.mark.parametrize(
    "source",
    [
        "from unlearn.envs.observation import layout\n",  # the edge agents -> envs once was
        "def f():\n    from unlearn.envs import observation\n",  # inside a function
        "import unlearn.envs.observation\n",
        "from ..envs import observation\n",  # relative
    ],
)
def test_the_check_catches_a_back_edge(tmp_path, source):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "agents/__init__.py": "",
            "agents/policy.py": source,
            "envs/__init__.py": "",
            "envs/observation.py": "",
        },
    )
    bad = back_edges(import_graph(root))
    assert "unlearn.agents.policy (layer 4) imports unlearn.envs.observation (layer 5)" in bad
    assert all(b.startswith("unlearn.agents.policy (layer 4) imports unlearn.envs") for b in bad)


def test_the_check_catches_circles_and_unplaced_modules(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "agents/__init__.py": "",
            "agents/hybrid.py": "def f():\n    from unlearn.agents.registry import build\n",
            "agents/registry.py": "from unlearn.agents.hybrid import HybridAgent\n",
            "newthing.py": "",
        },
    )
    graph = import_graph(root)
    assert cycles(graph) == [["unlearn.agents.hybrid", "unlearn.agents.registry"]]
    assert back_edges(graph) == [
        "unlearn.newthing: not in any layer; add it to LAYERS (and docs/architecture.md)"
    ]
