"""Images in the local engines, held to two references on the same files: the
tiny random SmolVLM (``tests/tiny_vlm.py``, made once per session).

- llama.cpp's own ``llama-server``, built from the pinned source (bench/), with
  ``--mmproj``: the first token's log-probabilities after a red and after a blue
  image match llmkit's llama.cpp engine within ``LOGPROB_TOL``.
- transformers running the safetensors through their processor: the greedy
  tokens agree, for llmkit's llama.cpp engine (the GGUFs) and its transformers
  engine (the safetensors). Preprocessing is the same here: both cut a 64x64
  image into four 32x32 tiles and an overview with the same tokens around them
  (checked token by token below), and an image of one colour resizes to the same
  pixels whatever the resampling filter; on photographs the filters differ
  (mtmd's bilinear/bicubic against PIL's), so embeddings differ slightly there.

The model is random: nothing here asserts what it says, only that the engines
and the references say the same, and that red and blue differ.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator

import pytest

from llmkit.core.types import GenerateRequest, Message, SamplingParams, Tool, Usage
from llmkit.engines.llamacpp.engine import LlamaCppEngine
from llmkit.engines.llamacpp.model import LoadOptions
from llmkit.engines.local import LocalEngine
from llmkit.errors import VisionUnsupportedError
from tests.conftest import free_port
from tests.tiny_vlm import BLUE, RED, TinyVlm, image, png

GREEDY = SamplingParams(temperature=0)
QUESTION = "What colour is this?"
#: llmkit and llama-server run the same kernels on the same F32 weights, but
#: llmkit's KV cells go through its own attention kernel; measured differences
#: are under 1e-3, the tolerance leaves room for another CPU's SIMD width.
LOGPROB_TOL = 0.02
TOP = 5


def ask(col: tuple[int, int, int], question: str = QUESTION, **kw: object) -> GenerateRequest:
    args: dict = {"sampling": GREEDY, "max_tokens": 6, **kw}
    msgs = (Message("user", question, images=(image(col),)),)
    return GenerateRequest(messages=msgs, **args)


async def _run(engine: LocalEngine, req: GenerateRequest) -> dict:
    out: dict = {"ids": [], "text": "", "logprobs": [], "calls": [], "usage": None}
    async for c in engine.generate(req):
        out["ids"] += c.token_ids
        out["text"] += c.text
        out["logprobs"] += c.logprobs
        out["calls"] += c.tool_calls
        out["usage"] = c.usage or out["usage"]
    return out


def run(engine: LocalEngine, *reqs: GenerateRequest) -> list[dict]:
    """The requests at once (one batch), their results in order."""

    async def together() -> list[dict]:
        return list(await asyncio.gather(*(_run(engine, r) for r in reqs)))

    return asyncio.run(together())


@pytest.fixture(scope="module")
def engine(vlm: TinyVlm) -> Iterator[LlamaCppEngine]:
    e = LlamaCppEngine(
        LoadOptions(path=str(vlm.lm), n_ctx=512, parallel=4, n_threads=2, mmproj=str(vlm.mmproj))
    )
    asyncio.run(e.start())
    yield e
    asyncio.run(e.close())


@pytest.fixture(scope="module")
def llama_server(vlm: TinyVlm) -> Iterator[str]:
    from bench.llama_server import serve

    args = ["--mmproj", str(vlm.mmproj), "-c", "2048", "--parallel", "1", "-t", "2"]
    with serve(vlm.lm, free_port(), args) as url:
        yield url


def server_first_token(url: str, col: tuple[int, int, int]) -> tuple[dict[str, float], int]:
    """llama-server's top first tokens (text -> logprob) and its prompt's size."""
    import openai

    uri = "data:image/png;base64," + base64.b64encode(png(col)).decode()
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
    content = [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": QUESTION}]
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": content}],  # type: ignore[list-item]
        max_tokens=1,
        temperature=0,
        logprobs=True,
        top_logprobs=TOP,
    )
    top = r.choices[0].logprobs.content[0].top_logprobs  # type: ignore[index, union-attr]
    assert r.usage is not None
    return {t.token: t.logprob for t in top}, r.usage.prompt_tokens


def test_first_token_logprobs_match_llama_server_per_image(engine, llama_server) -> None:
    firsts = {}
    for col in (RED, BLUE):
        theirs, their_prompt = server_first_token(llama_server, col)
        (mine,) = run(engine, ask(col, max_tokens=1, logprobs=TOP))
        entry = mine["logprobs"][0]
        ours = {t.piece.decode("utf-8", "replace"): t.logprob for t in entry.top}
        assert mine["usage"].prompt_tokens == their_prompt  # image tokens counted alike
        assert list(ours) == list(theirs)
        for tok, lp in theirs.items():
            assert ours[tok] == pytest.approx(lp, abs=LOGPROB_TOL), tok
        firsts[col] = next(iter(theirs))
    # The images reach the model: the references' first tokens tell them apart.
    assert firsts[RED] != firsts[BLUE]


# -- transformers, through the processor ---------------------------------------------


@pytest.fixture(scope="module")
def hf_greedy(vlm: TinyVlm) -> dict[tuple[int, int, int], list[int]]:
    """transformers' own greedy tokens after each image: the processor, then
    ``generate``, on the safetensors."""
    import io

    import torch
    import transformers
    from PIL import Image as PILImage

    processor = transformers.AutoProcessor.from_pretrained(vlm.hf_dir)
    model = transformers.AutoModelForImageTextToText.from_pretrained(vlm.hf_dir).eval()
    out = {}
    for col in (RED, BLUE):
        msgs = [{"role": "user", "content": f"{processor.image_token}{QUESTION}"}]
        text = processor.tokenizer.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=True
        )
        pic = PILImage.open(io.BytesIO(png(col))).convert("RGB")
        inputs = processor(text=text, images=[pic], add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            gen = model.generate(**inputs, max_new_tokens=6, do_sample=False)
        out[col] = gen[0, inputs["input_ids"].shape[1] :].tolist()
    return out


def test_llamacpp_greedy_tokens_agree_with_transformers(engine, hf_greedy) -> None:
    red, blue = run(engine, ask(RED), ask(BLUE))
    assert red["ids"] == hf_greedy[RED]
    assert blue["ids"] == hf_greedy[BLUE]
    assert hf_greedy[RED] != hf_greedy[BLUE]


def test_the_transformers_engine_serves_it_through_the_processor(vlm, hf_greedy) -> None:
    from llmkit.engines.transformers.engine import TransformersEngine
    from llmkit.engines.transformers.spec import TransformersOptions

    e = TransformersEngine(
        TransformersOptions(threads=2), source=vlm.hf_dir, gguf_file=None, n_ctx=512
    )
    asyncio.run(e.start())
    try:
        assert "vision" in e.info.capabilities
        red, blue = run(e, ask(RED), ask(BLUE))
        assert red["ids"] == hf_greedy[RED]
        assert blue["ids"] == hf_greedy[BLUE]
        # The processor spells an image out as llama.cpp's mtmd does: same prompt size.
        assert red["usage"].prompt_tokens == asyncio.run(_prompt_size(e))
    finally:
        asyncio.run(e.close())


async def _prompt_size(e: LocalEngine) -> int:
    return len(await e.encode(ask(RED)))


def test_both_engines_spell_an_image_out_alike(engine, vlm) -> None:
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(vlm.hf_dir)
    ours = asyncio.run(engine.encode(ask(RED)))
    image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    # Placeholders (< 0) where the processor writes its image token, all else equal.
    text = engine.chat_text((Message("user", f"{engine.image_marker}{QUESTION}"),), (), {}).replace(
        engine.image_marker or "", processor.image_token
    )
    theirs = processor(
        text=text, images=[__import__("PIL.Image").Image.new("RGB", (64, 64), RED)],
        add_special_tokens=False,
    )["input_ids"][0]  # fmt: skip
    assert [t if t >= 0 else image_id for t in ours] == list(theirs)
    assert asyncio.run(engine.image_tokens(image(RED))) == len(ours) - len(
        asyncio.run(engine.encode(GenerateRequest(messages=(Message("user", QUESTION),))))
    )


# -- the same machinery as text ---------------------------------------------------------


def test_images_batch_with_text_and_each_other(engine) -> None:
    text_only = GenerateRequest(
        messages=(Message("user", "Say something."),), sampling=GREEDY, max_tokens=6
    )
    alone = [run(engine, r)[0]["ids"] for r in (ask(RED), ask(BLUE), text_only)]
    together = run(engine, ask(RED), ask(BLUE), text_only, ask(RED, "Which colour?"))
    assert [t["ids"] for t in together[:3]] == alone
    assert alone[0] != alone[1]


def test_the_same_image_twice_is_read_from_the_cache(engine) -> None:
    projector = engine.projector
    assert projector is not None
    green = (30, 200, 30)
    first = run(engine, ask(green))[0]
    encoded = projector.encoded
    second = run(engine, ask(green, "And what shape?"))[0]
    u1, u2 = first["usage"], second["usage"]
    assert isinstance(u2, Usage)
    # Everything up to the question is cached: the image's cells included.
    before = asyncio.run(engine.encode(ask(green)))
    question_at = _common(before, asyncio.run(engine.encode(ask(green, "And what shape?"))))
    assert u1.cached_tokens < question_at <= u2.cached_tokens
    assert projector.encoded == encoded  # not encoded again
    # Another history before it: its cells are not shared, but its encoding is.
    msgs = (Message("system", "Be brief."), Message("user", QUESTION, images=(image(green),)))
    other = GenerateRequest(messages=msgs, sampling=GREEDY, max_tokens=2)
    run(engine, other)
    assert projector.encoded == encoded


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_logprobs_json_and_tools_after_an_image(engine) -> None:
    schema = {"type": "object", "properties": {"c": {"type": "string", "maxLength": 6}},
              "required": ["c"], "additionalProperties": False}  # fmt: skip
    held = SamplingParams(temperature=0, response_format="json", json_schema=json.dumps(schema))
    (js,) = run(engine, ask(RED, max_tokens=60, logprobs=2, sampling=held))
    assert set(json.loads(js["text"])) == {"c"}  # the grammar held the whole answer
    # One entry for each token of the text, with its alternatives.
    assert b"".join(x.piece for x in js["logprobs"]).decode() == js["text"]
    assert all(len(x.top) == 2 for x in js["logprobs"])
    weather = Tool(
        "weather",
        "The weather in a city",
        json.dumps({"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}},
                    "required": ["city"]}),
    )  # fmt: skip
    (call,) = run(engine, ask(BLUE, max_tokens=60, tools=(weather,), tool_choice="required"))
    assert call["calls"] and call["calls"][0].name == "weather"


def test_the_host_tier_keeps_image_cells(vlm) -> None:
    """A pool of one conversation's cells: the second image evicts the first to
    host memory, and asking about the first again restores its cells."""
    opts = LoadOptions(
        path=str(vlm.lm), n_ctx=64, parallel=1, kv_cells=64, n_threads=2,
        mmproj=str(vlm.mmproj), host_cache_mib=64,
    )  # fmt: skip
    e = LlamaCppEngine(opts)
    asyncio.run(e.start())
    try:
        run(e, ask(RED, max_tokens=2))
        run(e, ask(BLUE, max_tokens=2))
        again = run(e, ask(RED, "Red?", max_tokens=2))[0]
        pool = e._loop.backend.pool  # type: ignore[union-attr]
        assert pool.restored > 0
        assert again["usage"].cached_tokens >= 32
    finally:
        asyncio.run(e.close())


# -- a model that cannot see --------------------------------------------------------------


def test_an_image_to_a_text_only_model_is_the_clear_error(bundled_path) -> None:
    e = LlamaCppEngine(LoadOptions(path=bundled_path, n_ctx=256, parallel=1, n_threads=2))
    asyncio.run(e.start())
    try:
        with pytest.raises(VisionUnsupportedError) as err:
            run(e, ask(RED))
        assert err.value.status == 400 and err.value.param == "messages"
        assert err.value.model == bundled_path and "completion" in err.value.supports
        assert "does not take images" in err.value.message
        with pytest.raises(VisionUnsupportedError):
            asyncio.run(e.image_tokens(image(RED)))
    finally:
        asyncio.run(e.close())


def test_a_reasoning_model_thinks_after_an_image(vlm, tmp_path) -> None:
    """The tiny VLM's GGUF dressed in DeepSeek-R1's template (its prompt opens the
    thinking): the family's budget closes the thinking with its marker after the
    image prompt."""
    from tests.family_models import template, with_template

    r1 = template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B")
    path = with_template(vlm.lm, tmp_path / "thinking-vlm.gguf", r1)
    e = LlamaCppEngine(
        LoadOptions(path=str(path), n_ctx=256, parallel=1, n_threads=2, mmproj=str(vlm.mmproj))
    )
    asyncio.run(e.start())
    try:
        assert e.family.thinks
        budget = 4
        (out,) = run(e, ask(RED, think=True, reasoning_budget=budget, max_tokens=10,
                            ignore_eos=True))  # fmt: skip
        close = e.lm.tokenize(e.family.close_thinking, add_bos=False, special=True)
        assert out["ids"][budget : budget + len(close)] == close
        assert out["usage"].reasoning_tokens == budget
        prompt = asyncio.run(e.encode(ask(RED, think=True)))
        assert sum(t < 0 for t in prompt) == 20  # the image's five tiles are in it
    finally:
        asyncio.run(e.close())
