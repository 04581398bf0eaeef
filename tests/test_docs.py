"""The docs site holds to the code: a page for every command and every route, the
generated reference complete, the architecture diagram in the order the import
check enforces, and every page reachable from the site's navigation.

The generated parts are rendered here with the site's own build hook
(``docs/hooks/reference.py``), without MkDocs; CI builds the whole site with
``mkdocs build --strict`` (``make docs``), which fails on a broken link or anchor.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.relative_to(DOCS).parts)


@cache
def hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llmkit_docs_hook", DOCS / "hooks/reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rendered(page: Path) -> str:
    """A page's Markdown as the site shows it: its markers replaced by what they stand for."""
    return hook().on_page_markdown(page.read_text(), page=None, config=None, files=None)


def nav_pages() -> list[str]:
    def walk(item: object) -> list[str]:
        if isinstance(item, str):
            return [item]
        if isinstance(item, dict):
            return [p for v in item.values() for p in walk(v)]
        if isinstance(item, list):
            return [p for v in item for p in walk(v)]
        return []

    return walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])


def test_every_page_is_in_the_navigation_and_every_entry_is_a_page():
    pages = {str(p.relative_to(DOCS)) for p in PAGES}
    nav = nav_pages()
    assert sorted(pages - set(nav)) == [] and sorted(set(nav) - pages) == []


def test_every_marker_renders_and_an_unknown_one_fails():
    for page in PAGES:
        assert "<!-- llmkit:" not in rendered(page), page
    try:
        hook().render("no-such-part")
    except ValueError as e:
        assert "no-such-part" in str(e)
    else:
        raise AssertionError("an unknown marker rendered")


def test_every_command_has_a_page_with_its_generated_help():
    commands = hook().commands()
    assert {"serve", "chat", "pull", "mem", "sessions", "doctor"} <= set(commands)
    for name in commands:
        page = DOCS / "reference" / "cli" / f"{name}.md"
        assert page.exists(), f"llmkit {name} has no page in docs/reference/cli/"
        text = rendered(page)
        assert f"$ llmkit {name} --help\nUsage: llmkit {name}" in text, name
        assert f"[`llmkit {name}`]({name}.md)" in (DOCS / "reference/cli/index.md").read_text()


def test_a_group_page_shows_every_subcommand():
    text = rendered(DOCS / "reference" / "cli" / "sessions.md")
    for sub in ("list", "show", "export", "import", "rename", "search", "rm"):
        assert f"$ llmkit sessions {sub} --help" in text


def test_the_flags_page_lists_every_option_the_serve_command_takes():
    from llmkit.cli.main import make_serve

    page = rendered(DOCS / "reference" / "flags.md")
    options = [o for p in make_serve().params for o in p.opts if o.startswith("--")]
    assert len(options) > 30
    missing = [o for o in options if f"`{o}`" not in page]
    assert not missing, f"docs/reference/flags.md does not list {missing}"
    assert "| `--port` | `LLMKIT_PORT` | `8000` |" in page  # a flag, its variable, its default


def _normal(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path).rstrip("/") or "/"


def test_every_route_of_the_app_has_its_section_in_the_endpoints_reference():
    from tests.test_guard import app_with

    # Every route the server's own OpenAPI document lists (/metrics, kept out of it, is
    # documented too, but not checked here).
    paths = app_with().openapi()["paths"]
    routes = {(m.upper(), _normal(path)) for path, methods in paths.items() for m in methods}
    assert ("POST", "/v1/chat/completions") in routes and ("POST", "/api/chat") in routes
    documented: set[tuple[str, str]] = set()
    for page in (DOCS / "reference" / "endpoints").glob("*.md"):
        for method, path in re.findall(
            r"`(GET|POST|PUT|PATCH|DELETE|HEAD) (/[^`?\s]*)", page.read_text()
        ):
            documented.add((method, _normal(path)))
    missing = sorted(r for r in routes if r not in documented)
    assert not missing, f"no section in docs/reference/endpoints/ for {missing}"


def _names(layer: object) -> frozenset[str]:
    """A layer of ``LAYERS`` as a set of dotted module names, whatever its spelling
    ("llmkit.cli" or "cli"; a string of several, or a tuple, list or set)."""
    items = re.split(r"[,\s]+", layer) if isinstance(layer, str) else list(layer)
    out = set()
    for item in items:
        name = str(item).strip().replace("/", ".").removesuffix(".py").strip(".")
        if name:
            out.add(name if name == "llmkit" or name.startswith("llmkit.") else f"llmkit.{name}")
    return frozenset(out)


def diagram_layers() -> list[frozenset[str]]:
    """The architecture page's diagram, top first: one layer per line naming modules."""
    text = (DOCS / "architecture.md").read_text()
    diagram = re.search(r"```text\n(.*?)```", text, flags=re.S)
    assert diagram is not None
    layers = []
    for line in diagram.group(1).splitlines():
        if line.startswith("llmkit"):
            layers.append(_names(re.split(r"\s{2,}", line.strip())[0]))
    return layers


def test_the_architecture_diagram_draws_the_order_the_import_check_enforces():
    from tests.test_layers import LAYERS  # the import check's order, top first

    assert diagram_layers() == [_names(layer) for layer in LAYERS]


def test_the_quick_start_commands_are_the_makefile_s_and_ci_runs_them():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for target in ("serve", "test"):
        assert f"\n    make {target}\n" in readme and f"\n{target}:\n" in makefile
    assert "\ndocs:\n" in makefile and "mkdocs build --strict" in makefile
    assert "make test" in ci and "make docs" in ci  # CI: the README's command, then the site
