"""TrustedHostMiddleware: exact hosts, wildcards, ports, www redirect, WebSockets."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import (
    AppCalls,
    Recorder,
    assert_passes_through,
    http_scope,
    never_called,
    receive_nothing,
    websocket_scope,
)

from asgikit import Middleware, Request, Router
from asgikit.middleware import TrustedHostMiddleware
from asgikit.middleware.trustedhost import host_without_port
from asgikit.testing import TestClient
from asgikit.types import Receive, Scope, Send


def make_client(base_url: str = "http://testserver", **options: Any) -> TestClient:
    router = Router(middleware=[Middleware(TrustedHostMiddleware, **options)])

    @router.get("/path")
    async def path(request: Request) -> str:
        return f"hello from {request.url.hostname}"

    return TestClient(router, base_url=base_url, follow_redirects=False)


ALLOWED = ["example.com", "*.api.example.org", "testserver"]


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "EXAMPLE.com",
        "example.com:8443",
        "example.com.",
        "v1.api.example.org",
        "a.b.api.example.org:8000",
        "testserver",
    ],
)
def test_allowed_hosts_are_served(host: str) -> None:
    with make_client(allowed_hosts=ALLOWED) as client:
        response = client.get("/path", headers={"host": host})
    assert response.status_code == 200
    assert response.text.startswith("hello from")


@pytest.mark.parametrize(
    "host",
    [
        "evil.com",
        "example.com.evil.com",
        "notexample.com",
        "api.example.org",  # the wildcard needs a label in front
        "xapi.example.org",
        "",
    ],
)
def test_other_hosts_get_400(host: str) -> None:
    with make_client(allowed_hosts=ALLOWED) as client:
        response = client.get("/path", headers={"host": host})
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid host header"}


def test_default_allows_any_host() -> None:
    with make_client() as client:
        response = client.get("/path", headers={"host": "anything.invalid"})
    assert response.status_code == 200


def test_www_redirect_keeps_path_query_and_port() -> None:
    base_url = "https://example.com:8443"
    with make_client(base_url=base_url, allowed_hosts=["www.example.com"]) as client:
        response = client.get("/path?q=a%20b&x=1")
    assert response.status_code == 307
    assert response.headers["location"] == "https://www.example.com:8443/path?q=a%20b&x=1"


def test_www_redirect_can_be_disabled() -> None:
    with make_client(
        base_url="http://example.com", allowed_hosts=["www.example.com"], www_redirect=False
    ) as client:
        response = client.get("/path")
    assert response.status_code == 400


def test_www_redirect_only_for_the_bare_domain() -> None:
    with make_client(base_url="http://other.com", allowed_hosts=["www.example.com"]) as client:
        response = client.get("/path")
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("Example.COM", "example.com"),
        ("example.com:80", "example.com"),
        ("example.com.", "example.com"),
        ("example.com:", "example.com"),
        ("[::1]:8000", "::1"),
        ("[::1]", "::1"),
        ("127.0.0.1:9000", "127.0.0.1"),
        (" spaced.example ", "spaced.example"),
    ],
)
def test_host_without_port(header: str, host: str) -> None:
    assert host_without_port(header) == host


def test_ipv6_literal_can_be_allowed_with_or_without_brackets() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("not called")

    for pattern in ("::1", "[::1]"):
        middleware = TrustedHostMiddleware(app, allowed_hosts=[pattern])
        assert middleware.is_allowed_host(host_without_port("[::1]:8000"))


@pytest.mark.parametrize("pattern", ["example.*", "a*.example.com", "*example.com", ""])
def test_invalid_patterns_raise_value_error(pattern: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match=r"allowed.host"):
        TrustedHostMiddleware(app, allowed_hosts=[pattern])


# ------------------------------------------------------------------ raw ASGI scopes


def ws_scope(host: bytes, extensions: dict[str, Any] | None = None) -> Scope:
    return websocket_scope("/ws", headers=[(b"host", host)], extensions=extensions or {})


@pytest.mark.anyio
async def test_missing_host_header_is_400() -> None:
    send = Recorder()
    middleware = TrustedHostMiddleware(never_called, allowed_hosts=["example.com"])
    await middleware(http_scope(), receive_nothing, send)  # no headers at all
    assert send.messages[0]["status"] == 400
    assert send.messages[1]["body"] == b'{"detail":"Missing Host header"}'


@pytest.mark.anyio
async def test_websocket_with_bad_host_is_closed_before_the_app() -> None:
    app = AppCalls()
    send = Recorder()
    middleware = TrustedHostMiddleware(app, allowed_hosts=["example.com"])
    await middleware(ws_scope(b"evil.com"), receive_nothing, send)
    assert app.calls == []
    assert send.messages == [
        {"type": "websocket.close", "code": 1008, "reason": "Invalid host header"}
    ]


@pytest.mark.anyio
async def test_websocket_with_bad_host_gets_400_through_http_response_extension() -> None:
    send = Recorder()
    middleware = TrustedHostMiddleware(never_called, allowed_hosts=["example.com"])
    scope = ws_scope(b"evil.com", {"websocket.http.response": {}})
    await middleware(scope, receive_nothing, send)
    assert send.messages[0]["type"] == "websocket.http.response.start"
    assert send.messages[0]["status"] == 400
    assert send.messages[1]["type"] == "websocket.http.response.body"


@pytest.mark.anyio
async def test_websocket_with_good_host_reaches_the_app() -> None:
    scope = ws_scope(b"example.com:443")
    await assert_passes_through(
        lambda app: TrustedHostMiddleware(app, allowed_hosts=["example.com"]), scope
    )


@pytest.mark.anyio
async def test_lifespan_passes_through() -> None:
    scope: Scope = {"type": "lifespan"}  # hand-written: a minimal lifespan scope
    await assert_passes_through(
        lambda app: TrustedHostMiddleware(app, allowed_hosts=["example.com"]), scope
    )


@pytest.mark.parametrize(
    "host",
    [
        "evil.com/.example.com",
        "evil.com?.example.com",
        "evil.com#.example.com",
        "evil.com\\.example.com",
        "user@evil.com.example.com/",
        "evil .example.com",
    ],
)
def test_malformed_hosts_never_pass_a_wildcard(host: str) -> None:
    from asgikit import Middleware, Router
    from asgikit.middleware import TrustedHostMiddleware
    from asgikit.testing import TestClient

    router = Router(middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=["*.example.com"])])
    router.add_route("/", lambda request: "ok")
    response = TestClient(router).get("/", headers={"host": host})
    assert response.status_code == 400
