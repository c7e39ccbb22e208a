"""GZipMiddleware: when it compresses, when it must not, and streaming chunk by chunk."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from helpers import Recorder, assert_passes_through, http_scope, receive_nothing

from asgikit import Middleware, PlainTextResponse, Request, Response, Router, StreamingResponse
from asgikit.middleware import GZipMiddleware
from asgikit.middleware.gzip import gzip_accepted
from asgikit.testing import AsyncTestClient, TestClient
from asgikit.types import Message, Receive, Scope, Send

BIG_TEXT = "The quick brown fox jumps over the lazy dog. " * 40  # 1800 bytes
IDENTITY = {"accept-encoding": "identity"}
GZIP = {"accept-encoding": "gzip"}


def make_router(**options: Any) -> Router:
    router = Router(middleware=[Middleware(GZipMiddleware, **options)])

    @router.get("/big")
    async def big(request: Request) -> Response:
        return PlainTextResponse(BIG_TEXT)

    @router.get("/small")
    async def small(request: Request) -> Response:
        return PlainTextResponse("tiny")

    @router.get("/events")
    async def events(request: Request) -> Response:
        return Response(BIG_TEXT, media_type="text/event-stream")

    @router.get("/encoded")
    async def encoded(request: Request) -> Response:
        return Response(b"x" * 1000, headers={"content-encoding": "br"})

    @router.get("/partial")
    async def partial(request: Request) -> Response:
        headers = {"content-range": "bytes 0-999/5000"}
        return Response(b"y" * 1000, status_code=206, headers=headers)

    @router.get("/vary")
    async def vary(request: Request) -> Response:
        return PlainTextResponse(BIG_TEXT, headers={"vary": "Cookie"})

    return router


def raw_body(client: TestClient, path: str, headers: dict[str, str]) -> tuple[Any, bytes]:
    """The response and its body exactly as sent (httpx would decode gzip for us)."""
    with client.stream("GET", path, headers=headers) as response:
        return response, b"".join(response.iter_raw())


# ------------------------------------------------------------------ Accept-Encoding


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("br, *;q=0.1", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, *", False),  # an explicit refusal beats the wildcard
        ("*;q=0", False),
        ("br, deflate", False),
        ("identity", False),
        ("", False),
        ("gzip;q=nonsense", False),
        ("gzip;q=2", False),
        ("gzip ; q=0.001", True),
    ],
)
def test_gzip_accepted_honours_q_values(header: str, accepted: bool) -> None:
    assert gzip_accepted(header) is accepted


# ------------------------------------------------------------------ complete bodies


def test_large_body_is_compressed_with_fixed_content_length() -> None:
    with TestClient(make_router()) as client:
        response, body = raw_body(client, "/big", GZIP)
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert int(response.headers["content-length"]) == len(body) < len(BIG_TEXT)
    assert gzip.decompress(body).decode() == BIG_TEXT


def test_httpx_reads_the_compressed_body_transparently() -> None:
    with TestClient(make_router()) as client:
        response = client.get("/big", headers=GZIP)
    assert response.headers["content-encoding"] == "gzip"
    assert response.text == BIG_TEXT


def test_body_below_minimum_size_is_left_alone() -> None:
    with TestClient(make_router()) as client:
        response, body = raw_body(client, "/small", GZIP)
    assert "content-encoding" not in response.headers
    assert "vary" not in response.headers
    assert body == b"tiny"
    assert response.headers["content-length"] == "4"


def test_minimum_size_is_configurable() -> None:
    with TestClient(make_router(minimum_size=2)) as client:
        response, body = raw_body(client, "/small", GZIP)
    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == b"tiny"


@pytest.mark.parametrize("accept_encoding", ["identity", "gzip;q=0", "br", "*;q=0"])
def test_not_compressed_when_client_does_not_accept_gzip(accept_encoding: str) -> None:
    with TestClient(make_router()) as client:
        response, body = raw_body(client, "/big", {"accept-encoding": accept_encoding})
    assert "content-encoding" not in response.headers
    assert body == BIG_TEXT.encode()


def test_event_stream_is_never_compressed() -> None:
    with TestClient(make_router()) as client:
        response, body = raw_body(client, "/events", GZIP)
    assert "content-encoding" not in response.headers
    assert body == BIG_TEXT.encode()


def test_existing_content_encoding_is_left_alone() -> None:
    with TestClient(make_router()) as client:
        response, body = raw_body(client, "/encoded", GZIP)
    assert response.headers["content-encoding"] == "br"
    assert body == b"x" * 1000


def test_partial_content_is_never_compressed() -> None:
    with TestClient(make_router()) as client:
        response, body = raw_body(client, "/partial", GZIP)
    assert response.status_code == 206
    assert "content-encoding" not in response.headers
    assert body == b"y" * 1000


def test_request_with_range_header_is_not_compressed() -> None:
    with TestClient(make_router()) as client:
        response, body = raw_body(client, "/big", {**GZIP, "range": "bytes=0-9"})
    assert "content-encoding" not in response.headers
    assert body == BIG_TEXT.encode()


def test_head_is_not_compressed() -> None:
    with TestClient(make_router(minimum_size=0)) as client:
        response = client.head("/big", headers=GZIP)
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert response.headers["content-length"] == str(len(BIG_TEXT))


def test_existing_vary_is_extended() -> None:
    with TestClient(make_router()) as client:
        response = client.get("/vary", headers=GZIP)
    assert response.headers["vary"] == "Cookie, Accept-Encoding"
    assert response.text == BIG_TEXT


def test_identity_request_gets_the_original_headers() -> None:
    with TestClient(make_router()) as client:
        response = client.get("/big", headers=IDENTITY)
    assert "vary" not in response.headers
    assert response.headers["content-length"] == str(len(BIG_TEXT))


@pytest.mark.parametrize(
    ("options", "message"),
    [({"minimum_size": -1}, "minimum_size"), ({"compresslevel": 10}, "compresslevel")],
)
def test_bad_options_raise_value_error(options: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GZipMiddleware(make_router(), **options)


# ------------------------------------------------------------------ streaming


def token_stream_app(tokens: list[bytes], proceed: list[anyio.Event]) -> Any:
    """A raw ASGI app streaming ``tokens``; it sends token i+1 only after the test has
    seen token i, so a middleware that buffered would make the test time out."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan support: the test client carries on without it
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for token, event in zip(tokens, proceed, strict=True):
            await send({"type": "http.response.body", "body": token, "more_body": True})
            await event.wait()
        await send({"type": "http.response.body", "body": b""})

    return app


