"""The compatibility suite: one test per snippet a user of this workflow writes,
each run unchanged against one real ``llmkit serve`` that speaks both dialects.

LangChain's OpenAI classes and its Ollama classes each expect their own kind of
server; here both kinds of client talk to the same server and model.
"""

from __future__ import annotations

import json
import warnings

import ollama
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_ollama import ChatOllama, OllamaLLM
from langchain_openai import ChatOpenAI
from langchain_openai import OpenAI as LangChainOpenAI
from pydantic import BaseModel, Field

MODEL = "SmolLM2-135M-Instruct"
CONVERSATION = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "My name is Ada."},
    {"role": "assistant", "content": "Hello Ada."},
    {"role": "user", "content": "What is my name?"},
]
LC_MESSAGES = [
    SystemMessage("You are a terse assistant."),
    HumanMessage("My name is Ada."),
    AIMessage("Hello Ada."),
    HumanMessage("What is my name?"),
]


# -- openai ---------------------------------------------------------------------


def test_openai_chat_completions(client):
    r = client.chat.completions.create(model=MODEL, messages=CONVERSATION, max_tokens=30)
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content.strip()
    assert r.usage.prompt_tokens > 20 and r.usage.completion_tokens > 0

    stream = client.chat.completions.create(
        model=MODEL,
        messages=CONVERSATION,
        max_tokens=30,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and chunks[-1].usage.completion_tokens > 0


# -- langchain-openai -----------------------------------------------------------


@pytest.fixture()
def chat_openai(server) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=server.v1, api_key="anything", model=MODEL, max_tokens=40, temperature=0
    )


def test_chat_openai_invoke_and_stream(chat_openai):
    reply = chat_openai.invoke(LC_MESSAGES)
    assert isinstance(reply, AIMessage) and reply.content.strip()
    assert reply.usage_metadata["input_tokens"] > 20
    streamed = "".join(chunk.content for chunk in chat_openai.stream(LC_MESSAGES))
    assert streamed == reply.content


class Person(BaseModel):
    # min_length reaches the grammar too: the reply cannot be an empty name.
    name: str = Field(min_length=1)
    age: int


def test_chat_openai_with_structured_output(server):
    llm = ChatOpenAI(
        base_url=server.v1,
        api_key="anything",
        model=MODEL,
        max_tokens=100,
        temperature=0.7,
        seed=1,
    )
    person = llm.with_structured_output(Person).invoke("Invent a person with a name and an age.")
    assert isinstance(person, Person) and person.name


@pytest.mark.parametrize("flavour", ["langchain_openai", "langchain_community"])
def test_completion_llm_classes(server, flavour):
    if flavour == "langchain_openai":
        llm = LangChainOpenAI(
            base_url=server.v1, api_key="anything", model=MODEL, max_tokens=20, temperature=0
        )
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the class is deprecated in favour of the one above
            from langchain_community.llms import OpenAI as CommunityOpenAI

            llm = CommunityOpenAI(
                openai_api_base=server.v1,
                openai_api_key="anything",
                model_name=MODEL,
                max_tokens=20,
                temperature=0,
            )
    text = llm.invoke("The capital of France is")
    assert isinstance(text, str) and text.strip()
    as_list = llm.invoke([("system", "Be terse."), ("human", "The capital of France is")])
    as_objects = llm.invoke(LC_MESSAGES)
    assert as_list.strip() and as_objects.strip()
    assert "".join(llm.stream("The capital of France is")) == text


# -- langchain-ollama -----------------------------------------------------------


def test_chat_ollama_invoke_and_stream(server):
    llm = ChatOllama(model=MODEL, base_url=server.url, temperature=0, num_predict=40)
    reply = llm.invoke(LC_MESSAGES)
    assert isinstance(reply, AIMessage) and reply.content.strip()
    assert reply.usage_metadata["input_tokens"] > 20
    assert reply.response_metadata["done_reason"] in ("stop", "length")
    streamed = "".join(chunk.content for chunk in llm.stream(LC_MESSAGES))
    assert streamed == reply.content


