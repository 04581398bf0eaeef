"""The shape of the house, checked on the source: which package may import which,
no import cycles, and the environment read in one module only.

    engines/  imports only core, errors, env, models, its own shared modules and
              (upstream, vllm and their shared remote module) client; no engine
              package imports another
    core/     imports nothing of ours
    env.py    is the only module that reads os.environ
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "llmkit"
ENGINE_PACKAGES = sorted(p.name for p in (PKG / "engines").iterdir() if (p / "spec.py").exists())


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text()) for p in PKG.rglob("*.py")}


def imports(tree: ast.Module, *, top_level_only: bool) -> Iterator[str]:
    """The llmkit modules a module imports (all of them, or only those imported
    when it is itself imported: not in functions, not under TYPE_CHECKING)."""
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("llmkit"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmkit"):
            yield node.module
            for a in node.names:  # `from llmkit.engines import registry` names a module
                yield f"{node.module}.{a.name}"


def test_engines_import_only_what_lies_below_them():
    allowed = ("llmkit.core", "llmkit.errors", "llmkit.env", "llmkit.models", "llmkit.engines")
    problems = []
    for name, tree in modules().items():
        if not name.startswith("llmkit.engines"):
            continue
        package = name.split(".")[2] if name.count(".") >= 3 else None
        may_use_client = package in ("upstream", "vllm") or name == "llmkit.engines.remote"
        for imp in imports(tree, top_level_only=False):
            ok = imp.startswith(allowed) or (may_use_client and imp.startswith("llmkit.client"))
            if not ok:
                problems.append(f"{name} imports {imp}")
            other = imp.split(".")[2] if imp.startswith("llmkit.engines.") else None
            if package and other in ENGINE_PACKAGES and other != package:
                problems.append(f"{name} (engine {package}) imports engine {other}: {imp}")
    assert not problems, "\n".join(problems)


def test_core_imports_nothing_of_ours():
    for name, tree in modules().items():
        if name.startswith("llmkit.core"):
            outside = [i for i in imports(tree, top_level_only=False) if "llmkit.core" not in i]
            assert not outside, f"{name} imports {outside}"


def test_no_import_cycles_between_modules():
    mods = modules()
    graph = {
        name: {i for i in imports(tree, top_level_only=True) if i in mods and i != name}
        for name, tree in mods.items()
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_only_env_reads_the_environment():
    readers = []
    for name, tree in modules().items():
        if name == "llmkit.env":
            continue
        for node in ast.walk(tree):
            text = ast.unparse(node) if isinstance(node, ast.Attribute | ast.keyword) else ""
            if isinstance(node, ast.Attribute) and text in ("os.environ", "os.getenv"):
                readers.append(f"{name}: {text}")
            if isinstance(node, ast.keyword) and node.arg in ("envvar", "auto_envvar_prefix"):
                readers.append(f"{name}: click {node.arg}=")
            if isinstance(node, ast.ImportFrom) and node.module == "pydantic_settings":
                readers.append(f"{name}: pydantic_settings")
    assert not readers, "\n".join(readers)
