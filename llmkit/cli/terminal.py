"""The terminal chat behind ``llmkit chat`` and ``llmkit run``.

A loop over ``Chat``: read a line (prompt_toolkit: line editing, history kept
across runs), stream the reply rendered as Markdown (rich), and answer slash
commands. Ctrl-C stops a reply and keeps what arrived (marked interrupted);
Ctrl-C at the prompt clears the line; Ctrl-D or /exit leaves.

A reasoning model's thinking is shown dimmed above its answer as it streams
(``--hide-thinking``: one "thinking..." line instead; ``/thinking`` shows the
last reply's); only the answer is stored as the reply, the thinking beside it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from llmkit.cli.tool_turns import run_turn
from llmkit.client.bodies import Think
from llmkit.client.tools import ToolTurns
from llmkit.env import Environment
from llmkit.errors import LlmkitError
from llmkit.memory.chat import Chat, Thought, new_session_name

HELP = """\
/new [NAME]        start a new conversation (same server, model and system prompt)
/sessions          list stored conversations
/switch NAME       continue another conversation
/system [TEXT]     set the system prompt (no text: clear it)
/memory [STRATEGY] show or set the memory: buffer, window:N, tokens, summary
/history           the whole transcript of this conversation
/retry             drop the last reply and ask again
/thinking          the last reply's thinking (a reasoning model's)
/tools [NAME...]   the server's MCP servers; NAMEs: use their tools ("off": none)
/tool TOOL TEXT    send TEXT, the model calling TOOL first (with /tools on)
/export FILE       write this conversation to FILE (.md for Markdown, else JSON)
/help              this list
/exit              leave (Ctrl-D works too)"""


@dataclass
class ChatOptions:
    url: str | None
    model: str | None
    api_key: str | None
    dialect: str | None
    system: str | None
    memory: str | None
    max_tokens: int | None
    temperature: float | None
    markdown: bool = True
    think: Think = None  # a reasoning model's thinking: on, off, a level; None: its default
    show_thinking: bool = True  # False: one "thinking..." line instead of the thinking
    mcp: tuple[str, ...] = ()  # the server's MCP servers whose tools turns may use


# --think's words, as ``Chat``'s ``think=`` takes them
THINK: dict[str, Think] = {"on": True, "off": False, "low": "low", "medium": "medium",
                           "high": "high"}  # fmt: skip


def chat_options(fn: Callable[..., None]) -> Callable[..., None]:
    """The flags ``chat`` and ``run`` share."""
    for opt in reversed(
        [
            click.option("--model", help="Model to talk to (default: the server's first)."),
            click.option("--system", help="System prompt for a new conversation."),
            click.option(
                "--memory",
                help="buffer (default), window:N, tokens (fit the context) or summary.",
            ),
            click.option("--session", help="Name of the conversation (created if new)."),
            click.option(
                "--continue",
                "resume",
                is_flag=True,
                help="Resume the conversation used last.",
            ),
            click.option("--max-tokens", type=int, help="Longest reply, in tokens."),
            click.option("--temperature", type=float, help="Sampling temperature."),
            click.option(
                "--plain", is_flag=True, help="Print replies as plain text, not Markdown."
            ),
            click.option(
                "--think",
                type=click.Choice(list(THINK)),
                help="A reasoning model's thinking: on, off, or how hard (low, medium, "
                "high). Default: the model's own.",
            ),
            click.option(
                "--hide-thinking",
                is_flag=True,
                help="Show a reasoning model's thinking as one 'thinking...' line "
                "(/thinking shows it).",
            ),
        ]
    ):
        fn = opt(fn)
    return fn


class Terminal:
    """The interactive loop around one ``Chat`` (switchable with /new, /switch)."""

    def __init__(
        self,
        chat: Chat,
        opts: ChatOptions,
        console: Console | None = None,
        env: Environment | None = None,
    ) -> None:
        self.chat = chat
        self.opts = opts
        self.env = env or Environment.read()
        self.console = console or Console(highlight=False)
        self.tools = list(opts.mcp)  # MCP servers in use (the server runs their tools)
        self._turns: ToolTurns | None = None

    # -- input -----------------------------------------------------------------------

    def _lines(self) -> Iterator[str]:
        if not sys.stdin.isatty():  # piped: one message per line, no prompt
            for line in sys.stdin:
                if line.strip():
                    yield line.rstrip("\n")
            return
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory

        path = self.env.chat_history_file
        path.parent.mkdir(parents=True, exist_ok=True)
        session: PromptSession[str] = PromptSession(history=FileHistory(str(path)))
        while True:
            try:
                yield session.prompt(">>> ")
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line, as in a shell
            except EOFError:
                return

    def run(self) -> None:
        self._banner()
        for line in self._lines():
            text = line.strip()
            if not text:
                continue
            if text.startswith("/"):
                if not self._command(text):
                    return
                continue
            if self.tools:
                self._tool_turn(text)
            else:
                self._reply(self.chat.stream(text, thinking=True))

    def _tool_client(self) -> ToolTurns:
        if self._turns is None:
            self._turns = ToolTurns(self.chat.url, self.opts.api_key)
        return self._turns

    def _tool_turn(self, text: str, tool: str | None = None) -> None:
        turns = self._tool_client()
        try:
            events = turns.send(self.chat.name, text, self.tools, tool)
            run_turn(self.console, turns, self.chat.name, events)
        except KeyboardInterrupt:
            self.console.print("\n[yellow]reply stopped[/yellow]")
        except LlmkitError as e:
            self.console.print(f"\n[red]error:[/red] {e.message}")

    def _tools(self, arg: str) -> None:
        if arg == "off":
            self.tools = []
        elif arg:
            names = arg.split()
            have = {s["name"] for s in self._tool_client().servers()}
            unknown = [n for n in names if n not in have]
            if unknown:
                self.console.print(
                    f"no MCP server {', '.join(unknown)} on the server; it has: "
                    f"{', '.join(sorted(have)) or 'none'}"
                )
                return
            self.tools = names
        for s in self._tool_client().servers():
            mark = "*" if s["name"] in self.tools else " "
            tools = ", ".join(t["name"] for t in s["tools"]) or s["error"] or "no tools"
            self.console.print(f"{mark} {s['name']} ({s['transport']}): {tools}", highlight=False)

    def _banner(self) -> None:
        c = self.chat
        turns = c.conversation.turns
        self.console.print(
            f"[bold]{c.model}[/bold] at {c.url} ({c.client.dialect}); conversation "
            f"[bold]{c.name}[/bold]"
            + (f", {turns} turn(s) so far" if turns else "")
            + f"; memory {c.memory}. /help for commands, Ctrl-D to leave.",
        )

    # -- output ----------------------------------------------------------------------

    def _thinking(self, thoughts: list[str], answering: bool) -> Text:
        """The thinking so far, dimmed (or folded to one line)."""
        if self.opts.show_thinking:
            return Text("".join(thoughts), style="dim")
        words = len("".join(thoughts).split())
        said = f"thought ({words} words; /thinking shows them)" if answering else "thinking..."
        return Text(said, style="dim italic")

    def _reply(self, deltas: Iterator[str]) -> None:
        parts: list[str] = []
        thoughts: list[str] = []
        markdown = self.opts.markdown and self.console.is_terminal
        try:
            if markdown:
                with Live(
                    Markdown(""),
                    console=self.console,
                    refresh_per_second=8,
                    vertical_overflow="visible",
                ) as live:
                    for delta in deltas:
                        (thoughts if isinstance(delta, Thought) else parts).append(delta)
                        shown: list[RenderableType] = [Markdown("".join(parts))]
                        if thoughts:
                            shown.insert(0, self._thinking(thoughts, bool(parts)))
                        live.update(Group(*shown))
            else:
                self._plain(deltas, parts, thoughts)
        except KeyboardInterrupt:
            self.console.print(
                "\n[yellow]reply stopped; what arrived is kept, marked interrupted[/yellow]"
            )
        except LlmkitError as e:
            self.console.print(f"\n[red]error:[/red] {e.message}")
            self.console.print(
                "[dim]your message is saved; /retry sends it again[/dim]", highlight=False
            )

    def _plain(self, deltas: Iterator[str], parts: list[str], thoughts: list[str]) -> None:
        """The reply as text as it comes: the thinking (dimmed, on a terminal) first,
        then a blank line, then the answer."""
        for delta in deltas:
            if isinstance(delta, Thought):
                if not thoughts and not self.opts.show_thinking:
                    self.console.out("thinking...", style="dim", highlight=False)
                thoughts.append(delta)
                if self.opts.show_thinking:
                    self.console.out(delta, end="", style="dim", highlight=False)
                continue
            if thoughts and not parts and self.opts.show_thinking:
                self.console.out("\n")  # the answer starts below the thinking
            parts.append(delta)
            self.console.out(delta, end="", highlight=False)
        self.console.out("")

    # -- slash commands ----------------------------------------------------------------

    def _command(self, text: str) -> bool:
        """Run one slash command; False means leave."""
        cmd, _, arg = text.partition(" ")
        arg = arg.strip()
        try:
            return self._dispatch(cmd.lower(), arg)
        except LlmkitError as e:
            self.console.print(f"[red]error:[/red] {e.message}")
            return True

    def _dispatch(self, cmd: str, arg: str) -> bool:
        c = self.chat
        if cmd in ("/exit", "/quit", "/bye"):
            return False
        if cmd in ("/help", "/?"):
            self.console.print(HELP, highlight=False, markup=False)
        elif cmd == "/new":
            self._open(arg or new_session_name(), system=c.system, memory=str(c.memory))
        elif cmd == "/switch":
            if not arg:
                self.console.print("usage: /switch NAME (see /sessions)")
            else:
                c.store.get(arg)  # a clear error if there is no such conversation
                self._open(arg)
        elif cmd == "/sessions":
            self.console.print(sessions_table(c))
        elif cmd == "/system":
            c.set_system(arg or None)
            self.console.print(f"system prompt {'set' if arg else 'cleared'}")
        elif cmd == "/memory":
            if arg:
                c.set_memory(arg)
            self.console.print(f"memory: {c.memory}")
        elif cmd == "/history":
            self.console.print(Markdown(c.store.to_markdown(c.name)))
        elif cmd == "/retry":
            self._reply(c.retry(thinking=True))
        elif cmd == "/thinking":
            said = next((e for e in reversed(c.entries) if e.role == "assistant"), None)
            if said is None or not said.reasoning:
                self.console.print("the last reply has no thinking")
            else:
                self.console.out(said.reasoning, style="dim", highlight=False)
        elif cmd == "/export":
            self._export(arg)
        elif cmd == "/tools":
            self._tools(arg)
        elif cmd == "/tool":
            tool, _, text = arg.partition(" ")
            if not self.tools or not text.strip():
                self.console.print("usage: /tool TOOL TEXT, with servers on (/tools NAME)")
            else:
                self._tool_turn(text.strip(), tool)
        else:
            self.console.print(f"unknown command {cmd}; /help lists them")
        return True

    def _open(self, name: str, **kw: str | None) -> None:
        old = self.chat
        self.chat = Chat(
            url=old.url,
            model=old.model,
            session=name,
            store=old.store,
            client=old.client,
            max_tokens=old.max_tokens,
            temperature=old.temperature,
            think=old.think,
            resend_reasoning=old.resend_reasoning,
            **kw,  # type: ignore[arg-type]
        )
        self._banner()

    def _export(self, arg: str) -> None:
        if not arg:
            self.console.print("usage: /export FILE (.md for Markdown, else JSON)")
            return
        path = Path(arg).expanduser()
        c = self.chat
        if path.suffix.lower() in (".md", ".markdown"):
            path.write_text(c.store.to_markdown(c.name), encoding="utf-8")
        else:
            data = c.store.export(c.name)
            path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        self.console.print(f"wrote {path}")


def sessions_table(chat: Chat) -> Table:
    table = Table("name", "model", "turns", "last used", box=None)
    for conv in chat.store.list():
        mark = " *" if conv.name == chat.name else ""
        table.add_row(
            conv.name + mark,
            conv.model or "",
            str(conv.turns),
            conv.updated_at.astimezone().strftime("%Y-%m-%d %H:%M"),
        )
    return table
