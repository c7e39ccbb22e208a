"""HTTPSRedirectMiddleware: http -> https, ws -> wss, path and query kept, ports."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import Recorder, never_called, receive_nothing

from asgikit import Middleware, Request, Router
from asgikit.middleware import HTTPSRedirectMiddleware
from asgikit.middleware.httpsredirect import https_url
from asgikit.testing import TestClient
from asgikit.types import Receive, Scope, Send


def make_client(base_url: str, **options: Any) -> TestClient:
    router = Router(middleware=[Middleware(HTTPSRedirectMiddleware, **options)])

    @router.route("/items/{name}", methods=["GET", "POST"])
    async def item(request: Request) -> str:
        return f"{request.method} {request.path_params['name']} over {request.url.scheme}"

    return TestClient(router, base_url=base_url, follow_redirects=False)


@pytest.mark.parametrize(
    ("base_url", "location"),
    [
        ("http://testserver", "https://testserver/items/a%20b?q=1&q=2"),
        ("http://testserver:80", "https://testserver/items/a%20b?q=1&q=2"),
        ("http://testserver:443", "https://testserver/items/a%20b?q=1&q=2"),
        ("http://testserver:8080", "https://testserver:8080/items/a%20b?q=1&q=2"),
    ],
)
def test_http_is_redirected_with_path_and_query(base_url: str, location: str) -> None:
    with make_client(base_url) as client:
        response = client.get("/items/a%20b?q=1&q=2")
    assert response.status_code == 307
    assert response.headers["location"] == location


def test_post_is_redirected_with_307_so_the_method_is_kept() -> None:
    with make_client("http://testserver") as client:
        response = client.post("/items/x", content=b"payload")
    assert response.status_code == 307


def test_permanent_uses_308() -> None:
    with make_client("http://testserver", permanent=True) as client:
        response = client.get("/items/x")
    assert response.status_code == 308
    assert response.headers["location"] == "https://testserver/items/x"


def test_https_passes_through() -> None:
    with make_client("https://testserver") as client:
        response = client.get("/items/x")
    assert response.status_code == 200
    assert response.text == "GET x over https"


def test_following_the_redirect_reaches_the_app() -> None:
    with make_client("http://testserver") as client:
        response = client.post("/items/x", content=b"payload", follow_redirects=True)
    assert response.status_code == 200
    assert response.text == "POST x over https"


@pytest.mark.parametrize(
    ("scope", "url"),
    [
        (
            {"type": "websocket", "scheme": "ws", "headers": [(b"host", b"example.com")]},
            "wss://example.com/chat?room=1",
        ),
        (
            {"type": "http", "headers": [], "server": ("10.0.0.1", 8000)},
            "https://10.0.0.1:8000/chat?room=1",
        ),
        (
            {"type": "http", "scheme": "http", "headers": [(b"host", b"[::1]:80")]},
            "https://[::1]/chat?room=1",
        ),
        (
            {"type": "http", "scheme": "http", "headers": [(b"host", b"[::1]:8080")]},
            "https://[::1]:8080/chat?room=1",
        ),
    ],
)
def test_https_url(scope: Scope, url: str) -> None:
    assert https_url({**scope, "path": "/chat", "query_string": b"room=1"}) == url


# ------------------------------------------------------------------ raw ASGI scopes


def websocket_scope(scheme: str, extensions: dict[str, Any] | None = None) -> Scope:
    return {
        "type": "websocket",
        "scheme": scheme,
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"token=abc",
        "headers": [(b"host", b"example.com:80")],
        "extensions": extensions or {},
    }


@pytest.mark.anyio
async def test_ws_is_redirected_to_wss_through_http_response_extension() -> None:
    send = Recorder()
    scope = websocket_scope("ws", {"websocket.http.response": {}})
    await HTTPSRedirectMiddleware(never_called)(scope, receive_nothing, send)
    start, body = send.messages
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == 307
    assert (b"location", b"wss://example.com/ws?token=abc") in start["headers"]
    assert body["type"] == "websocket.http.response.body"


@pytest.mark.anyio
async def test_ws_without_extension_is_refused_before_acceptance() -> None:
    send = Recorder()
    await HTTPSRedirectMiddleware(never_called)(websocket_scope("ws"), receive_nothing, send)
    assert len(send.messages) == 1
    assert send.messages[0]["type"] == "websocket.close"
    assert "wss://example.com/ws?token=abc" in send.messages[0]["reason"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "scope",
    [{"type": "lifespan"}, websocket_scope("wss"), {"type": "http", "scheme": "https"}],
)
async def test_lifespan_and_secure_scopes_pass_through(scope: Scope) -> None:
    seen: list[tuple[Scope, Receive, Send]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))

    send = Recorder()
    await HTTPSRedirectMiddleware(app)(scope, receive_nothing, send)
    assert seen == [(scope, receive_nothing, send)]
    assert send.messages == []
