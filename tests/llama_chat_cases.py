"""llama.cpp's own parsing cases, read out of its ``tests/test-chat.cpp``: per
chat template, a model's reply and the content, reasoning and calls llama.cpp
expects from it. The file comes with the llama-cpp-python sdist the project
builds from (``scripts/bootstrap.sh`` keeps it in ``.venv/llama.cpp``).

Only the simple cases are taken: a ``tst.test("...")`` chain whose input and
expectations are string literals or the file's own named messages
(``message_assist_call``...), with ``enable_thinking`` and ``reasoning_format``.
A case that continues a message, sets messages or a JSON schema, is partial, or
uses anything this reader does not resolve is left out (and counted).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


def llama_cpp_dir() -> Path:
    """The llama.cpp reference data: beside the Python running the tests, in the
    .venv scripts/bootstrap.sh sets up (its ``llama.cpp``, from the pinned sdist)."""
    ref = Path(sys.prefix) / "llama.cpp"
    if not (ref / "tests/test-chat.cpp").is_file():
        raise FileNotFoundError(
            f"llama.cpp's reference data is missing in {ref}: run scripts/bootstrap.sh"
        )
    return ref


@dataclass
class Case:
    template: str  # file name in models/templates
    line: int
    input: str
    content: str = ""
    reasoning: str = ""
    calls: list[tuple[str, Any]] = field(default_factory=list)
    enable_thinking: bool = True
    reasoning_format: str = "NONE"
    # the tools offered, (name, parameters as JSON), where the reader resolves them
    tools: list[tuple[str, str]] | None = None


# -- tokens --------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<raw>R"(?P<delim>[^(\s]*)\((?P<rawbody>.*?)\)(?P=delim)")
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<chr>'(?:[^'\\]|\\.)')
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<id>[A-Za-z_]\w*(?:::[A-Za-z_]\w*)*)
  | (?P<op>.)
    """,
    re.S | re.X,
)
_ESC = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'", "0": "\0"}


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        n = body[i + 1]
        if n in "uU":
            size = 4 if n == "u" else 8
            out.append(chr(int(body[i + 2 : i + 2 + size], 16)))
            i += 2 + size
        elif n == "x":
            m = re.match(r"[0-9a-fA-F]+", body[i + 2 :])
            out.append(chr(int(m[0], 16)))  # type: ignore[index]
            i += 2 + len(m[0])  # type: ignore[index]
        else:
            out.append(_ESC[n])
            i += 2
    return "".join(out)


def tokens(src: str) -> list[tuple[str, Any, int]]:
    """(kind, value, offset): kinds "str", "num", "id", "op"."""
    out = []
    for m in _TOKEN.finditer(src):
        kind = m.lastgroup
        if m["ws"] is not None:
            continue
        if m["raw"] is not None:
            out.append(("str", m["rawbody"], m.start()))
        elif m["str"] is not None:
            out.append(("str", _unescape(m["str"][1:-1]), m.start()))
        elif m["chr"] is not None:
            out.append(("chr", m["chr"], m.start()))
        else:
            out.append((kind or "op", m[0], m.start()))
    return out


# -- values --------------------------------------------------------------------


class Unresolved(Exception):
    pass


def _msg(content: str = "", reasoning: str = "", name: str = "", args: str = "", id: str = ""):
    calls = [(name, args)] if name or id else []
    return {"content": content, "reasoning": reasoning, "calls": calls}


def _str(v: Any) -> str:
    if isinstance(v, list) and not v:
        return ""  # {} for an empty string
    if not isinstance(v, str):
        raise Unresolved(repr(v))
    return v


_MAKERS = {
    "simple_assist_msg": lambda *a: _msg(*map(_str, a)),
    "message_with_tool_calls": lambda n, a: _msg("", "", _str(n), _str(a)),
    "message_with_tool_calls_and_reasoning": lambda n, a, r: _msg("", _str(r), _str(n), _str(a)),
    "message_with_content_and_tool_call": lambda c, n, a: _msg(_str(c), "", _str(n), _str(a)),
    "message_with_reasoning_and_tool_call": lambda r, n, a: _msg("", _str(r), _str(n), _str(a)),
    "message_with_reasoning_content_and_multiple_tool_calls": lambda r, c, calls: {
        "content": _str(c),
        "reasoning": _str(r),
        "calls": [(_str(x[0]), _str(x[1])) for x in calls],
    },
}


