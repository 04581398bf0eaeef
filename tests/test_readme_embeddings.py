"""The Embeddings guide's examples (docs/guides/embeddings.md), run as written
against the real server, and held to what each says it prints (its ``# prints:``
line: vector counts and lengths), not only to running."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guides" / "embeddings.md"
BLOCKS = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)


def test_the_section_has_an_example_per_client():
    assert len(BLOCKS) == 2 and "openai" in BLOCKS[0] and "ollama" in BLOCKS[1]
    assert all("127.0.0.1:8000" in code and "# prints: " in code for code in BLOCKS)


@pytest.mark.parametrize("code", BLOCKS)
def test_each_example_prints_what_it_says(server, code):
    claimed = code.split("# prints: ", 1)[1].splitlines()[0].strip()
    run = [sys.executable, "-c", code.replace("http://127.0.0.1:8000", server.url)]
    out = subprocess.check_output(run, text=True, timeout=120)
    assert out.strip() == claimed
