"""The shape of the house, checked on the source: which package may import which,
no import cycles, and the environment read in one module only.

    LAYERS    the package order, top first: a module imports only modules of its
              own package or of a group below its own, at module level and inside
              functions alike (only ``if TYPE_CHECKING:`` blocks are exempt);
              packages in one group do not import each other
    engines/  imports only core, errors, env, models, its own shared modules and
              (upstream, vllm and their shared remote module) client; no engine
              package imports another
    core/     imports nothing of ours
    env.py    is the only module that reads os.environ

The docs' architecture diagram is checked against ``LAYERS`` too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "llmkit"
ENGINE_PACKAGES = sorted(p.name for p in (PKG / "engines").iterdir() if (p / "spec.py").exists())

# Top first. A name stands for that module and everything under it, except the top
# package ``llmkit``, which stands for its ``__init__`` alone (the ``Chat`` facade).
LAYERS: list[tuple[str, ...]] = [
    ("llmkit.__main__", "llmkit.cli"),  # the command line
    ("llmkit",),  # the Chat facade
    ("llmkit.serving",),  # the wiring: server, building engines and the app, local models
    ("llmkit.api", "llmkit.integrations"),  # the HTTP dialects; LangChain/LangGraph
    ("llmkit.config",),  # ServeSettings, the config file and its model entries
    ("llmkit.memory",),  # store, strategies, Chat
    ("llmkit.engines",),  # engines, registry, decode loop, model families
    ("llmkit.client",),  # the HTTP client
    ("llmkit.models",),  # catalog, download, sizing, Modelfile
    ("llmkit.core", "llmkit.errors", "llmkit.env", "llmkit.version"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text()) for p in PKG.rglob("*.py")}


def _import_nodes(node: ast.AST, *, top_level_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for other in child.orelse:  # only the TYPE_CHECKING branch is for the checker
                yield from _import_nodes(ast.Module([other], []), top_level_only=top_level_only)
        elif top_level_only and isinstance(
            child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
        ):
            continue  # runs later, if ever: not when the module is imported
        else:
            yield from _import_nodes(child, top_level_only=top_level_only)


def imports(tree: ast.Module, *, top_level_only: bool) -> Iterator[str]:
    """The llmkit modules a module imports (all of them, or only those imported
    when it is itself imported: not in functions), never under TYPE_CHECKING."""
    for node in _import_nodes(tree, top_level_only=top_level_only):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("llmkit"))
        elif node.module and node.module.startswith("llmkit"):
            yield node.module
            for a in node.names:  # `from llmkit.engines import registry` names a module
                yield f"{node.module}.{a.name}"


def layer(module: str) -> tuple[int, str] | None:
    """The group ``module`` belongs to (0: the top) and the name in it that covers it."""
    for index, group in enumerate(LAYERS):
        for name in group:
            if module == name or (name != "llmkit" and module.startswith(name + ".")):
                return index, name
    return None


def layer_problems(mods: dict[str, ast.Module]) -> list[str]:
    """Every import, top-level or in a function, that goes up or sideways."""
    problems = []
    for name, tree in sorted(mods.items()):
        here = layer(name)
        if here is None:
            problems.append(f"{name} has no place in LAYERS")
            continue
        for imp in sorted(set(imports(tree, top_level_only=False))):
            # `from llmkit.x import name` names llmkit.x, and llmkit.x.name only if a module.
            if imp not in mods and imp.rpartition(".")[0] in mods:
                continue
            there = layer(imp)
            if there is None:
                problems.append(f"{name} imports {imp}, which has no place in LAYERS")
            elif there[1] != here[1] and there[0] <= here[0] and name != "llmkit.__main__":
                # (``python -m llmkit`` is the command line's door: it runs cli, its group.)
                problems.append(f"{name} ({here[1]}) imports {imp} ({there[1]}): not below it")
    return problems


def test_every_import_goes_to_its_own_package_or_below():
    problems = layer_problems(modules())
    assert not problems, "\n".join(problems)


def test_the_layer_check_sees_imports_in_functions_and_skips_type_checking():
    source = """
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from llmkit.serving.server import serve
def later():
    from llmkit.api import app
"""
    mods = {
        "llmkit.config.x": ast.parse(source),
        "llmkit.api": ast.parse(""),
        "llmkit.serving.server": ast.parse(""),
        "llmkit.env": ast.parse("import llmkit.errors"),  # one group, two modules
        "llmkit.errors": ast.parse(""),
    }
    assert layer_problems(mods) == [
        "llmkit.config.x (llmkit.config) imports llmkit.api (llmkit.api): not below it",
        "llmkit.env (llmkit.env) imports llmkit.errors (llmkit.errors): not below it",
    ]
    assert layer("llmkit") == (1, "llmkit") and layer("llmkit.nowhere") is None


def test_engine_packages_are_reached_through_their_specs_and_api_through_serving():
    # Above engines/, an engine is its spec (``EngineSpec``: options, build, doctor);
    # the command line starts the HTTP layer through the wiring, never directly.
    inside = tuple(f"llmkit.engines.{p}" for p in ENGINE_PACKAGES)
    problems = []
    for name, tree in modules().items():
        for imp in imports(tree, top_level_only=False):
            if imp.startswith(inside) and not name.startswith("llmkit.engines"):
                problems.append(f"{name} imports {imp}")
            if name.startswith("llmkit.cli") and imp.startswith("llmkit.api"):
                problems.append(f"{name} imports {imp}")
    assert not problems, "\n".join(problems)


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
    # Imports inside functions count: hiding a cycle in a function only defers it.
    mods = modules()
    graph = {
        name: {i for i in imports(tree, top_level_only=False) if i in mods and i != name}
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
