"""`GZipMiddleware` with responses that arrive in unusual message shapes.

A body announced with ``Content-Length`` but sent in several messages (a large file)
is compressed as a stream, without the now wrong length; empty chunks and messages that
are not body (trailers, ``pathsend``) pass through and never corrupt the gzip stream.
"""

from __future__ import annotations

import gzip

import pytest
from helpers import Recorder, http_scope, receive_body

from asgikit.middleware import GZipMiddleware
from asgikit.types import Message, Receive, Scope, Send

pytestmark = pytest.mark.anyio

PAYLOAD = b"token " * 400  # 2400 bytes, compressible


def app_sending(*messages: Message) -> object:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(message)

    return app


async def run(*messages: Message) -> list[Message]:
    sent = Recorder()
    scope = http_scope(headers=[(b"accept-encoding", b"gzip")])
    await GZipMiddleware(app_sending(*messages), minimum_size=100)(scope, receive_body(), sent)
    return sent.messages


def start(*headers: tuple[bytes, bytes]) -> Message:
    return {"type": "http.response.start", "status": 200, "headers": list(headers)}


def body(message_list: list[Message]) -> bytes:
    return b"".join(m["body"] for m in message_list if m["type"] == "http.response.body")


async def test_a_sized_body_sent_in_parts_is_compressed_as_a_stream_without_its_length() -> None:
    sent = await run(
        start((b"content-length", b"2400"), (b"content-type", b"text/plain")),
        {"type": "http.response.body", "body": PAYLOAD[:1000], "more_body": True},
        {"type": "http.response.body", "body": b"", "more_body": True},
        {"type": "http.response.body", "body": PAYLOAD[1000:]},
    )
    headers = dict(sent[0]["headers"])
    assert headers[b"content-encoding"] == b"gzip"
    assert b"content-length" not in headers  # the announced length was the identity one
    assert gzip.decompress(body(sent)) == PAYLOAD
    assert all(m.get("body") for m in sent[1:])  # the empty chunk was not forwarded


async def test_trailers_in_a_compressed_stream_pass_through_after_the_body() -> None:
    trailers: Message = {"type": "http.response.trailers", "headers": [], "more_trailers": False}
    sent = await run(
        start((b"content-type", b"text/plain")),  # no length: streamed
        {"type": "http.response.body", "body": PAYLOAD, "more_body": True},
        trailers,
        {"type": "http.response.body", "body": b""},
    )
    assert trailers in sent
    assert gzip.decompress(body(sent)) == PAYLOAD


async def test_a_pathsend_after_a_sized_start_goes_out_uncompressed() -> None:
    pathsend: Message = {"type": "http.response.pathsend", "path": "/srv/weights.bin"}
    sent = await run(start((b"content-length", b"5000")), pathsend)
    assert sent == [start((b"content-length", b"5000")), pathsend]
