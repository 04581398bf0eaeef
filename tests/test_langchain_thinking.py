"""A reasoning model's thinking through LangChain and LangGraph into llmkit's store:
the answer is the stored turn's content, the thinking goes beside it, and comes back
where LangChain's chat models put it (``additional_kwargs["reasoning_content"]``).

The model is langchain-ollama's real ``ChatOllama(reasoning=True)`` talking to the
stand-in reasoning server over a real socket (``tests/thinking_upstream.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_ollama import ChatOllama
from langgraph.graph import START, MessagesState, StateGraph

from llmkit.integrations.langchain import LlmkitChatHistory, answer_and_reasoning
from llmkit.integrations.langgraph import LlmkitCheckpointer
from llmkit.memory.store import Store
from tests.conftest import serving
from tests.thinking_upstream import ANSWER, MODEL, THINKING, Thinker

THOUGHT = "".join(THINKING)
SAID = "".join(ANSWER)


@pytest.fixture(scope="module")
def model() -> Iterator[ChatOllama]:
    t = Thinker()
    with serving(t.app) as url:
        yield ChatOllama(model=MODEL, base_url=url, reasoning=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


def test_a_langgraph_thread_mirrors_the_answer_with_its_thinking_apart(model, url):
    def call(state: MessagesState) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState).add_node("call", call).add_edge(START, "call")
    with Store(url) as store:
        app = graph.compile(checkpointer=LlmkitCheckpointer(store))
        out = app.invoke({"messages": [("user", "Hi")]}, {"configurable": {"thread_id": "t"}})
        said = out["messages"][-1]
        # where langchain-ollama puts it: the reference for where thinking lives
        assert said.content == SAID and said.additional_kwargs["reasoning_content"] == THOUGHT
        mirrored = [(e.role, e.content, e.reasoning) for e in store.entries("langgraph:t")]
        assert mirrored == [("user", "Hi", ""), ("assistant", SAID, THOUGHT)]


def test_a_langchain_history_keeps_thinking_apart_and_gives_it_back(model, url):
    prompt = ChatPromptTemplate.from_messages(
        [MessagesPlaceholder("history"), ("human", "{input}")]
    )
    chain = RunnableWithMessageHistory(
        prompt | model,
        lambda sid: LlmkitChatHistory(sid, store=url),
        input_messages_key="input",
        history_messages_key="history",
    )
    chain.invoke({"input": "Hi"}, {"configurable": {"session_id": "lc"}})
    with Store(url) as store:
        kept = [(e.role, e.content, e.reasoning) for e in store.entries("lc")]
    assert kept == [("user", "Hi", ""), ("assistant", SAID, THOUGHT)]
    back = LlmkitChatHistory("lc", store=url).messages
    assert isinstance(back[1], AIMessage) and back[1].content == SAID
    assert back[1].additional_kwargs == {"reasoning_content": THOUGHT}
    assert back[0].additional_kwargs == {}


@pytest.mark.parametrize(
    ("message", "want"),
    [
        (AIMessage(content="Hi", additional_kwargs={"reasoning_content": "hm"}), ("Hi", "hm")),
        (AIMessage(content="Hi"), ("Hi", "")),
        (  # Anthropic's content blocks (langchain-anthropic)
            AIMessage(
                content=[
                    {"type": "thinking", "thinking": "hm", "signature": "x"},
                    {"type": "text", "text": "Hi"},
                ]
            ),
            ("Hi", "hm"),
        ),
        (  # LangChain's standard reasoning block
            AIMessage(content=[{"type": "reasoning", "reasoning": "hm"}, "Hi"]),
            ("Hi", "hm"),
        ),
        (  # OpenAI's Responses API reasoning summary (langchain-openai)
            AIMessage(
                content=[
                    {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}]},
                    {"type": "text", "text": "Hi"},
                ]
            ),
            ("Hi", "hm"),
        ),
        (HumanMessage(content="Hi"), ("Hi", "")),
    ],
)
def test_where_langchain_messages_carry_thinking(message, want):
    assert answer_and_reasoning(message) == want
