"""`CORSMiddleware` and caches: ``Vary: Origin`` exactly once, and a bounded origin cache."""

from __future__ import annotations

import pytest
from helpers import Recorder, http_scope, receive_body

from asgikit.middleware import CORSMiddleware
from asgikit.middleware.cors import _ORIGIN_CACHE_SIZE
from asgikit.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio


def app_with_vary(vary: bytes | None) -> object:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [] if vary is None else [(b"vary", vary)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def response_headers(middleware: CORSMiddleware, origin: bytes) -> list[tuple[bytes, bytes]]:
    sent = Recorder()
    await middleware(http_scope(headers=[(b"origin", origin)]), receive_body(), sent)
    return list(sent.messages[0]["headers"])


@pytest.mark.parametrize(
    ("vary", "expected"),
    [
        (None, b"Origin"),
        (b"Accept-Encoding", b"Accept-Encoding, Origin"),
        (b"origin, Accept", b"origin, Accept"),  # already listed: not twice
        (b"*", b"*"),  # varies on everything already
    ],
)
async def test_vary_names_origin_exactly_once(vary: bytes | None, expected: bytes) -> None:
    middleware = CORSMiddleware(app_with_vary(vary), allow_origins=["https://ui.example"])  # type: ignore[arg-type]
    headers = await response_headers(middleware, b"https://ui.example")
    assert [value for name, value in headers if name == b"vary"] == [expected]
    assert (b"access-control-allow-origin", b"https://ui.example") in headers


async def test_many_distinct_origins_cannot_grow_the_cache_or_change_answers() -> None:
    middleware = CORSMiddleware(app_with_vary(None), allow_origins=["https://ui.example"])  # type: ignore[arg-type]
    for index in range(_ORIGIN_CACHE_SIZE + 5):
        headers = await response_headers(middleware, b"https://x%d.attacker.net" % index)
        assert not any(name == b"access-control-allow-origin" for name, _ in headers)
    assert len(middleware.origin_headers) == _ORIGIN_CACHE_SIZE
    headers = await response_headers(middleware, b"https://ui.example")
    assert (b"access-control-allow-origin", b"https://ui.example") in headers
