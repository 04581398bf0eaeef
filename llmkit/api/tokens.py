"""``POST /tokenize`` and ``POST /detokenize``, in vLLM's shapes, so a client can
count a conversation's tokens with the served model's own tokenizer and chat
template (the chat client fits its history to the context this way).

    POST /tokenize   {"model", "prompt"} or {"model", "messages"}
                     -> {"count", "max_model_len", "tokens"}
                     (messages are counted as a generation would see them: the
                     model's chat template, ending with the assistant's turn)
    POST /detokenize {"model", "tokens"} -> {"prompt"}
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, model_validator

from llmkit.api import limits
from llmkit.core.types import GenerateRequest, Message
from llmkit.errors import InvalidRequestError

router = APIRouter()


class _Msg(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str = ""


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

    def sizes(self) -> limits.Sizes:
        return limits.Sizes(messages=len(self.messages or ()))


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
    engine = request.app.state.registry.get(body.model).engine
    if body.messages is not None:
        roles = {"system", "user", "assistant", "tool"}
        msgs = []
        for i, m in enumerate(body.messages):
            role = _ROLES.get(m.role, m.role)
            if role not in roles:
                raise InvalidRequestError(f"unknown role '{m.role}'", param=f"messages.{i}.role")
            msgs.append(Message(role, m.content))  # type: ignore[arg-type]
        ids = await engine.encode(GenerateRequest(messages=tuple(msgs)))
        if ids is None:
            raise InvalidRequestError("This model's engine cannot tokenize chat messages.")
    else:
        ids = await engine.tokenize(body.prompt or "", special=body.add_special_tokens)
    return TokenizeResponse(count=len(ids), max_model_len=engine.context_length, tokens=ids)


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request) -> DetokenizeResponse:
    engine = request.app.state.registry.get(body.model).engine
    return DetokenizeResponse(prompt=await engine.detokenize(body.tokens))