@pytest.mark.anyio
async def test_streamed_response_is_compressed_chunk_by_chunk() -> None:
    tokens = [b"Once", b" upon", b" a time" * 100]
    proceed = [anyio.Event() for _ in tokens]
    app = GZipMiddleware(token_stream_app(tokens, proceed), minimum_size=10_000)
    decompressor = zlib.decompressobj(31)
    async with AsyncTestClient(app) as client:
        with anyio.fail_after(10):
            async with client.stream("GET", "/", headers=GZIP) as response:
                assert response.headers["content-encoding"] == "gzip"
                assert response.headers["vary"] == "Accept-Encoding"
                assert "content-length" not in response.headers
                chunks = response.aiter_raw()
                for token, event in zip(tokens, proceed, strict=True):
                    # Each compressed chunk decodes to its token on its own: it was flushed.
                    assert decompressor.decompress(await chunks.__anext__()) == token
                    event.set()
                rest = b"".join([chunk async for chunk in chunks])
    assert decompressor.decompress(rest) == b""
    assert decompressor.eof


@pytest.mark.anyio
async def test_streamed_event_stream_passes_through_unbuffered() -> None:
    tokens = [b"data: 1\n\n", b"data: 2\n\n"]
    proceed = [anyio.Event() for _ in tokens]
    inner = token_stream_app(tokens, proceed)

    async def sse_app(scope: Scope, receive: Receive, send: Send) -> None:
        async def as_event_stream(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [(b"content-type", b"text/event-stream")]
            await send(message)

        await inner(scope, receive, as_event_stream)

    async with AsyncTestClient(GZipMiddleware(sse_app, minimum_size=0)) as client:
        with anyio.fail_after(10):
            async with client.stream("GET", "/", headers=GZIP) as response:
                assert "content-encoding" not in response.headers
                chunks = response.aiter_raw()
                for token, event in zip(tokens, proceed, strict=True):
                    assert await chunks.__anext__() == token
                    event.set()


# ------------------------------------------------------------------ other scopes


@pytest.mark.anyio
@pytest.mark.parametrize("scope_type", ["lifespan", "websocket"])
async def test_other_scopes_pass_through_untouched(scope_type: str) -> None:
    # Hand-written: a minimal scope of that type, to be handed on as it is.
    scope: Scope = {"type": scope_type, "headers": [(b"accept-encoding", b"gzip")]}
    await assert_passes_through(GZipMiddleware, scope)


@pytest.mark.anyio
async def test_pathsend_is_passed_on_with_the_original_start() -> None:
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"9")]}
    pathsend = {"type": "http.response.pathsend", "path": "/srv/file.txt"}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start)
        await send(pathsend)

    send = Recorder()
    scope = http_scope(headers=[(b"accept-encoding", b"gzip")])
    await GZipMiddleware(app, minimum_size=0)(scope, receive_nothing, send)
    assert send.messages == [start, pathsend]


