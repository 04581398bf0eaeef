"""``from llmkit import Chat``: the Python API and the LangChain history, against
real servers and real SQLite files."""

from __future__ import annotations

import asyncio
import signal
import threading

import httpx
import pytest
from click.testing import CliRunner

from llmkit import AsyncChat, Chat
from llmkit.cli.main import cli
from llmkit.core.types import Message
from llmkit.errors import ContextLengthError, InvalidRequestError, ModelNotFoundError, UpstreamError
from llmkit.memory.store import Store
from tests.conftest import start_server

MODEL = "SmolLM2-135M-Instruct"


@pytest.fixture()
def store_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/chats.db"


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """A 256-token context: long conversations must be fitted to it."""
    s = start_server(tmp_path_factory.mktemp("small"), "--max-model-len", "256", "--parallel", "1")
    yield s
    s.stop()


def test_send_stream_history_and_a_session_that_persists(server, store_url):
    chat = Chat(server.url, session="py", system="Be brief.", max_tokens=12, store=store_url)
    assert chat.model == MODEL  # the server's first model
    first = chat.send("My name is Ada.")
    deltas = list(chat.stream("What is my name?"))
    assert first and deltas and all(isinstance(d, str) for d in deltas)
    assert [m.role for m in chat.history] == ["user", "assistant", "user", "assistant"]
    assert chat.history[1].content == first and chat.history[3].content == "".join(deltas)
    assert chat.last_sent[0] == Message("system", "Be brief.")
    assert chat.last_sent[1] == Message("user", "My name is Ada.")
    assert chat.last_reply.usage.completion_tokens > 0

    again = Chat(session="py", store=store_url)  # url, model and system come from the store
    assert again.url == server.url and again.system == "Be brief."
    assert again.history == chat.history
    again.reset()
    assert again.history == [] and again.system == "Be brief."


def test_ollama_dialect(server, store_url):
    chat = Chat(server.url, dialect="ollama", session="o", max_tokens=8, store=store_url)
    assert chat.client.dialect == "ollama"
    assert chat.send("Hello.") and len(chat.history) == 2


def test_async_twin(server, store_url):
    async def go() -> tuple[str, list[str]]:
        chat = await AsyncChat.open(server.url, session="a", max_tokens=8, store=store_url)
        whole = await chat.send("Hello.")
        parts = [d async for d in chat.stream("Again.")]
        await chat.aclose()
        return whole, parts

    whole, parts = asyncio.run(go())
    with Store(store_url) as store:
        entries = store.entries("a")
    assert [e.content for e in entries] == ["Hello.", whole, "Again.", "".join(parts)]


@pytest.mark.parametrize("memory", ["tokens", "buffer", "window:50"])
def test_a_long_conversation_never_overflows_the_context(small_server, store_url, memory):
    """Far more turns than a 256-token context holds: every request fits (the
    server would answer 400 otherwise), counted with the server's own tokenizer.
    (tests/test_strategies.py runs 200 turns per strategy without a server.)"""
    chat = Chat(small_server.url, session=memory, memory=memory, max_tokens=6, store=store_url)
    turns = 30  # some 4 times what the context holds (an exchange is ~30 tokens)
    for i in range(turns):
        chat.send(f"Fact number {i}: the sky has {i} clouds today.")
        sent = chat.last_sent
        n = chat.client.count_tokens(chat.model, sent)
        assert n + 6 <= 256
    assert len(chat.history) == 2 * turns
    assert len(chat.last_sent) < 2 * turns  # older turns were left out
    assert chat.last_sent[-1].content.startswith(f"Fact number {turns - 1}:")


def test_window_sends_the_last_n_exchanges(server, store_url):
    chat = Chat(server.url, session="w", memory="window:2", max_tokens=4, store=store_url)
    for i in range(5):
        chat.send(f"Message {i}.")
    users = [m.content for m in chat.last_sent if m.role == "user"]
    assert users == ["Message 2.", "Message 3.", "Message 4."]


def test_summary_folds_old_turns_with_the_model(small_server, store_url):
    chat = Chat(small_server.url, session="s", memory="summary:1", max_tokens=8, store=store_url)
    for text in ("My name is Ada.", "I live in Paris.", "I like tea.", "What do you know?"):
        chat.send(text)
    conv = chat.conversation
    assert conv.summary  # written by the model itself
    system = chat.last_sent[0]
    assert system.role == "system" and conv.summary in system.content
    users = [m.content for m in chat.last_sent if m.role == "user"]
    assert users == ["I like tea.", "What do you know?"]  # one exchange kept verbatim


def test_retry_replaces_the_last_reply(server, store_url):
    chat = Chat(server.url, session="r", max_tokens=6, temperature=1.0, store=store_url)
    chat.send("Tell me a word.")
    old = chat.entries[-1]
    "".join(chat.retry())
    entries = chat.entries
    assert [e.role for e in entries] == ["user", "assistant"] and entries[-1].id != old.id


def test_stopping_a_stream_keeps_the_partial_reply_marked(server, store_url):
    chat = Chat(server.url, session="stop", max_tokens=200, temperature=0, store=store_url)
    gen = chat.stream("Write a very long essay about the history of Rome.")
    got = [next(gen) for _ in range(5)]
    gen.close()
    entries = chat.entries
    assert entries[-1].role == "assistant" and entries[-1].interrupted
    assert entries[-1].content == "".join(got)


