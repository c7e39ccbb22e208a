"""examples/openai_compat.py under uvicorn on 127.0.0.1, driven by the official openai client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest
from _uvicorn import run_uvicorn

ROOT = Path(__file__).resolve().parent.parent

# The example's router plus one test-only route reading the toy model's counters, so the
# test can see from the server side when a generation stops.
SERVER = """
from openai_compat import model, router


@router.get("/test/model-stats")
async def model_stats(request):
    return {
        "active": model.active,
        "tokens_generated": model.tokens_generated,
        "finished": model.finished,
        "aborted": model.aborted,
    }
"""

HELLO = [{"role": "user", "content": "the quick brown fox"}]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app_dir = tmp_path_factory.mktemp("openai_server")
    (app_dir / "openai_server.py").write_text(SERVER)
    env = {"PYTHONPATH": str(ROOT / "examples"), "TOY_TOKEN_DELAY": "0.05"}
    with run_uvicorn("openai_server:router", app_dir=app_dir, env=env) as url:
        yield url


@pytest.fixture
def client(server_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def stats(server_url: str) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(f"{server_url}/test/model-stats").json()
    return stats


def test_models_are_listed(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == ["toy-echo", "toy-reverse"]


def test_non_streaming_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="toy-echo", messages=HELLO)
    assert completion.object == "chat.completion"
    assert completion.model == "toy-echo"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "the quick brown fox"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 4)
    assert completion.usage.total_tokens == 8


def test_max_tokens_cuts_with_finish_reason_length(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="toy-reverse",
        messages=[{"role": "system", "content": "be brief"}, *HELLO],
        max_completion_tokens=2,
    )
    assert completion.choices[0].message.content == "fox brown"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.prompt_tokens == 6


def test_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="toy-echo",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    assert deltas[0].role == "assistant"
    assert "".join(delta.content or "" for delta in deltas) == "the quick brown fox"
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert [chunk.usage for chunk in chunks[:-1]] == [None] * (len(chunks) - 1)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (4, 4)


def test_streaming_without_usage_sends_none(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="toy-echo", messages=HELLO, stream=True)
    chunks = list(stream)
    assert all(chunk.usage is None and len(chunk.choices) == 1 for chunk in chunks)


def test_async_client(server_url: str) -> None:
    async def main() -> tuple[str | None, str]:
        async with openai.AsyncOpenAI(
            base_url=f"{server_url}/v1", api_key="unused", max_retries=0
        ) as client:
            completion = await client.chat.completions.create(model="toy-echo", messages=HELLO)
            stream = await client.chat.completions.create(
                model="toy-reverse",
                messages=HELLO,
                stream=True,
            )
            text = ""
            async for chunk in stream:
                text += chunk.choices[0].delta.content or ""
            return completion.choices[0].message.content, text

    assert anyio.run(main) == ("the quick brown fox", "fox brown quick the")


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-nope", messages=HELLO)
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    assert "gpt-nope" in caught.value.message
    with pytest.raises(openai.NotFoundError):  # streaming too: the error comes before the stream
        client.chat.completions.create(model="gpt-nope", messages=HELLO, stream=True)


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),  # without stream
        ({"n": 3}, "n"),
    ],
)
def test_invalid_requests_are_bad_requests(
    client: openai.OpenAI, changes: dict[str, Any], param: str
) -> None:
    arguments: dict[str, Any] = {"model": "toy-echo", "messages": HELLO, **changes}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**arguments)
    assert caught.value.status_code == 400
    assert caught.value.param == param
    assert caught.value.type == "invalid_request_error"
    body = caught.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}


def test_raw_error_bodies_have_openai_shape(server_url: str) -> None:
    response = httpx.post(f"{server_url}/v1/chat/completions", content=b"{not json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "JSON" in error["message"]
    missing = httpx.get(f"{server_url}/v1/engines")
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"message", "type", "param", "code"}


def test_closing_the_stream_stops_the_generator_within_one_token(
    client: openai.OpenAI, server_url: str
) -> None:
    before = stats(server_url)
    long_prompt = " ".join(f"word{index}" for index in range(2000))  # 100 s if never stopped
    stream = client.chat.completions.create(
        model="toy-echo",
        messages=[{"role": "user", "content": long_prompt}],
        stream=True,
    )
    received = 0
    for chunk in stream:
        if chunk.choices[0].delta.content:
            received += 1
        if received == 5:
            break
    stream.close()  # closes the connection: the server sees the client leave
    at_close = stats(server_url)["tokens_generated"] - before["tokens_generated"]

    deadline = time.monotonic() + 10
    after = stats(server_url)
    while after["aborted"] == before["aborted"] and time.monotonic() < deadline:
        time.sleep(0.01)
        after = stats(server_url)
    assert after["aborted"] == before["aborted"] + 1, after
    assert after["active"] == 0
    generated = after["tokens_generated"] - before["tokens_generated"]
    # Nothing more than the one token in flight when the client left.
    assert received <= at_close <= generated <= at_close + 1, (received, at_close, generated)
