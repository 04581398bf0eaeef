"""``POST /tokenize`` and ``POST /detokenize``, in vLLM's shapes, so a client can
count a conversation's tokens with the served model's own tokenizer and chat
template (the chat client fits its history to the context this way).

    POST /tokenize   {"model", "prompt"} or {"model", "messages"}
                     -> {"count", "max_model_len", "tokens"}
                     (messages are counted as a generation would see them: the
                     model's chat template, ending with the assistant's turn;
                     a message's image_url parts as the engine places the images,
                     each image's positions a negative placeholder id)
    POST /detokenize {"model", "tokens"} -> {"prompt"}
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, model_validator

from llmkit.api import limits
from llmkit.api.images import ImageRef, Images, read_images
from llmkit.core.types import GenerateRequest, Message
from llmkit.errors import InvalidRequestError

router = APIRouter()


class _Msg(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    # text, or OpenAI's parts: text and image_url (images count as the model sees them)
    content: str | list[dict[str, Any]] = ""


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    prompt: str | None = None
    messages: list[_Msg] | None = None
    add_special_tokens: bool = True

    @model_validator(mode="after")
    def _one(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either prompt or messages")
        return self

    def image_refs(self) -> list[ImageRef]:
        return [
            ImageRef(_url(p), f"messages.{i}.content.{j}.image_url.url")
            for i, m in enumerate(self.messages or ())
            if isinstance(m.content, list)
            for j, p in enumerate(m.content)
            if p.get("type") == "image_url"
        ]

    def sizes(self) -> limits.Sizes:
        return limits.Sizes(messages=len(self.messages or ()), images=len(self.image_refs()))


def _url(part: dict[str, Any]) -> str:
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    return url if isinstance(url, str) else ""


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    tokens: list[int]


class DetokenizeResponse(BaseModel):
    prompt: str


_ROLES = {"developer": "system"}


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request) -> TokenizeResponse:
    limits.check(request, body.sizes())
    model = request.app.state.registry.get(body.model)
    engine = model.engine
    pics = await read_images(request, body.image_refs(), model, asked_as=body.model)
    if body.messages is not None:
        roles = {"system", "user", "assistant", "tool"}
        msgs = []
        for i, m in enumerate(body.messages):
            role = _ROLES.get(m.role, m.role)
            if role not in roles:
                raise InvalidRequestError(f"unknown role '{m.role}'", param=f"messages.{i}.role")
            msgs.append(_message(role, m, i, pics))
        ids = await engine.encode(GenerateRequest(messages=tuple(msgs)))
        if ids is None:
            raise InvalidRequestError("This model's engine cannot tokenize chat messages.")
    else:
        ids = await engine.tokenize(body.prompt or "", special=body.add_special_tokens)
    return TokenizeResponse(count=len(ids), max_model_len=engine.context_length, tokens=ids)


def _message(role: str, m: _Msg, i: int, pics: Images) -> Message:
    if isinstance(m.content, str):
        return Message(role, m.content)  # type: ignore[arg-type]
    texts, seen = [], []
    for j, part in enumerate(m.content):
        if part.get("type") == "image_url":
            ref = ImageRef(_url(part), f"messages.{i}.content.{j}.image_url.url")
            seen.append(pics.get(ref))
        elif isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            raise InvalidRequestError(
                "Content parts must be text or image_url parts.", param=f"messages.{i}.content.{j}"
            )
    return Message(role, "".join(texts), images=tuple(seen))  # type: ignore[arg-type]


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request) -> DetokenizeResponse:
    engine = request.app.state.registry.get(body.model).engine
    return DetokenizeResponse(prompt=await engine.detokenize(body.tokens))
