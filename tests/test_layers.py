"""Every import in src/leanface runs down the layers, and no module imports itself back in a circle.

Imports inside functions count too: a lazy import that runs back up is still a circle in the design.
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "leanface"

# unit -> the units it may import (its own unit always). Leaves are shared utilities.
LEAVES = {"errors", "files", "outputs", "boxes", "images", "cluster", "pretrained", "host", "serial", "flags", "tasks"}
ALLOWED = {
    "errors": set(),
    "files": {"errors"},
    "outputs": {"errors", "files"},
    "boxes": set(),
    "images": {"errors"},
    "cluster": {"errors"},
    "pretrained": {"errors"},
    "host": set(),
    "serial": {"errors"},
    "flags": {"errors"},
    "tasks": {"errors"},
    "models": LEAVES,
    "data": LEAVES | {"models"},
    "infer": LEAVES | {"models"},
    "recognize": LEAVES | {"models", "infer", "data"},
    "eval": LEAVES | {"models", "infer", "data", "recognize"},
    "export": LEAVES | {"models", "infer"},
    "app": LEAVES | {"models", "infer", "data", "recognize"},
    "train": LEAVES | {"models", "data", "eval", "infer", "recognize"},
    "search": LEAVES | {"models", "data", "eval", "infer", "recognize", "train"},
    "cli": LEAVES | {"models", "data", "eval", "infer", "recognize", "export", "app", "train", "search"},
    "__init__": LEAVES | {"models", "infer", "export", "recognize"},
    "__main__": {"cli"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the leanface modules a file imports (anywhere in it)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "leanface"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "leanface":
                target = node.module
            else:
                continue
            # `from pkg import sub` imports the submodule when there is one.
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
    return found


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 40, "the source tree was not found"
    return {_module_name(f): _imports(f) for f in files}


def test_every_import_runs_down_the_layers():
    wrong = []
    for module, targets in _graph().items():
        unit = _unit(module)
        for target in sorted(targets):
            other = _unit(target)
            if other != unit and other not in ALLOWED[unit]:
                wrong.append(f"{module} imports {target} ({unit} -> {other})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_modules():
    graph = _graph()
    # A package's __init__ re-exports its own modules: those edges are not part of the design's arrows.
    edges = {m: {t for t in ts if t in graph and not (t.startswith(m + ".") or m.startswith(t + "."))}
             for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The check is not vacuous: a models module importing leanface.train is reported."""
    pkg = tmp_path / "leanface"
    (pkg / "models").mkdir(parents=True)
    (pkg / "train").mkdir()
    for f in ("__init__.py", "models/__init__.py", "train/__init__.py"):
        (pkg / f).write_text("")
    (pkg / "models" / "bad.py").write_text("def f():\n    from ..train import loop\n")
    (pkg / "train" / "loop.py").write_text("")
    monkeypatch.setattr(__import__(__name__, fromlist=["SRC"]), "SRC", pkg)
    assert _imports(pkg / "models" / "bad.py") == {"leanface.train.loop"}
    assert _unit("leanface.train.loop") == "train" and "train" not in ALLOWED["models"]