class Reader:
    def __init__(self, toks: list[tuple[str, Any, int]], names: dict[str, Any]) -> None:
        self.t = toks
        self.names = names

    def expr(self, i: int) -> tuple[Any, int]:
        """A value, or strings joined with ``+``."""
        value, i = self.primary(i)
        while self.t[i][1] == "+" and isinstance(value, str):
            more, i = self.primary(i + 1)
            value += _str(more)
        return value, i

    def primary(self, i: int) -> tuple[Any, int]:
        kind, val, _ = self.t[i]
        if kind == "str":
            parts = []
            while self.t[i][0] == "str":
                parts.append(self.t[i][1])
                i += 1
            return "".join(parts), i
        if kind == "num":
            return float(val), i + 1
        if val == "{":
            items, i = self.args(i + 1, "}")
            return items, i
        if kind == "id":
            if self.t[i + 1][1] == "(":
                args, j = self.args(i + 2, ")")
                if val in _MAKERS:
                    try:
                        return _MAKERS[val](*args), j
                    except TypeError as e:
                        raise Unresolved(val) from e
                if val == "std::string" and len(args) == 1:
                    return args[0], j
                raise Unresolved(val)
            if val in ("true", "false"):
                return val == "true", i + 1
            if val.startswith("COMMON_"):
                return val, i + 1
            if val in self.names:
                return self.names[val], i + 1
            raise Unresolved(val)
        raise Unresolved(f"{val!r} at {self.t[i][2]}")

    def args(self, i: int, close: str) -> tuple[list[Any], int]:
        out: list[Any] = []
        while self.t[i][1] != close:
            v, i = self.expr(i)
            out.append(v)
            if self.t[i][1] == ",":
                i += 1
        return out, i + 1


