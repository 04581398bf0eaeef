"""``Chat``: a conversation that remembers. The store keeps it, a strategy picks
what of it to send, and the client talks to any server.

    from llmkit import Chat
    chat = Chat(session="ada", memory="tokens")
    chat.send("My name is Ada.")
    for delta in chat.stream("What is my name?"):
        print(delta, end="")

Every user turn is stored before it is sent. A reply is stored when it ends; a
reply cut short (Ctrl-C, a dead server, a dropped connection) is stored with
what arrived, marked interrupted, and the error goes on to the caller. The
terminal chat, the LangChain history and Python callers all use this class.

Reasoning models. A reply's thinking is never its answer: the answer is stored
as the turn's content, the thinking beside it (``Entry.reasoning``). ``send``
returns a ``Reply`` (the answer, a str) whose ``.reasoning`` is the thinking;
``stream(..., thinking=True)`` yields the thinking too, as ``Thought`` pieces
(a str subclass, so ``isinstance(piece, Thought)`` tells them apart). History is
fitted and sent by the answers alone: earlier thinking is not sent back unless
``resend_reasoning=True`` (for a chat template that shows it to the model).
``think=`` asks for thinking on, off or at a level ("low", "medium", "high").

Images. ``send(text, images=[...])`` (paths, bytes or ``Image``s) checks each
image before anything is stored, keeps it with the turn (once each in the store,
by its hash) and sends it to the model with that turn. Later turns send earlier
images again as the memory strategy decides (``keep_images=N``: only the N most
recent; the budget drops old images before whole exchanges); a message whose
images were dropped says so in its text, and ``last_dropped_images`` counts them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import datetime

from llmkit.client.bodies import Think, think_fields
from llmkit.client.http import AsyncClient, Client
from llmkit.client.local import local_url
from llmkit.client.protocol import Dialect
from llmkit.core.types import Chunk, Image, Message
from llmkit.env import Environment
from llmkit.errors import InvalidRequestError, NotFoundError
from llmkit.memory import strategies as st
from llmkit.memory.database import store_url
from llmkit.memory.images import ImageInput, as_image
from llmkit.memory.records import Conversation, Entry
from llmkit.memory.store import Store

# When a server doesn't say its context length (a hosted OpenAI-style API):
# assume this much, which every current chat model has.
ASSUMED_CONTEXT = 4096
SUMMARY_REPLY_TOKENS = 384  # at most; a quarter of a small context


def open_store(store: Store | str | None, env: Environment | None = None) -> Store:
    """A ``Store`` as given, from a SQLAlchemy URL, else ``LLMKIT_STORE``, else the
    SQLite file in the data directory: every command and ``Chat`` pick it the same way."""
    if isinstance(store, Store):
        return store
    env = env or Environment.read()
    return Store(store or store_url(env))


def new_session_name() -> str:
    return datetime.now().strftime("chat-%Y%m%d-%H%M%S-%f")


class Thought(str):
    """A piece of a reply's thinking, as ``Chat.stream(..., thinking=True)`` yields it."""


class Reply(str):
    """A reply's answer (what is stored as the turn's content), with its thinking."""

    reasoning: str

    def __new__(cls, answer: str, reasoning: str = "") -> Reply:
        out = super().__new__(cls, answer)
        out.reasoning = reasoning
        return out


