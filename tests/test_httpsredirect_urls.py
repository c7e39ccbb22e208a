"""`https_url`: where `HTTPSRedirectMiddleware` sends a request, for every shape of host."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from helpers import Recorder, receive_body

from asgikit.middleware import HTTPSRedirectMiddleware
from asgikit.middleware.httpsredirect import https_url


def scope(headers: list[tuple[bytes, bytes]], **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": "http",
        "path": "/v1/models",
        "query_string": b"",
        "headers": headers,
        **extra,
    }


@pytest.mark.parametrize(
    ("host", "url"),
    [
        (b"[::1]:8080", "https://[::1]:8080/v1/models"),
        (b"[::1]", "https://[::1]/v1/models"),
        (b"[::1]:443", "https://[::1]/v1/models"),
        (b"example.com:80", "https://example.com/v1/models"),
    ],
)
def test_host_headers_with_and_without_ports(host: bytes, url: str) -> None:
    assert https_url(scope([(b"host", host)])) == url


def test_without_a_host_header_the_server_address_is_used() -> None:
    assert https_url(scope([], server=("::1", 8000))) == "https://[::1]:8000/v1/models"
    assert https_url(scope([], server=("10.0.0.2", None))) == "https://10.0.0.2/v1/models"


def test_without_host_or_server_there_is_no_url_to_build() -> None:
    with pytest.raises(ValueError, match="Missing Host header"):
        https_url(scope([]))


@pytest.mark.parametrize(
    "host", [b"evil.com/x?", b"example.com#", b"[::1", b"a@evil.com", b"example.com:99999", b""]
)
def test_a_host_header_that_is_not_a_plain_host_builds_no_url(host: bytes) -> None:
    with pytest.raises(ValueError, match="Invalid host header"):
        https_url(scope([(b"host", host)]))


@pytest.mark.parametrize("host", [b"evil.com/x?", b"example.com#", b"[::1", b"a@evil.com"])
def test_the_middleware_answers_such_a_host_with_a_400(host: bytes) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    middleware = HTTPSRedirectMiddleware(app)
    sent = Recorder()
    request = {
        **scope([(b"host", host)]),
        "method": "GET",
        "raw_path": b"/x",
        "query_string": b"q=1",
    }
    anyio.run(middleware, request, receive_body(), sent)
    assert sent.messages[0]["status"] == 400
    assert (b"location", b"") not in sent.messages[0]["headers"]
    assert all(name != b"location" for name, _ in sent.messages[0]["headers"])
    assert b"Invalid host header" in sent.messages[1]["body"]


@pytest.mark.parametrize(
    ("host", "url"),
    [
        (b"example.com.", "https://example.com./v1/models"),
        (b"localhost.:8000", "https://localhost.:8000/v1/models"),
    ],
)
def test_a_host_name_with_a_trailing_dot_is_plain(host: bytes, url: str) -> None:
    assert https_url(scope([(b"host", host)])) == url
