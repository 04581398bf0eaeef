"""Ollama's name for a Hugging Face GGUF, ``hf.co/OWNER/REPO:QUANT``, as a pull.

Ollama pulls ``hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M`` as the one GGUF
of that quantisation; llmkit pulls the same repository with ``--include
'*Q4_K_M*.gguf'``. Any other name goes to ``pull`` as it is: short names and
their tags are ``pull``'s business.
"""

from __future__ import annotations

from llmkit.models.download import PullRequest


def to_pull_request(name: str) -> PullRequest:
    for prefix in ("https://", "hf.co/", "huggingface.co/"):
        name = name.removeprefix(prefix)
    base, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    if not tag or tag == "latest":
        return PullRequest(repo=base or name)
    if "/" in base:
        return PullRequest(repo=base, include=(f"*{tag}*.gguf",))
    return PullRequest(repo=name)