def test_server_dying_mid_reply_loses_nothing(tmp_path, store_url):
    s = start_server(tmp_path / "doomed", "--parallel", "1")
    chat = Chat(s.url, session="dies", max_tokens=2000, temperature=0, store=store_url)
    got: list[str] = []
    killer = threading.Timer(1.0, lambda: s.proc.send_signal(signal.SIGKILL))
    killer.start()
    with pytest.raises(UpstreamError) as e:
        for d in chat.stream("Write a very long essay about the history of Rome."):
            got.append(d)
    killer.join()
    assert "broke mid-reply" in e.value.message
    entries = Store(store_url).entries("dies")
    assert entries[0].content.startswith("Write a very long essay")
    assert entries[1].interrupted and entries[1].content == "".join(got) and got


def test_clear_errors(server, store_url, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path / "nothing-here"))
    with pytest.raises(UpstreamError) as e:
        Chat(session="x", store=store_url)  # no --url and no local server
    assert "llmkit serve" in e.value.message
    with pytest.raises(InvalidRequestError):
        Chat(server.url, memory="window:0", store=store_url)
    chat = Chat(server.url, model="nope", session="bad-model", store=store_url)
    with pytest.raises(Exception) as e:
        chat.send("Hello.")
    assert "nope" in str(e.value)
    assert [e.role for e in chat.entries] == ["user"]  # the question is kept


@pytest.mark.parametrize("dialect", ["openai", "ollama"])
def test_server_errors_reach_a_chat_as_themselves(small_server, store_url, dialect, monkeypatch):
    """Raised on the server, rendered in the dialect, rebuilt by the client: the
    same class with the same fields (tests/test_client_errors.py does every code)."""
    chat = Chat(small_server.url, dialect=dialect, session=dialect, max_tokens=64, store=store_url)
    # As against a server that does not say its context (Chat then assumes 4096
    # tokens): only the server can tell that the prompt does not fit its 256.
    monkeypatch.setattr(chat.client, "context_length", lambda model: None)
    text = "Tell me everything about Rome. " * 40
    with pytest.raises(ContextLengthError) as e:
        chat.send(text)
    msgs = [{"role": "user", "content": text}]
    counted = httpx.post(small_server.url + "/tokenize", json={"model": MODEL, "messages": msgs})
    prompt_tokens = counted.json()["count"]
    assert prompt_tokens + 64 > 256
    assert (e.value.prompt_tokens, e.value.max_tokens, e.value.context_length) == (
        prompt_tokens,
        64,
        256,
    )
    assert e.value.message.startswith("This model's maximum context length is 256 tokens.")
    assert chat.entries[-1].content == text  # the question is kept

    lost = Chat(small_server.url, model="nope", dialect=dialect, session="x", store=store_url)
    with pytest.raises(ModelNotFoundError) as nf:
        lost.send("Hello.")
    assert (nf.value.model, nf.value.available, nf.value.param) == ("nope", [MODEL], "model")


def test_tokenize_and_detokenize_endpoints(server, bundled_path):
    import llama_cpp

    vocab = llama_cpp.Llama(bundled_path, vocab_only=True, verbose=False)
    r = httpx.post(server.url + "/tokenize", json={"model": MODEL, "prompt": "Hello world"})
    expected = vocab.tokenize(b"Hello world", add_bos=False, special=True)
    assert r.json() == {"count": len(expected), "max_model_len": 8192, "tokens": expected}
    back = httpx.post(server.url + "/detokenize", json={"model": MODEL, "tokens": expected})
    assert back.json() == {"prompt": "Hello world"}
    msgs = [{"role": "user", "content": "Hi"}]
    counted = httpx.post(server.url + "/tokenize", json={"model": MODEL, "messages": msgs}).json()
    chat = httpx.post(
        server.v1 + "/chat/completions", json={"model": MODEL, "messages": msgs, "max_tokens": 1}
    ).json()
    assert counted["count"] == chat["usage"]["prompt_tokens"]
    bad = httpx.post(server.url + "/tokenize", json={"model": "nope", "prompt": "x"})
    assert bad.status_code == 404


# -- LangChain ----------------------------------------------------------------------


def test_langchain_history_lives_in_the_store(server, store_url, tmp_path):
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
    from langchain_core.runnables.history import RunnableWithMessageHistory
    from langchain_openai import ChatOpenAI

    from llmkit.integrations.langchain import LlmkitChatHistory

    llm = ChatOpenAI(base_url=server.v1, api_key="x", model=MODEL, max_tokens=12)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Be brief."), MessagesPlaceholder("history"), ("human", "{input}")]
    )
    chain = RunnableWithMessageHistory(
        prompt | llm,
        lambda session_id: LlmkitChatHistory(session_id, store=store_url),
        input_messages_key="input",
        history_messages_key="history",
    )
    config = {"configurable": {"session_id": "lc"}}
    chain.invoke({"input": "My name is Quillon."}, config=config)
    chain.invoke({"input": "What is my name?"}, config=config)

    with Store(store_url) as store:
        entries = store.entries("lc")
    assert [e.role for e in entries] == ["user", "assistant", "user", "assistant"]
    assert entries[0].content == "My name is Quillon."
    history = LlmkitChatHistory("lc", store=store_url).messages
    assert [m.type for m in history] == ["human", "ai", "human", "ai"]

    # The same conversation is there for the terminal tools and for Chat.
    out = CliRunner().invoke(cli, ["sessions", "list", "--store", store_url])
    assert out.exit_code == 0 and "lc" in out.output
    chat = Chat(server.url, session="lc", max_tokens=6, store=store_url)
    chat.send("And now?")
    assert chat.last_sent[0].content == "My name is Quillon."
    LlmkitChatHistory("lc", store=store_url).clear()
    assert Store(store_url).entries("lc") == []


def test_a_dead_address_leaves_nothing_half_made(store_url):
    with pytest.raises(UpstreamError) as e:
        Chat("http://127.0.0.1:9", session="dead", store=store_url)
    assert "Cannot reach http://127.0.0.1:9" in e.value.message
    assert Store(store_url).list() == []
