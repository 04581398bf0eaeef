"""What parsing a streamed reply costs: each family's reply parser against no
parser, on a 512-token reply streamed token by token, against the time the
bundled model takes to decode a token.

    .venv/bin/python bench/parsing.py [--tokens 512] [--reps 20]

The reply is thinking (for the families that think), an answer in prose and two
calls in the family's own syntax, cut into the pieces an engine hands on: the
bundled model's tokens, each decoded as the stream decodes it (a character cut
between tokens waits for its last byte). The parse time per token is the best
of ``--reps`` runs, less the same loop with no parser (the stream's own cost).
The decode time per token is the median gap between tokens of a short greedy
generation with the bundled model. The issue asks parsing to stay under 2% of
a streamed reply's time. Results go to bench/results/parsing.json.
"""

from __future__ import annotations

import argparse
import codecs
import json
import statistics
import time
from pathlib import Path

import llama_cpp

from llmkit.engines.families.table import BY_NAME
from llmkit.models.bundled import bundled_model_path

PROSE = (
    "The lighthouse keeper counted the ships that passed in the night, and wrote each "
    "name in a book that nobody read. When the fog came in, he lit the lamp early. "
)
ARGS = '{"city": "Paris", "days": 3}'
# one call of get_weather in each syntax (families that share one share this)
CALL = {
    "hermes": f'<tool_call>\n{{"name": "get_weather", "arguments": {ARGS}}}\n</tool_call>',
    "qwen_xml": "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
    "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
    "glm": "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
    "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>",
    "mistral": f"[TOOL_CALLS]get_weather[ARGS]{ARGS}",
    "mistral_array": f'[TOOL_CALLS][{{"name": "get_weather", "arguments": {ARGS}}}]',
    "kimi": "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
    f"<|tool_call_argument_begin|>{ARGS}<|tool_call_end|><|tool_calls_section_end|>",
    "deepseek_r1": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
    f"```json\n{ARGS}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "deepseek_v31": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
    f"{ARGS}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "granite": f'<|tool_call|>[{{"name": "get_weather", "arguments": {ARGS}}}]',
    "phi4": f'functools[{{"name": "get_weather", "arguments": {ARGS}}}]',
    "llama3": f'{{"type": "function", "name": "get_weather", "parameters": {ARGS}}}',
    "harmony": "<|start|>assistant<|channel|>commentary to=functions.get_weather "
    f"<|constrain|>json<|message|>{ARGS}<|call|>",
}


def syntax_of(family: str) -> str:
    syntax = BY_NAME[family].syntax
    name = type(syntax).__name__.lower()
    if name == "mistral":
        return "mistral_array" if syntax._array else "mistral"
    if name == "deepseek":
        return "deepseek_r1" if syntax._typed else "deepseek_v31"
    if name == "jsonlist":
        return "granite" if syntax.marker.startswith("<") else "phi4"
    return {"qwenxml": "qwen_xml", "llama3": "llama3"}.get(name, name)


def reply(family: str, llm: llama_cpp.Llama, tokens: int) -> tuple[list[str], bool]:
    """The reply's pieces (``tokens`` of them) and whether it starts in thinking:
    thinking, a paragraph of answer, a call with a long argument (the slow path:
    a call is held until it ends) and a short one."""
    fam = BY_NAME[family]
    if family == "gpt-oss":
        head, tail = "<|channel|>analysis<|message|>", "<|end|>"
        answer = ("<|start|>assistant<|channel|>final<|message|>", "<|end|>")
    else:
        head, tail = "", (getattr(fam, "think", None) or ("", ""))[1]
        answer = ("", "")
    thinking = head + PROSE * 3 + tail if fam.thinks else ""
    call = CALL[syntax_of(family)]

    def text(city: str) -> str:
        calls = call.replace("Paris", city) + "\n" + call.replace("Paris", "Lyon")
        return thinking + answer[0] + PROSE * 3 + answer[1] + "\n" + calls

    def count(s: str) -> int:
        return len(llm.tokenize(s.encode(), add_bos=False, special=False))

    city = PROSE * max(0, (tokens - count(text(""))) // count(PROSE))
    ids = llm.tokenize(text(city.strip()).encode(), add_bos=False, special=False)
    ids += llm.tokenize((" " + PROSE * 4).encode(), add_bos=False, special=False)
    decoder = codecs.getincrementaldecoder("utf-8")("ignore")
    pieces = [decoder.decode(llm.detokenize([t])) for t in ids[:tokens]]
    return pieces, fam.thinks and not head


def parse_time(family: str, pieces: list[str], thinking: bool, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        p = BY_NAME[family].parser(thinking=thinking, max_calls=None)
        for piece in pieces:
            p.push(piece)
        p.flush()
        best = min(best, time.perf_counter() - t0)
    return best


def stream_time(pieces: list[str], reps: int) -> float:
    """The same loop with no parser: what a stream costs without one."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        text = []
        for piece in pieces:
            text.append(piece)
        "".join(text)
        best = min(best, time.perf_counter() - t0)
    return best


def decode_time(llm: llama_cpp.Llama, n: int = 48) -> float:
    """Median seconds between streamed tokens of a greedy generation."""
    gaps, last = [], None
    for _ in llm.create_completion("Once upon a time", max_tokens=n, temperature=0, stream=True):
        now = time.perf_counter()
        if last is not None:
            gaps.append(now - last)
        last = now
    return statistics.median(gaps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    llm = llama_cpp.Llama(bundled_model_path(), n_ctx=256, verbose=False)
    per_token = decode_time(llm)
    rows = []
    for family in sorted(BY_NAME):
        pieces, thinking = reply(family, llm, args.tokens)
        cost = parse_time(family, pieces, thinking, args.reps) - stream_time(pieces, args.reps)
        per = cost / len(pieces)
        rows.append({"family": family, "tokens": len(pieces), "parse_us_per_token": per * 1e6,
                     "share_of_decode": per / per_token})  # fmt: skip
    print(f"bundled model decode: {per_token * 1e3:.2f} ms/token\n")
    print("| family | parse µs/token | share of decode |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['family']} | {r['parse_us_per_token']:.1f} | {r['share_of_decode']:.2%} |")
    out = Path(__file__).parent / "results/parsing.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"decode_s_per_token": per_token, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