@pytest.mark.anyio
async def test_streaming_response_through_router_is_live_and_abortable() -> None:
    produced = anyio.Event()
    closed = anyio.Event()

    async def generate() -> Any:
        try:
            yield "first token"
            produced.set()
            await anyio.sleep_forever()  # a model that would keep going
        finally:
            closed.set()

    router = Router(middleware=[Middleware(GZipMiddleware, minimum_size=0)])

    @router.get("/tokens")
    async def tokens(request: Request) -> StreamingResponse:
        return StreamingResponse(generate(), media_type="text/plain")

    async with AsyncTestClient(router) as client:
        with anyio.fail_after(10):
            async with client.stream("GET", "/tokens", headers=GZIP) as response:
                assert response.headers["content-encoding"] == "gzip"
                chunk = await response.aiter_raw().__anext__()
                assert zlib.decompressobj(31).decompress(chunk) == b"first token"
                await produced.wait()
            # Leaving the stream disconnects the client: the generator is closed.
            await closed.wait()


def test_stream_headers_go_out_before_the_first_chunk_so_timeouts_see_the_start() -> None:
    import anyio

    from asgikit import Middleware, StreamingResponse
    from asgikit.middleware import GZipMiddleware, TimeoutMiddleware

    router = Router(
        middleware=[
            Middleware(TimeoutMiddleware, timeout=0.2),
            Middleware(GZipMiddleware, minimum_size=10),
        ]
    )

    @router.get("/slow-tokens")
    async def slow_tokens(request: Request) -> StreamingResponse:
        async def tokens() -> AsyncIterator[bytes]:
            await anyio.sleep(0.4)  # the first token takes longer than the timeout
            yield b"token " * 10

        return StreamingResponse(tokens(), media_type="text/plain")

    with TestClient(router) as client:
        response = client.get("/slow-tokens", headers={"accept-encoding": "gzip"})
    assert response.status_code == 200  # started in time: never cut to 504
    assert response.headers["content-encoding"] == "gzip"
    assert response.text == "token " * 10


def test_compressed_responses_get_a_weak_etag_and_no_accept_ranges() -> None:
    from asgikit import Middleware, PlainTextResponse
    from asgikit.middleware import GZipMiddleware

    router = Router(middleware=[Middleware(GZipMiddleware, minimum_size=10)])

    @router.get("/doc")
    async def doc(request: Request) -> PlainTextResponse:
        return PlainTextResponse("x" * 1000, headers={"ETag": '"v1"', "Accept-Ranges": "bytes"})

    response = TestClient(router).get("/doc", headers={"accept-encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["etag"] == 'W/"v1"'
    assert "accept-ranges" not in response.headers


def test_a_304_carries_the_etag_and_vary_of_the_compressed_200(tmp_path: Any) -> None:
    from asgikit import FileResponse

    page = tmp_path / "page.html"
    page.write_text("<p>hello</p>" * 200)
    router = Router(middleware=[Middleware(GZipMiddleware)])

    @router.get("/page")
    async def serve_page(request: Request) -> FileResponse:
        return FileResponse(page)

    client = TestClient(router)
    full = client.get("/page", headers={"accept-encoding": "gzip"})
    assert full.headers["content-encoding"] == "gzip" and full.headers["etag"].startswith("W/")
    # A cache revalidating its gzip copy must get the same validators (RFC 9110 15.4.5).
    check = {"accept-encoding": "gzip", "if-none-match": full.headers["etag"]}
    not_modified = client.get("/page", headers=check)
    assert not_modified.status_code == 304
    assert not_modified.headers["etag"] == full.headers["etag"]
    assert not_modified.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in not_modified.headers
    # Without gzip the identity validators stay as they were.
    identity = client.get("/page", headers={"accept-encoding": "identity"})
    plain_check = {"accept-encoding": "identity", "if-none-match": identity.headers["etag"]}
    plain = client.get("/page", headers=plain_check)
    assert plain.status_code == 304 and plain.headers["etag"] == identity.headers["etag"]
    assert not plain.headers["etag"].startswith("W/")
    # A file too small to compress went out with its strong ETag: its 304 keeps it.
    small = tmp_path / "small.txt"
    small.write_text("tiny")

    @router.get("/small")
    async def serve_small(request: Request) -> FileResponse:
        return FileResponse(small)

    tiny = client.get("/small", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in tiny.headers and not tiny.headers["etag"].startswith("W/")
    tiny_check = {"accept-encoding": "gzip", "if-none-match": tiny.headers["etag"]}
    tiny_304 = client.get("/small", headers=tiny_check)
    assert tiny_304.status_code == 304 and tiny_304.headers["etag"] == tiny.headers["etag"]
    assert "vary" not in tiny_304.headers