def _skip(toks: list, i: int, close: str) -> int:
    """Past the bracket that closes the one just opened."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    depth = 1
    stack = [close]
    while depth:
        val = toks[i][1] if toks[i][0] == "op" else None
        if val in pairs:
            stack.append(pairs[val])
            depth += 1
        elif val is not None and val == stack[-1]:
            stack.pop()
            depth -= 1
        i += 1
    return i


# -- cases ---------------------------------------------------------------------

# What a case may set besides its input and expectations; anything else (messages,
# continuations, JSON schemas, partial input, a tool choice) leaves it out.
_IGNORED = {"tools", "parallel_tool_calls", "expect_reconstruction", "add_generation_prompt"}
_SKIPPED = {"messages", "continue_final_message", "json_schema", "tool_choice"}


def read_cases() -> tuple[list[Case], dict[str, int]]:
    """The cases taken, and how many were left out and why."""
    src = (llama_cpp_dir() / "tests/test-chat.cpp").read_text()
    toks = tokens(src)
    names: dict[str, Any] = {}
    reader = Reader(toks, names)
    left: dict[str, int] = {}
    cases: list[Case] = []
    testers: dict[str, list[str]] = {}
    loop_paths: list[str] = []
    i = 0
    while i < len(toks):
        kind, val, at = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        # a named message: [const|auto] common_chat_msg NAME = maker(...);
        if kind == "id" and nxt == "=" and toks[i + 2][0] == "id" and toks[i + 2][1] in _MAKERS:
            try:
                names[val], i = reader.expr(i + 2)
            except Unresolved:
                i += 1
            continue
        # a tool: common_chat_tool NAME{ "name", "description", R"(parameters)" };
        if kind == "id" and toks[i - 1][1] == "common_chat_tool" and nxt in ("{", "="):
            j = i + 1 if nxt == "{" else i + 2
            try:
                names[val], i = reader.expr(j)
            except Unresolved:
                i += 1
            continue
        # a named string: std::string NAME = "..." "..." + ...;
        if kind == "id" and nxt == "=" and toks[i - 1][1] == "std::string":
            try:
                names[val], i = reader.expr(i + 2)
            except Unresolved:
                i += 1
            continue
        # for (const auto & path : { "a.jinja", "b.jinja" })
        if val == "path" and nxt == ":" and toks[i + 2][1] == "{":
            paths, i = reader.args(i + 3, "}")
            loop_paths = [p for p in paths if isinstance(p, str)]
            continue
        # auto tst = peg_tester("models/templates/x.jinja" | path, ...)
        if kind == "id" and nxt == "=" and toks[i + 2][1] == "peg_tester":
            arg = toks[i + 4]
            if arg[0] == "str":
                testers[val] = [arg[1]]
            elif arg[1] == "path":
                testers[val] = list(loop_paths)
            else:
                testers[val] = []  # a helper's parameter: not resolved here
            i += 4
            continue
        if kind == "id" and nxt == "." and toks[i + 2][1] == "test" and val in testers:
            end = i + 2
            while not (toks[end][1] == "run" and toks[end - 1][1] == "."):
                end += 1
            try:
                taken = _case(reader, i + 2, end, at, src)
            except Unresolved:
                taken = "unresolved"
            if isinstance(taken, str):
                left[taken] = left.get(taken, 0) + len(testers[val] or [""])
            elif not testers[val]:
                left["template unresolved"] = left.get("template unresolved", 0) + 1
            else:
                for path in testers[val]:
                    cases.append(_with_template(taken, Path(path).name))
            i = end
            continue
        i += 1
    return cases, left


def _with_template(case: Case, template: str) -> Case:
    return Case(template, *[getattr(case, f) for f in list(Case.__dataclass_fields__)[1:]])


def _case(reader: Reader, i: int, end: int, at: int, src: str) -> Case | str:
    """The chain ``test(...).x(...)...`` from token ``i`` to ``run``."""
    toks = reader.t
    case = Case("", src.count("\n", 0, at) + 1, "")
    while i < end:
        method = toks[i][1]
        if method == "tools":  # resolved where the reader can, else left unknown
            try:
                args, i = reader.args(i + 2, ")")
                case.tools = [_tool(t) for t in args[0]]
            except (Unresolved, IndexError, TypeError):
                case.tools, i = None, _skip(toks, i + 2, ")")
            i += 1
            continue
        args, i = reader.args(i + 2, ")") if method in _VALUED else ([], _skip(toks, i + 2, ")"))
        if method in _SKIPPED:
            return method
        if method == "is_partial" and args != [False]:
            return "is_partial"
        _apply(case, method, args)
        i += 1  # the "." before the next method
    return case


def _tool(value: Any) -> tuple[str, str]:
    """A ``common_chat_tool`` ({name, description, parameters}) as (name, parameters)."""
    if not (isinstance(value, list) and len(value) == 3):
        raise Unresolved(repr(value))
    name, params = _str(value[0]), _str(value[2])
    json.loads(params)
    return name, params


_VALUED = {
    "test", "expect", "expect_content", "expect_reasoning", "expect_tool_calls",
    "enable_thinking", "reasoning_format", "is_partial",
}  # fmt: skip


def _apply(case: Case, method: str, args: list[Any]) -> None:
    if method == "test":
        case.input = _str(args[0])
    elif method == "expect":
        m = args[0]
        case.content, case.reasoning, case.calls = m["content"], m["reasoning"], list(m["calls"])
    elif method == "expect_content":
        case.content = _str(args[0])
    elif method == "expect_reasoning":
        case.reasoning = _str(args[0])
    elif method == "expect_tool_calls":
        case.calls = [(_str(c[0]), _str(c[1])) for c in args[0]]
    elif method == "enable_thinking":
        case.enable_thinking = bool(args[0])
    elif method == "reasoning_format":
        case.reasoning_format = str(args[0]).removeprefix("COMMON_REASONING_FORMAT_")
    elif method not in _IGNORED | {"is_partial"}:
        raise Unresolved(method)
    for name, a in case.calls:
        try:
            json.loads(a or "{}")
        except ValueError as e:
            raise Unresolved(f"arguments of {name}: {a!r}") from e


# -- rendering a template's generation prompt ------------------------------------


@cache
def _env() -> jinja2.Environment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )

    def tojson(v: Any, ensure_ascii: bool = False, indent: Any = None, **_: Any) -> str:
        return json.dumps(v, ensure_ascii=ensure_ascii, indent=indent)

    def fail(msg: str) -> None:
        raise ValueError(msg)

    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=fail, strftime_now=lambda f: datetime.now().strftime(f))
    return env


def render_prompt(template: str, variables: dict[str, Any]) -> str:
    """The generation prompt after a user's "Hey there!", as llama.cpp's tests
    render it, with the template ``variables`` a family sets."""
    return (
        _env()
        .from_string(template)
        .render(
            messages=[{"role": "user", "content": "Hey there!"}],
            add_generation_prompt=True,
            bos_token="",
            eos_token="",
            **variables,
        )
    )
