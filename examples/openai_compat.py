"""An OpenAI-compatible chat completions server on a toy, deterministic model.

``POST /v1/chat/completions`` (streamed as server-sent events or not, with
``stream_options.include_usage``) and ``GET /v1/models``, with OpenAI's error bodies
``{"error": {"message", "type", "param", "code"}}``: an invalid request is a 400, an
unknown model OpenAI's 404. The official ``openai`` client talks to it unchanged:

    uvicorn --app-dir examples openai_compat:router --port 8000

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.chat.completions.create(model="toy-echo", messages=[...], stream=True)

The model echoes the last user message word by word (``toy-echo``) or backwards
(``toy-reverse``), one word per token, pacing tokens like a real decoder
(``TOY_TOKEN_DELAY`` seconds, 0.02 by default). When a streaming client goes away the
token generator is cancelled at its next ``await`` and its ``finally`` runs: swap in your
model there and the decoding stops within one token.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio

from asgikit import EventSourceResponse, HTTPException, JSONResponse, Request, Router

MAX_BODY = 1 << 20  # bytes of JSON a request may carry
ROLES = frozenset(("system", "developer", "user", "assistant", "tool"))
_ids = itertools.count(1)


class ToyModel:
    """Splits the last user message into words and generates them back, one per token.

    ``active``, ``tokens_generated``, ``finished`` and ``aborted`` count what happened:
    the numbers a real server would export as metrics.
    """

    def __init__(self, token_delay: float) -> None:
        self.token_delay = token_delay
        self.active = 0
        self.tokens_generated = 0
        self.finished = 0
        self.aborted = 0

    async def generate(
        self, model: str, prompt: list[str], max_tokens: int
    ) -> AsyncGenerator[str, None]:
        """Yield up to ``max_tokens`` words; a cancelled (abandoned) generation is counted."""
        words = prompt[::-1] if model == "toy-reverse" else prompt
        self.active += 1
        done = False
        try:
            for index, word in enumerate(words[:max_tokens]):
                await anyio.sleep(self.token_delay)  # a decoding step; cancelled here
                self.tokens_generated += 1
                yield word if index == 0 else " " + word
            done = True
        finally:
            self.active -= 1
            if done:
                self.finished += 1
            else:
                self.aborted += 1


MODELS = ("toy-echo", "toy-reverse")
CREATED = 1_700_000_000  # fixed, like the rest of the toy
model = ToyModel(float(os.environ.get("TOY_TOKEN_DELAY", "0.02")))


class OpenAIError(HTTPException):
    """An HTTP error that carries OpenAI's error object (see `error_response`)."""

    def __init__(self, status_code: int, error: dict[str, Any]) -> None:
        super().__init__(status_code, str(error["message"]))
        self.error = error


def openai_error(
    status_code: int, message: str, *, type: str, param: str | None = None, code: str | None = None
) -> OpenAIError:
    """OpenAI's error object ``{"message", "type", "param", "code"}`` as an HTTP error."""
    error = {"message": message, "type": type, "param": param, "code": code}
    return OpenAIError(status_code, error)


def invalid(message: str, param: str | None = None) -> OpenAIError:
    return openai_error(400, message, type="invalid_request_error", param=param)


ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_response(request: Request, exc: HTTPException) -> JSONResponse:
    """Every HTTP error (ours, the router's 404/405, a 413 body) in OpenAI's shape."""
    if isinstance(exc, OpenAIError):
        error = exc.error
    else:
        error_type = ERROR_TYPES.get(exc.status_code, "server_error")
        error = {"message": str(exc.detail), "type": error_type, "param": None, "code": None}
    return JSONResponse({"error": error}, status_code=exc.status_code, headers=exc.headers)


def server_error(request: Request, exc: Exception) -> JSONResponse:
    error = {"message": "The server had an error.", "type": "server_error"}
    return JSONResponse({"error": {**error, "param": None, "code": None}}, status_code=500)


router = Router(exception_handlers={HTTPException: error_response, Exception: server_error})


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": CREATED, "owned_by": "asgikit"}
            for name in MODELS
        ],
    }


def message_text(message: Any, index: int) -> str:
    """The text of one chat message (a string, or a list of ``text`` parts)."""
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        raise invalid(
            f"Invalid message at index {index}: expected an object with a role among "
            f"{', '.join(sorted(ROLES))}.",
            f"messages[{index}]",
        )
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        for part in content
    ):
        return " ".join(part["text"] for part in content)
    raise invalid(
        f"Invalid content at index {index}: expected a string or a list of text parts.",
        f"messages[{index}].content",
    )


def positive_int(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid(
            f"{value!r} is not a valid value for '{name}': expected an integer >= 1.", name
        )
    return value


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Any:
    body = await request.json(max_size=MAX_BODY)
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise invalid("You must provide a model parameter.", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty array of messages.", "messages")
    texts = [message_text(message, index) for index, message in enumerate(messages)]
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid(
            f"{stream!r} is not a valid value for 'stream': expected a boolean.", "stream"
        )
    stream_options = body.get("stream_options")
    if stream_options is not None and (not stream or not isinstance(stream_options, dict)):
        raise invalid(
            "'stream_options' is only allowed with 'stream': true, as an object.",
            "stream_options",
        )
    include_usage = bool((stream_options or {}).get("include_usage", False))
    if body.get("n", 1) != 1:
        raise invalid("Only n=1 is supported.", "n")
    max_tokens = positive_int(body, "max_completion_tokens", positive_int(body, "max_tokens", 4096))
    if name not in MODELS:  # checked after the shape, as OpenAI does
        raise openai_error(
            404,
            f"The model `{name}` does not exist or you do not have access to it.",
            type="invalid_request_error",
            code="model_not_found",
        )

    user_texts = [
        text for message, text in zip(messages, texts, strict=True) if message["role"] == "user"
    ]
    last_user = user_texts[-1] if user_texts else ""
    prompt_tokens = sum(len(text.split()) for text in texts)
    completion_id = f"chatcmpl-{next(_ids):08d}"
    created = int(time.time())
    words = last_user.split()
    finish_reason = "length" if len(words) > max_tokens else "stop"
    tokens = model.generate(name, words, max_tokens)

    def usage(completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    if not stream:
        text = "".join([token async for token in tokens])
        count = min(len(words), max_tokens)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": usage(count),
        }

    def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        data: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": name,
            "choices": [choice],
        }
        if include_usage:
            data["usage"] = None  # every chunk but the last one, as OpenAI sends it
        return data

    async def events() -> AsyncIterator[Any]:
        count = 0
        try:
            yield chunk({"role": "assistant", "content": ""})
            async for token in tokens:
                count += 1
                yield chunk({"content": token})
            yield chunk({}, finish_reason)
            if include_usage:
                final = chunk({})
                final.update(choices=[], usage=usage(count))
                yield final
            yield "[DONE]"
        finally:
            await tokens.aclose()  # the client left: stop the model now, not at GC time

    return EventSourceResponse(events())