def test_ollama_llm_invoke_and_stream(server):
    llm = OllamaLLM(model=MODEL, base_url=server.url, temperature=0, num_predict=20)
    text = llm.invoke("The capital of France is")
    assert isinstance(text, str) and text.strip()
    assert "".join(llm.stream("The capital of France is")) == text


# -- the ollama client ------------------------------------------------------------


@pytest.fixture()
def ollama_client(server) -> ollama.Client:
    return ollama.Client(host=server.url)


def test_ollama_client_chat_and_stream(ollama_client):
    opts = {"temperature": 0, "num_predict": 30}
    r = ollama_client.chat(model=MODEL, messages=CONVERSATION, options=opts)
    assert r.message.role == "assistant" and r.message.content.strip()
    assert r.done and r.eval_count > 0 and r.prompt_eval_count > 20
    parts = list(ollama_client.chat(model=MODEL, messages=CONVERSATION, options=opts, stream=True))
    assert "".join(p.message.content for p in parts) == r.message.content
    assert parts[-1].done and not parts[0].done


def test_ollama_client_generate_and_stream(ollama_client):
    opts = {"temperature": 0, "num_predict": 20}
    r = ollama_client.generate(model=MODEL, prompt="The capital of France is", options=opts)
    assert r.response.strip() and r.done and r.context
    parts = list(
        ollama_client.generate(
            model=MODEL, prompt="The capital of France is", options=opts, stream=True
        )
    )
    assert "".join(p.response for p in parts) == r.response


def test_ollama_client_format_json(ollama_client):
    r = ollama_client.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe a cat as JSON."}],
        format="json",
        options={"temperature": 0.7, "seed": 1},
    )
    assert isinstance(json.loads(r.message.content), dict)
    r = ollama_client.generate(
        model=MODEL,
        prompt="Invent a person.",
        format=Person.model_json_schema(),
        options={"temperature": 0.7, "seed": 1},
    )
    assert Person.model_validate_json(r.response).name


def test_ollama_client_list_show_ps(ollama_client):
    names = [m.model for m in ollama_client.list().models]
    assert names == [f"{MODEL}:latest", "smol:latest"]  # Ollama tags an untagged name
    show = ollama_client.show(MODEL)
    assert show.details.family == "llama" and show.details.quantization_level == "Q4_1"
    assert show.modelinfo["llama.context_length"] == 8192 and show.template
    running = ollama_client.ps().models
    assert {m.model for m in running} == {f"{MODEL}:latest", "smol:latest"}
    assert running[0].size > 0


def test_ollama_client_errors(ollama_client):
    with pytest.raises(ollama.ResponseError) as e:
        ollama_client.chat(model="llama3", messages=CONVERSATION)
    assert e.value.status_code == 404 and "llama3" in e.value.error


# -- the classic conversation chain, against both dialects --------------------------


@pytest.mark.parametrize("dialect", ["openai", "ollama"])
def test_conversation_chain_with_buffer_memory(server, dialect):
    from langchain_classic.chains import ConversationChain
    from langchain_classic.memory import ConversationBufferMemory

    if dialect == "openai":
        llm = ChatOpenAI(base_url=server.v1, api_key="x", model=MODEL, max_tokens=30)
    else:
        llm = ChatOllama(model=MODEL, base_url=server.url, num_predict=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LangChain marks both classes deprecated
        memory = ConversationBufferMemory()
        chain = ConversationChain(llm=llm, memory=memory)
    first = chain.invoke({"input": "My name is Ada."})["response"]
    second = chain.invoke({"input": "What is my name?"})["response"]
    assert first.strip() and second.strip()
    buffer = memory.buffer
    assert "Human: My name is Ada." in buffer and "Human: What is my name?" in buffer
    assert f"AI: {first}" in buffer and f"AI: {second}" in buffer
    assert memory.load_memory_variables({}) == {"history": buffer}
