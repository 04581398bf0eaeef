"""The examples of the README and of the docs site (``docs/**/*.md``), run as
written against a real server: every ```bash and ```python block that talks to
``127.0.0.1:8000``. Shell examples not meant to run are indented blocks or other
languages."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Pages whose examples need a model the shared server does not serve: their own
#: tests run them (the rerank guide's: tests/test_rerank.py, against a reranker).
ELSEWHERE = {ROOT / "docs/guides/rerank.md"}
#: Pages whose examples need a vision model or the operator's MCP servers, which
#: the shared server does not have. Not run as written yet: tests/test_images_*.py
#: and tests/test_mcp_*.py drive the same requests through the same clients.
ELSEWHERE |= {ROOT / "docs/guides/images.md", ROOT / "docs/guides/mcp.md"}
PAGES = [
    ROOT / "README.md",
    *sorted(p for p in (ROOT / "docs").rglob("*.md") if p not in ELSEWHERE),
]


def _blocks(page: Path) -> list[tuple[str, str]]:
    return re.findall(r"```(bash|python)\n(.*?)```", page.read_text(), flags=re.S)


def _examples(lang: str) -> list:
    """One test per distinct example (the README repeats a few of the docs'), named
    after the page it is first found on."""
    seen: dict[str, str] = {}
    for page in PAGES:
        for kind, code in _blocks(page):
            if kind == lang and "127.0.0.1:8000" in code and code not in seen:
                seen[code] = f"{page.relative_to(ROOT)}:{len(seen)}"
    return [pytest.param(code, id=name) for code, name in seen.items()]


def _runs(page: str) -> int:
    return sum("127.0.0.1:8000" in code for _kind, code in _blocks(ROOT / page))


def test_the_readme_and_each_client_guide_have_examples_that_run():
    readme = _blocks(ROOT / "README.md")
    assert sum(k == "bash" and "127.0.0.1:8000" in c for k, c in readme) >= 2
    assert sum(k == "python" and "127.0.0.1:8000" in c for k, c in readme) >= 5
    guides = ["openai", "ollama", "anthropic", "langchain", "pydantic-ai", "tools", "chat"]
    for page in [f"docs/guides/{g}.md" for g in guides] + ["docs/zh/index.md"]:
        assert _runs(page) >= 1, f"{page} has no example the tests run"


@pytest.mark.parametrize("code", _examples("bash"))
def test_readme_curl(server, code):
    out = subprocess.run(
        ["bash", "-c", code.replace("http://127.0.0.1:8000", server.url)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert '"error"' not in out
    assert '"chat.completion"' in out or '"done":true' in out.replace(" ", "")
    assert '"content"' in out


def _run_python(server, code: str, tmp_path: Path) -> str:
    """An example's output, run as written against ``server``."""
    return subprocess.run(
        [sys.executable, "-c", code.replace("http://127.0.0.1:8000", server.url)],
        capture_output=True,
        text=True,
        timeout=240,  # a loaded CI machine: langchain's import alone takes seconds
        check=True,
        env={**os.environ, "LLMKIT_HOME": str(tmp_path)},  # conversations go to a temp store
    ).stdout


@pytest.mark.parametrize("code", _examples("python"))
def test_readme_python(server, code, tmp_path):
    assert _run_python(server, code, tmp_path).strip()


TOOL_EXAMPLES = re.findall(
    r"```python\n(.*?)```", (ROOT / "docs/guides/tools.md").read_text(), flags=re.S
)


def test_the_tools_guide_has_both_dialects():
    assert len(TOOL_EXAMPLES) == 2 and "ollama" in TOOL_EXAMPLES[1]


@pytest.mark.parametrize("code", TOOL_EXAMPLES)
def test_readme_tool_examples_print_a_valid_call(server, code, tmp_path):
    """Each prints the call it forced: get_weather and arguments that match the schema."""
    import ast
    import json

    import jsonschema

    out = _run_python(server, code, tmp_path)
    name, args = out.strip().split(" ", 1)
    assert name == "get_weather"
    schema = re.search(r'"parameters": (\{.*?\n        \}),\n', code, flags=re.S)
    assert schema is not None
    jsonschema.validate(json.loads(args), ast.literal_eval(schema.group(1)))
