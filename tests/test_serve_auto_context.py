"""``llmkit serve`` without ``--max-model-len``: the largest context (up to the one
the model was trained for) and ``--parallel`` that fit the memory, chosen once
and logged with the numbers; and a prompt longer than that context refused, not
truncated (ollama's default context cuts prompts silently: ollama#4447, #2722)."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from llmkit.errors import ConfigError
from llmkit.models.bundled import bundled_model_path
from llmkit.models.fit import Budget, choose_serving, fit_before_serving
from llmkit.models.metadata import read_facts
from llmkit.models.sizing import MIB
from tests.conftest import start_server

# The bundled model: 92.10 MiB of weights, 42.94 MiB overhead (at 4 sequences),
# 22.5 KiB of KV cache per token, trained for 8192 tokens.
SMOL = read_facts(bundled_model_path())
LONG = replace(SMOL, context_length=131072)  # the same shape, trained for 128K tokens


@pytest.mark.parametrize(
    ("facts", "budget_mib", "max_model_len", "parallel", "context", "sequences"),
    [
        # Room for everything the model was trained for, 4 sequences of it.
        (SMOL, 4096, None, None, 8192, 4),
        # 1 GiB: 3/4 of it is 768 MiB, less 135 MiB of weights and overhead: 633 MiB
        # of KV cache at 4 x 22.5 KiB a token is 7202 tokens, 7168 in whole KiB.
        (SMOL, 1024, None, None, 7168, 4),
        # 400 MiB: 300 usable; 4 sequences would get under 2048 tokens: 2 of 3584.
        (SMOL, 400, None, None, 3584, 2),
        # --parallel given: kept; the context is held at 2048 (the fit check then
        # judges that against the whole 400 MiB: it fits).
        (SMOL, 400, None, 4, 2048, 4),
        # A long-context model: its whole 128K does not fit in 6 GiB, the most that does.
        (LONG, 8192, None, None, 67584, 4),
        # --max-model-len given: as asked, whatever the memory (the fit check judges it).
        (SMOL, 400, 8192, None, 8192, 4),
        # Nothing fits: the floor, for the fit check to refuse with its numbers.
        (SMOL, 100, None, None, 2048, 1),
    ],
)  # fmt: skip
def test_the_choice(facts, budget_mib, max_model_len, parallel, context, sequences):
    budget = Budget(budget_mib * MIB, "test")
    choice = choose_serving(facts, budget, max_model_len=max_model_len, parallel=parallel)
    assert (choice.context, choice.sequences) == (context, sequences)
    assert choice.line.startswith(f"context {context} tokens, {sequences} sequence")
    assert f"sharing a KV pool of {context * sequences} tokens" in choice.line
    assert choice.line.endswith(f" of {budget_mib / 1024:.2f} GiB (test)") or choice.line.endswith(
        f" of {budget_mib:.2f} MiB (test)"
    )


def test_the_line_says_why():
    line = choose_serving(SMOL, Budget(1024 * MIB, "RAM"), max_model_len=None, parallel=None).line
    assert line == (
        "context 7168 tokens, 4 sequences (the most that fits of the 8192 it was trained "
        "for; planned in 75% of the budget, 768.00 MiB), sharing a KV pool of 28672 tokens: "
        "weights 92.10 MiB + KV cache 630.00 MiB + overhead 42.94 MiB = 765.04 MiB of "
        "1.00 GiB (RAM)"
    )


def test_a_kv_pool_is_sized_as_given():
    """--kv-cache-size: the sequences share that many tokens of KV cache, whatever
    context x sequences would be; a pool too small for one context is refused."""
    choice = choose_serving(
        SMOL, Budget(600 * MIB, "RAM"), max_model_len=2048, parallel=16, kv_cache_size=8192
    )
    assert (choice.context, choice.sequences, choice.kv_tokens) == (2048, 16, 8192)
    assert "16 sequences (--max-model-len as given), sharing a KV pool of 8192 tokens" in (
        choice.line
    )
    assert "KV cache 180.00 MiB" in choice.line  # 8192 x 22.5 KiB, not 16 x 2048 of it
    with pytest.raises(ConfigError, match="--kv-cache-size 1024 cannot hold one sequence"):
        fit_before_serving(
            bundled_model_path(), "smol", max_model_len=2048, parallel=4, memory_gib=None,
            kv_cache_size=1024,
        )  # fmt: skip


def test_longer_than_trained_is_refused():
    with pytest.raises(ConfigError, match="more than the 8192 tokens this model was trained"):
        choose_serving(SMOL, Budget(4096 * MIB, "t"), max_model_len=16384, parallel=None)


def test_serve_logs_its_choice_and_refuses_what_does_not_fit_the_context(tmp_path):
    """A real server given 1 GiB: 7168 tokens x 4 sequences, said in one line; a
    prompt longer than that is refused with the numbers."""
    server = start_server(tmp_path, env={"LLMKIT_MEMORY_GIB": "1"})
    try:
        log = server.log()
        assert (
            "SmolLM2-135M-Instruct: context 7168 tokens, 4 sequences (the most that fits of "
            "the 8192 it was trained for; planned in 75% of the budget, 768.00 MiB), sharing "
            "a KV pool of 28672 tokens: weights 92.10 MiB + KV cache 630.00 MiB + overhead "
            "42.94 MiB = 765.04 MiB of 1.00 GiB (LLMKIT_MEMORY_GIB)"
        ) in log
        assert "context 7168 tokens" in log.split("serving SmolLM2-135M-Instruct", 1)[1]
        r = httpx.post(
            server.v1 + "/completions",
            json={"model": "SmolLM2-135M-Instruct", "prompt": "word " * 7500, "max_tokens": 4},
            timeout=120,
        )
        assert r.status_code == 400
        assert "7168" in r.json()["error"]["message"]
    finally:
        server.stop()
