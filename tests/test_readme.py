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


@pytest.mark.parametrize("code", _examples("python"))
def test_readme_python(server, code, tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", code.replace("http://127.0.0.1:8000", server.url)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "LLMKIT_HOME": str(tmp_path)},  # conversations go to a temp store
    ).stdout
    assert out.strip()
