"""Stored responses on servers of their own, each with its own store file: a chain
survives a restart and is a conversation ``llmkit sessions`` lists; a long chain
on a small context is fitted instead of failing; retention evicts the oldest."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import openai
import pytest

from tests.conftest import start_server

MODEL = "SmolLM2-135M-Instruct"


def test_a_chain_survives_a_restart_and_is_a_session(tmp_path):
    store = f"sqlite:///{tmp_path / 'responses.db'}"
    server = start_server(tmp_path / "one", "--store", store)
    try:
        first = server.client().responses.create(
            model=MODEL, input="My favourite colour is teal.", max_output_tokens=8
        )
    finally:
        server.stop()
    server = start_server(tmp_path / "two", "--store", store)  # another home, the same store
    try:
        client = server.client()
        assert client.responses.retrieve(first.id).output_text == first.output_text
        second = client.responses.create(
            model=MODEL,
            input="What is my favourite colour?",
            previous_response_id=first.id,
            max_output_tokens=8,
        )
        items = client.responses.input_items.list(second.id, order="asc").data
        assert items[0].content[0].text == "My favourite colour is teal."
        assert items[1].content[0].text == first.output_text
        # the first turn was sent again: more input than the first turn's whole exchange
        assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    finally:
        server.stop()
    listed = subprocess.run(
        [sys.executable, "-m", "llmkit", "sessions", "list", "--json", "--store", store],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LLMKIT_HOME": str(tmp_path / "home")},
    )
    (session,) = json.loads(listed.stdout)
    assert session["name"].startswith("my-favourite-colour-is-teal-")
    assert (session["turns"], session["memory"], session["model"]) == (2, "tokens", MODEL)


@pytest.mark.timeout(1800)  # 35 generations: minutes on a busy two-core machine
def test_thirty_five_turns_on_a_small_context_are_fitted(tmp_path):
    context, reply, turns = 256, 8, 35  # the questions alone hold > 6 characters a token
    server = start_server(tmp_path, "--max-model-len", str(context), "--parallel", "1")
    try:
        client = server.client()
        previous, used = None, []
        for n in range(turns):
            r = client.responses.create(
                model=MODEL,
                input=f"Turn {n}: tell me one fact about the number {n}.",
                previous_response_id=previous,
                max_output_tokens=reply,
                temperature=0,
            )
            previous = r.id
            used.append(r.usage.input_tokens)
        items = client.responses.input_items.list(previous, limit=100).data
    finally:
        server.stop()
    # The whole chain is stored: 34 questions and answers, then the 35th question,
    # far more text than the context holds (over 6 characters a token) ...
    assert len(items) == 2 * turns - 1
    assert items[0].content[0].text.startswith(f"Turn {turns - 1}:")
    assert sum(len(i.content[0].text) for i in items) > 6 * context
    # ... and every turn was answered with what fits: the input grew, then stayed
    # within the context less the reply's share.
    assert used[5] > used[0] and max(used) <= context - reply


def test_retention_evicts_the_oldest_responses(tmp_path):
    server = start_server(tmp_path, "--responses-max-count", "3")
    try:
        client = server.client()
        made = [
            client.responses.create(model=MODEL, input=f"Hello {n}", max_output_tokens=2).id
            for n in range(5)
        ]
        for rid in made[:2]:
            with pytest.raises(openai.NotFoundError):
                client.responses.retrieve(rid)
        assert [client.responses.retrieve(rid).id for rid in made[2:]] == made[2:]
        assert "at most 3" in server.log()  # the start-up log says what it keeps
    finally:
        server.stop()