class Chat:
    def __init__(
        self,
        url: str | None = None,
        model: str | None = None,
        *,
        system: str | None = None,
        memory: str | None = None,
        session: str | None = None,
        api_key: str | None = None,
        dialect: Dialect | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        store: Store | str | None = None,
        client: Client | None = None,
        env: Environment | None = None,
        think: Think = None,
        resend_reasoning: bool = False,
        keep_images: int | None = None,
    ) -> None:
        """Open (or start) the conversation ``session`` (a new name when None).

        Arguments given override what the stored conversation says and are saved
        with it; ``url`` and ``model`` default to the conversation's, then to the
        local ``llmkit serve`` and the first model it lists. ``store`` defaults to
        ``LLMKIT_STORE``, else the data directory's SQLite file (``env``: the
        environment to read them from; the process's when None). ``think``: a
        reasoning model's thinking on, off or at a level (None: the model's own
        default); ``resend_reasoning``: send earlier turns' thinking back with them.
        ``keep_images``: how many images of earlier turns are sent again (None: as
        many as the context holds).
        """
        think_fields(think)  # a bad value is refused before anything is stored
        env = env or Environment.read()
        self.store = open_store(store, env)
        if memory is not None:
            st.parse_strategy(memory)  # refuse a bad strategy before storing it
        name = session or new_session_name()
        try:
            stored: Conversation | None = self.store.get(name)
        except NotFoundError:
            stored = None
        # Reach the server before storing anything: a wrong URL leaves no empty conversation.
        self.url = url or (stored and stored.url) or local_url(env)
        self.api_key = api_key
        self.client = client or Client(self.url, api_key=api_key, dialect=dialect)
        self.model = model or (stored and stored.model) or self._first_model()
        conv = self.store.get_or_create(name, system=system, memory=memory or "buffer")
        self.name = conv.name
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.think = think
        self.resend_reasoning = resend_reasoning
        self.keep_images = keep_images
        changes = {"url": self.url, "model": self.model}
        if system is not None:
            changes["system"] = system
        if memory is not None:
            changes["memory"] = memory
        self.store.update(self.name, **changes)
        self.last_sent: list[Message] = []  # what the last request carried
        self.last_reply: Chunk | None = None  # its final piece: finish_reason, usage
        self.last_reasoning = ""  # the last reply's thinking
        self.last_dropped_images = 0  # earlier images the last request left out
        self._image_costs: dict[str, int] = {}  # by sha256: what an image costs this model
        self._count: Callable[[Sequence[Message]], int] | bool | None = False

    def _first_model(self) -> str:
        models = self.client.models()
        if not models:
            raise NotFoundError(f"{self.url} serves no models.")
        return models[0]

    # -- the conversation ------------------------------------------------------------

    @property
    def conversation(self) -> Conversation:
        return self.store.get(self.name)

    @property
    def entries(self) -> list[Entry]:
        return self.store.entries(self.name)

    @property
    def history(self) -> list[Message]:
        """Every stored turn, oldest first (the system prompt is ``system``)."""
        return [e.message for e in self.entries]

    @property
    def system(self) -> str | None:
        return self.conversation.system

    @property
    def memory(self) -> st.Strategy:
        return st.parse_strategy(self.conversation.memory)

    def set_system(self, text: str | None) -> None:
        self.store.update(self.name, system=text or None)

    def set_memory(self, strategy: str) -> None:
        self.store.update(self.name, memory=str(st.parse_strategy(strategy)))

    def reset(self) -> None:
        """Forget every turn (and the summary); keep the name, system prompt, memory."""
        entries = self.entries
        if entries:
            self.store.delete_entries_from(self.name, entries[0].id)
        self.store.set_summary(self.name, None, None)

    # -- sending -------------------------------------------------------------------

    def context_length(self) -> int:
        return self.client.context_length(self.model) or ASSUMED_CONTEXT

    def reply_budget(self) -> int:
        return self.max_tokens or min(1024, self.context_length() // 4)

    def _counter(self) -> Callable[[Sequence[Message]], int] | None:
        """The server's own token count when it has one (llmkit, vLLM), else None
        (the strategies then estimate). Images are counted once each (what one
        costs on this model), not uploaded again at every count."""
        if self._count is False:
            probe = self.client.count_tokens(self.model, [Message("user", "hi")])
            self._count = None if probe is None else self._count_with_images
        return self._count  # type: ignore[return-value]

    def _count_with_images(self, messages: Sequence[Message]) -> int:
        bare = [m if not m.images else Message(m.role, m.content) for m in messages]
        text = self.client.count_tokens(self.model, bare) or 0
        return text + sum(self._image_cost(i) for m in messages for i in m.images)

    def _image_cost(self, image: Image) -> int:
        """The prompt tokens ``image`` adds on this model: a user turn counted with
        it and without it, asked once per image."""
        if image.sha256 not in self._image_costs:
            with_it = self.client.count_tokens(self.model, [Message("user", "", images=(image,))])
            without = self.client.count_tokens(self.model, [Message("user", "")])
            cost = (with_it or 0) - (without or 0)
            self._image_costs[image.sha256] = cost if cost > 0 else st.IMAGE_TOKENS_ESTIMATE
        return self._image_costs[image.sha256]

    def prepare(self, text: str, images: Sequence[ImageInput] = ()) -> list[Message]:
        """Store the user's turn (its images checked first), fold old turns into the
        summary if that is the strategy, and return the messages to send."""
        pictures = [as_image(x, f"images.{k}") for k, x in enumerate(images)]
        if not text.strip() and not pictures:
            raise InvalidRequestError("The message is empty.")
        self.store.append(self.name, "user", text, images=pictures)
        return self.plan()

    def plan(self, before: int | None = None) -> list[Message]:
        """The messages to send for the stored history as it stands, or up to the
        entry with id ``before`` (the summary strategy folds old turns first)."""
        conv, entries = self.conversation, self.entries
        if before is not None:
            entries = [e for e in entries if e.id < before]
        # Items stored through OpenAI's APIs that are bookkeeping (listed tools,
        # approvals, reasoning) are no context; a call and its output are, as text.
        entries = [e for e in entries if e.in_context]
        strategy = st.parse_strategy(conv.memory)
        history = [e.with_reasoning if self.resend_reasoning else e.message for e in entries]
        count = self._counter()
        ctx = self.context_length()
        if strategy.kind == "summary":
            conv = self._fold(conv, entries, strategy, count, ctx)
        self.last_sent = st.select_messages(
            strategy,
            system=conv.system,
            history=history,
            summary=conv.summary,
            summarized=conv.summarized(entries),
            budget=ctx - self.reply_budget(),
            count_tokens=count,
            keep_images=self.keep_images,
        )
        self.last_dropped_images = st.dropped_images(self.last_sent, history)
        return self.last_sent

    def _fold(
        self,
        conv: Conversation,
        entries: list[Entry],
        strategy: st.Strategy,
        count: Callable[[Sequence[Message]], int] | None,
        ctx: int,
    ) -> Conversation:
        history = [e.message for e in entries]
        reply = min(SUMMARY_REPLY_TOKENS, ctx // 4)
        while plan := st.plan_summary(
            strategy,
            history,
            summarized=conv.summarized(entries),
            previous_summary=conv.summary,
            budget=ctx - reply,
            count_tokens=count,
        ):
            prompt = st.summary_prompt(conv.summary, plan.messages)
            parts = self.client.stream_chat(self.model, prompt, max_tokens=reply, temperature=0.2)
            summary = "".join(d.text for d in parts).strip()
            self.store.set_summary(self.name, summary, entries[plan.end - 1].id)
            conv = self.conversation
        return conv

    def take(self, chunk: Chunk, parts: list[str], thoughts: list[str] | None = None) -> str:
        """Keep a piece of the reply (the last one says how it ended); its answer
        text. Its thinking goes to ``thoughts``."""
        if chunk.finish_reason:
            self.last_reply = chunk
        if chunk.reasoning and thoughts is not None:
            thoughts.append(chunk.reasoning)
        if chunk.text:
            parts.append(chunk.text)
        return chunk.text

    def finish(
        self, parts: list[str], *, interrupted: bool, thoughts: Sequence[str] = ()
    ) -> Entry | None:
        """Store the reply: the answer as its content, the thinking beside it."""
        text, self.last_reasoning = "".join(parts), "".join(thoughts)
        if interrupted and not text and not self.last_reasoning:
            return None  # nothing arrived: the user turn stands alone
        return self.store.append(
            self.name, "assistant", text, interrupted=interrupted, reasoning=self.last_reasoning
        )

    def stream(
        self, text: str, *, thinking: bool = False, images: Sequence[ImageInput] = ()
    ) -> Iterator[str]:
        """Send ``text`` (with ``images``); yield the reply's answer as it is
        generated, and with ``thinking`` its thinking too, as ``Thought`` pieces."""
        messages = self.prepare(text, images)
        self.last_reply, self.last_reasoning = None, ""
        parts: list[str] = []
        thoughts: list[str] = []
        try:
            for chunk in self.client.stream_chat(
                self.model,
                messages,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                **self._thinking(),
            ):
                piece = self.take(chunk, parts, thoughts)
                if thinking and chunk.reasoning:
                    yield Thought(chunk.reasoning)
                if piece:
                    yield piece
        except BaseException:  # Ctrl-C, a broken connection, the caller stopped reading
            self.finish(parts, interrupted=True, thoughts=thoughts)
            raise
        self.finish(parts, interrupted=False, thoughts=thoughts)

    def _thinking(self) -> dict[str, Think]:
        # Only when asked: a client that predates ``think`` (an in-process one) works on.
        return {} if self.think is None else {"think": self.think}

    def send(self, text: str, images: Sequence[ImageInput] = ()) -> Reply:
        """Send ``text`` (with ``images``: paths, bytes or ``Image``s); the reply's
        answer, with its thinking as ``.reasoning``."""
        answer = "".join(self.stream(text, images=images))
        return Reply(answer, self.last_reasoning)

    def retry(self, *, thinking: bool = False) -> Iterator[str]:
        """Drop the last reply and ask the last question again."""
        last_user = next((e for e in reversed(self.entries) if e.role == "user"), None)
        if last_user is None:
            raise InvalidRequestError("There is nothing to retry yet.")
        self.store.delete_entries_from(self.name, last_user.id)
        return self.stream(last_user.content, thinking=thinking, images=last_user.images)

    def close(self) -> None:
        self.client.close()


class AsyncChat:
    """``Chat`` for asyncio code: the same conversation, store and strategies;
    replies stream through an ``AsyncClient``. Store work and token counting run
    in a worker thread so the event loop never waits on them."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._chat = Chat(*args, **kwargs)  # type: ignore[arg-type]
        chat = self._chat
        self.client = AsyncClient(chat.url, api_key=chat.api_key, dialect=chat.client.dialect)

    @classmethod
    async def open(cls, *args: object, **kwargs: object) -> AsyncChat:
        """Construct off the event loop (it opens the store and asks the server)."""
        return await asyncio.to_thread(cls, *args, **kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(self._chat, name)  # name, model, history, reset, set_system...

    async def stream(
        self, text: str, *, thinking: bool = False, images: Sequence[ImageInput] = ()
    ) -> AsyncIterator[str]:
        chat = self._chat
        messages = await asyncio.to_thread(chat.prepare, text, images)
        chat.last_reply, chat.last_reasoning = None, ""
        parts: list[str] = []
        thoughts: list[str] = []
        try:
            async for chunk in self.client.stream_chat(
                chat.model,
                messages,
                max_tokens=chat.max_tokens,
                temperature=chat.temperature,
                **chat._thinking(),
            ):
                piece = chat.take(chunk, parts, thoughts)
                if thinking and chunk.reasoning:
                    yield Thought(chunk.reasoning)
                if piece:
                    yield piece
        except BaseException:
            await asyncio.to_thread(chat.finish, parts, interrupted=True, thoughts=thoughts)
            raise
        await asyncio.to_thread(chat.finish, parts, interrupted=False, thoughts=thoughts)

    async def send(self, text: str, images: Sequence[ImageInput] = ()) -> Reply:
        answer = "".join([d async for d in self.stream(text, images=images)])
        return Reply(answer, self._chat.last_reasoning)

    async def aclose(self) -> None:
        await self.client.aclose()
        self._chat.close()
