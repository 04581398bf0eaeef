"""The family table: which family a model is (from its chat template and GGUF
metadata), and what each one's thinking and calls look like.

Each row is data: how to recognise the template (texts it must hold, texts it
must not), the thinking markers, the template variable that switches thinking,
and the call syntax (a module of its own here). The first row that matches
wins, so the more specific rows come first. A template no row knows gets the
generic family: llmkit's ``<tool_call>`` syntax, no thinking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from llmkit.core.types import Effort, Tool
from llmkit.engines.families.base import Family, ReplyParser
from llmkit.engines.families.deepseek import DEEPSEEK_R1, DEEPSEEK_V31
from llmkit.engines.families.gbnf import MAX_CALLS
from llmkit.engines.families.glm import GLM
from llmkit.engines.families.harmony import (
    CLOSE_THINKING,
    HARMONY,
    OPEN_THINKING,
    HarmonyParser,
)
from llmkit.engines.families.hermes import HERMES
from llmkit.engines.families.json_list import GRANITE, GRANITE_THINKING, PHI4
from llmkit.engines.families.kimi import KIMI
from llmkit.engines.families.llama3 import LLAMA3
from llmkit.engines.families.mistral import MISTRAL, MISTRAL_ARRAY
from llmkit.engines.families.qwen_xml import QWEN_XML
from llmkit.engines.families.stream import Stream, Syntax, new_call_id

__all__ = ["BY_NAME", "GENERIC", "MAX_CALLS", "ROWS", "Row", "detect"]

THINK = ("<think>", "</think>")
# What an engine writes when a thinking budget is spent: the answer follows.
CLOSE_THINK = "\n</think>\n\n"


@dataclass(frozen=True)
class Row:
    """One family. ``switch``: the template variable that turns thinking on and
    off (``enable_thinking``...), "" when none; ``thinks_unasked``: whether it
    thinks when a request does not say (the switch's default: on for Qwen3,
    off for DeepSeek V3.1 and Granite); ``effort``: the variable that takes an
    effort level, "" when none."""

    name: str
    syntax: Any  # a ``stream.Syntax``, or ``harmony.Harmony``
    think: tuple[str, str] | None = None
    switch: str = ""
    thinks_unasked: bool = True
    effort: str = ""
    thinking_optional: bool = False
    close_thinking: str = ""
    calls_end_thinking: bool = False
    # detection: all of ``has`` in the template, none of ``lacks``
    has: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    lacks: tuple[str, ...] = ()
    archs: tuple[str, ...] = field(default=())  # GGUF general.architecture, no template

    @property
    def open_thinking(self) -> str:
        if self.syntax is HARMONY:
            return OPEN_THINKING
        return self.think[0] if self.think else ""

    @property
    def thinks(self) -> bool:
        return self.think is not None or self.syntax is HARMONY

    def matches(self, template: str) -> bool:
        return (
            all(t in template for t in self.has)
            and (not self.any_of or any(t in template for t in self.any_of))
            and not any(t in template for t in self.lacks)
        )

    def template_variables(self, think: bool | None, effort: Effort | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if think is None and effort is None:
            # The model's default, said out loud where it thinks unasked: llama.cpp's
            # copies of some templates (R1-distill) read a missing switch as "off".
            if self.switch and self.thinks_unasked:
                out[self.switch] = True
        elif self.switch:
            out[self.switch] = think is not False
        if self.effort and (effort is not None or think is False):
            # a family that always thinks thinks least at "low" when asked not to
            out[self.effort] = effort or "low"
        return out

    def opens_thinking(self, prompt: str) -> bool:
        return self.think is not None and prompt.rstrip().endswith(self.think[0])

    def parser(
        self, *, thinking: bool, max_calls: int | None, tools: tuple[Tool, ...] = ()
    ) -> ReplyParser:
        if self.syntax is HARMONY:
            return HarmonyParser(thinking=thinking, max_calls=max_calls)
        return Stream(
            self.syntax,
            # a syntax whose templates take ids of one form only makes its own
            new_id=getattr(self.syntax, "new_id", new_call_id),
            tools=tools,
            think=self.think,
            thinking=thinking,
            calls_end_thinking=self.calls_end_thinking,
            max_calls=max_calls,
        )

    def call_triggers(self) -> tuple[str, ...]:
        return (*getattr(self.syntax, "opens", ()), *self.syntax.triggers)

    def call_grammar(self, tools: tuple[Tool, ...], name: str | None, parallel: bool) -> str:
        return str(self.syntax.grammar(tools, name, parallel))


def _thinker(name: str, syntax: Syntax, switch: str = "", **kw: Any) -> Row:
    """A family that thinks in ``<think>`` ... ``</think>``."""
    return Row(
        name,
        syntax,
        think=THINK,
        switch=switch,
        thinking_optional=bool(switch),
        close_thinking=CLOSE_THINK,
        **kw,
    )


GENERIC = Row("generic", HERMES)
# Templates that mention <tool_call> or /no_think but whose models write calls in
# a syntax of their own (MiniMax-M3, Nemotron Nano 2, Apriel): not modelled.
_OWN_SYNTAX = ("mm:think", "<TOOLCALL>", "<tool_calls>")

ROWS: tuple[Row, ...] = (
    Row(
        "gpt-oss",
        HARMONY,
        effort="reasoning_effort",
        close_thinking=CLOSE_THINKING,
        has=("<|channel|>", "<|message|>"),
        archs=("gpt-oss",),
    ),
    _thinker("kimi-k2-thinking", KIMI, has=("<|tool_calls_section_begin|>", "<think>"),
             calls_end_thinking=True),
    Row("kimi-k2", KIMI, has=("<|tool_calls_section_begin|>",)),
    _thinker("deepseek-v3.1", DEEPSEEK_V31, "thinking", has=("tool▁sep", "<think>"),
             lacks=("```json",), thinks_unasked=False),
    _thinker("deepseek-r1", DEEPSEEK_R1, has=("tool▁sep", "<think>")),
    Row("deepseek-v3", DEEPSEEK_R1, has=("tool▁sep",)),
    _thinker("qwen3.5", QWEN_XML, "enable_thinking", has=("<tool_call>", "<function=",
             "<parameter=", "<think>"), calls_end_thinking=True),
    Row("qwen3-coder", QWEN_XML, has=("<tool_call>", "<function=", "<parameter=")),
    _thinker("glm-4.5", GLM, "enable_thinking", has=("<tool_call>", "<arg_key>"),
             calls_end_thinking=True),
    Row("magistral", MISTRAL, think=("[THINK]", "[/THINK]"), close_thinking="[/THINK]",
        has=("[TOOL_CALLS]", "[THINK]")),
    Row("mistral", MISTRAL, has=("[TOOL_CALLS]", "[ARGS]")),
    Row("mistral-nemo", MISTRAL_ARRAY, has=("[TOOL_CALLS]",)),
    _thinker("granite-3.3", GRANITE_THINKING, "thinking", has=("<|tool_call|>", "<think>"),
             thinks_unasked=False),
    Row("granite-3", GRANITE, has=("<|tool_call|>",)),
    Row("granite-4", HERMES, has=("<|start_of_role|>", "<tool_call>")),
    Row("phi-4-mini", PHI4, has=("<|tool|>", "<|/tool|>")),
    Row("firefunction-v2", PHI4, has=("functools",)),
    Row("llama-3", LLAMA3, has=("<|start_header_id|>",), lacks=("<function=",),
        any_of=("<|python_tag|>", '"parameters": dictionary of argument name')),
    _thinker("qwq", HERMES, "enable_thinking", has=("<tool_call>", "assistant\\n<think>")),
    _thinker("smollm3", HERMES, "enable_thinking", has=("/no_think", "<think>"),
             lacks=_OWN_SYNTAX),
    _thinker("qwen3", HERMES, "enable_thinking", has=("<tool_call>", "<think>", "enable_thinking"),
             lacks=_OWN_SYNTAX),
    Row("hermes", HERMES, has=("<tool_call>",), lacks=_OWN_SYNTAX),
)  # fmt: skip

BY_NAME: dict[str, Row] = {r.name: r for r in (*ROWS, GENERIC)}


def detect(template: str, metadata: Mapping[str, str]) -> Family:
    """The family a model belongs to, from its chat template and GGUF metadata; the
    generic family (llmkit's ``<tool_call>`` syntax, no thinking) when none fits."""
    row = next((r for r in ROWS if template and r.matches(template)), None)
    if row is None and not template:
        arch = metadata.get("general.architecture", "")
        row = next((r for r in ROWS if arch in r.archs), None)
    if row is None:
        return GENERIC
    if row.switch and row.switch not in template:
        row = replace(row, switch="", thinking_optional=False)  # this version has no switch
    elif not row.switch and row.think and "enable_thinking" in template:
        # llama.cpp's versions of some templates (R1-distill, QwQ) read a switch the
        # originals lack: where the template reads one, thinking can be switched off
        row = replace(row, switch="enable_thinking", thinking_optional=True)
    return row
