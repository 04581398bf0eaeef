"""The README's examples, run as written against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```(bash|python)\n(.*?)```", README, flags=re.S)


def _examples(lang: str) -> list[str]:
    return [code for kind, code in BLOCKS if kind == lang and "127.0.0.1:8000" in code]


def test_readme_has_the_examples():
    assert len(_examples("bash")) >= 2 and len(_examples("python")) >= 6


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
        timeout=120,
        check=True,
        env={**os.environ, "LLMKIT_HOME": str(tmp_path)},  # conversations go to a temp store
    ).stdout


@pytest.mark.parametrize("code", _examples("python"))
def test_readme_python(server, code, tmp_path):
    assert _run_python(server, code, tmp_path).strip()


TOOLS = README.split("## Tools", 1)[1].split("\n## ", 1)[0]
TOOL_EXAMPLES = re.findall(r"```python\n(.*?)```", TOOLS, flags=re.S)


def test_the_tools_section_has_both_dialects():
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
